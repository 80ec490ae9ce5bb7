//! Dashboard (issue 14): Debian's `chromium` and `chromium-driver`, which
//! `tests/tests/dashboard.rs` drives through WebDriver. Installed with apt when either is
//! missing: `apt-get update` once, then `apt-get install -y`, quietly, with no prompt and no
//! standard input (so it works under CI=true). Nothing is done when both are there.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The programs the test looks for, as Debian installs them.
const PROGRAMS: &[&str] = &["chromium", "chromedriver"];

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
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

/// Makes sure Chromium and chromedriver are installed; says where chromedriver is.
pub fn ensure() -> Result<PathBuf> {
    if PROGRAMS.iter().all(|p| on_path(p).is_some()) {
        return on_path("chromedriver").ok_or_else(|| anyhow::anyhow!("chromedriver vanished"));
    }
    if !Path::new("/usr/bin/apt-get").exists() && on_path("apt-get").is_none() {
        bail!("chromium or chromedriver is missing and there is no apt-get to install them");
    }
    eprintln!("installing Debian's chromium and chromium-driver for the dashboard test");
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "chromium", "chromium-driver"])?;
    on_path("chromedriver")
        .ok_or_else(|| anyhow::anyhow!("chromium-driver installed no chromedriver"))
}
