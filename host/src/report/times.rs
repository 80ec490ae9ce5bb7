//! Times to reach a milestone, as a distribution that adds up and can take samples away again:
//! exact while a cell holds few distinct times, then a log-linear histogram whose median is
//! within 1 % of the exact one.
//!
//! [`Times::Exact`] counts each time (ms) itself; its median is the lower middle sample, a time
//! some customer actually took, exactly as [`super::report`] computes it. Once a distribution
//! holds more than [`EXACT_VALUES`] distinct times it becomes [`Times::Buckets`] and stays so:
//! times below 128 ms keep a bucket each, and every doubling above is split into 64 buckets of
//! equal width (HdrHistogram's layout), so a bucket is at most 1/64 as wide as its lower bound.
//! A bucket's median is reported as the bucket's middle, which is within 1/128 (0.79 %) of any
//! time in it, hence of the exact median. Integer arithmetic only: the same samples give the
//! same buckets on every machine.
//!
//! Counts are signed: a delta takes a sample away by adding -1 at its time (or bucket), so an
//! enrollment that moves to another cell, or whose milestone changes, is subtracted exactly.

use crate::model::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many distinct times a distribution keeps exactly before it turns into buckets: a stored
/// distribution stays small (it is rewritten when one of its enrollments reaches the milestone).
pub const EXACT_VALUES: usize = 128;

/// Below this, a time has a bucket of its own.
const LINEAR: u64 = 128;
/// Buckets per doubling above [`LINEAR`], as a power of two.
const SUB_BITS: u32 = 6;

/// Sample changes by time: +1 for a sample added, -1 for one taken away.
pub type Samples = BTreeMap<Millis, i64>;

/// A distribution of times to reach one milestone, in one cell or one group of cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Times {
    /// How many samples took exactly this time.
    Exact(BTreeMap<Millis, i64>),
    /// How many samples fell into each bucket ([`bucket`]), densely from one bucket on: a
    /// month of spread is about 1,100 buckets, which a vector stores and adds up cheaply.
    Buckets(Buckets),
}

/// Sample counts of consecutive buckets: `counts[i]` is bucket `first + i`'s. Trimmed: neither
/// end holds zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets {
    pub first: i32,
    pub counts: Vec<i64>,
}

impl Buckets {
    fn bump(&mut self, b: i32, n: i64) {
        if n == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.first = b;
        } else if b < self.first {
            let grow = (self.first - b) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = b;
        }
        let i = (b - self.first) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += n;
        if self.counts[i] == 0 {
            self.trim();
        }
    }

    fn trim(&mut self) {
        while self.counts.last() == Some(&0) {
            self.counts.pop();
        }
        let zeros = self.counts.iter().take_while(|c| **c == 0).count();
        self.counts.drain(..zeros);
        self.first += zeros as i32;
    }

    fn add(&mut self, o: &Buckets) {
        if o.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            *self = o.clone();
            return;
        }
        let first = self.first.min(o.first);
        let end = (self.first + self.counts.len() as i32).max(o.first + o.counts.len() as i32);
        let mut counts = vec![0; (end - first) as usize];
        for (i, c) in self.counts.iter().enumerate() {
            counts[(self.first - first) as usize + i] += c;
        }
        for (i, c) in o.counts.iter().enumerate() {
            counts[(o.first - first) as usize + i] += c;
        }
        *self = Buckets { first, counts };
        self.trim();
    }

    fn lower_middle(&self) -> Option<i32> {
        let n: i64 = self.counts.iter().sum();
        if n <= 0 {
            return None;
        }
        let rank = (n - 1) / 2;
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen > rank {
                return Some(self.first + i as i32);
            }
        }
        None
    }
}

impl Default for Times {
    fn default() -> Self {
        Times::Exact(BTreeMap::new())
    }
}

impl Times {
    /// No samples left.
    pub fn is_empty(&self) -> bool {
        match self {
            Times::Exact(m) => m.is_empty(),
            Times::Buckets(b) => b.counts.is_empty(),
        }
    }

    /// Adds sample changes (a delta's), turning into buckets once too many distinct times are
    /// held.
    pub fn add(&mut self, samples: &Samples) {
        match self {
            Times::Exact(m) => {
                for (t, n) in samples {
                    bump(m, t, *n);
                }
                if m.len() > EXACT_VALUES {
                    *self = Times::Buckets(bucketed(m));
                }
            }
            Times::Buckets(b) => {
                for (t, n) in samples {
                    b.bump(bucket(*t), *n);
                }
            }
        }
    }

    /// Adds another distribution (of another cell in the same group): exact if both are.
    pub fn merge(&mut self, other: &Times) {
        match (&mut *self, other) {
            (_, Times::Exact(theirs)) => self.add(theirs),
            (Times::Buckets(mine), Times::Buckets(theirs)) => mine.add(theirs),
            (Times::Exact(mine), Times::Buckets(theirs)) => {
                let mut buckets = bucketed(mine);
                buckets.add(theirs);
                *self = Times::Buckets(buckets);
            }
        }
    }

    /// The lower middle sample (exactly, or as the middle of its bucket); `None` without samples.
    pub fn median(&self) -> Option<Millis> {
        match self {
            Times::Exact(m) => lower_middle(m),
            Times::Buckets(b) => b.lower_middle().map(representative),
        }
    }
}

/// Adds `n` at `k`, dropping the entry when it comes to zero. The key is copied only when it
/// is new to the map: adding to a cell or a delta mostly adds to keys it already has.
pub(super) fn bump<K: Ord + Clone>(m: &mut BTreeMap<K, i64>, k: &K, n: i64) {
    if n == 0 {
        return;
    }
    match m.get_mut(k) {
        None => {
            m.insert(k.clone(), n);
        }
        Some(held) => {
            *held += n;
            if *held == 0 {
                m.remove(k);
            }
        }
    }
}

