//! The shared handles of a running host: what the API, the shard workers, the scheduler and the
//! delivery loop all use — the store, compiled components, the clock, metrics, tenant settings,
//! configuration, the journey versions' circuit breakers and the tenants' loop-budget windows
//! (issue 15), and the wake-ups between them. It holds no journey rule (that is `engine`)
//! and no loop (those are `worker`, `scheduler` and `delivery`).

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::delivery::DeliveryBudgets;
use crate::engine::breaker::{Admission, Breaker, BreakerPolicy, BreakerState};
use crate::engine::delivery::RetryPolicy;
use crate::metrics::Metrics;
use crate::model::{Limits, Millis, SendingPolicy};
use crate::registry::Registry;
use crate::store::{Store, StoreError};
use crate::template::{Compiled, TemplateCache, TemplateError};
use crate::tenants::{TenantSettings, Tenants};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Event ids are remembered for a week by default: longer than any client's retries.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Tunables of trigger processing and delivery.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Number of shard workers; customers hash onto them.
    pub shards: u16,
    /// How failed deliveries are retried before they become dead letters.
    pub retry: RetryPolicy,
    /// How long an event id is remembered (journey time): a retry within it is reported as a
    /// duplicate, one after it is a new event. `None` remembers ids for ever.
    pub dedup_window: Option<Duration>,
    // Isolation (issue 15)
    /// How many deliveries one tenant and one of its channels may have in flight at once.
    pub delivery_budgets: DeliveryBudgets,
    /// When a journey version's circuit breaker opens, and for how long.
    pub breaker: BreakerPolicy,
    // Unsubscribe (issue 11)
    /// The base URL customers reach this host at (`--public-url`), without a trailing slash:
    /// links the host puts in messages (`{public_url}/u/{token}`) start with it. `None`: no
    /// unsubscribe links are made.
    pub public_url: Option<String>,
    // Backtests (issue 13)
    /// How much memory one backtest's scratch stores may take together, in bytes, with the
    /// recorded events it reads once for them (a quarter at most; `--backtest-memory-mib`): a
    /// replay that would hold more fails, saying so, rather than run the server out of memory.
    /// `None`: no limit.
    pub backtest_memory: Option<u64>,
    /// How many parts of one replay of a backtest run at once when its customers' replays
    /// are independent (`--backtest-parts`): each part runs on its own scratch store. `None`:
    /// one per core.
    pub backtest_parts: Option<u64>,
    /// About how many recorded events one part of a split replay takes: a replay of more is
    /// split into more parts than run at once, each on scratch trees small enough to stay in
    /// the caches (docs/BENCHMARKS.md, "Small parts").
    pub backtest_part_events: u64,
}

impl HostConfig {
    /// [`HostConfig::dedup_window`] in milliseconds.
    pub fn dedup_window_ms(&self) -> Option<Millis> {
        self.dedup_window
            .map(|w| Millis::try_from(w.as_millis()).unwrap_or(Millis::MAX))
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            shards: 4,
            retry: RetryPolicy {
                max_attempts: 8,
                base: Duration::from_secs(1),
                cap: Duration::from_secs(3600),
            },
            dedup_window: Some(DEFAULT_DEDUP_WINDOW),
            delivery_budgets: DeliveryBudgets::default(),
            breaker: BreakerPolicy::default(),
            public_url: None,
            backtest_memory: None,
            backtest_parts: None,
            backtest_part_events: crate::backtest::parts::PART_EVENTS,
        }
    }
}

