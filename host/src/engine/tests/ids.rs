use super::*;
use crate::engine::ids::{is_header_token, KEY_FORMAT, MAX_MESSAGE_ID};
use crate::model::*;
use proptest::prelude::*;
use serde_json::json;

fn entered(journey: &str, version: u32, customer: &str, run: u32) -> Enrollment {
    enroll(journey, version, customer, run, None, 0)
}

fn on_event(id: &str) -> String {
    let mut e = event("signed_up", json!({}));
    e.id = id.into();
    trigger_id(&Trigger::Entered { event: e }, None)
}

/// The old format, `{tenant}/{journey}/{version}/{customer}/{run}/{trigger}`, to show what
/// collided.
fn old_prefix(tenant: &str, e: &Enrollment, trigger_id: &str) -> String {
    format!(
        "{tenant}/{}/{}/{}/{}/{trigger_id}",
        e.journey, e.version, e.customer, e.run
    )
}

#[test]
fn keys_are_versioned_and_frozen() {
    let trigger = Trigger::Entered {
        event: event("signed_up", json!({})),
    };
    let id = trigger_id(&trigger, None);
    assert_eq!(id, "e-signed_up-1");
    let prefix = key_prefix("acme", &active(), &id);
    // Golden: a change here changes what a new trigger's sends are keyed by.
    assert_eq!(prefix, "k1-e58126b6df52a465a57324dcf84887f8");
    assert!(prefix.starts_with(&format!("{KEY_FORMAT}-")));
    assert_eq!(message_id(&prefix, 7), format!("{prefix}-7"));
}

#[test]
fn customers_whose_old_keys_collided_get_distinct_keys() {
    // Customer `a/1/e-x` entering on event `y`, and customer `a` entering on event `x/1/e-y`.
    let (first, second) = (
        entered("onboarding", 1, "a/1/e-x", 1),
        entered("onboarding", 1, "a", 1),
    );
    let (t1, t2) = (on_event("y"), on_event("x/1/e-y"));
    assert_eq!(
        old_prefix("acme", &first, &t1),
        old_prefix("acme", &second, &t2),
        "the old format collided"
    );
    assert_ne!(
        key_prefix("acme", &first, &t1),
        key_prefix("acme", &second, &t2)
    );
}

#[test]
fn a_huge_timer_name_makes_a_short_header_safe_key() {
    let name = format!("{}\u{0}\r\n/:", "n".repeat(1 << 20));
    let id = trigger_id(&Trigger::Timer { name }, Some(5));
    let key = message_id(&key_prefix("acme", &active(), &id), usize::MAX);
    assert_eq!(key.len(), MAX_MESSAGE_ID);
    assert!(is_header_token(&key), "{key}");
}

#[test]
fn delivery_trigger_ids_do_not_grow_with_message_ids() {
    let report = DeliveryReport {
        message_id: "a/very/long/key/".repeat(20),
        channel: "webhook".into(),
        template: "t".into(),
        outcome: DeliveryOutcome::Delivered { provider_id: None },
    };
    let id = trigger_id(&Trigger::Delivery { report }, None);
    assert_eq!(id.len(), 18);
}

#[test]
fn delivery_trigger_ids_of_old_message_ids_are_unchanged() {
    // Stored messages keep their ids; the report's trigger id hashes it as it always did.
    let report = DeliveryReport {
        message_id: "acme/onboarding/1/ada/1/e-1/0".into(),
        channel: "webhook".into(),
        template: "t".into(),
        outcome: DeliveryOutcome::Delivered { provider_id: None },
    };
    assert_eq!(
        trigger_id(&Trigger::Delivery { report }, None),
        format!(
            "d-{:016x}",
            crate::hash::fnv1a(b"acme/onboarding/1/ada/1/e-1/0")
        )
    );
}

#[test]
fn seeds_are_stable_and_distinct_per_trigger() {
    assert_eq!(seed("t", "e", "x"), seed("t", "e", "x"));
    assert_ne!(seed("t", "e", "x"), seed("t", "e", "y"));
    assert_ne!(seed("t", "ex", ""), seed("t", "e", "x"));
    // Golden: seeds did not change with the key format, so decisions do not either.
    assert_eq!(
        seed("acme", "onboarding/ada/1", "e-ev-1"),
        crate::hash::fnv1a(b"acme\x1fonboarding/ada/1\x1fe-ev-1\x1f")
    );
}

