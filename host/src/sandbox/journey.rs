//! World `journey`: a tenant's branching logic, called as `describe` and `decide`.
//!
//! The world is a list of capabilities ([`WORLD`]: `log`, `stats` and the deterministic WASI),
//! from which both its linker and its import allow-list are derived. This file holds the
//! world's export bindings, the per-instance store data, and [`JourneyComponent`]: a compiled
//! journey with its own pool of warm instances. Conversions and the checks on a guest's output
//! are in [`super::convert`]; arming and settling a call in [`super::guest`].

use super::bindings::waymark::journey::types;
use super::capability::log::{self, HasLog, LogState};
use super::capability::stats::{self, HasStats, StatsState};
use super::capability::wasi::{self, HasDeterministicWasi, WasiState};
use super::capability::World;
use super::convert::{
    customer_to_wit, decision_from_wit, enrollment_to_wit, spec_from_wit, with_allocation,
    ContextBuffer,
};
use super::engine::Shared;
use super::error::SandboxError;
use super::failure::{GuestFailure, Stage};
use super::guest::{self, GuestState, MemoryCap, Rearmable};
use crate::model;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::component::{InstancePre, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::{WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "waymark:journey/journey",
        exports: { default: async },
        with: {
            "waymark:journey/types": crate::sandbox::bindings::waymark::journey::types,
            "waymark:journey/log": crate::sandbox::bindings::waymark::journey::log,
            "waymark:journey/stats": crate::sandbox::bindings::waymark::journey::stats,
        },
    });
}

/// World `migratable-journey` (contract 0.1.1): only its `migration` export is used, looked up
/// per component ([`MigrationIndices`]), since a journey built for 0.1.0 does not have it.
pub(super) mod migratable {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "waymark:journey/migratable-journey",
        exports: { default: async },
        with: {
            "waymark:journey/types": crate::sandbox::bindings::waymark::journey::types,
            "waymark:journey/log": crate::sandbox::bindings::waymark::journey::log,
            "waymark:journey/stats": crate::sandbox::bindings::waymark::journey::stats,
        },
    });
}

/// World `audience-journey` (contract 0.1.2): only its `audience` export is used, looked up per
/// component ([`AudienceIndices`]), since a journey built for 0.1.0 or 0.1.1 does not have it.
pub(super) mod audienced {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "waymark:journey/audience-journey",
        exports: { default: async },
        with: {
            "waymark:journey/types": crate::sandbox::bindings::waymark::journey::types,
            "waymark:journey/log": crate::sandbox::bindings::waymark::journey::log,
            "waymark:journey/stats": crate::sandbox::bindings::waymark::journey::stats,
            "waymark:journey/migration": super::migratable::exports::waymark::journey::migration,
        },
    });
}

use audienced::exports::waymark::journey::allocation::GuestIndices as AllocationIndices;
use audienced::exports::waymark::journey::audience::GuestIndices as AudienceIndices;
use migratable::exports::waymark::journey::migration::{
    GuestIndices as MigrationIndices, MigrationContext,
};

/// What a journey may import: its vocabulary, `log`, `stats`, and the WASI that Rust's std needs
/// for printing, clocks and randomness (deterministic). Never the filesystem, sockets or HTTP.
pub(super) const WORLD: World<JourneyState> = World {
    name: "journey",
    vocabulary: &["waymark:journey/types@"],
    capabilities: &[
        log::capability(),
        stats::capability(),
        wasi::deterministic_capability(),
    ],
};

/// The store data of a journey instance, re-armed before every call.
pub(super) struct JourneyState {
    table: ResourceTable,
    wasi: WasiState,
    memory: MemoryCap,
    log: LogState,
    stats: StatsState,
    /// Epoch ticks left before the call's deadline.
    ticks_left: u64,
}

impl JourneyState {
    fn new(now: model::Millis, seed: u64, stats: model::StatsSnapshot, max_memory: u64) -> Self {
        JourneyState {
            table: ResourceTable::new(),
            wasi: WasiState::deterministic(now, seed),
            memory: MemoryCap::new(max_memory),
            log: LogState::new("journey"),
            stats: StatsState::new(stats),
            ticks_left: 0,
        }
    }

    /// Prepares a reused instance's state for the next call: everything per call is new (the
    /// WASI context stays, reading the new `now` and `seed`); only the resource table (whose
    /// stream handles the guest caches) carries over.
    fn rearm(
        &mut self,
        now: model::Millis,
        seed: u64,
        stats: model::StatsSnapshot,
        max_memory: u64,
    ) {
        self.wasi.rearm(now, seed);
        self.memory.reset(max_memory);
        self.log = LogState::new("journey");
        self.stats = StatsState::new(stats);
    }
}

impl WasiView for JourneyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.table,
        }
    }
}

