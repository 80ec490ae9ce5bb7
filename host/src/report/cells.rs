//! Report aggregates: what the enrollments of a journey add up to, kept up to date as triggers
//! commit, so that a report reads a handful of records however many customers entered.
//! [`super::report`] computes the same report from the enrollments themselves; it is the
//! specification this module is tested against.
//!
//! An enrollment counts in exactly one **cell** ([`CellId`]): its journey, version and
//! experiment assignment (the first arm of each experiment it was assigned, by experiment). A
//! cell holds everything a [`Funnel`] needs in a form that adds up ([`Counts`], and per
//! milestone the [`Times`] to reach it). Every funnel of a report is the sum of the cells of its
//! group: overall all of them, a version its own, an arm those whose assignment has that arm
//! (`unassigned`: those without the experiment). [`report`] therefore costs the number of
//! cells, not of enrollments.
//!
//! Cells change by [`CellDelta`]s. Whoever writes an enrollment knows the state it replaces:
//! [`delta`] is the [`Tally`] of the new state minus the tally of the old one (`None` for a new
//! enrollment). Everything in a cell is a signed count, so a delta takes an old contribution
//! away exactly as it adds the new one (a path that grew, a status that changed, an assignment
//! that moved the enrollment to another cell), and deltas add up in any order and grouping:
//! [`merge`] sums a batch's deltas per cell before they are written, and the store may split a
//! cell into parts (one per shard) that only a report adds together.

use super::times::{bump, Samples, Times};
use super::{Funnel, MilestoneStats, PathCount, Report, TOP_PATHS};
use crate::model::{ChannelSummary, Enrollment, EnrollmentStatus, Spec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The cell an enrollment counts in.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellId {
    pub journey: String,
    pub version: u32,
    /// Experiment → arm: the enrollment's first assignment of each experiment, ordered by
    /// experiment.
    pub assignment: Vec<(String, String)>,
}

impl CellId {
    /// The arm of `experiment` these enrollments were assigned, if any.
    pub fn arm(&self, experiment: &str) -> Option<&str> {
        self.assignment
            .iter()
            .find(|(e, _)| e == experiment)
            .map(|(_, arm)| arm.as_str())
    }
}

/// Everything a funnel counts, for the enrollments of a cell (or the changes of a delta).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub entered: i64,
    pub active: i64,
    pub completed: i64,
    pub exited: i64,
    pub exited_by_reason: BTreeMap<String, i64>,
    pub stalled_now: i64,
    pub stalled_ever: i64,
    /// Active enrollments stalled right now, by the milestone they are stalled on.
    #[serde(default)]
    pub stalled_now_on: BTreeMap<String, i64>,
    /// Enrollments that ever stalled on each milestone (once per milestone, however often).
    #[serde(default)]
    pub stalled_ever_on: BTreeMap<String, i64>,
    pub channels: BTreeMap<String, ChannelSums>,
    /// Enrollments that reached each milestone (any milestone, declared by any version).
    pub reached: BTreeMap<String, i64>,
    /// Enrollments by the sequence of milestones they reached, in order.
    #[serde(with = "path_counts")]
    pub paths: BTreeMap<Vec<String>, i64>,
}

/// A channel's summaries added up, and how many enrollments have one for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSums {
    /// Enrollments with a summary for this channel: a report lists the channel while any has.
    pub enrollments: i64,
    pub sent: i64,
    pub delivered: i64,
    pub failed: i64,
    pub suppressed: i64,
    pub opened: i64,
    pub clicked: i64,
    pub replied: i64,
    pub bounced: i64,
    pub unsubscribed: i64,
}

/// What to add to one cell: counts, and per milestone the times to reach it added or taken away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellDelta {
    pub cell: CellId,
    pub counts: Counts,
    pub times: BTreeMap<String, Samples>,
}

