//! A replay in parts (issue 13): the history read once, and the customers split into parts
//! that each replay on an engine and scratch store of their own, a few at a time, their
//! results combined into what one replay of them all gives.
//!
//! - `survey` reads the log once, as far as each event's head: how many events a backtest
//!   takes, whether one ties customers together, and the events themselves, kept undecoded
//!   (`KeptHistory`) unless they would take more than a share of a backtest's memory.
//! - `Split` says into how many parts, and how many at once: one per core at once, and as
//!   many as it takes for each to hold about [`PART_EVENTS`] events. A part's scratch trees
//!   then stay small enough for the caches, which is where a replay's time went
//!   (docs/BENCHMARKS.md, "Small parts").
//! - `replay_in_parts` runs them, each task taking the next part when it is done, and
//!   `combine` adds their results up.

use super::candidate::Candidate;
use super::run::{
    candidate_side, replay, takes, BacktestError, Job, Plan, Progress, Replayed, Sample, Side,
    Source, HISTORY_PAGE,
};
use crate::host::{Host, HostConfig};
use crate::model::rollout::Rollout;
use crate::model::Enrollment;
use crate::registry::Registry;
use crate::store::{KeptHistory, StoreError};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use waymark_api::backtests::SentMessage;

/// One of the parts a replay is split into when no customer's replay depends on another's:
/// the customers whose hash falls in it, replayed on a scratch store of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u64,
    pub of: u64,
}

impl Part {
    pub(super) fn takes(&self, customer: &str) -> bool {
        part_hash(customer) % self.of == self.index
    }
}

/// What places `customer` in a part: part `hash % parts`.
fn part_hash(customer: &str) -> u64 {
    crate::hash::fnv1a_joined(&["backtest-part", customer])
}

/// What of the memory a backtest may take (`--backtest-memory-mib`) each replay running at
/// once may hold in its scratch store, after the history kept for them ([`KeptHistory`]).
pub(super) fn share_of_memory(config: &HostConfig, kept: usize, at_once: u64) -> Option<u64> {
    config
        .backtest_memory
        .map(|limit| limit.saturating_sub(kept as u64) / at_once.max(1))
}

/// What [`survey`] found in the history.
pub(super) struct Survey {
    /// How many recorded events the plan takes.
    pub count: u64,
    /// Whether one of them ties customers together: an identity merge (`identify` with
    /// another id, `alias`) or an account's `group`.
    pub crossing: bool,
    /// Those events, kept undecoded for the replays, unless they came to more than the part
    /// of a backtest's memory kept for them ([`KEPT_SHARE`]): then each replay reads the log
    /// itself.
    pub kept: Option<Kept>,
}

/// At most this share of the memory a backtest may take (`--backtest-memory-mib`) holds the
/// events the survey keeps: one part in this many.
const KEPT_SHARE: u64 = 4;

/// The events a backtest takes, read from the log once, in log order, each with the
/// [`part_hash`] of its customer.
#[derive(Default)]
pub(super) struct Kept {
    pub history: KeptHistory,
    pub hashes: Vec<u64>,
}

impl Kept {
    /// The indexes of the events of each of `parts` parts, in log order.
    fn split(&self, parts: u64) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); parts as usize];
        for (i, hash) in self.hashes.iter().enumerate() {
            out[(hash % parts) as usize].push(i as u32);
        }
        out
    }

    pub(super) fn size(&self) -> usize {
        self.history.size() + self.hashes.capacity() * std::mem::size_of::<u64>()
    }
}

/// Reads the history once, as far as each event's head: how many recorded events `plan`
/// takes, whether one of them ties customers together, and the events themselves, kept.
pub(super) fn survey(live: &Host, plan: &Plan) -> Result<Survey, StoreError> {
    let (mut count, mut crossing) = (0, false);
    let budget = live.config.backtest_memory.map(|limit| limit / KEPT_SHARE);
    let mut kept = Some(Kept::default());
    let mut after = None;
    loop {
        // Read as far as the head: its properties only those a merge reads.
        let (last, _) = live
            .store
            .history_page(&plan.tenant, after, HISTORY_PAGE, |logged| {
                if takes(plan, &logged.head) {
                    count += 1;
                    crossing = crossing || crosses_customers(&logged.head.merge_view());
                    if let Some(k) = &mut kept {
                        k.history.keep(logged);
                        k.hashes.push(part_hash(logged.head.customer));
                        // Past the budget, or past what an index holds.
                        if budget.is_some_and(|b| k.size() as u64 > b) || count > u32::MAX.into() {
                            kept = None;
                        }
                    }
                }
                Ok(None::<()>)
            })?;
        let Some(last) = last else {
            return Ok(Survey {
                count,
                crossing,
                kept,
            });
        };
        after = Some(last);
    }
}

