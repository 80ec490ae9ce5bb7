//! One backtest: the candidate replayed over the chosen recorded events, then the live version
//! over the same events, each in its own [`IsolatedEngine`], and their reports and sends read
//! from the engines' scratch stores.

use super::candidate::Candidate;
use super::engine::{ClockMoves, IsolatedEngine};
use crate::host::{Host, HostConfig};
use crate::model::rollout::Rollout;
use crate::model::Millis;
use crate::sandbox::Sandbox;
use crate::store::{MessageStatus, SentRecord, StoreError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use waymark_api::backtests::SentMessage;

/// Recorded events read from the log at a time.
const HISTORY_PAGE: usize = 1024;

/// Why a backtest did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the sandbox: {0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("no journey named {0:?}")]
    NoJourney(String),
    #[error("journey {0:?} has no version {1}")]
    NoVersion(String, u32),
    #[error("journey {0:?} has no live version to compare with")]
    NoLive(String),
    #[error("cancelled")]
    Cancelled,
    #[error(
        "the replay needs more than the {limit_mib} MiB a backtest may hold in memory \
         (--backtest-memory-mib): narrow it to a customer sample"
    )]
    TooLarge { limit_mib: u64 },
    #[error("the candidate's replay stopped: {0}")]
    Stopped(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// Fails a replay whose scratch store holds more than the host allows: a replay run in
/// [`Part`]s gives each its share of the limit.
fn within_memory(
    engine: &IsolatedEngine,
    config: &HostConfig,
    sample: &Sample,
) -> Result<(), BacktestError> {
    let parts = sample.part.map_or(1, |p| p.of);
    match (config.backtest_memory, engine.store().memory_used()) {
        (Some(limit), Some(used)) if used > limit / parts => Err(BacktestError::TooLarge {
            limit_mib: limit >> 20,
        }),
        _ => Ok(()),
    }
}

/// Which customers' events a backtest replays.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// These customers.
    pub customers: Option<HashSet<String>>,
    /// A deterministic share of all customers, in millionths.
    pub per_million: Option<u64>,
    /// Of those, one part of a replay split over the cores ([`parts_for`]); set by the
    /// backtest itself, never asked for.
    pub part: Option<Part>,
}

/// One of the parts a replay is split into when no customer's replay depends on another's:
/// the customers whose hash falls in it, replayed on a scratch store of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u64,
    pub of: u64,
}

impl Part {
    fn takes(&self, customer: &str) -> bool {
        crate::hash::fnv1a_joined(&["backtest-part", customer]) % self.of == self.index
    }
}

impl Sample {
    /// Whether `customer` is in the sample (everyone when nothing is asked for) and in its
    /// part.
    pub fn takes(&self, customer: &str) -> bool {
        self.part.is_none_or(|p| p.takes(customer)) && self.chosen(customer)
    }

    fn chosen(&self, customer: &str) -> bool {
        if self.customers.is_none() && self.per_million.is_none() {
            return true;
        }
        self.customers
            .as_ref()
            .is_some_and(|c| c.contains(customer))
            || self.per_million.is_some_and(|share| {
                crate::hash::fnv1a_joined(&["backtest-sample", customer]) % 1_000_000 < share
            })
    }
}

/// What a backtest replays.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tenant: String,
    pub journey: String,
    pub candidate: Candidate,
    pub from: Millis,
    pub to: Millis,
    pub sample: Sample,
    /// Check the live replay against what ran live.
    pub fidelity: bool,
    /// Roll the candidate out at a time (`at`), moving the enrollments of version `from` to it.
    pub migrate: Option<MigrateAt>,
}

/// A backtest's `candidate.migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateAt {
    pub from: u32,
    pub at: Millis,
}

/// How far a backtest is: recorded events replayed, of how many.
#[derive(Debug, Default)]
pub struct Progress {
    pub replayed: AtomicU64,
    pub total: AtomicU64,
}

/// One replay's outcome: the journey's report and its messages.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub version: u32,
    /// A candidate sent as bytes: their digest.
    pub digest: Option<String>,
    /// With [`Plan::migrate`], on the candidate's side: the move and its outcomes.
    pub migration: Option<(crate::store::Migration, Vec<crate::store::MigrationOutcome>)>,
    pub report: crate::report::Report,
    /// What the report was added up from: the spec whose milestones and experiments make its
    /// rows, and the cells (a backtest over several partitions adds every partition's up).
    pub spec: crate::model::Spec,
    pub cells: Vec<crate::report::cells::Cell>,
    pub sends: Vec<(String, SentMessage)>,
}