/// What one enrollment contributes to its cell: the state a write replaces, taken before the
/// enrollment changes, and the state it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally(CellDelta);

/// A cell as stored: its counts and its milestones' times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub id: CellId,
    pub counts: Counts,
    pub times: BTreeMap<String, Times>,
}

impl ChannelSums {
    fn of(s: &ChannelSummary) -> ChannelSums {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        ChannelSums {
            enrollments: 1,
            sent: n(s.sent),
            delivered: n(s.delivered),
            failed: n(s.failed),
            suppressed: n(s.suppressed),
            opened: n(s.opened),
            clicked: n(s.clicked),
            replied: n(s.replied),
            bounced: n(s.bounced),
            unsubscribed: n(s.unsubscribed),
        }
    }

    fn add(&mut self, o: &ChannelSums, sign: i64) {
        self.enrollments += sign * o.enrollments;
        self.sent += sign * o.sent;
        self.delivered += sign * o.delivered;
        self.failed += sign * o.failed;
        self.suppressed += sign * o.suppressed;
        self.opened += sign * o.opened;
        self.clicked += sign * o.clicked;
        self.replied += sign * o.replied;
        self.bounced += sign * o.bounced;
        self.unsubscribed += sign * o.unsubscribed;
    }

    fn is_zero(&self) -> bool {
        *self == ChannelSums::default()
    }

    fn summary(&self) -> ChannelSummary {
        let n = |v: i64| v.max(0) as u64;
        ChannelSummary {
            sent: n(self.sent),
            delivered: n(self.delivered),
            failed: n(self.failed),
            suppressed: n(self.suppressed),
            opened: n(self.opened),
            clicked: n(self.clicked),
            replied: n(self.replied),
            bounced: n(self.bounced),
            unsubscribed: n(self.unsubscribed),
        }
    }
}

impl Counts {
    /// Adds `sign` times `o`; entries that come to zero are dropped.
    pub fn add(&mut self, o: &Counts, sign: i64) {
        self.entered += sign * o.entered;
        self.active += sign * o.active;
        self.completed += sign * o.completed;
        self.exited += sign * o.exited;
        self.stalled_now += sign * o.stalled_now;
        self.stalled_ever += sign * o.stalled_ever;
        for (reason, n) in &o.exited_by_reason {
            bump(&mut self.exited_by_reason, reason, sign * n);
        }
        for (milestone, n) in &o.stalled_now_on {
            bump(&mut self.stalled_now_on, milestone, sign * n);
        }
        for (milestone, n) in &o.stalled_ever_on {
            bump(&mut self.stalled_ever_on, milestone, sign * n);
        }
        for (milestone, n) in &o.reached {
            bump(&mut self.reached, milestone, sign * n);
        }
        for (path, n) in &o.paths {
            bump(&mut self.paths, path, sign * n);
        }
        for (channel, sums) in &o.channels {
            let mine = match self.channels.get_mut(channel) {
                Some(mine) => mine,
                None => self.channels.entry(channel.clone()).or_default(),
            };
            mine.add(sums, sign);
            if mine.is_zero() {
                self.channels.remove(channel);
            }
        }
    }

    /// Nothing counted: a cell that holds no enrollment, a delta that changes nothing.
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

impl CellDelta {
    /// Adds `sign` times `o` (of the same cell).
    fn add(&mut self, o: &CellDelta, sign: i64) {
        self.counts.add(&o.counts, sign);
        for (milestone, samples) in &o.times {
            let mine = self.times.entry(milestone.clone()).or_default();
            for (t, n) in samples {
                bump(mine, t, sign * n);
            }
            if mine.is_empty() {
                self.times.remove(milestone);
            }
        }
    }

