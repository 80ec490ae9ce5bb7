//! Cluster building blocks (issue 16, `docs/SCALING.md`) against real NATS: Debian's
//! `nats-server` 2.9, three servers on loopback with JetStream (one for the single-server
//! case), started by `waymark_tests::nats`. Leases: one holder at a time, expiry hands a
//! partition on under a higher epoch and the old holder's guard has run out by then. Logs: a
//! stale owner's append is refused once a new owner took over; appends racing on one
//! expectation leave one history for every reader; appends and leases carry on through the loss
//! of a NATS server.

use bytes::Bytes;
use std::time::{Duration, Instant};
use waymark_host::cluster::lease::Leases;
use waymark_host::cluster::log::{AppendError, Chain, Entry, Kind, Verdict};
use waymark_host::cluster::{ClusterError, Nats, Owned};
use waymark_tests::nats::NatsCluster;

/// What a test of copies starts from: a connection to `cluster` (`replicas` copies of each
/// stream), the leases (2 s), the snapshots, `partition`'s log, and `copies` empty directories.
async fn copies_of(
    cluster: &NatsCluster,
    replicas: usize,
    partition: u16,
    copies: usize,
) -> (
    Nats,
    Leases,
    waymark_host::cluster::replica::Snapshots,
    waymark_host::cluster::log::PartitionLog,
    Vec<tempfile::TempDir>,
) {
    let nats = Nats::connect(&cluster.urls(), replicas)
        .await
        .expect("connect");
    let leases = nats.leases(Duration::from_secs(2)).await.expect("leases");
    let snapshots = nats.snapshots().await.expect("the snapshots");
    let log = nats.log(partition).await.expect("the log");
    let dirs = (0..copies).map(|_| tempfile::tempdir().unwrap()).collect();
    (nats, leases, snapshots, log, dirs)
}

/// The names of the entries of `dir`, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Every record on `partition`'s log, each with what a fresh reader's chain makes of it.
async fn history(nats: &Nats, partition: u16) -> Vec<(Entry, Verdict)> {
    let log = nats.log(partition).await.expect("the log");
    let mut chain = Chain::default();
    let mut all = Vec::new();
    loop {
        let entries = log.read_after(chain.previous, 100).await.expect("a read");
        if entries.is_empty() {
            return all;
        }
        for entry in entries {
            let verdict = chain.judge(&entry);
            // Purged before it (a snapshot): the history shown starts here.
            chain.previous = entry.seq;
            all.push((entry, verdict));
        }
    }
}

