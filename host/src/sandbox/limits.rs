//! Resource limits: how much a guest may take, and what happens when it takes more.
//!
//! [`SandboxConfig`] holds the limits; [`engine_config`] turns them into the wasmtime engine's
//! configuration (pooling allocator, epoch interruption); [`MemoryCap`] is the per-store memory
//! limiter; [`EpochTicker`] advances the epoch that deadlines count in; [`new_store`] arms a
//! fresh store with all of it; [`classify`] turns whatever a failed call produced into a
//! [`GuestFailure`] with the right [`FailureReason`].

use super::log::LogState;
use super::wasi::WasiState;
use super::{FailureReason, GuestFailure, SandboxError};
use crate::model;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap, UpdateDeadline, WasmBacktrace,
};

/// One epoch tick. Deadlines are rounded up to whole ticks, so this is their resolution.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Longest failure message kept; traps carry a wasm backtrace that can run long.
const MAX_FAILURE_MESSAGE: usize = 2048;

/// How the sandbox is set up. Per-call limits are [`model::Limits`]: `defaults` unless a
/// tenant has overrides, never above `memory_ceiling_bytes` (what the instance pool reserves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The limits of tenants without overrides.
    pub defaults: model::Limits,
    /// The most linear memory any tenant's limits may allow: the pooling allocator reserves
    /// slots of this size.
    pub memory_ceiling_bytes: u64,
    /// Whether channels may reach loopback, private, link-local and similar addresses. Off in
    /// production; on for tests that deliver to a sink on loopback.
    pub allow_private_network: bool,
    /// Most instances alive at once across all tenants: sizes the pooling allocator.
    pub max_concurrent_instances: u32,
    /// Idle journey instances kept across all journeys and tenants: they hold slots of the
    /// instance pool, so this stays well below `max_concurrent_instances`.
    pub max_idle_instances: usize,
    /// Idle instances kept per compiled journey for reuse (0: every call instantiates afresh).
    /// State travels in the context, so an instance holds nothing a customer needs; one that
    /// trapped or hit a limit is dropped, never reused.
    pub warm_instances: usize,
    /// Where compiled code is cached, keyed by the component's digest and the engine's
    /// compatibility hash (`None`: no cache). Only this host writes there.
    pub cache_dir: Option<PathBuf>,
}

/// The operator's default limits.
pub const DEFAULT_LIMITS: model::Limits = model::Limits {
    max_component_bytes: 16 << 20,
    max_memory_bytes: 64 << 20,
    decide_deadline_ms: 1_000,
    deliver_timeout_ms: 30_000,
    max_commands: 64,
    max_state_bytes: 64 << 10,
    max_hostcall_bytes: 4 << 20,
};

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            defaults: DEFAULT_LIMITS,
            memory_ceiling_bytes: 256 << 20,
            allow_private_network: false,
            max_concurrent_instances: 300,
            max_idle_instances: 150,
            warm_instances: 4,
            cache_dir: None,
        }
    }
}

impl SandboxConfig {
    pub(super) fn validate(&self) -> Result<(), SandboxError> {
        if self.max_concurrent_instances == 0 {
            return Err(SandboxError::Internal(
                "invalid sandbox config: max_concurrent_instances must be positive".into(),
            ));
        }
        self.check_limits(&self.defaults)
            .map_err(|m| SandboxError::Internal(format!("invalid default limits: {m}")))
    }

    /// Whether `limits` can be enforced by this sandbox; the message says what is wrong.
    pub fn check_limits(&self, limits: &model::Limits) -> Result<(), String> {
        if limits.max_memory_bytes < (1 << 16) {
            return Err("max_memory_bytes must be at least one 64 KiB page".into());
        }
        if limits.max_memory_bytes > self.memory_ceiling_bytes {
            return Err(format!(
                "max_memory_bytes may be at most {} (the operator's ceiling)",
                self.memory_ceiling_bytes
            ));
        }
        if limits.decide_deadline_ms == 0 || limits.deliver_timeout_ms == 0 {
            return Err("decide_deadline_ms and deliver_timeout_ms must be positive".into());
        }
        if limits.decide_deadline_ms > 60_000 || limits.deliver_timeout_ms > 600_000 {
            return Err(
                "decide_deadline_ms may be at most 60000, deliver_timeout_ms at most 600000".into(),
            );
        }
        if limits.max_commands == 0 || limits.max_state_bytes == 0 || limits.max_hostcall_bytes == 0
        {
            return Err(
                "max_commands, max_state_bytes and max_hostcall_bytes must be positive".into(),
            );
        }
        if limits.max_component_bytes < 8 {
            return Err("max_component_bytes is too small for any component".into());
        }
        Ok(())
    }
}