/// Whether `event` makes one customer's replay depend on another's.
fn crosses_customers(event: &crate::model::Event) -> bool {
    crate::engine::identity::merge_source(event).is_some()
        || event.name == crate::engine::accounts::GROUP
}

/// The most parts of a replay that run at once.
const MAX_AT_ONCE: u64 = 8;

/// About how many recorded events one part of a split replay takes, unless the host says
/// otherwise ([`HostConfig::backtest_part_events`]).
pub const PART_EVENTS: u64 = 2_048;

/// The most parts a replay is split into.
const MAX_PARTS: u64 = 1024;

/// How one replay is split: into `count` parts of its customers, `at_once` of them running at
/// a time, each on a scratch store of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split {
    pub count: u64,
    pub at_once: u64,
}

impl Split {
    /// Each of `replays` whole, side by side.
    pub(super) fn whole(replays: u64) -> Split {
        Split {
            count: 1,
            at_once: replays,
        }
    }

    /// A replay of `events` recorded events that may run `at_once` parts at a time
    /// ([`parts_for`]): a part for each [`HostConfig::backtest_part_events`] of them, when
    /// the history was `kept` (read once, each part handed its own events); else one part
    /// per core, each reading the whole log.
    pub(super) fn of(config: &HostConfig, events: u64, at_once: u64, kept: bool) -> Split {
        if at_once < 2 {
            return Split {
                count: 1,
                at_once: 1,
            };
        }
        let count = if kept {
            events
                .div_ceil(config.backtest_part_events.max(1))
                .clamp(at_once, MAX_PARTS.max(at_once))
        } else {
            at_once
        };
        Split { count, at_once }
    }
}

/// How many parts of `plan`'s replays may run at once, split: one per core when each
/// customer's replay depends on no other's, else `None`, each replay whole. Customers are
/// tied together by identity merges and accounts (`crossing`, from [`survey`]), and by a
/// journey that reads the journey-wide `stats` or allocates an experiment adaptively (from its
/// arms' conversion): split, such a journey would see one part's figures instead of all
/// customers'. With `candidate`, the version it tries is one of them; and a candidate rolled
/// out mid-replay ([`Plan::migrate`]) is not split, its move being one for all customers.
pub(super) async fn parts_for(
    live: &Host,
    plan: &Plan,
    crossing: bool,
    candidate: Option<&Candidate>,
) -> Result<Option<u64>, BacktestError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let parts = live.config.backtest_parts.unwrap_or(cores).min(MAX_AT_ONCE);
    if parts < 2 || crossing || plan.migrate.is_some() {
        return Ok(None);
    }
    let ties = |spec: &crate::model::Spec, component: &crate::sandbox::JourneyComponent| {
        spec.experiments.iter().any(|x| !x.allocation.is_fixed()) || component.reads_stats()
    };
    // The versions new entrants run: a replay starts with no enrollments.
    let mut versions = Vec::new();
    for (journey, rollout) in live.store.journey_rollouts(&plan.tenant)? {
        for version in [rollout.live, rollout.candidate.map(|c| c.version)]
            .into_iter()
            .flatten()
        {
            versions.push((journey.clone(), version));
        }
    }
    match candidate {
        Some(Candidate::Stored(version)) => versions.push((plan.journey.clone(), *version)),
        Some(Candidate::Unstored(unstored)) if ties(&unstored.spec, &unstored.component) => {
            return Ok(None)
        }
        _ => {}
    }
    for (journey, version) in versions {
        let Some(v) = live
            .store
            .journey_version(&plan.tenant, &journey, version)?
        else {
            continue;
        };
        let component = live.registry.journey(&plan.tenant, &v.digest).await?;
        if ties(&v.spec, &component) {
            return Ok(None);
        }
    }
    Ok(Some(parts))
}

/// Which version a replay runs for new entrants.
#[derive(Clone)]
pub(super) enum Which {
    /// The journey's pointers as they are live (a rollout's share included): this version.
    Live(u32),
    /// The candidate, the only version new entrants run; the rest of the journey's pointers
    /// as they stand.
    Candidate(Rollout),
}

