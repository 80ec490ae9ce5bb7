//! Small builders for the tests of every record kind: one tenant `t`, records with every field
//! set to something plain, so each test states only what it is about.

use super::outbox::{Message, MessageStatus};
use super::queue::{Pending, QueuedTrigger};
use super::tasks::Task;
use super::timers::TimerRecord;
use super::{Store, TriggerCommit};
use crate::model::{
    Customer, Enrollment, EnrollmentStatus, ExperimentSpec, MilestoneSpec, Millis, Reentry, Spec,
    TaskStatus,
};

/// A commit for a trigger of `customer` that is really in the queue (a timer named
/// `fixture`), so committing it must remove it.
pub fn commit(store: &Store, tenant: &str, customer: &str) -> TriggerCommit {
    let entry = store
        .queue_entry(&QueuedTrigger {
            tenant: tenant.into(),
            customer: customer.into(),
            pending: Pending::Timer {
                journey: "fixture".into(),
                run: 1,
                name: "fixture".into(),
                due: 0,
            },
        })
        .unwrap();
    store.queue.insert(&entry.key, entry.value).unwrap();
    TriggerCommit {
        tenant: tenant.into(),
        queue_key: entry.key,
        ..TriggerCommit::default()
    }
}

/// Dashboard (issue 14): a commit for the trigger of event `id` of `customer`, really
/// ingested (logged and queued), so committing it must remove it.
pub async fn logged_commit(store: &Store, tenant: &str, id: &str, customer: &str) -> TriggerCommit {
    let event = crate::model::Event {
        id: id.into(),
        customer: customer.into(),
        name: "seen".into(),
        properties: Default::default(),
        timestamp: 0,
    };
    store.ingest(tenant, &[event], 0, None).await.unwrap();
    let queue_key = store
        .queue
        .iter()
        .filter_map(Result::ok)
        .map(|(k, _)| k.to_vec())
        .find(|k| matches!(store.logged_event(tenant, k), Ok(Some(e)) if e.id == id))
        .expect("the event is queued");
    TriggerCommit {
        tenant: tenant.into(),
        queue_key,
        ..TriggerCommit::default()
    }
}

/// How many triggers are queued, over every shard.
pub fn queued_count(store: &Store) -> usize {
    store.queue.len()
}

/// A customer without attributes.
pub fn customer(id: &str) -> Customer {
    Customer {
        id: id.into(),
        attributes: Default::default(),
    }
}

/// An active enrollment that has just entered.
pub fn enrollment(customer: &str, journey: &str, run: u32) -> Enrollment {
    Enrollment {
        id: format!("{journey}/{customer}/{run}"),
        journey: journey.into(),
        version: 1,
        customer: customer.into(),
        run,
        key: None,
        status: EnrollmentStatus::Active,
        entered_at: 0,
        ended_at: None,
        exit_reason: None,
        milestones: vec![],
        stalls: vec![],
        stalled_on: None,
        state: vec![],
        timers: vec![],
        variants: vec![],
        channels: Default::default(),
        failure: None,
        failures: Vec::new(),
        loop_window: None,
        paused: None,
    }
}

/// A timer of `customer`'s first run in journey `welcome`.
pub fn timer(customer: &str, name: &str, due: Millis) -> TimerRecord {
    TimerRecord {
        tenant: "t".into(),
        customer: customer.into(),
        journey: "welcome".into(),
        run: 1,
        name: name.into(),
        due,
    }
}

/// A message to `alice` from journey `welcome`, next attempted at `next_attempt_at`.
pub fn message(id: &str, channel: &str, status: MessageStatus, next_attempt_at: Millis) -> Message {
    Message {
        id: id.into(),
        tenant: "t".into(),
        customer: "alice".into(),
        journey: "welcome".into(),
        version: 1,
        enrollment: "welcome/alice/1".into(),
        run: 1,
        channel: channel.into(),
        template: "hello".into(),
        payload: serde_json::json!({}),
        status,
        attempts: 0,
        next_attempt_at,
        last_error: None,
        provider_id: None,
        created_at: 0,
        delivered_at: None,
        release_at: None,
        template_version: None,
        receipt: None,
    }
}

/// An open task of `alice`'s first run in journey `welcome`.
pub fn task(id: &str) -> Task {
    Task {
        id: id.into(),
        tenant: "t".into(),
        customer: "alice".into(),
        journey: "welcome".into(),
        enrollment: "welcome/alice/1".into(),
        queue: "cs".into(),
        reason: "stalled".into(),
        priority: 1,
        status: TaskStatus::Open,
        created_at: 0,
        assignee: None,
        claimed_at: None,
        resolved_at: None,
        resolution: None,
    }
}

/// The spec of journey `welcome`: milestone `activated` (the goal), experiment `copy` (arms `a`,
/// `b`).
pub fn spec() -> Spec {
    Spec {
        description: "welcome".into(),
        entry: vec![],
        exit_on: vec![],
        milestones: vec![MilestoneSpec {
            name: "activated".into(),
            stall_after: None,
        }],
        goal: Some("activated".into()),
        reentry: Reentry::Never,
        channels: vec!["email".into()],
        experiments: vec![ExperimentSpec {
            name: "copy".into(),
            arms: vec!["a".into(), "b".into()],
            allocation: Default::default(),
        }],
        audience: Default::default(),
    }
}

/// Ingests `calls`, `group` events with their account changes, at `now` (no dedup window).
pub async fn ingest_groups(
    store: &Store,
    calls: &[(crate::model::Event, super::AccountChange)],
    now: Millis,
) {
    let events: Vec<crate::model::Event> = calls.iter().map(|(e, _)| e.clone()).collect();
    let changes: Vec<Option<super::AccountChange>> =
        calls.iter().map(|(_, c)| Some(c.clone())).collect();
    store
        .ingest_with(super::events::Extras {
            tenant: "t",
            events: &events,
            merges: &[],
            accounts: &changes,
            now,
            window: None,
        })
        .await
        .unwrap();
}
