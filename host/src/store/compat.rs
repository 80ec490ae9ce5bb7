//! The on-disk format, frozen: records exactly as the host wrote them before this code (taken
//! from a data directory written by the binary at `b849534`, format 1, JSON) must decode into
//! today's types once the format 1 → 2 migration ([`super::format`]) has transcoded them.
//!
//! The model's `Customer`, `Enrollment` and `Event` are stored as they are (JSON), beside the
//! store's own record types. The rule that keeps that safe: a stored field is only ever added
//! (with `#[serde(default)]`), never renamed or removed. These tests fail when someone breaks
//! it, instead of a production data directory reading back as corrupt.

use super::format::json_to_record;
use super::{ChannelRecord, JourneyVersion, Message, MessageStatus, Pending, QueuedTrigger};
use super::{Task, Tenant, TimerRecord};
use crate::model::{Customer, Enrollment, EnrollmentStatus, Event, Reentry, TaskStatus};

const TENANT: &str = r#"{"id":"acme","created_at":1795994173558,"limits":{"max_commands":50},"policy":{"frequency_caps":[{"channel":"webhook","max":5,"window_ms":1000}]}}"#;
const JOURNEY_VERSION: &str = r#"{"name":"guided-onboarding","version":1,"digest":"a0bb1d91939cfeb38ae1a1e21b4fc3d8f6093b9fecb29fa794048ac938ded043","spec":{"description":"Guided onboarding: nudge at each stalled milestone, hand repeat stallers to customer success","entry":[{"event":"signed_up"}],"exit_on":[],"milestones":[{"name":"first_login","stall_after":172800000},{"name":"first_value","stall_after":432000000},{"name":"second_use_case","stall_after":1209600000}],"goal":"second_use_case","reentry":{"policy":"never"},"channels":["email"],"experiments":[]},"uploaded_at":1795994173558}"#;
const CHANNEL: &str = r#"{"name":"email","version":1,"digest":"c8e41c580c953aa30d17ee9fed0602a2ec7eacc0b92989c86df96d72ef134d0b","settings":{"url":"http://127.0.0.1:9/email"},"secrets":{"token":"s3cret"},"allowed_hosts":["127.0.0.1:42553","127.0.0.1:9"],"updated_at":1795994173558}"#;
const CUSTOMER: &str = r#"{"id":"alice","attributes":{}}"#;
const ENROLLMENT_STALLED: &str = r#"{"id":"guided-onboarding/alice/1","journey":"guided-onboarding","version":1,"customer":"alice","run":1,"status":"active","entered_at":1795994173558,"milestones":[],"stalls":[{"name":"first_login","at":1796166973558},{"name":"first_login","at":1796339773558},{"name":"first_login","at":1796512573558},{"name":"first_login","at":1796685373558},{"name":"first_login","at":1796858173558},{"name":"first_login","at":1797030973558}],"stalled_on":"first_login","state":[123,34,115,116,97,108,108,115,34,58,54,44,34,116,111,116,97,108,95,115,116,97,108,108,115,34,58,54,44,34,104,97,110,100,101,100,95,111,102,102,34,58,116,114,117,101,125],"timers":[{"name":"$stall:first_login","due":1797203773558}],"variants":[],"channels":{"email":{"sent":3,"delivered":0,"failed":3,"suppressed":0,"opened":0,"clicked":0,"replied":0,"bounced":0,"unsubscribed":0}}}"#;
const ENROLLMENT_SENDING: &str = r#"{"id":"onboarding/alice/1","journey":"onboarding","version":1,"customer":"alice","run":1,"status":"active","entered_at":1795994173558,"milestones":[],"stalls":[],"state":[],"timers":[],"variants":[],"channels":{"webhook":{"sent":2,"delivered":2,"failed":0,"suppressed":0,"opened":0,"clicked":0,"replied":0,"bounced":0,"unsubscribed":0}}}"#;
const TIMER: &str = r#"{"tenant":"acme","customer":"alice","journey":"guided-onboarding","run":1,"name":"$stall:first_login","due":1797203773558}"#;
const MESSAGE_DEAD: &str = r#"{"id":"acme/guided-onboarding/1/alice/1/e-a1/0","tenant":"acme","customer":"alice","journey":"guided-onboarding","version":1,"enrollment":"guided-onboarding/alice/1","run":1,"channel":"email","template":"welcome","payload":{"customer_id":"alice","first_step":"first_login"},"status":"dead","attempts":1,"next_attempt_at":1795994177936,"last_error":"transport error: ErrorCode::ConnectionRefused","created_at":1795994173558}"#;
const TASK_CLAIMED: &str = r#"{"id":"task_1d9df8cfa6dcc219","tenant":"acme","customer":"alice","journey":"guided-onboarding","enrollment":"guided-onboarding/alice/1","queue":"cs","reason":"stalled 2 times; stuck before first_login","priority":1,"status":"claimed","created_at":1796512573558,"assignee":"ann","claimed_at":1797030973558}"#;
const EVENT: &str = r#"{"id":"a1","customer":"alice","name":"signed_up","properties":{},"timestamp":1795994173558}"#;
/// An enrollment as the first versions wrote it, before stalls, channel summaries and
/// failures existed.
const ENROLLMENT_FIRST_SHAPE: &str = r#"{"id":"onboarding/ada/1","journey":"onboarding","version":1,"customer":"ada","run":1,"status":"completed","entered_at":5,"ended_at":9,"milestones":[{"name":"first_value","at":9}],"state":[],"timers":[],"variants":[{"experiment":"subject","arm":"b"}]}"#;
/// The three kinds of queued trigger, as the queue holds them.
const QUEUED: [&str; 3] = [
    r#"{"tenant":"acme","customer":"ada","pending":{"kind":"event","event":{"id":"e1","customer":"ada","name":"signed_up","properties":{"plan":"pro"},"timestamp":5}}}"#,
    r#"{"tenant":"acme","customer":"ada","pending":{"kind":"timer","journey":"onboarding","run":1,"name":"$stall:first_value","due":99}}"#,
    r#"{"tenant":"acme","customer":"ada","pending":{"kind":"delivery","journey":"onboarding","run":1,"report":{"message_id":"m1","channel":"email","template":"welcome","outcome":{"status":"delivered","provider_id":null}}}}"#,
];

