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
}

impl Engagement {
    /// Every kind, in the order reports list them.
    pub const ALL: [Engagement; 6] = [
        Engagement::Delivered,
        Engagement::Opened,
        Engagement::Clicked,
        Engagement::Replied,
        Engagement::Bounced,
        Engagement::Unsubscribed,
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
        let channel = event.properties.get("channel").and_then(Value::as_str);
        unsubscribe(customer, channel);
        changed = true;
    }
    changed
}

/// Counts engagement on the enrollment's summary of `channel`. A provider's `delivered` is not
/// counted again: the host counted the message delivered when the adapter handed it over.
pub fn record_engagement(enrollment: &mut Enrollment, channel: &str, kind: Engagement) {
    let summary = enrollment.channels.entry(channel.to_string()).or_default();
    match kind {
        Engagement::Delivered => {}
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
        Some(channel) => {
            let list = customer
                .attributes
                .entry("unsubscribed_channels")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !list.is_array() {
                *list = Value::Array(Vec::new());
            }
            if let Some(list) = list.as_array_mut() {
                if !list.iter().any(|c| c.as_str() == Some(channel)) {
                    list.push(channel.into());
                }
            }
        }
        None => {
            customer
                .attributes
                .insert("unsubscribed".into(), true.into());
        }
    }
}

/// Whether the customer may not receive messages through `channel`: attribute `unsubscribed`
/// or `suppressed` is `true`, or `unsubscribed_channels` lists the channel.
pub fn is_suppressed(customer: &Customer, channel: &str) -> bool {
    let flag = |name: &str| customer.attributes.get(name).and_then(|v| v.as_bool()) == Some(true);
    flag("unsubscribed")
        || flag("suppressed")
        || customer
            .attributes
            .get("unsubscribed_channels")
            .and_then(|v| v.as_array())
            .is_some_and(|list| list.iter().any(|c| c.as_str() == Some(channel)))
}

/// Marks the sends a suppressed customer may not receive: they are recorded (status
/// `suppressed`) and counted as suppressed rather than sent, and never delivered.
pub fn suppress(applied: &mut Applied, customer: &Customer) {
    for draft in &mut applied.effects.sends {
        if is_suppressed(customer, &draft.send.channel) {
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