/// Both replays.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub candidate: Replayed,
    pub live: Replayed,
    /// With [`Plan::fidelity`].
    pub fidelity: Option<waymark_api::backtests::Fidelity>,
    /// Into how many parts the live version's replay was split ([`Part`]).
    pub parts: u64,
}

/// Runs a whole backtest against `live`'s recorded events, reading the live store only.
///
/// When the candidate differs from the live version, its replay and the live version's run at
/// once, on the runtime's threads: each has its own scratch store and is deterministic on its
/// own, so running them side by side changes nothing but the time (and holds both scratch
/// stores in memory at once).
pub async fn backtest(
    live: &Arc<Host>,
    plan: &Plan,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<Outcome, BacktestError> {
    let store = &live.store;
    let rollout = store
        .journey_rollout(&plan.tenant, &plan.journey)?
        .ok_or_else(|| BacktestError::NoJourney(plan.journey.clone()))?;
    if let Candidate::Stored(version) = plan.candidate {
        if store
            .journey_version(&plan.tenant, &plan.journey, version)?
            .is_none()
        {
            return Err(BacktestError::NoVersion(plan.journey.clone(), version));
        }
    }
    let live_version = rollout
        .live
        .ok_or_else(|| BacktestError::NoLive(plan.journey.clone()))?;
    let (count, crossing) = survey(live, plan)?;
    // When the candidate is the live version with nothing rolling out, the two replays are
    // one: it runs once.
    let same = plan.migrate.is_none()
        && matches!(candidate_side(plan, &rollout), Side::Stored(_, pointers) if pointers == rollout);
    progress
        .total
        .store(if same { count } else { count * 2 }, Ordering::Relaxed);
    // A sandbox of the backtest's own: its counters are not the live host's. A candidate sent
    // as bytes was compiled in one already, which both replays share.
    let sandbox = match &plan.candidate {
        Candidate::Unstored(unstored) => unstored.sandbox.clone(),
        Candidate::Stored(_) => Sandbox::new(live.registry.sandbox().config().clone())?,
    };
    // The candidate is the only version new entrants of the journey run; the live replay
    // keeps the pointers as they stand (a rollout's share included).
    let candidate_run = (!same).then(|| {
        let (live, sandbox, plan, progress) = (
            live.clone(),
            sandbox.clone(),
            plan.clone(),
            progress.clone(),
        );
        // Cancelled with the backtest, and when this function returns or is dropped before
        // it has the candidate's result (the live replay failed, the host is shutting down).
        let cancel = cancel.child_token();
        let stop = cancel.clone().drop_guard();
        let rollout = rollout.clone();
        let task = tokio::spawn(async move {
            let side = candidate_side(&plan, &rollout);
            replay(&live, &sandbox, &plan, side, false, &progress, &cancel)
                .await
                .map(|share| combine(share, Vec::new()).0)
        });
        (task, stop)
    });
    // A single replay runs in parts, one per core, when no customer's replay depends on
    // another's; with two replays the cores are taken already.
    let parts = if same {
        parts_for(live, plan, crossing).await?
    } else {
        1
    };
    let (live_side, fidelity) =
        replay_in_parts(live, &sandbox, plan, live_version, parts, progress, cancel).await?;
    let candidate = match candidate_run {
        None => live_side.clone(),
        Some((task, _stop)) => task
            .await
            .map_err(|e| BacktestError::Stopped(e.to_string()))??,
    };
    Ok(Outcome {
        candidate,
        live: live_side,
        fidelity,
        parts,
    })
}

/// The candidate's side: a stored version as the only one new entrants run (the rest of
/// `rollout` as it stands), or component bytes.
fn candidate_side<'a>(plan: &'a Plan, rollout: &Rollout) -> Side<'a> {
    match &plan.candidate {
        Candidate::Stored(version) => Side::Stored(
            *version,
            Rollout {
                live: Some(*version),
                candidate: None,
                ..rollout.clone()
            },
        ),
        Candidate::Unstored(unstored) => Side::Unstored(unstored),
    }
}

