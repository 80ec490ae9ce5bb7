//! A Python environment with Segment's official library (`segment-analytics-python` from PyPI,
//! module `segment.analytics`), for the test that drives Waymark with a client this project did
//! not write. Made once under `target/segment-venv` by `cargo xtask test` (and by the test if
//! it is missing), idempotently: an environment that already imports the library is kept.

use crate::artifacts::target_dir;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The library's version the tests were written against.
pub const SEGMENT_PYTHON: &str = "segment-analytics-python==2.4.0";

/// The environment's Python, with `segment.analytics` importable: made if it is not there.
/// `Err` says why it could not be made (no `python3`, no `venv`, PyPI unreachable, ...).
pub fn segment_python() -> Result<PathBuf, String> {
    let venv = target_dir().join("segment-venv");
    let python = venv.join("bin").join("python");
    if imports_segment(&python) {
        return Ok(python);
    }
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SEGMENT_PYTHON,
        ]),
        "pip install",
    )?;
    if imports_segment(&python) {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import segment.analytics after installing {SEGMENT_PYTHON}",
            python.display()
        ))
    }
}

fn imports_segment(python: &std::path::Path) -> bool {
    python.exists()
        && Command::new(python)
            .args(["-c", "import segment.analytics"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what} did not start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
