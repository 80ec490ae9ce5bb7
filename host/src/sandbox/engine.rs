//! The wasmtime engine every component runs on, and what keeps its deadlines ticking.
//!
//! [`engine_config`] turns a [`SandboxConfig`] into the engine's configuration (component model,
//! pooling allocator, epoch interruption, canonical NaNs, no GC); [`EpochTicker`] advances the
//! epoch that deadlines count in; [`deadline_ticks`] converts a deadline into those ticks.
//! [`Shared`] is what every compiled component keeps alive: the engine, its ticker, the
//! configuration and the counters, so that a component outliving its [`super::Sandbox`] still
//! has working deadlines.

use super::capability::http::ConnectionPool;
use super::config::SandboxConfig;
use super::error::SandboxError;
use prometheus_client::metrics::counter::Counter;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

/// One epoch tick. Deadlines are rounded up to whole ticks, so this is their resolution.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Counts of the sandbox's work, exported on `/metrics`. Cheap to clone (shared counters).
#[derive(Clone, Debug, Default)]
pub struct SandboxCounters {
    /// Components compiled from their bytes.
    pub compiled: Counter,
    /// Components loaded from the compiled-code cache instead.
    pub cache_hits: Counter,
    /// Journey instances created.
    pub instantiated: Counter,
    /// Journey calls served by a warm instance.
    pub reused: Counter,
    /// Journey instances dropped after a failed call.
    pub recycled: Counter,
    /// Channel instances created.
    pub channel_instantiated: Counter,
    /// Channel calls served by a warm instance.
    pub channel_reused: Counter,
    /// Outbound connections channels opened (the rest of their requests reused one).
    pub outbound_connections: Counter,
}

/// What every compiled component keeps alive: the engine, the limits it runs under, and the
/// epoch ticker, without which deadlines would never fire (so it lives as long as any component
/// does, not just as long as the [`super::Sandbox`]).
pub(super) struct Shared {
    pub(super) engine: Engine,
    /// A hash of what makes compiled code compatible with `engine` (wasmtime version, target,
    /// settings): part of every compile-cache key.
    pub(super) engine_hash: u64,
    pub(super) config: SandboxConfig,
    pub(super) counters: SandboxCounters,
    /// Idle journey and channel instances across all pools (at most
    /// `config.max_idle_instances`).
    pub(super) idle_total: AtomicUsize,
    /// Channels' kept-alive outbound connections, shared by every channel of the host.
    pub(super) outbound: Arc<ConnectionPool>,
    _ticker: EpochTicker,
}

impl Shared {
    /// Builds the engine for `config` and starts its ticker.
    pub(super) fn start(config: SandboxConfig) -> Result<Shared, SandboxError> {
        let engine = Engine::new(&engine_config(&config))
            .map_err(|e| SandboxError::Internal(format!("cannot create the wasm engine: {e:#}")))?;
        let ticker = EpochTicker::start(&engine)?;
        // Part of the on-disk cache keys: change how it is computed and every cached entry is
        // recompiled once.
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.finish();
        let counters = SandboxCounters::default();
        let outbound = Arc::new(ConnectionPool::new(
            config.allow_private_network,
            counters.outbound_connections.clone(),
        ));
        Ok(Shared {
            engine,
            engine_hash,
            config,
            counters,
            idle_total: AtomicUsize::new(0),
            outbound,
            _ticker: ticker,
        })
    }
}

/// Bytes of a pooled linear memory kept resident between instances. When an instance is
/// dropped, the pages its calls wrote (found with Linux's `PAGEMAP_SCAN`, up to this many
/// bytes) are reset in place from the memory image, instead of the whole slot being
/// `madvise`d away: the next instance in the slot then finds its pages mapped rather than
/// faulting each one in again, and no TLB shootdown goes to every core per instance. A
/// journey call writes tens of pages (its stack, its globals, its allocator's first chunk).
/// Resident memory grows by at most this much per slot that is in use.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 512 << 10;
/// Likewise for a pooled table (a Rust component's tables are a few KiB).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// The engine configuration: component model, epoch interruption, determinism (canonical NaNs,
/// no relaxed SIMD), and a pooling allocator sized for `max_concurrent_instances`, because
/// instantiating (every channel call, and every journey call that finds no warm instance) is
/// only cheap when the memory comes from a pool rather than from `mmap`.
pub(super) fn engine_config(config: &SandboxConfig) -> Config {
    let n = config.max_concurrent_instances;
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component built for wasm32-wasip2 has a handful of core instances (the program,
    // wit-component's shim and fixup modules) and one or two memories and tables.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .max_core_instances_per_component(32)
        .total_memories(n.saturating_mul(2))
        .max_memories_per_component(4)
        .total_tables(n.saturating_mul(8))
        .max_tables_per_component(16)
        .total_stacks(n)
        .max_memory_size(usize::try_from(config.memory_ceiling_bytes).unwrap_or(usize::MAX));
    // Without the scan, keeping memory resident would `memset` the lowest addresses of every
    // slot (a Rust guest's stack) whether written or not, which costs more than it saves.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
    }

    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        // Guests are Rust compiled to linear memory; GC proposals would only add attack surface
        // (and the engine is built without a collector).
        .gc_support(false)
        .epoch_interruption(true)
        // `decide` must give the same answer on every host: NaN bit patterns and relaxed SIMD
        // are the two ways wasm results may differ between CPUs.
        .cranelift_nan_canonicalization(true)
        .wasm_relaxed_simd(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if config.perf_map {
        cfg.profiler(ProfilingStrategy::PerfMap);
    }
    cfg
}

/// `deadline` in epoch ticks, rounded up, plus one for the tick already under way.
pub(super) fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = deadline.as_nanos().div_ceil(tick);
    u64::try_from(ticks)
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// A background thread that advances the engine's epoch every [`EPOCH_TICK`]; stopped and
/// joined on drop.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(super) fn start(engine: &Engine) -> Result<EpochTicker, SandboxError> {
        let stop = Arc::new(AtomicBool::new(false));
        // A weak handle, so the ticker never keeps an otherwise dropped engine alive.
        let weak = engine.weak();
        let thread = std::thread::Builder::new()
            .name("waymark-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                }
            })
            .map_err(|e| SandboxError::Internal(format!("cannot start the epoch ticker: {e}")))?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks_plus_the_current_one() {
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(11)), 3);
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 101);
        assert_eq!(deadline_ticks(Duration::MAX), u64::MAX);
    }

    fn engine() -> Engine {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true).gc_support(false);
        Engine::new(&cfg).unwrap()
    }

    // That ticks interrupt guests is covered end to end (`tests/tests/sandbox.rs`).

    #[test]
    fn the_ticker_stops_promptly_when_dropped() {
        let engine = engine();
        let ticker = EpochTicker::start(&engine).unwrap();
        std::thread::sleep(EPOCH_TICK * 3);
        let started = std::time::Instant::now();
        drop(ticker);
        assert!(started.elapsed() < EPOCH_TICK * 50, "drop joins the thread");
    }

    #[test]
    fn the_ticker_never_keeps_a_dropped_engine_alive() {
        let engine = engine();
        let ticker = EpochTicker::start(&engine).unwrap();
        drop(engine);
        let thread = ticker.thread.as_ref().expect("running");
        let give_up = std::time::Instant::now() + EPOCH_TICK * 100;
        while !thread.is_finished() {
            assert!(
                std::time::Instant::now() < give_up,
                "the ticker outlived its engine"
            );
            std::thread::sleep(EPOCH_TICK);
        }
    }
}
