//! Issue 16, end to end: three `waymark serve --cluster` processes over a three-server NATS
//! cluster on loopback (Debian's `nats-server`, installed by `cargo xtask test`), driven by the
//! ledger workload of the crash test (`waymark_tests::ledger`) from three clients, each posting
//! to a different node.
//!
//! - While events flow in, the node running the partition is killed (`kill -9`), and later one
//!   NATS server is killed and restarted: a standby takes the partition over from its copy,
//!   every node keeps answering (passing requests on to the new owner), and in the end every
//!   acknowledged event is in its customer's ledger exactly once, every timer fired exactly
//!   once, every send reached the sink (redelivered only with the same idempotency key).
//! - The fenced-owner test: the owner is paused (`SIGSTOP`) past its lease while its messages
//!   wait for a provider that refuses them; a standby takes over and delivers them; the paused
//!   node, resumed, commits nothing and starts no delivery (a request it had already let
//!   through its lease check goes out, under the key the new owner used: the window no lease
//!   closes).
//! - The examples' month (`waymark_tests::month`: renewal, win-back and guided onboarding on the
//!   manual clock) on the cluster, losing a NATS server and then its owner, and on one server
//!   beside it: every journey's report the same on both, every message at the sink under the
//!   same key.

use std::time::{Duration, Instant};
use tokio::sync::watch;
use waymark_api::tenants::CreatedTenant;
use waymark_tests::ledger::{self, all_events, post_all, verify_exactly_once, Target, JOURNEY};
use waymark_tests::month::{self, Deployment as _};
use waymark_tests::*;

const CUSTOMERS: usize = 1_000;
const EVENTS_PER_CUSTOMER: usize = 6;
const BATCH: usize = 50;
/// The nodes' lease period.
const LEASE_MS: u64 = 2_000;

/// A node `id` of a cluster over `nats`, sharing `admin_token` with the others.
async fn node(nats: &NatsCluster, id: &str, admin_token: &str) -> Server {
    node_of(nats, id, admin_token, 1).await
}

/// [`node`], in a cluster of `partitions` partitions.
async fn node_of(nats: &NatsCluster, id: &str, admin_token: &str, partitions: u16) -> Server {
    Server::start(ServerOptions {
        admin_token: Some(admin_token.into()),
        args: [
            "--cluster",
            &nats.urls().join(","),
            "--node-id",
            id,
            "--partitions",
            &partitions.to_string(),
            "--lease-ms",
            &LEASE_MS.to_string(),
            "--retry-base-ms",
            "50",
        ]
        .map(String::from)
        .to_vec(),
        ..ServerOptions::default()
    })
    .await
}

/// An admin `GET` of `path` through `server`: the status and the body.
async fn admin_get(server: &Server, path: &str) -> (StatusCode, Value) {
    server
        .api()
        .request(Method::GET, path, Some(server.admin_token()), Body::Empty)
        .await
}

/// `GET /v1/admin/cluster` as `server` answers it: `None` for a `503` (the cluster's records
/// unreadable for a moment: a stream leader being elected).
async fn status(server: &Server) -> Option<Value> {
    let (code, body) = admin_get(server, "/v1/admin/cluster").await;
    if code == StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    assert_eq!(code, StatusCode::OK, "{body}");
    Some(body)
}

