//! A component's bytes for `journey push` and `channel push`: a `.wasm` file as it is, or a
//! crate directory built with `cargo build --release --target wasm32-wasip2` (what the README
//! tells tenants to run), taking the component cargo reports for that crate.
//!
//! The artifact is found from cargo's own JSON messages (`--message-format
//! json-render-diagnostics`: one `compiler-artifact` object per built target, with its
//! `manifest_path` and `filenames`), so a crate inside a workspace, a custom
//! `CARGO_TARGET_DIR` or a renamed library all work without guessing paths.

use super::CliError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The component at `path`, building it first when `path` is a crate directory.
pub fn load(path: &Path) -> Result<Vec<u8>, CliError> {
    let file = if path.is_dir() {
        build(path)?
    } else {
        path.to_path_buf()
    };
    std::fs::read(&file).map_err(|e| CliError::io("cannot read", &file, e))
}

/// The default name of what `path` holds: a file's stem or a directory's name, with `_` as
/// `-` (cargo names `my-journey`'s component `my_journey.wasm`).
pub fn default_name(path: &Path) -> Option<String> {
    let stem = if path.is_dir() {
        std::fs::canonicalize(path).ok()?.file_name()?.to_owned()
    } else {
        path.file_stem()?.to_owned()
    };
    Some(stem.to_str()?.replace('_', "-"))
}

/// Builds the crate in `dir` for `wasm32-wasip2` and returns its component's path.
fn build(dir: &Path) -> Result<PathBuf, CliError> {
    let manifest = dir.join("Cargo.toml");
    let manifest = std::fs::canonicalize(&manifest).map_err(|_| {
        CliError::Input(format!(
            "{} is a directory without a Cargo.toml: pass a .wasm file or a crate directory",
            dir.display()
        ))
    })?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building {} (cargo build --release --target wasm32-wasip2)",
        manifest.display()
    );
    // Diagnostics go to our stderr as cargo renders them; stdout carries the JSON messages.
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| CliError::Build(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(CliError::Build(format!(
            "cargo build of {} failed ({})",
            manifest.display(),
            output.status
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    component_of(&text, &manifest).ok_or_else(|| {
        CliError::Build(format!(
            "cargo built {} but reported no .wasm file for it (is it a `cdylib`?)",
            manifest.display()
        ))
    })
}

/// One line of cargo's JSON output, the fields we read.
#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

/// The last `.wasm` file cargo reported building for the crate of `manifest`.
fn component_of(messages: &str, manifest: &Path) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .filter(|m| m.manifest_path.as_deref() == Some(manifest))
        .flat_map(|m| m.filenames)
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_is_the_wasm_file_cargo_reports_for_the_crate_itself() {
        // Shapes as cargo prints them (abridged): a dependency's rlib, the crate's cdylib.
        let messages = r#"{"reason":"compiler-artifact","manifest_path":"/w/guest-sdk/Cargo.toml","filenames":["/w/target/wasm32-wasip2/release/libwaymark_guest.rlib"]}
{"reason":"compiler-message","manifest_path":"/w/examples/onboarding/Cargo.toml"}
{"reason":"compiler-artifact","manifest_path":"/w/examples/onboarding/Cargo.toml","filenames":["/w/target/wasm32-wasip2/release/waymark_example_onboarding.wasm"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            component_of(messages, Path::new("/w/examples/onboarding/Cargo.toml")),
            Some(PathBuf::from(
                "/w/target/wasm32-wasip2/release/waymark_example_onboarding.wasm"
            ))
        );
        assert_eq!(
            component_of(messages, Path::new("/w/guest-sdk/Cargo.toml")),
            None
        );
    }

    #[test]
    fn default_names_come_from_the_file_stem_with_dashes() {
        assert_eq!(
            default_name(Path::new("/x/waymark_example_onboarding.wasm")).as_deref(),
            Some("waymark-example-onboarding")
        );
    }
}