/// How many recorded events `plan` takes, and whether one of them ties customers together:
/// an identity merge (`identify` with another id, `alias`) or an account's `group`.
fn survey(live: &Host, plan: &Plan) -> Result<(u64, bool), StoreError> {
    let (mut n, mut crossing) = (0, false);
    let mut after = None;
    loop {
        // Read as far as the head: its properties only those a merge reads.
        let (last, _) = live
            .store
            .history_page(&plan.tenant, after, HISTORY_PAGE, |logged| {
                if takes(plan, &logged.head) {
                    n += 1;
                    crossing = crossing || crosses_customers(&logged.head.merge_view());
                }
                Ok(None::<()>)
            })?;
        let Some(last) = last else {
            return Ok((n, crossing));
        };
        after = Some(last);
    }
}

/// Whether `event` makes one customer's replay depend on another's.
fn crosses_customers(event: &crate::model::Event) -> bool {
    crate::engine::identity::merge_source(event).is_some()
        || event.name == crate::engine::accounts::GROUP
}

/// The most parts a replay is split into.
const MAX_PARTS: u64 = 8;

/// Into how many parts a replay of `plan`'s events may be split: one per core when each
/// customer's replay depends on no other's, else one. Customers are tied together by
/// identity merges and accounts (`crossing`, from [`survey`]), and by a journey that reads the
/// journey-wide `stats` or allocates an experiment adaptively (from its arms' conversion):
/// split, such a journey would see one part's figures instead of all customers'.
async fn parts_for(live: &Host, plan: &Plan, crossing: bool) -> Result<u64, BacktestError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let parts = live.config.backtest_parts.unwrap_or(cores).min(MAX_PARTS);
    if parts < 2 || crossing {
        return Ok(1);
    }
    // The versions new entrants run: a replay starts with no enrollments.
    for (journey, rollout) in live.store.journey_rollouts(&plan.tenant)? {
        for version in [rollout.live, rollout.candidate.map(|c| c.version)]
            .into_iter()
            .flatten()
        {
            let Some(v) = live
                .store
                .journey_version(&plan.tenant, &journey, version)?
            else {
                continue;
            };
            if v.spec.experiments.iter().any(|x| !x.allocation.is_fixed()) {
                return Ok(1);
            }
            if live
                .registry
                .journey(&plan.tenant, &v.digest)
                .await?
                .reads_stats()
            {
                return Ok(1);
            }
        }
    }
    Ok(parts)
}

