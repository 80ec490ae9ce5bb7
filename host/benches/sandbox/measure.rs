//! Timing: one run calls for a fixed wall time and gives calls per second; a measurement keeps
//! every run's rate so the report can give the median and the spread.
//!
//! Calls are timed in batches, so reading the clock costs nothing measurable; a run ends at the
//! first batch boundary past its budget and is rated on its true elapsed time.

use std::time::{Duration, Instant};

/// Calls between two readings of the clock.
const BATCH: u64 = 64;

/// How long each scenario warms up, how long each run lasts, and how many runs (rounds).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub warm_up: Duration,
    pub run: Duration,
    pub runs: usize,
}

/// Calls per second of each run.
#[derive(Debug, Clone, Default)]
pub struct Rates(pub Vec<f64>);

impl Rates {
    pub fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(0.0, f64::max)
    }

    /// Microseconds per call at the median rate.
    pub fn micros(&self) -> f64 {
        1e6 / self.median()
    }
}

/// Calls per second of a synchronous call over `budget`; `call(i)` gets the call's index (to
/// cycle through fixtures).
pub fn sync(budget: Duration, mut call: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    loop {
        for _ in 0..BATCH {
            call(n);
            n += 1;
        }
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return n as f64 / elapsed.as_secs_f64();
        }
    }
}

/// Calls per second of an asynchronous call over `budget`, awaited in sequence on the current
/// task.
pub async fn sequential(budget: Duration, mut call: impl AsyncFnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    loop {
        for _ in 0..BATCH {
            call(n).await;
            n += 1;
        }
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return n as f64 / elapsed.as_secs_f64();
        }
    }
}
