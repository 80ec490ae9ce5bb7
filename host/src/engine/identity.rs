//! Identity merge (issue 12), pure: which event merges which id, and what merging an
//! anonymous profile into a known customer writes. The shell loads both customers' profiles and
//! enrollments and commits the [`MergeCommit`] this fills (`store/identity.rs`).
//!
//! The rules (documented in `docs/API.md` § Identity):
//!
//! - **Which events merge.** An `identify` whose `anonymous_id` property (or, from the
//!   Segment routes, `$segment.anonymousId`) names another id, and an `alias` whose
//!   `previous_id` property names another id: that id is merged into the event's customer.
//! - **Traits.** The known customer's values win on a key both profiles have; the anonymous
//!   profile fills the keys the known one lacks. The merging `identify` is processed on the
//!   known customer before the merge reaches them (it is queued first), so its traits — the
//!   most recent — are among the known customer's, and they win.
//! - **Enrollments.** For each journey the anonymous id has enrollments in: if the known
//!   customer has none in that journey, every run of the anonymous id moves to the known
//!   customer (same run numbers, pending timers with them; a report counts it once: a move
//!   changes no cell); if the known customer has one, theirs wins and the anonymous id's
//!   active run is ended, exit reason [`MERGED`], and stays under the anonymous id.

use super::exit;
use super::ids::enrollment_id;
use crate::model::{Customer, Enrollment, Event, Millis};
use crate::report::cells::{delta, Tally};
use crate::store::{MergeCommit, TimerRecord};
use serde_json::Value;

/// The exit reason of an anonymous enrollment ended by a merge (the known customer's
/// enrollment in the same journey wins).
pub const MERGED: &str = "merged";

/// The event name of Segment's `alias` and of its `POST /v1/events` equivalent.
pub const ALIAS: &str = "alias";

/// The id `event` merges into its customer, if any (see the module's rules); may be the
/// customer's own id, which merges nothing.
pub fn merge_source(event: &Event) -> Option<&str> {
    let p = &event.properties;
    let named = match event.name.as_str() {
        super::IDENTIFY => p.get("anonymous_id").or_else(|| {
            p.get("$segment")
                .and_then(|s| s.get("anonymousId"))
                .filter(|_| p.contains_key("$segment"))
        }),
        ALIAS => p.get("previous_id"),
        _ => None,
    };
    match named {
        Some(Value::String(id)) if !id.is_empty() && *id != event.customer => Some(id),
        _ => None,
    }
}

/// One side of a merge: a customer's id, profile (if any) and enrollments.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub id: &'a str,
    pub customer: Option<&'a Customer>,
    pub enrollments: &'a [Enrollment],
}

