//! The one harness behind Waymark's end-to-end tests and `cargo xtask demo`.
//!
//! Everything here drives the real thing from the outside, the way an operator and a tenant
//! would; nothing links the host crate.
//!
//! - [`artifacts`] — the `waymark` binary and the guest components, built once per process
//!   (or found ready when `WAYMARK_PREBUILT=1` says `cargo xtask` built them).
//! - [`Server`] — `waymark serve` as a child process on `127.0.0.1:0` with a temporary data
//!   directory and a manual clock; it can be killed (SIGKILL) and restarted on the same data.
//!   The child's stdout and stderr go to `waymark.log` beside the data, printed when a test fails.
//! - [`Api`] — a typed client for the HTTP API of `docs/API.md`, plus [`Api::request`] for the
//!   raw status and JSON body that error tests look at.
//! - [`Sink`] — an in-process loopback HTTP server that records every request the webhook
//!   channel makes and answers 200, or whatever a test scripts.
//! - [`wait_until`], [`wait_for_some`], [`Sink::wait_for`], [`Api::wait_for_enrollment`] — tests
//!   never sleep and hope: they wait, with generous [`patience`], for an observable condition
//!   and fail showing what they saw instead.
//! - [`Onboarding`] — the fixture most tests start from: a server, a sink, and a tenant with the
//!   onboarding journey and the webhook channel pointed at the sink.
//! - [`Example`] — the same for any journey of `examples/`, with the webhook adapter registered
//!   under several channel names (`email`, `sms`), each posting to its own path of one sink.

use rand::{distr::Alphanumeric, Rng};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub use reqwest::{self, Method, StatusCode};
pub use serde_json::{json, Value};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The journey under test and the channel it sends through.
pub const ONBOARDING: &str = "onboarding";
pub const WEBHOOK: &str = "webhook";

/// How long any wait may take before a test fails: generous, because correctness is asserted,
/// never speed (2 cores, a debug host, components compiled at upload).
/// `WAYMARK_TEST_PATIENCE_SECS` overrides it.
pub fn patience() -> Duration {
    let secs = std::env::var("WAYMARK_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------------------------

/// `cargo` arguments that build the guest components (shared with xtask: one definition).
pub const GUEST_BUILD: &[&str] = &[
    "build",
    "--release",
    "--target",
    "wasm32-wasip2",
    "-p",
    "waymark-webhook",
    "-p",
    "waymark-example-onboarding",
    "-p",
    "waymark-example-guided-onboarding",
    "-p",
    "waymark-example-win-back",
    "-p",
    "waymark-example-renewal",
    "-p",
    "waymark-example-post-purchase",
    "-p",
    "waymark-example-birthday",
    "-p",
    "waymark-example-ab-welcome",
    "-p",
    "waymark-test-hostile",
    "-p",
    "waymark-test-sockets",
    "-p",
    "waymark-test-files",
    "-p",
    "waymark-test-ledger",
];

/// `cargo` arguments that build the host binary (dev profile).
pub const HOST_BUILD: &[&str] = &["build", "-p", "waymark-host", "--bin", "waymark"];

/// What the end-to-end tests run and upload.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub waymark: PathBuf,
    pub onboarding: PathBuf,
    pub webhook: PathBuf,
    /// `tests/guests/hostile`: a journey that misbehaves in a different way per event name.
    pub hostile: PathBuf,
    /// `tests/guests/sockets`: a journey importing `wasi:sockets`, to be refused at upload.
    pub sockets: PathBuf,
    /// `tests/guests/files`: a journey importing `wasi:filesystem`, to be refused at upload.
    pub files: PathBuf,
    /// `tests/guests/ledger`: a journey recording every event and timer in its state.
    pub ledger: PathBuf,
    /// The journeys of `examples/` beside onboarding.
    pub guided_onboarding: PathBuf,
    pub win_back: PathBuf,
    pub renewal: PathBuf,
    pub post_purchase: PathBuf,
    pub birthday: PathBuf,
    pub ab_welcome: PathBuf,
}

impl Artifacts {
    /// Where the builds put them; does not build or check.
    pub fn locate() -> Artifacts {
        let target = target_dir();
        let guests = target.join("wasm32-wasip2").join("release");
        Artifacts {
            waymark: target
                .join("debug")
                .join(format!("waymark{}", std::env::consts::EXE_SUFFIX)),
            onboarding: guests.join("waymark_example_onboarding.wasm"),
            webhook: guests.join("waymark_webhook.wasm"),
            hostile: guests.join("waymark_test_hostile.wasm"),
            sockets: guests.join("waymark_test_sockets.wasm"),
            files: guests.join("waymark_test_files.wasm"),
            ledger: guests.join("waymark_test_ledger.wasm"),
            guided_onboarding: guests.join("waymark_example_guided_onboarding.wasm"),
            win_back: guests.join("waymark_example_win_back.wasm"),
            renewal: guests.join("waymark_example_renewal.wasm"),
            post_purchase: guests.join("waymark_example_post_purchase.wasm"),
            birthday: guests.join("waymark_example_birthday.wasm"),
            ab_welcome: guests.join("waymark_example_ab_welcome.wasm"),
        }
    }

    pub fn onboarding_component(&self) -> Vec<u8> {
        read(&self.onboarding)
    }

    pub fn webhook_component(&self) -> Vec<u8> {
        read(&self.webhook)
    }

    /// The hostile journey's bytes (see `tests/guests/hostile`).
    pub fn hostile_component(&self) -> Vec<u8> {
        read(&self.hostile)
    }

    /// The bytes of the journey that imports `wasi:sockets`.
    pub fn sockets_component(&self) -> Vec<u8> {
        read(&self.sockets)
    }

    /// The bytes of the journey that imports `wasi:filesystem`.
    pub fn files_component(&self) -> Vec<u8> {
        read(&self.files)
    }

    /// The ledger journey's bytes (see `tests/guests/ledger`).
    pub fn ledger_component(&self) -> Vec<u8> {
        read(&self.ledger)
    }

    /// The bytes of any component, e.g. `artifacts().component(&artifacts().renewal)`.
    pub fn component(&self, path: &Path) -> Vec<u8> {
        read(path)
    }

    fn missing(&self) -> Vec<&Path> {
        [
            &self.waymark,
            &self.onboarding,
            &self.webhook,
            &self.hostile,
            &self.sockets,
            &self.files,
            &self.ledger,
            &self.guided_onboarding,
            &self.win_back,
            &self.renewal,
            &self.post_purchase,
            &self.birthday,
            &self.ab_welcome,
        ]
        .into_iter()
        .map(PathBuf::as_path)
        .filter(|p| !p.is_file())
        .collect()
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
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
            for args in [GUEST_BUILD, HOST_BUILD] {
                let output = Command::new(cargo())
                    .args(args)
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

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Manual,
    System,
}

/// How to run `waymark serve`. The default is what every test wants: a fresh temporary
/// directory, a random admin token, the manual clock, and private addresses allowed (the sink
/// is on loopback).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where the data (`<dir>/data`) and the log (`<dir>/waymark.log`) go; a temp dir if `None`.
    pub dir: Option<PathBuf>,
    pub admin_token: Option<String>,
    pub clock: Clock,
    pub allow_private_network: bool,
    /// Extra arguments to `waymark serve`, and extra environment.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The `waymark` binary to run; `None` runs the debug build of [`artifacts`] (building it
    /// if needed). The benches pass the release build.
    pub binary: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            dir: None,
            admin_token: None,
            clock: Clock::Manual,
            allow_private_network: true,
            args: Vec::new(),
            env: Vec::new(),
            binary: None,
        }
    }
}

