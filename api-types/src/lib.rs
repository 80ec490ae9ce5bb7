//! Waymark's HTTP API as types: the request and response bodies (DTOs) of every route of
//! `docs/API.md`, one module per resource.
//!
//! **API Boundary.** These types *are* the wire format. The host's internal types
//! (`host/src/model.rs`, `store.rs`, `report.rs`) are free to change; when they do, the host
//! converts to these, and a change here is a change of the public API. The end-to-end test
//! `tests/tests/api_shapes.rs` checks that every route's JSON equals the JSON of its DTO
//! (deserialized and serialized back) and that every example in `docs/API.md` does too.
//!
//! The crate is host-free on purpose (serde and serde_json only): the client, a CLI, a
//! dashboard and the test harness link it without linking wasmtime, sled or axum.
//!
//! Conventions, as the host speaks them today:
//! - times are [`Millis`] since the Unix epoch (UTC);
//! - enums are `snake_case` strings; tagged unions carry their tag in a named field
//!   (`kind`, `command`, `status`, `policy`);
//! - response types derive `Serialize + Deserialize + Debug + Clone + PartialEq`, and do not
//!   deny unknown fields (a newer server may add some);
//! - request bodies deny unknown fields, as the host does (a misspelt field is a 400, never
//!   silently ignored). [`policy::SendingPolicy`] and [`limits::LimitOverrides`] are both a
//!   request and an answer, and deny them too. The dry run's context does not: the host
//!   accepts extra fields there.
//!
//! Where a DTO deliberately differs from the host's internal type of the same name, its doc
//! comment says so.

pub mod accounts; // Accounts (issue 12)
pub mod backtests; // Backtests (issue 13)
pub mod channels;
pub mod clock;
pub mod cluster; // Cluster mode (issue 16)
pub mod customers;
pub mod dead_letters;
pub mod errors;
pub mod events;
pub mod health;
pub mod isolation;
pub mod journeys;
pub mod limits;
pub mod messages;
pub mod policy;
pub mod reports;
pub mod tasks;
pub mod templates; // Templates (issue 11)
pub mod tenants;
// Segment-compatible ingest and scoped keys (issue 12).
pub mod keys;
pub mod segment;
// In-app inbox, unsubscribe and subscription topics (issue 11).
pub mod inbox;

// Provider feedback (issue 11).
pub mod feedback;

/// Milliseconds since the Unix epoch, UTC: every time in the API.
pub type Millis = i64;

/// A JSON object (customer attributes, event properties, channel settings).
pub type Object = serde_json::Map<String, serde_json::Value>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_body_with_a_misspelt_field_is_refused_as_the_host_refuses_it() {
        let policy =
            json!({"frequency_caps": [], "quiet_hour": {"start": "22:00", "end": "06:00"}});
        assert!(serde_json::from_value::<policy::SendingPolicy>(policy).is_err());
        let event = json!({"id": "1", "customer": "c", "name": "x", "extra": 1});
        assert!(serde_json::from_value::<events::EventInput>(event).is_err());
    }

    #[test]
    fn an_answer_with_a_field_added_by_a_newer_server_still_reads() {
        let advanced = json!({"now": 7, "since": 1});
        let read: clock::ClockAdvanced = serde_json::from_value(advanced).expect("readable");
        assert_eq!(read.now, 7);
    }

    #[test]
    fn statuses_compare_with_their_wire_spelling() {
        assert_eq!(messages::MessageStatus::Held, "held");
        assert_eq!(events::EventStatus::Duplicate, "duplicate");
        assert_eq!(tasks::TaskStatus::Claimed, "claimed");
        let spelt = serde_json::to_value(messages::MessageStatus::Suppressed).expect("json");
        assert_eq!(spelt, messages::MessageStatus::Suppressed.as_str());
    }
}