/// Decodes a format-1 (JSON) record the way an upgraded directory reads it: migrated, then read.
fn dec1<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, super::StoreError> {
    super::dec(&json_to_record(json)?)
}

#[test]
fn tenants_journeys_and_channels_written_before_decode() {
    let tenant: Tenant = dec1(TENANT.as_bytes()).unwrap();
    assert_eq!(tenant.id, "acme");
    assert_eq!(tenant.limits.max_commands, Some(50));
    assert_eq!(tenant.policy.frequency_caps[0].max, 5);
    let version: JourneyVersion = dec1(JOURNEY_VERSION.as_bytes()).unwrap();
    assert_eq!(
        (version.name.as_str(), version.version),
        ("guided-onboarding", 1)
    );
    assert_eq!(version.spec.milestones.len(), 3);
    assert_eq!(version.spec.reentry, Reentry::Never);
    let channel: ChannelRecord = dec1(CHANNEL.as_bytes()).unwrap();
    assert_eq!(channel.secrets["token"], "s3cret");
}

#[test]
fn customers_enrollments_and_events_written_before_decode() {
    let customer: Customer = dec1(CUSTOMER.as_bytes()).unwrap();
    assert_eq!(customer.id, "alice");
    let stalled: Enrollment = dec1(ENROLLMENT_STALLED.as_bytes()).unwrap();
    assert_eq!(stalled.stalls.len(), 6);
    assert_eq!(stalled.stalled_on.as_deref(), Some("first_login"));
    assert_eq!(stalled.channels["email"].failed, 3);
    let sending: Enrollment = dec1(ENROLLMENT_SENDING.as_bytes()).unwrap();
    assert_eq!(sending.channels["webhook"].delivered, 2);
    let first: Enrollment = dec1(ENROLLMENT_FIRST_SHAPE.as_bytes()).unwrap();
    assert_eq!(first.status, EnrollmentStatus::Completed);
    assert!(first.stalls.is_empty() && first.channels.is_empty() && first.failure.is_none());
    let event: Event = dec1(EVENT.as_bytes()).unwrap();
    assert_eq!(
        (event.id.as_str(), event.name.as_str()),
        ("a1", "signed_up")
    );
}

#[test]
fn timers_messages_tasks_and_queued_triggers_written_before_decode() {
    let timer: TimerRecord = dec1(TIMER.as_bytes()).unwrap();
    assert_eq!(timer.name, "$stall:first_login");
    let message: Message = dec1(MESSAGE_DEAD.as_bytes()).unwrap();
    assert_eq!(message.status, MessageStatus::Dead);
    assert!(message.last_error.is_some() && message.release_at.is_none());
    let task: Task = dec1(TASK_CLAIMED.as_bytes()).unwrap();
    assert_eq!(task.status, TaskStatus::Claimed);
    assert_eq!(task.assignee.as_deref(), Some("ann"));
    let kinds: Vec<&str> = QUEUED
        .iter()
        .map(|q| {
            let queued: QueuedTrigger = dec1(q.as_bytes()).unwrap();
            match queued.pending {
                Pending::Event { .. } => "event",
                Pending::Timer { .. } => "timer",
                Pending::Delivery { .. } => "delivery",
                Pending::Logged => "logged (not written by format 1)",
                Pending::Migrate { .. } => "migrate (not written by format 1)",
                Pending::MergeOut { .. }
                | Pending::MergeIn { .. }
                | Pending::MergeBack { .. }
                | Pending::Forwarded { .. } => "identity merge (not written by format 1)",
                Pending::Account { .. } => "account journeys (not written by format 1)",
                Pending::Audience { .. } => "audience (not written by format 1)",
                Pending::AccountChanged { .. } => "account changed (not written by format 1)",
                Pending::Grouped { .. } | Pending::Left { .. } | Pending::AccountTraits { .. } => {
                    "accounts in a cluster (not written by format 1)"
                }
            }
        })
        .collect();
    assert_eq!(kinds, ["event", "timer", "delivery"]);
}
