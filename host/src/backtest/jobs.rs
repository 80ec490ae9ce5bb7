//! Backtests as background jobs: started by the API, run one at a time on the host (a
//! backtest replays with the CPU a live host needs too, so they queue rather than compete),
//! read and cancelled by id.
//!
//! Every job is kept in the store (`store::backtests`): written (and flushed) when it is
//! queued, on each change of state, and with its result, so a finished job reads the same
//! after a restart. One that was queued or running when the server stopped — a crash, a
//! `kill -9`, a shutdown — is started again from the beginning at the next start
//! ([`Jobs::resume`]): a replay is deterministic, so its result is the one it would have had.
//! A candidate sent as component bytes is kept with its job until the job finishes (at most
//! [`MAX_UNFINISHED_PER_TENANT`] per tenant, each within the tenant's upload limit) and
//! compiled again on resumption; if it no longer validates, the job fails saying why.
//!
//! In memory are only the jobs this process runs or has queued: their live progress and
//! their cancellation.

use super::candidate::{Candidate, Unstored};
use super::run::{backtest, BacktestError, MigrateAt, Outcome, Plan, Progress, Sample};
use crate::host::Host;
use crate::store::backtests::{
    BacktestJob, BacktestParts, JobStatus, ReplayParts, StoredCandidate,
};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use waymark_api::backtests::BacktestResult;

/// Jobs kept per tenant; past it the oldest finished ones go, from the store too.
const KEPT_PER_TENANT: usize = 100;
/// Backtests one tenant may have queued or running at once.
pub const MAX_UNFINISHED_PER_TENANT: usize = 4;

/// Why a backtest was not queued.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The tenant already has [`MAX_UNFINISHED_PER_TENANT`] backtests queued or running.
    #[error("this tenant already has {MAX_UNFINISHED_PER_TENANT} backtests queued or running")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A job as read: its record (with the live progress of one this process runs), and its
/// result once done.
#[derive(Debug, Clone)]
pub struct JobView {
    pub job: BacktestJob,
    pub result: Option<BacktestResult>,
}

/// An unfinished job of this process.
struct Live {
    tenant: String,
    /// The record as last written.
    job: Mutex<BacktestJob>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    /// Set by the first [`Jobs::finish`]: its end is being written, and no other may be.
    ending: AtomicBool,
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, BacktestJob> {
        self.job.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record with the progress as it is now.
    fn view(&self) -> JobView {
        let mut job = self.lock().clone();
        job.replayed = self.progress.replayed.load(Ordering::Relaxed);
        job.total = self.progress.total.load(Ordering::Relaxed);
        JobView { job, result: None }
    }
}

/// The host's backtest jobs.
pub struct Jobs {
    store: Store,
    /// Unfinished jobs of this process by (tenant, id). Its lock also makes a start's check of
    /// the tenant's limits and its write one step.
    live: Mutex<HashMap<(String, String), Arc<Live>>>,
    pool: Arc<Semaphore>,
}

impl Jobs {
    pub fn new(store: Store) -> Jobs {
        Jobs {
            store,
            live: Mutex::default(),
            pool: Arc::new(Semaphore::new(1)),
        }
    }

    /// Queues a backtest of `plan` on `host`, durably, and returns it; refused while the
    /// tenant has [`MAX_UNFINISHED_PER_TENANT`] unfinished. The tenant's oldest finished jobs
    /// past [`KEPT_PER_TENANT`] are removed. A new id is taken unless `id` is given (cluster
    /// mode: one backtest over several partitions has partition 0's id on every partition); a
    /// job the tenant already has under that id is answered as it stands (a start retried).
    pub async fn start(
        &self,
        host: Arc<Host>,
        plan: Plan,
        id: Option<String>,
    ) -> Result<JobView, StartError> {
        if let Some(id) = &id {
            if let Some(view) = self.get(&plan.tenant, id)? {
                return Ok(view);
            }
        }
        let live = {
            let mut map = self.lock();
            let jobs = self.store.tenant_backtests(&plan.tenant)?;
            if jobs.iter().filter(|j| !j.status.finished()).count() >= MAX_UNFINISHED_PER_TENANT {
                return Err(StartError::Busy);
            }
            let mut excess = (jobs.len() + 1).saturating_sub(KEPT_PER_TENANT);
            for old in jobs.iter().filter(|j| j.status.finished()) {
                if excess == 0 {
                    break;
                }
                self.store.delete_backtest(&plan.tenant, &old.id)?;
                excess -= 1;
            }
            let id = match id {
                Some(id) => id,
                None => self.store.new_backtest_id()?,
            };
            let job = record(&plan, id);
            let bytes = match &plan.candidate {
                Candidate::Unstored(unstored) => Some(unstored.bytes.as_slice()),
                Candidate::Stored(_) => None,
            };
            self.store.put_backtest(&plan.tenant, &job, bytes)?;
            let live = Arc::new(Live {
                tenant: plan.tenant.clone(),
                job: Mutex::new(job),
                progress: Arc::default(),
                cancel: CancellationToken::new(),
                ending: AtomicBool::new(false),
            });
            map.insert(key(&live), live.clone());
            live
        };
        self.store.flush().await?;
        let view = live.view();
        tokio::spawn(run(host, live, Some(plan)));
        Ok(view)
    }

