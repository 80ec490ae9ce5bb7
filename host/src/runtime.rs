//! The imperative shell around the engine: shard workers take triggers from the inbox in order,
//! load what the engine needs, ask the sandbox for a decision, and commit the engine's result and
//! the trigger's removal from the inbox in one store transaction.
//!
//! Customers are partitioned into shards by a hash of (tenant, customer): one worker per shard
//! processes its triggers strictly in arrival order, so events of one customer are processed in
//! order while different customers proceed in parallel.

use crate::clock::{system_now, Clock};
use crate::engine::{self, Applied, Routing};
use crate::metrics::Metrics;
use crate::model::{
    Counter, Customer, DecisionContext, Enrollment, Event, Limits, Millis, SendingPolicy,
    TaskStatus, Trigger,
};
use crate::registry::Registry;
use crate::store::{
    JourneyVersion, Message, MessageStatus, Pending, QueuedTrigger, Store, StoreError, Task,
    TimerRecord, TriggerCommit,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

/// Event ids are remembered for a week by default: longer than any client's retries.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Tunables of trigger processing and delivery.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Number of shard workers; customers hash onto them.
    pub shards: u16,
    /// Delivery attempts before a message becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// How long an event id is remembered (journey time): a retry within it is reported as a
    /// duplicate, one after it is a new event. `None` remembers ids for ever.
    pub dedup_window: Option<Duration>,
}

impl RuntimeConfig {
    /// [`RuntimeConfig::dedup_window`] in milliseconds.
    pub fn dedup_window_ms(&self) -> Option<crate::model::Millis> {
        self.dedup_window
            .map(|w| crate::model::Millis::try_from(w.as_millis()).unwrap_or(i64::MAX))
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: 4,
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(3600),
            dedup_window: Some(DEFAULT_DEDUP_WINDOW),
        }
    }
}

/// Shared state of a running host: what the API, workers, scheduler and delivery all use.
pub struct Runtime {
    pub store: Store,
    pub registry: Registry,
    pub clock: Clock,
    pub metrics: Metrics,
    pub config: RuntimeConfig,
    pub shutdown: CancellationToken,
    shard_wakers: Vec<Notify>,
    /// A timer was set: the scheduler may need to wake earlier.
    pub timers_changed: Notify,
    /// A message entered the outbox: the delivery loop has work.
    pub outbox_changed: Notify,
    /// Each tenant's effective limits and sending policy, read from the store once.
    settings: std::sync::Mutex<HashMap<String, TenantSettings>>,
}

