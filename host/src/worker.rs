//! Shard workers: the imperative shell around the engine. A worker takes its shard's queued
//! triggers in order, loads what the engine's plan needs, runs the journey's `decide` where a
//! step asks for it, and commits the [`TriggerCommit`] the engine filled together with the
//! trigger's removal from the queue, in one store transaction. It holds no journey rule: what a
//! trigger means is `engine::plan`, what an answer does is `engine::settle`.
//!
//! Customers are partitioned into shards by a hash of (tenant, customer): one worker per shard
//! processes its triggers strictly in arrival order, so events of one customer are processed in
//! order while different customers proceed in parallel.
//!
//! Isolation (issue 15): before a trigger asks any journey, the worker checks the version's
//! circuit breaker (`engine::breaker`, kept by [`crate::host::Breakers`]) and the enrollment's
//! pause (`engine::loops`). A trigger either holds back is *deferred*: left queued, untouched,
//! and its customer is passed over — all of their later triggers wait behind it, in order —
//! until the breaker's cool-down ends (or, for a pause, at the next re-check), while every
//! other customer's triggers go on. After each decision the worker reports the outcome to the
//! breaker and counts the trigger and its sends against the enrollment's and the tenant's loop
//! budgets.

use crate::clock::system_now;
use crate::engine::breaker::Admission;
use crate::engine::{
    self, Addressed, Addressee, DecideError, JourneyRef, Prepared, Step, TriggerFailure,
};
use crate::host::Host;
use crate::model::{Customer, Event, FailureReason, Millis, SendingPolicy, Subject};
use crate::store::{JourneyVersion, Pending, QueuedTrigger, StoreError, TriggerCommit};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

pub(crate) mod accounts; // Account journeys (issue 12)
mod audience; // Audience triggers (issue 12)
mod identity; // Identity merge (issue 12)
mod migration; // Migrations (issue 13)
mod routing;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, debug_span, warn, Instrument};

/// Triggers taken from a shard's queue at a time: one transaction and one flush cover them all.
const BATCH: usize = 1024;
/// How often the first trigger of a customer whose enrollment is paused (loop budgets) is
/// looked at again, to see whether the enrollment was resumed.
const PAUSED_RECHECK_MS: Millis = 1_000;

