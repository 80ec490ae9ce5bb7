//! `waymark serve` as a child process on `127.0.0.1:0` with a temporary data directory and a
//! manual clock. It can be killed (SIGKILL), terminated (SIGTERM) and restarted on the same
//! data; its stdout and stderr go to `waymark.log` beside the data, printed when a test fails.

use crate::api::Api;
use crate::artifacts::artifacts;
use crate::wait::patience;
use rand::{distr::Alphanumeric, Rng};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;
use waymark_api::tenants::CreatedTenant;

/// Which clock the server runs on (`--clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Moves only when a test advances it.
    Manual,
    /// The wall clock.
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
        Api::new(self.http.clone(), &self.url, &self.admin_token)
    }

    /// A client acting as `tenant`.
    pub fn as_tenant(&self, tenant: &CreatedTenant) -> Api {
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

    /// [`Server::restart`] with `args` as the extra arguments to `waymark serve` from now on.
    pub async fn restart_with_args(&mut self, args: &[&str]) {
        self.options.args = args.iter().map(|a| a.to_string()).collect();
        self.restart().await;
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

pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(patience())
        .build()
        .expect("cannot build the HTTP client")
}
