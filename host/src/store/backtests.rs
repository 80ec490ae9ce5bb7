//! Backtest jobs (issue 13), kept so that they survive a restart.
//!
//! `backtests`:
//! - `j␟tenant␟id` → [`BacktestJob`]: the plan as requested, where the job stands, its
//!   progress and error; rewritten on every change of state;
//! - `r␟tenant␟id` → the result of a `done` job, in the API's shape
//!   ([`waymark_api::backtests::BacktestResult`]: what `GET` answered before a restart is what
//!   it answers after; the API's types only ever gain optional fields, so old results decode);
//! - `p␟tenant␟id` → what a `done` job's result was added up from ([`BacktestParts`]: each
//!   replay's spec, report cells and number of sends), so that a backtest run on several
//!   partitions (cluster mode, issue 16) reads as one: written with the result;
//! - `c␟tenant␟id` → a candidate sent as component bytes, raw, while its job is unfinished:
//!   a job restarted after a crash compiles them again. They go when the job finishes, so a
//!   tenant holds at most its unfinished jobs' components (4, each within its upload limit).
//!
//! Ids are `bt_` and 16 hex digits of a sled-generated id, which sled keeps monotonic across
//! restarts (`Db::generate_id`: "we will never give out the same counter twice"), so a tenant's
//! keys are in the order its jobs were started.

use super::keys::{key, prefix};
use super::{dec, enc, Store, StoreError};
use crate::model::{Millis, Spec};
use crate::report::cells::Cell;
use serde::{Deserialize, Serialize};
use waymark_api::backtests::BacktestResult;

/// Where a stored job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Done, failed or cancelled: nothing will change it again.
    pub fn finished(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// A backtest's candidate as stored: a version, or the digest of bytes kept beside the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredCandidate {
    Version(u32),
    /// SHA-256 (hex) of the component bytes stored under the job's `c` key.
    Component(String),
}

/// One backtest job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestJob {
    pub id: String,
    pub journey: String,
    pub candidate: StoredCandidate,
    pub from: Millis,
    pub to: Millis,
    /// The customers named, sorted.
    pub customers: Option<Vec<String>>,
    pub per_million: Option<u64>,
    pub fidelity: bool,
    /// `candidate.migrate`: (from version, at).
    pub migrate: Option<(u32, Millis)>,
    pub status: JobStatus,
    pub replayed: u64,
    pub total: u64,
    pub error: Option<String>,
    /// Wall-clock time it was requested.
    pub requested_at: Millis,
    /// How many times a server start found it unfinished and started it over.
    #[serde(default)]
    pub restarts: u32,
}

/// What a done job's two replays were added up from: the parts of its result that add up over
/// several partitions, where the result's own figures (a median, a conversion) do not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestParts {
    pub candidate: ReplayParts,
    pub live: ReplayParts,
}

/// One replay's parts: the spec whose milestones and experiments make the report's rows, the
/// report's cells, and how many messages it sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayParts {
    pub spec: Spec,
    pub cells: Vec<Cell>,
    pub sends: u64,
}

fn job_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[b"j", tenant.as_bytes(), id.as_bytes()])
}

fn result_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[b"r", tenant.as_bytes(), id.as_bytes()])
}

fn parts_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[b"p", tenant.as_bytes(), id.as_bytes()])
}

fn component_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[b"c", tenant.as_bytes(), id.as_bytes()])
}

impl Store {
    /// A fresh backtest id: `bt_` and 16 hex digits, increasing with every call.
    pub fn new_backtest_id(&self) -> Result<String, StoreError> {
        Ok(format!("bt_{:016x}", self.db.generate_id()?))
    }

    /// Writes `job` (new or changed) and, for a new job with a candidate sent as bytes, the
    /// bytes, in one batch. Not flushed: the caller flushes where durability is promised.
    pub fn put_backtest(
        &self,
        tenant: &str,
        job: &BacktestJob,
        component: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        batch.insert(job_key(tenant, &job.id), enc(job));
        if let Some(bytes) = component {
            batch.insert(component_key(tenant, &job.id), bytes);
        }
        self.backtests.apply_batch(batch)?;
        Ok(())
    }

