//! Real NATS servers with JetStream, as child processes, for the cluster tests (issue 16).
//!
//! [`NatsCluster`] runs one or more `nats-server`s on free loopback ports, each with its config
//! file and JetStream store under one temporary directory and its stdout and stderr in
//! `n<N>.log` beside them (printed when a test fails). A node can be killed (SIGKILL) and
//! restarted on the same ports and store, or paused (SIGSTOP) as a hung machine would be.
//! [`NatsCluster::wait_ready`] watches every node's monitoring endpoint (`/jsz`) until
//! JetStream is up and every live node names the same live meta leader.
//!
//! Nodes are counted from 0 in the API (`kill(1)`) and named from 1 in the servers' own
//! vocabulary (`n2`), as their logs and `/jsz` show them. The program is Debian's
//! `nats-server` (2.9), which `cargo xtask test` installs. Everything here blocks: a wait
//! polls with [`std::thread::sleep`], never longer than [`patience`].

use crate::wait::patience;
use serde_json::Value;
use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The name the servers give their cluster (`/jsz`'s `meta_cluster.name`).
pub const CLUSTER_NAME: &str = "wm";

/// How many times [`NatsCluster::start`] picks new ports when one was taken between choosing it
/// and the server binding it.
const START_ATTEMPTS: u32 = 3;

/// How much of each node's log a failing test prints.
const LOG_TAIL: usize = 16 * 1024;

/// Where `nats-server` is: on PATH, else in /usr/sbin (where Debian puts it, often off a
/// non-root PATH) or /usr/bin. Panics saying how to install it.
pub fn nats_server() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed: run the tests with `cargo xtask test`, which \
                 installs Debian's nats-server"
            )
        })
}

/// A running cluster of `nats-server`s with JetStream. Dropping it kills every node (and
/// removes the temp dir, unless `WAYMARK_KEEP_TEST_DATA` is set and a test failed).
pub struct NatsCluster {
    program: PathBuf,
    temp: Option<TempDir>,
    nodes: Vec<Node>,
}

/// One server: its ports stay the same across restarts, so the others' routes find it again.
struct Node {
    name: String,
    client: u16,
    monitor: u16,
    config: PathBuf,
    log: PathBuf,
    /// Behind a lock so that [`NatsCluster::wait_ready`] (`&self`) can notice an exit.
    child: Mutex<Option<Child>>,
    paused: AtomicBool,
    starts: u32,
}

/// Why a wait ended before the cluster was ready.
enum Unready {
    /// Node `i` exited on its own.
    Exited(usize),
    /// Patience ran out; what the nodes said last.
    TimedOut(String),
}