impl Rearmable for JourneyState {
    fn epoch_ticks_left(&mut self) -> &mut u64 {
        &mut self.ticks_left
    }
}

impl HasDeterministicWasi for JourneyState {
    fn wasi_state(&mut self) -> &mut WasiState {
        &mut self.wasi
    }
}

impl GuestState for JourneyState {
    fn memory_cap(&mut self) -> &mut MemoryCap {
        &mut self.memory
    }

    fn memory_hit(&self) -> bool {
        self.memory.was_hit()
    }

    fn wasi(&self) -> &WasiState {
        &self.wasi
    }

    fn log(&self) -> &LogState {
        &self.log
    }
}

impl HasLog for JourneyState {
    fn log_state(&mut self) -> &mut LogState {
        &mut self.log
    }
}

impl HasStats for JourneyState {
    fn stats_state(&mut self) -> &mut StatsState {
        &mut self.stats
    }
}

/// Calls after which a warm instance is retired anyway, so that whatever a guest leaks
/// (memory it never frees, handles it never drops) is bounded.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

/// A journey instance with what its calls reuse. Boxed, so that taking one from the idle
/// pool and putting it back moves a pointer.
struct Instance {
    store: Store<JourneyState>,
    /// `None` until the first call instantiates it.
    journey: Option<Bound>,
    /// The last call's context, whose buffers the next call's context reuses.
    context: ContextBuffer,
    calls: u32,
}

/// `decide`'s signature as wasmtime calls it.
type Decide<'a> =
    wasmtime::component::TypedFunc<(&'a types::Context,), (Result<Vec<types::Command>, String>,)>;

/// An instantiated journey: its `decide`, type-checked once when it is instantiated, and the
/// instance, from which every other export (`describe`, and the later contracts' `migration`,
/// `audience` and `allocation`) is loaded when a call needs it. Those calls are rare (an
/// upload, a migration), and loading an export type-checks its whole signature: loading all
/// of them with every fresh instance was a fifth of what instantiating costs.
struct Bound {
    decide: wasmtime::component::Func,
    instance: wasmtime::component::Instance,
}

/// A validated, compiled journey. Cheap to clone (clones share their idle instances).
///
/// Calls reuse an idle instance when there is one: the context carries all state, so an
/// instance holds nothing a customer needs, and every call gets fresh clocks, randomness,
/// memory cap, deadline and hostcall fuel. An instance that trapped, ran out of time or memory,
/// or was cancelled is dropped, never reused. Guests must therefore not keep state in globals
/// between calls (the SDK's types do not; `std::collections::HashMap`'s per-process random keys
/// are the classic way to make iteration order depend on the instance's history).
#[derive(Clone)]
pub struct JourneyComponent {
    pre: InstancePre<JourneyState>,
    /// Where the world's exports are, looked up by name once.
    indices: Arc<bindings::JourneyIndices>,
    /// Where `decide` is.
    decide: wasmtime::component::ComponentExportIndex,
    /// Where the component's `migration` export is; `None` if it has none (built for 0.1.0).
    migration: Option<Arc<MigrationIndices>>,
    /// Where the component's `audience` export is; `None` if it has none (built before 0.1.2).
    audience: Option<Arc<AudienceIndices>>,
    /// Where its `allocation` export is (issue 13); `None` if it has none.
    allocation: Option<Arc<AllocationIndices>>,
    /// Whether the component imports `stats` (issue 10): one that does not can never read the
    /// snapshot handed to `decide`, so its caller need not compute one.
    reads_stats: bool,
    shared: Arc<Shared>,
    idle: Arc<IdlePool>,
}

/// A journey's idle instances; gives their slots back to the overall count when dropped.
struct IdlePool {
    #[allow(
        clippy::vec_box,
        reason = "an instance moves in and out of the pool on every call: a pointer, not ~0.5 KiB"
    )]
    warm: Mutex<Vec<Box<Instance>>>,
    shared: Arc<Shared>,
}

impl IdlePool {
    fn new(shared: &Arc<Shared>) -> Arc<IdlePool> {
        Arc::new(IdlePool {
            warm: Mutex::default(),
            shared: shared.clone(),
        })
    }
}

impl Drop for IdlePool {
    fn drop(&mut self) {
        let n = lock(&self.warm).len();
        self.shared.idle_total.fetch_sub(n, Ordering::Relaxed);
    }
}

impl JourneyComponent {
    /// The compiled component, for the compiled-code cache.
    pub fn component(&self) -> &wasmtime::component::Component {
        self.pre.component()
    }