    /// Changes nothing.
    pub fn is_empty(&self) -> bool {
        self.counts.is_zero() && self.times.is_empty()
    }
}

impl Tally {
    /// What `e` contributes to its cell: one enrollment, its status (and exit reason), its
    /// stalls, its channel summaries, each milestone it reached with the time from entering to
    /// reaching it, and its path (milestones in the order reached), exactly as
    /// [`super::report`] counts them.
    pub fn of(e: &Enrollment) -> Tally {
        let mut assignment: Vec<(String, String)> = Vec::new();
        for v in &e.variants {
            if !assignment.iter().any(|(x, _)| *x == v.experiment) {
                assignment.push((v.experiment.clone(), v.arm.clone()));
            }
        }
        assignment.sort();
        let mut counts = Counts {
            entered: 1,
            stalled_now: i64::from(e.is_active() && e.stalled_on.is_some()),
            stalled_ever: i64::from(!e.stalls.is_empty()),
            ..Counts::default()
        };
        if let (true, Some(milestone)) = (e.is_active(), &e.stalled_on) {
            counts.stalled_now_on.insert(milestone.clone(), 1);
        }
        for stall in &e.stalls {
            counts.stalled_ever_on.insert(stall.name.clone(), 1);
        }
        match e.status {
            EnrollmentStatus::Active => counts.active = 1,
            EnrollmentStatus::Completed => counts.completed = 1,
            EnrollmentStatus::Exited => {
                counts.exited = 1;
                let reason = e.exit_reason.clone().unwrap_or_else(|| "unknown".into());
                counts.exited_by_reason.insert(reason, 1);
            }
        }
        for (channel, summary) in &e.channels {
            counts
                .channels
                .insert(channel.clone(), ChannelSums::of(summary));
        }
        let mut times = BTreeMap::new();
        for hit in &e.milestones {
            // A name counts once, at its first hit, as `Enrollment::milestone` finds it.
            if !counts.reached.contains_key(&hit.name) {
                counts.reached.insert(hit.name.clone(), 1);
                times.insert(
                    hit.name.clone(),
                    Samples::from([(hit.at - e.entered_at, 1)]),
                );
            }
        }
        let mut hits: Vec<_> = e.milestones.iter().collect();
        hits.sort_by_key(|m| m.at);
        counts
            .paths
            .insert(hits.iter().map(|m| m.name.clone()).collect(), 1);
        Tally(CellDelta {
            cell: CellId {
                journey: e.journey.clone(),
                version: e.version,
                assignment,
            },
            counts,
            times,
        })
    }
}

/// What writing an enrollment whose contribution is now `after` does to the cells, when it
/// replaces one whose contribution was `before` (`None`: a new enrollment). One delta when the
/// enrollment stays in its cell, two when it moved, none when nothing a report counts changed.
pub fn delta(before: Option<&Tally>, after: Tally) -> Vec<CellDelta> {
    if before == Some(&after) {
        return Vec::new();
    }
    let mut added = after.0;
    let mut out = Vec::with_capacity(2);
    match before {
        Some(Tally(old)) if old.cell == added.cell => added.add(old, -1),
        Some(Tally(old)) => {
            let mut removed = CellDelta {
                cell: old.cell.clone(),
                ..CellDelta::default()
            };
            removed.add(old, -1);
            out.push(removed);
        }
        None => {}
    }
    out.push(added);
    out.retain(|d| !d.is_empty());
    out
}

/// Sums deltas per cell, dropping those that cancel out: what a batch of triggers writes.
pub fn merge<'a>(deltas: impl IntoIterator<Item = &'a CellDelta>) -> Vec<CellDelta> {
    let mut cells: BTreeMap<&CellId, CellDelta> = BTreeMap::new();
    for d in deltas {
        cells
            .entry(&d.cell)
            .or_insert_with(|| CellDelta {
                cell: d.cell.clone(),
                ..CellDelta::default()
            })
            .add(d, 1);
    }
    cells.into_values().filter(|d| !d.is_empty()).collect()
}