fn bucketed(exact: &BTreeMap<Millis, i64>) -> Buckets {
    let mut buckets = Buckets::default();
    for (t, n) in exact {
        buckets.bump(bucket(*t), *n);
    }
    buckets
}

/// The time of the sample of rank `(n - 1) / 2` in order, `n` the number of samples.
fn lower_middle(m: &BTreeMap<Millis, i64>) -> Option<Millis> {
    let n: i64 = m.values().sum();
    if n <= 0 {
        return None;
    }
    let rank = (n - 1) / 2;
    let mut seen = 0;
    for (k, count) in m {
        seen += count;
        if seen > rank {
            return Some(*k);
        }
    }
    None
}

/// The bucket of a time; buckets are ordered as the times in them (negative times mirror
/// positive ones).
pub fn bucket(t: Millis) -> i32 {
    let b = magnitude_bucket(t.unsigned_abs());
    if t < 0 {
        -1 - b
    } else {
        b
    }
}

fn magnitude_bucket(u: u64) -> i32 {
    if u < LINEAR {
        return u as i32;
    }
    let octave = 63 - u.leading_zeros(); // >= 7
    let sub = (u >> (octave - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (LINEAR + u64::from(octave - 7) * (1 << SUB_BITS) + sub) as i32
}

/// The middle of a bucket: the time a bucketed median is reported as.
pub fn representative(b: i32) -> Millis {
    if b < 0 {
        return -representative(-1 - b);
    }
    let b = b as u64;
    if b < LINEAR {
        return b as Millis;
    }
    let octave = 7 + (b - LINEAR) / (1 << SUB_BITS);
    let sub = (b - LINEAR) % (1 << SUB_BITS);
    let width = 1u64 << (octave - u64::from(SUB_BITS));
    let lower = ((1 << SUB_BITS) + sub) * width;
    lower.saturating_add(width / 2).min(i64::MAX as u64) as Millis
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples(times: &[Millis]) -> Samples {
        let mut s = Samples::new();
        for t in times {
            *s.entry(*t).or_default() += 1;
        }
        s
    }

    fn exact_median(times: &[Millis]) -> Option<Millis> {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) / 2])
    }

    #[test]
    fn few_times_give_the_exact_lower_middle_one() {
        let mut t = Times::default();
        t.add(&samples(&[500, 100, 300, 200]));
        assert_eq!(t.median(), Some(200));
        assert!(matches!(t, Times::Exact(_)));
    }

    #[test]
    fn a_sample_taken_away_leaves_no_trace() {
        let mut t = Times::default();
        t.add(&samples(&[100, 200]));
        t.add(&Samples::from([(200, -1), (100, -1)]));
        assert!(t.is_empty());
        assert_eq!(t.median(), None);
    }

    #[test]
    fn too_many_distinct_times_turn_into_buckets() {
        let mut t = Times::default();
        let times: Vec<Millis> = (0..=EXACT_VALUES as Millis)
            .map(|i| 1_000 + i * 37)
            .collect();
        t.add(&samples(&times));
        assert!(matches!(t, Times::Buckets(_)));
        let exact = exact_median(&times).unwrap();
        let approx = t.median().unwrap();
        assert!((approx - exact).abs() * 128 <= exact, "{approx} vs {exact}");
    }

    #[test]
    fn buckets_grow_at_either_end_and_trim_what_comes_to_zero() {
        let mut b = Buckets::default();
        b.bump(10, 1);
        b.bump(7, 2);
        b.bump(12, 1);
        assert_eq!((b.first, b.counts.as_slice()), (7, &[2, 0, 0, 1, 0, 1][..]));
        b.bump(7, -2);
        b.bump(12, -1);
        assert_eq!((b.first, b.counts.as_slice()), (10, &[1][..]));
        let mut sum = Buckets::default();
        sum.add(&b);
        sum.add(&Buckets {
            first: 8,
            counts: vec![1, 0, -1],
        });
        assert_eq!((sum.first, sum.counts.as_slice()), (8, &[1][..]));
    }

    #[test]
    fn buckets_are_ordered_like_their_times_and_hold_them() {
        let mut previous = i32::MIN;
        for t in (-5_000..5_000).chain([i64::MIN, i64::MAX, 1 << 40, -(1 << 40)]) {
            let b = bucket(t);
            let r = representative(b);
            assert!(
                (r - t).unsigned_abs() * 128 <= t.unsigned_abs().max(1),
                "{t} in bucket {b} is reported as {r}"
            );
            if (-5_000..5_000).contains(&t) {
                assert!(b >= previous, "{t}");
                previous = b;
            }
        }
    }

    proptest! {
        /// Whichever cells the samples are split into and whichever were bucketed, the merged
        /// median is the exact one or within 1/128 of it.
        #[test]
        fn merged_medians_stay_within_one_percent(
            cells in prop::collection::vec(
                prop::collection::vec(0i64..40 * 24 * 3_600_000, 0..300), 1..5),
        ) {
            let mut merged = Times::default();
            let mut all = Vec::new();
            for times in &cells {
                let mut cell = Times::default();
                cell.add(&samples(times));
                merged.merge(&cell);
                all.extend_from_slice(times);
            }
            let exact = exact_median(&all);
            match (&merged, merged.median(), exact) {
                (Times::Exact(_), got, want) => prop_assert_eq!(got, want),
                (Times::Buckets(_), Some(got), Some(want)) => {
                    prop_assert!((got - want).abs() * 128 <= want, "{} vs {}", got, want)
                }
                (_, got, want) => prop_assert_eq!(got, want),
            }
        }
    }
}