    pub(super) fn new(
        pre: InstancePre<JourneyState>,
        reads_stats: bool,
        shared: Arc<Shared>,
    ) -> Result<JourneyComponent, SandboxError> {
        let migration = MigrationIndices::new(&pre).ok().map(Arc::new);
        let audience = AudienceIndices::new(&pre).ok().map(Arc::new);
        let allocation = AllocationIndices::new(&pre).ok().map(Arc::new);
        let wrong_world = |e: wasmtime::Error| {
            SandboxError::WrongWorld(format!(
                "not a journey component (it must export `describe` and `decide`): {e:#}"
            ))
        };
        let indices = Arc::new(bindings::JourneyIndices::new(&pre).map_err(wrong_world)?);
        // Checked by the indices above: the world exports `decide`.
        let decide = pre
            .component()
            .get_export_index(None, "decide")
            .ok_or_else(|| wrong_world(wasmtime::format_err!("no export `decide`")))?;
        Ok(JourneyComponent {
            idle: IdlePool::new(&shared),
            pre,
            indices,
            decide,
            migration,
            audience,
            allocation,
            reads_stats,
            shared,
        })
    }

    /// The same compiled journey with a pool of warm instances of its own: what the registry
    /// hands each tenant, so that instances (and whatever a guest keeps in its globals) are
    /// never shared between tenants.
    pub fn with_own_instances(&self) -> JourneyComponent {
        JourneyComponent {
            pre: self.pre.clone(),
            indices: self.indices.clone(),
            decide: self.decide,
            migration: self.migration.clone(),
            audience: self.audience.clone(),
            allocation: self.allocation.clone(),
            reads_stats: self.reads_stats,
            shared: self.shared.clone(),
            idle: IdlePool::new(&self.shared),
        }
    }

    /// Whether the component imports `stats`. One that does not cannot observe the snapshot
    /// passed to [`decide`](Self::decide): an empty one decides exactly the same.
    pub fn reads_stats(&self) -> bool {
        self.reads_stats
    }

    /// Asks the journey to declare itself, and checks the declaration. The instance it ran in
    /// (an idle one if there was one) is not kept afterwards: `describe` runs once per upload.
    pub async fn describe(&self, limits: &model::Limits) -> Result<model::Spec, GuestFailure> {
        // `describe` is as deterministic as `decide`: the epoch at zero, seed zero. A component
        // with the `audience` export (0.1.2) declares the rest of its spec in the same instance.
        let (spec, audience, allocation) = self
            .run(
                0,
                0,
                model::StatsSnapshot::default(),
                limits,
                false,
                async |bound, store, _| {
                    let journey = self.indices.load(&mut *store, &bound.instance)?;
                    let spec = journey.call_describe(&mut *store).await?;
                    let audience = match &self.audience {
                        Some(indices) => {
                            let audience = indices.load(&mut *store, &bound.instance)?;
                            Some(audience.call_describe_audience(&mut *store).await?)
                        }
                        None => None,
                    };
                    let allocation = match &self.allocation {
                        Some(indices) => {
                            let allocation = indices.load(&mut *store, &bound.instance)?;
                            allocation.call_describe_allocation(&mut *store).await?
                        }
                        None => Vec::new(),
                    };
                    Ok((spec, audience, allocation))
                },
            )
            .await?;
        with_allocation(spec_from_wit(spec, audience)?, allocation)
    }

    /// Asks the journey what to do about `ctx.trigger`; `stats` is what the `stats` import
    /// returns during this call (per-channel counts alone convert into a snapshot without arm
    /// statistics). A [`model::Trigger::Migrated`] goes to the component's `migrate` export
    /// instead ([`migrate`](Self::migrate)).
    pub async fn decide(
        &self,
        ctx: &model::DecisionContext,
        stats: impl Into<model::StatsSnapshot>,
        limits: &model::Limits,
    ) -> Result<Vec<model::Command>, GuestFailure> {
        let stats = stats.into();
        if let model::Trigger::Migrated { from, .. } = &ctx.trigger {
            return self.migrate(ctx, *from, stats, limits).await;
        }
        let decision = self
            .run(
                ctx.now,
                ctx.seed,
                stats,
                limits,
                true,
                async |bound, store, context| {
                    // SAFETY: `bound.decide` was type-checked as exactly this signature when
                    // the instance was bound (`instantiate`), as wasmtime's generated bindings
                    // do before calling the same way.
                    let decide: Decide = unsafe { Decide::new_unchecked(bound.decide) };
                    let (decision,) = decide.call_async(&mut *store, (context.fill(ctx),)).await?;
                    Ok(decision)
                },
            )
            .await?;
        decision_from_wit(decision, limits)
    }

    /// Whether the component exports `migration` (contract 0.1.1), so enrollments may move to it.
    pub fn migrates(&self) -> bool {
        self.migration.is_some()
    }