/// The engine configuration: component model, epoch interruption, and a pooling allocator
/// sized for `max_concurrent_instances`, because a fresh instance per call is only cheap when
/// its memory comes from a pool rather than from `mmap`.
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

    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        // Guests are Rust compiled to linear memory; GC proposals would only add attack surface
        // (and the engine is built without a collector).
        .gc_support(false)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    cfg
}

/// The memory limiter of one store: wasmtime's [`StoreLimits`], plus a note of whether the
/// guest ran into the cap, so that the trap a Rust guest raises when its allocator fails is
/// reported as [`FailureReason::Memory`] rather than as an anonymous `unreachable`.
pub(super) struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl MemoryCap {
    pub(super) fn new(limit: u64) -> MemoryCap {
        MemoryCap {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            hit: false,
        }
    }

    /// Re-arms the cap for another call on a reused instance.
    pub(super) fn reset(&mut self, limit: u64) {
        *self = MemoryCap::new(limit);
    }

    pub(super) fn was_hit(&self) -> bool {
        self.hit
    }
}

/// Tables get a fixed cap: Rust guests use one small function table.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

/// What every per-call store data offers the call machinery: its memory cap, and the
/// capabilities whose state is reported when the call ends.
pub(super) trait GuestState: Send + 'static {
    fn memory_cap(&mut self) -> &mut MemoryCap;
    /// Whether the guest ran into its memory cap during this call.
    fn memory_hit(&self) -> bool;
    fn wasi(&self) -> &WasiState;
    fn log(&self) -> &LogState;
}

/// A fresh store armed with the memory cap, the hostcall fuel and an epoch deadline `deadline`
/// from now that traps. Instantiation counts against the same deadline as the call.
pub(super) fn new_store<T: GuestState>(
    engine: &Engine,
    data: T,
    deadline: Duration,
    max_hostcall_bytes: u64,
) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|data| data.memory_cap() as &mut dyn ResourceLimiter);
    rearm_store(&mut store, deadline, max_hostcall_bytes);
    store
}

/// Re-arms a reused store for its next call: a new epoch deadline and a full tank of
/// hostcall fuel.
pub(super) fn rearm_store<T>(store: &mut Store<T>, deadline: Duration, max_hostcall_bytes: u64) {
    store.set_hostcall_fuel(usize::try_from(max_hostcall_bytes).unwrap_or(usize::MAX));
    // Every tick, a running guest yields to the executor, so a spinning guest costs its
    // worker thread nothing but its share: ingestion and other tenants keep being served.
    // When the deadline's ticks are used up, it traps with `Interrupt`.
    let mut remaining = deadline_ticks(deadline);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        remaining = remaining.saturating_sub(1);
        if remaining == 0 {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
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

/// Where a call failed: creating the instance, or running the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Instantiate,
    Call,
}

/// Classifies a wasmtime error from `stage`. `memory_hit` says whether the guest ran into its
/// memory cap during the call; `stderr` is the tail of what the guest printed (a Rust panic
/// message lands there), appended to the message because it usually says what went wrong.
pub(super) fn classify(
    stage: Stage,
    error: &wasmtime::Error,
    memory_hit: bool,
    stderr: &str,
) -> GuestFailure {
    let trap = error.downcast_ref::<Trap>().copied();
    let reason = if trap == Some(Trap::Interrupt) {
        FailureReason::Deadline
    } else if memory_hit {
        FailureReason::Memory
    } else {
        match stage {
            Stage::Instantiate => FailureReason::Instantiate,
            Stage::Call => FailureReason::Trap,
        }
    };
    // Most useful first, since the message is truncated: what happened, what the guest said
    // about it (a panic message), then where (the wasm backtrace).
    let backtrace = error.downcast_ref::<WasmBacktrace>();
    let what = match (trap, backtrace) {
        // A trap's own text already reads "wasm trap: ...".
        (Some(trap), _) => trap.to_string(),
        // The backtrace is context on top of the root error; show the root alone here.
        (None, Some(_)) => error.root_cause().to_string(),
        (None, None) => format!("{error:#}"),
    };
    let mut message = match reason {
        FailureReason::Deadline => "the guest ran past its deadline".to_string(),
        FailureReason::Memory => format!("the guest exceeded its memory limit ({what})"),
        _ => what,
    };
    if reason != FailureReason::Deadline {
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            message.push_str("; guest stderr: ");
            message.push_str(stderr);
        }
        if let Some(backtrace) = backtrace {
            message.push('\n');
            message.push_str(backtrace.to_string().trim_end());
        }
    }
    GuestFailure::new(reason, truncate(message, MAX_FAILURE_MESSAGE))
}