impl Cell {
    /// Applies a delta of this cell.
    pub fn apply(&mut self, d: &CellDelta) {
        self.counts.add(&d.counts, 1);
        for (milestone, samples) in &d.times {
            let times = self.times.entry(milestone.clone()).or_default();
            times.add(samples);
            if times.is_empty() {
                self.times.remove(milestone);
            }
        }
    }
}

/// One group of cells added up.
#[derive(Default)]
struct Group {
    counts: Counts,
    times: BTreeMap<String, Times>,
}

impl Group {
    fn add(&mut self, cell: &Cell, spec: &Spec) {
        self.counts.add(&cell.counts, 1);
        for m in &spec.milestones {
            if let Some(times) = cell.times.get(&m.name) {
                self.times.entry(m.name.clone()).or_default().merge(times);
            }
        }
    }

    fn funnel(&self, spec: &Spec) -> Funnel {
        let c = &self.counts;
        let n = |v: i64| v.max(0) as u64;
        let mut f = Funnel {
            entered: n(c.entered),
            active: n(c.active),
            completed: n(c.completed),
            exited: n(c.exited),
            exited_by_reason: c
                .exited_by_reason
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(reason, v)| (reason.clone(), n(*v)))
                .collect(),
            stalled_now: n(c.stalled_now),
            stalled_ever: n(c.stalled_ever),
            milestones: Vec::with_capacity(spec.milestones.len()),
            channels: c
                .channels
                .iter()
                .filter(|(_, s)| s.enrollments > 0)
                .map(|(channel, s)| (channel.clone(), s.summary()))
                .collect(),
            paths: Vec::new(),
        };
        let mut previous = f.entered;
        for m in &spec.milestones {
            let reached = n(c.reached.get(&m.name).copied().unwrap_or(0));
            let on = |counts: &BTreeMap<String, i64>| n(counts.get(&m.name).copied().unwrap_or(0));
            f.milestones.push(MilestoneStats {
                name: m.name.clone(),
                reached,
                conversion: (previous > 0).then(|| reached as f64 / previous as f64),
                median_time_to_reach_ms: self.times.get(&m.name).and_then(Times::median),
                stalled_now: on(&c.stalled_now_on),
                stalled_ever: on(&c.stalled_ever_on),
            });
            previous = reached;
        }
        let mut paths: Vec<PathCount> = c
            .paths
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(path, v)| PathCount {
                path: path.clone(),
                customers: n(*v),
            })
            .collect();
        paths.sort_by(|a, b| b.customers.cmp(&a.customers).then(a.path.cmp(&b.path)));
        paths.truncate(TOP_PATHS);
        f.paths = paths;
        f
    }
}

/// The report of one journey from its cells, against the latest `spec` (its milestones and
/// experiments define the rows), as [`super::report`] computes it from the enrollments.
pub fn report(spec: &Spec, cells: &[Cell]) -> Report {
    let mut overall = Group::default();
    let mut by_version: BTreeMap<u32, Group> = BTreeMap::new();
    let mut by_arm: Vec<BTreeMap<&str, Group>> = spec
        .experiments
        .iter()
        .map(|x| {
            x.arms
                .iter()
                .map(|a| (a.as_str(), Group::default()))
                .collect()
        })
        .collect();
    for cell in cells {
        overall.add(cell, spec);
        by_version
            .entry(cell.id.version)
            .or_default()
            .add(cell, spec);
        for (experiment, arms) in spec.experiments.iter().zip(&mut by_arm) {
            let arm = cell.id.arm(&experiment.name).unwrap_or("unassigned");
            arms.entry(arm).or_default().add(cell, spec);
        }
    }
    let by_arm: BTreeMap<String, BTreeMap<String, Funnel>> = spec
        .experiments
        .iter()
        .zip(by_arm)
        .map(|(experiment, arms)| {
            let funnels = arms
                .into_iter()
                .filter(|(arm, g)| g.counts.entered > 0 || experiment.arms.iter().any(|a| a == arm))
                .map(|(arm, g)| (arm.to_string(), g.funnel(spec)))
                .collect();
            (experiment.name.clone(), funnels)
        })
        .collect();
    Report {
        overall: overall.funnel(spec),
        // A version or an undeclared arm is listed while it has enrollments; declared arms
        // always are.
        by_version: by_version
            .into_iter()
            .filter(|(_, g)| g.counts.entered > 0)
            .map(|(v, g)| (v, g.funnel(spec)))
            .collect(),
        experiments: super::experiments::compare(spec, &by_arm),
        by_arm,
    }
}

