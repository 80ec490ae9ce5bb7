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
//!   deny unknown fields (a newer server may add some); the host refuses unknown fields in
//!   request bodies.
//!
//! Where a DTO deliberately differs from the host's internal type of the same name, its doc
//! comment says so.

pub mod channels;
pub mod clock;
pub mod customers;
pub mod dead_letters;
pub mod errors;
pub mod events;
pub mod health;
pub mod journeys;
pub mod limits;
pub mod messages;
pub mod policy;
pub mod reports;
pub mod tasks;
pub mod tenants;

/// Milliseconds since the Unix epoch, UTC: every time in the API.
pub type Millis = i64;

/// A JSON object (customer attributes, event properties, channel settings).
pub type Object = serde_json::Map<String, serde_json::Value>;