#[test]
fn task_ids_are_short_url_safe_and_tell_parts_apart() {
    let id = task_id("onboarding/ada/1", "e-ev-1", 0);
    assert_eq!(id.len(), "task_".len() + 32);
    assert!(is_header_token(&id));
    assert_ne!(task_id("a", "bc", 0), task_id("ab", "c", 0));
    assert_ne!(task_id("a", "b", 1), task_id("a", "b", 10));
}

/// Arbitrary parts, including separators, control characters and non-ASCII.
fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z/_-]{0,6}",
        any::<String>(),
        prop::collection::vec(
            prop_oneof![Just('/'), Just('-'), Just('\u{1f}'), Just('a')],
            0..8
        )
        .prop_map(|cs| cs.into_iter().collect()),
    ]
}

type Parts = (String, String, u32, String, u32, String);

fn parts() -> impl Strategy<Value = Parts> {
    (part(), part(), any::<u32>(), part(), any::<u32>(), part())
}

fn key_of((tenant, journey, version, customer, run, trigger): &Parts) -> String {
    key_prefix(tenant, &entered(journey, *version, customer, *run), trigger)
}

proptest! {
    #[test]
    fn distinct_parts_make_distinct_keys(a in parts(), b in parts()) {
        prop_assume!(a != b);
        prop_assert_ne!(key_of(&a), key_of(&b));
    }

    #[test]
    fn parts_that_differ_in_one_boundary_make_distinct_keys(
        (tenant, journey, version, customer, run, trigger) in parts(),
        split in 0usize..8,
    ) {
        // Move one character across the customer/trigger boundary: `/`-joining would not see it.
        let joined = format!("{customer}{trigger}");
        let at = joined.char_indices().map(|(i, _)| i).nth(split).unwrap_or(joined.len());
        let (c2, t2) = joined.split_at(at);
        prop_assume!(c2 != customer);
        let a = (tenant.clone(), journey.clone(), version, customer, run, trigger);
        let b = (tenant, journey, version, c2.to_string(), run, t2.to_string());
        prop_assert_ne!(key_of(&a), key_of(&b));
    }

    #[test]
    fn keys_are_bounded_header_tokens_whatever_the_parts(p in parts(), index in any::<usize>()) {
        let key = message_id(&key_of(&p), index);
        prop_assert!(key.len() <= MAX_MESSAGE_ID);
        prop_assert!(is_header_token(&key), "{}", key);
        prop_assert!(http::HeaderValue::from_str(&key).is_ok());
    }

    #[test]
    fn distinct_command_indexes_make_distinct_keys(
        p in parts(), i in any::<usize>(), j in any::<usize>(),
    ) {
        prop_assume!(i != j);
        let prefix = key_of(&p);
        prop_assert_ne!(message_id(&prefix, i), message_id(&prefix, j));
    }

    #[test]
    fn timer_trigger_ids_tell_name_and_due_apart(
        a in "[!-~]{1,12}", b in "[!-~]{1,12}", da in 0i64..1_000_000, db in 0i64..1_000_000,
    ) {
        prop_assume!((&a, da) != (&b, db));
        let id = |name: &str, due| trigger_id(&Trigger::Timer { name: name.into() }, Some(due));
        prop_assert_ne!(id(&a, da), id(&b, db));
    }

    #[test]
    fn enrollment_ids_are_injective_for_valid_journey_names(
        ja in "[a-z0-9_-]{1,8}", jb in "[a-z0-9_-]{1,8}",
        ca in part(), cb in part(), ra in any::<u32>(), rb in any::<u32>(),
    ) {
        prop_assume!((&ja, &ca, ra) != (&jb, &cb, rb));
        prop_assert_ne!(enrollment_id(&ja, &ca, ra), enrollment_id(&jb, &cb, rb));
    }
}
