//! Audience triggers evaluated by the host (issue 12), **pure**: what an event or a due moment
//! means for one customer and one audience trigger of one journey, given what the host
//! remembered for them ([`Watch`]). The shell (`worker/audience.rs`) loads the watches, calls
//! [`on_event`] / [`on_due`], and commits the new watch with the trigger's other writes; the
//! store (`store/audience.rs`) keeps each watch and, when it has a due time, an entry in a
//! time-ordered index that the scheduler fires like timers — so the work per tick is the due
//! entries, never the population.
//!
//! - `inactive`: a watch per customer the host has seen an event for (any event; its quiet
//!   period starts then). Activity (an event in the set; any event when the set is empty)
//!   moves `last_seen` only — one write; the due entry is not moved on every event but, when it
//!   comes due, pushed back to `last_seen + quiet_for` if there was activity since (so a
//!   customer active every day costs one index move per quiet period). A due entry with no
//!   activity since enters the customer, and the watch rests until their next activity.
//! - `matches`: evaluated when the customer's profile changes (`identify`, a new customer) or
//!   they `group`; the watch remembers whether they matched, so the entry is an edge. A
//!   condition with date functions is re-evaluated at the next moment a day count it reads
//!   changes ([`eval::next_change`]), for customers who have those attributes only.
//! - `date`: scheduled when the attribute is set or changed (the entry moment in the
//!   customer's time zone); one entry per distinct value; a date already past is not entered.

pub mod dates;
pub mod eval;
pub mod expr;

use crate::engine::accounts::GROUP;
use crate::engine::routing::{enroll, entry_allowed, Routing};
use crate::engine::{exit, JourneyRef, Step};
use crate::model::{AudienceTrigger, Enrollment, Event, Millis, Object, Trigger};
use crate::report::cells::Tally;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What the host remembers for one customer and one audience trigger of one journey.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// When the trigger is looked at again: the key of its entry in the due index, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Millis>,
    /// `inactive`: the customer's last activity (or when they were first seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Millis>,
    /// `matches`: whether they matched at the last evaluation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub matched: bool,
    /// `date`: the attribute's value (JSON text) the due entry is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// `date`: the last value the customer entered for (once per distinct date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_for: Option<String>,
}

/// What the customer looks like to an audience trigger.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub attributes: &'a Object,
    pub account: Option<&'a Object>,
    /// The customer's time zone (date triggers).
    pub zone: Tz,
}

/// What to do for one trigger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The watch to store (`Some(None)`: remove it); `None` leaves the stored one as it is.
    pub write: Option<Option<Watch>>,
    /// Enter the customer (under the journey's re-entry policy) with this synthetic event's
    /// properties.
    pub enter: Option<Object>,
    /// End the customer's active enrollment with reason `unmatched:<name>`.
    pub exit: bool,
}

impl Outcome {
    fn store(watch: Watch, old: Option<&Watch>) -> Option<Option<Watch>> {
        (old != Some(&watch)).then_some(Some(watch))
    }
}

/// The exit reason of a customer who stops matching a `matches` trigger.
pub fn unmatched_reason(name: &str) -> String {
    format!("unmatched:{name}")
}

/// The synthetic entry event of a trigger: named as the trigger; its id says which trigger
/// and moment made it, so the enrollment's `entered` trigger is reproducible.
pub fn entry_event(
    customer: &str,
    journey: &str,
    trigger: &str,
    properties: Object,
    now: Millis,
) -> Event {
    Event {
        id: format!("audience:{journey}:{trigger}:{now}"),
        customer: customer.to_string(),
        name: trigger.to_string(),
        properties,
        timestamp: now,
    }
}

fn props(kind: &str, more: Value) -> Object {
    let mut o = Object::new();
    o.insert("audience".into(), json!(kind));
    if let Value::Object(m) = more {
        o.extend(m);
    }
    o
}

