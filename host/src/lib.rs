//! Waymark's host: a journey-automation server whose tenant logic runs as sandboxed WebAssembly
//! components.
//!
//! Events arrive over HTTP (`api`), are made durable and queued per customer (`store`), and shard
//! workers (`worker`) take each queued trigger through the tenant's journeys: the pure `engine`
//! decides what the trigger means and what a journey's commands do, the `sandbox` runs the
//! journey's `decide` export, and every effect of one trigger commits atomically with the
//! trigger's removal from the queue. The `scheduler` fires durable timers through the same path;
//! `delivery` drains the outbox through channel adapters' `deliver` export and reports outcomes
//! back as triggers. `ARCHITECTURE.md` follows one event through these modules.
//!
//! | module | what it is for |
//! | --- | --- |
//! | [`model`] | the domain vocabulary: customers, events, enrollments, triggers, commands, specs |
//! | [`engine`] | **pure** journey semantics: what an event or trigger means, what commands do, the records to write |
//! | [`policy`] | **pure** sending policy: frequency caps and quiet hours |
//! | [`report`] | **pure** journey reports: funnels per version and per experiment arm, and the aggregates (cells) that keep them as enrollments change |
//! | [`hash`] | the one FNV-1a / SplitMix64: shard numbers, seeds, task ids, jitter (frozen) |
//! | [`store`] | sled, one file per record kind; one transaction per trigger |
//! | [`host`] | [`host::Host`]: the shared handles every loop and handler uses |
//! | [`tenants`] | each tenant's limits and sending policy, cached |
//! | [`catalog`] | journey versions and each tenant's latest ones, memoised |
//! | [`worker`] | shard workers: load, plan, decide, settle, commit |
//! | [`scheduler`] | durable timers, held messages, the dedup window |
//! | [`delivery`] | outbox draining through channel adapters |
//! | [`pacing`] | **pure** per-registration send rates: a token bucket per tenant and channel |
//! | [`template`] | message templates: per-channel parts and locales, compiled once per version, rendered at delivery (minijinja) |
//! | [`sandbox`] | wasmtime: compiling, validating and running journey and channel components |
//! | [`registry`] | compiled components by content digest, compiled once per process |
//! | [`manifest`] | a channel plugin's embedded manifest, and registrations checked against it |
//! | [`clock`] | the system clock or a manual one that tests and demos advance |
//! | [`api`] | axum routes by resource, authentication, JSON errors |
//! | [`ui`] | the dashboard under `/ui`: server-rendered HTML pages, sessions, CSRF (issue 14) |
//! | [`metrics`] | Prometheus counters |
//! | [`server`] | wiring and graceful shutdown |
//! | [`signed`] | **pure** signed tokens for customers: inbox tokens, unsubscribe links (issue 11) |
//! | [`feedback`] | **pure** provider feedback: what a provider's webhook event becomes (an engagement event, a suppression) (issue 11) |
//! | [`inapp`] | the `inapp` channel the host keeps itself: delivery into the customer's inbox, unsubscribe URLs (issue 11) |
//! | [`backtest`] | backtests: a candidate version replayed over recorded events in an isolated engine (the host's own worker path on a scratch store and a manual clock), compared with live (issue 13) |
//! | [`cluster`] | cluster mode on NATS JetStream (issue 16): partitions and their placement, leases with fencing epochs, each partition's replicated log; building blocks, not yet used by the server |
//! | [`audience`] | **pure** audience triggers (issue 12): inactivity, conditions in the expression language, date attributes — what an event or a due moment means for a customer's watch |

pub mod api;
pub mod audience; // Audience triggers (issue 12)
pub mod backtest; // Backtests (issue 13)
pub mod catalog;
pub mod clock;
pub mod cluster; // Cluster mode on NATS JetStream (issue 16): its building blocks
pub mod delivery;
pub mod engine;
pub mod hash;
pub mod host;
pub mod manifest;
pub mod metrics;
pub mod model;
// Issue 11, crm slice: per-registration send rates (token buckets the delivery loop keeps).
pub mod pacing;
pub mod policy;
pub mod registry;
pub mod report;
pub mod sandbox;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod template;
pub mod tenants;
pub mod ui; // Dashboard (issue 14)
pub mod worker;
// In-app inbox, unsubscribe and subscription topics (issue 11).
pub mod feedback; // Provider feedback (issue 11)
pub mod inapp;
pub mod signed;
