//! Backtests as background jobs: started by the API, run one at a time on the host (a
//! backtest replays with the CPU a live host needs too, so they queue rather than compete),
//! read and cancelled by id. Jobs live in memory: after a restart a job id is unknown (404).

use super::run::{backtest, BacktestError, Outcome, Plan, Progress};
use crate::host::Host;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Finished jobs kept per tenant; the oldest finished ones go first past it.
const KEPT_PER_TENANT: usize = 100;
/// Backtests one tenant may have queued or running at once.
pub const MAX_UNFINISHED_PER_TENANT: usize = 4;

/// A tenant already has [`MAX_UNFINISHED_PER_TENANT`] backtests queued or running.
#[derive(Debug, thiserror::Error)]
#[error("this tenant already has {MAX_UNFINISHED_PER_TENANT} backtests queued or running")]
pub struct Busy;

/// Where a job stands.
#[derive(Debug, Clone)]
pub enum JobState {
    Queued,
    Running,
    Done(Box<Outcome>),
    Failed(String),
    Cancelled,
}

impl JobState {
    fn finished(&self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// One backtest job.
pub struct Job {
    pub id: String,
    pub plan: Plan,
    pub progress: Progress,
    state: Mutex<JobState>,
    cancel: CancellationToken,
}

impl Job {
    pub fn state(&self) -> JobState {
        self.lock().clone()
    }

    fn set(&self, state: JobState) {
        *self.lock() = state;
    }

    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The host's backtest jobs.
pub struct Jobs {
    jobs: Mutex<HashMap<String, Vec<Arc<Job>>>>,
    pool: Arc<Semaphore>,
    next: AtomicU64,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            jobs: Mutex::default(),
            pool: Arc::new(Semaphore::new(1)),
            next: AtomicU64::new(0),
        }
    }
}

impl Jobs {
    /// Queues a backtest of `plan` on `host` and returns its job; refused while the tenant has
    /// [`MAX_UNFINISHED_PER_TENANT`] unfinished.
    pub fn start(&self, host: Arc<Host>, plan: Plan) -> Result<Arc<Job>, Busy> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let wall = crate::clock::system_now().to_string();
        let id = format!(
            "bt_{:016x}",
            crate::hash::fnv1a_joined(&[&plan.tenant, &wall, &n.to_string()])
        );
        let job = Arc::new(Job {
            id,
            plan,
            progress: Progress::default(),
            state: Mutex::new(JobState::Queued),
            cancel: CancellationToken::new(),
        });
        {
            let mut jobs = self.lock();
            let list = jobs.entry(job.plan.tenant.clone()).or_default();
            let unfinished = list.iter().filter(|j| !j.lock().finished()).count();
            if unfinished >= MAX_UNFINISHED_PER_TENANT {
                return Err(Busy);
            }
            while list.len() >= KEPT_PER_TENANT {
                match list.iter().position(|j| j.lock().finished()) {
                    Some(i) => {
                        list.remove(i);
                    }
                    None => break,
                }
            }
            list.push(job.clone());
        }
        let (pool, running) = (self.pool.clone(), job.clone());
        tokio::spawn(async move {
            let Ok(_permit) = pool.acquire_owned().await else {
                return;
            };
            if running.cancel.is_cancelled() {
                return;
            }
            running.set(JobState::Running);
            let outcome = tokio::select! {
                outcome = backtest(&host, &running.plan, &running.progress, &running.cancel) => outcome,
                _ = host.shutdown.cancelled() => Err(BacktestError::Cancelled),
            };
            running.set(match outcome {
                Ok(outcome) => JobState::Done(Box::new(outcome)),
                Err(BacktestError::Cancelled) => JobState::Cancelled,
                Err(error) => {
                    tracing::warn!(tenant = %running.plan.tenant, id = %running.id, %error, "backtest failed");
                    JobState::Failed(error.to_string())
                }
            });
        });
        Ok(job)
    }

    /// One of `tenant`'s jobs.
    pub fn get(&self, tenant: &str, id: &str) -> Option<Arc<Job>> {
        self.lock()
            .get(tenant)
            .and_then(|list| list.iter().find(|j| j.id == id).cloned())
    }

    /// `tenant`'s jobs of `journey` that are kept (the latest [`KEPT_PER_TENANT`] of the
    /// tenant), newest first.
    pub fn of_journey(&self, tenant: &str, journey: &str) -> Vec<Arc<Job>> {
        self.lock()
            .get(tenant)
            .map(|list| {
                list.iter()
                    .rev()
                    .filter(|j| j.plan.journey == journey)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Cancels one of `tenant`'s jobs (nothing if it has finished) and returns it.
    pub fn cancel(&self, tenant: &str, id: &str) -> Option<Arc<Job>> {
        let job = self.get(tenant, id)?;
        job.cancel.cancel();
        let mut state = job.lock();
        if matches!(*state, JobState::Queued) {
            *state = JobState::Cancelled;
        }
        drop(state);
        Some(job)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Arc<Job>>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}
