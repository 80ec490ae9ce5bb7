//! The `waymark` binary and the guest components the end-to-end tests run and upload, built
//! once per process (or found ready when `WAYMARK_PREBUILT=1` says `cargo xtask` built them).
//!
//! Every guest is one row of [`GUESTS`]: its crate and its wasm file. The build arguments
//! ([`guest_build_args`]), the check for missing outputs and [`Artifacts::component`] derive
//! from that table, so adding a guest is one line. Guests are built with the workspace's
//! `guest` profile ([`GUEST_PROFILE`]: LTO, stripped, no debug info), so they are as small and
//! fast as a tenant's should be.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The cargo profile guests are built with (`[profile.guest]` in the workspace's Cargo.toml);
/// their wasm files land in `<target>/wasm32-wasip2/guest/`.
pub const GUEST_PROFILE: &str = "guest";

/// Every guest component: `(crate, wasm file)`, the file under
/// `<target>/wasm32-wasip2/guest/`.
pub const GUESTS: &[(&str, &str)] = &[
    ("waymark-webhook", "waymark_webhook.wasm"),
    (
        "waymark-example-onboarding",
        "waymark_example_onboarding.wasm",
    ),
    (
        "waymark-example-guided-onboarding",
        "waymark_example_guided_onboarding.wasm",
    ),
    ("waymark-example-win-back", "waymark_example_win_back.wasm"),
    ("waymark-example-renewal", "waymark_example_renewal.wasm"),
    (
        "waymark-example-post-purchase",
        "waymark_example_post_purchase.wasm",
    ),
    ("waymark-example-birthday", "waymark_example_birthday.wasm"),
    (
        "waymark-example-ab-welcome",
        "waymark_example_ab_welcome.wasm",
    ),
    // Account journeys (issue 12): a journey whose subject is the account.
    (
        "waymark-example-account-onboarding",
        "waymark_example_account_onboarding.wasm",
    ),
    // A journey that misbehaves in a different way per event name.
    ("waymark-test-hostile", "waymark_test_hostile.wasm"),
    // A journey importing `wasi:sockets`, to be refused at upload.
    ("waymark-test-sockets", "waymark_test_sockets.wasm"),
    // A journey importing `wasi:filesystem`, to be refused at upload.
    ("waymark-test-files", "waymark_test_files.wasm"),
    // A journey recording every event and timer in its state.
    ("waymark-test-ledger", "waymark_test_ledger.wasm"),
    // A journey built against contract 0.1.0 as it shipped (frozen WIT, raw wit-bindgen).
    (
        "waymark-test-contract-0-1-0",
        "waymark_test_contract_0_1_0.wasm",
    ),
    // Onboarding v2, adapting enrollments moved to it (`migrate`), refusing and trapping on cue.
    ("waymark-test-migrating", "waymark_test_migrating.wasm"),
    // Issue 11, sms slice: the SMS (Twilio, Vonage) and Slack channel plugins.
    ("waymark-sms", "waymark_sms.wasm"),
    ("waymark-slack", "waymark_slack.wasm"),
    // Issue 11: the email channel adapter (`plugins/email`).
    ("waymark-email", "waymark_email.wasm"),
    // Issue 11, crm slice: the CRM channel adapter (`plugins/crm`, HubSpot tasks).
    ("waymark-crm", "waymark_crm.wasm"),
    // Issue 11, in-app inbox: a journey that sends what each `notify` event asks for.
    ("waymark-test-messenger", "waymark_test_messenger.wasm"),
    // Backtests (issue 13): `examples/renewal` reminding 21/7/1 days before instead of 30/14/3.
    (
        "waymark-test-renewal-early",
        "waymark_test_renewal_early.wasm",
    ),
    // Audience triggers (issue 12): entered by inactivity, a condition and a date.
    ("waymark-test-audience", "waymark_test_audience.wasm"),
    (
        "waymark-test-audience-bad",
        "waymark_test_audience_bad.wasm",
    ),
    // Issue 13, experiments: an adaptive experiment, Thompson sampling on a milestone.
    ("waymark-test-adaptive", "waymark_test_adaptive.wasm"),
    // Issue 11, provider feedback: a channel built for contract 0.1.1 (no `feedback` export).
    (
        "waymark-test-channel-0-1-1",
        "waymark_test_channel_0_1_1.wasm",
    ),
];

/// `tests/guests/adaptive` (issue 13): an adaptive experiment.
pub const ADAPTIVE_CRATE: &str = "waymark-test-adaptive";
/// The webhook channel adapter (`plugins/webhook`).
pub const WEBHOOK_CRATE: &str = "waymark-webhook";
/// The onboarding journey (`examples/onboarding`).
pub const ONBOARDING_CRATE: &str = "waymark-example-onboarding";
/// `tests/guests/hostile`.
pub const HOSTILE_CRATE: &str = "waymark-test-hostile";
/// `tests/guests/sockets`.
pub const SOCKETS_CRATE: &str = "waymark-test-sockets";
/// `tests/guests/files`.
pub const FILES_CRATE: &str = "waymark-test-files";
/// `tests/guests/ledger`.
pub const LEDGER_CRATE: &str = "waymark-test-ledger";
/// `tests/guests/contract-0-1-0`.
pub const CONTRACT_0_1_0_CRATE: &str = "waymark-test-contract-0-1-0";
/// `tests/guests/channel-0-1-1` (provider feedback, issue 11).
pub const CHANNEL_0_1_1_CRATE: &str = "waymark-test-channel-0-1-1";
/// `tests/guests/migrating`.
pub const MIGRATING_CRATE: &str = "waymark-test-migrating";
/// `tests/guests/renewal-early` (issue 13): the backtest test's candidate.
pub const RENEWAL_EARLY_CRATE: &str = "waymark-test-renewal-early";
/// The email channel adapter (`plugins/email`, issue 11).
pub const EMAIL_CRATE: &str = "waymark-email";