    /// Asks the journey to adapt `ctx.enrollment`, moving to it from version `from`. Refused
    /// (a `guest_error`) by a component without the `migration` export: it cannot say what an
    /// enrollment of another version means to it.
    async fn migrate(
        &self,
        ctx: &model::DecisionContext,
        from: u32,
        stats: model::StatsSnapshot,
        limits: &model::Limits,
    ) -> Result<Vec<model::Command>, GuestFailure> {
        if self.migration.is_none() {
            return Err(GuestFailure::new(
                model::FailureReason::GuestError,
                "this version does not export `migration` (built for contract 0.1.0): \
                 it cannot adapt enrollments moved to it",
            ));
        }
        let context = MigrationContext {
            from_version: from,
            customer: customer_to_wit(&ctx.customer),
            enrollment: enrollment_to_wit(&ctx.enrollment),
            now: ctx.now,
            seed: ctx.seed,
        };
        let decision = self
            .run(
                ctx.now,
                ctx.seed,
                stats,
                limits,
                true,
                async |bound, store, _| match &self.migration {
                    Some(indices) => {
                        let migration = indices.load(&mut *store, &bound.instance)?;
                        migration.call_migrate(store, &context).await
                    }
                    // Checked above.
                    None => Ok(Err("the `migration` export is not bound".into())),
                },
            )
            .await?;
        decision_from_wit(decision, limits)
    }

    /// Idle instances right now (for tests and metrics).
    pub fn idle_instances(&self) -> usize {
        lock(&self.idle.warm).len()
    }

    /// A new instance with its exports bound.
    async fn instantiate(&self, store: &mut Store<JourneyState>) -> wasmtime::Result<Bound> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let decide = instance
            .get_typed_func::<(&types::Context,), (Result<Vec<types::Command>, String>,)>(
                &mut *store,
                &self.decide,
            )?
            .func()
            .to_owned();
        Ok(Bound { decide, instance })
    }

    /// Runs `call` on an idle instance, or a fresh one, under the decide deadline: both the
    /// epoch's (a spinning guest) and the wall clock's (a guest blocked in the host).
    async fn run<R>(
        &self,
        now: model::Millis,
        seed: u64,
        stats: model::StatsSnapshot,
        limits: &model::Limits,
        pooled: bool,
        call: impl AsyncFnOnce(
            &Bound,
            &mut Store<JourneyState>,
            &mut ContextBuffer,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, GuestFailure> {
        let deadline = limits.decide_deadline();
        let idle = lock(&self.idle.warm).pop();
        let mut instance = match idle {
            Some(mut instance) => {
                self.shared.idle_total.fetch_sub(1, Ordering::Relaxed);
                instance
                    .store
                    .data_mut()
                    .rearm(now, seed, stats, limits.max_memory_bytes);
                guest::rearm_store(&mut instance.store, deadline, limits.max_hostcall_bytes);
                self.shared.counters.reused.inc();
                instance
            }
            None => {
                let state = JourneyState::new(now, seed, stats, limits.max_memory_bytes);
                let store = guest::new_rearmable_store(
                    &self.shared.engine,
                    state,
                    deadline,
                    limits.max_hostcall_bytes,
                );
                self.shared.counters.instantiated.inc();
                Box::new(Instance {
                    store,
                    journey: None,
                    context: ContextBuffer::default(),
                    calls: 0,
                })
            }
        };
        let Instance {
            store,
            journey,
            context,
            ..
        } = &mut *instance;
        let outcome = tokio::time::timeout(deadline, async {
            let journey = match journey {
                Some(journey) => journey,
                None => journey.insert(
                    self.instantiate(store)
                        .await
                        .map_err(|e| (Stage::Instantiate, e))?,
                ),
            };
            call(journey, store, context)
                .await
                .map_err(|e| (Stage::Call, e))
        })
        .await;
        let result = guest::settle(&instance.store, "journey", deadline, outcome);
        // Only an instance that finished cleanly goes back: after a trap its state is
        // undefined, and one that hit a limit is likely to hit it again.
        if result.is_err() {
            self.shared.counters.recycled.inc();
            return result;
        }
        instance.calls += 1;
        let mut idle = lock(&self.idle.warm);
        // Idle instances hold slots of the instance pool: bounded per journey and overall.
        let room = self
            .shared
            .idle_total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.shared.config.max_idle_instances).then_some(n + 1)
            })
            .is_ok();
        if room {
            if pooled
                && !instance.store.data().memory_hit()
                && instance.calls < MAX_CALLS_PER_INSTANCE
                && idle.len() < self.shared.config.warm_instances
            {
                idle.push(instance);
            } else {
                self.shared.idle_total.fetch_sub(1, Ordering::Relaxed);
            }
        }
        result
    }
}

/// A poisoned pool of idle instances is still a pool: recover it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
