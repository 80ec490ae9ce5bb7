//! Report aggregates ([`crate::report::cells`]): tree `report_cells`, two kinds of record.
//!
//! - `tenant␟journey␟version (u32 BE)␟shard (u16 BE)␟assignment (JSON)` → the cell's
//!   [`Counts`];
//! - the same key `␟milestone` → the cell's [`Times`] for that milestone.
//!
//! The assignment is the cell's experiment → arm pairs as a JSON array of pairs (JSON escapes
//! control characters, so it holds no separator). A cell is split by the shard of the worker
//! that writes it, so shard workers never write the same record: cells are sums, and a report
//! adds the parts up. Records are rewritten only when a report-visible part of an enrollment
//! changed, and a cell's times only when one of its enrollments reached a milestone.
//!
//! Written by [`commit_trigger`](super::Store::commit_trigger), in the transaction that writes
//! the enrollments the deltas come from; rebuilt from the enrollments by
//! [`Store::rebuild_report_aggregates`], which [`Store::open`] runs once on a data directory
//! written before aggregates existed (`meta` key `report_aggregates`).

use super::keys::{key, prefix, shard_of};
use super::kv::TransactionalTree;
use super::{abort, dec, enc, Store, StoreError, TxResult};
use crate::hash::SEP;
use crate::model::Enrollment;
use crate::report::cells::{Cell, CellDelta, CellId, Counts, Tally};
use crate::report::times::Times;
use std::collections::BTreeMap;

/// `meta` key: set once the aggregates hold every enrollment.
const BUILT: &str = "report_aggregates";

/// What the cells of this binary count: 1, the funnels; 2, stalls per milestone too. Cells of
/// another version are rebuilt from the enrollments at start ([`Store::ensure_report_aggregates`]),
/// since their deltas would subtract what the old cells never added.
const AGGREGATES_VERSION: u8 = 2;

/// A cell's key: journey, version, shard and assignment.
fn cell_key(tenant: &str, cell: &CellId, shard: u16) -> Vec<u8> {
    let assignment = serde_json::to_vec(&cell.assignment).unwrap_or_default();
    key(&[
        tenant.as_bytes(),
        cell.journey.as_bytes(),
        &cell.version.to_be_bytes(),
        &shard.to_be_bytes(),
        &assignment,
    ])
}

/// The key of a cell's times for one milestone.
fn times_key(cell_key: &[u8], milestone: &str) -> Vec<u8> {
    key(&[cell_key, milestone.as_bytes()])
}

/// Applies deltas (already merged per cell) to the cells of `shard`, inside a transaction.
pub(super) fn apply(
    cells: &TransactionalTree,
    tenant: &str,
    shard: u16,
    deltas: &[CellDelta],
) -> TxResult<()> {
    for d in deltas {
        let k = cell_key(tenant, &d.cell, shard);
        if !d.counts.is_zero() {
            let mut counts: Counts = match cells.get(&k)? {
                Some(v) => dec(&v).map_err(abort)?,
                None => Counts::default(),
            };
            counts.add(&d.counts, 1);
            if counts.is_zero() {
                cells.delete(k.as_slice())?;
            } else {
                cells.put(k.as_slice(), enc(&counts))?;
            }
        }
        for (milestone, samples) in &d.times {
            let tk = times_key(&k, milestone);
            let mut times: Times = match cells.get(&tk)? {
                Some(v) => dec(&v).map_err(abort)?,
                None => Times::default(),
            };
            times.add(samples);
            if times.is_empty() {
                cells.delete(tk.as_slice())?;
            } else {
                cells.put(tk.as_slice(), enc(&times))?;
            }
        }
    }
    Ok(())
}

/// What a report key after a journey's prefix names: version, shard, the experiment
/// assignment, and for a times record the milestone.
type ParsedKey = (u32, u16, Vec<(String, String)>, Option<String>);