/// Paths as a list of (path, count) pairs: a map keyed by a list has no JSON form.
mod path_counts {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<Vec<String>, i64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(&Vec<String>, &i64)> = m.iter().collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Vec<String>, i64>, D::Error> {
        Ok(Vec::<(Vec<String>, i64)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::enroll;
    use crate::model::{
        ExperimentSpec, MilestoneHit, MilestoneSpec, Millis, Reentry, VariantAssignment,
    };
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn spec() -> Spec {
        Spec {
            description: "onboarding".into(),
            entry: vec![],
            exit_on: vec![],
            milestones: ["first_login", "first_value"]
                .iter()
                .map(|n| MilestoneSpec {
                    name: n.to_string(),
                    stall_after: None,
                })
                .collect(),
            goal: Some("first_value".into()),
            reentry: Reentry::Never,
            channels: vec!["email".into(), "sms".into()],
            experiments: vec![ExperimentSpec {
                name: "copy".into(),
                arms: vec!["a".into(), "b".into()],
                allocation: Default::default(),
            }],
            audience: Default::default(),
        }
    }

    /// Cells kept as the store keeps them: split into parts (by shard), each changed by deltas.
    #[derive(Default)]
    struct Cells(HashMap<(CellId, u16), Cell>);

    impl Cells {
        fn apply(&mut self, part: u16, deltas: &[CellDelta]) {
            for d in merge(deltas) {
                let cell = self.0.entry((d.cell.clone(), part)).or_default();
                cell.id = d.cell.clone();
                cell.apply(&d);
            }
        }

        fn report(&self, spec: &Spec) -> Report {
            let cells: Vec<Cell> = self.0.values().cloned().collect();
            report(spec, &cells)
        }
    }

    /// One change to one of a few enrollments, as random numbers: which enrollment, what
    /// change, a time, a pick among names, and the cell part (shard) it is written under.
    type Change = (usize, u8, Millis, u8, u16);

    fn change(e: &mut Enrollment, (_, what, t, pick, _): Change) {
        let milestone = ["first_login", "first_value", "legacy"][usize::from(pick % 3)];
        let channel = ["email", "sms"][usize::from(pick % 2)];
        match what {
            0 => e.status = EnrollmentStatus::Completed,
            1 => {
                e.status = EnrollmentStatus::Exited;
                e.exit_reason = [None, Some("churned".into()), Some("exit_event:x".into())]
                    [usize::from(pick % 3)]
                .clone();
            }
            2 => e.status = EnrollmentStatus::Active,
            3 | 4 => e.milestones.push(MilestoneHit {
                name: milestone.into(),
                at: t,
            }),
            5 => {
                e.stalls.push(MilestoneHit {
                    name: milestone.into(),
                    at: t,
                });
                e.stalled_on = Some(milestone.into());
            }
            6 => e.stalled_on = None,
            7 => e.channels.entry(channel.into()).or_default().sent += 1,
            8 => {
                let s = e.channels.entry(channel.into()).or_default();
                s.delivered += 1;
                s.opened += u64::from(pick % 2);
            }
            9 => {
                // An empty summary still lists its channel.
                e.channels.entry(channel.into()).or_default();
            }
            10 => e.variants.push(VariantAssignment {
                experiment: ["copy", "tone"][usize::from(pick % 2)].into(),
                arm: ["a", "b", "c"][usize::from(pick % 3)].into(),
            }),
            // Not something the engine does, but a delta must undo anything it added.
            11 => e.variants.clear(),
            _ => {
                e.milestones.pop();
            }
        }
    }

    proptest! {
        /// Whatever happens to enrollments, in whatever parts the deltas are written, the report
        /// from cells is the report from the enrollments.
        #[test]
        fn cells_kept_by_deltas_report_what_the_enrollments_do(
            changes in prop::collection::vec(
                (0usize..8, 0u8..13, 0i64..5_000, 0u8..6, 0u16..3), 0..80),
        ) {
            let spec = spec();
            let mut enrollments: BTreeMap<usize, Enrollment> = BTreeMap::new();
            let mut cells = Cells::default();
            for c in changes {
                let before = enrollments.get(&c.0).map(Tally::of);
                let e = enrollments.entry(c.0).or_insert_with(|| {
                    enroll("onboarding", 1 + (c.0 % 2) as u32, &format!("c{}", c.0), 1, None, 1_000)
                });
                change(e, c);
                cells.apply(c.4, &delta(before.as_ref(), Tally::of(e)));
                let all: Vec<Enrollment> = enrollments.values().cloned().collect();
                prop_assert_eq!(cells.report(&spec), super::super::report(&spec, &all));
            }
        }
    }

    fn customer(id: &str) -> Enrollment {
        enroll("onboarding", 1, id, 1, None, 1_000)
    }

    #[test]
    fn a_new_enrollment_adds_one_to_its_cell() {
        let e = customer("ada");
        let [d] = delta(None, Tally::of(&e)).try_into().unwrap();
        assert_eq!((d.counts.entered, d.counts.active), (1, 1));
        assert_eq!(d.counts.paths[&Vec::<String>::new()], 1);
    }

    #[test]
    fn a_change_a_report_does_not_count_writes_nothing() {
        let mut e = customer("ada");
        let before = Tally::of(&e);
        e.state = vec![1, 2, 3];
        e.timers.clear();
        assert!(delta(Some(&before), Tally::of(&e)).is_empty());
    }

    #[test]
    fn reaching_a_milestone_moves_the_enrollment_to_a_longer_path() {
        let mut e = customer("ada");
        let before = Tally::of(&e);
        e.milestones.push(MilestoneHit {
            name: "first_login".into(),
            at: 1_250,
        });
        let [d] = delta(Some(&before), Tally::of(&e)).try_into().unwrap();
        assert_eq!(d.counts.entered, 0);
        assert_eq!(d.counts.reached["first_login"], 1);
        assert_eq!(d.times["first_login"], Samples::from([(250, 1)]));
        assert_eq!(
            d.counts.paths,
            BTreeMap::from([(vec![], -1), (vec!["first_login".to_string()], 1)])
        );
    }

    #[test]
    fn an_assignment_moves_the_enrollment_to_another_cell() {
        let mut e = customer("ada");
        let before = Tally::of(&e);
        e.variants.push(VariantAssignment {
            experiment: "copy".into(),
            arm: "b".into(),
        });
        let [removed, added] = delta(Some(&before), Tally::of(&e)).try_into().unwrap();
        assert_eq!(removed.cell.assignment, vec![]);
        assert_eq!(removed.counts.entered, -1);
        assert_eq!(added.cell.arm("copy"), Some("b"));
        assert_eq!(added.counts.entered, 1);
    }

    #[test]
    fn deltas_of_one_cell_merge_into_one_and_cancelling_ones_vanish() {
        let e = customer("ada");
        let added = delta(None, Tally::of(&e));
        let mut removed = added.clone();
        removed[0].add(&added[0], -2);
        let merged = merge(added.iter().chain(&added));
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].counts.entered, 2);
        assert!(merge(added.iter().chain(&removed)).is_empty());
    }
}
