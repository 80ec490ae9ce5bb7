//! The one harness behind Waymark's end-to-end tests, `cargo xtask demo` and the durability
//! bench.
//!
//! Everything here drives the real thing from the outside, the way an operator and a tenant
//! would; nothing links the host crate. The vocabulary is the API's own: the response types
//! are [`waymark_api`]'s, re-exported here, and [`Api`] is a thin panicking wrapper over
//! [`waymark_client`].
//!
//! - [`artifacts`](mod@artifacts) — the `waymark` binary and the guest components (one table,
//!   [`GUESTS`]), built once per process (or found ready when `WAYMARK_PREBUILT=1` says
//!   `cargo xtask` built them).
//! - [`server`] — `waymark serve` as a child process ([`Server`]) on `127.0.0.1:0` with a
//!   temporary data directory and a manual clock; it can be killed and restarted on the same
//!   data.
//! - [`api`] — [`Api`], plus [`Api::request`] for the raw status and JSON body that error
//!   tests look at, and request-body builders ([`event`], [`identify`]).
//! - [`sink`] — [`Sink`], an in-process loopback HTTP server that records every request the
//!   webhook channel makes and answers 200, or whatever a test scripts.
//! - [`wait`] — [`wait_until`], [`wait_for_some`] (and [`Sink::wait_for`],
//!   [`Api::wait_for_enrollment`]): tests never sleep and hope, they wait with generous
//!   [`patience`] for an observable condition and fail showing what they saw.
//! - [`worlds`] — [`tenant_with_journey`], the one set-up of a tenant with webhook channels
//!   and a journey; [`Onboarding`], the fixture most tests start from; [`Example`], the same
//!   for any journey of `examples/`.
//! - [`calendar`] — UTC date arithmetic for journeys that work in dates.
//! - [`mail_providers`] — loopback stand-ins for Postmark and SendGrid that check each request
//!   against the provider's reference and answer as the provider does (issue 11, email channel).
//! - [`nats`] — [`NatsCluster`], real `nats-server`s with JetStream as child processes on
//!   loopback, which a test can kill, restart and pause node by node (issue 16, cluster).

pub mod api;
pub mod artifacts;
pub mod calendar;
pub mod dashboard; // Dashboard (issue 14)
pub mod loopback;
pub mod openapi;
pub mod raw;
pub mod routes;
pub mod server;
pub mod sink;
pub mod wait;
// Segment's official Python library, for `tests/segment.rs` (issue 12).
pub mod python;
pub mod worlds;
// Loopback stand-ins of the SMS and Slack providers (issue 11, sms slice).
pub mod providers;
// Loopback stand-ins for Postmark and SendGrid, for `tests/email.rs` (issue 11).
pub mod mail_providers;
// Issue 11, crm slice: HubSpot's tasks API stand-in.
pub mod hubspot;
// Provider feedback (issue 11): webhooks signed as each provider signs them.
pub mod webhooks;
// JetStream cluster (issue 16): real NATS servers for the cluster tests.
pub mod nats;
// The ledger workload and its exactly-once check: the crash and cluster tests.
pub mod ledger;
// A month of three example journeys: the fidelity and cluster tests.
pub mod month;

pub use api::{assert_error, event, event_with, identify, metric_sum, Api};
pub use artifacts::ADAPTIVE_CRATE; // Adaptive experiments (issue 13)
pub use artifacts::CHANNEL_0_1_1_CRATE; // Provider feedback (issue 11)
pub use artifacts::CRM_CRATE;
pub use artifacts::EMAIL_CRATE;
pub use artifacts::RENEWAL_EARLY_CRATE; // Backtests (issue 13)
pub use artifacts::{
    artifacts, cargo, example_crate, guest_build_args, target_dir, workspace_root, Artifacts,
    CONTRACT_0_1_0_CRATE, FILES_CRATE, GUESTS, GUEST_PROFILE, HOSTILE_CRATE, HOST_BUILD,
    LEDGER_CRATE, MIGRATING_CRATE, ONBOARDING_CRATE, SOCKETS_CRATE, WEBHOOK_CRATE,
};
pub use artifacts::{AUDIENCE_BAD_CRATE, AUDIENCE_CRATE}; // Audience triggers (issue 12)
pub use artifacts::{SLACK_CRATE, SMS_CRATE};
pub use calendar::{utc_date, utc_date_string, utc_midnight};
pub use hubspot::{HubSpot, HubSpotAccount, HubSpotAnswer, HubSpotCall};
pub use nats::NatsCluster;
pub use providers::{Answer, Call, Provider, StandIn};
pub use server::{Clock, Server, ServerOptions};
pub use sink::{count, describe, Received, Sink};
pub use wait::{patience, wait_for_eq, wait_for_some, wait_until};
pub use worlds::{arm_converts, signup_wave, tenant_with_journey, Example, Onboarding};

pub use reqwest::{self, Method, StatusCode};
pub use serde_json::{json, Value};
pub use waymark_api::{self, Millis, Object};
pub use waymark_client::{self, Body, Client, ClientError};

// The API's vocabulary, as tests name it.
pub use waymark_api::channels::Channel;
pub use waymark_api::customers::{
    ChannelSummary, Customer, Enrollment, EnrollmentStatus, Failure, MilestoneHit, PendingTimer,
    VariantAssignment,
};
pub use waymark_api::events::{EventInput, EventResult, EventStatus, EventsAccepted};
pub use waymark_api::journeys::{Command, Decided, UploadedJourney};
pub use waymark_api::messages::{Message, MessageStatus};
pub use waymark_api::tasks::{Task, TaskQuery, TaskStatus};
pub use waymark_api::tenants::CreatedTenant;

/// A minute, an hour and a day of journey time, in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// See [`MINUTE_MS`].
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// See [`MINUTE_MS`].
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The journey most tests run, and the channel it sends through.
pub const ONBOARDING: &str = "onboarding";
/// See [`ONBOARDING`].
pub const WEBHOOK: &str = "webhook";
