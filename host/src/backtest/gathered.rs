//! Pure: a backtest run on several partitions read as one (cluster mode, issue 16).
//!
//! A customer's recorded events are all in the customer's partition, and a backtest over
//! several partitions is one job per partition under one id, each replaying its own customers
//! (`docs/SCALING.md`, "Several partitions, as built"). Read together they are the backtest
//! one node would have run: the reports are added up from every partition's cells against
//! the spec (as a live report is), the diff is computed again from those reports and the
//! partitions' numbers of sends, and the changed customers, fidelity and migration of each
//! partition (disjoint sets of customers) are put together.

use crate::store::backtests::BacktestParts;
use serde::{Deserialize, Serialize};
use waymark_api::backtests::{Backtest, BacktestResult, BacktestStatus, Compared};

/// One partition's job as a partition answers it to the node gathering it: as the API shows
/// it, and for a done job what its result was added up from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionJob {
    pub backtest: Backtest,
    pub parts: Option<BacktestParts>,
}

/// Every partition's job (in partition order) as one backtest: failed if one failed (its
/// error named by partition), else cancelled if one was, done once all are (with the result
/// added up), queued while all are, running otherwise; progress added up. `Err` when a done
/// partition kept no parts for its result (it finished before a server that keeps them).
pub fn gathered(jobs: Vec<PartitionJob>) -> Result<Backtest, String> {
    let Some(first) = jobs.first() else {
        return Err("no partition answered".into());
    };
    let mut all = Backtest {
        result: None,
        error: None,
        replayed: 0,
        total: 0,
        restarts: 0,
        ..first.backtest.clone()
    };
    for job in &jobs {
        all.replayed += job.backtest.replayed;
        all.total += job.backtest.total;
        all.restarts += job.backtest.restarts;
    }
    let statuses: Vec<BacktestStatus> = jobs.iter().map(|j| j.backtest.status).collect();
    let failed = jobs
        .iter()
        .enumerate()
        .find(|(_, j)| j.backtest.status == BacktestStatus::Failed);
    all.status = if let Some((partition, job)) = failed {
        all.error = Some(format!(
            "partition {partition}: {}",
            job.backtest.error.as_deref().unwrap_or("failed")
        ));
        BacktestStatus::Failed
    } else if statuses.contains(&BacktestStatus::Cancelled) {
        BacktestStatus::Cancelled
    } else if statuses.iter().all(|s| *s == BacktestStatus::Done) {
        all.result = Some(result(&jobs)?);
        BacktestStatus::Done
    } else if statuses.iter().all(|s| *s == BacktestStatus::Queued) {
        BacktestStatus::Queued
    } else {
        BacktestStatus::Running
    };
    Ok(all)
}

