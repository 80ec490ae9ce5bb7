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
        assert!(
            took >= period - period / 6,
            "the lease passed on after {took:?}, before its period"
        );
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
        let mut a = Owned::take_over(lease, log.clone(), Chain::default(), |_| {})
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
        let mut b = Owned::take_over(lease, log.clone(), Chain::default(), |e| {
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
    let lease = rt.block_on(leases.acquire(3, "a")).unwrap().expect("free");
    let mut owner = rt
        .block_on(Owned::take_over(lease, log, Chain::default(), |_| {}))
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
    rt.block_on(owner.renew(&leases)).expect("a renewal");
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
                            i += moved.len();
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
            match owner.renew(&leases).await {
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