impl NatsCluster {
    /// Starts `nodes` servers (one is a lone server, no cluster) and waits until they are
    /// ready as [`NatsCluster::wait_ready`] says.
    pub fn start(nodes: usize) -> NatsCluster {
        assert!(nodes >= 1, "a NATS cluster has at least one node");
        let program = nats_server();
        let started = Instant::now();
        for attempt in 1..=START_ATTEMPTS {
            let cluster = NatsCluster::spawn(program.clone(), nodes);
            match cluster.wait() {
                Ok(()) => {
                    eprintln!(
                        "NATS cluster of {nodes} ready in {:.1} s at {} (logs in {})",
                        started.elapsed().as_secs_f64(),
                        cluster.urls().join(", "),
                        cluster.dir().display()
                    );
                    return cluster;
                }
                // Another process took a port between our choosing it and the server binding
                // it: choose again.
                Err(Unready::Exited(i))
                    if attempt < START_ATTEMPTS
                        && cluster.log(i).contains("address already in use") =>
                {
                    eprintln!("{} found a port taken; starting over", cluster.name(i));
                }
                Err(unready) => cluster.fail(unready),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Writes the configs and spawns every node, without waiting.
    fn spawn(program: PathBuf, count: usize) -> NatsCluster {
        let temp = tempfile::Builder::new()
            .prefix("waymark-nats-")
            .tempdir()
            .expect("cannot create a temp dir");
        let dir = temp.path();
        let clustered = count > 1;
        // Client, monitoring and (in a cluster) route port per node, all chosen at once so
        // that no two are the same.
        let ports = free_ports(count * if clustered { 3 } else { 2 });
        let (clients, rest) = ports.split_at(count);
        let (monitors, routes) = rest.split_at(count);
        let route_urls = routes
            .iter()
            .map(|port| format!("nats-route://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(", ");
        let nodes = (0..count)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let store = dir.join(&name);
                let mut config = format!(
                    "server_name: {name}\n\
                     listen: 127.0.0.1:{client}\n\
                     http: 127.0.0.1:{monitor}\n\
                     jetstream {{ store_dir: \"{store}\", max_memory_store: 256MB, max_file_store: 4GB }}\n",
                    client = clients[i],
                    monitor = monitors[i],
                    store = store.display(),
                );
                if clustered {
                    config.push_str(&format!(
                        "cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{}, routes: [{route_urls}] }}\n",
                        routes[i]
                    ));
                }
                let config_path = dir.join(format!("{name}.conf"));
                fs::write(&config_path, config)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
                Node {
                    log: dir.join(format!("{name}.log")),
                    name,
                    client: clients[i],
                    monitor: monitors[i],
                    config: config_path,
                    child: Mutex::new(None),
                    paused: AtomicBool::new(false),
                    starts: 0,
                }
            })
            .collect();
        let mut cluster = NatsCluster {
            program,
            temp: Some(temp),
            nodes,
        };
        for i in 0..count {
            cluster.spawn_node(i);
        }
        cluster
    }

    fn spawn_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", node.log.display()));
        let _ = writeln!(log, "===== {} start #{} =====", node.name, node.starts);
        let stderr = log.try_clone().expect("cannot clone the log file handle");
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", self.program.display()));
        *node.child.lock().unwrap() = Some(child);
        node.paused.store(false, Ordering::SeqCst);
    }

    /// How many nodes the cluster has, running or not.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The server name of node `i`: `n1` for node 0.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// `nats://127.0.0.1:PORT` of every node, for a client's server list.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// `nats://127.0.0.1:PORT` of node `i` (the same across restarts).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client)
    }

    /// Where the configs, the stores and the logs are.
    pub fn dir(&self) -> &Path {
        self.temp
            .as_ref()
            .expect("the temp dir is kept until drop")
            .path()
    }

    /// Everything node `i` printed so far, across restarts.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Node `i`'s JetStream report (`GET /jsz` on its monitoring port); panics if it does not
    /// answer (killed, paused, still starting).
    pub fn jsz(&self, i: usize) -> Value {
        jsz(self.nodes[i].monitor)
            .unwrap_or_else(|e| panic!("{}'s /jsz did not answer: {e}", self.name(i)))
    }

    /// The node the live nodes name as the JetStream meta leader, if they agree on a live one
    /// (always, after [`NatsCluster::wait_ready`]); `None` for a lone server.
    pub fn leader(&self) -> Option<usize> {
        self.meta_leader().ok().flatten()
    }

    /// SIGKILL to node `i`, and wait for it to exit: no chance to flush or say goodbye.
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.get_mut().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused.store(false, Ordering::SeqCst);
    }