/// What a key after a journey's prefix names: the cell (version, shard, assignment) and, for a
/// times record, the milestone.
fn parse_key(rest: &[u8]) -> Option<ParsedKey> {
    let version = u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?);
    let shard = u16::from_be_bytes(rest.get(5..7)?.try_into().ok()?);
    let tail = rest.get(8..)?;
    let (assignment, milestone) = match tail.iter().position(|b| *b == SEP) {
        Some(i) => (
            &tail[..i],
            Some(String::from_utf8_lossy(&tail[i + 1..]).into_owned()),
        ),
        None => (tail, None),
    };
    Some((
        version,
        shard,
        serde_json::from_slice(assignment).ok()?,
        milestone,
    ))
}

impl Store {
    /// Every cell of one journey of a tenant, each part (shard) separately.
    pub fn report_cells(&self, tenant: &str, journey: &str) -> Result<Vec<Cell>, StoreError> {
        let journey_prefix = prefix(&[tenant.as_bytes(), journey.as_bytes()]);
        let mut cells: Vec<Cell> = Vec::new();
        for kv in self.report_cells.scan_prefix(&journey_prefix) {
            let (k, v) = kv?;
            let Some((version, _, assignment, milestone)) = parse_key(&k[journey_prefix.len()..])
            else {
                return Err(StoreError::Corrupt(format!("report cell key {k:?}")));
            };
            let id = CellId {
                journey: journey.to_string(),
                version,
                assignment,
            };
            // A cell's times follow its counts (its key is their prefix), but a cell whose
            // counts are all zero has no counts record.
            if cells
                .last()
                .is_none_or(|c| c.id != id || milestone.is_none())
            {
                cells.push(Cell {
                    id,
                    ..Cell::default()
                });
            }
            let Some(cell) = cells.last_mut() else {
                continue;
            };
            match milestone {
                None => cell.counts = dec(&v)?,
                Some(m) => {
                    cell.times.insert(m, dec(&v)?);
                }
            }
        }
        Ok(cells)
    }

    /// Recomputes every cell from the enrollments, and says how many it counted. For a data
    /// directory written before aggregates existed, or to repair them; no shard worker may run
    /// meanwhile (their deltas would be lost or counted twice).
    pub fn rebuild_report_aggregates(&self) -> Result<u64, StoreError> {
        self.meta.remove(BUILT)?;
        self.report_cells.clear()?;
        let mut cells: BTreeMap<(String, u16, CellId), Cell> = BTreeMap::new();
        let mut counted = 0;
        for kv in self.enrollments.iter() {
            counted += 1;
            let (k, v) = kv?;
            let tenant = k.split(|b| *b == SEP).next().unwrap_or_default();
            let tenant = String::from_utf8_lossy(tenant).into_owned();
            let enrollment: Enrollment = dec(&v)?;
            let shard = shard_of(&tenant, &enrollment.customer, self.shards);
            for d in crate::report::cells::delta(None, Tally::of(&enrollment)) {
                cells
                    .entry((tenant.clone(), shard, d.cell.clone()))
                    .or_default()
                    .apply(&d);
            }
        }
        let mut batch = crate::store::kv::Batch::default();
        for ((tenant, shard, id), cell) in &cells {
            let k = cell_key(tenant, id, *shard);
            for (milestone, times) in &cell.times {
                batch.insert(times_key(&k, milestone), enc(times));
            }
            batch.insert(k, enc(&cell.counts));
        }
        self.report_cells.apply_batch(batch)?;
        self.meta.insert(BUILT, &[AGGREGATES_VERSION])?;
        self.db.flush()?;
        Ok(counted)
    }

