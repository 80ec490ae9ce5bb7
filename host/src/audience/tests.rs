//! What each audience trigger does with events and due moments.

use super::*;
use crate::model::AudienceTrigger;

const DAY: Millis = eval::DAY_MS;

fn event(name: &str) -> Event {
    Event {
        id: "e".into(),
        customer: "ada".into(),
        name: name.into(),
        properties: Object::new(),
        timestamp: 0,
    }
}

fn seen(attributes: &Object) -> Seen<'_> {
    Seen {
        attributes,
        account: None,
        zone: Tz::UTC,
    }
}

fn attrs(v: Value) -> Object {
    v.as_object().cloned().unwrap_or_default()
}

fn inactive(events: &[&str]) -> AudienceTrigger {
    AudienceTrigger::Inactive {
        name: "inactive_30d".into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        quiet_for: 30 * DAY,
    }
}

fn stored(out: &Outcome) -> Watch {
    out.write.clone().flatten().expect("a watch is written")
}

#[test]
fn a_customer_first_seen_is_watched_from_then_and_activity_moves_only_last_seen() {
    let t = inactive(&["logged_in"]);
    let a = Object::new();
    let first = on_event(&t, None, &event("page"), true, seen(&a), 5);
    let w = stored(&first);
    assert_eq!((w.last_seen, w.due), (Some(5), Some(5 + 30 * DAY)));
    // An event outside the set writes nothing; one in the set moves last_seen only.
    assert_eq!(
        on_event(&t, Some(&w), &event("page"), false, seen(&a), 9).write,
        None
    );
    let moved = stored(&on_event(
        &t,
        Some(&w),
        &event("logged_in"),
        false,
        seen(&a),
        10 * DAY,
    ));
    assert_eq!((moved.last_seen, moved.due), (Some(10 * DAY), w.due));
}

#[test]
fn an_inactivity_deadline_pushes_back_after_activity_and_enters_after_silence() {
    let t = inactive(&[]);
    let a = Object::new();
    let w = Watch {
        due: Some(30 * DAY),
        last_seen: Some(10 * DAY),
        ..Watch::default()
    };
    let pushed = on_due(&t, Some(&w), 30 * DAY, seen(&a), 30 * DAY);
    assert_eq!(pushed.enter, None);
    assert_eq!(stored(&pushed).due, Some(40 * DAY));
    let quiet = Watch {
        due: Some(40 * DAY),
        ..stored(&pushed)
    };
    let entered = on_due(&t, Some(&quiet), 40 * DAY, seen(&a), 40 * DAY);
    let props = entered.enter.clone().expect("enters");
    assert_eq!(props["last_seen_at"], json!(10 * DAY));
    assert_eq!(props["audience"], json!("inactive"));
    assert_eq!(stored(&entered).due, None, "rests until the next activity");
    // The next activity arms it again.
    let again = on_event(
        &t,
        Some(&stored(&entered)),
        &event("x"),
        false,
        seen(&a),
        41 * DAY,
    );
    assert_eq!(stored(&again).due, Some(71 * DAY));
    // A due entry the watch no longer names is stale.
    assert_eq!(
        on_due(&t, Some(&quiet), 1, seen(&a), 40 * DAY),
        Outcome::default()
    );
}

fn trial(exit: bool) -> AudienceTrigger {
    AudienceTrigger::Matches {
        name: "trial_ending".into(),
        expression: r#"plan == "trial" and days_until(trial_ends_at) <= 7"#.into(),
        exit_when_unmatched: exit,
    }
}

#[test]
fn a_condition_enters_on_the_edge_and_exits_when_it_stops_matching() {
    let t = AudienceTrigger::Matches {
        name: "pro".into(),
        expression: r#"plan == "pro""#.into(),
        exit_when_unmatched: true,
    };
    let free = attrs(json!({"plan": "free"}));
    let pro = attrs(json!({"plan": "pro"}));
    assert_eq!(
        on_event(&t, None, &event("identify"), true, seen(&free), 0),
        Outcome::default()
    );
    let up = on_event(&t, None, &event("identify"), true, seen(&pro), 0);
    assert!(up.enter.is_some() && !up.exit);
    let w = stored(&up);
    // Still matching: no second entry, nothing written.
    assert_eq!(
        on_event(&t, Some(&w), &event("identify"), true, seen(&pro), 1),
        Outcome::default()
    );
    // Not a profile change: not evaluated.
    assert_eq!(
        on_event(&t, Some(&w), &event("clicked"), false, seen(&free), 1),
        Outcome::default()
    );
    let down = on_event(&t, Some(&w), &event("identify"), true, seen(&free), 2);
    assert!(down.exit && down.enter.is_none());
    assert!(!stored(&down).matched);
    assert_eq!(unmatched_reason("pro"), "unmatched:pro");
}

