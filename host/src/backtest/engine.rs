//! The isolated engine: the host's own trigger path on a scratch store and a manual clock.
//!
//! It is a real [`Host`] — the same worker code (`worker::drain` → `process_batch`), the same
//! store transactions, the same sandbox limits and sending policy — built over a scratch store
//! holding a copy of one tenant's setup (`Store::copy_setup_into`) and a manual clock that
//! only this engine moves. What differs from a live host is only what runs *around* the
//! workers: no scheduler loop (the engine fires due timers and releases held messages itself,
//! each at its own due time), no delivery loop (every due message is *taken as delivered* at
//! the current journey time, recorded through `engine::delivery::attempt` and
//! `Store::record_attempts` exactly as a successful adapter call is, without calling any
//! channel), and no API. So nothing reaches a provider, and nothing is written to the live
//! store: the engine never holds its handle.

use crate::clock::{system_now, Clock};
use crate::engine::delivery::{attempt, AttemptResult};
use crate::host::{Host, HostConfig};
use crate::model::Millis;
use crate::registry::Registry;
use crate::store::outbox::AttemptRecord;
use crate::store::{Migration, MigrationOutcome, Pending, QueuedTrigger, Store, StoreError};
use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Included};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Due messages taken as delivered per store write.
const DELIVERY_BATCH: usize = 1024;

/// How the engine's clock moves between recorded events.
#[derive(Debug, Clone)]
pub enum ClockMoves {
    /// As a system clock does: through every due time, so each timer fires at its due time.
    Continuous,
    /// As the live manual clock did: only to these times (where it was started or advanced
    /// to) and to the recorded events' times; a timer fires at the first of them at or after
    /// its due time, as the live scheduler fired it.
    Stops(BTreeSet<Millis>),
}

/// One replay's engine.
pub struct IsolatedEngine {
    host: Arc<Host>,
    tenant: String,
    dedup_window: Option<Millis>,
    moves: ClockMoves,
}

impl IsolatedEngine {
    /// An engine for `tenant` whose clock starts at `start`, with a copy of the tenant's setup
    /// from `live` (which is only read), its components run in the sandbox of `compiled` (a
    /// backtest's own, so its counters are not the live host's), and loaded once for all the
    /// engines that share it ([`Registry::sharing_compiled`]). `config` is the live host's:
    /// retries, breakers, dedup window. Once `stop` is cancelled the engine does no more
    /// work: its calls return at the next batch or clock instant, leaving the replay
    /// unfinished (the caller sees the token).
    pub fn new(
        live: &Store,
        compiled: &Registry,
        config: &HostConfig,
        tenant: &str,
        start: Millis,
        moves: ClockMoves,
        stop: CancellationToken,
    ) -> Result<IsolatedEngine, StoreError> {
        let scratch = Store::open_scratch()?;
        live.copy_setup_into(&scratch, tenant)?;
        let registry = compiled.sharing_compiled(scratch.clone());
        Ok(IsolatedEngine::over(
            scratch, registry, config, tenant, start, moves, stop,
        ))
    }

    /// A fresh, empty scratch store for [`IsolatedEngine::over`] (`waymark simulate` fills it
    /// itself rather than copying a live tenant's setup).
    pub fn scratch_store() -> Result<Store, StoreError> {
        Store::open_scratch()
    }

    /// An engine over `scratch`, which already holds the tenant's setup, its components
    /// loaded by `registry` (over `scratch` too).
    pub fn over(
        scratch: Store,
        registry: Registry,
        config: &HostConfig,
        tenant: &str,
        start: Millis,
        moves: ClockMoves,
        stop: CancellationToken,
    ) -> IsolatedEngine {
        let config = HostConfig {
            shards: 1,
            ..config.clone()
        };
        let dedup_window = config.dedup_window_ms();
        let mut host = Host::new(scratch, registry, Clock::manual(start), config);
        // The workers' own check (`process_batch` stops between triggers on shutdown) is how
        // a stopped replay stops inside a drain.
        host.shutdown = stop;
        IsolatedEngine {
            host: Arc::new(host),
            tenant: tenant.to_string(),
            dedup_window,
            moves,
        }
    }