    /// Starts again every job the store holds as queued or running (the server stopped before
    /// it finished), in the order they were started; returns how many. Called once, at start.
    pub async fn resume(&self, host: &Arc<Host>) -> Result<usize, StoreError> {
        let unfinished = self.store.unfinished_backtests()?;
        let mut resumed = Vec::with_capacity(unfinished.len());
        for (tenant, mut job) in unfinished {
            job.status = JobStatus::Queued;
            job.restarts += 1;
            (job.replayed, job.total) = (0, 0);
            self.store.put_backtest(&tenant, &job, None)?;
            tracing::info!(%tenant, id = %job.id, restarts = job.restarts, "backtest started over");
            let live = Arc::new(Live {
                tenant,
                job: Mutex::new(job),
                progress: Arc::default(),
                cancel: CancellationToken::new(),
                ending: AtomicBool::new(false),
            });
            self.lock().insert(key(&live), live.clone());
            resumed.push(live);
        }
        self.store.flush().await?;
        let n = resumed.len();
        for live in resumed {
            tokio::spawn(run(host.clone(), live, None));
        }
        Ok(n)
    }

    /// One of `tenant`'s jobs.
    pub fn get(&self, tenant: &str, id: &str) -> Result<Option<JobView>, StoreError> {
        if let Some(live) = self.live(tenant, id) {
            return self.live_view(tenant, &live).map(Some);
        }
        self.store
            .backtest(tenant, id)?
            .map(|job| self.stored_view(tenant, job))
            .transpose()
    }

    /// `tenant`'s jobs of `journey` that are kept (the latest [`KEPT_PER_TENANT`] of the
    /// tenant), newest first.
    pub fn of_journey(&self, tenant: &str, journey: &str) -> Result<Vec<JobView>, StoreError> {
        let mut jobs = self.store.tenant_backtests(tenant)?;
        jobs.reverse();
        jobs.into_iter()
            .filter(|j| j.journey == journey)
            .map(|job| match self.live(tenant, &job.id) {
                Some(live) => self.live_view(tenant, &live),
                None => self.stored_view(tenant, job),
            })
            .collect()
    }

    /// Cancels one of `tenant`'s jobs (nothing if it has finished) and returns it: a queued
    /// one is cancelled at once, a running one between two events.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<Option<JobView>, StoreError> {
        let Some(live) = self.live(tenant, id) else {
            return self.get(tenant, id);
        };
        live.cancel.cancel();
        let queued = live.lock().status == JobStatus::Queued;
        if queued {
            self.finish(&live, JobStatus::Cancelled, None, None).await;
        }
        self.get(tenant, id)
    }

    /// Records how `live` ended (unless it had already), with its result, durably, and
    /// forgets it. Readers see the end only once it is durable: until the flush returns they
    /// see the job as it was, so an end that a `kill -9` could still lose is never shown.
    async fn finish(
        &self,
        live: &Live,
        status: JobStatus,
        error: Option<String>,
        result: Option<(BacktestResult, BacktestParts)>,
    ) {
        let (written, ended) = {
            let job = live.lock();
            if job.status.finished() || live.ending.swap(true, Ordering::AcqRel) {
                return;
            }
            let mut ended = job.clone();
            ended.status = status;
            ended.error = error;
            ended.replayed = live.progress.replayed.load(Ordering::Relaxed);
            ended.total = live.progress.total.load(Ordering::Relaxed);
            let written = self.store.finish_backtest(
                &live.tenant,
                &ended,
                result.as_ref().map(|(r, p)| (r, p)),
            );
            (written, ended)
        };
        if let Err(error) = self.persisted(written).await {
            tracing::error!(tenant = %live.tenant, id = %ended.id, %error, "cannot record a backtest's end");
        }
        *live.lock() = ended;
        self.lock().remove(&key(live));
    }

