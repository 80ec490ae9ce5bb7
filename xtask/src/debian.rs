//! Debian packages that the tests run as real programs. Each one is installed with apt only when
//! it is missing: `apt-get update` once per run, then `apt-get install -y`, quietly, with no
//! prompt and no standard input (so it works under CI=true). When everything is there, nothing
//! happens.
//!
//! - [`chromium`] — dashboard (issue 14): `chromium` and `chromium-driver`, which
//!   `tests/tests/dashboard.rs` drives through WebDriver.
//! - [`nats_server`] — JetStream cluster (issue 16): `nats-server`, which
//!   `waymark_tests::nats` runs as a cluster of child processes.

use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// Makes sure Chromium and chromedriver are installed; says where chromedriver is.
pub fn chromium() -> Result<PathBuf> {
    ensure(
        &["chromium", "chromedriver"],
        &["chromium", "chromium-driver"],
        "the dashboard test",
    )?;
    on_path("chromedriver").ok_or_else(|| anyhow!("chromium-driver installed no chromedriver"))
}

/// Makes sure `nats-server` is installed; says where it is (Debian puts it in /usr/sbin).
pub fn nats_server() -> Result<PathBuf> {
    ensure(&["nats-server"], &["nats-server"], "the cluster tests")?;
    on_path("nats-server").ok_or_else(|| anyhow!("nats-server installed no nats-server"))
}

/// Installs `packages` unless every one of `programs` is found already; `why` ends the line
/// that says so ("installing Debian's … for {why}").
pub fn ensure(programs: &[&str], packages: &[&str], why: &str) -> Result<()> {
    if programs.iter().all(|p| on_path(p).is_some()) {
        return Ok(());
    }
    if on_path("apt-get").is_none() {
        let them = if programs.len() == 1 { "it" } else { "them" };
        bail!(
            "{} is missing and there is no apt-get to install {them}",
            programs.join(" or ")
        );
    }
    eprintln!("installing Debian's {} for {why}", packages.join(" and "));
    // One index refresh serves every package installed in this run.
    static UPDATED: AtomicBool = AtomicBool::new(false);
    if !UPDATED.load(Ordering::Relaxed) {
        apt(&["update", "-qq"])?;
        UPDATED.store(true, Ordering::Relaxed);
    }
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(packages);
    apt(&install)
}

/// `name` on PATH, or in /usr/bin or /usr/sbin, where Debian installs programs even when PATH
/// (a non-root user's, say) leaves them out.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn apt(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
