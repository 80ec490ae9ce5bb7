//! The customer's profile as events change it: `identify` traits, unsubscribes and suppression,
//! and engagement (opens, clicks, replies, bounces) counted per channel on the sending enrollment.

use super::Applied;
use crate::model::{Customer, Enrollment, Event};
use serde_json::Value;

/// `identify`: sets the customer's traits (under `traits`, Segment's shape, or the properties
/// themselves).
pub const IDENTIFY: &str = "identify";
/// `unsubscribed`: the customer leaves one channel (property `channel`) or every channel.
pub const UNSUBSCRIBED: &str = "unsubscribed";
// Subscription topics (issue 11)
/// `subscriptions_set`: the host composes it for `PUT /v1/customers/{id}/subscriptions`; its
/// properties replace what the customer is unsubscribed from (see [`set_subscriptions`]).
pub const SUBSCRIPTIONS_SET: &str = "subscriptions_set";
/// The customer's attribute listing the subscription topics they left.
pub const UNSUBSCRIBED_TOPICS: &str = "unsubscribed_topics";
/// The customer's attribute listing the channels they left.
pub const UNSUBSCRIBED_CHANNELS: &str = "unsubscribed_channels";
/// The customer's attribute saying they left everything.
pub const UNSUBSCRIBED_ALL: &str = "unsubscribed";
/// The key of a send's payload that names its subscription topic.
pub const TOPIC_KEY: &str = "topic";

/// `task_resolved`: a handoff's task was resolved (the host composes it, see
/// [`task_resolved_event`](super::task_resolved_event)).
pub const TASK_RESOLVED: &str = "task_resolved";

/// A tracking event about one of the customer's messages (named in property `message_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Delivered,
    Opened,
    Clicked,
    Replied,
    Bounced,
    Unsubscribed,
    /// An in-app message shown in the customer's inbox (issue 11). Not counted.
    Seen,
    /// An in-app message archived by the customer (issue 11). Not counted.
    Archived,
}

impl Engagement {
    /// Every kind, in the order reports list them.
    pub const ALL: [Engagement; 8] = [
        Engagement::Delivered,
        Engagement::Opened,
        Engagement::Clicked,
        Engagement::Replied,
        Engagement::Bounced,
        Engagement::Unsubscribed,
        Engagement::Seen,
        Engagement::Archived,
    ];

    /// The event name (and metric label) of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Engagement::Delivered => "delivered",
            Engagement::Opened => "opened",
            Engagement::Clicked => "clicked",
            Engagement::Replied => "replied",
            Engagement::Bounced => "bounced",
            Engagement::Unsubscribed => UNSUBSCRIBED,
            Engagement::Seen => "seen",
            Engagement::Archived => "archived",
        }
    }

    /// The kind an event name reports, if it is a tracking event.
    pub fn from_event_name(name: &str) -> Option<Engagement> {
        Engagement::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Applies `identify` traits to a customer's attributes: each key is set, and `null` removes
/// it. Returns whether anything changed.
pub fn apply_traits(customer: &mut Customer, traits: &crate::model::Object) -> bool {
    let mut changed = false;
    for (name, value) in traits {
        if value.is_null() {
            changed |= customer.attributes.remove(name).is_some();
        } else if customer.attributes.get(name) != Some(value) {
            customer.attributes.insert(name.clone(), value.clone());
            changed = true;
        }
    }
    changed
}

/// The engagement an event reports, and the message it is about.
pub fn engagement(event: &Event) -> Option<(Engagement, &str)> {
    let kind = Engagement::from_event_name(&event.name)?;
    let message = event.properties.get("message_id")?.as_str()?;
    Some((kind, message))
}

/// What an event changes on its customer before any journey hears it: `identify` traits and
/// `unsubscribed`. Returns whether anything changed.
pub fn update_profile(customer: &mut Customer, event: &Event) -> bool {
    let mut changed = false;
    if event.name == IDENTIFY {
        let traits = match event.properties.get("traits") {
            Some(Value::Object(traits)) => traits,
            _ => &event.properties,
        };
        changed |= apply_traits(customer, traits);
    }
    if event.name == UNSUBSCRIBED {
        // Issue 11: `topic` leaves one subscription topic (and takes precedence: a link in a
        // message sent under a topic leaves that topic, not the whole channel).
        match event.properties.get(TOPIC_KEY).and_then(Value::as_str) {
            Some(topic) => add_to_list(customer, UNSUBSCRIBED_TOPICS, topic),
            None => {
                let channel = event.properties.get("channel").and_then(Value::as_str);
                unsubscribe(customer, channel);
            }
        }
        changed = true;
    }
    if event.name == SUBSCRIPTIONS_SET {
        changed |= set_subscriptions(customer, &event.properties);
    }
    changed
}

/// Counts engagement on the enrollment's summary of `channel`. A provider's `delivered` is not
/// counted again: the host counted the message delivered when the adapter handed it over.
pub fn record_engagement(enrollment: &mut Enrollment, channel: &str, kind: Engagement) {
    let summary = enrollment.channels.entry(channel.to_string()).or_default();
    match kind {
        Engagement::Delivered | Engagement::Seen | Engagement::Archived => {}
        Engagement::Opened => summary.opened += 1,
        Engagement::Clicked => summary.clicked += 1,
        Engagement::Replied => summary.replied += 1,
        Engagement::Bounced => summary.bounced += 1,
        Engagement::Unsubscribed => summary.unsubscribed += 1,
    }
}

/// Records an unsubscribe on the customer: from `channel` if the event names one (attribute
/// `unsubscribed_channels`), else from everything (attribute `unsubscribed: true`).
pub fn unsubscribe(customer: &mut Customer, channel: Option<&str>) {
    match channel {
        Some(channel) => add_to_list(customer, UNSUBSCRIBED_CHANNELS, channel),
        None => {
            customer
                .attributes
                .insert("unsubscribed".into(), true.into());
        }
    }
}

/// Adds `item` to the customer's list attribute `name` (made a list if it was not one).
fn add_to_list(customer: &mut Customer, name: &str, item: &str) {
    let list = customer
        .attributes
        .entry(name)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Some(list) = list.as_array_mut() {
        if !list.iter().any(|c| c.as_str() == Some(item)) {
            list.push(item.into());
        }
    }
}

/// Whether the customer's list attribute `name` holds `item`.
fn in_list(customer: &Customer, name: &str, item: &str) -> bool {
    customer
        .attributes
        .get(name)
        .and_then(|v| v.as_array())
        .is_some_and(|list| list.iter().any(|c| c.as_str() == Some(item)))
}

/// Whether the customer may not receive messages through `channel`: attribute `unsubscribed`
/// or `suppressed` is `true`, or `unsubscribed_channels` lists the channel.
pub fn is_suppressed(customer: &Customer, channel: &str) -> bool {
    let flag = |name: &str| customer.attributes.get(name).and_then(|v| v.as_bool()) == Some(true);
    flag(UNSUBSCRIBED_ALL)
        || flag("suppressed")
        || in_list(customer, UNSUBSCRIBED_CHANNELS, channel)
}

// Subscription topics (issue 11)
/// The subscription topic a send names: its payload's `topic`, a string.
pub fn send_topic(payload: &Value) -> Option<&str> {
    payload.get(TOPIC_KEY).and_then(Value::as_str)
}

/// Whether the customer may not receive a send through `channel` under `topic`: suppressed on
/// the channel ([`is_suppressed`]), or `unsubscribed_topics` lists the topic.
pub fn is_suppressed_send(customer: &Customer, channel: &str, topic: Option<&str>) -> bool {
    is_suppressed(customer, channel)
        || topic.is_some_and(|t| in_list(customer, UNSUBSCRIBED_TOPICS, t))
}

/// What a customer is unsubscribed from: everything, channels, topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions {
    pub unsubscribed_all: bool,
    pub channels: Vec<String>,
    pub topics: Vec<String>,
}