/// `plan`'s replays, one for each of `sides`, each in the parts `split` says (each part its
/// own engine on its own scratch store, a share of the customers; `split.at_once` parts of
/// any of the replays running at a time), each replay's parts combined: the same report,
/// sends and fidelity as one replay of all its customers, since no customer's replay depends
/// on another's. In the order of `sides`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn replay_in_parts(
    live: &Arc<Host>,
    compiled: &Registry,
    plan: &Plan,
    sides: Vec<Which>,
    split: Split,
    kept: Option<Arc<Kept>>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<Vec<(Replayed, Option<waymark_api::backtests::Fidelity>)>, BacktestError> {
    let parts = split.count;
    let part_plan = |index: u64| Plan {
        sample: Sample {
            part: (parts > 1).then_some(Part { index, of: parts }),
            ..plan.sample.clone()
        },
        ..plan.clone()
    };
    let share = share_of_memory(&live.config, Source::kept_size(&kept), split.at_once);
    let events = match &kept {
        Some(k) if parts > 1 => Some(k.split(parts)),
        _ => None,
    };
    let source = |index: u64| match (&kept, &events) {
        (Some(k), Some(events)) => Source::Kept(k.clone(), events[index as usize].clone()),
        _ => Source::all(&kept),
    };
    // What ran live, read once and handed to the part each customer is in.
    let mut checks: Vec<Option<Vec<Enrollment>>> = if plan.fidelity {
        live_sides(live, plan, parts)?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None; parts as usize]
    };
    // Part by part, each part of every replay: the replays' first parts run first.
    let mut jobs = VecDeque::new();
    for index in 0..parts {
        for (side, which) in sides.iter().enumerate() {
            let check = match which {
                Which::Live(_) => checks[index as usize].take(),
                Which::Candidate(_) => None,
            };
            jobs.push_back(PartJob {
                side,
                index,
                which: which.clone(),
                plan: part_plan(index),
                source: source(index),
                check,
            });
        }
    }
    drop(events);
    let jobs = Arc::new(Mutex::new(jobs));
    // Every part runs on a task of its own, taking the next part when it is done (none
    // inline on the caller's thread: the caller's part finished seconds after the other at
    // a million events; docs/BENCHMARKS.md, "The parts finish together").
    let mut workers = Vec::new();
    for _ in 0..split.at_once.min(parts * sides.len() as u64) {
        let (live, compiled, progress, jobs) = (
            live.clone(),
            compiled.clone(),
            progress.clone(),
            jobs.clone(),
        );
        // Cancelled with the backtest, and when this function returns early.
        let cancel = cancel.child_token();
        let stop = cancel.clone().drop_guard();
        let task = tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = jobs.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(part) = next else {
                    return Ok(done);
                };
                let side = match &part.which {
                    Which::Live(version) => Side::Live(*version),
                    Which::Candidate(rollout) => candidate_side(&part.plan, rollout),
                };
                let job = Job {
                    plan: &part.plan,
                    side,
                    source: part.source,
                    share,
                    check: part.check,
                };
                match replay(&live, &compiled, job, &progress, &cancel).await {
                    Ok(share) => done.push((part.side, part.index, share)),
                    Err(error) => {
                        // The other tasks take no further part.
                        jobs.lock().unwrap_or_else(|p| p.into_inner()).clear();
                        return Err(error);
                    }
                }
            }
        });
        workers.push((task, stop));
    }
    let mut shares = Vec::new();
    for (task, _stop) in workers {
        shares.extend(
            task.await
                .map_err(|e| BacktestError::Stopped(e.to_string()))??,
        );
    }
    shares.sort_by_key(|(side, index, _)| (*side, *index));
    let mut by_side: Vec<Vec<Share>> = (0..sides.len()).map(|_| Vec::new()).collect();
    for (side, _, share) in shares {
        by_side[side].push(share);
    }
    let mut replays = Vec::new();
    for mut shares in by_side {
        if shares.is_empty() {
            return Err(BacktestError::Stopped("no part of a replay ran".into()));
        }
        let first = shares.remove(0);
        replays.push(combine(first, shares));
    }
    Ok(replays)
}

/// One part of one replay, to run.
struct PartJob {
    /// Which of the replays, and which of its parts.
    side: usize,
    index: u64,
    which: Which,
    plan: Plan,
    source: Source,
    check: Option<Vec<Enrollment>>,
}

/// The enrollments of `plan`'s journey that ran live, of the customers of its sample, by the
/// part of `parts` each customer is in: what each part's replay is checked against.
fn live_sides(live: &Host, plan: &Plan, parts: u64) -> Result<Vec<Vec<Enrollment>>, StoreError> {
    let mut out = vec![Vec::new(); parts as usize];
    for e in live
        .store
        .journey_enrollments(&plan.tenant, &plan.journey)?
    {
        if plan.sample.takes(&e.customer) {
            out[(part_hash(&e.customer) % parts) as usize].push(e);
        }
    }
    Ok(out)
}

/// What one replay (or one part of one) produced.
pub(super) struct Share {
    pub version: u32,
    pub digest: Option<String>,
    pub migration: Option<(crate::store::Migration, Vec<crate::store::MigrationOutcome>)>,
    pub spec: crate::model::Spec,
    pub cells: Vec<crate::report::cells::Cell>,
    pub sends: Vec<(String, SentMessage)>,
    pub fidelity: Option<waymark_api::backtests::Fidelity>,
}

