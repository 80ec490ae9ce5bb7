//! Pure: a backtest's two replays compared — per milestone conversion and median time to
//! reach, exits by reason, sends per channel and per customer, paths, and every customer
//! whose sends (channel, template, decision and send time) differ, so that a changed
//! schedule shows customer by customer.

use super::run::Outcome;
use crate::report::Funnel;
use std::collections::{BTreeMap, BTreeSet};
use waymark_api::backtests::{
    BacktestDiff, Compared, CustomerDiff, MilestoneDiff, PathDiff, SentMessage,
};

/// How many changed customers the diff lists (all are counted).
const MAX_CUSTOMERS_LISTED: usize = 1_000;

/// The candidate's replay against the live version's.
pub fn diff(outcome: &Outcome) -> BacktestDiff {
    let (customers_changed, customers) = customers(&outcome.live.sends, &outcome.candidate.sends);
    let sends = Compared {
        live: outcome.live.sends.len() as u64,
        candidate: outcome.candidate.sends.len() as u64,
    };
    compared(
        &outcome.live.report.overall,
        &outcome.candidate.report.overall,
        sends,
        customers_changed,
        customers,
    )
}

/// The diff of two replays from their funnels, their numbers of sends and their changed
/// customers (counted, and the first listed): what [`diff`] computes from whole replays, and
/// a backtest over several partitions from every partition's parts added up.
pub fn compared(
    live: &Funnel,
    candidate: &Funnel,
    sends: Compared<u64>,
    customers_changed: u64,
    mut customers: Vec<CustomerDiff>,
) -> BacktestDiff {
    customers.sort_by(|a, b| a.customer.cmp(&b.customer));
    customers.truncate(MAX_CUSTOMERS_LISTED);
    BacktestDiff {
        milestones: milestones(live, candidate),
        exits_by_reason: compare_maps(&live.exited_by_reason, &candidate.exited_by_reason),
        sends_by_channel: compare_maps(&sends_by_channel(live), &sends_by_channel(candidate)),
        sends_per_customer: Compared {
            live: per_customer(sends.live, live.entered),
            candidate: per_customer(sends.candidate, candidate.entered),
        },
        paths: paths(live, candidate),
        customers_changed,
        customers,
    }
}

fn per_customer(sends: u64, entered: u64) -> f64 {
    if entered == 0 {
        0.0
    } else {
        sends as f64 / entered as f64
    }
}

fn milestones(live: &Funnel, candidate: &Funnel) -> Vec<MilestoneDiff> {
    let mut names: Vec<&str> = candidate
        .milestones
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for m in &live.milestones {
        if !names.contains(&m.name.as_str()) {
            names.push(&m.name);
        }
    }
    let find = |f: &Funnel, name: &str| f.milestones.iter().find(|m| m.name == name).cloned();
    names
        .into_iter()
        .map(|name| {
            let (l, c) = (find(live, name), find(candidate, name));
            MilestoneDiff {
                name: name.to_string(),
                reached: Compared {
                    live: l.as_ref().map_or(0, |m| m.reached),
                    candidate: c.as_ref().map_or(0, |m| m.reached),
                },
                conversion: Compared {
                    live: l.as_ref().and_then(|m| m.conversion),
                    candidate: c.as_ref().and_then(|m| m.conversion),
                },
                median_time_to_reach_ms: Compared {
                    live: l.as_ref().and_then(|m| m.median_time_to_reach_ms),
                    candidate: c.as_ref().and_then(|m| m.median_time_to_reach_ms),
                },
            }
        })
        .collect()
}

/// Messages sent per channel (suppressed ones included: they were decided).
fn sends_by_channel(f: &Funnel) -> BTreeMap<String, u64> {
    f.channels
        .iter()
        .map(|(channel, s)| (channel.clone(), s.sent))
        .collect()
}

fn compare_maps(
    live: &BTreeMap<String, u64>,
    candidate: &BTreeMap<String, u64>,
) -> BTreeMap<String, Compared<u64>> {
    live.keys()
        .chain(candidate.keys())
        .map(|k| {
            let value = Compared {
                live: live.get(k).copied().unwrap_or(0),
                candidate: candidate.get(k).copied().unwrap_or(0),
            };
            (k.clone(), value)
        })
        .collect()
}