/// The customer's subscriptions as their attributes say.
pub fn subscriptions(customer: &Customer) -> Subscriptions {
    let list = |name: &str| -> Vec<String> {
        customer
            .attributes
            .get(name)
            .and_then(|v| v.as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Subscriptions {
        unsubscribed_all: customer
            .attributes
            .get(UNSUBSCRIBED_ALL)
            .and_then(Value::as_bool)
            == Some(true),
        channels: list(UNSUBSCRIBED_CHANNELS),
        topics: list(UNSUBSCRIBED_TOPICS),
    }
}

/// The properties of a [`SUBSCRIPTIONS_SET`] event replacing a customer's subscriptions.
pub fn subscriptions_properties(s: &Subscriptions) -> crate::model::Object {
    let mut properties = crate::model::Object::new();
    properties.insert(UNSUBSCRIBED_ALL.into(), s.unsubscribed_all.into());
    properties.insert(UNSUBSCRIBED_CHANNELS.into(), s.channels.clone().into());
    properties.insert(UNSUBSCRIBED_TOPICS.into(), s.topics.clone().into());
    properties
}

/// Replaces what the customer is unsubscribed from with what a [`SUBSCRIPTIONS_SET`] event's
/// properties say (`unsubscribed`, `unsubscribed_channels`, `unsubscribed_topics`; a missing
/// one is empty). Returns whether anything changed.
pub fn set_subscriptions(customer: &mut Customer, properties: &crate::model::Object) -> bool {
    let before = subscriptions(customer);
    let all = properties.get(UNSUBSCRIBED_ALL).and_then(Value::as_bool) == Some(true);
    if all {
        customer
            .attributes
            .insert(UNSUBSCRIBED_ALL.into(), true.into());
    } else {
        customer.attributes.remove(UNSUBSCRIBED_ALL);
    }
    for name in [UNSUBSCRIBED_CHANNELS, UNSUBSCRIBED_TOPICS] {
        match properties.get(name).and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                let items: Vec<Value> = list.iter().filter(|v| v.is_string()).cloned().collect();
                customer.attributes.insert(name.into(), Value::Array(items));
            }
            _ => {
                customer.attributes.remove(name);
            }
        }
    }
    subscriptions(customer) != before
}

/// Marks the sends a suppressed customer may not receive (on the send's channel, or under the
/// subscription topic its payload names): they are recorded (status `suppressed`) and counted
/// as suppressed rather than sent, and never delivered.
pub fn suppress(applied: &mut Applied, customer: &Customer) {
    for draft in &mut applied.effects.sends {
        if is_suppressed_send(
            customer,
            &draft.send.channel,
            send_topic(&draft.send.payload),
        ) {
            draft.suppressed = true;
            let summary = applied
                .enrollment
                .channels
                .entry(draft.send.channel.clone())
                .or_default();
            summary.sent = summary.sent.saturating_sub(1);
            summary.suppressed += 1;
        }
    }
}