/// A replay's parts as one (`first` and the `others`, none for a replay not split): cells
/// added up into the report, sends and fidelity gathered in customer order.
pub(super) fn combine(
    first: Share,
    others: Vec<Share>,
) -> (Replayed, Option<waymark_api::backtests::Fidelity>) {
    let Share {
        version,
        digest,
        migration,
        spec,
        mut cells,
        mut sends,
        mut fidelity,
    } = first;
    let split = !others.is_empty();
    for share in others {
        cells.extend(share.cells);
        sends.extend(share.sends);
        fidelity = super::fidelity::add(fidelity, share.fidelity);
    }
    if split {
        // A message's id is its own: the order is total, so unstable is the same order.
        sends.sort_unstable_by(|a, b| {
            (&a.0, a.1.decided_at, &a.1.id).cmp(&(&b.0, b.1.decided_at, &b.1.id))
        });
    }
    let report = crate::report::cells::report(&spec, &cells);
    let replayed = Replayed {
        version,
        digest,
        migration,
        report,
        spec,
        cells,
        sends,
    };
    (replayed, fidelity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;
    use serde_json::json;

    fn event(name: &str, properties: serde_json::Value) -> Event {
        Event {
            id: "e1".into(),
            customer: "known".into(),
            name: name.into(),
            properties: serde_json::from_value(properties).unwrap(),
            timestamp: 0,
        }
    }

    #[test]
    fn merges_and_accounts_tie_customers_together_and_nothing_else_does() {
        let crossing = [
            event("identify", json!({"anonymous_id": "anon-1"})),
            event("alias", json!({"previous_id": "anon-1"})),
            event("group", json!({"group_id": "acme"})),
        ];
        for e in &crossing {
            assert!(crosses_customers(e), "{e:?}");
        }
        let own = [
            event("identify", json!({"traits": {"plan": "pro"}})),
            // Naming the customer's own id merges nothing.
            event("identify", json!({"anonymous_id": "known"})),
            event("renewed", json!({})),
        ];
        for e in &own {
            assert!(!crosses_customers(e), "{e:?}");
        }
    }

    #[test]
    fn every_customer_of_a_sample_is_in_exactly_one_part() {
        let sample = Sample {
            per_million: Some(500_000),
            ..Sample::default()
        };
        let parts: Vec<Sample> = (0..3)
            .map(|index| Sample {
                part: Some(Part { index, of: 3 }),
                ..sample.clone()
            })
            .collect();
        let mut sizes = [0; 3];
        for c in 0..3_000 {
            let customer = format!("c{c}");
            let takers: Vec<usize> = (0..3).filter(|i| parts[*i].takes(&customer)).collect();
            if sample.takes(&customer) {
                assert_eq!(takers.len(), 1, "{customer}");
                sizes[takers[0]] += 1;
            } else {
                assert!(takers.is_empty(), "{customer}");
            }
        }
        // Each part about a third of the sample's half.
        for size in sizes {
            assert!((350..650).contains(&size), "{sizes:?}");
        }
    }

    #[test]
    fn a_kept_history_is_split_into_parts_by_the_hash_of_each_customer_in_log_order() {
        let kept = Kept {
            history: KeptHistory::default(),
            hashes: vec![4, 7, 2, 9, 3, 6],
        };
        assert_eq!(kept.split(1), [vec![0, 1, 2, 3, 4, 5]]);
        assert_eq!(kept.split(2), [vec![0, 2, 5], vec![1, 3, 4]]);
        assert_eq!(kept.split(3), [vec![3, 4, 5], vec![0, 1], vec![2]]);
        // Each customer's events in one part: the part `Part::takes` says.
        for c in ["ada", "bob", "cy"] {
            let hash = part_hash(c);
            assert!((Part {
                index: hash % 5,
                of: 5
            })
            .takes(c));
        }
    }

    #[test]
    fn a_replay_is_split_into_a_part_per_share_of_its_events_at_least_one_per_core_at_once() {
        let config = HostConfig {
            backtest_part_events: 100,
            ..HostConfig::default()
        };
        let split = |events, at_once, kept| {
            let Split { count, at_once } = Split::of(&config, events, at_once, kept);
            (count, at_once)
        };
        // Not split: one part.
        assert_eq!(split(10_000, 1, true), (1, 1));
        // A part per 100 events, two at once.
        assert_eq!(split(10_000, 2, true), (100, 2));
        assert_eq!(split(10_001, 2, true), (101, 2));
        // Never fewer parts than run at once, nor more than the most.
        assert_eq!(split(50, 4, true), (4, 4));
        assert_eq!(split(10_000_000, 2, true), (MAX_PARTS, 2));
        // A history not kept is read by every part: one per core.
        assert_eq!(split(10_000, 2, false), (2, 2));
    }
}