/// The live version's replay of `plan`, in `parts` parts at once (each its own engine on its
/// own scratch store, a share of the customers), combined: the same report, sends and fidelity
/// as one replay of them all, since no customer's replay depends on another's.
async fn replay_in_parts(
    live: &Arc<Host>,
    sandbox: &Sandbox,
    plan: &Plan,
    version: u32,
    parts: u64,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<(Replayed, Option<waymark_api::backtests::Fidelity>), BacktestError> {
    let part_plan = |index: u64| Plan {
        sample: Sample {
            part: (parts > 1).then_some(Part { index, of: parts }),
            ..plan.sample.clone()
        },
        ..plan.clone()
    };
    // Every part is a task of its own, the first too. Run inline on the caller's thread, the
    // first part finished seconds after the other at a million events, and the replay took a
    // tenth longer (docs/BENCHMARKS.md, "The parts finish together").
    let mut tasks = Vec::new();
    for index in 0..parts {
        let (live, sandbox, plan, progress) = (
            live.clone(),
            sandbox.clone(),
            part_plan(index),
            progress.clone(),
        );
        // Cancelled with the backtest, and when this function returns early.
        let cancel = cancel.child_token();
        let stop = cancel.clone().drop_guard();
        let task = tokio::spawn(async move {
            let side = Side::Live(version);
            replay(
                &live,
                &sandbox,
                &plan,
                side,
                plan.fidelity,
                &progress,
                &cancel,
            )
            .await
        });
        tasks.push((task, stop));
    }
    let mut shares = Vec::new();
    for (task, _stop) in tasks {
        shares.push(
            task.await
                .map_err(|e| BacktestError::Stopped(e.to_string()))??,
        );
    }
    let first = shares.remove(0);
    Ok(combine(first, shares))
}

/// What one replay (or one part of one) produced.
struct Share {
    version: u32,
    digest: Option<String>,
    migration: Option<(crate::store::Migration, Vec<crate::store::MigrationOutcome>)>,
    spec: crate::model::Spec,
    cells: Vec<crate::report::cells::Cell>,
    sends: Vec<(String, SentMessage)>,
    fidelity: Option<waymark_api::backtests::Fidelity>,
}

/// A replay's parts as one (`first` and the `others`, none for a replay not split): cells
/// added up into the report, sends and fidelity gathered in customer order.
fn combine(
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
        sends.sort_by(|a, b| (&a.0, a.1.decided_at, &a.1.id).cmp(&(&b.0, b.1.decided_at, &b.1.id)));
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

fn takes(plan: &Plan, event: &crate::store::events::LoggedHead) -> bool {
    let at = event.replay_at();
    at >= plan.from && at < plan.to && plan.sample.takes(event.customer)
}

/// Which version one replay runs for new entrants.
enum Side<'a> {
    /// The journey's pointers as they are live (a rollout's share included): this version.
    Live(u32),
    /// This stored version only, with these pointers.
    Stored(u32, Rollout),
    /// A candidate sent as bytes, added to the scratch store only.
    Unstored(&'a super::candidate::Unstored),
}

/// One replay of `plan`'s events on `side` (or of its sample's part), its report cells and
/// sends read back for [`combine`]; with `check`, also compared with what ran live.
async fn replay(
    live: &Host,
    sandbox: &Sandbox,
    plan: &Plan,
    side: Side<'_>,
    check: bool,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Share, BacktestError> {
    let engine = IsolatedEngine::new(
        &live.store,
        sandbox.clone(),
        &live.config,
        &plan.tenant,
        plan.from,
        clock_moves(live)?,
        cancel.child_token(),
    )?;
    // The candidate's side of a backtest with `migrate`: rolled out, and enrollments moved,
    // before the first event at or after its time; the live pointers hold until then.
    let mut pending_move = plan.migrate.filter(|_| !matches!(side, Side::Live(_)));
    let (version, digest) = match side {
        Side::Live(version) => (version, None),
        Side::Stored(version, rollout) => {
            if pending_move.is_none() {
                engine
                    .store()
                    .set_rollout(&plan.tenant, &plan.journey, &rollout)?;
            }
            (version, None)
        }
        Side::Unstored(unstored) => {
            let version = engine.add_unstored(&plan.journey, unstored).await?;
            if pending_move.is_none() {
                engine.only(&plan.journey, version)?;
            }
            (version, Some(unstored.digest.clone()))
        }
    };
    let mut migration = None;
    // Events ingested at the same journey time are fed together, as live queued them.
    let mut group: Vec<crate::model::Event> = Vec::new();
    let mut group_at = None;
    let mut after = None;
    loop {
        // Another part's events, or ones outside the window, are read only as far as the head.
        let (last, page) =
            live.store
                .history_page(&plan.tenant, after, HISTORY_PAGE, |logged| {
                    takes(plan, &logged.head)
                        .then(|| logged.whole())
                        .transpose()
                })?;
        let Some(last) = last else {
            break;
        };
        after = Some(last);
        for (_, logged) in page {
            if cancel.is_cancelled() {
                return Err(BacktestError::Cancelled);
            }
            let at = logged.replay_at();
            if group_at.is_some_and(|g| g != at) || group.len() >= MAX_GROUP {
                feed_group(&engine, &mut group, group_at, progress).await?;
            }
            if let Some(m) = pending_move.filter(|m| m.at <= at) {
                feed_group(&engine, &mut group, group_at, progress).await?;
                let at = m.at.max(engine.now());
                migration = Some(
                    engine
                        .migrate_to(&plan.journey, m.from, version, at)
                        .await?,
                );
                pending_move = None;
            }
            group_at = Some(at);
            group.push(logged.into_event());
        }
        within_memory(&engine, &live.config, &plan.sample)?;
        // Let other work on the runtime go on between pages.
        tokio::task::yield_now().await;
    }
    feed_group(&engine, &mut group, group_at, progress).await?;
    if let Some(m) = pending_move {
        let at = m.at.max(engine.now());
        migration = Some(
            engine
                .migrate_to(&plan.journey, m.from, version, at)
                .await?,
        );
    }
    engine.advance_to(plan.to.max(engine.now())).await?;
    // A cancelled engine returned early: what it holds is not the replay's end.
    if cancel.is_cancelled() {
        return Err(BacktestError::Cancelled);
    }
    // The timers after the last event add sends and state too.
    within_memory(&engine, &live.config, &plan.sample)?;
    let scratch = engine.store();
    let spec = scratch
        .journey_version(&plan.tenant, &plan.journey, version)?
        .ok_or_else(|| BacktestError::NoVersion(plan.journey.clone(), version))?
        .spec;
    let cells = scratch.report_cells(&plan.tenant, &plan.journey)?;
    let mut sends: Vec<(String, SentMessage)> = scratch
        .journey_sends(&plan.tenant, &plan.journey)?
        .into_iter()
        .map(sent)
        .collect();
    sends.sort_by(|a, b| (&a.0, a.1.decided_at, &a.1.id).cmp(&(&b.0, b.1.decided_at, &b.1.id)));
    let fidelity = if check {
        Some(check_fidelity(live, scratch, plan)?)
    } else {
        None
    };
    Ok(Share {
        version,
        digest,
        migration,
        spec,
        cells,
        sends,
        fidelity,
    })
}

/// The most events fed to the engine at once (each customer's still in order).
const MAX_GROUP: usize = 1024;

/// Feeds the events gathered for one journey time, and empties `group`.
async fn feed_group(
    engine: &IsolatedEngine,
    group: &mut Vec<crate::model::Event>,
    at: Option<Millis>,
    progress: &Progress,
) -> Result<(), StoreError> {
    if let (Some(at), false) = (at, group.is_empty()) {
        engine.feed_all(group, at).await?;
        progress
            .replayed
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        group.clear();
    }
    Ok(())
}

/// Every customer of the sample with an enrollment in the journey, live or replayed, compared.
fn check_fidelity(
    live: &Host,
    scratch: &crate::store::Store,
    plan: &Plan,
) -> Result<waymark_api::backtests::Fidelity, StoreError> {
    use super::fidelity::{compare, Records, MAX_DIVERGENCES_LISTED};
    use std::collections::BTreeMap;
    let mut sides: BTreeMap<String, (Records, Records)> = BTreeMap::new();
    for (store, live_side) in [(&live.store, true), (scratch, false)] {
        for e in store.journey_enrollments(&plan.tenant, &plan.journey)? {
            if !plan.sample.takes(&e.customer) {
                continue;
            }
            let entry = sides.entry(e.customer.clone()).or_default();
            let records = if live_side {
                &mut entry.0
            } else {
                &mut entry.1
            };
            records.enrollments.push(e);
        }
    }
    for (customer, (l, r)) in sides.iter_mut() {
        for (store, records) in [(&live.store, l), (scratch, r)] {
            records.enrollments.sort_by_key(|e| e.run);
            records.messages = store
                .messages(&plan.tenant, customer)?
                .into_iter()
                .filter(|m| m.journey == plan.journey)
                .collect();
            records
                .messages
                .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        }
    }
    let mut divergences = Vec::new();
    let mut identical = 0;
    for (customer, (l, r)) in &sides {
        match compare(customer, l, r) {
            None => identical += 1,
            Some(d) if divergences.len() < MAX_DIVERGENCES_LISTED => divergences.push(d),
            Some(_) => {}
        }
    }
    Ok(waymark_api::backtests::Fidelity {
        customers: sides.len() as u64,
        identical,
        divergences,
    })
}

/// How a replay's clock moves: as the live manual clock did (through its recorded stops), or
/// continuously under a system clock.
pub fn clock_moves(live: &Host) -> Result<ClockMoves, StoreError> {
    Ok(if live.clock.is_manual() {
        ClockMoves::Stops(live.store.manual_clock_stops()?.into_iter().collect())
    } else {
        ClockMoves::Continuous
    })
}

/// A replayed message as the diff shows it.
fn sent(m: SentRecord) -> (String, SentMessage) {
    let sent = SentMessage {
        sent_at: match m.status {
            MessageStatus::Delivered => m.delivered_at,
            _ => None,
        },
        channel: m.channel,
        template: m.template,
        decided_at: m.created_at,
        id: m.id,
    };
    (m.customer, sent)
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
}