    /// The scratch store: where the replay's customers, enrollments and messages are.
    pub fn store(&self) -> &Store {
        &self.host.store
    }

    /// Adds a candidate sent as bytes (issue 13) to the scratch store as `journey`'s next
    /// version (a draft: [`IsolatedEngine::only`] makes it live); returns its number there.
    /// Its compiled code is the one validated (same sandbox), and is kept nowhere on disk.
    pub async fn add_unstored(
        &self,
        journey: &str,
        candidate: &super::candidate::Unstored,
    ) -> Result<u32, StoreError> {
        let store = &self.host.store;
        let version = store
            .add_journey_version(
                &self.tenant,
                journey,
                &candidate.digest,
                &candidate.bytes,
                &candidate.spec,
                crate::model::rollout::Stage::Draft,
                self.now(),
            )
            .await?
            .version;
        self.host
            .registry
            .insert_journey_unkept(&candidate.digest, candidate.component.clone());
        Ok(version)
    }

    /// Makes `version` the only version of `journey` new entrants run, from now on.
    pub fn only(&self, journey: &str, version: u32) -> Result<(), StoreError> {
        let store = &self.host.store;
        if let Some(rollout) = store.journey_rollout(&self.tenant, journey)? {
            let only = crate::model::rollout::Rollout {
                live: Some(version),
                candidate: None,
                ..rollout
            };
            store.set_rollout(&self.tenant, journey, &only)?;
        }
        // The worker's catalog keeps the live version per tenant.
        self.host.catalog.forget_live(&self.tenant);
        Ok(())
    }

    /// Rolls `to` out at journey time `at` (issue 13, a backtest's `candidate.migrate`): from
    /// then on it is the only version new entrants run, and every running enrollment on
    /// version `from` moves to it through the host's own migration path (a `migrate` trigger
    /// each, `worker/migration.rs`: its `migrate` export adapts it, or refuses it and it stays).
    /// Returns the migration and its outcomes.
    pub async fn migrate_to(
        &self,
        journey: &str,
        from: u32,
        to: u32,
        at: Millis,
    ) -> Result<(Migration, Vec<MigrationOutcome>), StoreError> {
        self.advance_to(at).await?;
        self.only(journey, to)?;
        let store = &self.host.store;
        let id = store.new_migration_id()?;
        let moves: Vec<QueuedTrigger> = store
            .journey_enrollments(&self.tenant, journey)?
            .into_iter()
            .filter(|e| e.is_active() && e.version == from)
            .map(|e| QueuedTrigger {
                tenant: self.tenant.clone(),
                customer: e.customer,
                pending: Pending::Migrate {
                    journey: journey.to_string(),
                    run: e.run,
                    from,
                    to,
                    migration: id.clone(),
                },
            })
            .collect();
        let migration = Migration {
            id,
            journey: journey.to_string(),
            from,
            to,
            requested_at: self.now(),
            queued: moves.len() as u64,
        };
        store.start_migration(&self.tenant, &migration, &moves)?;
        self.settle().await?;
        self.fire_due().await?;
        let outcomes = store.migration_outcomes(&self.tenant, journey, &migration.id)?;
        Ok((migration, outcomes))
    }

    /// The engine's journey time.
    pub fn now(&self) -> Millis {
        self.host.clock.now()
    }