    /// Kills node `i` if it runs, starts it again with the same config (ports, store), and
    /// waits until the cluster is ready again with it.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn_node(i);
        self.wait_ready();
    }

    /// SIGSTOP to node `i`: it keeps its sockets but answers nothing, like a hung machine.
    /// [`NatsCluster::wait_ready`] leaves it out until [`NatsCluster::resume`].
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
        self.nodes[i].paused.store(true, Ordering::SeqCst);
    }

    /// SIGCONT to node `i` after [`NatsCluster::pause`].
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
        self.nodes[i].paused.store(false, Ordering::SeqCst);
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.nodes[i]
            .child
            .lock()
            .unwrap()
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name(i)))
            .id();
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill {signal} {pid} failed");
    }

    /// Waits until every live node (running, not paused) has JetStream enabled and, in a
    /// cluster, all of them name the same meta leader, that leader is live, and the meta
    /// cluster has every node, live or not (`cluster_size`). Needs a live majority to elect a
    /// leader. Panics after [`patience`], or as soon as a node exits on its own, with the logs.
    pub fn wait_ready(&self) {
        if let Err(unready) = self.wait() {
            self.fail(unready);
        }
    }

    fn wait(&self) -> Result<(), Unready> {
        let timeout = patience();
        let start = Instant::now();
        loop {
            if let Some(i) = self.exited() {
                return Err(Unready::Exited(i));
            }
            let seen = match self.meta_leader() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if self.nodes.len() == 1 => return Ok(()),
                Ok(None) => "no leader yet".to_string(),
                Err(seen) => seen,
            };
            if start.elapsed() > timeout {
                return Err(Unready::TimedOut(seen));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The live nodes' common, live meta leader; `Err` says what is not ready yet.
    fn meta_leader(&self) -> Result<Option<usize>, String> {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.live(i)).collect();
        let mut leaders = Vec::new();
        for &i in &live {
            let name = self.name(i);
            let report = jsz(self.nodes[i].monitor).map_err(|e| format!("{name}: {e}"))?;
            if report["disabled"] == true || report.get("config").is_none() {
                return Err(format!("{name}: JetStream is not enabled: {report}"));
            }
            if self.nodes.len() == 1 {
                return Ok(None);
            }
            let meta = &report["meta_cluster"];
            if meta["cluster_size"] != self.nodes.len() {
                return Err(format!("{name}: meta cluster {meta}"));
            }
            match meta["leader"].as_str() {
                Some(leader) if !leader.is_empty() => leaders.push(leader.to_string()),
                _ => return Err(format!("{name}: no meta leader yet ({meta})")),
            }
        }
        let Some(leader) = leaders.first() else {
            return Err("no node is live".into());
        };
        if leaders.iter().any(|l| l != leader) {
            return Err(format!(
                "the live nodes name different leaders: {leaders:?}"
            ));
        }
        // Followers keep naming a dead leader until their election timeout.
        match live.iter().find(|&&i| self.name(i) == leader) {
            Some(&i) => Ok(Some(i)),
            None => Err(format!("the meta leader {leader} is not live")),
        }
    }

    /// Running and not paused.
    fn live(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        node.child.lock().unwrap().is_some() && !node.paused.load(Ordering::SeqCst)
    }

    /// A node that exited on its own (a killed one is no longer a child).
    fn exited(&self) -> Option<usize> {
        self.nodes.iter().position(|node| {
            node.child
                .lock()
                .unwrap()
                .as_mut()
                .is_some_and(|child| !matches!(child.try_wait(), Ok(None)))
        })
    }

    fn fail(&self, unready: Unready) -> ! {
        // Drop prints the logs of every node while the panic unwinds.
        match unready {
            Unready::Exited(i) => panic!("{} exited before the cluster was ready", self.name(i)),
            Unready::TimedOut(seen) => panic!(
                "waited {:?} for the NATS cluster to be ready; last seen: {seen}",
                patience()
            ),
        }
    }

    fn log_tail(&self, i: usize) -> String {
        let log = self.log(i);
        let mut cut = log.len().saturating_sub(LOG_TAIL);
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        format!(
            "----- {} -----\n{}\n----- end of log -----",
            self.nodes[i].log.display(),
            &log[cut..]
        )
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            // SIGKILL ends a paused process too.
            self.kill(i);
        }
        if std::thread::panicking() {
            for i in 0..self.nodes.len() {
                eprintln!("{}", self.log_tail(i));
            }
            if std::env::var_os("WAYMARK_KEEP_TEST_DATA").is_some() {
                if let Some(temp) = self.temp.take() {
                    eprintln!("kept {}", temp.keep().display());
                }
            } else {
                eprintln!("(set WAYMARK_KEEP_TEST_DATA=1 to keep the NATS stores and logs)");
            }
        }
    }
}

/// `count` distinct loopback ports that were free a moment ago: all bound at once, then let go.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}

/// `GET /jsz` on a monitoring port: HTTP/1.0 over a plain socket, so that the harness needs no
/// runtime and a paused node costs a short timeout, not a hang.
fn jsz(port: u16) -> Result<Value, String> {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /jsz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{status}: {body}"));
    }
    serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))
}