// Templates (issue 11)
/// Why a template version could not be had for rendering.
#[derive(Debug, thiserror::Error)]
pub enum TemplateLoadError {
    /// Reading the store failed: trying again may succeed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such version is stored.
    #[error("no such template version")]
    Missing,
    /// The stored version does not compile (it did at upload: a newer engine refuses it).
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// Shared state of a running host.
pub struct Host {
    pub store: Store,
    pub registry: Registry,
    /// Journey versions, memoised.
    pub catalog: Catalog,
    pub clock: Clock,
    pub metrics: Metrics,
    pub config: HostConfig,
    pub shutdown: CancellationToken,
    /// Journey versions' circuit breakers.
    pub breakers: Breakers,
    /// Each tenant's loop-budget window (`engine::loops::charge_tenant`), in memory.
    pub tenant_loops: Mutex<HashMap<String, Option<crate::model::LoopWindow>>>,
    tenants: Tenants,
    // Templates (issue 11)
    /// Compiled template versions (`template::cache`).
    pub templates: TemplateCache,
    // Backtests (issue 13)
    /// Backtest jobs (`backtest::jobs`), kept in the store.
    pub backtests: crate::backtest::Jobs,
    /// The `stats` import's arm statistics per journey version, for the current period
    /// (`report::arms`, issue 13).
    pub arm_stats: crate::report::arms::ArmStatsCache,
    /// Which channel registrations receive webhooks, so only their messages are indexed for
    /// feedback (`feedback::receivers`, issue 10).
    pub feedback_receivers: crate::feedback::receivers::Receivers,
    shard_wakers: Vec<Notify>,
    /// A timer was set: the scheduler may need to wake earlier.
    timers_changed: Notify,
    /// A message entered the outbox: the delivery loop has work.
    outbox_changed: Notify,
    /// Cluster mode (issue 16): the lease guard of the partition this host runs, checked
    /// before every delivery attempt ([`Host::may_act`]); `None` on a single node.
    fence: Option<crate::cluster::lease::Guard>,
}

impl Host {
    pub fn new(store: Store, registry: Registry, clock: Clock, config: HostConfig) -> Host {
        let metrics = Metrics::new(registry.sandbox().counters());
        let tenants = Tenants::new(registry.sandbox().config().defaults);
        let backtests = crate::backtest::Jobs::new(store.clone()); // Backtests (issue 13)
        Host {
            shard_wakers: (0..store.shards()).map(|_| Notify::new()).collect(),
            store,
            registry,
            catalog: Catalog::default(),
            clock,
            metrics,
            breakers: Breakers::new(config.breaker),
            tenant_loops: Mutex::default(),
            config,
            shutdown: CancellationToken::new(),
            tenants,
            templates: TemplateCache::default(),
            backtests,
            arm_stats: Default::default(),
            feedback_receivers: Default::default(),
            timers_changed: Notify::new(),
            outbox_changed: Notify::new(),
            fence: None,
        }
    }

    /// Cluster mode (issue 16): this host runs `partition`, held under `guard`; once the guard
    /// has run out or been fenced, it attempts no delivery ([`Host::may_act`]). Its metrics
    /// carry the partition as a label.
    pub fn fenced_by(self, partition: u16, guard: crate::cluster::lease::Guard) -> Host {
        let metrics = Metrics::labelled(self.registry.sandbox().counters(), Some(partition));
        Host {
            fence: Some(guard),
            metrics,
            ..self
        }
    }

    /// Whether this host may still act for what it runs: always on a single node; in a
    /// cluster, while the partition's lease guard allows it. A node paused past its lease and
    /// resumed sends nothing more: the partition's new owner sends what is due, with the same
    /// idempotency keys.
    pub fn may_act(&self) -> bool {
        self.fence.as_ref().is_none_or(|g| g.may_act())
    }

    /// [`Host::may_act`] for the sandbox, which asks it before each outgoing request of a
    /// delivery; `None` on a single node.
    pub fn may_send(&self) -> Option<crate::sandbox::MaySend> {
        let guard = self.fence.clone()?;
        Some(std::sync::Arc::new(move || guard.may_act()))
    }

    /// The sandbox limits `tenant`'s components run under.
    pub fn tenant_limits(&self, tenant: &str) -> Result<Limits, StoreError> {
        Ok(self.tenants.settings(&self.store, tenant)?.limits)
    }

    /// The tenant's sending policy.
    pub fn tenant_policy(&self, tenant: &str) -> Result<SendingPolicy, StoreError> {
        Ok(self.tenants.settings(&self.store, tenant)?.policy.clone())
    }

    /// The tenant's limits and sending policy together, shared (a trigger reads both).
    pub fn tenant_settings(&self, tenant: &str) -> Result<Arc<TenantSettings>, StoreError> {
        self.tenants.settings(&self.store, tenant)
    }

    // Templates (issue 11)
    /// Version `version` of `tenant`'s template `name`, compiled once and cached (deleted
    /// templates' versions too: a message pinned to one still renders it).
    pub fn compiled_template(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Arc<Compiled>, TemplateLoadError> {
        self.templates.get_or_compile(tenant, name, version, || {
            self.store
                .template_version(tenant, name, version)?
                .map(|v| v.source)
                .ok_or(TemplateLoadError::Missing)
        })
    }

    /// Forgets the cached settings of `tenant` after its limits or policy changed.
    pub fn forget_tenant(&self, tenant: &str) {
        self.tenants.forget(tenant);
    }

    /// Forgets what is cached of the tenant-global records `touched` (a cluster partition's
    /// mirror wrote them): live journeys and settings.
    pub fn forget_global(&self, touched: &crate::cluster::mirror::Touched) {
        if touched.everything {
            self.catalog.forget_all_live();
            self.tenants.forget_all();
        }
        for tenant in &touched.tenants {
            self.catalog.forget_live(tenant);
            self.tenants.forget(tenant);
        }
    }

    /// Wakes the worker of the shard that owns this customer.
    pub fn wake_customer(&self, tenant: &str, customer: &str) {
        let shard = crate::store::shard_of(tenant, customer, self.store.shards());
        self.shard_wakers[shard as usize].notify_one();
    }

    /// Wakes the worker of shard `shard`.
    pub fn wake_shard(&self, shard: u16) {
        self.shard_wakers[usize::from(shard)].notify_one();
    }

    /// Wakes every shard worker (timers fired for customers of any shard).
    pub fn wake_all_shards(&self) {
        for w in &self.shard_wakers {
            w.notify_one();
        }
    }

    /// Resolves when shard `shard` is woken.
    pub fn shard_woken(&self, shard: u16) -> tokio::sync::futures::Notified<'_> {
        self.shard_wakers[shard as usize].notified()
    }

