//! One guest call's store: how it is armed before the call and settled after it.
//!
//! Each world's store data implements [`GuestState`]: it carries a [`MemoryCap`] and the state
//! of the capabilities whose findings are reported when the call ends (dropped log lines, guest
//! output). [`new_store`] arms a fresh store with the memory cap, the hostcall fuel and an epoch
//! deadline; [`new_rearmable_store`] and [`rearm_store`] do the same for a journey instance,
//! call after call, without allocating; [`settle`] ends a call, turning whatever happened into
//! the call's result through [`super::failure::classify`].

use super::capability::log::LogState;
use super::capability::wasi::WasiState;
use super::engine::deadline_ticks;
use super::failure::{classify, timed_out, GuestFailure, Stage};
use std::time::Duration;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};

/// Tables get a fixed cap: Rust guests use one small function table.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The memory limiter of one store: a cap on linear memory, plus a note of whether the guest
/// ran into it, so that the trap a Rust guest raises when its allocator fails is reported as
/// [`super::FailureReason::Memory`] rather than as an anonymous `unreachable`.
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

/// The store data of an instance re-armed call after call (a warm journey): it keeps the
/// deadline's remaining ticks itself, so that re-arming sets a number rather than installing a
/// new (boxed) callback.
pub(super) trait Rearmable: GuestState {
    fn epoch_ticks_left(&mut self) -> &mut u64;
}

/// A fresh store armed with the memory cap, the hostcall fuel and an epoch deadline `deadline`
/// from now that traps (instantiation counts against the same deadline as the call), for store
/// data that [`rearm_store`] re-arms before each later call.
pub(super) fn new_rearmable_store<T: Rearmable>(
    engine: &Engine,
    data: T,
    deadline: Duration,
    max_hostcall_bytes: u64,
) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|data| data.memory_cap() as &mut dyn ResourceLimiter);
    store.epoch_deadline_callback(|mut store| {
        Ok(on_epoch_tick(store.data_mut().epoch_ticks_left()))
    });
    rearm_store(&mut store, deadline, max_hostcall_bytes);
    store
}

/// Re-arms a store for its next call: a new epoch deadline and a full tank of hostcall fuel.
pub(super) fn rearm_store<T: Rearmable>(
    store: &mut Store<T>,
    deadline: Duration,
    max_hostcall_bytes: u64,
) {
    store.set_hostcall_fuel(usize::try_from(max_hostcall_bytes).unwrap_or(usize::MAX));
    *store.data_mut().epoch_ticks_left() = deadline_ticks(deadline);
    store.set_epoch_deadline(1);
}

/// What a running guest does at an epoch tick. Every tick, it yields to the executor, so a
/// spinning guest costs its worker thread nothing but its share: ingestion and other tenants
/// keep being served. When the deadline's ticks are used up, it traps with `Interrupt`.
fn on_epoch_tick(remaining: &mut u64) -> UpdateDeadline {
    *remaining = remaining.saturating_sub(1);
    if *remaining == 0 {
        UpdateDeadline::Interrupt
    } else {
        UpdateDeadline::Yield(1)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_refuses_growth_past_the_limit_and_remembers_it() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(cap.memory_growing(0, 1 << 16, None).unwrap());
        assert!(!cap.was_hit());
        assert!(!cap.memory_growing(1 << 16, 2 << 20, None).unwrap());
        assert!(cap.was_hit());
        cap.reset(4 << 20);
        assert!(
            !cap.was_hit(),
            "a reused instance starts its next call afresh"
        );
        assert!(cap.memory_growing(1 << 16, 2 << 20, None).unwrap());
    }
}