fn paths(live: &Funnel, candidate: &Funnel) -> Vec<PathDiff> {
    let count = |f: &Funnel| -> BTreeMap<Vec<String>, u64> {
        f.paths
            .iter()
            .map(|p| (p.path.clone(), p.customers))
            .collect()
    };
    let (l, c) = (count(live), count(candidate));
    let all: BTreeSet<&Vec<String>> = l.keys().chain(c.keys()).collect();
    all.into_iter()
        .map(|path| PathDiff {
            path: path.clone(),
            customers: Compared {
                live: l.get(path).copied().unwrap_or(0),
                candidate: c.get(path).copied().unwrap_or(0),
            },
        })
        .collect()
}

/// The customers whose sends differ in channel, template or times (ids are left out: they
/// name the version, so they always differ between two versions).
fn customers(
    live: &[(String, SentMessage)],
    candidate: &[(String, SentMessage)],
) -> (u64, Vec<CustomerDiff>) {
    let group = |sends: &[(String, SentMessage)]| {
        let mut by: BTreeMap<String, Vec<SentMessage>> = BTreeMap::new();
        for (customer, m) in sends {
            by.entry(customer.clone()).or_default().push(m.clone());
        }
        by
    };
    let (l, c) = (group(live), group(candidate));
    let shape = |v: Option<&Vec<SentMessage>>| -> Vec<(String, String, i64, Option<i64>)> {
        v.map(|v| {
            v.iter()
                .map(|m| {
                    (
                        m.channel.clone(),
                        m.template.clone(),
                        m.decided_at,
                        m.sent_at,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let everyone: BTreeSet<&String> = l.keys().chain(c.keys()).collect();
    let mut changed = 0;
    let mut listed = Vec::new();
    for customer in everyone {
        let (lv, cv) = (l.get(customer), c.get(customer));
        if shape(lv) == shape(cv) {
            continue;
        }
        changed += 1;
        if listed.len() < MAX_CUSTOMERS_LISTED {
            listed.push(CustomerDiff {
                customer: customer.clone(),
                live: lv.cloned().unwrap_or_default(),
                candidate: cv.cloned().unwrap_or_default(),
            });
        }
    }
    (changed, listed)
}

#[cfg(test)]
mod tests {
    use super::super::run::Replayed;
    use super::*;
    use crate::report::{MilestoneStats, Report};

    fn send(template: &str, at: i64) -> SentMessage {
        SentMessage {
            channel: "email".into(),
            template: template.into(),
            decided_at: at,
            sent_at: Some(at),
            id: format!("k-{template}-{at}"),
        }
    }

    fn replayed(reached: u64, sends: Vec<(String, SentMessage)>) -> Replayed {
        let mut report = Report::default();
        report.overall.entered = 2;
        report.overall.milestones.push(MilestoneStats {
            name: "renewed".into(),
            reached,
            conversion: Some(reached as f64 / 2.0),
            median_time_to_reach_ms: None,
            stalled_now: 0,
            stalled_ever: 0,
        });
        Replayed {
            version: 1,
            digest: None,
            migration: None,
            report,
            spec: crate::store::backtests::tests::bare_spec(),
            cells: Vec::new(),
            sends,
        }
    }

    #[test]
    fn a_changed_schedule_shows_per_customer_and_the_same_one_does_not() {
        let live = replayed(
            1,
            vec![
                ("ada".into(), send("reminder", 10)),
                ("bob".into(), send("reminder", 10)),
            ],
        );
        let candidate = replayed(
            2,
            vec![
                ("ada".into(), send("reminder", 20)),
                ("bob".into(), send("reminder", 10)),
            ],
        );
        let d = diff(&Outcome {
            candidate,
            live,
            fidelity: None,
            parts: 1,
        });
        assert_eq!(d.customers_changed, 1);
        assert_eq!(d.customers[0].customer, "ada");
        assert_eq!(d.customers[0].live[0].decided_at, 10);
        assert_eq!(d.customers[0].candidate[0].decided_at, 20);
        assert_eq!(
            d.milestones[0].reached,
            Compared {
                live: 1,
                candidate: 2
            }
        );
        assert_eq!(
            d.sends_per_customer,
            Compared {
                live: 1.0,
                candidate: 1.0
            }
        );
    }
}