/// The CRM channel adapter (`plugins/crm`, issue 11).
pub const CRM_CRATE: &str = "waymark-crm";
/// `tests/guests/messenger` (issue 11, in-app inbox and unsubscribe).
pub const MESSENGER_CRATE: &str = "waymark-test-messenger";
/// `tests/guests/audience` (issue 12, audience triggers).
pub const AUDIENCE_CRATE: &str = "waymark-test-audience";
/// `tests/guests/audience-bad` (issue 12): a condition that does not parse.
pub const AUDIENCE_BAD_CRATE: &str = "waymark-test-audience-bad";

/// The SMS channel adapter (`plugins/sms`).
pub const SMS_CRATE: &str = "waymark-sms";
/// The Slack channel adapter (`plugins/slack`).
pub const SLACK_CRATE: &str = "waymark-slack";

/// The crate of the journey `examples/<name>`.
pub fn example_crate(name: &str) -> String {
    format!("waymark-example-{name}")
}

/// `cargo` arguments that build every guest of [`GUESTS`] (shared with xtask: one definition).
pub fn guest_build_args() -> Vec<&'static str> {
    let mut args = vec![
        "build",
        "--profile",
        GUEST_PROFILE,
        "--target",
        "wasm32-wasip2",
    ];
    for (krate, _) in GUESTS {
        args.extend(["-p", krate]);
    }
    args
}

/// `cargo` arguments that build the host binary (dev profile).
pub const HOST_BUILD: &[&str] = &["build", "-p", "waymark-host", "--bin", "waymark"];

/// Where the end-to-end tests find what they run and upload.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The `waymark` binary (dev profile).
    pub waymark: PathBuf,
    /// `<target>/wasm32-wasip2/guest`, where the guests' wasm files are.
    pub guests: PathBuf,
}

impl Artifacts {
    /// Where the builds put them; does not build or check.
    pub fn locate() -> Artifacts {
        let target = target_dir();
        Artifacts {
            waymark: target
                .join("debug")
                .join(format!("waymark{}", std::env::consts::EXE_SUFFIX)),
            guests: target.join("wasm32-wasip2").join(GUEST_PROFILE),
        }
    }

    /// The wasm file of the guest crate `krate` (a row of [`GUESTS`]).
    pub fn path(&self, krate: &str) -> PathBuf {
        let (_, file) = GUESTS
            .iter()
            .find(|(name, _)| *name == krate)
            .unwrap_or_else(|| panic!("{krate} is not in GUESTS"));
        self.guests.join(file)
    }

    /// The bytes of the guest crate `krate`, e.g. `artifacts().component(WEBHOOK_CRATE)`.
    pub fn component(&self, krate: &str) -> Vec<u8> {
        let path = self.path(krate);
        fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    fn missing(&self) -> Vec<PathBuf> {
        std::iter::once(self.waymark.clone())
            .chain(GUESTS.iter().map(|(_, file)| self.guests.join(file)))
            .filter(|p| !p.is_file())
            .collect()
    }
}

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `CARGO_TARGET_DIR` (relative to the workspace root if relative), else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The cargo that runs us (cargo sets `CARGO` for what it runs), else `cargo` on the PATH.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The binary and the components, built once per process by `cargo build` (a no-op when fresh)
/// unless `WAYMARK_PREBUILT=1`, set by `cargo xtask`, says they are ready.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let prebuilt = std::env::var("WAYMARK_PREBUILT").is_ok_and(|v| v == "1");
        if !prebuilt {
            for args in [guest_build_args(), HOST_BUILD.to_vec()] {
                let output = Command::new(cargo())
                    .args(&args)
                    .current_dir(workspace_root())
                    .stdin(Stdio::null())
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
                if !output.status.success() {
                    panic!(
                        "`cargo {}` failed ({}); `cargo xtask test` installs the wasm32-wasip2 \
                         target and builds everything first.\n{}",
                        args.join(" "),
                        output.status,
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
            }
        }
        let artifacts = Artifacts::locate();
        let missing = artifacts.missing();
        assert!(
            missing.is_empty(),
            "missing build outputs {missing:?} (WAYMARK_PREBUILT={prebuilt}); run `cargo xtask test`"
        );
        artifacts
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_build_names_every_guest_crate_once() {
        let args = guest_build_args();
        assert_eq!(
            &args[..5],
            ["build", "--profile", "guest", "--target", "wasm32-wasip2"]
        );
        let crates: Vec<&str> = args[5..].chunks(2).map(|pair| pair[1]).collect();
        assert!(args[5..].chunks(2).all(|pair| pair[0] == "-p"));
        assert_eq!(crates, GUESTS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        for krate in [WEBHOOK_CRATE, ONBOARDING_CRATE, HOSTILE_CRATE, LEDGER_CRATE] {
            assert!(crates.contains(&krate), "{krate}");
        }
    }

    #[test]
    fn a_guest_wasm_file_is_its_crate_name_with_underscores() {
        for (krate, file) in GUESTS {
            assert_eq!(*file, format!("{}.wasm", krate.replace('-', "_")));
        }
        let artifacts = Artifacts::locate();
        assert!(artifacts
            .path(&example_crate("birthday"))
            .ends_with("wasm32-wasip2/guest/waymark_example_birthday.wasm"));
    }
}