    /// Builds the aggregates if this data directory has none yet (written before they existed),
    /// or has them of another [`AGGREGATES_VERSION`].
    pub(super) fn ensure_report_aggregates(&self) -> Result<(), StoreError> {
        if self.meta.get(BUILT)?.as_deref() != Some(&[AGGREGATES_VERSION][..]) {
            let started = std::time::Instant::now();
            let enrollments = self.rebuild_report_aggregates()?;
            if enrollments > 0 {
                tracing::info!(
                    enrollments,
                    seconds = started.elapsed().as_secs_f64(),
                    "report aggregates built from the stored enrollments"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};
    use super::*;
    use crate::model::{EnrollmentStatus, MilestoneHit, VariantAssignment};
    use crate::report::cells::delta;

    /// Commits `after` for its customer with the deltas of replacing `before`.
    fn write(store: &Store, before: Option<&Enrollment>, after: &Enrollment) {
        let mut commit = fixtures::commit(store, "t", &after.customer);
        commit.report_deltas = delta(before.map(Tally::of).as_ref(), Tally::of(after));
        commit.enrollments.push(after.clone());
        store.commit_trigger(&commit).unwrap();
    }

    fn journey_report(store: &Store) -> crate::report::Report {
        let spec = fixtures::spec();
        crate::report::cells::report(&spec, &store.report_cells("t", "welcome").unwrap())
    }

    fn oracle(store: &Store) -> crate::report::Report {
        let enrollments = store.journey_enrollments("t", "welcome").unwrap();
        crate::report::report(&fixtures::spec(), &enrollments)
    }

    #[test]
    fn committed_deltas_give_the_report_of_the_committed_enrollments() {
        let (_dir, store) = temp_store();
        let mut alice = fixtures::enrollment("alice", "welcome", 1);
        write(&store, None, &alice);
        let bob = fixtures::enrollment("bob", "welcome", 1);
        write(&store, None, &bob);
        let before = alice.clone();
        alice.milestones.push(MilestoneHit {
            name: "activated".into(),
            at: 60,
        });
        alice.status = EnrollmentStatus::Completed;
        alice.variants.push(VariantAssignment {
            experiment: "copy".into(),
            arm: "a".into(),
        });
        write(&store, Some(&before), &alice);
        // Another journey's cells are not this one's.
        write(&store, None, &fixtures::enrollment("alice", "winback", 1));

        let report = journey_report(&store);
        assert_eq!(report, oracle(&store));
        assert_eq!((report.overall.entered, report.overall.completed), (2, 1));
        assert_eq!(
            report.overall.milestones[0].median_time_to_reach_ms,
            Some(60)
        );
        assert_eq!(report.by_arm["copy"]["a"].completed, 1);
        assert_eq!(report.by_arm["copy"]["unassigned"].entered, 1);
    }

    #[test]
    fn a_rebuild_recomputes_what_the_deltas_kept() {
        let (_dir, store) = temp_store();
        let mut alice = fixtures::enrollment("alice", "welcome", 1);
        write(&store, None, &alice);
        let before = alice.clone();
        alice.milestones.push(MilestoneHit {
            name: "activated".into(),
            at: 5,
        });
        write(&store, Some(&before), &alice);
        write(&store, None, &fixtures::enrollment("bob", "welcome", 2));
        let kept = store.report_cells("t", "welcome").unwrap();

        store.rebuild_report_aggregates().unwrap();
        assert_eq!(store.report_cells("t", "welcome").unwrap(), kept);
        assert_eq!(journey_report(&store), oracle(&store));
    }

    #[test]
    fn a_directory_without_aggregates_gets_them_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 2, 8 << 20).unwrap();
            // As an older version wrote it: enrollments without cells, no flag.
            let mut commit = fixtures::commit(&store, "t", "alice");
            commit
                .enrollments
                .push(fixtures::enrollment("alice", "welcome", 1));
            store.commit_trigger(&commit).unwrap();
            store.meta.remove(BUILT).unwrap();
            store.report_cells.clear().unwrap();
            store.db.flush().unwrap();
        }
        let store = super::super::tests::reopen(dir.path());
        assert_eq!(journey_report(&store).overall.entered, 1);
        assert_eq!(journey_report(&store), oracle(&store));
    }