/// What merging `merged` into `known` writes, at `now`; `commit` carries the tenant and the
/// trigger's key.
pub fn merge(commit: &mut MergeCommit, known: Side<'_>, merged: Side<'_>, now: Millis) {
    let known_id = known.id;
    let merged_id = merged.id.to_string();
    commit.merged = merged_id.clone();
    let mut customer = known.customer.cloned().unwrap_or_else(|| Customer {
        id: known_id.to_string(),
        attributes: Default::default(),
    });
    if let Some(merged) = merged.customer {
        for (k, v) in &merged.attributes {
            customer
                .attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
    }
    commit.customer = Some(customer);
    let tenant = commit.tenant.clone();
    let record = |customer: &str, e: &Enrollment, name: &str, due: Millis| TimerRecord {
        tenant: tenant.clone(),
        customer: customer.to_string(),
        journey: e.journey.clone(),
        run: e.run,
        name: name.to_string(),
        due,
    };
    for e in merged.enrollments.iter().cloned() {
        let known_has_journey = known.enrollments.iter().any(|k| k.journey == e.journey);
        if known_has_journey {
            if !e.is_active() {
                continue;
            }
            let before = Tally::of(&e);
            let ended = exit(e, MERGED.to_string(), now);
            commit.timers_cancelled.extend(
                ended
                    .effects
                    .timers_cancelled
                    .iter()
                    .map(|t| record(&merged_id, &ended.enrollment, &t.name, t.due)),
            );
            commit
                .report_deltas
                .extend(delta(Some(&before), Tally::of(&ended.enrollment)));
            commit.enrollments.push(ended.enrollment);
        } else {
            commit
                .enrollments_removed
                .push((e.customer.clone(), e.journey.clone(), e.run));
            for t in &e.timers {
                commit.timers_moved.push((
                    record(&merged_id, &e, &t.name, t.due),
                    record(known_id, &e, &t.name, t.due),
                ));
            }
            // Moving changes no cell: a tally names the journey, version and arms, never the
            // customer.
            let mut moved = e;
            moved.customer = known_id.to_string();
            moved.id = enrollment_id(&moved.journey, known_id, moved.run);
            commit.enrollments.push(moved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnrollmentStatus, PendingTimer};
    use serde_json::json;

    fn event(name: &str, properties: Value) -> Event {
        Event {
            id: "e".into(),
            customer: "ada".into(),
            name: name.into(),
            properties: serde_json::from_value(properties).unwrap(),
            timestamp: 0,
        }
    }

    fn customer(id: &str, attributes: Value) -> Customer {
        Customer {
            id: id.into(),
            attributes: serde_json::from_value(attributes).unwrap(),
        }
    }

    fn enrollment(customer: &str, journey: &str, run: u32) -> Enrollment {
        crate::store::fixtures::enrollment(customer, journey, run)
    }

    fn side<'a>(id: &'a str, c: Option<&'a Customer>, e: &'a [Enrollment]) -> Side<'a> {
        Side {
            id,
            customer: c,
            enrollments: e,
        }
    }

    #[test]
    fn identify_and_alias_name_the_id_they_merge() {
        let id = |name, p| merge_source(&event(name, p)).map(str::to_string);
        assert_eq!(
            id("identify", json!({"anonymous_id": "a1"})),
            Some("a1".into())
        );
        assert_eq!(
            id(
                "identify",
                json!({"traits": {}, "$segment": {"anonymousId": "a2"}})
            ),
            Some("a2".into())
        );
        assert_eq!(id("alias", json!({"previous_id": "a3"})), Some("a3".into()));
        // Its own id, an empty one, a number, or another event merge nothing.
        assert_eq!(id("identify", json!({"anonymous_id": "ada"})), None);
        assert_eq!(id("alias", json!({"previous_id": ""})), None);
        assert_eq!(id("alias", json!({"previous_id": 7})), None);
        assert_eq!(id("signed_up", json!({"anonymous_id": "a1"})), None);
    }

    #[test]
    fn known_traits_win_and_anonymous_ones_fill_the_gaps() {
        let mut c = MergeCommit::default();
        let (ada, anon) = (
            customer("ada", json!({"plan": "pro"})),
            customer("anon", json!({"plan": "free", "utm": "ad"})),
        );
        merge(
            &mut c,
            side("ada", Some(&ada), &[]),
            side("anon", Some(&anon), &[]),
            5,
        );
        assert_eq!(
            c.customer.unwrap().attributes,
            serde_json::from_value::<crate::model::Object>(json!({"plan": "pro", "utm": "ad"}))
                .unwrap()
        );
        assert_eq!(c.merged, "anon");
    }

    #[test]
    fn an_anonymous_run_moves_with_its_timers_when_the_known_customer_has_none() {
        let mut c = MergeCommit {
            tenant: "t".into(),
            ..MergeCommit::default()
        };
        let mut anon = enrollment("anon", "welcome", 1);
        anon.timers.push(PendingTimer {
            name: "nudge".into(),
            due: 9,
        });
        merge(
            &mut c,
            side("ada", None, &[]),
            side("anon", None, &[anon]),
            5,
        );
        assert_eq!(c.enrollments.len(), 1);
        let moved = &c.enrollments[0];
        assert_eq!(
            (moved.id.as_str(), moved.customer.as_str()),
            ("welcome/ada/1", "ada")
        );
        assert_eq!(moved.status, EnrollmentStatus::Active);
        assert_eq!(
            c.enrollments_removed,
            [("anon".into(), "welcome".into(), 1)]
        );
        assert_eq!(c.timers_moved.len(), 1);
        assert_eq!(c.timers_moved[0].0.customer, "anon");
        assert_eq!(c.timers_moved[0].1.customer, "ada");
        assert!(c.report_deltas.is_empty(), "a move changes no report cell");
        // A profile is made for a known id that had none.
        assert_eq!(c.customer.unwrap().id, "ada");
    }

    #[test]
    fn the_known_customers_enrollment_wins_and_the_anonymous_one_ends_as_merged() {
        let mut c = MergeCommit {
            tenant: "t".into(),
            ..MergeCommit::default()
        };
        let mut anon = enrollment("anon", "welcome", 1);
        anon.timers.push(PendingTimer {
            name: "nudge".into(),
            due: 9,
        });
        let mut done = enrollment("anon", "welcome", 2);
        done.status = EnrollmentStatus::Completed;
        let known = [enrollment("ada", "welcome", 1)];
        merge(
            &mut c,
            side("ada", None, &known),
            side("anon", None, &[anon, done]),
            5,
        );
        assert_eq!(c.enrollments.len(), 1, "only the active run is written");
        let ended = &c.enrollments[0];
        assert_eq!(ended.customer, "anon");
        assert_eq!(ended.status, EnrollmentStatus::Exited);
        assert_eq!(ended.exit_reason.as_deref(), Some(MERGED));
        assert_eq!(ended.ended_at, Some(5));
        assert!(ended.timers.is_empty());
        assert!(c.enrollments_removed.is_empty());
        assert_eq!(c.timers_cancelled.len(), 1);
        assert_eq!(c.timers_cancelled[0].customer, "anon");
        // The report moves it from active to exited (merged): one delta.
        let d = crate::report::cells::merge(&c.report_deltas);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].counts.active, d[0].counts.exited), (-1, 1));
        assert_eq!(d[0].counts.entered, 0);
    }
}
