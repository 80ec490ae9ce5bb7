//! Pure: a replay of the live version checked against what ran live, customer by customer —
//! their enrollments in the journey (version, run, status, times, milestones, stalls, timers,
//! state, variants) and the messages they were sent (channel, template, payload, decision time,
//! idempotency key) must be identical. A customer who differs is reported with the first
//! divergence: the earliest differing record and its journey time.

use crate::model::{Enrollment, Millis};
use crate::store::Message;
use waymark_api::backtests::{Divergence, Fidelity};

/// How many divergences a fidelity check lists (all are counted).
pub const MAX_DIVERGENCES_LISTED: usize = 1_000;

/// One customer's records of one journey, on one side.
#[derive(Debug, Default, Clone)]
pub struct Records {
    pub enrollments: Vec<Enrollment>,
    pub messages: Vec<Message>,
}

/// What must be identical of an enrollment (its delivery tallies, failures, loop window and
/// pause are bookkeeping of the infrastructure, not of the journey's decisions).
fn enrollment_parts(e: &Enrollment) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        (
            &e.id,
            e.version,
            e.run,
            &e.key,
            e.status,
            e.entered_at,
            e.ended_at,
        ),
        (&e.exit_reason, &e.milestones, &e.stalls, &e.stalled_on),
        (&e.state, &e.timers, &e.variants),
    )
}

/// What must be identical of a message.
fn message_parts(m: &Message) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        &m.id,
        &m.channel,
        &m.template,
        &m.payload,
        m.created_at,
        m.version,
        m.run,
    )
}

/// `None` when the replay reproduced `live` exactly; else the first divergence.
pub fn compare(customer: &str, live: &Records, replay: &Records) -> Option<Divergence> {
    let mut found: Vec<(Millis, String)> = Vec::new();
    let runs = live.enrollments.len().max(replay.enrollments.len());
    for i in 0..runs {
        match (live.enrollments.get(i), replay.enrollments.get(i)) {
            (Some(l), Some(r)) if enrollment_parts(l) == enrollment_parts(r) => {}
            (Some(l), Some(r)) => found.push((
                first_time_differing(l, r),
                format!(
                    "enrollment {}: live {:?}, replay {:?}",
                    l.id,
                    enrollment_parts(l),
                    enrollment_parts(r)
                ),
            )),
            (Some(l), None) => found.push((l.entered_at, format!("enrollment {} only live", l.id))),
            (None, Some(r)) => found.push((
                r.entered_at,
                format!("enrollment {} only in the replay", r.id),
            )),
            (None, None) => {}
        }
    }
    let sends = live.messages.len().max(replay.messages.len());
    for i in 0..sends {
        match (live.messages.get(i), replay.messages.get(i)) {
            (Some(l), Some(r)) if message_parts(l) == message_parts(r) => {}
            (Some(l), Some(r)) => found.push((
                l.created_at.min(r.created_at),
                format!(
                    "message #{}: live {:?}, replay {:?}",
                    i + 1,
                    message_parts(l),
                    message_parts(r)
                ),
            )),
            (Some(l), None) => found.push((l.created_at, format!("message {} only live", l.id))),
            (None, Some(r)) => {
                found.push((r.created_at, format!("message {} only in the replay", r.id)))
            }
            (None, None) => {}
        }
    }
    found
        .into_iter()
        .min_by_key(|(at, _)| *at)
        .map(|(at, what)| Divergence {
            customer: customer.to_string(),
            at,
            what,
        })
}

/// The earliest journey time at which two runs of one enrollment differ, as far as their
/// records show: entry, then the first differing milestone, stall or timer, then the end.
fn first_time_differing(l: &Enrollment, r: &Enrollment) -> Millis {
    if l.entered_at != r.entered_at {
        return l.entered_at.min(r.entered_at);
    }
    let first_hit = |a: &[crate::model::MilestoneHit], b: &[crate::model::MilestoneHit]| {
        a.iter()
            .zip(b)
            .find(|(x, y)| x != y)
            .map(|(x, y)| x.at.min(y.at))
            .or_else(|| {
                (a.len() != b.len()).then(|| a.iter().chain(b).map(|h| h.at).max().unwrap_or(0))
            })
    };
    let timers = l
        .timers
        .iter()
        .zip(&r.timers)
        .find(|(x, y)| x != y)
        .map(|(x, y)| x.due.min(y.due));
    [
        first_hit(&l.milestones, &r.milestones),
        first_hit(&l.stalls, &r.stalls),
        timers,
    ]
    .into_iter()
    .flatten()
    .min()
    .or(l.ended_at.zip(r.ended_at).map(|(a, b)| a.min(b)))
    .unwrap_or(l.entered_at)
}

/// Two shares' fidelity checks as one: customers and identical ones added up, divergences
/// together in customer order (the first [`MAX_DIVERGENCES_LISTED`]).
pub fn add(a: Option<Fidelity>, b: Option<Fidelity>) -> Option<Fidelity> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.customers += b.customers;
            a.identical += b.identical;
            a.divergences.extend(b.divergences);
            a.divergences.sort_by(|x, y| x.customer.cmp(&y.customer));
            a.divergences.truncate(MAX_DIVERGENCES_LISTED);
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures;

    #[test]
    fn identical_records_agree_and_a_moved_milestone_is_the_divergence() {
        let live = Records {
            enrollments: vec![fixtures::enrollment("ada", "welcome", 1)],
            messages: vec![],
        };
        assert_eq!(compare("ada", &live, &live.clone()), None);
        let mut replay = live.clone();
        replay.enrollments[0]
            .milestones
            .push(crate::model::MilestoneHit {
                name: "activated".into(),
                at: 42,
            });
        let divergence = compare("ada", &live, &replay).unwrap();
        assert_eq!(divergence.customer, "ada");
        assert_eq!(divergence.at, 42);
        assert!(
            divergence.what.contains("enrollment welcome/ada/1"),
            "{}",
            divergence.what
        );
    }
}