/// What the runtime keeps of a tenant's record: read once, forgotten when changed.
#[derive(Debug, Clone)]
struct TenantSettings {
    limits: Limits,
    policy: SendingPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Runtime {
    pub fn new(store: Store, registry: Registry, clock: Clock, config: RuntimeConfig) -> Runtime {
        let metrics = Metrics::new(registry.sandbox().counters());
        Runtime {
            shard_wakers: (0..store.shards()).map(|_| Notify::new()).collect(),
            store,
            registry,
            clock,
            metrics,
            config,
            shutdown: CancellationToken::new(),
            timers_changed: Notify::new(),
            outbox_changed: Notify::new(),
            settings: Default::default(),
        }
    }

    /// The sandbox limits `tenant`'s components run under: the operator's defaults with the
    /// tenant's overrides.
    pub fn tenant_limits(&self, tenant: &str) -> Result<Limits, StoreError> {
        Ok(self.tenant_settings(tenant)?.limits)
    }

    /// The tenant's sending policy.
    pub fn tenant_policy(&self, tenant: &str) -> Result<SendingPolicy, StoreError> {
        Ok(self.tenant_settings(tenant)?.policy)
    }

    fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings, StoreError> {
        if let Some(settings) = self.limits_cache().get(tenant) {
            return Ok(settings.clone());
        }
        let record = self.store.tenant(tenant)?;
        let overrides = record.as_ref().map(|t| t.limits).unwrap_or_default();
        let settings = TenantSettings {
            limits: self.registry.sandbox().config().defaults.with(&overrides),
            policy: record.map(|t| t.policy).unwrap_or_default(),
        };
        self.limits_cache()
            .insert(tenant.to_string(), settings.clone());
        Ok(settings)
    }

    /// Forgets the cached settings of `tenant` after they changed.
    pub fn forget_tenant_limits(&self, tenant: &str) {
        self.limits_cache().remove(tenant);
    }

    /// Defers the sends the tenant's sending policy does not allow yet: each gets the journey
    /// time it may go out at, counting the customer's earlier messages (and this trigger's).
    fn defer_sends(
        &self,
        commit: &TriggerCommit,
        customer: &Customer,
        applied: &mut Applied,
        now: Millis,
    ) -> Result<(), StoreError> {
        let policy = self.tenant_policy(&commit.tenant)?;
        if policy == SendingPolicy::default() || applied.effects.sends.iter().all(|d| d.suppressed)
        {
            return Ok(());
        }
        let counts =
            |m: &Message| !matches!(m.status, MessageStatus::Suppressed | MessageStatus::Dead);
        let mut earlier: Vec<(String, Millis)> = self
            .store
            .messages(&commit.tenant, &customer.id)?
            .iter()
            .chain(commit.outbox.iter().filter(|m| m.customer == customer.id))
            .filter(|m| counts(m))
            .map(|m| (m.channel.clone(), m.release_at.unwrap_or(m.created_at)))
            .collect();
        let zone = crate::policy::zone_of(
            customer,
            policy
                .quiet_hours
                .as_ref()
                .map_or("UTC", |q| q.default_timezone.as_str()),
        );
        for draft in applied.effects.sends.iter_mut().filter(|d| !d.suppressed) {
            let at = crate::policy::release_time(now, &draft.send.channel, &earlier, &policy, zone);
            if at > now {
                draft.release_at = Some(at);
            }
            earlier.push((draft.send.channel.clone(), at));
        }
        Ok(())
    }

    fn limits_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantSettings>> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the worker of the shard that owns this customer.
    pub fn wake_customer(&self, tenant: &str, customer: &str) {
        let shard = crate::store::shard_of(tenant, customer, self.store.shards());
        self.shard_wakers[shard as usize].notify_one();
    }

    pub fn wake_all_shards(&self) {
        for w in &self.shard_wakers {
            w.notify_one();
        }
    }

    /// Processes one shard's inbox until shutdown.
    pub async fn shard_worker(self: Arc<Self>, shard: u16) {
        loop {
            let notified = self.shard_wakers[shard as usize].notified();
            match self.process_batch(shard).await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(error) => {
                    warn!(shard, %error, "inbox processing failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Processes up to a batch of one shard's triggers, then makes the results durable before
    /// the delivery loop may see them.
    async fn process_batch(&self, shard: u16) -> Result<usize, RuntimeError> {
        let items = self.store.queued(shard, 64)?;
        let n = items.len();
        let (mut timers, mut sends) = (false, false);
        for (key, item) in items {
            if self.shutdown.is_cancelled() {
                break;
            }
            let commit = self.process(key, item).await?;
            timers |= !commit.timers_set.is_empty();
            sends |= !commit.outbox.is_empty();
        }
        if n > 0 {
            self.store.flush().await?;
        }
        if timers {
            self.timers_changed.notify_one();
        }
        if sends {
            self.outbox_changed.notify_one();
        }
        Ok(n)
    }

    /// Runs one trigger to completion and commits it.
    async fn process(
        &self,
        queue_key: Vec<u8>,
        item: QueuedTrigger,
    ) -> Result<TriggerCommit, RuntimeError> {
        let now = self.clock.now();
        let mut commit = TriggerCommit {
            tenant: item.tenant.clone(),
            queue_key,
            ..TriggerCommit::default()
        };
        match item.pending {
            Pending::Event { event } => self.process_event(&mut commit, event, now).await?,
            Pending::Timer {
                journey,
                run,
                name,
                due,
            } => {
                self.metrics.timers_fired.inc();
                let trigger = match engine::stalled_milestone(&name) {
                    Some(milestone) => Trigger::Stalled {
                        milestone: milestone.to_string(),
                    },
                    None => Trigger::Timer { name },
                };
                self.process_enrollment(
                    &mut commit,
                    &item.customer,
                    &journey,
                    run,
                    trigger,
                    Some(due),
                    now,
                )
                .await?
            }
            Pending::Delivery {
                journey,
                run,
                report,
            } => {
                let trigger = Trigger::Delivery { report };
                self.process_enrollment(
                    &mut commit,
                    &item.customer,
                    &journey,
                    run,
                    trigger,
                    None,
                    now,
                )
                .await?
            }
        }
        self.store.commit_trigger(&commit)?;
        Ok(commit)
    }

    /// Routes an event through every journey of the tenant: exits, deliveries to enrolled runs,
    /// and new entries.
    async fn process_event(
        &self,
        commit: &mut TriggerCommit,
        event: Event,
        now: Millis,
    ) -> Result<(), RuntimeError> {
        let tenant = commit.tenant.clone();
        let existing = self.store.customer(&tenant, &event.customer)?;
        let mut customer = existing.clone().unwrap_or_else(|| Customer {
            id: event.customer.clone(),
            attributes: Default::default(),
        });
        let mut changed = existing.is_none();
        if event.name == engine::IDENTIFY {
            // Traits under `traits` (Segment's shape), or the properties themselves.
            let traits = match event.properties.get("traits") {
                Some(serde_json::Value::Object(traits)) => traits.clone(),
                _ => event.properties.clone(),
            };
            changed |= engine::apply_traits(&mut customer, &traits);
        }
        if event.name == "unsubscribed" {
            let channel = event.properties.get("channel").and_then(|c| c.as_str());
            engine::unsubscribe(&mut customer, channel);
            changed = true;
        }
        if changed {
            commit.customer = Some(customer.clone());
        }
        // A tracking event about one of the customer's messages goes to the enrollment that
        // sent it, and only there.
        if let Some((kind, message_id)) = engine::engagement(&event) {
            if let Some(message) = self.store.message(&tenant, &customer.id, message_id)? {
                self.engage(commit, &customer, &message, kind, event.clone(), now)
                    .await?;
                return Ok(());
            }
        }
        let enrollments = self.store.enrollments(&tenant, &customer.id)?;
        for latest in self.store.latest_journeys(&tenant)? {
            let mine: Vec<Enrollment> = enrollments
                .iter()
                .filter(|e| e.journey == latest.name)
                .cloned()
                .collect();
            let mut versions: HashMap<u32, JourneyVersion> = HashMap::new();
            for e in &mine {
                if let std::collections::hash_map::Entry::Vacant(slot) = versions.entry(e.version) {
                    if let Some(v) = self.store.journey_version(&tenant, &e.journey, e.version)? {
                        slot.insert(v);
                    }
                }
            }
            let routes = engine::route_event(
                &latest.spec,
                &mine,
                |e| versions.get(&e.version).map(|v| &v.spec),
                &event,
            );
            for route in routes {
                match route {
                    Routing::Enter { run, key } => {
                        let enrollment = engine::enroll(
                            &latest.name,
                            latest.version,
                            &customer.id,
                            run,
                            key,
                            now,
                        );
                        let trigger = Trigger::Entered {
                            event: event.clone(),
                        };
                        self.decide(commit, &customer, enrollment, &latest, trigger, None, now)
                            .await;
                    }
                    Routing::Deliver { enrollment_id } => {
                        let Some(enrollment) = mine.iter().find(|e| e.id == enrollment_id) else {
                            continue;
                        };
                        let Some(version) = versions.get(&enrollment.version) else {
                            continue;
                        };
                        let trigger = Trigger::Event {
                            event: event.clone(),
                        };
                        self.decide(
                            commit,
                            &customer,
                            enrollment.clone(),
                            version,
                            trigger,
                            None,
                            now,
                        )
                        .await;
                    }
                    Routing::Exit {
                        enrollment_id,
                        reason,
                    } => {
                        let Some(enrollment) = mine.iter().find(|e| e.id == enrollment_id) else {
                            continue;
                        };
                        let applied = engine::exit(enrollment.clone(), reason, now);
                        absorb(commit, &customer, None, applied, now);
                    }
                }
            }
        }
        Ok(())
    }

    /// An engagement event about `message`: counted on the enrollment that sent it, and handed
    /// to that enrollment's `decide` (while it is active).
    async fn engage(
        &self,
        commit: &mut TriggerCommit,
        customer: &Customer,
        message: &Message,
        kind: &str,
        event: Event,
        now: Millis,
    ) -> Result<(), RuntimeError> {
        let tenant = commit.tenant.clone();
        let Some(mut enrollment) =
            self.store
                .enrollment(&tenant, &customer.id, &message.journey, message.run)?
        else {
            return Ok(());
        };
        let Some(version) =
            self.store
                .journey_version(&tenant, &message.journey, enrollment.version)?
        else {
            return Ok(());
        };
        engine::record_engagement(&mut enrollment, &message.channel, kind);
        self.metrics.engagement(kind);
        let trigger = Trigger::Event { event };
        self.decide(commit, customer, enrollment, &version, trigger, None, now)
            .await;
        Ok(())
    }

    /// A trigger addressed to one enrollment (a timer, a delivery report).
    #[allow(clippy::too_many_arguments)]
    async fn process_enrollment(
        &self,
        commit: &mut TriggerCommit,
        customer_id: &str,
        journey: &str,
        run: u32,
        trigger: Trigger,
        due: Option<Millis>,
        now: Millis,
    ) -> Result<(), RuntimeError> {
        let tenant = commit.tenant.clone();
        let Some(enrollment) = self.store.enrollment(&tenant, customer_id, journey, run)? else {
            return Ok(());
        };
        let Some(version) = self
            .store
            .journey_version(&tenant, journey, enrollment.version)?
        else {
            return Ok(());
        };
        let customer = self
            .store
            .customer(&tenant, customer_id)?
            .unwrap_or_else(|| Customer {
                id: customer_id.to_string(),
                attributes: Default::default(),
            });
        self.decide(commit, &customer, enrollment, &version, trigger, due, now)
            .await;
        Ok(())
    }

    /// Asks the journey what to do and folds the outcome into the commit. A guest failure or an
    /// invalid decision fails this trigger only: it is recorded on the enrollment and counted.
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        commit: &mut TriggerCommit,
        customer: &Customer,
        mut enrollment: Enrollment,
        version: &JourneyVersion,
        trigger: Trigger,
        due: Option<Millis>,
        now: Millis,
    ) {
        let tenant = commit.tenant.clone();
        let decides = engine::should_decide(&enrollment, &trigger, due);
        engine::observe(&mut enrollment, &trigger, due);
        if !decides {
            commit.enrollments.push(enrollment);
            return;
        }
        self.metrics.trigger(trigger.kind());
        let trigger_id = engine::trigger_id(&trigger, due);
        let span = info_span!(
            "trigger",
            tenant = %tenant,
            journey = %enrollment.journey,
            version = enrollment.version,
            customer = %customer.id,
            trigger = trigger.kind(),
        );
        let outcome = async {
            let component = self
                .registry
                .journey(&tenant, &version.digest)
                .await
                .map_err(|e| ("unavailable", e.to_string()))?;
            let stats = self
                .store
                .channel_stats(&tenant, &enrollment.journey)
                .map_err(|e| ("internal", e.to_string()))?;
            let context = DecisionContext {
                seed: engine::seed(&tenant, &enrollment.id, &trigger_id),
                trigger: trigger.clone(),
                customer: customer.clone(),
                enrollment: enrollment.clone(),
                now,
            };
            let limits = self
                .tenant_limits(&tenant)
                .map_err(|e| ("internal", e.to_string()))?;
            let commands = component
                .decide(&context, stats, &limits)
                .await
                .map_err(|f| (f.reason.as_str(), f.message))?;
            let prefix = engine::key_prefix(&tenant, &enrollment, &trigger_id);
            let mut applied =
                engine::apply(enrollment.clone(), &version.spec, commands, &prefix, now)
                    .map_err(|e| ("invalid_commands", e.to_string()))?;
            engine::suppress(&mut applied, customer);
            Ok(applied)
        }
        .instrument(span.clone())
        .await;
        match outcome {
            Ok(mut applied) => {
                if let Err(error) = self.defer_sends(commit, customer, &mut applied, now) {
                    // The policy could not be read: send now rather than lose the decision.
                    warn!(%error, "sending policy unavailable; not deferring");
                }
                absorb(commit, customer, Some(&trigger_id), applied, now)
            }
            Err((reason, message)) => {
                span.in_scope(|| warn!(reason, %message, "trigger failed"));
                self.metrics.failure(reason);
                let failed =
                    engine::fail(enrollment, &version.spec, &trigger, reason, message, now);
                absorb(commit, customer, None, failed, now);
            }
        }
    }
}

/// Turns the engine's effects into store records of the commit.
fn absorb(
    commit: &mut TriggerCommit,
    customer: &Customer,
    trigger_id: Option<&str>,
    applied: Applied,
    now: Millis,
) {
    let Applied {
        enrollment,
        effects,
    } = applied;
    let timer = |t: crate::model::PendingTimer| TimerRecord {
        tenant: commit.tenant.clone(),
        customer: customer.id.clone(),
        journey: enrollment.journey.clone(),
        run: enrollment.run,
        name: t.name,
        due: t.due,
    };
    let set: Vec<_> = effects.timers_set.into_iter().map(timer).collect();
    let cancelled: Vec<_> = effects.timers_cancelled.into_iter().map(timer).collect();
    commit.timers_set.extend(set);
    commit.timers_cancelled.extend(cancelled);
    let wall = system_now();
    for draft in effects.sends {
        commit.counters.push((
            enrollment.journey.clone(),
            draft.send.channel.clone(),
            if draft.suppressed {
                Counter::Suppressed
            } else {
                Counter::Sent
            },
        ));
        commit.outbox.push(Message {
            id: draft.id,
            tenant: commit.tenant.clone(),
            customer: customer.id.clone(),
            journey: enrollment.journey.clone(),
            version: enrollment.version,
            enrollment: enrollment.id.clone(),
            run: enrollment.run,
            channel: draft.send.channel,
            template: draft.send.template,
            payload: draft.send.payload,
            status: if draft.suppressed {
                MessageStatus::Suppressed
            } else if draft.release_at.is_some() {
                MessageStatus::Held
            } else {
                MessageStatus::Pending
            },
            release_at: draft.release_at,
            attempts: 0,
            next_attempt_at: wall,
            last_error: None,
            provider_id: None,
            created_at: now,
            delivered_at: None,
        });
    }
    for (i, handoff) in effects.handoffs.into_iter().enumerate() {
        commit.tasks.push(Task {
            id: engine::task_id(&enrollment.id, trigger_id.unwrap_or("host"), i),
            tenant: commit.tenant.clone(),
            customer: customer.id.clone(),
            journey: enrollment.journey.clone(),
            enrollment: enrollment.id.clone(),
            queue: handoff.queue,
            reason: handoff.reason,
            priority: handoff.priority,
            status: TaskStatus::Open,
            created_at: now,
            assignee: None,
            claimed_at: None,
            resolved_at: None,
            resolution: None,
        });
    }
    commit.enrollments.push(enrollment);
}