    /// Tells who a batch of triggers gave work to, once it is durable: the shards it forwarded
    /// triggers to, the scheduler (`timers` set) and the delivery loop (`sends` decided).
    pub(crate) fn batch_committed(&self, forwarded: &HashSet<u16>, timers: bool, sends: bool) {
        for to in forwarded {
            self.wake_shard(*to);
        }
        if timers {
            self.timers_changed();
        }
        if sends {
            self.outbox_changed();
        }
    }

    /// Tells the scheduler a timer was set.
    pub fn timers_changed(&self) {
        self.timers_changed.notify_one();
    }

    /// Resolves when a timer was set since the last wake.
    pub fn timer_set(&self) -> tokio::sync::futures::Notified<'_> {
        self.timers_changed.notified()
    }

    /// Tells the delivery loop a message is ready.
    pub fn outbox_changed(&self) {
        self.outbox_changed.notify_one();
    }

    /// Resolves when a message became ready since the last wake.
    pub fn message_ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.outbox_changed.notified()
    }
}

/// The circuit breakers of every journey version that failed lately, keyed by tenant,
/// journey and version (`engine::breaker` holds the rules). Only versions with a failure in
/// their window have an entry: a closed breaker whose window holds no failure is forgotten.
/// In memory: a restart closes every breaker, and the deferred triggers, still queued, run.
pub struct Breakers {
    policy: BreakerPolicy,
    map: Mutex<HashMap<(String, String, u32), Breaker>>,
}

/// One journey version's breaker as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerView {
    pub version: u32,
    pub state: BreakerState,
    pub opened: u64,
    pub deferred: u64,
}

impl Breakers {
    fn new(policy: BreakerPolicy) -> Breakers {
        Breakers {
            policy,
            map: Mutex::default(),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<(String, String, u32), Breaker>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a trigger of `tenant`'s `journey` at `version` may run at wall-clock `now`.
    pub fn admit(
        &self,
        metrics: &Metrics,
        tenant: &str,
        journey: &str,
        version: u32,
        now: Millis,
    ) -> Admission {
        let mut map = self.map();
        if map.is_empty() {
            return Admission::Run;
        }
        let key = (tenant.to_string(), journey.to_string(), version);
        let admission = map.get_mut(&key).map_or(Admission::Run, |b| b.admit(now));
        if let Admission::Defer { .. } = admission {
            metrics.triggers_deferred.inc();
        }
        admission
    }

    /// Records the outcome of a decision of that version (`failed`: a failure that counts
    /// against it, `engine::breaker::counts_against`).
    pub fn record(
        &self,
        metrics: &Metrics,
        tenant: &str,
        journey: &str,
        version: u32,
        failed: bool,
        now: Millis,
    ) {
        let mut map = self.map();
        if !failed && map.is_empty() {
            return;
        }
        let key = (tenant.to_string(), journey.to_string(), version);
        if !failed && !map.contains_key(&key) {
            return;
        }
        let breaker = map
            .entry(key.clone())
            .or_insert_with(|| Breaker::new(&self.policy));
        let opened = breaker.opened;
        breaker.record(&self.policy, failed, now);
        if breaker.opened > opened {
            metrics.breakers_opened.inc();
        }
        if breaker.is_idle() {
            map.remove(&key);
        }
        let open = map
            .values()
            .filter(|b| b.state() != BreakerState::Closed)
            .count();
        metrics.breakers_open.set(open as i64);
    }

    /// The breakers of `tenant`'s `journey` that have an entry, by version.
    pub fn of_journey(&self, tenant: &str, journey: &str) -> Vec<BreakerView> {
        let mut views: Vec<BreakerView> = self
            .map()
            .iter()
            .filter(|((t, j, _), _)| t == tenant && j == journey)
            .map(|((_, _, version), b)| BreakerView {
                version: *version,
                state: b.state(),
                opened: b.opened,
                deferred: b.deferred,
            })
            .collect();
        views.sort_by_key(|v| v.version);
        views
    }
}