impl ServerOptions {
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        ServerOptions {
            dir: Some(dir.into()),
            ..Self::default()
        }
    }
}

/// A running `waymark serve`. Dropping it kills the process (and removes a temp dir).
pub struct Server {
    options: ServerOptions,
    dir: PathBuf,
    temp: Option<TempDir>,
    admin_token: String,
    child: Option<Child>,
    url: String,
    starts: u32,
    /// Set when a panic message already carries the log, so Drop does not print it twice.
    log_shown: bool,
    http: reqwest::Client,
}

impl Server {
    /// Spawns the server and waits until it prints `waymark listening on http://IP:PORT`.
    pub async fn start(options: ServerOptions) -> Server {
        let (dir, temp) = match &options.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("waymark-e2e-")
                    .tempdir()
                    .expect("cannot create a temp dir");
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let admin_token = options
            .admin_token
            .clone()
            .unwrap_or_else(|| random_token(32));
        let mut server = Server {
            options,
            dir,
            temp,
            admin_token,
            child: None,
            url: String::new(),
            starts: 0,
            log_shown: false,
            http: http_client(),
        };
        server.spawn().await;
        eprintln!(
            "waymark #{} at {} (log: {})",
            server.starts,
            server.url,
            server.log_path().display()
        );
        server
    }