/// Waits until `server` reports an owner for the partition other than `not`, where the
/// placement puts it (no handover coming), answering what `server` passes on to it; answers
/// the owner.
async fn owner(server: &Server, not: Option<&str>) -> String {
    let start = Instant::now();
    loop {
        let status = status(server).await;
        let partition = status.as_ref().map(|s| &s["partitions"][0]);
        let settled = partition.is_some_and(|p| p["owner"] == p["preferred_owner"]);
        if let Some(owner) = partition
            .and_then(|p| p["owner"].as_str())
            .filter(|_| settled)
        {
            let (code, _) = admin_get(server, "/v1/admin/clock").await;
            if Some(owner) != not && code == StatusCode::OK {
                return owner.to_owned();
            }
        }
        assert!(
            start.elapsed() < patience(),
            "no owner (other than {not:?}) within {:?}: {status:?}",
            patience()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the cluster, as `server` reports it, has `nodes` nodes, its partition run where
/// the placement puts it, and a standby caught up; answers the owner.
async fn settled(server: &Server, nodes: usize) -> String {
    let start = Instant::now();
    loop {
        let status = status(server).await;
        let partition = status.as_ref().map(|s| &s["partitions"][0]);
        let caught_up = partition.is_some_and(|p| {
            p["standbys"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["lag"].as_u64() <= Some(32)))
        });
        let all = status
            .as_ref()
            .and_then(|s| s["nodes"].as_array())
            .is_some_and(|n| n.len() == nodes);
        if caught_up && all {
            return owner(server, None).await;
        }
        assert!(
            start.elapsed() < patience(),
            "the cluster did not settle within {:?}: {status:?}",
            patience()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node that holds the partition's lease now, as `server` reports it.
async fn holder(server: &Server) -> Option<String> {
    let status = status(server).await?;
    status["partitions"][0]["owner"].as_str().map(String::from)
}

/// The three nodes' ids.
const IDS: [&str; 3] = ["n1", "n2", "n3"];

/// A settled three-node cluster over `nats`, and tenant `tenant` with the ledger journey and
/// the webhook channel to a fresh sink, set up through a node that passes everything on to the
/// owner. Answers the nodes, the owner's index, the sink and the tenant.
async fn ledger_cluster(
    nats: &NatsCluster,
    tenant: &str,
) -> (Vec<Server>, usize, Sink, CreatedTenant) {
    let token = "cluster-admin-token-0123456789";
    let mut nodes = Vec::new();
    for id in IDS {
        nodes.push(node(nats, id, token).await);
    }
    let first = settled(&nodes[0], 3).await;
    let owner = index(&IDS, &first);
    eprintln!("{first} runs the partition");
    let sink = Sink::start();
    let (tenant, _) = tenant_with_journey(
        &nodes[(owner + 1) % 3],
        tenant,
        Some((&sink, &[WEBHOOK])),
        JOURNEY,
        artifacts().component(LEDGER_CRATE),
    )
    .await;
    (nodes, owner, sink, tenant)
}

/// The index of node `id` among `ids`.
fn index(ids: &[&str], id: &str) -> usize {
    ids.iter().position(|n| *n == id).expect("a node of ours")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_its_owner_and_a_nats_server_and_runs_every_event_once() {
    let mut nats = NatsCluster::start(3);
    let (mut nodes, first, sink, tenant) = ledger_cluster(&nats, "cluster").await;
    let other = (first + 1) % 3;

    // Three clients, each posting a third of the batches to its own node.
    let events = all_events(CUSTOMERS, EVENTS_PER_CUSTOMER);
    let batches: Vec<Vec<EventInput>> = events.chunks(BATCH).map(<[EventInput]>::to_vec).collect();
    let mut targets = Vec::new();
    let mut posters = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mine: Vec<_> = batches.iter().skip(i).step_by(3).cloned().collect();
        let (publish, target) = watch::channel(Target {
            url: node.url().to_string(),
            key: tenant.api_key.clone(),
        });
        targets.push(publish);
        posters.push(tokio::spawn(post_all(mine, target)));
    }

    // The owner dies under load; its client moves to another node.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let victim = holder(&nodes[other]).await.expect("an owner");
    let owner_at = index(&IDS, &victim);
    let other = (owner_at + 1) % 3;
    nodes[owner_at].kill();
    let died = Instant::now();
    // (Its poster may be done already.)
    let _ = targets[owner_at].send(Target {
        url: nodes[other].url().to_string(),
        key: tenant.api_key.clone(),
    });
    let second = owner(&nodes[other], Some(&victim)).await;
    eprintln!(
        "{victim} killed: {second} runs the partition {:?} later (lease {LEASE_MS} ms)",
        died.elapsed()
    );

    // A NATS server dies and comes back while the work goes on; the killed node rejoins.
    nats.kill(1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart(1);
    nodes[owner_at].restart().await;

    let (mut accepted, mut duplicates, mut retried) = (0, 0, 0);
    for poster in posters {
        let (a, d, r) = poster.await.expect("a poster finished");
        (accepted, duplicates, retried) = (accepted + a, duplicates + d, retried + r);
    }
    assert_eq!(
        accepted + duplicates,
        events.len(),
        "every event acknowledged"
    );
    assert!(
        duplicates <= retried,
        "{duplicates} duplicates of {retried} resent"
    );
    eprintln!("{accepted} events accepted, {duplicates} duplicates of {retried} resent");

    // Settled (the rejoined node may be handed the partition once its copy caught up), then
    // read and checked through a node that is not the owner.
    let settled = settled(&nodes[other], 3).await;
    eprintln!("{settled} runs the partition once the cluster settled");
    let reader = &nodes[(index(&IDS, &settled) + 1) % 3];
    verify_exactly_once(
        &reader.as_tenant(&tenant),
        &reader.api(),
        &sink,
        CUSTOMERS,
        EVENTS_PER_CUSTOMER,
    )
    .await;

    // The cluster as any node reports it: three nodes, one owner, a standby caught up.
    let status = status(reader).await.expect("the cluster's status");
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    assert_eq!(
        status["partitions"][0]["owner"],
        settled.as_str(),
        "{status}"
    );

    // Each node's `/metrics` is its own: its view of the cluster, and the partition's metrics
    // (labelled with it) from the node that runs it only.
    for (id, node) in IDS.iter().zip(&nodes) {
        let metrics = node.api().metrics().await;
        let value = |series: &str| -> Option<f64> {
            metrics
                .lines()
                .find(|l| l.starts_with(series))
                .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
        };
        let runs = *id == settled;
        assert_eq!(
            value("waymark_cluster_nodes "),
            Some(3.0),
            "{id}: {metrics}"
        );
        assert_eq!(
            value("waymark_cluster_partition_held{partition=\"0\"} "),
            Some(if runs { 1.0 } else { 0.0 }),
            "{id}: {metrics}"
        );
        assert!(
            value("waymark_cluster_log_last_record{partition=\"0\"} ").is_some_and(|v| v > 0.0),
            "{id}: {metrics}"
        );
        // The partition's host answers for itself on the node running it: its gauges are
        // always there (its counters only once they counted: a node that lost the lease and
        // took the partition over again under load runs a new host, counting from zero).
        assert_eq!(
            metrics.contains("waymark_shards_with_triggers{partition=\"0\"} "),
            runs,
            "{id}: {metrics}"
        );
        let triggers: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("waymark_triggers_total{"))
            .collect();
        assert!(runs || triggers.is_empty(), "{id}: {metrics}");
        assert!(
            triggers.iter().all(|l| l.contains("partition=\"0\"")),
            "{triggers:?}"
        );
        assert_eq!(metrics.matches("# EOF").count(), 1, "{id}: {metrics}");
        if runs {
            assert!(
                value("waymark_cluster_takeovers_total ").is_some_and(|n| n >= 1.0),
                "{id} runs the partition it took over: {metrics}"
            );
        }
        if index(&IDS, id) == owner_at {
            // Killed and restarted: its copy was made again (an owner's is never reopened).
            let made = value("waymark_cluster_copies_restored_total ").unwrap_or(0.0)
                + value("waymark_cluster_copies_reopened_total ").unwrap_or(0.0);
            assert!(made >= 1.0, "{id}: {metrics}");
        }
    }
    let passed_on = |metrics: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("waymark_cluster_requests_passed_on_total "))
            .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
    };
    assert!(
        passed_on(&reader.api().metrics().await).is_some_and(|n| n > 0.0),
        "the reader passed its requests on"
    );
}

/// The fenced-owner test (issue 16): the node running the partition is paused (`SIGSTOP`) past
/// its lease while its messages wait on a provider that refuses them; a standby takes over and
/// delivers them; the paused node, resumed, starts no delivery and commits nothing (each event,
/// timer and send still happened exactly once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_past_its_lease_starts_and_commits_nothing_when_it_resumes() {
    const CUSTOMERS: usize = 100;
    const EVENTS: usize = 2;
    let nats = NatsCluster::start(3);
    let (nodes, paused, sink, tenant) = ledger_cluster(&nats, "fenced").await;
    let first = IDS[paused].to_owned();
    let epoch = |status: Option<Value>| status.and_then(|s| s["partitions"][0]["epoch"].as_u64());
    let first_epoch = epoch(status(&nodes[0]).await).expect("an epoch");
    let other = (paused + 1) % 3;

    // The provider refuses everything: the owner keeps attempting (every 50 ms).
    sink.respond_by_default(StatusCode::SERVICE_UNAVAILABLE);
    let api = nodes[other].as_tenant(&tenant);
    for batch in all_events(CUSTOMERS, EVENTS).chunks(50) {
        let batch: Vec<Value> = batch.iter().map(|e| json!(e)).collect();
        let answer = api.post_events(&batch).await;
        assert_eq!(answer.accepted as usize, batch.len());
    }
    sink.wait_for("the owner's attempts", |r| r.len() >= CUSTOMERS)
        .await;

    // Paused past its lease: a standby takes over; the provider recovers and the new owner
    // delivers everything.
    let pid = nodes[paused].pid().expect("running").to_string();
    let signal = |sig: &str| {
        let sent = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let second = owner(&nodes[other], Some(&first)).await;
    eprintln!("{first} paused: {second} runs the partition");
    sink.respond_by_default(StatusCode::OK);
    ledger::wait_for_all(
        &api,
        CUSTOMERS,
        "every ack delivered by the new owner",
        |c| c.messages.len() >= EVENTS && c.messages.iter().all(|m| m.status == "delivered"),
    )
    .await;

    // Resumed: its guard ran out while it was stopped. It attempts nothing more (the provider
    // would answer 200 now); as the preferred owner it may be handed the partition back, but
    // only under a new lease (a later epoch), from a copy caught up with the log.
    let before = sink.requests().len();
    signal("-CONT");
    // What it had in flight when it was stopped (past its last check of the lease, its request
    // not yet written) may still go out: at most one per delivery slot, each a message the new
    // owner delivered, under the same idempotency key (docs/SCALING.md, "Delivery is fenced
    // too"). Nothing after that.
    tokio::time::sleep(Duration::from_millis(LEASE_MS)).await;
    let settled = sink.requests();
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
    let all = sink.requests();
    assert_eq!(
        all.len(),
        settled.len(),
        "the resumed node went on sending for a partition it lost"
    );
    let known: std::collections::HashSet<&str> = all[..before]
        .iter()
        .filter_map(Received::idempotency_key)
        .collect();
    let late = &all[before..];
    eprintln!(
        "{} requests in flight went out after the resume",
        late.len()
    );
    assert!(late.len() <= 32, "{} late requests", late.len());
    assert!(
        late.iter()
            .all(|r| r.idempotency_key().is_some_and(|k| known.contains(k))),
        "a late request under a key the new owner did not deliver"
    );
    let now = epoch(status(&nodes[other]).await).expect("an epoch");
    assert!(now > first_epoch, "epoch {now} after {first_epoch}");
    verify_exactly_once(&api, &nodes[other].api(), &sink, CUSTOMERS, EVENTS).await;
}

/// The month of `waymark_tests::month` on a three-node cluster: each day's batches spread over
/// the three nodes, one client each; a NATS server killed once day 4's events are acknowledged
/// and restarted on day 9; the node running the partition killed (`kill -9`) once day 15's are,
/// and restarted after a standby took over; the one running it on day 22 leaving gracefully
/// (`SIGTERM`) once that day's are, and started again.
struct Cluster {
    nats: NatsCluster,
    nodes: Vec<Server>,
    tenant: CreatedTenant,
    /// The node the month's reads and clock moves go through (never the one killed).
    reader: usize,
    killed: Option<String>,
    left: Option<String>,
}

impl month::Deployment for Cluster {
    fn clients(&self) -> (Api, Api) {
        let node = &self.nodes[self.reader];
        (node.as_tenant(&self.tenant), node.api())
    }

    fn metrics_from(&self) -> Vec<Api> {
        self.nodes.iter().map(Server::api).collect()
    }

    async fn post(&self, events: &[Value]) {
        post_spread(&self.nodes, &self.tenant, events).await;
    }

    async fn acknowledged(&mut self, day: u32) {
        match day {
            4 => {
                self.nats.kill(1);
                self.writable(day).await;
            }
            9 => {
                self.nats.restart(1);
                self.writable(day).await;
            }
            15 => {
                let victim = holder(&self.nodes[self.reader]).await.expect("an owner");
                let at = index(&IDS, &victim);
                self.nodes[at].kill();
                if at == self.reader {
                    self.reader = (at + 1) % 3;
                }
                let died = Instant::now();
                let second = owner(&self.nodes[self.reader], Some(&victim)).await;
                eprintln!(
                    "{victim} killed on day 15: {second} runs the partition {:?} later",
                    died.elapsed()
                );
                self.nodes[at].restart().await;
                self.killed = Some(victim);
            }
            // A graceful leave (SIGTERM) of whichever node runs the partition now: it stops
            // its host (the last writes appended), gives the lease up and exits cleanly.
            22 => {
                let leaving = holder(&self.nodes[self.reader]).await.expect("an owner");
                let at = index(&IDS, &leaving);
                let exited = self.nodes[at].terminate();
                assert!(exited.success(), "{leaving} left: {exited}");
                if at == self.reader {
                    self.reader = (at + 1) % 3;
                }
                let next = owner(&self.nodes[self.reader], Some(&leaving)).await;
                eprintln!("{leaving} left on day 22: {next} runs the partition");
                self.nodes[at].restart().await;
                self.left = Some(leaving);
            }
            _ => {}
        }
    }
}

/// Posts `events` in batches spread over `nodes`, one client each, every one acknowledged.
async fn post_spread(nodes: &[Server], tenant: &CreatedTenant, events: &[Value]) {
    let batches: Vec<Vec<EventInput>> = events
        .chunks(month::OPENING_PER_CUSTOMER * 40)
        .map(|batch| {
            batch
                .iter()
                .map(|e| serde_json::from_value(e.clone()).expect("an event"))
                .collect()
        })
        .collect();
    let (mut targets, mut posters) = (Vec::new(), Vec::new());
    for (i, node) in nodes.iter().enumerate() {
        let mine: Vec<_> = batches
            .iter()
            .skip(i)
            .step_by(nodes.len())
            .cloned()
            .collect();
        let (target, receiver) = watch::channel(Target {
            url: node.url().to_string(),
            key: tenant.api_key.clone(),
        });
        targets.push(target);
        posters.push(tokio::spawn(post_all(mine, receiver)));
    }
    let mut acknowledged = 0;
    for poster in posters {
        let (accepted, duplicates, _) = poster.await.expect("a poster finished");
        acknowledged += accepted + duplicates;
    }
    assert_eq!(acknowledged, events.len(), "every event acknowledged");
}

impl Cluster {
    /// Waits until the cluster makes writes durable again after a NATS server came or went (a
    /// stream leader elected): a throwaway tenant is created, as often as it takes. The month
    /// waits for the day's work to settle by watching it progress, and a partition whose
    /// flushes wait on an election makes no visible progress for a few seconds: without this,
    /// the clock could move on before the day's triggers were decided, and they would be
    /// decided at the next day's time.
    async fn writable(&self, day: u32) {
        let admin = self.nodes[self.reader].api();
        let start = Instant::now();
        while let Err(e) = admin
            .admin_client()
            .create_tenant(&format!("probe-{day}"))
            .await
        {
            // Made, its answer lost: written all the same.
            if e.status() == Some(StatusCode::CONFLICT) {
                break;
            }
            assert!(
                start.elapsed() < patience(),
                "the cluster did not write again: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One server: the month as it runs without a cluster.
struct Single {
    server: Server,
    tenant: CreatedTenant,
}

impl month::Deployment for Single {
    fn clients(&self) -> (Api, Api) {
        (self.server.as_tenant(&self.tenant), self.server.api())
    }
}

/// The acceptance, for the examples' journeys: a month of renewal, win-back and guided
/// onboarding (`waymark_tests::month`) runs on a three-node cluster that loses a NATS server and
/// its owner along the way (killed, and later another leaving gracefully), and on one server
/// beside it, both from the same instant on the
/// manual clock. Every journey's report is the same on both, and so is every message the sink
/// received (the cluster may send one again after the kill, under the same key only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_the_examples_reports_in_a_cluster_that_loses_nodes_what_one_node_reports() {
    let n: usize = std::env::var("WAYMARK_CLUSTER_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let began = Instant::now();
    let nats = NatsCluster::start(3);
    let token = "cluster-admin-token-0123456789";
    let mut nodes = Vec::new();
    for id in IDS {
        nodes.push(node(&nats, id, token).await);
    }
    let first = index(&IDS, &settled(&nodes[0], 3).await);
    let reader = (first + 1) % 3;
    let cluster_sink = Sink::start();
    let tenant = month::install(&nodes[reader], &cluster_sink, "acme").await;
    let mut cluster = Cluster {
        nats,
        nodes,
        tenant,
        reader,
        killed: None,
        left: None,
    };
    let (mut single, single_sink, start) = single_beside(&cluster.nodes[reader].api()).await;

    let (end, cluster_end) = tokio::join!(
        month::run(&mut single, n, start),
        month::run(&mut cluster, n, start)
    );
    assert_eq!(end, cluster_end);
    assert!(cluster.killed.is_some(), "the owner was killed");
    assert!(cluster.left.is_some(), "an owner left");
    eprintln!("the month ran on both in {:?}", began.elapsed());

    let cluster_sent = same_month(&single, &single_sink, &cluster, &cluster_sink).await;
    eprintln!(
        "{n} customers: {cluster_sent} requests from the cluster; {:?} in all",
        began.elapsed()
    );
}

/// One server beside a cluster, for the month: its tenant installed with a sink of its own,
/// and both clocks (the cluster's through `cluster`) moved to the same instant, the next
/// midnight (UTC) after both; answers the server, its sink and that instant.
async fn single_beside(cluster: &Api) -> (Single, Sink, i64) {
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let tenant = month::install(&server, &sink, "acme").await;
    let now = server
        .api()
        .clock_now()
        .await
        .max(cluster.clock_now().await);
    let start = (now / DAY_MS + 1) * DAY_MS;
    month::advance_to(&server.api(), start).await;
    month::advance_to(cluster, start).await;
    (Single { server, tenant }, sink, start)
}

/// Asserts that the month ran the same on `single` and on `cluster`: every journey's report
/// equal, and every message under the same key at both sinks (the cluster's only repeating
/// keys); answers how many requests the cluster's sink received.
async fn same_month(
    single: &Single,
    single_sink: &Sink,
    cluster: &impl month::Deployment,
    cluster_sink: &Sink,
) -> usize {
    let (one, many) = (single.clients().0, cluster.clients().0);
    for journey in month::JOURNEYS {
        let expected = one.report(journey).await;
        let entered = expected["report"]["overall"]["entered"].as_u64();
        assert!(entered.is_some_and(|e| e > 0), "{journey}: {expected}");
        assert_eq!(
            many.report(journey).await,
            expected,
            "{journey}: the cluster's report differs from one node's"
        );
    }
    // Every message, under the same key, at both sinks; the cluster's only repeats keys.
    let keys = |sink: &Sink| -> (usize, std::collections::BTreeSet<(String, String)>) {
        let requests = sink.requests();
        let keys = requests
            .iter()
            .map(|r| {
                let key = r.idempotency_key().expect("an idempotency key");
                (r.channel().to_owned(), key.to_owned())
            })
            .collect();
        (requests.len(), keys)
    };
    let ((sent, expected), (cluster_sent, received)) = (keys(single_sink), keys(cluster_sink));
    assert!(!expected.is_empty());
    assert_eq!(sent, expected.len(), "one node sends each message once");
    assert_eq!(
        received, expected,
        "the cluster's messages differ from one node's"
    );
    eprintln!("{} messages", expected.len());
    cluster_sent
}

/// Waits until, as `server` reports it, the cluster has `nodes` nodes and each of its
/// partitions is run where the placement puts it (none by `not`), and `server` answers the
/// clock (every partition reachable); answers each partition's owner.
async fn spread_over(server: &Server, nodes: usize, not: Option<&str>) -> Vec<String> {
    let start = Instant::now();
    let mut clock = None;
    loop {
        let status = status(server).await;
        let owners: Option<Vec<String>> = status.as_ref().and_then(|s| {
            let all = s["nodes"].as_array().is_some_and(|n| n.len() == nodes);
            let partitions = s["partitions"].as_array()?;
            let placed = partitions
                .iter()
                .all(|p| p["owner"] == p["preferred_owner"] && p["owner"].as_str() != not);
            (all && placed).then(|| {
                partitions
                    .iter()
                    .filter_map(|p| p["owner"].as_str().map(String::from))
                    .collect()
            })
        });
        if let Some(owners) = owners {
            let (code, body) = admin_get(server, "/v1/admin/clock").await;
            if code == StatusCode::OK {
                return owners;
            }
            clock = Some((code, body));
        }
        assert!(
            start.elapsed() < patience(),
            "the partitions were not spread over {nodes} nodes within {:?}: {status:?}; the \
             clock answered {clock:?}",
            patience()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The month on a cluster of several partitions: batches spread over the nodes; the third
/// node killed (`kill -9`) once day 15's events are acknowledged, and started again once its
/// partitions run elsewhere.
struct Partitioned {
    nodes: Vec<Server>,
    tenant: CreatedTenant,
    killed: bool,
}

impl month::Deployment for Partitioned {
    fn clients(&self) -> (Api, Api) {
        (self.nodes[0].as_tenant(&self.tenant), self.nodes[0].api())
    }

    fn metrics_from(&self) -> Vec<Api> {
        self.nodes.iter().map(Server::api).collect()
    }

    async fn post(&self, events: &[Value]) {
        post_spread(&self.nodes, &self.tenant, events).await;
    }

    async fn acknowledged(&mut self, day: u32) {
        if day == 15 {
            self.nodes[2].kill();
            let died = Instant::now();
            spread_over(&self.nodes[0], 2, Some(IDS[2])).await;
            eprintln!(
                "n3 killed on day 15: its partitions run elsewhere {:?} later",
                died.elapsed()
            );
            self.nodes[2].restart().await;
            spread_over(&self.nodes[0], 3, None).await;
            self.killed = true;
        }
    }
}

/// Several partitions over several nodes (issue 16): the month of the examples on four
/// partitions spread over three nodes — each node running some, tenant-global data written on
/// partition 0 and mirrored to the others, events split by customer, reports added up over
/// the partitions, the clock moved on all — with one node killed (`kill -9`) mid-month and
/// restarted, reports and messages the same as one node's; and a customer read the same
/// through every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_on_four_partitions_over_three_nodes_reports_what_one_node_reports() {
    let n: usize = std::env::var("WAYMARK_CLUSTER_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let began = Instant::now();
    let nats = NatsCluster::start(3);
    let token = "cluster-admin-token-0123456789";
    let mut nodes = Vec::new();
    for id in IDS {
        nodes.push(node_of(&nats, id, token, 4).await);
    }
    let owners = spread_over(&nodes[0], 3, None).await;
    let running: std::collections::BTreeSet<&String> = owners.iter().collect();
    assert!(
        running.len() >= 2,
        "the partitions are spread over the nodes: {owners:?}"
    );
    let cluster_sink = Sink::start();
    let tenant = month::install(&nodes[1], &cluster_sink, "acme").await;
    let mut cluster = Partitioned {
        nodes,
        tenant,
        killed: false,
    };
    let (mut single, single_sink, start) = single_beside(&cluster.nodes[0].api()).await;
    let (end, cluster_end) = tokio::join!(
        month::run(&mut single, n, start),
        month::run(&mut cluster, n, start)
    );
    assert_eq!(end, cluster_end);
    assert!(cluster.killed, "a node was killed");
    same_month(&single, &single_sink, &cluster, &cluster_sink).await;

    // A customer's record, read through each node, is the one its partition keeps: the same
    // as one node's but for the ids the sinks gave the messages (their order of arrival).
    let read = |customer: Option<waymark_api::customers::Customer>| {
        let mut value = serde_json::to_value(customer.expect("the customer")).unwrap();
        without_provider_ids(&mut value);
        value
    };
    let customer = month::customer(7);
    let expected = read(single.clients().0.customer(&customer).await);
    for node in &cluster.nodes {
        assert_eq!(
            read(node.as_tenant(&cluster.tenant).customer(&customer).await),
            expected,
            "{customer} through {}",
            node.url()
        );
    }
    // Tenant-wide listings gathered from every partition: the same tasks (the guided
    // onboarding's handoffs) and dead letters (its CRM and Slack sends, which the sink's
    // channels refuse) as one node's, whichever node is asked.
    for (path, field) in [
        ("/v1/tasks?limit=1000", "tasks"),
        ("/v1/dead-letters?limit=1000", "dead_letters"),
    ] {
        let listed = |server: &Server, key: &str| {
            let api = server.api();
            let (path, key) = (path.to_owned(), key.to_owned());
            async move {
                let (code, body) = api
                    .request(Method::GET, &path, Some(&key), Body::Empty)
                    .await;
                assert_eq!(code, StatusCode::OK, "{path}: {body}");
                let mut ids: Vec<String> = body[field]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|e| e["id"].as_str().expect("an id").to_owned())
                    .collect();
                ids.sort();
                ids
            }
        };
        let expected = listed(&single.server, &single.tenant.api_key).await;
        assert!(!expected.is_empty(), "{path}: nothing to compare");
        for node in &cluster.nodes {
            assert_eq!(
                listed(node, &cluster.tenant.api_key).await,
                expected,
                "{path} through {}",
                node.url()
            );
        }
    }
    // A backtest over the month (issue 13 on several partitions): a changed renewal schedule
    // sent as component bytes, with the live version's fidelity checked. Each partition
    // replays its own customers under one id; read through another node than the one it was
    // started through, it is one node's backtest of the same history.
    let request = waymark_api::backtests::BacktestRequest {
        candidate: waymark_api::backtests::Candidate::component_base64(
            waymark_client::component_base64(&artifacts().component(RENEWAL_EARLY_CRATE)),
        ),
        from: start,
        to: end + 1,
        customers: None,
        sample_fraction: None,
        fidelity: true,
    };
    let expected = single.clients().0.backtested("renewal", &request).await;
    let through = |i: usize| cluster.nodes[i].as_tenant(&cluster.tenant);
    let started = through(1)
        .tenant_client()
        .start_backtest("renewal", &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = through(2).finished_backtest("renewal", &started.id).await;
    let (mut expected, mut done) = (
        expected.result.expect("one node's result"),
        done.result
            .unwrap_or_else(|| panic!("the cluster's result: {:?}", done.error)),
    );
    let fidelity = done.fidelity.as_ref().expect("asked for");
    assert_eq!(fidelity.divergences, [], "the live replay is what ran live");
    assert_eq!(fidelity.identical, fidelity.customers);
    assert_eq!(fidelity.customers, n as u64);
    assert!(done.diff.customers_changed > 0, "{:?}", done.diff);
    assert!(done.replay_parts >= 4, "a part per partition at least");
    (expected.replay_parts, done.replay_parts) = (0, 0);
    assert_eq!(
        done, expected,
        "the cluster's backtest differs from one node's"
    );

    // The dashboard through any node (issue 14 on several partitions): partition 0 serves it
    // and reads what lives with the customers through the front, so every page reads as one
    // node's page of the same month.
    let http = dashboard::http();
    let one = dashboard::sign_in(&http, single.server.url(), &single.tenant.api_key)
        .await
        .expect("signed in on one node");
    let many = dashboard::sign_in(&http, cluster.nodes[2].url(), &cluster.tenant.api_key)
        .await
        .expect("signed in through a node of the cluster");
    let mut paths: Vec<String> = ["/ui/journeys", "/ui/tasks", "/ui/dead-letters"]
        .map(String::from)
        .into();
    paths.extend(month::JOURNEYS.map(|j| format!("/ui/journeys/{j}")));
    paths.extend((0..4).map(|c| format!("/ui/customers/{}", month::customer(c))));
    for path in &paths {
        let (code, expected) = dashboard::get(&http, single.server.url(), path, &one.cookie).await;
        assert_eq!(code, StatusCode::OK, "{path}: {expected}");
        for node in &cluster.nodes {
            let (code, page) = dashboard::get(&http, node.url(), path, &many.cookie).await;
            assert_eq!(
                code,
                StatusCode::OK,
                "{path} through {}: {page}",
                node.url()
            );
            assert_eq!(
                comparable(&page),
                comparable(&expected),
                "{path} through {}",
                node.url()
            );
        }
    }
    // Its actions reach the partition that keeps what they act on: a task claimed and
    // resolved, a channel's dead letters requeued on every partition.
    let api = cluster.nodes[0].as_tenant(&cluster.tenant);
    let key = cluster.tenant.api_key.clone();
    let (code, open) = api
        .request(
            Method::GET,
            "/v1/tasks?status=open",
            Some(&key),
            Body::Empty,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{open}");
    let task = open["tasks"][0]["id"]
        .as_str()
        .expect("an open task")
        .to_owned();
    let node = cluster.nodes[1].url();
    for (action, field, value) in [
        ("claim", "assignee", "ada"),
        ("resolve", "resolution", "helped"),
    ] {
        let path = format!("/ui/tasks/{task}/{action}");
        let fields = [("csrf", many.csrf.as_str()), (field, value)];
        let (code, page) = dashboard::post_form(&http, node, &path, &many.cookie, &fields).await;
        assert_eq!(code, StatusCode::SEE_OTHER, "{path}: {page}");
    }
    let (code, resolved) = api
        .request(
            Method::GET,
            &format!("/v1/tasks/{task}"),
            Some(&key),
            Body::Empty,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["assignee"], "ada", "{resolved}");
    let (code, dead) = api
        .request(
            Method::GET,
            "/v1/dead-letters?limit=1000",
            Some(&key),
            Body::Empty,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{dead}");
    let crm = dead["dead_letters"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|m| m["channel"] == "crm")
        .count();
    assert!(crm > 0, "{dead}");
    // Requeued on every partition: the dashboard says how many (they fail again at once, the
    // channel being unregistered, so the count is what shows it).
    let fields = [("csrf", many.csrf.as_str()), ("channel", "crm")];
    let requeue = "/ui/dead-letters/requeue";
    let (code, location) =
        dashboard::post_form_to(&http, node, requeue, &many.cookie, &fields).await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    assert_eq!(
        location,
        Some(format!("/ui/dead-letters?done=requeued%20{crm}"))
    );
    eprintln!(
        "{n} customers on four partitions: {:?} in all",
        began.elapsed()
    );
}

/// A dashboard page without what differs between two servers showing the same data: the
/// session's form token and backtests' ids.
fn comparable(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut rest = page;
    loop {
        let csrf = rest.find("name=\"csrf\" value=\"").map(|i| i + 19);
        let backtest = rest.find("bt_").map(|i| i + 3);
        let Some(at) = [csrf, backtest].into_iter().flatten().min() else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(rest.len(), |n| at + n);
        out.push('…');
        rest = &rest[end..];
    }
}

/// Several partitions: a migration (`POST /v1/journeys/{name}/migrate` through one node)
/// starts on every partition under one id and moves every customer's enrollment wherever its
/// partition runs; its status, read through another node, adds the partitions' parts up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_moves_enrollments_on_every_partition_under_one_id() {
    let nats = NatsCluster::start(3);
    let nodes = four_partitions_over_three_nodes(&nats).await;
    let sink = Sink::start();
    let (tenant, _) = tenant_with_journey(
        &nodes[1],
        "acme",
        Some((&sink, &[WEBHOOK])),
        ONBOARDING,
        artifacts().component(ONBOARDING_CRATE),
    )
    .await;
    let customers: Vec<String> = (0..12).map(|i| format!("m{i:02}")).collect();
    let mut events = Vec::new();
    for who in &customers {
        events.push(identify(&format!("{who}-id"), who, json!({"plan": "pro"})));
        events.push(event(&format!("{who}-signup"), who, "signed_up"));
    }
    let answer = nodes[0].as_tenant(&tenant).post_events(&events).await;
    assert_eq!(answer.accepted, 24, "{answer:?}");
    for who in &customers {
        nodes[2]
            .as_tenant(&tenant)
            .wait_for_enrollment(who, ONBOARDING, "nudge pending", |e| {
                e.version == 1 && e.timers.iter().any(|t| t.name == "nudge")
            })
            .await;
    }
    let client = nodes[1].as_tenant(&tenant).tenant_client().clone();
    let v2 = client
        .upload_journey_draft(ONBOARDING, artifacts().component(MIGRATING_CRATE))
        .await
        .expect("v2 uploaded");
    assert_eq!(v2.version, 2);
    let started = nodes[2]
        .as_tenant(&tenant)
        .migrate_all(ONBOARDING, 1, 2)
        .await;
    assert_eq!(started.queued, 12, "{started:?}");
    let reader = nodes[0].as_tenant(&tenant).tenant_client().clone();
    let done = wait_for_some("the migration to finish", || {
        let reader = reader.clone();
        let id = started.id.clone();
        async move {
            let status = reader.migration(ONBOARDING, &id).await.expect("a status");
            (status.pending == 0).then_some(status)
        }
    })
    .await;
    assert_eq!(
        (done.moved, done.refused, done.skipped),
        (12, 0, 0),
        "{done:?}"
    );
    for who in &customers {
        nodes[1]
            .as_tenant(&tenant)
            .wait_for_enrollment(who, ONBOARDING, "on v2", |e| e.version == 2)
            .await;
    }
}

/// Three nodes over `nats` running four partitions, spread over all three.
async fn four_partitions_over_three_nodes(nats: &NatsCluster) -> Vec<Server> {
    let token = "cluster-admin-token-0123456789";
    let mut nodes = Vec::new();
    for id in IDS {
        nodes.push(node_of(nats, id, token, 4).await);
    }
    spread_over(&nodes[0], 3, None).await;
    nodes
}

/// Tenant `acme` on `server`, running the account onboarding (its `email` and `slack` sending
/// to `sink`) and the audience journey.
async fn with_accounts(server: &Server, sink: &Sink) -> CreatedTenant {
    let component = artifacts().component(&example_crate("account-onboarding"));
    let channels: &[&str] = &["email", "slack"];
    let (tenant, _) = tenant_with_journey(
        server,
        "acme",
        Some((sink, channels)),
        "account-onboarding",
        component,
    )
    .await;
    server
        .as_tenant(&tenant)
        .upload_journey("audience", artifacts().component(AUDIENCE_CRATE))
        .await;
    tenant
}

/// What the accounts test compares: each account (traits, members, enrollment), both
/// journeys' reports, and each member's account and number of enrollments.
async fn accounts_seen(api: &Api, members: &[String]) -> Vec<Value> {
    let mut seen = Vec::new();
    for account in ["acme", "globex", "initech", "umbrella", "hooli", "stark"] {
        let a = api
            .tenant_client()
            .account(account, &Default::default())
            .await
            .expect("the account");
        seen.push(serde_json::to_value(a).unwrap());
    }
    for journey in ["account-onboarding", "audience"] {
        seen.push(api.report(journey).await);
    }
    for member in members {
        let c = api.customer(member).await.expect("the member");
        seen.push(json!([member, c.account, c.enrollments.len()]));
    }
    seen
}

/// Waits until `servers` are quiet: every message the account onboarding sent (read through
/// `api`) has its outcome, no work waits ([`waymark_tests::api::waiting_work`]: queued
/// triggers, due timers and messages, forwards not yet taken in), and nothing was processed or
/// delivered across three looks in a row.
async fn quiet(servers: &[&Server], api: &Api) {
    quiet_for(servers, api, "account-onboarding").await;
}

/// [`quiet`] with the sends of `journey`.
async fn quiet_for(servers: &[&Server], api: &Api, journey: &str) {
    let deadline = Instant::now() + patience();
    let (mut last, mut same) = (None, 0);
    loop {
        let mut metrics = String::new();
        for server in servers {
            if let Ok(m) = server.api().admin_client().metrics().await {
                metrics.push_str(&m);
            }
        }
        let total = |metric: &str| -> u64 {
            metrics
                .lines()
                .filter(|l| l.starts_with(metric))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        let unsettled = match api.tenant_client().report(journey).await {
            Ok(report) => report
                .report
                .overall
                .channels
                .values()
                .map(|c| c.sent.saturating_sub(c.delivered + c.failed + c.suppressed))
                .sum(),
            Err(_) => u64::MAX,
        };
        let now = (
            total("waymark_triggers_total"),
            total("waymark_deliveries_total"),
            waymark_tests::api::waiting_work(&metrics),
            unsettled,
        );
        if (now.2, now.3) == (0, 0) && last == Some(now) {
            same += 1;
            if same >= 3 {
                return;
            }
        } else {
            same = 0;
        }
        assert!(Instant::now() < deadline, "not quiet: {now:?}");
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Accounts over several partitions (issue 16): the tenant runs the account onboarding (an
/// account journey: one enrollment per account, moved on by every member's events) and the
/// audience journey (`account.plan == "enterprise"` read by each member's condition), on four
/// partitions over three nodes and on one server beside them, with the same events posted
/// through every node. Members and their accounts are in different partitions, so a member's
/// `group` call, signup, project and login reach their account's partition by forwards, and
/// an account's new traits reach every member's. Everything reads the same as on one node:
/// each account's traits, members and enrollment, each member's account, the reports, the
/// welcomes and CSM handoffs sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_over_four_partitions_run_as_on_one_node() {
    const ACCOUNTS: [&str; 6] = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];
    let nats = NatsCluster::start(3);
    let nodes = four_partitions_over_three_nodes(&nats).await;
    let single = Server::start(ServerOptions::default()).await;
    let (cluster_sink, single_sink) = (Sink::start(), Sink::start());
    let tenant = with_accounts(&nodes[1], &cluster_sink).await;
    let single_tenant = with_accounts(&single, &single_sink).await;
    let start = both_at_next_midnight(&single, &nodes[0]).await;

    // Four members per account, member i in account i % 6; the first of each names the
    // account's CSM; members 6 to 11 are executives.
    let members: Vec<String> = (0..24).map(|i| format!("m{i:02}")).collect();
    let account_of = |i: usize| ACCOUNTS[i % ACCOUNTS.len()];
    let group = |id: String, member: &str, account: &str, traits: Value| {
        event_with(
            &id,
            member,
            "group",
            json!({ "group_id": account, "traits": traits }),
        )
    };
    let mut joining = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let role = if (6..12).contains(&i) {
            "executive"
        } else {
            "engineer"
        };
        joining.push(identify(
            &format!("i-{member}"),
            member,
            json!({ "role": role, "email": format!("{member}@example.test") }),
        ));
        let traits = if i < ACCOUNTS.len() {
            json!({ "name": account_of(i), "csm": format!("csm-{}", account_of(i)), "plan": "free" })
        } else {
            json!({})
        };
        joining.push(group(format!("g-{member}"), member, account_of(i), traits));
    }
    let signups: Vec<Value> = members
        .iter()
        .map(|m| event(&format!("s-{m}"), m, "signed_up"))
        .collect();
    // A project in the first four accounts (by their third member), and their executives'
    // logins in the first two: acme and globex complete, initech and umbrella wait for their
    // sponsor, hooli and stark stall before first value.
    let projects: Vec<Value> = (12..16)
        .map(|i| event(&format!("p-{}", members[i]), &members[i], "project_created"))
        .collect();
    let logins: Vec<Value> = (6..8)
        .map(|i| event(&format!("l-{}", members[i]), &members[i], "logged_in"))
        .collect();
    // Acme goes enterprise, by a member whose partition is not acme's (most likely).
    let upgrade = vec![group(
        "g-up".into(),
        &members[18],
        "acme",
        json!({ "plan": "enterprise" }),
    )];

    let cluster_api = |i: usize| nodes[i % nodes.len()].as_tenant(&tenant);
    let single_api = single.as_tenant(&single_tenant);
    let all_nodes: Vec<&Server> = nodes.iter().collect();
    // Round by round, each taken in whole before the next: members' events of one round reach
    // their account in whatever order their shards (and partitions) get to them, on one node
    // as on several, so the journeys' states compare only if the rounds do not overlap.
    for (round, batch) in [&joining, &signups, &projects, &logins, &upgrade]
        .into_iter()
        .enumerate()
    {
        let one = single_api.post_events(batch).await;
        let many = cluster_api(round).post_events(batch).await;
        assert_eq!(one.accepted as usize, batch.len(), "{one:?}");
        assert_eq!(
            many.accepted as usize,
            batch.len(),
            "round {round}: {many:?}"
        );
        quiet(&[&single], &single_api).await;
        quiet(&all_nodes, &cluster_api(0)).await;
    }
    // Milestones reached before the clock moves, on both.
    for api in [&single_api, &cluster_api(0)] {
        for (account, done) in [("acme", true), ("globex", true), ("initech", false)] {
            wait_for_some(&format!("{account}'s first value"), || async {
                let a = api
                    .tenant_client()
                    .account(account, &Default::default())
                    .await
                    .ok()?;
                let e = a.enrollments.first()?;
                let complete = e.status == waymark_api::customers::EnrollmentStatus::Completed;
                (e.milestone("first_value").is_some() && complete == done).then_some(())
            })
            .await;
        }
    }
    // Every acme member entered by the enterprise condition, on both.
    for api in [&single_api, &cluster_api(1)] {
        for i in (0..members.len()).filter(|i| account_of(*i) == "acme") {
            api.wait_for_enrollment(&members[i], "audience", "enterprise", |e| {
                e.milestone("enterprise_account").is_some()
            })
            .await;
        }
    }
    // Eight days on: hooli and stark stall before first value and go to their CSMs.
    month::advance_to(&single.api(), start + 8 * DAY_MS).await;
    month::advance_to(&nodes[2].api(), start + 8 * DAY_MS).await;
    for sink in [&single_sink, &cluster_sink] {
        for account in ["hooli", "stark"] {
            sink.wait_for_delivery("csm_handoff", account).await;
        }
    }

    // The same accounts, members and reports through every node as on one node.
    let expected = accounts_seen(&single_api, &members).await;
    // The account onboarding's report: every account entered.
    let entered = &expected[ACCOUNTS.len()]["report"]["overall"]["entered"];
    assert_eq!(
        entered,
        6,
        "every account entered: {}",
        expected[ACCOUNTS.len()]
    );
    for node in &nodes {
        let api = node.as_tenant(&tenant);
        wait_for_eq(
            &format!(
                "the cluster to settle as one node did, through {}",
                node.url()
            ),
            &expected,
            || accounts_seen(&api, &members),
        )
        .await;
    }
    // One welcome per account and one handoff per stalled account, at both sinks.
    for sink in [&single_sink, &cluster_sink] {
        let sent = sink.requests();
        for account in ACCOUNTS {
            assert_eq!(count(&sent, "account_welcome", account), 1, "{account}");
        }
        assert_eq!(
            sent.iter()
                .filter(|r| r.template() == Some("csm_handoff"))
                .count(),
            2
        );
    }
}

/// Identity merges across partitions (issue 16): anonymous ids sign up (a welcome sent, a
/// nudge pending) and join accounts, some known ids sign up too; then each anonymous id is
/// merged into its known id — by `identify` with `anonymous_id` or by `alias` — on four
/// partitions over three nodes, where most pairs are in two partitions, and on one server
/// beside them. The merged runs move with their pending nudges, or end as merged where the
/// known id has its own; the anonymous ids' later events reach the known ids; the accounts'
/// members follow. Everything reads the same as on one node: both ids of every pair, the
/// accounts, the report, and every message sent, before and after the nudges come due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_merges_across_partitions_run_as_on_one_node() {
    const PAIRS: usize = 12;
    // Of partition 1 of four, where neither anon-05 (0) nor user-05 (3) is.
    const LATE_VISITOR: &str = "anon-99";
    let nats = NatsCluster::start(3);
    let nodes = four_partitions_over_three_nodes(&nats).await;
    let single = Server::start(ServerOptions::default()).await;
    let (cluster_sink, single_sink) = (Sink::start(), Sink::start());
    let tenant = with_onboarding(&nodes[1], &cluster_sink).await;
    let single_tenant = with_onboarding(&single, &single_sink).await;
    let start = both_at_next_midnight(&single, &nodes[0]).await;

    let anon = |i: usize| format!("anon-{i:02}");
    let user = |i: usize| format!("user-{i:02}");
    let mut visits = Vec::new();
    for i in 0..PAIRS {
        visits.push(identify(
            &format!("v-{i}"),
            &anon(i),
            json!({ "utm": format!("ad-{i}"), "plan": "free" }),
        ));
        visits.push(event(&format!("s-{i}"), &anon(i), "signed_up"));
        if i % 4 == 1 {
            visits.push(event_with(
                &format!("g-{i}"),
                &anon(i),
                "group",
                json!({ "group_id": "initech", "traits": { "plan": "team" } }),
            ));
        }
        // A third of the known ids have their own run: the anonymous one ends as merged.
        if i % 3 == 0 {
            visits.push(event(&format!("k-{i}"), &user(i), "signed_up"));
        }
    }
    let merges: Vec<Value> = (0..PAIRS)
        .map(|i| match i % 2 {
            0 => event_with(
                &format!("m-{i}"),
                &user(i),
                "identify",
                json!({ "traits": { "plan": "pro" }, "anonymous_id": anon(i) }),
            ),
            _ => event_with(
                &format!("m-{i}"),
                &user(i),
                "alias",
                json!({ "previous_id": anon(i) }),
            ),
        })
        .collect();
    // Later events of the anonymous ids: the known ids reach first value; and one merging
    // back the id it was merged into, which merges nothing (its traits reach the known id).
    let mut later: Vec<Value> = (0..PAIRS)
        .filter(|i| i % 2 == 0)
        .map(|i| event(&format!("f-{i}"), &anon(i), "first_value"))
        .collect();
    later.push(event_with(
        "r-1",
        &anon(1),
        "identify",
        json!({ "traits": { "returning": true }, "anonymous_id": user(1) }),
    ));

    let cluster_api = |i: usize| nodes[i % nodes.len()].as_tenant(&tenant);
    let single_api = single.as_tenant(&single_tenant);
    let all_nodes: Vec<&Server> = nodes.iter().collect();
    let taken = || async {
        let mut text = String::new();
        for node in &nodes {
            text.push_str(&node.api().metrics().await);
        }
        waymark_tests::api::metrics_total(&text, &["waymark_forwards_taken_total"])
    };
    let mut before_merges = 0.0;
    for (round, batch) in [&visits, &merges, &later].into_iter().enumerate() {
        if round == 1 {
            before_merges = taken().await;
        }
        let one = single_api.post_events(batch).await;
        let many = cluster_api(round).post_events(batch).await;
        assert_eq!(one.accepted as usize, batch.len(), "{one:?}");
        assert_eq!(
            many.accepted as usize,
            batch.len(),
            "round {round}: {many:?}"
        );
        quiet_for(&[&single], &single_api, ONBOARDING).await;
        quiet_for(&all_nodes, &cluster_api(0), ONBOARDING).await;
    }
    // Steps two and three of the merges crossed partitions (the chance that all twelve pairs
    // share one is 4⁻¹²).
    assert!(
        taken().await >= before_merges + 2.0,
        "merges went between partitions"
    );

    // What the test compares: both ids of every pair as read (but the sinks' ids), the
    // account's members, the report.
    let seen = |api: Api| async move {
        let mut seen = Vec::new();
        for i in 0..PAIRS {
            for id in [anon(i), user(i)] {
                let mut read = serde_json::to_value(api.customer(&id).await).unwrap();
                without_provider_ids(&mut read);
                seen.push(json!([id, read]));
            }
        }
        let visitor = serde_json::to_value(api.customer(LATE_VISITOR).await).unwrap();
        seen.push(json!([LATE_VISITOR, visitor]));
        let account = api
            .tenant_client()
            .account("initech", &Default::default())
            .await
            .ok();
        seen.push(serde_json::to_value(account).unwrap());
        seen.push(api.report(ONBOARDING).await);
        seen
    };
    let sent = |sink: &Sink| {
        let mut sent: Vec<(String, String)> = sink
            .requests()
            .iter()
            .map(|r| {
                let customer = r.customer().unwrap_or_default().to_owned();
                (r.template().unwrap_or_default().to_owned(), customer)
            })
            .collect();
        sent.sort();
        sent
    };
    // Every node reads what one node reads, once the cluster settled.
    let same_everywhere = |what: &'static str| {
        let (nodes, tenant, single_api) = (&nodes, &tenant, &single_api);
        let seen = &seen;
        async move {
            let expected = seen(single_api.clone()).await;
            for node in nodes {
                let api = node.as_tenant(tenant);
                wait_for_eq(
                    &format!("{what} as one node, through {}", node.url()),
                    &expected,
                    || seen(api.clone()),
                )
                .await;
            }
            expected
        }
    };
    let expected = same_everywhere("the merges").await;
    // One node's merges did what the test is about: carried runs and ended ones.
    let report = &expected[expected.len() - 1]["report"]["overall"];
    assert_eq!(report["exited_by_reason"]["merged"], 4, "{report}");
    assert!(
        single_api.customer(&user(2)).await.is_some_and(|c| c
            .enrollments
            .iter()
            .any(|e| e.status == waymark_api::customers::EnrollmentStatus::Completed)),
        "a carried run reached first value through the anonymous id's event"
    );
    assert_eq!(sent(&cluster_sink), sent(&single_sink));
    let returning = single_api.customer(&user(1)).await.expect("user-01");
    assert_eq!(returning.attributes["returning"], true);
    // Later calls for ids merged into one of another partition (every pair here is split:
    // `anon-NN` and `user-NN` hash to different partitions of four): `group` calls of anon-03
    // and anon-07, and, through the Segment route in a batch beside an event of another
    // partition's customer (visitor-1, of partition 2), an alias merging a new visitor with a
    // run into anon-05. Each is ingested where its id leads, for the id it was merged into, as
    // one node ingests it.
    let visit = [event("s-late", LATE_VISITOR, "signed_up")];
    assert_eq!(single_api.post_events(&visit).await.accepted, 1);
    assert_eq!(cluster_api(1).post_events(&visit).await.accepted, 1);
    quiet_for(&[&single], &single_api, ONBOARDING).await;
    quiet_for(&all_nodes, &cluster_api(0), ONBOARDING).await;
    // The group call in a batch beside another partition's customer's event (visitor-3 is of
    // partition 0, anon-03 of 2): the answers in the batch's order. Then a group call alone.
    let late = [
        event_with(
            "g-late",
            &anon(3),
            "group",
            json!({ "group_id": "initech" }),
        ),
        event("v-late", "visitor-3", "page_viewed"),
    ];
    let alone = [event_with(
        "g-late-7",
        &anon(7),
        "group",
        json!({ "group_id": "initech" }),
    )];
    for batch in [&late[..], &alone[..]] {
        assert_eq!(
            single_api.post_events(batch).await.accepted as usize,
            batch.len()
        );
        let taken = cluster_api(0).post_events(batch).await;
        assert_eq!(taken.accepted as usize, batch.len(), "{taken:?}");
        let ids: Vec<&str> = taken.results.iter().map(|r| r.id.as_str()).collect();
        let sent: Vec<&str> = batch.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, sent, "the answers in the batch's order");
    }
    // A batch of one partition (anon-03 and visitor-1 are of partition 2) with a bad group call
    // of the merged id is refused whole, as on one node: checked before it is passed on, so
    // its other event is new when sent again.
    let bad = [
        event_with("g-bad", &anon(3), "group", json!({ "group_id": "" })),
        event("v-bad", "visitor-1", "page_viewed"),
    ];
    for (server, key) in [
        (&single, &single_tenant.api_key),
        (&nodes[1], &tenant.api_key),
    ] {
        let (code, body) = server
            .api()
            .request(Method::POST, "/v1/events", Some(key), json!(bad))
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_event", "{body}");
    }
    assert_eq!(single_api.post_events(&bad[1..]).await.accepted, 1);
    assert_eq!(cluster_api(1).post_events(&bad[1..]).await.accepted, 1);
    // A visit's event sent again after its customer was merged: a duplicate, as on one node
    // (the merged id's partition took its id before the merge).
    let again = [event("s-3", &anon(3), "signed_up")];
    assert_eq!(single_api.post_events(&again).await.duplicates, 1);
    let taken_again = cluster_api(1).post_events(&again).await;
    assert_eq!(taken_again.duplicates, 1, "{taken_again:?}");
    // The merged ids' later events (first value, above) are the known ids' latest events,
    // as one node logs them.
    let latest = |api: Api, id: String| async move {
        let (code, body) = api
            .tenant_client()
            .request(
                Method::GET,
                &format!("/v1/customers/{id}/events"),
                Body::Empty,
            )
            .await
            .unwrap();
        assert_eq!(code, StatusCode::OK, "{body}");
        let ids: Vec<Value> = body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| json!([e["id"], e["customer"], e["name"]]))
            .collect();
        ids
    };
    for i in [0, 2] {
        let expected = latest(single_api.clone(), user(i)).await;
        assert!(
            expected.iter().any(|e| e[0] == format!("f-{i}")),
            "{expected:?}"
        );
        for n in 0..nodes.len() {
            assert_eq!(
                latest(cluster_api(n), user(i)).await,
                expected,
                "through node {n}"
            );
        }
    }
    let merging = json!({ "batch": [
        { "type": "alias", "userId": anon(5), "previousId": LATE_VISITOR, "messageId": "a-late" },
        { "type": "track", "userId": "visitor-1", "event": "page_viewed", "messageId": "t-late" },
    ]});
    for (server, key) in [
        (&single, &single_tenant.api_key),
        (&nodes[2], &tenant.api_key),
    ] {
        let (code, body) = server
            .api()
            .request(Method::POST, "/v1/batch", Some(key), merging.clone())
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], 2, "{body}");
    }
    quiet_for(&[&single], &single_api, ONBOARDING).await;
    quiet_for(&all_nodes, &cluster_api(0), ONBOARDING).await;
    let expected = same_everywhere("the late calls").await;
    let members = &expected[expected.len() - 2]["members"];
    for i in [3, 7] {
        assert!(
            members.to_string().contains(&user(i)),
            "anon-{i:02}'s group call made user-{i:02} a member: {members}"
        );
    }
    let report = &expected[expected.len() - 1]["report"]["overall"];
    assert_eq!(
        report["exited_by_reason"]["merged"], 5,
        "the visitor's run ended, merged into user-05's carried one: {report}"
    );

    // Three days on: the carried nudges fire for the known ids, once; the ended runs' were
    // cancelled with them, on both.
    month::advance_to(&single.api(), start + 3 * DAY_MS + 1).await;
    month::advance_to(&nodes[2].api(), start + 3 * DAY_MS + 1).await;
    quiet_for(&[&single], &single_api, ONBOARDING).await;
    quiet_for(&all_nodes, &cluster_api(0), ONBOARDING).await;
    same_everywhere("the nudges").await;
    let nudged = sent(&single_sink);
    assert!(
        nudged.iter().any(|(t, c)| t == "nudge" && *c == user(1)),
        "{nudged:?}"
    );
    assert!(
        !nudged
            .iter()
            .any(|(t, c)| t == "nudge" && c.starts_with("anon-")),
        "{nudged:?}"
    );
    assert_eq!(sent(&cluster_sink), nudged);
}

/// Moves the manual clocks of `single` and of the cluster `node` is in to the first midnight
/// after both; answers it.
async fn both_at_next_midnight(single: &Server, node: &Server) -> i64 {
    let now = single
        .api()
        .clock_now()
        .await
        .max(node.api().clock_now().await);
    let start = (now / DAY_MS + 1) * DAY_MS;
    month::advance_to(&single.api(), start).await;
    month::advance_to(&node.api(), start).await;
    start
}

/// Tenant `acme` on `server`, running the onboarding journey (its webhook sending to `sink`).
async fn with_onboarding(server: &Server, sink: &Sink) -> CreatedTenant {
    let component = artifacts().component(ONBOARDING_CRATE);
    let channels: &[&str] = &[WEBHOOK];
    tenant_with_journey(
        server,
        "acme",
        Some((sink, channels)),
        ONBOARDING,
        component,
    )
    .await
    .0
}

/// `value` without the sinks' message ids (their order of arrival), everywhere in it.
fn without_provider_ids(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.remove("provider_id");
            fields.values_mut().for_each(without_provider_ids);
        }
        Value::Array(items) => items.iter_mut().for_each(without_provider_ids),
        _ => {}
    }
}

/// Issue 16 with issue 13's adaptive experiments: over four partitions the `stats` import
/// counts each partition's own customers (docs/SCALING.md, "Per partition, as built"), so
/// Thompson sampling learns on every partition from its share of the first wave, later
/// entrants go mostly to the arm that converts, and a backtest's fidelity replay, which replays
/// each partition's customers on that partition, reproduces every customer's arm.
#[tokio::test]
async fn an_adaptive_experiment_learns_on_every_partition_and_a_replay_agrees() {
    const JOURNEY: &str = "adaptive";
    // About fifteen customers of each wave per partition.
    const WAVE: usize = 60;
    let nats = NatsCluster::start(3);
    let nodes = four_partitions_over_three_nodes(&nats).await;
    let (tenant, _) = tenant_with_journey(
        &nodes[0],
        "lab",
        None,
        JOURNEY,
        artifacts().component(ADAPTIVE_CRATE),
    )
    .await;
    let through = |i: usize| nodes[i % nodes.len()].as_tenant(&tenant);
    let start = nodes[0].api().clock_now().await;
    let poster = through(1);
    let wave = |prefix: &'static str| signup_wave(&poster, &through, JOURNEY, prefix, WAVE);
    let first = wave("p").await;
    // Everyone on `discount` buys; no one on `plain` does.
    let first_discount = arm_converts(&through(2), &through, JOURNEY, &first, "discount").await;

    // An hour on, each partition's arm statistics count its own purchases.
    nodes[1].api().advance_clock(HOUR_MS).await;
    let second = wave("q").await;
    let to_discount = second.iter().filter(|(_, arm)| arm == "discount").count();
    assert!(
        to_discount >= WAVE - 2,
        "{to_discount} of {WAVE} later entrants went to the arm that converts: {second:?}"
    );
    let report = through(2).report(JOURNEY).await;
    let offer = &report["report"]["experiments"]["offer"];
    assert_eq!(offer["allocation"], "thompson", "{report:#}");
    assert_eq!(
        offer["arms"]["discount"]["converted"],
        first_discount.len() as u64
    );

    // Replayed partition by partition, the history reproduces every customer exactly.
    let request = waymark_api::backtests::BacktestRequest {
        candidate: waymark_api::backtests::Candidate::stored(1),
        from: start,
        to: start + 2 * HOUR_MS,
        customers: None,
        sample_fraction: None,
        fidelity: true,
    };
    let started = through(1)
        .tenant_client()
        .start_backtest(JOURNEY, &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = through(0).finished_backtest(JOURNEY, &started.id).await;
    assert_eq!(
        done.status,
        waymark_api::backtests::BacktestStatus::Done,
        "{:?}",
        done.error
    );
    let fidelity = done
        .result
        .and_then(|r| r.fidelity)
        .expect("fidelity asked for");
    assert_eq!(fidelity.divergences, []);
    assert_eq!(fidelity.customers, 2 * WAVE as u64);
    assert_eq!(fidelity.identical, 2 * WAVE as u64);
}
