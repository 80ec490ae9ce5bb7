use super::*;
use crate::engine::*;
use crate::model::*;
use serde_json::json;

#[test]
fn identify_sets_traits_and_null_removes_them() {
    let mut c = customer(json!({"plan": "trial", "email": "a@example.com"}));
    let traits = json!({"plan": "pro", "email": null, "timezone": "Europe/Paris"});
    assert!(apply_traits(&mut c, traits.as_object().unwrap()));
    assert_eq!(
        serde_json::Value::Object(c.attributes.clone()),
        json!({"plan": "pro", "timezone": "Europe/Paris"})
    );
    assert!(!apply_traits(
        &mut c,
        json!({"plan": "pro"}).as_object().unwrap()
    ));
}

#[test]
fn unsubscribed_or_suppressed_customers_get_no_sends_recorded_as_suppressed() {
    let sends = vec![send("welcome")];
    let mut applied = apply(active(), &spec(), sends.clone(), "k", 0).unwrap();
    suppress(&mut applied, &customer(json!({})));
    assert!(!applied.effects.sends[0].suppressed);

    for attrs in [
        json!({"unsubscribed": true}),
        json!({"suppressed": true}),
        json!({"unsubscribed_channels": ["webhook"]}),
    ] {
        let mut applied = apply(active(), &spec(), sends.clone(), "k", 0).unwrap();
        suppress(&mut applied, &customer(attrs.clone()));
        assert!(applied.effects.sends[0].suppressed, "{attrs}");
        let summary = &applied.enrollment.channels["webhook"];
        assert_eq!((summary.sent, summary.suppressed), (0, 1), "{attrs}");
    }
    let other_channel = customer(json!({"unsubscribed_channels": ["sms"]}));
    assert!(!is_suppressed(&other_channel, "webhook"));
}

#[test]
fn unsubscribing_from_one_channel_or_all() {
    let mut c = customer(json!({}));
    unsubscribe(&mut c, Some("sms"));
    unsubscribe(&mut c, Some("sms"));
    assert_eq!(c.attributes["unsubscribed_channels"], json!(["sms"]));
    assert!(is_suppressed(&c, "sms") && !is_suppressed(&c, "email"));
    unsubscribe(&mut c, None);
    assert!(is_suppressed(&c, "email"));
}

#[test]
fn engagement_events_name_their_message_and_count_per_channel() {
    let event = |name: &str, props: serde_json::Value| Event {
        id: "e".into(),
        customer: "c1".into(),
        name: name.into(),
        properties: props.as_object().unwrap().clone(),
        timestamp: 0,
    };
    assert_eq!(
        engagement(&event("opened", json!({"message_id": "m1"}))),
        Some((Engagement::Opened, "m1"))
    );
    assert_eq!(engagement(&event("opened", json!({}))), None);
    assert_eq!(
        engagement(&event("signed_up", json!({"message_id": "m1"}))),
        None
    );
    let mut e = active();
    record_engagement(&mut e, "webhook", Engagement::Opened);
    record_engagement(&mut e, "webhook", Engagement::Clicked);
    assert_eq!(
        (e.channels["webhook"].opened, e.channels["webhook"].clicked),
        (1, 1)
    );
}

// Subscription topics (issue 11)
#[test]
fn a_topic_left_suppresses_only_sends_under_that_topic() {
    use crate::engine::profile::{is_suppressed_send, send_topic, update_profile};
    let mut c = customer(json!({}));
    let left = Event {
        id: "u".into(),
        customer: "c1".into(),
        name: "unsubscribed".into(),
        properties: json!({"topic": "product tips", "channel": "email"})
            .as_object()
            .unwrap()
            .clone(),
        timestamp: 0,
    };
    assert!(update_profile(&mut c, &left));
    assert_eq!(c.attributes["unsubscribed_topics"], json!(["product tips"]));
    assert!(is_suppressed_send(&c, "email", Some("product tips")));
    assert!(!is_suppressed_send(&c, "email", Some("billing")));
    assert!(
        !is_suppressed_send(&c, "email", None),
        "the channel is kept"
    );
    assert_eq!(send_topic(&json!({"topic": "billing"})), Some("billing"));
    assert_eq!(send_topic(&json!({"topic": 3})), None);
}

#[test]
fn setting_subscriptions_replaces_them_whole() {
    use crate::engine::profile::{
        set_subscriptions, subscriptions, subscriptions_properties, Subscriptions,
    };
    let mut c = customer(json!({
        "unsubscribed": true,
        "unsubscribed_channels": ["sms"],
        "unsubscribed_topics": ["tips"],
        "plan": "pro"
    }));
    let wanted = Subscriptions {
        unsubscribed_all: false,
        channels: vec![],
        topics: vec!["billing".into()],
    };
    assert!(set_subscriptions(
        &mut c,
        &subscriptions_properties(&wanted)
    ));
    assert_eq!(subscriptions(&c), wanted);
    assert_eq!(
        serde_json::Value::Object(c.attributes.clone()),
        json!({"unsubscribed_topics": ["billing"], "plan": "pro"})
    );
    assert!(!set_subscriptions(
        &mut c,
        &subscriptions_properties(&wanted)
    ));
}