    /// `http://IP:PORT` of the current process (it changes across restarts).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("waymark.log")
    }

    /// Everything the server printed so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A client for the admin routes (and raw requests).
    pub fn api(&self) -> Api {
        Api {
            http: self.http.clone(),
            base: self.url.clone(),
            admin_token: self.admin_token.clone(),
            key: None,
        }
    }

    /// A client acting as `tenant`.
    pub fn as_tenant(&self, tenant: &Tenant) -> Api {
        self.api().with_key(&tenant.api_key)
    }

    /// The current process's id, while it runs (for `/proc/<pid>/status` and the like).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the current process is still running: it has neither exited nor been killed.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// `kill -9`: no chance to flush or shut down cleanly.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -TERM`: asks for a graceful shutdown and waits for the process to exit; returns
    /// how it exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill -TERM failed");
        child.wait().expect("the server exits")
    }

    /// Kills the process if it runs, then starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
        eprintln!("waymark #{} at {} (restarted)", self.starts, self.url);
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let binary = match &self.options.binary {
            Some(binary) => binary.clone(),
            None => artifacts().waymark.clone(),
        };
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let _ = writeln!(log, "===== waymark start #{} =====", self.starts);
        let stderr = log.try_clone().expect("cannot clone the log file handle");

        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                &self.admin_token,
            ])
            .args([
                "--clock",
                match self.options.clock {
                    Clock::Manual => "manual",
                    Clock::System => "system",
                },
            ]);
        if self.options.allow_private_network {
            command.arg("--allow-private-network");
        }
        command
            .args(&self.options.args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", binary.display()));

        // A thread reads stdout for the listening line, then keeps draining it into the log so
        // the server never blocks on a full pipe.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "[stdout] {line}");
                if let Some(url) = line.strip_prefix("waymark listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });

        let timeout = patience();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(url)) if url.starts_with("http://") => {
                self.url = url.trim_end_matches('/').to_string();
                self.child = Some(child);
            }
            Ok(Ok(url)) => {
                let _ = child.kill();
                self.log_shown = true;
                let _ = child.wait();
                panic!(
                    "waymark printed a listening URL that is not http://IP:PORT: {url:?}\n{}",
                    self.log_tail()
                );
            }
            Ok(Err(_)) => {
                // stdout closed before the line: the process is gone or going.
                self.log_shown = true;
                let status = child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                panic!(
                    "waymark exited ({status}) before it was listening.\n{}",
                    self.log_tail()
                );
            }
            Err(_) => {
                let _ = child.kill();
                self.log_shown = true;
                let _ = child.wait();
                panic!(
                    "waymark did not print `waymark listening on http://IP:PORT` within {timeout:?}.\n{}",
                    self.log_tail()
                );
            }
        }
    }

    fn log_tail(&self) -> String {
        const MAX: usize = 64 * 1024;
        let log = self.log();
        let tail = if log.len() > MAX {
            let mut cut = log.len() - MAX;
            while !log.is_char_boundary(cut) {
                cut += 1;
            }
            &log[cut..]
        } else {
            &log[..]
        };
        format!(
            "----- {} -----\n{tail}\n----- end of log -----",
            self.log_path().display()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            if !self.log_shown {
                eprintln!("{}", self.log_tail());
            }
            if std::env::var_os("WAYMARK_KEEP_TEST_DATA").is_some() {
                if let Some(temp) = self.temp.take() {
                    eprintln!("kept {}", temp.keep().display());
                }
            } else if self.temp.is_some() {
                eprintln!("(set WAYMARK_KEEP_TEST_DATA=1 to keep the data directory)");
            }
        }
    }
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(patience())
        .build()
        .expect("cannot build the HTTP client")
}