/// Tries to acquire `partition` for `node` every 50 ms until it succeeds (within `limit`).
async fn acquire_when_free(
    leases: &Leases,
    partition: u16,
    node: &str,
    limit: Duration,
) -> waymark_host::cluster::lease::Lease {
    let start = Instant::now();
    loop {
        if let Some(lease) = leases.acquire(partition, node).await.expect("acquire") {
            return lease;
        }
        assert!(
            start.elapsed() < limit,
            "{node} could not acquire partition {partition} in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn one_node_at_a_time_holds_a_partition_s_lease() {
    let servers = NatsCluster::start(3);
    runtime().block_on(async {
        let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
        let leases = nats.leases(Duration::from_secs(5)).await.expect("leases");
        let mut epochs = Vec::new();
        for partition in 0..4u16 {
            // Six nodes race for each partition at once.
            let tries = (0..6).map(|n| {
                let leases = leases.clone();
                async move { leases.acquire(partition, &format!("node-{n}")).await }
            });
            let won: Vec<_> = futures::future::join_all(tries)
                .await
                .into_iter()
                .filter_map(|r| r.expect("an answer"))
                .collect();
            assert_eq!(won.len(), 1, "partition {partition}: {won:?}");
            let lease = &won[0];
            assert!(lease.guard().may_act());
            let holder = leases.holder(partition).await.unwrap().expect("a holder");
            assert_eq!(
                (holder.node.as_str(), holder.epoch),
                (lease.node(), lease.epoch())
            );
            epochs.push(lease.epoch());
        }
        // Epochs are the bucket's revisions: distinct and rising with each acquisition.
        assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{epochs:?}");

        // A lease released is free at once, under a higher epoch.
        let lease = leases.acquire(9, "a").await.unwrap().expect("free");
        let guard = lease.guard().clone();
        let first = lease.epoch();
        leases.release(lease).await.expect("release");
        assert!(!guard.may_act(), "a released lease's guard is fenced");
        assert_eq!(leases.holder(9).await.unwrap(), None);
        let again = leases.acquire(9, "b").await.unwrap().expect("free again");
        assert!(again.epoch() > first);

        // A node started with another lease period is refused.
        let refused = nats.leases(Duration::from_secs(7)).await;
        assert!(
            matches!(refused, Err(ClusterError::Config(_))),
            "{refused:?}"
        );
    });
}

#[test]
fn an_expired_lease_passes_on_under_a_higher_epoch_after_the_old_guard_ran_out() {
    let servers = NatsCluster::start(3);
    runtime().block_on(async {
        let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
        let period = Duration::from_secs(1);
        let leases = nats.leases(period).await.expect("leases");

        let mut a = leases.acquire(0, "a").await.unwrap().expect("free");
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            leases.renew(&mut a).await.expect("a renewal");
            assert!(a.guard().may_act());
        }
        assert_eq!(
            leases.acquire(0, "b").await.unwrap().map(|l| l.epoch()),
            None
        );

        // `a` stops renewing (a paused process); `b` keeps trying.
        let stopped = Instant::now();
        let b = acquire_when_free(&leases, 0, "b", Duration::from_secs(10)).await;
        let took = stopped.elapsed();
        // The safety property: by the time anybody else holds the lease, `a` may not act.
        assert!(
            !a.guard().may_act(),
            "b acquired after {took:?} while a's guard still allowed acting"
        );
        assert!(b.epoch() > a.epoch());
        eprintln!("the lease passed on {took:?} after the last renewal (period {period:?})");

        // `a` comes back: its renewal is refused and fences its guard for good.
        let renewed = leases.renew(&mut a).await;
        assert!(
            matches!(renewed, Err(ClusterError::LeaseLost(0))),
            "{renewed:?}"
        );
        assert!(a.guard().is_fenced());
        assert_eq!(
            leases.holder(0).await.unwrap().map(|h| (h.node, h.epoch)),
            Some(("b".to_string(), b.epoch()))
        );
    });
}

#[test]
fn a_stale_owner_cannot_append_once_a_new_owner_took_over() {
    let servers = NatsCluster::start(3);
    runtime().block_on(async {
        let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
        let leases = nats.leases(Duration::from_secs(1)).await.expect("leases");
        let log = nats.log(5).await.expect("a log");

        let lease = leases.acquire(5, "a").await.unwrap().expect("free");
        let mut a = Owned::take_over(lease.holding(), log.clone(), Chain::default(), |_| {})
            .await
            .expect("a takes over an empty log");
        for i in 0..3 {
            a.append(Kind::Record, Bytes::from(format!("a{i}")))
                .await
                .expect("a appends");
        }
        let a_read_to = a.chain().previous;
        let a_epoch = a.epoch();

        // `a` pauses past its lease; `b` acquires, reads what `a` wrote, and takes over.
        let lease = acquire_when_free(&leases, 5, "b", Duration::from_secs(10)).await;
        let mut applied = Vec::new();
        let mut b = Owned::take_over(lease.holding(), log.clone(), Chain::default(), |e| {
            applied.push(e.payload.clone())
        })
        .await
        .expect("b takes over");
        assert_eq!(applied, ["a", "a0", "a1", "a2"].map(Bytes::from));
        b.append(Kind::Record, Bytes::from("b0"))
            .await
            .expect("b appends");

        // `a` resumes. Its guard has run out, so it appends nothing...
        let refused = a.append(Kind::Record, Bytes::from("a3")).await;
        assert!(
            matches!(refused, Err(AppendError::LeaseExpired(5))),
            "{refused:?}"
        );
        // ...and had it checked its guard just before pausing, the stream refuses the append
        // itself: the log moved on past what `a` read.
        let refused = log
            .append(a_epoch, a_read_to, Kind::Record, Bytes::from("a3"))
            .await;
        assert!(
            matches!(refused, Err(AppendError::Fenced(5))),
            "{refused:?}"
        );

        // Every reader sees one linear history: a's Took and records, b's Took and record.
        let seen: Vec<(Kind, Bytes, Verdict)> = history(&nats, 5)
            .await
            .into_iter()
            .map(|(e, v)| (e.kind, e.payload, v))
            .collect();
        let expected: Vec<(Kind, Bytes, Verdict)> = [
            (Kind::Took, "a"),
            (Kind::Record, "a0"),
            (Kind::Record, "a1"),
            (Kind::Record, "a2"),
            (Kind::Took, "b"),
            (Kind::Record, "b0"),
        ]
        .into_iter()
        .map(|(k, p)| (k, Bytes::from(p), Verdict::Apply))
        .collect();
        assert_eq!(seen, expected);
    });
}

#[test]
fn appends_racing_on_one_expectation_leave_one_history_for_every_reader() {
    let servers = NatsCluster::start(3);
    runtime().block_on(async {
        let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
        let log = nats.log(9).await.expect("a log");
        const ROUNDS: usize = 40;
        const RACERS: u64 = 4;
        let mut accepted = 0;
        for round in 0..ROUNDS {
            let last = log.last().await.expect("the last record");
            let appends = (0..RACERS).map(|racer| {
                let log = log.clone();
                async move {
                    log.append(
                        1 + racer,
                        last,
                        Kind::Record,
                        Bytes::from(format!("{round}.{racer}")),
                    )
                    .await
                }
            });
            let results = futures::future::join_all(appends).await;
            let ok = results.iter().filter(|r| r.is_ok()).count();
            for r in &results {
                assert!(
                    matches!(r, Ok(_) | Err(AppendError::Fenced(9))),
                    "an append failed otherwise: {r:?}"
                );
            }
            assert!(ok >= 1, "round {round}: every racer was refused");
            accepted += ok;
        }
        // The stream should accept exactly one per round; nats-server before 2.9.20 could
        // accept two (nats-server#4320). Either way every reader applies one per round.
        eprintln!(
            "{accepted} appends accepted in {ROUNDS} rounds of {RACERS} racing on one expectation"
        );
        let records = history(&nats, 9).await;
        assert_eq!(records.len(), accepted);
        let applied = records.iter().filter(|(_, v)| *v == Verdict::Apply).count();
        assert_eq!(applied, ROUNDS, "one record applied per round");
        assert!(records
            .iter()
            .all(|(_, v)| matches!(v, Verdict::Apply | Verdict::NotAfterPrevious)));
    });
}

#[test]
fn an_owner_carries_on_through_the_loss_of_a_nats_server() {
    let mut servers = NatsCluster::start(3);
    let rt = runtime();
    let nats = rt
        .block_on(Nats::connect(&servers.urls(), 3))
        .expect("connect");
    // A period longer than a stream leader election, so the lease outlives the outage.
    let leases = rt
        .block_on(nats.leases(Duration::from_secs(30)))
        .expect("leases");
    let log = rt.block_on(nats.log(3)).expect("a log");
    let mut lease = rt.block_on(leases.acquire(3, "a")).unwrap().expect("free");
    let mut owner = rt
        .block_on(Owned::take_over(
            lease.holding(),
            log,
            Chain::default(),
            |_| {},
        ))
        .expect("takes over");
    for i in 0..10 {
        rt.block_on(owner.append(Kind::Record, Bytes::from(format!("{i}"))))
            .expect("an append");
    }

    // Kill the server leading the partition's stream: its RAFT group elects another leader.
    let leader = rt.block_on(async {
        let mut stream = nats
            .jetstream()
            .get_stream("WM_P3")
            .await
            .expect("the stream");
        let info = stream.info().await.expect("its info");
        info.cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .expect("a stream leader")
    });
    let victim = (0..servers.len())
        .find(|&i| servers.name(i) == leader)
        .expect("the leader is one of ours");
    rt.block_on(leases.renew(&mut lease)).expect("a renewal");
    servers.kill(victim);
    let killed = Instant::now();

    rt.block_on(async {
        let mut resumed = None;
        let mut i = 10;
        while i < 20 {
            match owner
                .append(Kind::Record, Bytes::from(format!("{i}")))
                .await
            {
                Ok(_) => {
                    resumed.get_or_insert(killed.elapsed());
                    i += 1;
                }
                Err(AppendError::Cluster(e)) => {
                    // The lost answer's record may have landed: read before appending again.
                    loop {
                        assert!(
                            killed.elapsed() < Duration::from_secs(30),
                            "appends did not resume: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if let Ok(moved) = owner.resync().await {
                            i += moved
                                .iter()
                                .filter(|(e, v)| e.kind == Kind::Record && *v == Verdict::Apply)
                                .count();
                            break;
                        }
                    }
                }
                Err(e) => panic!("append {i}: {e}"),
            }
        }
        eprintln!(
            "appends resumed {:?} after the stream leader was killed",
            resumed.unwrap_or_default()
        );
        // The lease bucket's stream may have lost its leader too: renew until it answers.
        loop {
            match leases.renew(&mut lease).await {
                Ok(()) => break,
                Err(ClusterError::Nats { .. }) if killed.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("no renewal after the election: {e}"),
            }
        }
    });
    assert!(owner.guard().may_act(), "the lease outlived the election");

    let records = rt.block_on(history(&nats, 3));
    let payloads: Vec<String> = records
        .iter()
        .filter(|(e, v)| e.kind == Kind::Record && *v == Verdict::Apply)
        .map(|(e, _)| String::from_utf8(e.payload.to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected, "every record once, in order");

    servers.restart(victim);
}

/// Who holds each of `partitions` partitions, by the lease bucket.
async fn holders(leases: &Leases, partitions: u16) -> Vec<Option<String>> {
    let mut all = Vec::new();
    for partition in 0..partitions {
        let holder = leases.holder(partition).await.expect("a lease read");
        all.push(holder.map(|h| h.node));
    }
    all
}

/// Polls `holders` until `done` says so (within `limit`); answers how long it took.
async fn until_holders(
    leases: &Leases,
    partitions: u16,
    limit: Duration,
    done: impl Fn(&[Option<String>]) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let now = holders(leases, partitions).await;
        if done(&now) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "after {limit:?} the holders are {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn nodes_share_the_partitions_and_take_over_those_of_a_node_that_dies_or_leaves() {
    use waymark_host::cluster::node::{Change, Node};
    use waymark_host::cluster::partitions::placements;
    const PARTITIONS: u16 = 16;
    let servers = NatsCluster::start(3);
    runtime().block_on(async {
        let period = Duration::from_secs(3); // docs/SCALING.md's lease period
        let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
        let leases = nats.leases(period).await.expect("leases");
        let ids = ["w1", "w2", "w3"].map(String::from);
        let mut stops = Vec::new();
        let mut loops = Vec::new();
        let mut runners = Vec::new();
        let copies = tempfile::tempdir().unwrap();
        // The first node fixes the partition count; a node started with another is refused.
        Node::join(
            nats.clone(),
            "w0",
            PARTITIONS,
            period,
            &copies.path().join("w0"),
        )
        .await
        .expect("joins");
        let refused = Node::join(nats.clone(), "odd", 8, period, &copies.path().join("odd")).await;
        assert!(
            matches!(&refused, Err(ClusterError::Config(m)) if m.contains("16 partitions")),
            "{:?}",
            refused.map(|_| ())
        );
        for id in &ids {
            let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
            let (node, mut changes) =
                Node::join(nats, id, PARTITIONS, period, &copies.path().join(id))
                    .await
                    .expect("joins");
            let stop = tokio_util::sync::CancellationToken::new();
            loops.push(tokio::spawn(node.run(stop.clone())));
            stops.push(stop);
            // What runs the partitions: here, it keeps each owner and checks its guard.
            runners.push(tokio::spawn(async move {
                let mut owned = std::collections::BTreeMap::new();
                while let Some(change) = changes.recv().await {
                    match change {
                        Change::Gained(owner) => {
                            owned.insert(owner.partition, owner);
                        }
                        Change::Lost(partition) => {
                            let owner = owned.remove(&partition).expect("lost what it held");
                            assert!(
                                !owner.guard.may_act(),
                                "a lost partition's guard allows acting"
                            );
                        }
                        _ => {}
                    }
                }
                owned.len()
            }));
        }

        // Each partition ends up with its preferred owner over the three.
        let preferred: Vec<Option<String>> = placements(&ids, PARTITIONS)
            .iter()
            .map(|p| Some(p.owner.to_string()))
            .collect();
        let settled = until_holders(&leases, PARTITIONS, Duration::from_secs(30), |now| {
            now == preferred.as_slice()
        })
        .await;
        eprintln!("16 partitions placed over 3 nodes in {settled:?}");

        // w3 dies: its loop stops with no goodbye; its leases run out and its partitions go to
        // their standbys.
        loops[2].abort();
        let theirs: Vec<u16> = (0..PARTITIONS)
            .filter(|p| preferred[*p as usize].as_deref() == Some("w3"))
            .collect();
        assert!(!theirs.is_empty());
        let failover = until_holders(&leases, PARTITIONS, Duration::from_secs(30), |now| {
            now.iter()
                .all(|h| matches!(h.as_deref(), Some("w1" | "w2")))
        })
        .await;
        // ...and settle with the preferred owners over the two left.
        let expected: Vec<Option<String>> = placements(&ids[..2], PARTITIONS)
            .iter()
            .map(|p| Some(p.owner.to_string()))
            .collect();
        until_holders(&leases, PARTITIONS, Duration::from_secs(30), |now| {
            now == expected.as_slice()
        })
        .await;
        eprintln!(
            "w3's {} partitions held again {failover:?} after it died (lease period {period:?})",
            theirs.len()
        );

        // w2 leaves gracefully: its partitions pass to w1 without waiting for an expiry.
        stops[1].cancel();
        let handover = until_holders(&leases, PARTITIONS, Duration::from_secs(30), |now| {
            now.iter().all(|h| h.as_deref() == Some("w1"))
        })
        .await;
        eprintln!("w2's partitions handed over {handover:?} after it left");
        // The membership as any node reads it: w2 left (its entry deleted at once), w3 died
        // (its entry expired two lease periods after its last beat).
        let observing = tempfile::tempdir().unwrap();
        let (mut observer, _) = Node::join(
            nats.clone(),
            "observer",
            PARTITIONS,
            period,
            observing.path(),
        )
        .await
        .expect("joins");
        let start = Instant::now();
        loop {
            let live = observer.live().await.expect("the live nodes");
            if live == ["observer", "w1"] {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "live: {live:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (&mut loops[1]).await.expect("w2's loop ends");
        stops[0].cancel();
        (&mut loops[0]).await.expect("w1's loop ends");
        // Everything w1 and w2 gained they gave up again when they left.
        for runner in runners.drain(..2) {
            assert_eq!(runner.await.expect("a runner"), 0);
        }
        assert_eq!(
            holders(&leases, PARTITIONS).await,
            vec![None; PARTITIONS as usize]
        );
    });
}

#[test]
fn a_node_paused_past_its_leases_gives_them_up_and_appends_nothing_when_it_resumes() {
    use waymark_host::cluster::node::{Change, Node};
    const PARTITIONS: u16 = 4;
    let servers = NatsCluster::start(3);
    runtime().block_on(async {
        let period = Duration::from_secs(2);
        let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
        let leases = nats.leases(period).await.expect("leases");
        let copies = tempfile::tempdir().unwrap();
        let (mut a, mut a_changes) = Node::join(
            nats.clone(),
            "a",
            PARTITIONS,
            period,
            &copies.path().join("a"),
        )
        .await
        .expect("a joins");
        // `a` alone: it takes every partition (the preferred owner of each).
        let renewals = tokio::spawn(a.renewals());
        for _ in 0..3 {
            a.tick().await.expect("a tick");
        }
        assert_eq!(a.holds().await, vec![0, 1, 2, 3]);
        // The pause: no renewals, no ticks.
        renewals.abort();
        let mut owners = Vec::new();
        while let Ok(change) = a_changes.try_recv() {
            match change {
                Change::Gained(owner) => owners.push(owner),
                other => panic!("a alone: {other:?} after {owners:?}"),
            }
        }
        assert_eq!(owners.len(), 4);

        // `b` joins and runs; `a` is paused (no ticks) well past its leases.
        let (b, _b_changes) = Node::join(
            nats.clone(),
            "b",
            PARTITIONS,
            period,
            &copies.path().join("b"),
        )
        .await
        .expect("b joins");
        let stop = tokio_util::sync::CancellationToken::new();
        let b_loop = tokio::spawn(b.run(stop.clone()));
        until_holders(&leases, PARTITIONS, Duration::from_secs(30), |now| {
            now.iter().all(|h| h.as_deref() == Some("b"))
        })
        .await;

        // `a` resumes: its guards ran out; what it writes to its copies is refused at their
        // flush, and its next tick finds every lease lost.
        for owner in &owners {
            assert!(!owner.guard.may_act());
            let refused = owner.store.ingest("t", &events(0, 1), 0, None).await;
            assert!(refused.is_err(), "{refused:?}");
        }
        a.renew().await;
        a.tick().await.expect("a tick");
        let mut lost = Vec::new();
        while let Ok(change) = a_changes.try_recv() {
            match change {
                Change::Lost(p) => lost.push(p),
                // `b` may hand a partition that `a` is the preferred owner of back to it at
                // once: only ever under a new epoch, after `a` gave up the old lease.
                Change::Gained(again) => {
                    let p = again.partition;
                    assert!(lost.contains(&p), "{p} regained before it was given up");
                    let old = owners.iter().find(|o| o.partition == p).unwrap();
                    assert!(again.epoch > old.epoch);
                }
                other => panic!("{other:?}"),
            }
        }
        lost.sort();
        assert_eq!(lost, vec![0, 1, 2, 3]);
        // Every record on every partition's log is applied: `a` appended nothing after `b`'s
        // Took, and its refused writes never reached a log.
        for partition in 0..PARTITIONS {
            let records = history(&nats, partition).await;
            assert!(records.iter().all(|(_, v)| *v == Verdict::Apply));
            assert!(records.iter().all(|(e, _)| e.kind != Kind::Record));
        }
        stop.cancel();
        b_loop.await.expect("b's loop ends");
    });
}

/// `count` events for a handful of customers, ids from `from`.
fn events(from: usize, count: usize) -> Vec<waymark_host::model::Event> {
    (from..from + count)
        .map(|i| waymark_host::model::Event {
            id: format!("e{i}"),
            customer: format!("c{}", i % 7),
            name: "seen".into(),
            properties: Default::default(),
            timestamp: i as i64,
        })
        .collect()
}

/// A partition's state kept through its log (`cluster::replica`): the owner's copy publishes
/// what it writes as records (ingest answers once the log has them); a standby applying them
/// holds the same records; when the owner stops renewing, the standby takes over from where it
/// stands, reading only what it had not applied; the old owner's writes after that are refused
/// at its flush and reach nobody's copy; a fresh copy reading the whole log holds exactly what
/// the new owner holds.
#[test]
fn a_partitions_copy_follows_its_log_and_its_standby_takes_over_where_it_stands() {
    let cluster = NatsCluster::start(3);
    runtime().block_on(async {
        use waymark_host::cluster::replica::Replica;
        let nats = Nats::connect(&cluster.urls(), 3).await.expect("connect");
        let leases = nats.leases(Duration::from_secs(2)).await.expect("leases");
        let partition = 9;
        let log = nats.log(partition).await.expect("the log");
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let open = |i: usize| Replica::open(dirs[i].path(), log.clone(), 1, 8 << 20).unwrap();
        let (mut a, mut b) = (open(0), open(1));
        let digest = |r: &Replica| r.store().digest().unwrap();

        let lease_a = acquire_when_free(&leases, partition, "a", Duration::from_secs(10)).await;
        a.take_over(lease_a.holding()).await.expect("a takes over");
        a.store()
            .ingest("t", &events(0, 50), 1_000, None)
            .await
            .expect("accepted once the log has it");
        assert!(b.follow().await.expect("b follows") >= 2);
        assert_eq!(
            digest(&b),
            digest(&a),
            "the standby holds what the owner holds"
        );

        // Written by a, not yet followed by b.
        a.store()
            .ingest("t", &events(50, 30), 2_000, None)
            .await
            .unwrap();
        assert_ne!(digest(&b), digest(&a));

        // a stops renewing (paused, dead): its lease runs out and b takes over from where it
        // stands, applying the records it had not.
        let lease_b = acquire_when_free(&leases, partition, "b", Duration::from_secs(10)).await;
        assert!(lease_b.epoch() > lease_a.epoch());
        b.take_over(lease_b.holding()).await.expect("b takes over");
        assert_eq!(
            digest(&b),
            digest(&a),
            "the new owner starts from the old one's state"
        );

        // a carries on as if it still owned the partition: refused, and its writes stay its own.
        let stale = a.store().ingest("t", &events(80, 10), 3_000, None).await;
        assert!(stale.is_err(), "a stale owner's writes were acknowledged");
        b.store()
            .ingest("t", &events(90, 40), 3_000, None)
            .await
            .unwrap();

        let mut c = open(2);
        c.follow().await.expect("c reads the whole log");
        assert_eq!(
            digest(&c),
            digest(&b),
            "a fresh copy holds what the owner holds"
        );
        assert_ne!(digest(&c), digest(&a));
        let seen = |r: &Replica, id: &str| {
            r.store()
                .history("t")
                .any(|e| e.is_ok_and(|(_, logged)| logged.id == id))
        };
        assert!(seen(&c, "e95") && seen(&c, "e10") && !seen(&c, "e85"));
    });
}

/// Nodes keep copies (`cluster::node` with `cluster::replica`): a partition's owner writes to
/// its copy (events ingested, answered once the log has them), its standby keeps a copy of its
/// own up to the log's end (and snapshots it, purging the log), and when the owner dies (its loop aborted, as `kill -9`) the new
/// owner's copy holds exactly what the dead owner's held, and takes writes of its own.
#[test]
fn a_node_that_dies_leaves_its_partitions_state_with_their_standbys() {
    use waymark_host::cluster::node::{Change, Node};
    const PARTITIONS: u16 = 4;
    let servers = NatsCluster::start(3);
    runtime().block_on(async {
        let period = Duration::from_secs(2);
        let copies = tempfile::tempdir().unwrap();
        let (written, mut gains) = tokio::sync::mpsc::unbounded_channel();
        let mut loops = Vec::new();
        for id in ["w1", "w2"] {
            let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
            let (mut node, mut changes) =
                Node::join(nats, id, PARTITIONS, period, &copies.path().join(id))
                    .await
                    .expect("joins");
            // Standbys snapshot as soon as they applied a record: the new owner starts from a
            // copy whose log was purged under it.
            node.snapshot_every(1, Duration::from_secs(1));
            let stop = tokio_util::sync::CancellationToken::new();
            loops.push((tokio::spawn(node.run(stop.clone())), stop));
            // What runs the partitions: here, each gained partition takes 40 events.
            let written = written.clone();
            tokio::spawn(async move {
                let mut batch = 0;
                while let Some(change) = changes.recv().await {
                    if let Change::Gained(g) = change {
                        batch += 1;
                        let node = if id == "w1" { 0 } else { 50_000 };
                        let from = node + 1_000 * usize::from(g.partition) + 100 * batch;
                        let accepted = g.store.ingest("t", &events(from, 40), 0, None).await;
                        let _ = written.send((id, g, accepted.is_ok()));
                    }
                }
            });
        }
        // Each partition gained once and written by its owner (perhaps after a handover).
        let mut owners = std::collections::BTreeMap::new();
        let start = Instant::now();
        while owners.len() < usize::from(PARTITIONS) || start.elapsed() < Duration::from_secs(3) {
            match tokio::time::timeout(Duration::from_millis(200), gains.recv()).await {
                Ok(Some((id, g, true))) => {
                    owners.insert(g.partition, (id, g));
                }
                Ok(Some((_, _, false))) | Err(_) => {}
                Ok(None) => panic!("the runners stopped"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "placed: {owners:?}"
            );
        }
        let (dead, theirs) = owners
            .iter()
            .find(|(_, (id, _))| *id == "w1")
            .map(|(p, (_, g))| (*p, g.store.digest().unwrap()))
            .expect("w1 owns a partition");
        // The standby (w2, the only other node) keeps a copy, following the log every tick;
        // then w1 dies.
        tokio::time::sleep(period).await;
        let standby_copies = names_in(&copies.path().join("w2"));
        assert!(
            standby_copies
                .iter()
                .any(|d| d.starts_with(&format!("p{dead}-"))),
            "w2 keeps no copy of partition {dead}: {standby_copies:?}"
        );
        let (w1, _) = &loops[0];
        w1.abort();
        let died = Instant::now();
        let (id, g, accepted) = loop {
            let (id, g, accepted) = tokio::time::timeout(Duration::from_secs(30), gains.recv())
                .await
                .expect("a takeover within 30 s")
                .expect("the runners run");
            if g.partition == dead {
                break (id, g, accepted);
            }
        };
        eprintln!(
            "partition {dead} taken over {:?} after its owner died",
            died.elapsed()
        );
        assert_eq!(id, "w2");
        assert!(accepted, "the new owner's writes are accepted");
        let nats = Nats::connect(&servers.urls(), 3).await.expect("connect");
        let log = history(&nats, dead).await;
        assert!(
            log[0].0.seq > 1,
            "the standby's snapshot purged the log: {log:?}"
        );
        // What it holds: the dead owner's state, then its own 40 events.
        let history: Vec<String> = g.store.history("t").map(|e| e.unwrap().1.id).collect();
        assert_eq!(history.len(), 80, "{history:?}");
        let dead_store = &owners[&dead].1.store;
        let before: Vec<String> = dead_store.history("t").map(|e| e.unwrap().1.id).collect();
        assert_eq!(before, history[..40]);
        assert_eq!(
            dead_store.digest().unwrap(),
            theirs,
            "the dead owner's copy unchanged"
        );
        // An event the dead owner accepted is a duplicate for the new one.
        let again: Vec<_> = dead_store
            .history("t")
            .map(|e| e.unwrap().1.into_event())
            .collect();
        g.store.ingest("t", &again, 0, None).await.unwrap();
        assert_eq!(g.store.history("t").count(), 80);
        let (_, stop) = &loops[1];
        stop.cancel();
    });
}

/// Snapshots (`Replica::snapshot`): a standby's copy written to the object store with the
/// position it covers, and the log purged up to it; a copy restored from it holds what the
/// standby held and follows the log from there (and can take the partition over); a copy
/// that would start before the purge finds its history missing rather than skipping it; an
/// owner's copy is not snapshotted.
#[test]
fn a_snapshot_lets_a_new_copy_start_where_the_purged_log_begins() {
    let cluster = NatsCluster::start(3);
    runtime().block_on(async {
        use waymark_host::cluster::replica::Replica;
        let partition = 3;
        let (nats, leases, snapshots, log, dirs) = copies_of(&cluster, 3, partition, 4).await;
        let digest = |r: &Replica| r.store().digest().unwrap();

        // Nothing to restore yet: a fresh copy.
        let mut owner = Replica::restore(dirs[0].path(), log.clone(), 1, 8 << 20, &snapshots)
            .await
            .expect("a fresh copy");
        let lease = acquire_when_free(&leases, partition, "a", Duration::from_secs(10)).await;
        owner.take_over(lease.holding()).await.expect("takes over");
        for round in 0..5 {
            let accepted = owner
                .store()
                .ingest("t", &events(round * 20, 20), 0, None)
                .await;
            accepted.expect("accepted");
        }
        // Some 6 MB more, so that the snapshot is many frames, streamed both ways.
        let mut large = events(1_000, 1_500);
        for event in &mut large {
            event
                .properties
                .insert("notes".into(), "x".repeat(4_000).into());
        }
        owner
            .store()
            .ingest("t", &large, 0, None)
            .await
            .expect("accepted");
        let mut standby = Replica::open(dirs[1].path(), log.clone(), 1, 8 << 20).unwrap();
        standby.follow().await.expect("follows");
        assert!(
            owner.snapshot(&snapshots).await.is_err(),
            "an owner's copy snapshotted"
        );
        let at = standby.take_snapshot(&snapshots).await.expect("a snapshot");
        assert!(at.previous >= 7, "{at:?}");
        assert_eq!(
            history(&nats, partition).await.first().map(|(e, _)| e.seq),
            Some(at.previous),
            "the log is purged up to the snapshot's record"
        );

        owner
            .store()
            .ingest("t", &events(100, 20), 0, None)
            .await
            .unwrap();
        let mut restored = Replica::restore(dirs[2].path(), log.clone(), 1, 8 << 20, &snapshots)
            .await
            .expect("restored");
        assert_eq!(restored.chain(), &at);
        assert_eq!(digest(&restored), digest(&standby));
        restored.follow().await.expect("follows from the snapshot");
        assert_eq!(digest(&restored), digest(&owner));

        // A copy starting from nothing cannot read a history that is gone.
        let mut behind = Replica::open(dirs[3].path(), log.clone(), 1, 8 << 20).unwrap();
        let missing = behind.follow().await;
        assert!(
            matches!(missing, Err(ClusterError::Missing(3))),
            "{missing:?}"
        );

        // The restored copy takes the partition over once the owner's lease runs out.
        let lease = acquire_when_free(&leases, partition, "c", Duration::from_secs(10)).await;
        restored
            .take_over(lease.holding())
            .await
            .expect("takes over");
        restored
            .store()
            .ingest("t", &events(120, 5), 0, None)
            .await
            .unwrap();
        assert_eq!(restored.store().history("t").count(), 1_625);
    });
}

/// A handover: the holder hands the partition to its preferred owner once that node's copy has
/// caught up, and lets whoever runs it stop first, the lease still held — what it writes while
/// stopping is appended (answered once the log has it) and is in the new owner's store. Only
/// then is the lease released (a `Lost` follows), and the new owner takes it under a later
/// epoch.
#[test]
fn a_handover_lets_the_partition_stop_and_append_its_last_writes_first() {
    use waymark_host::cluster::node::{Change, Node};
    use waymark_host::cluster::partitions::placements;
    let servers = NatsCluster::start(1);
    runtime().block_on(async {
        let period = Duration::from_secs(2);
        let copies = tempfile::tempdir().unwrap();
        let ids = ["w1", "w2"].map(String::from);
        let preferred = placements(&ids, 1)[0].owner.to_string();
        let first = ids.iter().find(|id| **id != preferred).unwrap().clone();
        async fn next(changes: &mut tokio::sync::mpsc::UnboundedReceiver<Change>) -> Change {
            tokio::time::timeout(Duration::from_secs(60), changes.recv())
                .await
                .expect("a change within 60 s")
                .expect("the node runs")
        }
        let mut loops = Vec::new();
        let mut join = async |id: &str| {
            let nats = Nats::connect(&servers.urls(), 1).await.expect("connect");
            let (node, changes) = Node::join(nats, id, 1, period, &copies.path().join(id))
                .await
                .expect("joins");
            let stop = tokio_util::sync::CancellationToken::new();
            loops.push((tokio::spawn(node.run(stop.clone())), stop));
            changes
        };

        // The first node alone takes the partition and writes to it.
        let mut first_changes = join(&first).await;
        let Change::Gained(held) = next(&mut first_changes).await else {
            panic!("the first change is a gain")
        };
        held.store
            .ingest("t", &events(0, 20), 0, None)
            .await
            .expect("written");

        // The preferred owner joins; once its copy caught up, the partition is handed over.
        let mut preferred_changes = join(&preferred).await;
        let Change::HandingOver { partition, stopped } = next(&mut first_changes).await else {
            panic!("a handover comes first")
        };
        assert_eq!(partition, 0);
        assert!(held.guard.may_act(), "the lease is held while it stops");
        let last = held.store.ingest("t", &events(20, 5), 0, None).await;
        assert!(last.is_ok(), "the last writes are appended: {last:?}");
        stopped.send(()).expect("the node waits");
        assert!(matches!(next(&mut first_changes).await, Change::Lost(0)));
        assert!(!held.guard.may_act(), "released");

        let Change::Gained(taken) = next(&mut preferred_changes).await else {
            panic!("the preferred owner gains it")
        };
        assert!(taken.epoch > held.epoch);
        assert_eq!(
            taken.store.history("t").count(),
            25,
            "the new owner has every write, the last ones included"
        );
        for (running, stop) in loops {
            stop.cancel();
            running.await.expect("a node's loop ends");
        }
    });
}

/// A standby's copy marks where it stands: reopened after its node stopped, it goes on from
/// there (holding what it held, then following the log); an owner's copy (which may hold writes
/// the log never had) is never reopened; a copy whose position the log purged since finds its
/// history missing when it follows, rather than skipping it.
#[test]
fn a_standbys_copy_is_reopened_where_it_stood_and_an_owners_never_is() {
    let cluster = NatsCluster::start(1);
    runtime().block_on(async {
        use waymark_host::cluster::replica::Replica;
        let partition = 11;
        let (_, leases, snapshots, log, dirs) = copies_of(&cluster, 1, partition, 3).await;
        let open = |i: usize| Replica::open(dirs[i].path(), log.clone(), 1, 8 << 20).unwrap();
        let reopen = |i: usize| Replica::reopen(dirs[i].path(), log.clone(), 1, 8 << 20);
        let digest = |r: &Replica| r.store().digest().unwrap();

        let mut a = open(0);
        let lease = acquire_when_free(&leases, partition, "a", Duration::from_secs(10)).await;
        a.take_over(lease.holding()).await.expect("a takes over");
        a.store()
            .ingest("t", &events(0, 50), 1_000, None)
            .await
            .unwrap();
        let (mut b, mut c) = (open(1), open(2));
        b.follow().await.unwrap();
        c.follow().await.unwrap();
        let (stood, held) = (b.chain().clone(), digest(&b));
        assert_eq!(held, digest(&a));

        // b's node stops and starts again: its copy goes on from where it stood.
        drop(b);
        let mut b = reopen(1)
            .await
            .unwrap()
            .expect("a standby's copy is reopened");
        assert_eq!(b.chain(), &stood);
        assert_eq!(digest(&b), held, "it holds what it held");
        a.store()
            .ingest("t", &events(50, 30), 2_000, None)
            .await
            .unwrap();
        assert!(b.follow().await.unwrap() >= 1, "it reads only what is new");
        assert_eq!(
            digest(&b),
            digest(&a),
            "and then holds what the owner holds"
        );

        // c stops here; b snapshots, purging the log under c's position.
        drop(c);
        a.store()
            .ingest("t", &events(80, 10), 3_000, None)
            .await
            .unwrap();
        b.follow().await.unwrap();
        b.take_snapshot(&snapshots).await.expect("a snapshot");
        let mut c = reopen(2)
            .await
            .unwrap()
            .expect("its mark is in the log's range");
        assert!(
            matches!(c.follow().await, Err(ClusterError::Missing(p)) if p == partition),
            "a copy whose history was purged does not skip it"
        );

        // The owner's copy is never reopened.
        drop(a);
        assert!(reopen(0).await.unwrap().is_none());
    });
}

/// A node that stops while standing by, then joins again on the same directory, goes on from
/// the copy it left (no new copy is made), and catches up with what was written meanwhile.
#[test]
fn a_standby_restarted_goes_on_from_the_copy_it_left() {
    use waymark_host::cluster::node::{Change, Node};
    use waymark_host::cluster::partitions::placements;
    // What the nodes say (why a copy was not reopened) is shown if the test fails.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let servers = NatsCluster::start(1);
    runtime().block_on(async {
        let period = Duration::from_secs(2);
        let copies = tempfile::tempdir().unwrap();
        let ids = ["w1", "w2"].map(String::from);
        let preferred = placements(&ids, 1)[0].owner.to_string();
        let standby = ids.iter().find(|id| **id != preferred).unwrap().clone();
        let standby_dir = copies.path().join(&standby);
        let join = async |id: &str| {
            let nats = Nats::connect(&servers.urls(), 1).await.expect("connect");
            Node::join(nats, id, 1, period, &copies.path().join(id))
                .await
                .expect("joins")
        };
        // Whether the standby's copy has read the log to its end.
        let caught_up = async |directory: &waymark_host::cluster::node::Directory| {
            let last = directory.log_last(0).await.unwrap_or(u64::MAX);
            directory.members().await.is_ok_and(|members| {
                members
                    .iter()
                    .any(|m| m.id == standby && m.standby_at.get(&0).is_some_and(|at| *at >= last))
            })
        };
        async fn until(what: &str, mut holds: impl AsyncFnMut() -> bool) {
            let start = Instant::now();
            while !holds().await {
                assert!(start.elapsed() < Duration::from_secs(60), "{what}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        let (owner, mut changes) = join(&preferred).await;
        let directory = owner.directory();
        let stop = tokio_util::sync::CancellationToken::new();
        let owner_loop = tokio::spawn(owner.run(stop.clone()));
        let held = tokio::time::timeout(Duration::from_secs(60), changes.recv())
            .await
            .expect("a change")
            .expect("the node runs");
        let Change::Gained(held) = held else {
            panic!("the preferred owner gains the partition")
        };
        held.store
            .ingest("t", &events(0, 30), 0, None)
            .await
            .unwrap();

        let (node, _) = join(&standby).await;
        let first = tokio::spawn(node.run(tokio_util::sync::CancellationToken::new()));
        until("the standby's copy caught up", async || {
            caught_up(&directory).await
        })
        .await;
        assert_eq!(names_in(&standby_dir), vec!["p0-1".to_owned()]);
        // The standby's process dies; the owner goes on writing.
        first.abort();
        let _ = first.await;
        held.store
            .ingest("t", &events(30, 20), 0, None)
            .await
            .unwrap();

        let (node, _) = join(&standby).await;
        let stop_standby = tokio_util::sync::CancellationToken::new();
        let second = tokio::spawn(node.run(stop_standby.clone()));
        until("the restarted standby caught up", async || {
            caught_up(&directory).await
        })
        .await;
        assert_eq!(
            names_in(&standby_dir),
            vec!["p0-1".to_owned()],
            "the copy the last run left is the one followed"
        );
        stop_standby.cancel();
        second.await.expect("the standby's loop ends");
        stop.cancel();
        owner_loop.await.expect("the owner's loop ends");
    });
}

/// A tenant record named `id`.
fn tenant(id: &str) -> waymark_host::store::Tenant {
    waymark_host::store::Tenant {
        id: id.into(),
        created_at: 0,
        limits: Default::default(),
        policy: Default::default(),
    }
}

/// Several partitions (`cluster::mirror`): what partition 0's owner writes to the tenant-global
/// trees reaches another partition's copy through its mirror, and nothing else of partition 0
/// does (its customers' events stay its own); the mirrored records are that partition's own
/// writes, so its standby holds them too; the mirror's mark goes on from where it stood; and a
/// mirror whose position partition 0's log purged since starts again from partition 0's
/// snapshot, holding every global record and none that was cleared.
#[test]
fn a_partition_mirrors_partition_0s_global_records_and_only_those() {
    let cluster = NatsCluster::start(3);
    runtime().block_on(async {
        use waymark_host::cluster::mirror::Mirror;
        use waymark_host::cluster::replica::Replica;
        let (nats, leases, snapshots, log0, dirs) = copies_of(&cluster, 3, 0, 5).await;
        let log1 = nats.log(1).await.expect("partition 1's log");
        let log2 = nats.log(2).await.expect("partition 2's log");

        let mut zero = Replica::open(dirs[0].path(), log0.clone(), 1, 8 << 20).unwrap();
        let lease = acquire_when_free(&leases, 0, "a", Duration::from_secs(10)).await;
        zero.take_over(lease.holding()).await.expect("takes 0 over");
        zero.store()
            .create_tenant(&tenant("t"), "digest-t")
            .await
            .unwrap();
        zero.store()
            .ingest("t", &events(0, 20), 0, None)
            .await
            .expect("accepted");

        let mut one = Replica::open(dirs[1].path(), log1.clone(), 1, 8 << 20).unwrap();
        let lease = acquire_when_free(&leases, 1, "b", Duration::from_secs(10)).await;
        one.take_over(lease.holding()).await.expect("takes 1 over");
        let mut mirror = Mirror::open(one.store(), log0.clone()).unwrap();
        let touched = mirror.follow(one.store(), &snapshots).await.unwrap();
        assert!(touched.tenants.contains("t"), "{touched:?}");
        assert!(one.store().tenant("t").unwrap().is_some());
        assert_eq!(
            one.store()
                .tenant_by_key_digest("digest-t")
                .unwrap()
                .as_deref(),
            Some("t")
        );
        assert_eq!(one.store().history("t").count(), 0, "partition 0's events");
        one.store()
            .flush()
            .await
            .expect("appended to partition 1's log");

        // Partition 1's standby holds the mirrored records: they are partition 1's own writes.
        let mut standby = Replica::open(dirs[2].path(), log1.clone(), 1, 8 << 20).unwrap();
        standby.follow().await.unwrap();
        assert!(standby.store().tenant("t").unwrap().is_some());

        // The mark: a mirror opened again goes on from where this one stood.
        zero.store()
            .create_tenant(&tenant("u"), "digest-u")
            .await
            .unwrap();
        let mut again = Mirror::open(one.store(), log0.clone()).unwrap();
        assert_eq!(again.position(), mirror.position());
        let touched = again.follow(one.store(), &snapshots).await.unwrap();
        // The tenants' records' first key parts: the tenant, and its key's digest.
        assert!(touched.tenants.contains("u"), "{touched:?}");
        assert!(!touched.tenants.contains("t"), "{touched:?}");
        assert!(again.position() > mirror.position());

        // Partition 0's log purged past a mirror that never read it: from the snapshot.
        let mut zero_standby = Replica::open(dirs[3].path(), log0.clone(), 1, 8 << 20).unwrap();
        zero_standby.follow().await.unwrap();
        let at = zero_standby
            .take_snapshot(&snapshots)
            .await
            .expect("a snapshot");
        zero.store()
            .create_tenant(&tenant("v"), "digest-v")
            .await
            .unwrap();
        let mut two = Replica::open(dirs[4].path(), log2.clone(), 1, 8 << 20).unwrap();
        let lease = acquire_when_free(&leases, 2, "c", Duration::from_secs(10)).await;
        two.take_over(lease.holding()).await.expect("takes 2 over");
        // A record partition 2 had of its own, as if mirrored from an older partition 0.
        two.store()
            .create_tenant(&tenant("gone"), "digest-gone")
            .await
            .unwrap();
        let mut late = Mirror::open(two.store(), log0.clone()).unwrap();
        let touched = late.follow(two.store(), &snapshots).await.unwrap();
        assert!(touched.everything, "{touched:?}");
        assert!(late.position() > at.previous);
        for id in ["t", "u", "v"] {
            assert!(two.store().tenant(id).unwrap().is_some(), "tenant {id}");
        }
        assert!(two.store().tenant("gone").unwrap().is_none(), "cleared");
        assert_eq!(two.store().history("t").count(), 0, "partition 0's events");
    });
}