    /// Marks `live` running, durably; false if it was cancelled meanwhile.
    async fn set_running(&self, live: &Live) -> bool {
        let written = {
            let mut job = live.lock();
            if job.status.finished() || live.cancel.is_cancelled() {
                return false;
            }
            job.status = JobStatus::Running;
            self.store.put_backtest(&live.tenant, &job, None)
        };
        if let Err(error) = self.persisted(written).await {
            tracing::warn!(tenant = %live.tenant, %error, "cannot record a backtest as running");
        }
        true
    }

    async fn persisted(&self, written: Result<(), StoreError>) -> Result<(), StoreError> {
        written?;
        self.store.flush().await
    }

    /// What a reader sees of a job this process runs. Between `finish` setting its end (and
    /// writing it with its result, under the job's lock) and the job leaving the live map, the
    /// stored view: a `done` job is never shown without its result.
    fn live_view(&self, tenant: &str, live: &Live) -> Result<JobView, StoreError> {
        let view = live.view();
        if view.job.status.finished() {
            return self.stored_view(tenant, view.job);
        }
        Ok(view)
    }

    fn stored_view(&self, tenant: &str, job: BacktestJob) -> Result<JobView, StoreError> {
        let result = match job.status {
            JobStatus::Done => self.store.backtest_result(tenant, &job.id)?,
            _ => None,
        };
        Ok(JobView { job, result })
    }

    fn live(&self, tenant: &str, id: &str) -> Option<Arc<Live>> {
        self.lock()
            .get(&(tenant.to_string(), id.to_string()))
            .cloned()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<Live>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(live: &Live) -> (String, String) {
    (live.tenant.clone(), live.lock().id.clone())
}

/// Runs one job when the host's turn comes: `plan` as requested, or rebuilt from the stored
/// record for a job started over. A host shutting down leaves the job as it stands in the
/// store, to be started over at the next start.
async fn run(host: Arc<Host>, live: Arc<Live>, plan: Option<Plan>) {
    let jobs = &host.backtests;
    let pool = jobs.pool.clone();
    let _permit = tokio::select! {
        permit = pool.acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_) => return,
        },
        _ = host.shutdown.cancelled() => return,
    };
    if live.cancel.is_cancelled() {
        return;
    }
    let plan = match plan {
        Some(plan) => plan,
        None => {
            let job = live.lock().clone();
            match rebuild(&host, &live.tenant, &job).await {
                Ok(plan) => plan,
                Err(reason) => {
                    jobs.finish(&live, JobStatus::Failed, Some(reason), None)
                        .await;
                    return;
                }
            }
        }
    };
    if !jobs.set_running(&live).await {
        return;
    }
    let outcome = tokio::select! {
        outcome = backtest(&host, &plan, &live.progress, &live.cancel) => outcome,
        _ = host.shutdown.cancelled() => return,
    };
    match outcome {
        Ok(outcome) => {
            let parts = parts_of(&outcome);
            let result = result_of(outcome);
            jobs.finish(&live, JobStatus::Done, None, Some((result, parts)))
                .await
        }
        Err(BacktestError::Cancelled) => jobs.finish(&live, JobStatus::Cancelled, None, None).await,
        Err(error) => {
            tracing::warn!(tenant = %plan.tenant, %error, "backtest failed");
            jobs.finish(&live, JobStatus::Failed, Some(error.to_string()), None)
                .await
        }
    }
}

/// The stored record of a new job of `plan`.
fn record(plan: &Plan, id: String) -> BacktestJob {
    BacktestJob {
        id,
        journey: plan.journey.clone(),
        candidate: match &plan.candidate {
            Candidate::Stored(version) => StoredCandidate::Version(*version),
            Candidate::Unstored(unstored) => StoredCandidate::Component(unstored.digest.clone()),
        },
        from: plan.from,
        to: plan.to,
        customers: plan.sample.customers.as_ref().map(|c| {
            let mut c: Vec<String> = c.iter().cloned().collect();
            c.sort();
            c
        }),
        per_million: plan.sample.per_million,
        fidelity: plan.fidelity,
        migrate: plan.migrate.map(|m| (m.from, m.at)),
        status: JobStatus::Queued,
        replayed: 0,
        total: 0,
        error: None,
        requested_at: crate::clock::system_now(),
        restarts: 0,
    }
}

