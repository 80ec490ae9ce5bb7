//! Cluster building blocks (issue 16) on real NATS: what an acknowledgement through the
//! replicated log costs, and how long a dead node's partitions stay without an owner.
//!
//! `cargo bench -p waymark-host --bench cluster -- [APPENDS] [TRIALS]` (`cargo xtask bench
//! --only cluster`). Debian's `nats-server` 2.9 as child processes on loopback
//! (`waymark_tests::nats`), the client in this process, both sharing the machine's cores.
//!
//! 1. **Acknowledgement latency**, `APPENDS` (default 2,000) sequential operations each, on one
//!    server with R1 streams and on three servers with R3 streams: an input published with
//!    `Nats-Msg-Id` and its acknowledgement awaited (what ingest would answer `202` after), and
//!    an owner's append (`Owned::append`: the conditional publish and the read from the stream
//!    leader that confirms it is the next record). Percentiles of the wall time per operation.
//! 2. **Failover**, `TRIALS` (default 5) times: three nodes' control loops (`cluster::node`,
//!    lease period 3 s, 16 partitions) on a three-server cluster; once every partition has its
//!    preferred owner, one node's loop is aborted (no goodbye, as `kill -9`), and the time until
//!    every one of its partitions is held again (by the lease bucket) is measured.

use bytes::Bytes;
use std::time::{Duration, Instant};
use waymark_host::cluster::lease::Leases;
use waymark_host::cluster::log::{Chain, Kind};
use waymark_host::cluster::node::Node;
use waymark_host::cluster::partitions::placements;
use waymark_host::cluster::{Nats, Owned};
use waymark_tests::nats::NatsCluster;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let total: Duration = times.iter().sum();
    println!(
        "| {label} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0}/s |",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times.last().unwrap().as_secs_f64() * 1e6,
        times.len() as f64 / total.as_secs_f64()
    );
}

async fn latencies(urls: &[String], replicas: usize, appends: usize, label: &str) {
    let nats = Nats::connect(urls, replicas).await.expect("connect");
    let log = nats.log(0).await.expect("a log");
    let mut inputs = Vec::with_capacity(appends);
    for i in 0..appends {
        let start = Instant::now();
        log.publish_input(&format!("e{i}"), Bytes::from_static(&[0u8; 256]))
            .await
            .expect("an input");
        inputs.push(start.elapsed());
    }
    summary(&format!("{label}: input published, acknowledged"), inputs);

    let leases = nats.leases(Duration::from_secs(30)).await.expect("leases");
    let lease = leases.acquire(0, "bench").await.unwrap().expect("free");
    let mut owner = Owned::take_over(lease.holding(), log, Chain::default(), |_| {})
        .await
        .expect("takes over");
    let mut appended = Vec::with_capacity(appends);
    for _ in 0..appends {
        let start = Instant::now();
        owner
            .append(Kind::Record, Bytes::from_static(&[0u8; 1024]))
            .await
            .expect("an append");
        appended.push(start.elapsed());
    }
    summary(&format!("{label}: owner's append, confirmed"), appended);
}

async fn holders(leases: &Leases, partitions: u16) -> Vec<Option<String>> {
    let mut all = Vec::new();
    for p in 0..partitions {
        all.push(leases.holder(p).await.expect("a read").map(|h| h.node));
    }
    all
}

async fn failover(urls: &[String]) -> (Duration, usize) {
    const PARTITIONS: u16 = 16;
    let period = Duration::from_secs(3);
    let nats = Nats::connect(urls, 3).await.expect("connect");
    let leases = nats.leases(period).await.expect("leases");
    let ids = ["w1", "w2", "w3"].map(String::from);
    let mut loops = Vec::new();
    let mut stops = Vec::new();
    let mut receivers = Vec::new();
    let copies = tempfile::tempdir().expect("a temp dir");
    for id in &ids {
        let nats = Nats::connect(urls, 3).await.expect("connect");
        let (node, changes) = Node::join(nats, id, PARTITIONS, period, &copies.path().join(id))
            .await
            .expect("joins");
        let stop = tokio_util::sync::CancellationToken::new();
        loops.push(tokio::spawn(node.run(stop.clone())));
        stops.push(stop);
        receivers.push(changes);
    }
    let preferred: Vec<Option<String>> = placements(&ids, PARTITIONS)
        .iter()
        .map(|p| Some(p.owner.to_string()))
        .collect();
    while holders(&leases, PARTITIONS).await != preferred {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loops[2].abort();
    let died = Instant::now();
    let theirs = preferred
        .iter()
        .filter(|h| h.as_deref() == Some("w3"))
        .count();
    loop {
        let now = holders(&leases, PARTITIONS).await;
        if now
            .iter()
            .all(|h| matches!(h.as_deref(), Some("w1" | "w2")))
        {
            break;
        }
        assert!(
            died.elapsed() < Duration::from_secs(60),
            "no failover: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = died.elapsed();
    for (stop, handle) in stops.iter().zip(loops).take(2) {
        stop.cancel();
        handle.await.expect("a loop ends");
    }
    (took, theirs)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let appends: usize = args.first().map_or(2_000, |a| a.parse().expect("APPENDS"));
    let trials: usize = args.get(1).map_or(5, |a| a.parse().expect("TRIALS"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    println!("| operation | n | p50 | p99 | max | rate (one at a time) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    {
        let one = NatsCluster::start(1);
        runtime.block_on(latencies(&one.urls(), 1, appends, "1 server, R1"));
    }
    {
        let three = NatsCluster::start(3);
        runtime.block_on(latencies(&three.urls(), 3, appends, "3 servers, R3"));
    }

    println!();
    println!("| trial | partitions of the dead node | held again after |");
    println!("| ---: | ---: | ---: |");
    let mut times = Vec::new();
    for trial in 1..=trials {
        let three = NatsCluster::start(3);
        let (took, theirs) = runtime.block_on(failover(&three.urls()));
        println!("| {trial} | {theirs} | {:.2} s |", took.as_secs_f64());
        times.push(took);
    }
    times.sort();
    println!(
        "\nfailover over {trials} trials: median {:.2} s, max {:.2} s (lease period 3 s)",
        percentile(&times, 0.5).as_secs_f64(),
        times.last().unwrap().as_secs_f64()
    );
}