// ---------------------------------------------------------------------------------------------
// API client
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub api_key: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JourneyVersion {
    pub name: String,
    pub version: u32,
    pub digest: String,
    #[serde(default)]
    pub spec: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChannelVersion {
    pub name: String,
    pub version: u32,
    pub digest: String,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// The answer to `POST /v1/events`.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsAccepted {
    pub accepted: u64,
    pub duplicates: u64,
    #[serde(default)]
    pub results: Vec<EventResult>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventResult {
    pub id: String,
    /// `accepted` or `duplicate`.
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub attributes: Value,
    #[serde(default)]
    pub enrollments: Vec<Enrollment>,
    #[serde(default)]
    pub messages: Vec<Message>,
}

impl Customer {
    /// The customer's latest run in `journey`.
    pub fn enrollment(&self, journey: &str) -> Option<&Enrollment> {
        self.enrollments
            .iter()
            .filter(|e| e.journey == journey)
            .max_by_key(|e| e.run)
    }

    /// Every run of the customer in `journey`, first run first.
    pub fn enrollments_in(&self, journey: &str) -> Vec<&Enrollment> {
        let mut runs: Vec<&Enrollment> = self
            .enrollments
            .iter()
            .filter(|e| e.journey == journey)
            .collect();
        runs.sort_by_key(|e| e.run);
        runs
    }

    pub fn messages_with_template(&self, template: &str) -> Vec<&Message> {
        self.messages
            .iter()
            .filter(|m| m.template == template)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Completed,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Enrollment {
    pub id: String,
    pub journey: String,
    #[serde(default)]
    pub version: u32,
    pub customer: String,
    #[serde(default)]
    pub run: u32,
    /// The re-entry key's value, for journeys keyed by an event property.
    #[serde(default)]
    pub key: Option<String>,
    pub status: Status,
    pub entered_at: i64,
    #[serde(default)]
    pub ended_at: Option<i64>,
    #[serde(default)]
    pub exit_reason: Option<String>,
    #[serde(default)]
    pub milestones: Vec<MilestoneHit>,
    /// Every stall so far: the milestone not reached in time, and when.
    #[serde(default)]
    pub stalls: Vec<MilestoneHit>,
    /// The milestone the enrollment is stalled on now.
    #[serde(default)]
    pub stalled_on: Option<String>,
    /// Experiment arms: `[{"experiment", "arm"}]`.
    #[serde(default)]
    pub variants: Vec<Value>,
    /// The journey's own state bytes.
    #[serde(default)]
    pub state: Vec<u8>,
    #[serde(default)]
    pub timers: Vec<Timer>,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSummary>,
    #[serde(default)]
    pub failure: Option<Failure>,
}

/// Why the last trigger of an enrollment failed (`failure` in docs/API.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Failure {
    /// The trigger's kind: `entered`, `event`, `timer`, ...
    pub trigger: String,
    /// `trap`, `deadline`, `memory`, `guest_error`, `invalid_commands`, `instantiate`, ...
    pub reason: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The trigger's `now` (ms).
    pub at: i64,
}

impl Enrollment {
    pub fn milestone(&self, name: &str) -> Option<&MilestoneHit> {
        self.milestones.iter().find(|m| m.name == name)
    }

    pub fn timer(&self, name: &str) -> Option<&Timer> {
        self.timers.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MilestoneHit {
    pub name: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Timer {
    pub name: String,
    pub due: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ChannelSummary {
    #[serde(default)]
    pub sent: u64,
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub suppressed: u64,
    #[serde(default)]
    pub opened: u64,
    #[serde(default)]
    pub clicked: u64,
    #[serde(default)]
    pub replied: u64,
    #[serde(default)]
    pub bounced: u64,
    #[serde(default)]
    pub unsubscribed: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub id: String,
    #[serde(default)]
    pub journey: String,
    #[serde(default)]
    pub enrollment: String,
    pub channel: String,
    pub template: String,
    #[serde(default)]
    pub payload: Value,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub delivered_at: Option<i64>,
    /// When a message held by the sending policy may go out (journey time).
    #[serde(default)]
    pub release_at: Option<i64>,
}

/// The answer to `POST /v1/journeys/{name}/decide`: what a stored version decided, with no
/// effect on anything.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Decided {
    /// The journey.
    pub name: String,
    /// The version that decided: the one asked for, or the latest.
    pub version: u32,
    /// Commands in the host's JSON form: `{"command": "send", "channel", "template",
    /// "payload"}`, `{"command": "set_state", "state": [bytes]}`, ...
    pub commands: Vec<Value>,
}

impl Decided {
    /// The payloads of the sends of `template`, in order.
    pub fn payloads(&self, template: &str) -> Vec<&Value> {
        self.commands
            .iter()
            .filter(|c| c["command"] == "send" && c["template"] == template)
            .map(|c| &c["payload"])
            .collect()
    }
}

/// A request body for [`Api::request`].
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Value),
    Raw {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
}

impl Body {
    /// Text sent as `application/json`, valid or (the point of it) not.
    pub fn json_text(text: &str) -> Body {
        Body::Raw {
            content_type: "application/json",
            bytes: text.as_bytes().to_vec(),
        }
    }

    pub fn wasm(bytes: Vec<u8>) -> Body {
        Body::Raw {
            content_type: "application/wasm",
            bytes,
        }
    }
}

impl From<Value> for Body {
    fn from(value: Value) -> Body {
        Body::Json(value)
    }
}

/// A client of one server process: admin routes with the admin token, tenant routes with the
/// key given to [`Api::with_key`] (or [`Server::as_tenant`]).
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    admin_token: String,
    key: Option<String>,
}

impl Api {
    pub fn with_key(&self, key: &str) -> Api {
        Api {
            key: Some(key.to_string()),
            ..self.clone()
        }
    }

    /// Any request, with `Authorization: Bearer <key>` if a key is given; the status and the
    /// body as JSON (a body that is not JSON comes back as a JSON string).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request = match body.into() {
            Body::Empty => request,
            Body::Json(value) => request.json(&value),
            Body::Raw {
                content_type,
                bytes,
            } => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: cannot read the body: {e}"));
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Body>,
        want: StatusCode,
    ) -> Value {
        let (status, value) = self
            .request(method.clone(), path, Some(&self.admin_token), body)
            .await;
        expect_status(&method, path, status, &value, want);
        value
    }

    async fn tenant(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Body>,
        want: StatusCode,
    ) -> Value {
        let key = self
            .key
            .as_deref()
            .expect("a tenant route needs a tenant client: Server::as_tenant");
        let (status, value) = self.request(method.clone(), path, Some(key), body).await;
        expect_status(&method, path, status, &value, want);
        value
    }

    /// `GET /healthz` answers 200.
    pub async fn healthy(&self) -> bool {
        self.request(Method::GET, "/healthz", None, Body::Empty)
            .await
            .0
            == StatusCode::OK
    }

    pub async fn create_tenant(&self, name: &str) -> Tenant {
        let value = self
            .admin(
                Method::POST,
                "/v1/admin/tenants",
                json!({ "name": name }),
                StatusCode::CREATED,
            )
            .await;
        parse(value, "tenant")
    }

    /// The server's now (ms).
    pub async fn clock_now(&self) -> i64 {
        let value = self
            .admin(Method::GET, "/v1/admin/clock", Body::Empty, StatusCode::OK)
            .await;
        value["now"]
            .as_i64()
            .unwrap_or_else(|| panic!("clock without `now`: {value}"))
    }

    /// Moves the manual clock forward; returns the new now.
    pub async fn advance_clock(&self, by_ms: i64) -> i64 {
        let value = self
            .admin(
                Method::POST,
                "/v1/admin/clock/advance",
                json!({ "by_ms": by_ms }),
                StatusCode::OK,
            )
            .await;
        value["now"]
            .as_i64()
            .unwrap_or_else(|| panic!("advance without `now`: {value}"))
    }

    pub async fn upload_journey(&self, name: &str, component: Vec<u8>) -> JourneyVersion {
        let value = self
            .tenant(
                Method::PUT,
                &format!("/v1/journeys/{name}"),
                Body::wasm(component),
                StatusCode::CREATED,
            )
            .await;
        parse(value, "journey version")
    }

    pub async fn register_channel(
        &self,
        name: &str,
        component: &[u8],
        settings: Value,
        secrets: Value,
        allowed_hosts: &[String],
    ) -> ChannelVersion {
        use base64::Engine as _;
        let body = json!({
            "component": base64::engine::general_purpose::STANDARD.encode(component),
            "settings": settings,
            "secrets": secrets,
            "allowed_hosts": allowed_hosts,
        });
        let value = self
            .tenant(
                Method::PUT,
                &format!("/v1/channels/{name}"),
                body,
                StatusCode::CREATED,
            )
            .await;
        parse(value, "channel version")
    }

    /// Posts a batch; panics unless it is accepted (202).
    pub async fn post_events(&self, events: &[Value]) -> EventsAccepted {
        let value = self
            .tenant(
                Method::POST,
                "/v1/events",
                Value::Array(events.to_vec()),
                StatusCode::ACCEPTED,
            )
            .await;
        parse(value, "events answer")
    }

    /// The customer's profile, enrollments and messages; `None` on 404.
    pub async fn customer(&self, id: &str) -> Option<Customer> {
        let key = self
            .key
            .as_deref()
            .expect("a tenant route needs a tenant client: Server::as_tenant");
        let path = format!("/v1/customers/{id}");
        let (status, value) = self
            .request(Method::GET, &path, Some(key), Body::Empty)
            .await;
        if status == StatusCode::NOT_FOUND {
            return None;
        }
        expect_status(&Method::GET, &path, status, &value, StatusCode::OK);
        Some(parse(value, "customer"))
    }

    /// `POST /v1/journeys/{journey}/decide` with `body` (`{"version"?, "context", "stats"?}`);
    /// panics unless it answers 200.
    pub async fn dry_run_decide(&self, journey: &str, body: Value) -> Decided {
        let value = self
            .tenant(
                Method::POST,
                &format!("/v1/journeys/{journey}/decide"),
                body,
                StatusCode::OK,
            )
            .await;
        parse(value, "dry-run decision")
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let (status, value) = self
            .request(Method::GET, "/metrics", None, Body::Empty)
            .await;
        expect_status(&Method::GET, "/metrics", status, &value, StatusCode::OK);
        match value {
            Value::String(text) => text,
            other => panic!("/metrics is not Prometheus text: {other}"),
        }
    }

    /// `GET /v1/journeys/{journey}/report`: the whole answer (`{"name", "latest_version",
    /// "report": {"overall", "by_version", "by_arm"}}`); panics unless it answers 200.
    pub async fn report(&self, journey: &str) -> Value {
        self.tenant(
            Method::GET,
            &format!("/v1/journeys/{journey}/report"),
            Body::Empty,
            StatusCode::OK,
        )
        .await
    }

    /// `GET /v1/tasks?{query}` (e.g. `status=open&queue=cs`): the tasks, most urgent first.
    pub async fn tasks(&self, query: &str) -> Vec<Value> {
        let value = self
            .tenant(
                Method::GET,
                &format!("/v1/tasks?{query}"),
                Body::Empty,
                StatusCode::OK,
            )
            .await;
        match value.get("tasks") {
            Some(Value::Array(tasks)) => tasks.clone(),
            _ => panic!("tasks answer without `tasks`: {value}"),
        }
    }

    /// `POST /v1/tasks/{id}/claim`; panics unless it answers 200. Returns the task.
    pub async fn claim_task(&self, id: &str, assignee: &str) -> Value {
        self.tenant(
            Method::POST,
            &format!("/v1/tasks/{id}/claim"),
            json!({ "assignee": assignee }),
            StatusCode::OK,
        )
        .await
    }

    /// `POST /v1/tasks/{id}/resolve`; panics unless it answers 200. Returns the task.
    pub async fn resolve_task(&self, id: &str, resolution: &str, properties: Value) -> Value {
        self.tenant(
            Method::POST,
            &format!("/v1/tasks/{id}/resolve"),
            json!({ "resolution": resolution, "properties": properties }),
            StatusCode::OK,
        )
        .await
    }

    /// Polls the customer until their enrollment in `journey` satisfies `holds`; on timeout
    /// panics showing the last view of the customer.
    pub async fn wait_for_enrollment(
        &self,
        customer: &str,
        journey: &str,
        what: &str,
        holds: impl Fn(&Enrollment) -> bool,
    ) -> Enrollment {
        let timeout = patience();
        let start = Instant::now();
        loop {
            let seen = self.customer(customer).await;
            if let Some(enrollment) = seen.as_ref().and_then(|c| c.enrollment(journey)) {
                if holds(enrollment) {
                    return enrollment.clone();
                }
            }
            if start.elapsed() > timeout {
                panic!(
                    "waited {timeout:?} for {customer}'s {journey} enrollment: {what}; last seen: {seen:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[track_caller]
fn expect_status(method: &Method, path: &str, status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{method} {path} answered {status}: {body}");
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what} does not match docs/API.md ({e}): {value}"))
}

/// Asserts an API error: the status, and a body `{"error": {"code": <code>, "message": <text>}}`.
#[track_caller]
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got, body) = answer;
    assert_eq!(
        *got, status,
        "expected {status} `{code}`, got {got}: {body}"
    );
    assert_eq!(body["error"]["code"], code, "error code, in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message must be non-empty text: {body}"
    );
}

/// The sum of every sample of `metric` in Prometheus `text` whose labels include `label="value"`
/// (0 when there is none): `metric_sum(&text, "waymark_trigger_failures_total", ("reason",
/// "deadline"))`.
pub fn metric_sum(text: &str, metric: &str, (label, value): (&str, &str)) -> f64 {
    let wanted = format!("{label}=\"{value}\"");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, sample) = line.rsplit_once(' ')?;
            let labels = series.strip_prefix(metric)?.strip_prefix('{')?;
            let labels = labels.strip_suffix('}')?;
            labels
                .split(',')
                .any(|l| l == wanted)
                .then(|| sample.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// An event as a tenant posts it: no properties, stamped by the server's clock.
pub fn event(id: &str, customer: &str, name: &str) -> Value {
    json!({ "id": id, "customer": customer, "name": name })
}

/// An event with properties, stamped by the server's clock.
pub fn event_with(id: &str, customer: &str, name: &str, properties: Value) -> Value {
    json!({ "id": id, "customer": customer, "name": name, "properties": properties })
}

/// An `identify` event setting `traits` as the customer's attributes.
pub fn identify(id: &str, customer: &str, traits: Value) -> Value {
    event_with(id, customer, "identify", json!({ "traits": traits }))
}

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic (UTC), for tests of journeys that work in dates
// ---------------------------------------------------------------------------------------------

/// The UTC calendar date `(year, month, day)` of a timestamp in milliseconds.
pub fn utc_date(at_ms: i64) -> (i64, u32, u32) {
    // Howard Hinnant's civil_from_days.
    let z = at_ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Midnight UTC at the start of `year-month-day`, in milliseconds.
pub fn utc_midnight(year: i64, month: u32, day: u32) -> i64 {
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * DAY_MS
}

/// `YYYY-MM-DD` of a timestamp, in UTC.
pub fn utc_date_string(at_ms: i64) -> String {
    let (y, m, d) = utc_date(at_ms);
    format!("{y:04}-{m:02}-{d:02}")
}

// ---------------------------------------------------------------------------------------------
// Sink
// ---------------------------------------------------------------------------------------------

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or a JSON string of the raw text if it is not JSON.
    pub body: Value,
    /// The status the sink answered with.
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }

    /// The webhook body's template.
    pub fn template(&self) -> Option<&str> {
        self.body["template"].as_str()
    }

    /// The webhook body's customer id.
    pub fn customer(&self) -> Option<&str> {
        self.body["customer"]["id"].as_str()
    }

    /// A webhook delivery of `template` to `customer`.
    pub fn is(&self, template: &str, customer: &str) -> bool {
        self.template() == Some(template) && self.customer() == Some(customer)
    }

    /// The channel an [`Example`] delivered it through: the first segment of the path.
    pub fn channel(&self) -> &str {
        self.path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
    }

    /// The webhook body's payload.
    pub fn payload(&self) -> &Value {
        &self.body["payload"]
    }
}

/// How many of `received` are deliveries of `template` to `customer`.
pub fn count(received: &[Received], template: &str, customer: &str) -> usize {
    received.iter().filter(|r| r.is(template, customer)).count()
}

struct SinkState {
    received: Mutex<Vec<Received>>,
    script: Mutex<Script>,
    /// Count requests, answer 200, record nothing ([`Sink::quiet`]).
    quiet: bool,
    count: std::sync::atomic::AtomicU64,
}

struct Script {
    next: VecDeque<StatusCode>,
    default: StatusCode,
}

/// A loopback HTTP server recording every request. It runs on its own thread and runtime, so
/// it keeps answering whatever the test's own runtime is doing.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    pub fn start() -> Sink {
        Sink::start_with(false)
    }

    /// A sink that answers 200 to everything and only counts ([`Sink::count`]): for loads of
    /// a million deliveries, which a recording sink would hold in memory.
    pub fn quiet() -> Sink {
        Sink::start_with(true)
    }

    fn start_with(quiet: bool) -> Sink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind the sink");
        listener
            .set_nonblocking(true)
            .expect("nonblocking sink listener");
        let addr = listener.local_addr().expect("sink address");
        let state = Arc::new(SinkState {
            received: Mutex::new(Vec::new()),
            script: Mutex::new(Script {
                next: VecDeque::new(),
                default: StatusCode::OK,
            }),
            quiet,
            count: Default::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let thread = std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("sink runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("sink listener");
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result { eprintln!("sink stopped: {e}") }
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here aborts open connections.
            })
            .expect("cannot start the sink thread");
        Sink {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (append any path).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, for a channel's `allowed_hosts`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// How many requests arrived so far (recorded or not).
    pub fn count(&self) -> u64 {
        self.state.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Answers the next `n` requests with `status` (then the default again).
    pub fn respond_next(&self, n: usize, status: StatusCode) {
        let mut script = self.state.script.lock().unwrap();
        script.next.extend(std::iter::repeat_n(status, n));
    }

    /// Answers every unscripted request with `status` (200 unless changed).
    pub fn respond_by_default(&self, status: StatusCode) {
        self.state.script.lock().unwrap().default = status;
    }

    /// Waits until `holds` is true of everything received; returns what was received then.
    pub async fn wait_for(&self, what: &str, holds: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let timeout = patience();
        let start = Instant::now();
        loop {
            let received = self.requests();
            if holds(&received) {
                return received;
            }
            if start.elapsed() > timeout {
                panic!(
                    "waited {timeout:?} for the sink to receive {what}; it received:\n{}",
                    describe(&received)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the first webhook delivery of `template` to `customer`.
    pub async fn wait_for_delivery(&self, template: &str, customer: &str) -> Received {
        let received = self
            .wait_for(&format!("`{template}` for {customer}"), |r| {
                count(r, template, customer) > 0
            })
            .await;
        received
            .into_iter()
            .find(|r| r.is(template, customer))
            .expect("just seen")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn record(
    axum::extract::State(state): axum::extract::State<Arc<SinkState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let n = state
        .count
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    if state.quiet {
        return (
            StatusCode::OK,
            axum::Json(json!({ "id": format!("sink-{n}") })),
        );
    }
    let status = {
        let mut script = state.script.lock().unwrap();
        let default = script.default;
        script.next.pop_front().unwrap_or(default)
    };
    let mut received = state.received.lock().unwrap();
    received.push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        answered: status.as_u16(),
    });
    let id = format!("sink-{}", received.len());
    (status, axum::Json(json!({ "id": id })))
}

/// One line per request, for failure messages and the demo.
pub fn describe(received: &[Received]) -> String {
    if received.is_empty() {
        return "  (nothing)".to_string();
    }
    let mut out = String::new();
    for (i, r) in received.iter().enumerate() {
        let _ = writeln!(
            out,
            "  #{i} {} {} -> {} template={} customer={} idempotency-key={} body={}",
            r.method,
            r.path,
            r.answered,
            r.template().unwrap_or("-"),
            r.customer().unwrap_or("-"),
            r.idempotency_key().unwrap_or("-"),
            r.body
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// Polls `check` until it is true; panics naming `what` after [`patience`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_some(what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `get` until it returns `Some`; returns the value; panics naming `what` after
/// [`patience`].
pub async fn wait_for_some<T, F, Fut>(what: &str, mut get: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let timeout = patience();
    let start = Instant::now();
    loop {
        if let Some(value) = get().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("waited {timeout:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The onboarding fixture
// ---------------------------------------------------------------------------------------------

/// A server, a sink, and a tenant with the onboarding journey uploaded and the `webhook`
/// channel delivering to the sink at `<sink>/webhook`.
pub struct Onboarding {
    pub server: Server,
    pub sink: Sink,
    pub tenant: Tenant,
    pub journey: JourneyVersion,
}

impl Onboarding {
    /// In a temp dir, as tenant `acme`.
    pub async fn start() -> Onboarding {
        Onboarding::start_with(ServerOptions::default(), "acme").await
    }

    pub async fn start_with(options: ServerOptions, tenant: &str) -> Onboarding {
        let artifacts = artifacts();
        let sink = Sink::start();
        let server = Server::start(options).await;
        let tenant = server.api().create_tenant(tenant).await;
        let api = server.as_tenant(&tenant);
        api.register_channel(
            WEBHOOK,
            &artifacts.webhook_component(),
            json!({ "url": format!("{}/webhook", sink.url()) }),
            json!({}),
            &[sink.authority()],
        )
        .await;
        let journey = api
            .upload_journey(ONBOARDING, artifacts.onboarding_component())
            .await;
        Onboarding {
            server,
            sink,
            tenant,
            journey,
        }
    }

    /// The tenant's client for the current server process.
    pub fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    /// The admin client for the current server process.
    pub fn admin(&self) -> Api {
        self.server.api()
    }

    /// Posts one event and expects it accepted (not a duplicate).
    pub async fn post(&self, id: &str, customer: &str, name: &str) {
        let answer = self.api().post_events(&[event(id, customer, name)]).await;
        assert_eq!(answer.accepted, 1, "event {id} not accepted: {answer:?}");
    }

    /// Signs `customer` up and waits for their welcome at the sink.
    pub async fn sign_up(&self, customer: &str) -> Received {
        self.post(&format!("{customer}-signed-up"), customer, "signed_up")
            .await;
        self.sink.wait_for_delivery("welcome", customer).await
    }
}

// ---------------------------------------------------------------------------------------------
// The examples fixture
// ---------------------------------------------------------------------------------------------

/// A server, a sink, and a tenant with one journey uploaded and the webhook adapter registered
/// under each of `channels`, channel `name` posting to `<sink>/<name>` (so
/// [`Received::channel`] tells them apart).
pub struct Example {
    pub server: Server,
    pub sink: Sink,
    pub tenant: Tenant,
    pub journey: JourneyVersion,
}

impl Example {
    /// In a temp dir, as tenant `acme`, with journey `name` (the component at `component`).
    pub async fn start(name: &str, component: &Path, channels: &[&str]) -> Example {
        let artifacts = artifacts();
        let sink = Sink::start();
        let server = Server::start(ServerOptions::default()).await;
        let tenant = server.api().create_tenant("acme").await;
        let api = server.as_tenant(&tenant);
        for channel in channels {
            api.register_channel(
                channel,
                &artifacts.webhook_component(),
                json!({ "url": format!("{}/{channel}", sink.url()) }),
                json!({}),
                &[sink.authority()],
            )
            .await;
        }
        let journey = api
            .upload_journey(name, artifacts.component(component))
            .await;
        Example {
            server,
            sink,
            tenant,
            journey,
        }
    }

    /// The tenant's client.
    pub fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    /// The admin client.
    pub fn admin(&self) -> Api {
        self.server.api()
    }

    /// Posts events (one batch) and expects every one accepted.
    pub async fn post(&self, events: &[Value]) {
        let answer = self.api().post_events(events).await;
        assert_eq!(
            answer.accepted,
            events.len() as u64,
            "not all accepted: {answer:?}"
        );
    }

    /// This journey's report (`report` of `GET /v1/journeys/{name}/report`).
    pub async fn report(&self) -> Value {
        let answer = self.api().report(&self.journey.name).await;
        answer["report"].clone()
    }

    /// Polls `customer` until their latest run of this journey satisfies `holds`.
    pub async fn wait_for(
        &self,
        customer: &str,
        what: &str,
        holds: impl Fn(&Enrollment) -> bool,
    ) -> Enrollment {
        self.api()
            .wait_for_enrollment(customer, &self.journey.name, what, holds)
            .await
    }

    /// Waits until the sink received `template` for `customer` through `channel`; returns it.
    pub async fn delivered(&self, channel: &str, template: &str, customer: &str) -> Received {
        let matches = |r: &Received| r.channel() == channel && r.is(template, customer);
        let received = self
            .sink
            .wait_for(
                &format!("`{template}` for {customer} through {channel}"),
                |received| received.iter().any(matches),
            )
            .await;
        received.into_iter().find(matches).expect("just seen")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_calendar_helpers_agree_with_known_dates() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_midnight(1970, 1, 1), 0);
        // 2026-03-01T00:00:00Z, and the leap day before 2028-03-01.
        assert_eq!(utc_midnight(2026, 3, 1), 1_772_323_200_000);
        assert_eq!(utc_date(1_772_323_200_000 - 1), (2026, 2, 28));
        assert_eq!(utc_date(utc_midnight(2028, 3, 1) - 1), (2028, 2, 29));
        assert_eq!(
            utc_date_string(utc_midnight(1969, 12, 31) + HOUR_MS),
            "1969-12-31"
        );
        for day in (-800..800).map(|d| d * 37) {
            let at = day * DAY_MS;
            let (y, m, d) = utc_date(at);
            assert_eq!(utc_midnight(y, m, d), at);
        }
    }

    #[test]
    fn metric_sum_adds_the_samples_with_the_label_and_ignores_the_rest() {
        let text = "\
# HELP waymark_trigger_failures Triggers that failed, by reason.
# TYPE waymark_trigger_failures counter
waymark_trigger_failures_total{reason=\"deadline\"} 2
waymark_trigger_failures_total{tenant=\"t1\",reason=\"deadline\"} 1
waymark_trigger_failures_total{reason=\"trap\"} 5
waymark_trigger_failures_total_extra{reason=\"deadline\"} 7
waymark_triggers_total{kind=\"event\"} 9
";
        let sum = |reason| metric_sum(text, "waymark_trigger_failures_total", ("reason", reason));
        assert_eq!(sum("deadline"), 3.0);
        assert_eq!(sum("trap"), 5.0);
        assert_eq!(sum("memory"), 0.0);
    }

    #[tokio::test]
    async fn sink_records_requests_and_follows_its_script() {
        let sink = Sink::start();
        sink.respond_next(1, StatusCode::SERVICE_UNAVAILABLE);
        let http = http_client();
        let post = || {
            http.post(format!("{}/webhook", sink.url()))
                .header("Idempotency-Key", "k1")
                .json(&json!({ "template": "welcome", "customer": { "id": "ada" } }))
                .send()
        };
        assert_eq!(
            post().await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(post().await.unwrap().status(), StatusCode::OK);

        let received = sink.wait_for("two requests", |r| r.len() == 2).await;
        assert_eq!(
            received.iter().map(|r| r.answered).collect::<Vec<_>>(),
            [503, 200]
        );
        assert!(received[1].is("welcome", "ada"));
        assert_eq!(received[1].idempotency_key(), Some("k1"));
        assert_eq!(received[1].path, "/webhook");
        assert_eq!(count(&received, "welcome", "ada"), 2);
    }
}