/// An event of the customer was processed (`profile_changed`: it created them or changed their
/// attributes).
pub fn on_event(
    trigger: &AudienceTrigger,
    old: Option<&Watch>,
    event: &Event,
    profile_changed: bool,
    seen: Seen<'_>,
    now: Millis,
) -> Outcome {
    match trigger {
        AudienceTrigger::Inactive {
            events, quiet_for, ..
        } => {
            let activity = events.is_empty() || events.contains(&event.name);
            let mut watch = match old {
                // Not watched yet: the quiet period starts now, whatever the event.
                None => Watch::default(),
                Some(_) if !activity => return Outcome::default(),
                Some(w) => w.clone(),
            };
            watch.last_seen = Some(now);
            if watch.due.is_none() {
                watch.due = Some(now.saturating_add(*quiet_for));
            }
            Outcome {
                write: Outcome::store(watch, old),
                ..Outcome::default()
            }
        }
        AudienceTrigger::Matches { .. } if profile_changed || event.name == GROUP => {
            evaluate(trigger, old, seen, now)
        }
        AudienceTrigger::Date { .. } if profile_changed => schedule_date(trigger, old, seen, now),
        _ => Outcome::default(),
    }
}

/// The traits of the customer's account were changed by another member's `group` call: only
/// a `matches` trigger is looked at again (the shell asks only for those that read
/// `account.*`); activity and dates are the customer's own.
pub fn on_account_change(
    trigger: &AudienceTrigger,
    old: Option<&Watch>,
    seen: Seen<'_>,
    now: Millis,
) -> Outcome {
    match trigger {
        AudienceTrigger::Matches { .. } => evaluate(trigger, old, seen, now),
        _ => Outcome::default(),
    }
}