    #[test]
    fn stalls_are_counted_per_milestone_now_and_ever() {
        let (_dir, store) = temp_store();
        let mut alice = fixtures::enrollment("alice", "welcome", 1);
        write(&store, None, &alice);
        let before = alice.clone();
        alice.stalled_on = Some("activated".into());
        alice.stalls.push(MilestoneHit {
            name: "activated".into(),
            at: 50,
        });
        write(&store, Some(&before), &alice);
        let stalls = |store: &Store| {
            let m = &journey_report(store).overall.milestones[0];
            (m.stalled_now, m.stalled_ever)
        };
        assert_eq!(stalls(&store), (1, 1));
        assert_eq!(journey_report(&store), oracle(&store));
        // Reaching it ends the stall now; it was stalled on it all the same.
        let before = alice.clone();
        alice.stalled_on = None;
        alice.milestones.push(MilestoneHit {
            name: "activated".into(),
            at: 60,
        });
        write(&store, Some(&before), &alice);
        assert_eq!(stalls(&store), (0, 1));
        assert_eq!(journey_report(&store), oracle(&store));
    }

    #[test]
    fn aggregates_of_an_older_version_are_rebuilt_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 2, 8 << 20).unwrap();
            let mut stalled = fixtures::enrollment("alice", "welcome", 1);
            stalled.stalled_on = Some("activated".into());
            stalled.stalls.push(MilestoneHit {
                name: "activated".into(),
                at: 50,
            });
            let mut commit = fixtures::commit(&store, "t", "alice");
            commit.enrollments.push(stalled);
            store.commit_trigger(&commit).unwrap();
            // Cells as version 1 kept them: no stalls per milestone (here: none at all).
            store.meta.insert(BUILT, &[1u8]).unwrap();
            store.db.flush().unwrap();
        }
        let store = super::super::tests::reopen(dir.path());
        assert_eq!(journey_report(&store).overall.milestones[0].stalled_now, 1);
        assert_eq!(journey_report(&store), oracle(&store));
    }

    #[test]
    fn cell_keys_keep_their_on_disk_layout() {
        let id = CellId {
            journey: "welcome".into(),
            version: 2,
            assignment: vec![("copy".into(), "a".into())],
        };
        let k = cell_key("t", &id, 3);
        assert_eq!(
            k,
            b"t\x1fwelcome\x1f\0\0\0\x02\x1f\0\x03\x1f[[\"copy\",\"a\"]]".to_vec()
        );
        let rest = &k[b"t\x1fwelcome\x1f".len()..];
        assert_eq!(parse_key(rest), Some((2, 3, id.assignment.clone(), None)));
        let tk = times_key(&k, "activated");
        assert_eq!(
            parse_key(&tk[b"t\x1fwelcome\x1f".len()..]),
            Some((2, 3, id.assignment, Some("activated".into())))
        );
    }

    /// A synthetic enrollment: version 1 or 2, arm `a`, `b` or none, mostly active, reaching
    /// `activated` after between a minute and a month for about half of them.
    fn synthetic(i: u64) -> Enrollment {
        let mut state = i;
        let mut next = || crate::hash::splitmix64(&mut state);
        let mut e = fixtures::enrollment(&format!("c{i}"), "welcome", 1);
        e.version = 1 + (next() % 2) as u32;
        match next() % 3 {
            0 => {}
            r => e.variants.push(VariantAssignment {
                experiment: "copy".into(),
                arm: if r == 1 { "a" } else { "b" }.into(),
            }),
        }
        e.channels.entry("email".into()).or_default().sent = 1 + next() % 3;
        if next() % 2 == 0 {
            // Log-uniform between a minute and a month.
            let (low, high) = (60_000f64.ln(), 2_592e6f64.ln());
            let fraction = (next() % 1_000_000) as f64 / 1_000_000.0;
            e.milestones.push(MilestoneHit {
                name: "activated".into(),
                at: (low + fraction * (high - low)).exp() as i64,
            });
            e.status = EnrollmentStatus::Completed;
        } else if next() % 5 == 0 {
            e.status = EnrollmentStatus::Exited;
            e.exit_reason = Some("churned".into());
        }
        e
    }

    /// The figure for issue 10 ("a report of a million enrollments in 50 ms"): writes
    /// `WAYMARK_REPORT_ENROLLMENTS` (default 1,000,000) synthetic enrollments, then times the
    /// report as the API computed it before (every enrollment of the tenant read and measured),
    /// the rebuild of the aggregates (an upgraded data directory's first start), and the report
    /// from the aggregates. Prints the times; asserts only that both reports agree (medians
    /// within 1 %). `cargo test -p waymark-host --lib -- --ignored --nocapture million`.
    #[test]
    #[ignore = "a measurement: minutes, and a gigabyte of temporary disk"]
    fn a_report_of_a_million_enrollments_reads_a_few_cells() {
        let n: u64 = std::env::var("WAYMARK_REPORT_ENROLLMENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let (_dir, store) = temp_store();
        let started = std::time::Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let mut batch = crate::store::kv::Batch::default();
            for i in chunk {
                let e = synthetic(*i);
                let k = super::super::enrollments::enrollment_key("t", &e.customer, "welcome", 1);
                batch.insert(k, enc(&e));
            }
            store.enrollments.apply_batch(batch).unwrap();
        }
        eprintln!("{n} enrollments written in {:?}", started.elapsed());

        let spec = fixtures::spec();
        let started = std::time::Instant::now();
        let enrollments = store.journey_enrollments("t", "welcome").unwrap();
        let scanned = crate::report::report(&spec, &enrollments);
        eprintln!("report from the enrollments: {:?}", started.elapsed());
        drop(enrollments);

        let started = std::time::Instant::now();
        store.rebuild_report_aggregates().unwrap();
        eprintln!("aggregates rebuilt in {:?}", started.elapsed());

        let mut times = Vec::new();
        let mut from_cells = None;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let cells = store.report_cells("t", "welcome").unwrap();
            let read = started.elapsed();
            from_cells = Some((cells.len(), crate::report::cells::report(&spec, &cells)));
            times.push((started.elapsed(), read));
        }
        times.sort();
        let (cells, from_cells) = from_cells.unwrap();
        eprintln!(
            "report from {cells} cells (counts and times records): median {:?} (of which reading \
             {:?}), slowest {:?} of 20",
            times[10].0, times[10].1, times[19].0
        );

        let median = |r: &crate::report::Report| r.overall.milestones[0].median_time_to_reach_ms;
        let (exact, approx) = (median(&scanned).unwrap(), median(&from_cells).unwrap());
        eprintln!("median time to activate: exact {exact} ms, from cells {approx} ms");
        assert!((exact - approx).abs() * 128 <= exact);
        let without_medians = |mut r: crate::report::Report| {
            let funnels = std::iter::once(&mut r.overall)
                .chain(r.by_version.values_mut())
                .chain(r.by_arm.values_mut().flat_map(|arms| arms.values_mut()));
            for f in funnels {
                for m in &mut f.milestones {
                    m.median_time_to_reach_ms = None;
                }
            }
            r
        };
        assert_eq!(without_medians(from_cells), without_medians(scanned));
    }

    /// What report deltas add to a commit (the figure for the throughput half of issue 10):
    /// `WAYMARK_REPORT_COMMITS` (default 20,000) commits of one enrollment whose channel summary
    /// changed (most triggers' report-visible change), without and then with the deltas and
    /// the tallies they come from, twice. Prints the time per commit.
    #[test]
    #[ignore = "a measurement"]
    fn what_report_deltas_add_to_a_commit() {
        let n: u64 = std::env::var("WAYMARK_REPORT_COMMITS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let (_dir, store) = temp_store();
        for with_deltas in [false, true, false, true] {
            let started = std::time::Instant::now();
            for i in 0..n {
                let before = synthetic(i % 1_000);
                let mut after = before.clone();
                after.channels.entry("email".into()).or_default().delivered += 1;
                let mut commit = fixtures::commit(&store, "t", &after.customer);
                if with_deltas {
                    commit.report_deltas = delta(Some(&Tally::of(&before)), Tally::of(&after));
                }
                commit.enrollments.push(after);
                store.commit_trigger(&commit).unwrap();
            }
            eprintln!(
                "{n} commits {} report deltas: {:.1} µs each",
                if with_deltas { "with" } else { "without" },
                started.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        }
    }
}