    /// Moves the clock to `at` (never back), firing every timer and releasing every held
    /// message that falls due on the way — at its due time ([`ClockMoves::Continuous`]) or at
    /// the first stop at or after it ([`ClockMoves::Stops`]) — and running what they cause
    /// before the clock moves on.
    pub async fn advance_to(&self, at: Millis) -> Result<(), StoreError> {
        let stops: Vec<Millis> = match &self.moves {
            ClockMoves::Stops(stops) => stops
                .range((Excluded(self.now()), Included(at)))
                .copied()
                .collect(),
            ClockMoves::Continuous => {
                let store = &self.host.store;
                loop {
                    // Audience watches (issue 12) come due like timers.
                    let next = [
                        store.next_timer_due()?,
                        store.next_held_release()?,
                        store.next_audience_due()?,
                    ]
                    .into_iter()
                    .flatten()
                    .min();
                    let Some(due) = next.filter(|due| *due <= at && !self.stopped()) else {
                        break;
                    };
                    self.set_clock(due);
                    self.fire_due().await?;
                }
                Vec::new()
            }
        };
        for stop in stops.into_iter().chain([at]) {
            if self.stopped() {
                break;
            }
            self.set_clock(stop);
            self.fire_due().await?;
        }
        Ok(())
    }

    /// What the scheduler does when the clock arrives somewhere: fires the timers due by now,
    /// then releases the held messages due by now, and runs what that causes, until nothing
    /// more is due (a decision may set a timer already due).
    async fn fire_due(&self) -> Result<(), StoreError> {
        let store = &self.host.store;
        loop {
            if self.stopped() {
                return Ok(());
            }
            let now = self.now();
            let mut moved = 0;
            while store.fire_due_timers(now, 1024)? > 0 {
                moved += 1;
            }
            // Audience triggers (issue 12): due watches, as the scheduler fires them.
            while store.fire_due_audience(now, 1024)? > 0 {
                moved += 1;
            }
            while store.release_held(now, system_now(), 1024)? > 0 {
                moved += 1;
            }
            if moved == 0 {
                return Ok(());
            }
            self.settle().await?;
        }
    }

    /// Feeds one recorded event at journey time `at` (its ingest time) and runs everything it
    /// causes at that time: its triggers, sends taken as delivered, their delivery triggers.
    pub async fn feed(&self, event: &crate::model::Event, at: Millis) -> Result<(), StoreError> {
        self.feed_all(std::slice::from_ref(event), at).await
    }

    /// Feeds recorded events ingested at the same journey time `at`, in order, as live took
    /// them: all queued first, then processed (in batches, each customer's in order), and only
    /// then their sends delivered — live delivers a batch's sends once it is committed.
    pub async fn feed_all(
        &self,
        events: &[crate::model::Event],
        at: Millis,
    ) -> Result<(), StoreError> {
        self.advance_to(at).await?;
        // One transaction for the group, as one ingest request of them would be.
        self.host
            .store
            .append_replayed_all(&self.tenant, events, self.now(), self.dedup_window)?;
        self.settle().await?;
        // A decision may set a timer already due: the live scheduler, woken by it, fires it
        // at once.
        self.fire_due().await
    }

    /// Runs the queue dry and takes every due message as delivered, until neither has work.
    pub async fn settle(&self) -> Result<(), StoreError> {
        loop {
            if self.stopped() {
                return Ok(());
            }
            crate::worker::drain(&self.host, 0).await?;
            let due = self.host.store.due_messages(Millis::MAX, DELIVERY_BATCH)?;
            if due.is_empty() {
                return Ok(());
            }
            let now = self.now();
            let wall = system_now();
            let records: Vec<AttemptRecord> = due
                .into_iter()
                .map(|before| {
                    // Taken as delivered: what a successful `deliver` without a provider id
                    // makes of the message.
                    let result = AttemptResult::Delivered { provider_id: None };
                    let settled = attempt(&before, result, &self.host.config.retry, now, wall);
                    AttemptRecord {
                        before,
                        after: settled.after,
                        report: settled.report,
                        counter: settled.counter,
                    }
                })
                .collect();
            self.host.store.record_attempts(&records)?;
        }
    }

    /// Whether the engine was told to stop ([`IsolatedEngine::new`]'s `stop`).
    pub fn stopped(&self) -> bool {
        self.host.shutdown.is_cancelled()
    }

    fn set_clock(&self, at: Millis) {
        let by = at.saturating_sub(self.now());
        if by > 0 {
            // A manual clock refuses only a move backwards or past the year 9999; recorded
            // times are within it.
            let _ = self.host.clock.advance(by);
        }
    }
}