    /// Writes a job that has finished with its result and its parts (for a `done` one),
    /// dropping the component bytes it no longer needs, in one batch.
    pub fn finish_backtest(
        &self,
        tenant: &str,
        job: &BacktestJob,
        result: Option<(&BacktestResult, &BacktestParts)>,
    ) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        batch.insert(job_key(tenant, &job.id), enc(job));
        if let Some((result, parts)) = result {
            batch.insert(result_key(tenant, &job.id), enc(result));
            batch.insert(parts_key(tenant, &job.id), enc(parts));
        }
        batch.remove(component_key(tenant, &job.id));
        self.backtests.apply_batch(batch)?;
        Ok(())
    }

    /// One of `tenant`'s jobs.
    pub fn backtest(&self, tenant: &str, id: &str) -> Result<Option<BacktestJob>, StoreError> {
        self.backtests
            .get(job_key(tenant, id))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// A done job's result.
    pub fn backtest_result(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<BacktestResult>, StoreError> {
        self.backtests
            .get(result_key(tenant, id))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// What a done job's result was added up from (none for a job finished before they were
    /// kept).
    pub fn backtest_parts(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<BacktestParts>, StoreError> {
        self.backtests
            .get(parts_key(tenant, id))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// The component bytes kept with an unfinished job.
    pub fn backtest_component(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .backtests
            .get(component_key(tenant, id))?
            .map(|v| v.to_vec()))
    }

    /// `tenant`'s jobs, oldest first.
    pub fn tenant_backtests(&self, tenant: &str) -> Result<Vec<BacktestJob>, StoreError> {
        self.backtests
            .scan_prefix(prefix(&[b"j", tenant.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    /// Every tenant's jobs that had not finished: (tenant, job), in the order they were
    /// started within each tenant.
    pub fn unfinished_backtests(&self) -> Result<Vec<(String, BacktestJob)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.backtests.scan_prefix(prefix(&[b"j"])) {
            let (k, v) = kv?;
            let job: BacktestJob = dec(&v)?;
            if job.status.finished() {
                continue;
            }
            // `j␟tenant␟id`: the tenant is between the first separator and the id.
            let tenant = k
                .get(2..k.len().saturating_sub(job.id.len() + 1))
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .ok_or_else(|| StoreError::Corrupt("backtest key too short".into()))?;
            out.push((tenant, job));
        }
        Ok(out)
    }

    /// Removes a job with its result and component bytes.
    pub fn delete_backtest(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        batch.remove(job_key(tenant, id));
        batch.remove(result_key(tenant, id));
        batch.remove(parts_key(tenant, id));
        batch.remove(component_key(tenant, id));
        self.backtests.apply_batch(batch)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::temp_store;
    use super::*;
    use waymark_api::backtests::{BacktestDiff, Compared};

    pub(crate) fn job(store: &Store, status: JobStatus) -> BacktestJob {
        BacktestJob {
            id: store.new_backtest_id().unwrap(),
            journey: "renewal".into(),
            candidate: StoredCandidate::Component("ab".into()),
            from: 0,
            to: 10,
            customers: Some(vec!["ada".into()]),
            per_million: None,
            fidelity: true,
            migrate: Some((1, 5)),
            status,
            replayed: 0,
            total: 0,
            error: None,
            requested_at: 1,
            restarts: 0,
        }
    }

    /// A spec with nothing declared.
    pub(crate) fn bare_spec() -> Spec {
        Spec {
            description: String::new(),
            entry: Vec::new(),
            exit_on: Vec::new(),
            milestones: Vec::new(),
            goal: None,
            reentry: crate::model::Reentry::Never,
            channels: Vec::new(),
            experiments: Vec::new(),
            audience: Default::default(),
        }
    }

    pub(crate) fn parts() -> BacktestParts {
        let replay = |sends| ReplayParts {
            spec: bare_spec(),
            cells: vec![Cell::default()],
            sends,
        };
        BacktestParts {
            candidate: replay(3),
            live: replay(2),
        }
    }

    pub(crate) fn result() -> BacktestResult {
        let mut report = waymark_api::reports::Report::default();
        report.overall.entered = 3;
        report.by_version.insert(1, report.overall.clone());
        BacktestResult {
            candidate_version: 2,
            candidate_digest: Some("ab".into()),
            replay_parts: 1,
            live_version: 1,
            candidate: report.clone(),
            live: report,
            diff: BacktestDiff {
                milestones: vec![],
                exits_by_reason: Default::default(),
                sends_by_channel: Default::default(),
                sends_per_customer: Compared {
                    live: 1.5,
                    candidate: 2.0,
                },
                paths: vec![],
                customers_changed: 0,
                customers: vec![],
            },
            fidelity: None,
            migration: None,
        }
    }

    #[test]
    fn a_job_its_bytes_and_its_result_read_back_until_it_is_deleted() {
        let (_dir, store) = temp_store();
        let mut queued = job(&store, JobStatus::Queued);
        store.put_backtest("t", &queued, Some(b"wasm")).unwrap();
        let other = job(&store, JobStatus::Running);
        store.put_backtest("u", &other, None).unwrap();
        assert!(other.id > queued.id, "ids increase");
        assert_eq!(
            store.backtest("t", &queued.id).unwrap(),
            Some(queued.clone())
        );
        assert_eq!(store.backtest("u", &queued.id).unwrap(), None);
        assert_eq!(
            store
                .backtest_component("t", &queued.id)
                .unwrap()
                .as_deref(),
            Some(&b"wasm"[..])
        );
        let unfinished = store.unfinished_backtests().unwrap();
        assert_eq!(
            unfinished,
            vec![("t".to_string(), queued.clone()), ("u".into(), other)]
        );

        queued.status = JobStatus::Done;
        store
            .finish_backtest("t", &queued, Some((&result(), &parts())))
            .unwrap();
        assert_eq!(
            store.backtest_result("t", &queued.id).unwrap(),
            Some(result())
        );
        assert_eq!(
            store.backtest_parts("t", &queued.id).unwrap(),
            Some(parts())
        );
        assert_eq!(store.backtest_component("t", &queued.id).unwrap(), None);
        assert_eq!(store.tenant_backtests("t").unwrap(), vec![queued.clone()]);
        assert_eq!(store.unfinished_backtests().unwrap().len(), 1);

        store.delete_backtest("t", &queued.id).unwrap();
        assert_eq!(store.backtest("t", &queued.id).unwrap(), None);
        assert_eq!(store.backtest_parts("t", &queued.id).unwrap(), None);
        assert_eq!(store.backtest_result("t", &queued.id).unwrap(), None);
    }
}