#[test]
fn a_condition_on_dates_is_re_evaluated_when_its_day_count_changes() {
    let t = trial(false);
    let a = attrs(json!({"plan": "trial", "trial_ends_at": 20 * DAY}));
    let first = on_event(&t, None, &event("identify"), true, seen(&a), DAY / 2);
    assert_eq!(first.enter, None);
    let w = stored(&first);
    assert_eq!(w.due, Some(DAY), "the next whole day before the end");
    // Walk the due entries until it enters: exactly 7 days before the end.
    let mut w = w;
    let entered_at = loop {
        let due = w.due.expect("re-evaluated while it cannot match yet");
        let out = on_due(&t, Some(&w), due, seen(&a), due);
        w = stored(&out);
        if out.enter.is_some() {
            break due;
        }
    };
    assert_eq!(entered_at, 13 * DAY);
    // Without the attribute nothing is scheduled and nothing is stored.
    let plain = attrs(json!({"plan": "trial"}));
    assert_eq!(
        on_event(&t, None, &event("identify"), true, seen(&plain), 0),
        Outcome::default()
    );
}

#[test]
fn a_date_trigger_is_scheduled_once_per_value_and_moves_when_the_value_changes() {
    let t = AudienceTrigger::Date {
        name: "renewal_soon".into(),
        attribute: "renews_at".into(),
        offset_days: -7,
        at_minute: 9 * 60,
    };
    let a = attrs(json!({"renews_at": "1970-01-31"}));
    let w = stored(&on_event(&t, None, &event("identify"), true, seen(&a), 0));
    assert_eq!(w.due, Some(23 * DAY + 9 * 3_600_000));
    // The same value again changes nothing.
    assert_eq!(
        on_event(&t, Some(&w), &event("identify"), true, seen(&a), 1),
        Outcome::default()
    );
    // A new value moves the entry.
    let b = attrs(json!({"renews_at": "1970-02-10"}));
    let moved = stored(&on_event(
        &t,
        Some(&w),
        &event("identify"),
        true,
        seen(&b),
        2,
    ));
    assert_eq!(moved.due, Some(33 * DAY + 9 * 3_600_000));
    // Due: it enters, once for that value.
    let due = moved.due.unwrap();
    let fired = on_due(&t, Some(&moved), due, seen(&b), due);
    assert_eq!(
        fired.enter.as_ref().map(|p| p["date"].clone()),
        Some(json!("1970-02-10"))
    );
    let after = stored(&fired);
    assert_eq!(after.due, None);
    // Set again to the value it entered for: not scheduled again.
    let other = attrs(json!({"renews_at": "1970-03-10"}));
    let w2 = stored(&on_event(
        &t,
        Some(&after),
        &event("identify"),
        true,
        seen(&other),
        due,
    ));
    let back = stored(&on_event(
        &t,
        Some(&w2),
        &event("identify"),
        true,
        seen(&b),
        due,
    ));
    assert_eq!(back.due, None);
    // A date already past is not entered.
    let past = attrs(json!({"renews_at": "1970-01-02"}));
    let none = on_event(&t, None, &event("identify"), true, seen(&past), 30 * DAY);
    assert_eq!(stored(&none).due, None);
}

#[test]
fn an_account_change_evaluates_conditions_only() {
    let enterprise = AudienceTrigger::Matches {
        name: "enterprise".into(),
        expression: r#"account.plan == "enterprise""#.into(),
        exit_when_unmatched: true,
    };
    let a = Object::new();
    let account = attrs(json!({ "plan": "enterprise" }));
    let with_account = Seen {
        account: Some(&account),
        ..seen(&a)
    };
    let entered = on_account_change(&enterprise, None, with_account, 7);
    assert!(entered.enter.is_some());
    assert!(stored(&entered).matched);
    // Downgraded: the member who matched exits.
    let free = attrs(json!({ "plan": "free" }));
    let was = stored(&entered);
    let left = on_account_change(
        &enterprise,
        Some(&was),
        Seen {
            account: Some(&free),
            ..seen(&a)
        },
        8,
    );
    assert!(left.exit && left.enter.is_none());
    // Not activity: an inactivity watch is left as it is.
    let quiet = inactive(&[]);
    let w = Watch {
        last_seen: Some(1),
        due: Some(1 + 30 * DAY),
        ..Watch::default()
    };
    assert_eq!(
        on_account_change(&quiet, Some(&w), with_account, 9),
        Outcome::default()
    );
}

#[test]
fn a_merged_watch_keeps_the_known_customers_state_and_the_later_activity() {
    let merged = Watch {
        last_seen: Some(30),
        due: Some(130),
        ..Watch::default()
    };
    // No watch of their own: the known customer takes the merged one.
    assert_eq!(merge_watches(None, &merged), merged);
    // Both active: the later activity, the earlier due (pushed back when it fires).
    let known = Watch {
        last_seen: Some(10),
        due: Some(110),
        ..Watch::default()
    };
    let kept = merge_watches(Some(&known), &merged);
    assert_eq!((kept.last_seen, kept.due), (Some(30), Some(110)));
    // A resting known watch is rearmed by the merged id's pending deadline.
    let resting = Watch {
        last_seen: Some(10),
        due: None,
        ..Watch::default()
    };
    assert_eq!(merge_watches(Some(&resting), &merged).due, Some(130));
    // Conditions: the known customer's state wins.
    let matched = Watch {
        matched: true,
        ..Watch::default()
    };
    assert_eq!(
        merge_watches(Some(&Watch::default()), &matched),
        Watch::default()
    );
}