/// The plan of a job started over, from its record; a candidate sent as bytes is compiled
/// and described again as at its request. The error says why it cannot run.
async fn rebuild(host: &Host, tenant: &str, job: &BacktestJob) -> Result<Plan, String> {
    let candidate = match &job.candidate {
        StoredCandidate::Version(version) => Candidate::Stored(*version),
        StoredCandidate::Component(digest) => {
            let interrupted = "interrupted by a server restart, and";
            let bytes = host
                .store
                .backtest_component(tenant, &job.id)
                .map_err(|e| {
                    format!("{interrupted} its candidate's component cannot be read: {e}")
                })?
                .ok_or_else(|| format!("{interrupted} its candidate's component was not kept"))?;
            let limits = host
                .tenant_limits(tenant)
                .map_err(|e| format!("{interrupted} the tenant's limits cannot be read: {e}"))?;
            let unstored = Unstored::validate(host.registry.sandbox(), bytes, &limits)
                .await
                .map_err(|e| {
                    format!("{interrupted} its candidate's component no longer validates: {e}")
                })?;
            if unstored.digest != *digest {
                return Err(format!(
                    "{interrupted} its candidate's kept component is not the one requested"
                ));
            }
            Candidate::Unstored(Arc::new(unstored))
        }
    };
    Ok(Plan {
        tenant: tenant.to_string(),
        journey: job.journey.clone(),
        candidate,
        from: job.from,
        to: job.to,
        sample: Sample {
            customers: job.customers.clone().map(|c| c.into_iter().collect()),
            per_million: job.per_million,
            part: None,
        },
        fidelity: job.fidelity,
        migrate: job.migrate.map(|(from, at)| MigrateAt { from, at }),
    })
}

/// What a finished backtest's result adds up from, kept beside it.
fn parts_of(outcome: &Outcome) -> BacktestParts {
    let replay = |r: &super::run::Replayed| ReplayParts {
        spec: r.spec.clone(),
        cells: r.cells.clone(),
        sends: r.sends.len() as u64,
    };
    BacktestParts {
        candidate: replay(&outcome.candidate),
        live: replay(&outcome.live),
    }
}

/// A finished backtest's result, in the API's shape: what is stored and answered.
fn result_of(outcome: Outcome) -> BacktestResult {
    BacktestResult {
        candidate_version: outcome.candidate.version,
        candidate_digest: outcome.candidate.digest.clone(),
        migration: outcome
            .candidate
            .migration
            .clone()
            .map(|(migration, outcomes)| crate::api::migration_status(migration, outcomes)),
        live_version: outcome.live.version,
        diff: super::diff::diff(&outcome),
        candidate: outcome.candidate.report.into(),
        live: outcome.live.report.into(),
        fidelity: outcome.fidelity,
        replay_parts: outcome.parts,
    }
}

#[cfg(test)]
mod live_view_tests {
    use super::*;
    use crate::store::backtests::tests::{job, result};

    /// The window `finish` leaves: the job's end and result written, the job still in the live
    /// map. A reader there sees the stored job, result included.
    #[test]
    fn a_job_finished_but_not_yet_forgotten_reads_with_its_result() {
        let (_dir, store) = crate::store::temp_store();
        let jobs = Jobs::new(store.clone());
        let record = job(&store, JobStatus::Running);
        store.put_backtest("t", &record, None).unwrap();
        let live = Arc::new(Live {
            tenant: "t".into(),
            job: Mutex::new(record.clone()),
            progress: Arc::default(),
            cancel: CancellationToken::new(),
            ending: AtomicBool::new(false),
        });
        jobs.lock().insert(key(&live), live.clone());
        let running = jobs.get("t", &record.id).unwrap().unwrap();
        assert_eq!(running.job.status, JobStatus::Running);
        assert!(running.result.is_none());

        {
            let mut job = live.lock();
            job.status = JobStatus::Done;
            let (result, parts) = (result(), crate::store::backtests::tests::parts());
            store
                .finish_backtest("t", &job, Some((&result, &parts)))
                .unwrap();
        }
        let done = jobs.get("t", &record.id).unwrap().unwrap();
        assert_eq!(done.job.status, JobStatus::Done);
        assert_eq!(done.result, Some(result()));
        let listed = jobs.of_journey("t", &record.journey).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].result, Some(result()));
    }
}