// Identity merge moves audience watches (issue 12, polish).
/// The watch the known customer keeps when a merged (anonymous) id's watch of the same trigger
/// moves to them. The known customer's watch wins (their condition state, their scheduled
/// date), except for activity, which both ids' events were: `last_seen` is the later of the
/// two, and `due` the earlier (a due entry that comes before the deadline is pushed back when
/// it fires, so the earlier one is never late). With no watch of their own, the known
/// customer takes the merged one as it is.
pub fn merge_watches(known: Option<&Watch>, merged: &Watch) -> Watch {
    let Some(known) = known else {
        return merged.clone();
    };
    let mut kept = known.clone();
    if let (Some(a), Some(b)) = (known.last_seen, merged.last_seen) {
        kept.last_seen = Some(a.max(b));
        kept.due = match (known.due, merged.due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    kept
}

/// The watch's due entry (at `due`) was fired by the scheduler.
pub fn on_due(
    trigger: &AudienceTrigger,
    old: Option<&Watch>,
    due: Millis,
    seen: Seen<'_>,
    now: Millis,
) -> Outcome {
    // A watch moved or removed since the entry was fired: the entry was stale.
    let Some(watch) = old.filter(|w| w.due == Some(due)) else {
        return Outcome::default();
    };
    match trigger {
        AudienceTrigger::Inactive { quiet_for, .. } => {
            let mut next = watch.clone();
            let last = watch.last_seen.unwrap_or(due);
            let deadline = last.saturating_add(*quiet_for);
            if deadline > now {
                next.due = Some(deadline);
                return Outcome {
                    write: Some(Some(next)),
                    ..Outcome::default()
                };
            }
            next.due = None;
            Outcome {
                write: Some(Some(next)),
                enter: Some(props(
                    "inactive",
                    json!({"last_seen_at": last, "quiet_for_ms": quiet_for}),
                )),
                exit: false,
            }
        }
        AudienceTrigger::Matches { .. } => {
            // The stored due is spent: evaluate() schedules afresh.
            let mut spent = watch.clone();
            spent.due = None;
            let mut out = evaluate(trigger, Some(&spent), seen, now);
            if out.write.is_none() {
                out.write = Some(Some(spent));
            }
            out
        }
        AudienceTrigger::Date {
            attribute,
            offset_days,
            ..
        } => {
            let mut next = watch.clone();
            next.due = None;
            let value = seen.attributes.get(attribute).filter(|v| !v.is_null());
            let current = value.map(Value::to_string);
            let enter = (current.is_some() && current == watch.date).then(|| {
                next.entered_for = current.clone();
                props(
                    "date",
                    json!({"attribute": attribute, "date": value, "offset_days": offset_days}),
                )
            });
            Outcome {
                write: Some(Some(next)),
                enter,
                exit: false,
            }
        }
    }
}

/// Evaluates a `matches` trigger: edge-triggered entry, exit when it stops matching (if the
/// spec says so), and the next re-evaluation when it reads dates.
fn evaluate(
    trigger: &AudienceTrigger,
    old: Option<&Watch>,
    seen: Seen<'_>,
    now: Millis,
) -> Outcome {
    let AudienceTrigger::Matches {
        expression,
        exit_when_unmatched,
        ..
    } = trigger
    else {
        return Outcome::default();
    };
    // Parsed at upload (`Spec::validate`); a stored spec that no longer parses matches nobody.
    let Ok(expr) = expr::parse(expression) else {
        return Outcome::default();
    };
    let subject = eval::Subject {
        attributes: seen.attributes,
        account: seen.account,
    };
    let matched = eval::matches(&expr, subject, now);
    let due = expr
        .date_paths()
        .iter()
        .filter_map(|p| subject.lookup(p).and_then(eval::date_millis))
        .map(|at| eval::next_change(at, now))
        .min();
    let was = old.is_some_and(|w| w.matched);
    let watch = Watch {
        due,
        matched,
        ..old.cloned().unwrap_or_default()
    };
    // A customer who never matched and has nothing to re-evaluate needs no record.
    let write = if old.is_none() && watch == Watch::default() {
        None
    } else {
        Outcome::store(watch, old)
    };
    Outcome {
        write,
        enter: (matched && !was).then(|| props("matches", json!({"expression": expression}))),
        exit: !matched && was && *exit_when_unmatched,
    }
}

/// Schedules a `date` trigger for the attribute's current value.
fn schedule_date(
    trigger: &AudienceTrigger,
    old: Option<&Watch>,
    seen: Seen<'_>,
    now: Millis,
) -> Outcome {
    let AudienceTrigger::Date {
        attribute,
        offset_days,
        at_minute,
        ..
    } = trigger
    else {
        return Outcome::default();
    };
    let value = seen.attributes.get(attribute).filter(|v| !v.is_null());
    let text = value.map(Value::to_string);
    if text.is_some() && old.and_then(|w| w.date.as_ref()) == text.as_ref() {
        return Outcome::default();
    }
    let mut watch = old.cloned().unwrap_or_default();
    watch.date = text.clone();
    watch.due = match value {
        Some(v) if text != watch.entered_for => {
            dates::entry_at(v, seen.zone, *offset_days, *at_minute).filter(|at| *at > now)
        }
        _ => None,
    };
    let write = if old.is_none() && watch == Watch::default() {
        None
    } else {
        Outcome::store(watch, old)
    };
    Outcome {
        write,
        ..Outcome::default()
    }
}

/// The steps an outcome adds to what a trigger already planned (`planned`) for one journey:
/// an exit of the customer's active enrollment (which replaces any step the plan had for it:
/// the exit wins, and the enrollment is written once), or an entry under the journey's
/// re-entry policy (unless the plan already enters this journey). `mine` holds the customer's
/// enrollments in the journey and gains the new one, so a second trigger of the same journey
/// in the same moment sees it.
pub fn plan(
    journey: JourneyRef<'_>,
    customer: &str,
    trigger: &str,
    outcome: Outcome,
    mine: &mut Vec<Enrollment>,
    planned: &mut Vec<Step>,
    now: Millis,
) {
    if outcome.exit {
        for e in mine
            .iter()
            .filter(|e| e.is_active() && e.journey == journey.name)
        {
            let already_ends = planned.iter().any(
                |s| matches!(s, Step::Settled { applied, .. } if applied.enrollment.id == e.id),
            );
            if already_ends {
                continue;
            }
            planned
                .retain(|s| !matches!(s, Step::Decide { enrollment, .. } if enrollment.id == e.id));
            planned.push(Step::Settled {
                before: Some(Tally::of(e)),
                applied: exit(e.clone(), unmatched_reason(trigger), now),
            });
        }
    }
    let Some(properties) = outcome.enter else {
        return;
    };
    let entering_already = planned.iter().any(|s| {
        matches!(s, Step::Decide { enrollment, trigger: Trigger::Entered { .. }, .. }
            if enrollment.journey == journey.name && !mine.iter().any(|m| m.id == enrollment.id))
    });
    if entering_already {
        return;
    }
    let event = entry_event(customer, journey.name, trigger, properties, now);
    if let Some(Routing::Enter { run, key }) = entry_allowed(&journey.spec.reentry, mine, &event) {
        let enrollment = enroll(journey.name, journey.version, customer, run, key, now);
        mine.push(enrollment.clone());
        planned.push(Step::Decide {
            enrollment,
            trigger: Trigger::Entered { event },
            due: None,
            before: None,
        });
    }
}

#[cfg(test)]
mod tests;