/// The done partitions' results and parts as one result.
fn result(jobs: &[PartitionJob]) -> Result<BacktestResult, String> {
    let mut done = Vec::with_capacity(jobs.len());
    for (partition, job) in jobs.iter().enumerate() {
        match (&job.backtest.result, &job.parts) {
            (Some(result), Some(parts)) => done.push((result, parts)),
            _ => {
                return Err(format!(
                    "partition {partition}'s part of backtest {} is done without what its \
                     result adds up from (finished by an older server): start it again",
                    job.backtest.id
                ))
            }
        }
    }
    let (first, first_parts) = done[0];
    let (mut candidate_cells, mut live_cells) = (Vec::new(), Vec::new());
    let mut sends = Compared {
        live: 0,
        candidate: 0,
    };
    let (mut changed, mut customers) = (0, Vec::new());
    let (mut fidelity, mut migration) = (None, None::<waymark_api::journeys::MigrationStatus>);
    let mut replay_parts = 0;
    for (result, parts) in done {
        candidate_cells.extend(parts.candidate.cells.iter().cloned());
        live_cells.extend(parts.live.cells.iter().cloned());
        sends.candidate += parts.candidate.sends;
        sends.live += parts.live.sends;
        changed += result.diff.customers_changed;
        customers.extend(result.diff.customers.iter().cloned());
        fidelity = super::fidelity::add(fidelity, result.fidelity.clone());
        migration = match (migration, result.migration.clone()) {
            (Some(mut all), Some(part)) => {
                crate::api::add_up_migration(&mut all, part);
                Some(all)
            }
            (all, part) => all.or(part),
        };
        replay_parts += result.replay_parts;
    }
    let candidate = crate::report::cells::report(&first_parts.candidate.spec, &candidate_cells);
    let live = crate::report::cells::report(&first_parts.live.spec, &live_cells);
    Ok(BacktestResult {
        candidate_version: first.candidate_version,
        candidate_digest: first.candidate_digest.clone(),
        live_version: first.live_version,
        diff: super::diff::compared(&live.overall, &candidate.overall, sends, changed, customers),
        candidate: candidate.into(),
        live: live.into(),
        fidelity,
        migration,
        replay_parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::cells::{Cell, CellId, Counts};
    use crate::store::backtests::tests::bare_spec;
    use crate::store::backtests::ReplayParts;
    use waymark_api::backtests::{CustomerDiff, Divergence, Fidelity};

    fn cell(entered: i64) -> Cell {
        Cell {
            id: CellId {
                journey: "renewal".into(),
                version: 1,
                assignment: Vec::new(),
            },
            counts: Counts {
                entered,
                active: entered,
                ..Counts::default()
            },
            times: Default::default(),
        }
    }

    /// A partition's done job: `entered` customers on each side, `sends` live and twice as
    /// many by the candidate, `changed` customers listed as changed.
    fn done(id: &str, entered: i64, sends: u64, changed: &[&str]) -> PartitionJob {
        let replay = |sends| ReplayParts {
            spec: bare_spec(),
            cells: vec![cell(entered)],
            sends,
        };
        let parts = BacktestParts {
            candidate: replay(2 * sends),
            live: replay(sends),
        };
        let report = crate::report::cells::report(&bare_spec(), &[cell(entered)]);
        let customers: Vec<CustomerDiff> = changed
            .iter()
            .map(|c| CustomerDiff {
                customer: c.to_string(),
                live: Vec::new(),
                candidate: Vec::new(),
            })
            .collect();
        let result = BacktestResult {
            candidate_version: 2,
            candidate_digest: None,
            live_version: 1,
            diff: super::super::diff::compared(
                &report.overall,
                &report.overall,
                Compared {
                    live: sends,
                    candidate: 2 * sends,
                },
                customers.len() as u64,
                customers,
            ),
            candidate: report.clone().into(),
            live: report.into(),
            fidelity: Some(Fidelity {
                customers: entered as u64,
                identical: entered as u64 - changed.len() as u64,
                divergences: changed
                    .iter()
                    .map(|c| Divergence {
                        customer: c.to_string(),
                        at: 0,
                        what: "x".into(),
                    })
                    .collect(),
            }),
            migration: None,
            replay_parts: 1,
        };
        PartitionJob {
            backtest: Backtest {
                id: id.into(),
                journey: "renewal".into(),
                status: BacktestStatus::Done,
                replayed: entered as u64,
                total: entered as u64,
                restarts: 0,
                error: None,
                result: Some(result),
            },
            parts: Some(parts),
        }
    }

    #[test]
    fn partitions_done_add_up_to_the_backtest_of_all_their_customers() {
        let all = gathered(vec![
            done("bt_1", 3, 6, &["c9"]),
            done("bt_1", 1, 2, &["c1"]),
        ])
        .unwrap();
        assert_eq!(all.status, BacktestStatus::Done);
        assert_eq!((all.replayed, all.total), (4, 4));
        let result = all.result.unwrap();
        assert_eq!(result.live.overall.entered, 4);
        assert_eq!(result.candidate.overall.entered, 4);
        assert_eq!(result.replay_parts, 2);
        // 8 live sends and 16 by the candidate over 4 customers.
        assert_eq!(
            result.diff.sends_per_customer,
            Compared {
                live: 2.0,
                candidate: 4.0
            }
        );
        assert_eq!(result.diff.customers_changed, 2);
        let listed: Vec<&str> = result
            .diff
            .customers
            .iter()
            .map(|c| c.customer.as_str())
            .collect();
        assert_eq!(
            listed,
            ["c1", "c9"],
            "in customer order, as one node lists them"
        );
        let fidelity = result.fidelity.unwrap();
        assert_eq!((fidelity.customers, fidelity.identical), (4, 2));
        assert_eq!(fidelity.divergences[0].customer, "c1");
    }

    #[test]
    fn one_partition_still_running_failed_or_without_parts_says_so() {
        let mut running = done("bt_1", 2, 1, &[]);
        running.backtest.status = BacktestStatus::Running;
        running.backtest.result = None;
        running.parts = None;
        let all = gathered(vec![done("bt_1", 1, 1, &[]), running.clone()]).unwrap();
        assert_eq!(all.status, BacktestStatus::Running);
        assert!(all.result.is_none());

        let mut failed = running.clone();
        failed.backtest.status = BacktestStatus::Failed;
        failed.backtest.error = Some("the candidate trapped".into());
        let all = gathered(vec![running.clone(), failed]).unwrap();
        assert_eq!(all.status, BacktestStatus::Failed);
        assert_eq!(
            all.error.as_deref(),
            Some("partition 1: the candidate trapped")
        );

        let mut queued = running;
        queued.backtest.status = BacktestStatus::Queued;
        let all = gathered(vec![queued.clone(), queued]).unwrap();
        assert_eq!(all.status, BacktestStatus::Queued);

        let mut partless = done("bt_1", 1, 1, &[]);
        partless.parts = None;
        let error = gathered(vec![done("bt_1", 1, 1, &[]), partless]).unwrap_err();
        assert!(error.contains("partition 1"), "{error}");
    }
}