/// Processes one shard's queue until shutdown (what is left queued then is processed after the
/// restart).
pub async fn run(host: Arc<Host>, shard: u16) {
    let mut held = Held::new();
    while !host.shutdown.is_cancelled() {
        let woken = host.shard_woken(shard);
        match process_batch(&host, shard, &mut held).await {
            Ok(0) => {}
            Ok(_) => continue,
            Err(error) => {
                warn!(shard, %error, "trigger processing failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        // Deferred customers are looked at again when their breaker's cool-down ends.
        let until = held.values().min().map(|at| {
            let ms = at.saturating_sub(system_now()).max(0) as u64;
            tokio::time::Instant::now() + Duration::from_millis(ms)
        });
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(until.unwrap_or_else(tokio::time::Instant::now)), if until.is_some() => {}
            _ = host.shutdown.cancelled() => return,
        }
    }
}

// Backtests (issue 13)
/// Processes `shard`'s queue until nothing in it can run now: the isolated engine of a
/// backtest (`crate::backtest::engine`) calls this on its own host between moves of its
/// manual clock, so that a replay runs exactly the trigger path the live workers run.
/// Returns how many triggers ran; triggers a breaker or a pause defers stay queued.
pub(crate) async fn drain(host: &Arc<Host>, shard: u16) -> Result<usize, StoreError> {
    let mut held = Held::new();
    let mut total = 0;
    loop {
        match process_batch(host, shard, &mut held).await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

/// The customers of a shard whose first queued trigger a circuit breaker deferred, with the
/// wall-clock time to look at it again: all of their triggers wait, in order, in the queue.
type Held = HashMap<(String, String), Millis>;

/// What became of one trigger.
enum Processed {
    /// It ran: commit this with its removal from the queue.
    Ran(Box<TriggerCommit>),
    /// A journey version it goes to has its breaker open: it stays queued, untouched, and so
    /// do its customer's later triggers, until `until` (wall clock).
    Deferred { until: Millis },
    /// Identity merge (issue 12): it was committed on its own (a merge step, a trigger passed
    /// on to the id its customer was merged into); `wake` is a shard given new work.
    Done { wake: Option<u16> },
}

/// Processes up to a batch of one shard's triggers in order and commits them in one
/// transaction, then asks for a flush and goes on with the next batch while it runs (the next
/// batch reads the committed writes; it does not need them durable). The delivery loop and the
/// scheduler are told about new messages and timers once the flush is done.
///
/// A trigger reads its customer's state from the store, so it must see the writes of every
/// earlier trigger of the same customer. The batch is therefore processed in rounds: a round
/// takes each customer's first trigger still waiting (a customer whose earlier trigger waits
/// for a later round waits with it, so each customer's triggers keep their order), and is
/// committed before the next round starts. A batch of distinct customers is one round and one
/// transaction; each sled transaction seals and writes sled's log buffer, so their number is
/// what the batch saves. Triggers of different customers touch different records, except the
/// journey-wide delivery counters that `stats` offers, which lag by at most one batch.
///
/// Customers in `held` are passed over (their triggers stay queued, in order) until their time
/// comes; a trigger that a breaker defers adds its customer.
async fn process_batch(host: &Arc<Host>, shard: u16, held: &mut Held) -> Result<usize, StoreError> {
    let wall = system_now();
    held.retain(|_, until| *until > wall);
    let mut waiting = if held.is_empty() {
        host.store.queued(shard, BATCH)?
    } else {
        let skip = |q: &QueuedTrigger| held.contains_key(&(q.tenant.clone(), q.customer.clone()));
        host.store.queued_except(shard, BATCH, &skip)?
    };
    let mut n = 0;
    let mut pending: Vec<TriggerCommit> = Vec::with_capacity(waiting.len());
    let (mut timers, mut sends) = (false, false);
    let mut forwarded: HashSet<u16> = HashSet::new();
    while !waiting.is_empty() && !host.shutdown.is_cancelled() {
        let mut in_round: HashSet<(String, String)> = HashSet::with_capacity(waiting.len());
        let mut deferred: HashSet<(String, String)> = HashSet::new();
        let mut later = Vec::new();
        for (key, item) in waiting {
            if host.shutdown.is_cancelled() {
                break;
            }
            let who = (item.tenant.clone(), item.customer.clone());
            if held.contains_key(&who) {
                continue;
            }
            if deferred.contains(&who) || !in_round.insert(who.clone()) {
                deferred.insert(who);
                later.push((key, item));
                continue;
            }
            // A trigger whose `decide` finishes at once never returns `Pending`, so without
            // this a shard with work would hold its runtime thread for whole batches and
            // starve the tasks sharing it (deliveries, HTTP): every 128 triggers (tokio's
            // task budget) the shard lets them run.
            tokio::task::consume_budget().await;
            let commit = match process(host, key, item).await? {
                Processed::Ran(commit) => *commit,
                Processed::Deferred { until } => {
                    held.insert(who, until);
                    continue;
                }
                Processed::Done { wake } => {
                    n += 1;
                    if let Some(to) = wake.filter(|to| *to != shard) {
                        host.wake_shard(to);
                    }
                    continue;
                }
            };
            n += 1;
            // Account journeys (issue 12): shards given forwarded triggers.
            forwarded.extend(
                commit
                    .queued
                    .iter()
                    .map(|q| crate::store::shard_of(&q.tenant, &q.customer, host.store.shards())),
            );
            timers |= !commit.timers_set.is_empty() || !commit.audience.is_empty();
            sends |= !commit.outbox.is_empty();
            pending.push(commit);
        }
        if !pending.is_empty() {
            host.store.commit_triggers(&pending)?;
            pending.clear();
        }
        waiting = later;
    }
    if n > 0 {
        if !host.store.flushes() {
            // Nothing to wait for (a backtest's scratch store): no task per batch.
            host.batch_committed(&forwarded, timers, sends);
            return Ok(n);
        }
        let durable = host.store.flush_requested();
        let host = host.clone();
        tokio::spawn(async move {
            match durable.await {
                Ok(()) => {
                    debug!(shard, triggers = n, "batch durable");
                    host.batch_committed(&forwarded, timers, sends);
                }
                // The batch stays committed; the next flush that succeeds covers it, and the
                // delivery loop and scheduler find its work when they next look.
                Err(error) => warn!(shard, %error, "flushing a committed batch failed"),
            }
        });
    }
    Ok(n)
}

/// Runs one trigger to completion: what it changes, to be committed with its batch.
async fn process(
    host: &Host,
    queue_key: Vec<u8>,
    item: QueuedTrigger,
) -> Result<Processed, StoreError> {
    let now = host.clock.now();
    let mut commit = TriggerCommit {
        tenant: item.tenant.clone(),
        queue_key,
        ..TriggerCommit::default()
    };
    // Identity merge (issue 12): merge steps, and triggers of merged ids, are done here.
    let item = match identity::step(host, &commit.queue_key, item, now)? {
        identity::Next::Done(done) => return Ok(done),
        identity::Next::Process(item) => item,
    };
    let mut shell = Shell::new(host, &item.tenant);
    let is_timer = matches!(item.pending, Pending::Timer { .. });
    let deferred = match item.pending {
        Pending::Event { event } => shell.event(&mut commit, event, now).await?,
        Pending::Logged => match host.store.logged_event(&item.tenant, &commit.queue_key)? {
            Some(event) => {
                // Indexed under its customer with the commit (the dashboard's timeline).
                commit.event_customer = Some(event.customer.clone());
                shell.event(&mut commit, event, now).await?
            }
            // Ingest writes the log entry and the queue entry in one transaction.
            None => {
                warn!(tenant = %item.tenant, "a queued event is missing from the log; dropped");
                None
            }
        },
        Pending::Timer {
            journey,
            run,
            name,
            due,
        } => {
            let addressed = Addressed::Timer { name, due };
            shell
                .addressed(&mut commit, &item.customer, &journey, run, addressed, now)
                .await?
        }
        Pending::Delivery {
            journey,
            run,
            report,
        } => {
            let addressed = Addressed::Delivery { report };
            shell
                .addressed(&mut commit, &item.customer, &journey, run, addressed, now)
                .await?
        }
        Pending::Migrate {
            journey,
            run,
            from,
            to,
            migration,
        } => {
            let move_ = migration::Move {
                journey,
                run,
                from,
                to,
                migration,
            };
            shell
                .migrate(&mut commit, &item.customer, move_, now)
                .await?
        }
        // Account journeys (issue 12): a member's event on the account's shard.
        Pending::Account { event, member } => {
            shell
                .account_event(&mut commit, &item.customer, event, member, now)
                .await?
        }
        // Audience triggers (issue 12): a watch's due entry was fired.
        Pending::Audience {
            journey,
            trigger,
            due,
        } => {
            shell
                .audience_due(&mut commit, &item.customer, &journey, &trigger, due, now)
                .await?
        }
        // Account traits re-evaluated for every member (issue 12, polish).
        Pending::AccountChanged { account } => {
            shell
                .audience_account_changed(&mut commit, &item.customer, &account, None, now)
                .await?
        }
        // Accounts over several partitions (issue 16): a member's `group` call or leaving, on
        // the account's partition; the account's traits on a member's.
        Pending::Grouped { member, traits, at } => {
            shell.grouped(&mut commit, &item.customer, member, traits, at)?;
            None
        }
        Pending::Left { member } => {
            shell.left(&mut commit, &item.customer, member);
            None
        }
        Pending::AccountTraits { account, traits } => {
            shell
                .account_traits(&mut commit, &item.customer, account, traits, now)
                .await?
        }
        // `identity::step` did these.
        Pending::MergeOut { .. }
        | Pending::MergeIn { .. }
        | Pending::MergeBack { .. }
        | Pending::Forwarded { .. } => None,
    };
    Ok(match deferred {
        Some(until) => Processed::Deferred { until },
        None => {
            pin_templates(host, &mut commit)?;
            if is_timer {
                host.metrics.timers_fired.inc();
            }
            Processed::Ran(Box::new(commit))
        }
    })
}

// Templates (issue 11)
/// Pins each new message whose template names a stored template of its tenant to that
/// template's latest version, so that delivery, its retries and a replay all render the
/// content that was current when the send was decided. A name that is no stored template
/// leaves the message as it was: its payload goes to the adapter unchanged.
fn pin_templates(host: &Host, commit: &mut TriggerCommit) -> Result<(), StoreError> {
    for message in commit
        .outbox
        .iter_mut()
        .filter(|m| m.template_version.is_none())
    {
        if let Some(head) = host
            .store
            .template_head(&message.tenant, &message.template)?
        {
            message.template_version = Some(head.latest);
        }
    }
    Ok(())
}

/// The shell of one trigger: it loads what the engine asks for (journey versions from the
/// host's catalog, kept at hand by name and version), runs the sandbox, and hands everything
/// back to the engine.
struct Shell<'h> {
    host: &'h Host,
    tenant: String,
    versions: Versions,
}

/// The journey versions one trigger's steps asked for (`None`: never stored), by journey and
/// version number: a few, so a list, where a hash map per trigger cost more than the lookups.
#[derive(Default)]
struct Versions(Vec<(String, u32, Option<Arc<JourneyVersion>>)>);

impl Versions {
    fn get(&self, journey: &str, version: u32) -> Option<&Option<Arc<JourneyVersion>>> {
        self.0
            .iter()
            .find(|(j, n, _)| j == journey && *n == version)
            .map(|(.., v)| v)
    }

    /// Keeps `loaded` as `journey`'s `version`, unless that is already kept.
    fn keep(&mut self, journey: &str, version: u32, loaded: Option<Arc<JourneyVersion>>) {
        if self.get(journey, version).is_none() {
            self.0.push((journey.to_string(), version, loaded));
        }
    }
}

impl<'h> Shell<'h> {
    fn new(host: &'h Host, tenant: &str) -> Shell<'h> {
        Shell {
            host,
            tenant: tenant.to_string(),
            versions: Versions::default(),
        }
    }

    fn version(
        &mut self,
        journey: &str,
        version: u32,
    ) -> Result<Option<Arc<JourneyVersion>>, StoreError> {
        if let Some(v) = self.versions.get(journey, version) {
            return Ok(v.clone());
        }
        let loaded = self
            .host
            .catalog
            .version(&self.host.store, &self.tenant, journey, version)?;
        self.versions.keep(journey, version, loaded.clone());
        Ok(loaded)
    }

    /// Whether any step asks a journey version whose breaker holds its triggers back, or an
    /// enrollment paused by a loop budget: when to look at the trigger again, if so. (A
    /// half-open breaker admits one probe.)
    fn deferral(&self, steps: &[Step]) -> Option<Millis> {
        let wall = system_now();
        let mut deferred: Option<Millis> = None;
        for step in steps {
            if let Step::Decide { enrollment, .. } = step {
                if enrollment.paused.is_some() {
                    // Looked at again now and then: the API resumes it.
                    let until = wall.saturating_add(PAUSED_RECHECK_MS);
                    deferred = Some(deferred.map_or(until, |d| d.max(until)));
                    continue;
                }
                let admission = self.host.breakers.admit(
                    &self.host.metrics,
                    &self.tenant,
                    &enrollment.journey,
                    enrollment.version,
                    wall,
                );
                if let Admission::Defer { until } = admission {
                    deferred = Some(deferred.map_or(until, |d| d.max(until)));
                }
            }
        }
        deferred
    }

    /// A trigger addressed to one enrollment (a timer, a delivery report).
    async fn addressed(
        &mut self,
        commit: &mut TriggerCommit,
        customer_id: &str,
        journey: &str,
        run: u32,
        addressed: Addressed,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let store = &self.host.store;
        let Some(enrollment) =
            store.enrollment_to_update(&self.tenant, customer_id, journey, run)?
        else {
            return Ok(None);
        };
        let customer = accounts::subject_customer(store, &self.tenant, customer_id)?
            .unwrap_or_else(|| Customer {
                id: customer_id.to_string(),
                attributes: Default::default(),
            });
        let step = engine::plan_trigger(enrollment, addressed);
        if let Some(until) = self.deferral(std::slice::from_ref(&step)) {
            return Ok(Some(until));
        }
        self.step(commit, Cow::Owned(customer), step, now).await?;
        Ok(None)
    }

    /// Runs one step: a settled one is recorded; a decision is prepared, asked of the sandbox,
    /// and settled by the engine. Returns why the trigger failed, if it did. A `customer` the
    /// caller has no more use for is moved into the decision's context, not copied.
    async fn step(
        &mut self,
        commit: &mut TriggerCommit,
        customer: Cow<'_, Customer>,
        step: Step,
        now: Millis,
    ) -> Result<Option<TriggerFailure>, StoreError> {
        let wall = system_now();
        let (enrollment, trigger, due, before) = match step {
            Step::Settled { applied, before } => {
                engine::record(commit, &customer.id, None, before, applied, now, wall);
                return Ok(None);
            }
            Step::Decide {
                enrollment,
                trigger,
                due,
                before,
            } => (enrollment, trigger, due, before),
        };
        let Some(version) = self.version(&enrollment.journey, enrollment.version)? else {
            return Ok(Some(TriggerFailure {
                reason: FailureReason::Unavailable,
                message: format!(
                    "journey {:?} has no version {}",
                    enrollment.journey, enrollment.version
                ),
            }));
        };
        let customer_id = customer.id.clone();
        let prepared = engine::prepare(
            &self.tenant,
            customer,
            enrollment,
            before,
            trigger,
            due,
            now,
        );
        let ask = match prepared {
            Prepared::Observed { enrollment, before } => {
                engine::observed(commit, before, enrollment);
                return Ok(None);
            }
            Prepared::Ask(ask) => ask,
        };
        let trigger_kind = ask.context.trigger.kind();
        self.host.metrics.trigger(trigger_kind);
        // Per-trigger context for debug logs (a guest's own log lines among them); failures
        // are logged at `warn` with the same fields spelled out.
        let span = debug_span!(
            "trigger",
            tenant = %self.tenant,
            journey = %ask.context.enrollment.journey,
            version = ask.context.enrollment.version,
            customer = %customer_id,
            trigger = trigger_kind,
        );
        // Read once for the trigger: its limits (the sandbox's, the loop budgets) and policy.
        let settings = self.host.tenant_settings(&self.tenant);
        let answer = match &settings {
            Ok(settings) => {
                let limits = &settings.limits;
                self.ask(&version, &ask, limits)
                    .instrument(span.clone())
                    .await
            }
            Err(error) => Err(DecideError::Internal(error.to_string())),
        };
        let default_policy = SendingPolicy::default();
        let policy = match &settings {
            Ok(settings) => &settings.policy,
            Err(error) => {
                // The policy could not be read: send now rather than lose the decision.
                warn!(tenant = %self.tenant, %error, "sending policy unavailable; not deferring");
                &default_policy
            }
        };
        let history = if engine::needs_history(policy, &answer) {
            self.host.store.messages(&self.tenant, &customer_id)?
        } else {
            Vec::new()
        };
        let enrollment_id = ask.context.enrollment.id.clone();
        let outbox_before = commit.outbox.len();
        let failure = engine::settle(commit, ask, &version.spec, answer, policy, &history, wall);
        // Loop budgets: count this trigger and its sends on the enrollment just written.
        let sends = (commit.outbox.len() - outbox_before) as u64;
        match &settings {
            Ok(settings) => {
                let limits = &settings.limits;
                if let Some(written) = commit
                    .enrollments
                    .iter_mut()
                    .rev()
                    .find(|e| e.id == enrollment_id)
                {
                    let was_paused = written.paused.is_some();
                    engine::loops::charge(written, limits, sends, now);
                    {
                        let mut tenants = self
                            .host
                            .tenant_loops
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        let window = tenants.entry(self.tenant.clone()).or_default();
                        engine::loops::charge_tenant(window, written, limits, sends, now);
                    }
                    if let (false, Some(pause)) = (was_paused, &written.paused) {
                        warn!(
                            tenant = %self.tenant,
                            journey = %version.name,
                            customer = %customer_id,
                            reason = %pause.reason,
                            "enrollment paused"
                        );
                        self.host.metrics.enrollments_paused.inc();
                    }
                }
            }
            Err(error) => {
                warn!(tenant = %self.tenant, %error, "limits unavailable; loop budgets not counted")
            }
        }
        // A refused migration says nothing about the version's health for its own triggers.
        let counts = trigger_kind != "migrated";
        self.host.breakers.record(
            &self.host.metrics,
            &self.tenant,
            &version.name,
            version.version,
            counts
                && failure
                    .as_ref()
                    .is_some_and(|f| engine::breaker::counts_against(f.reason)),
            system_now(),
        );
        if let Some(failure) = &failure {
            warn!(
                tenant = %self.tenant,
                journey = %version.name,
                version = version.version,
                customer = %customer_id,
                trigger = trigger_kind,
                reason = failure.reason.as_str(),
                message = %failure.message,
                "trigger failed"
            );
            self.host.metrics.failure(failure.reason.as_str());
        }
        Ok(failure)
    }

    /// Asks the journey's component to decide.
    async fn ask(
        &self,
        version: &JourneyVersion,
        ask: &engine::Ask,
        limits: &crate::model::Limits,
    ) -> Result<Vec<crate::model::Command>, DecideError> {
        let host = self.host;
        let component = host
            .registry
            .journey(&self.tenant, &version.digest)
            .await
            .map_err(|e| DecideError::Unavailable(e.to_string()))?;
        // Issue 10: a component that does not import `stats` cannot read the snapshot, so
        // none is computed for it (a scan of the journey's counters per trigger, otherwise).
        let stats = if component.reads_stats() {
            let channels = host
                .store
                .channel_stats(&self.tenant, &version.name)
                .map_err(|e| DecideError::Internal(e.to_string()))?;
            // Issue 13: the arms as of the period's start, computed once a period
            // (`report::arms`).
            host.arm_stats
                .snapshot(
                    &host.store,
                    &self.tenant,
                    version,
                    ask.context.now,
                    channels,
                )
                .map_err(|e| DecideError::Internal(e.to_string()))?
        } else {
            crate::model::StatsSnapshot::default()
        };
        // Account journeys (issue 12): an account is shown by its own id, not its subject key.
        let shown;
        let context = match engine::accounts::as_seen(&ask.context.customer) {
            std::borrow::Cow::Borrowed(_) => &ask.context,
            std::borrow::Cow::Owned(customer) => {
                shown = crate::model::DecisionContext {
                    customer,
                    ..ask.context.clone()
                };
                &shown
            }
        };
        component
            .decide(context, stats, limits)
            .await
            .map_err(|f| DecideError::Guest {
                reason: f.reason,
                message: f.message,
            })
    }
}
