//! One backtest: the candidate replayed over the chosen recorded events, then the live version
//! over the same events, each in its own [`IsolatedEngine`], and their reports and sends read
//! from the engines' scratch stores. Each replay runs in parts of its customers when their
//! replays are independent ([`super::parts`]).

use super::candidate::Candidate;
use super::engine::{ClockMoves, IsolatedEngine};
pub use super::parts::Part;
use super::parts::{parts_for, replay_in_parts, survey, Kept, Share, Split, Survey, Which};
use crate::host::{Host, HostConfig};
use crate::model::rollout::Rollout;
use crate::model::Enrollment;
use crate::model::Millis;
use crate::registry::Registry;
use crate::sandbox::Sandbox;
use crate::store::events::LoggedEvent;
use crate::store::{MessageStatus, SentRecord, StoreError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use waymark_api::backtests::SentMessage;

/// Recorded events read from the log at a time.
pub(super) const HISTORY_PAGE: usize = 1024;

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

/// Fails a replay whose scratch store holds more than its `share` of the memory the host
/// allows a backtest ([`super::parts::share_of_memory`]).
fn within_memory(
    engine: &IsolatedEngine,
    config: &HostConfig,
    share: Option<u64>,
) -> Result<(), BacktestError> {
    match (config.backtest_memory, share, engine.store().memory_used()) {
        (Some(limit), Some(share), Some(used)) if used > share => Err(BacktestError::TooLarge {
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
    /// Of those, one part of a replay split over the cores (`parts::Split`); set by the
    /// backtest itself, never asked for.
    pub part: Option<Part>,
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
    let Survey {
        count,
        crossing,
        kept,
    } = survey(live, plan)?;
    let kept = kept.map(Arc::new);
    // When the candidate is the live version with nothing rolling out, the two replays are
    // one: it runs once.
    let same = plan.migrate.is_none()
        && matches!(candidate_side(plan, &rollout), Side::Stored(_, pointers) if pointers == rollout);
    progress
        .total
        .store(if same { count } else { count * 2 }, Ordering::Relaxed);
    // A sandbox of the backtest's own: its counters are not the live host's. A candidate sent
    // as bytes was compiled in one already, which both replays share. Its engines share what
    // is compiled in it, each over its own scratch store.
    let sandbox = match &plan.candidate {
        Candidate::Unstored(unstored) => unstored.sandbox.clone(),
        Candidate::Stored(_) => Sandbox::new(live.registry.sandbox().config().clone())?,
    };
    let compiled = Registry::new(sandbox, IsolatedEngine::scratch_store()?);
    // The replays: the candidate's, the only version new entrants of the journey run, and the
    // live version's, its pointers as they stand (a rollout's share included); or the one.
    let sides = if same {
        vec![Which::Live(live_version)]
    } else {
        vec![Which::Candidate(rollout.clone()), Which::Live(live_version)]
    };
    // Each split into parts, a few at once, when no customer's replay depends on another's;
    // else each whole, side by side.
    let candidate = (!same).then_some(&plan.candidate);
    let split = match parts_for(live, plan, crossing, candidate).await? {
        Some(at_once) => Split::of(&live.config, count, at_once, kept.is_some()),
        None => Split::whole(sides.len() as u64),
    };
    let parts = split.count;
    let mut replays = replay_in_parts(live, &compiled, plan, sides, split, kept, progress, cancel)
        .await?
        .into_iter();
    let (live_side, fidelity) = replays
        .next_back()
        .ok_or_else(|| BacktestError::Stopped("the live replay did not run".into()))?;
    let candidate = match replays.next() {
        Some((candidate, _)) => candidate,
        None => live_side.clone(),
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
pub(super) fn candidate_side<'a>(plan: &'a Plan, rollout: &Rollout) -> Side<'a> {
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

pub(super) fn takes(plan: &Plan, event: &crate::store::events::LoggedHead) -> bool {
    let at = event.replay_at();
    at >= plan.from && at < plan.to && plan.sample.takes(event.customer)
}

/// Which version one replay runs for new entrants.
pub(super) enum Side<'a> {
    /// The journey's pointers as they are live (a rollout's share included): this version.
    Live(u32),
    /// This stored version only, with these pointers.
    Stored(u32, Rollout),
    /// A candidate sent as bytes, added to the scratch store only.
    Unstored(&'a super::candidate::Unstored),
}

/// Where one replay's recorded events come from.
pub(super) enum Source {
    /// The log, read a page at a time, taking the events its plan takes.
    Log,
    /// The history the survey kept: these of its events, in log order.
    Kept(Arc<Kept>, Vec<u32>),
}

impl Source {
    /// All of the events the survey took: kept, or read from the log.
    pub(super) fn all(kept: &Option<Arc<Kept>>) -> Source {
        match kept {
            Some(k) => Source::Kept(k.clone(), (0..k.hashes.len() as u32).collect()),
            None => Source::Log,
        }
    }

    pub(super) fn kept_size(kept: &Option<Arc<Kept>>) -> usize {
        kept.as_ref().map_or(0, |k| k.size())
    }
}

/// One replay to run: `plan`'s events from `source` on `side`, its scratch store allowed
/// `share` of a backtest's memory; with `check`, what ran live for its customers, which it is
/// compared with.
pub(super) struct Job<'a> {
    pub plan: &'a Plan,
    pub side: Side<'a>,
    pub source: Source,
    pub share: Option<u64>,
    pub check: Option<Vec<Enrollment>>,
}

/// One replay ([`Job`]), its report cells and sends read back for [`super::parts::combine`].
pub(super) async fn replay(
    live: &Host,
    compiled: &Registry,
    job: Job<'_>,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Share, BacktestError> {
    let Job {
        plan,
        side,
        source,
        share,
        check,
    } = job;
    let engine = IsolatedEngine::new(
        &live.store,
        compiled,
        &live.config,
        &plan.tenant,
        plan.from,
        clock_moves(live)?,
        cancel.child_token(),
    )?;
    // The candidate's side of a backtest with `migrate`: rolled out, and enrollments moved,
    // before the first event at or after its time; the live pointers hold until then.
    let pending_move = plan.migrate.filter(|_| !matches!(side, Side::Live(_)));
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
    let mut feed = Feed {
        engine: &engine,
        plan,
        version,
        progress,
        group: Vec::new(),
        group_at: None,
        pending_move,
        migration: None,
    };
    match source {
        Source::Log => {
            let mut after = None;
            loop {
                // Another part's events, or ones outside the window, are read only as far as
                // the head.
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
                    feed.push(logged).await?;
                }
                within_memory(&engine, &live.config, share)?;
                // Let other work on the runtime go on between pages.
                tokio::task::yield_now().await;
            }
        }
        Source::Kept(kept, events) => {
            for page in events.chunks(HISTORY_PAGE) {
                for i in page {
                    if cancel.is_cancelled() {
                        return Err(BacktestError::Cancelled);
                    }
                    feed.push(kept.history.get(*i as usize)?).await?;
                }
                within_memory(&engine, &live.config, share)?;
                tokio::task::yield_now().await;
            }
        }
    }
    let migration = feed.finish().await?;
    engine.advance_to(plan.to.max(engine.now())).await?;
    // A cancelled engine returned early: what it holds is not the replay's end.
    if cancel.is_cancelled() {
        return Err(BacktestError::Cancelled);
    }
    // The timers after the last event add sends and state too.
    within_memory(&engine, &live.config, share)?;
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
    // A message's id is its own: the order is total, so unstable is the same order.
    sends.sort_unstable_by(|a, b| {
        (&a.0, a.1.decided_at, &a.1.id).cmp(&(&b.0, b.1.decided_at, &b.1.id))
    });
    let fidelity = match check {
        Some(ran) => Some(check_fidelity(live, scratch, plan, ran)?),
        None => None,
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

/// Feeds one replay's recorded events to its engine: those of one journey time together, as
/// live queued them, and the candidate rolled out at its time ([`Plan::migrate`]).
struct Feed<'a> {
    engine: &'a IsolatedEngine,
    plan: &'a Plan,
    version: u32,
    progress: &'a Progress,
    group: Vec<crate::model::Event>,
    group_at: Option<Millis>,
    pending_move: Option<MigrateAt>,
    migration: Option<(crate::store::Migration, Vec<crate::store::MigrationOutcome>)>,
}

impl Feed<'_> {
    async fn push(&mut self, logged: LoggedEvent) -> Result<(), BacktestError> {
        let at = logged.replay_at();
        if self.group_at.is_some_and(|g| g != at) || self.group.len() >= MAX_GROUP {
            feed_group(self.engine, &mut self.group, self.group_at, self.progress).await?;
        }
        if let Some(m) = self.pending_move.filter(|m| m.at <= at) {
            feed_group(self.engine, &mut self.group, self.group_at, self.progress).await?;
            self.move_to_candidate(m).await?;
        }
        self.group_at = Some(at);
        self.group.push(logged.into_event());
        Ok(())
    }

    async fn move_to_candidate(&mut self, m: MigrateAt) -> Result<(), BacktestError> {
        let at = m.at.max(self.engine.now());
        let moved = self
            .engine
            .migrate_to(&self.plan.journey, m.from, self.version, at)
            .await?;
        self.migration = Some(moved);
        self.pending_move = None;
        Ok(())
    }

    /// Feeds what is gathered, and makes the move if no event came after its time.
    async fn finish(
        mut self,
    ) -> Result<Option<(crate::store::Migration, Vec<crate::store::MigrationOutcome>)>, BacktestError>
    {
        feed_group(self.engine, &mut self.group, self.group_at, self.progress).await?;
        if let Some(m) = self.pending_move {
            self.move_to_candidate(m).await?;
        }
        Ok(self.migration)
    }
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

/// Every customer of the replay with an enrollment in the journey, live (`ran`: those of the
/// replay's customers) or replayed, compared.
fn check_fidelity(
    live: &Host,
    scratch: &crate::store::Store,
    plan: &Plan,
    ran: Vec<Enrollment>,
) -> Result<waymark_api::backtests::Fidelity, StoreError> {
    use super::fidelity::{compare, Records, MAX_DIVERGENCES_LISTED};
    use std::collections::BTreeMap;
    let mut sides: BTreeMap<String, (Records, Records)> = BTreeMap::new();
    let replayed = scratch.journey_enrollments(&plan.tenant, &plan.journey)?;
    for (enrollments, live_side) in [(ran, true), (replayed, false)] {
        for e in enrollments {
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
