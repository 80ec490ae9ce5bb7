//! Waymark's host: a journey-automation server whose tenant logic runs as sandboxed WebAssembly
//! components.
//!
//! Events arrive over HTTP (`api`), are made durable and queued per customer (`store`), and shard
//! workers (`runtime`) route each trigger through the tenant's journeys: the pure `engine` decides
//! what a journey's commands do to an enrollment, the `sandbox` runs the journey's `decide`
//! export, and every effect of one trigger commits atomically with the trigger's removal from the
//! inbox. The `scheduler` fires durable timers through the same path; `delivery` drains the
//! outbox through channel adapters' `deliver` export and reports outcomes back as triggers.
//!
//! | module | what it is for |
//! | --- | --- |
//! | [`model`] | the vocabulary: customers, events, enrollments, triggers, commands, specs |
//! | [`engine`] | pure journey semantics: routing, entry and re-entry, applying commands |
//! | [`hash`] | the one FNV-1a / SplitMix64: shard numbers, seeds, task ids, jitter (frozen) |
//! | [`store`] | sled: every durable record, and one transaction per trigger |
//! | [`clock`] | the system clock or a manual one that tests and demos advance |
//! | [`sandbox`] | wasmtime: compiling, validating and running journey and channel components |
//! | [`registry`] | compiled components by content digest, compiled once per process |
//! | [`runtime`] | shard workers: load, decide, apply, commit |
//! | [`scheduler`] | durable timers, woken by the earliest due time |
//! | [`delivery`] | outbox draining, retries, dead letters, delivery triggers |
//! | [`api`] | axum routes, authentication, JSON errors |
//! | [`metrics`] | Prometheus counters |
//! | [`server`] | wiring and graceful shutdown |

pub mod api;
pub mod clock;
pub mod delivery;
pub mod engine;
pub mod hash;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod registry;
pub mod report;
pub mod runtime;
pub mod sandbox;
pub mod scheduler;
pub mod server;
pub mod store;