/// The outcome of a call run under `tokio::time::timeout`: what went wrong where, or that the
/// wall-clock deadline passed.
pub(super) type Outcome<R> =
    Result<Result<R, (Stage, wasmtime::Error)>, tokio::time::error::Elapsed>;

/// Ends a call: reports what the capabilities saw (dropped log lines, guest output) and turns
/// the outcome into the call's result.
pub(super) fn settle<T: GuestState, R>(
    store: &Store<T>,
    kind: &'static str,
    deadline: Duration,
    outcome: Outcome<R>,
) -> Result<R, GuestFailure> {
    let data = store.data();
    data.log().finish();
    data.wasi().report_output(kind);
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err((stage, error))) => Err(classify(
            stage,
            &error,
            data.memory_hit(),
            &data.wasi().stderr.text(),
        )),
        Err(_elapsed) => Err(timed_out(deadline)),
    }
}

/// The failure of a call that did not finish within `deadline` of wall time (a guest blocked
/// in a host call, where the epoch cannot interrupt it).
pub(super) fn timed_out(deadline: Duration) -> GuestFailure {
    GuestFailure::new(
        FailureReason::Deadline,
        format!(
            "the guest did not finish within {} ms",
            deadline.as_millis()
        ),
    )
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
pub(super) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_sane() {
        let config = SandboxConfig::default();
        assert_eq!(config.validate(), Ok(()));
        let limits = config.defaults;
        assert!(
            limits.max_memory_bytes >= 16 << 20,
            "Rust guests need a few MiB"
        );
        assert!(limits.decide_deadline_ms < limits.deliver_timeout_ms);
        assert!(limits.max_commands > 0 && limits.max_state_bytes > 0);
        assert!(!config.allow_private_network, "private networks are opt-in");
    }

    #[test]
    fn nonsensical_limits_are_refused() {
        let config = SandboxConfig {
            defaults: model::Limits {
                decide_deadline_ms: 0,
                ..DEFAULT_LIMITS
            },
            ..SandboxConfig::default()
        };
        assert!(matches!(config.validate(), Err(SandboxError::Internal(_))));
        let config = SandboxConfig::default();
        let too_much = model::Limits {
            max_memory_bytes: config.memory_ceiling_bytes + 1,
            ..DEFAULT_LIMITS
        };
        assert!(config
            .check_limits(&too_much)
            .unwrap_err()
            .contains("ceiling"));
    }

    #[test]
    fn deadlines_round_up_to_whole_ticks_plus_the_current_one() {
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(11)), 3);
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 101);
        assert_eq!(deadline_ticks(Duration::MAX), u64::MAX);
    }

    #[test]
    fn memory_cap_refuses_growth_past_the_limit_and_remembers_it() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(cap.memory_growing(0, 1 << 16, None).unwrap());
        assert!(!cap.was_hit());
        assert!(!cap.memory_growing(1 << 16, 2 << 20, None).unwrap());
        assert!(cap.was_hit());
    }

    #[test]
    fn interrupts_are_deadlines_and_traps_after_hitting_the_cap_are_memory() {
        let interrupt = wasmtime::Error::from(Trap::Interrupt);
        assert_eq!(
            classify(Stage::Call, &interrupt, false, "").reason,
            FailureReason::Deadline
        );
        let unreachable = wasmtime::Error::from(Trap::UnreachableCodeReached);
        assert_eq!(
            classify(Stage::Call, &unreachable, true, "").reason,
            FailureReason::Memory
        );
        let failure = classify(
            Stage::Call,
            &unreachable,
            false,
            "panicked at src/lib.rs:3\n",
        );
        assert_eq!(failure.reason, FailureReason::Trap);
        assert!(failure
            .message
            .ends_with("guest stderr: panicked at src/lib.rs:3"));
        let pool = wasmtime::format_err!("maximum concurrent instance limit reached");
        assert_eq!(
            classify(Stage::Instantiate, &pool, false, "").reason,
            FailureReason::Instantiate
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h…");
        assert_eq!(truncate("short".into(), 10), "short");
    }

    #[test]
    fn the_ticker_stops_when_dropped() {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true).gc_support(false);
        let engine = Engine::new(&cfg).unwrap();
        let ticker = EpochTicker::start(&engine).unwrap();
        std::thread::sleep(EPOCH_TICK * 3);
        // Joining without hanging is the assertion; that ticks interrupt guests is covered by
        // the guest tests in `journey`.
        drop(ticker);
    }
}
