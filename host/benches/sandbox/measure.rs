//! Timing: one run calls for a fixed wall time and gives calls per second; a measurement keeps
//! every run's rate so the report can give the median and the spread.
//!
//! Calls are timed in batches, so reading the clock costs nothing measurable; a run ends at the
//! first batch boundary past its budget and is rated on its true elapsed time. Each run is also
//! rated on the CPU time its thread used ([`Run::cpu`]): on a shared machine, time spent waiting
//! for a core slows the wall-clock rate but not that one, so it is what a call costs a core.

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

/// One run's rates: calls per second of wall time, and per second of the thread's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub wall: f64,
    pub cpu: f64,
}

/// Where a run started, on both clocks.
struct Start {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Start {
    fn now() -> Start {
        Start {
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }

    /// The run's rates after `n` calls, or `None` while it is shorter than `budget`.
    fn rate(&self, n: u64, budget: Duration) -> Option<Run> {
        let wall = self.wall.elapsed();
        if wall < budget {
            return None;
        }
        let cpu = match (self.cpu, thread_cpu_time()) {
            (Some(start), Some(end)) if end > start => end - start,
            // No thread clock (not Linux): the wall clock stands in.
            _ => wall,
        };
        Some(Run {
            wall: n as f64 / wall.as_secs_f64(),
            cpu: n as f64 / cpu.as_secs_f64(),
        })
    }
}

/// The CPU time this thread has used (user and system), where the system says.
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `clock_gettime` writes one `timespec`, which `ts` is.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
        ok.then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The rates of a synchronous call over `budget`; `call(i)` gets the call's index (to cycle
/// through fixtures).
pub fn sync(budget: Duration, mut call: impl FnMut(u64)) -> Run {
    let start = Start::now();
    let mut n = 0;
    loop {
        for _ in 0..BATCH {
            call(n);
            n += 1;
        }
        if let Some(run) = start.rate(n, budget) {
            return run;
        }
    }
}

/// The rates of an asynchronous call over `budget`, awaited in sequence on the current task (of
/// a current-thread runtime, so that the thread's CPU time is the calls').
pub async fn sequential(budget: Duration, mut call: impl AsyncFnMut(u64)) -> Run {
    let start = Start::now();
    let mut n = 0;
    loop {
        for _ in 0..BATCH {
            call(n).await;
            n += 1;
        }
        if let Some(run) = start.rate(n, budget) {
            return run;
        }
    }
}
