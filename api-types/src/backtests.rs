//! Backtests (issue 13): `POST /v1/journeys/{name}/backtests` starts one, `GET
//! /v1/journeys/{name}/backtests/{id}` reads it (its result once done), `POST
//! .../{id}/cancel` stops it.

use crate::reports::Report;
use crate::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of `POST /v1/journeys/{name}/backtests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// What to replay in place of the live version.
    pub candidate: Candidate,
    /// Replay the events ingested from this journey time on (inclusive).
    pub from: Millis,
    /// ... up to this journey time (exclusive); timers due before it fire.
    pub to: Millis,
    /// Only these customers (at most 10,000); with `sample_fraction`, customers in either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers: Option<Vec<String>>,
    /// Only a deterministic share of the customers (by a hash of their id), over 0 and at
    /// most 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_fraction: Option<f64>,
    /// Also check the live version's replay against what ran live (the fidelity check):
    /// `result.fidelity`. Meaningful over the whole recorded history of the customers checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fidelity: bool,
}

/// The version a backtest tries: a stored version of the journey (a draft, typically), or a
/// component's bytes that are never stored (exactly one of the two).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    /// The stored version number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// A journey component (standard base64 of its `.wasm` bytes), validated as an upload is
    /// (world, imports, spec) and compiled in the backtest's own sandbox; it is never stored
    /// as a version and never runs live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Roll the candidate out at a time within the window, moving the replay's running
    /// enrollments of a version to it (through its `migrate` export, as `POST
    /// /v1/journeys/{name}/migrate` does); until then the candidate's replay runs the live
    /// pointers. Without it, the candidate takes every entrant from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate: Option<CandidateMigration>,
}

/// When a backtest's candidate takes over, and whose enrollments move to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CandidateMigration {
    /// The version whose running enrollments move.
    pub from: u32,
    /// The journey time of the move, in `[from, to)` of the backtest.
    pub at: Millis,
}

impl Candidate {
    /// A stored version.
    pub fn stored(version: u32) -> Candidate {
        Candidate {
            version: Some(version),
            component: None,
            migrate: None,
        }
    }

    /// A component's bytes, already encoded as standard base64.
    pub fn component_base64(component: String) -> Candidate {
        Candidate {
            version: None,
            component: Some(component),
            migrate: None,
        }
    }
}

/// Where a backtest stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum BacktestStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// A backtest: the answer of all three routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Backtest {
    /// `bt_` and 16 hex digits.
    pub id: String,
    pub journey: String,
    pub status: BacktestStatus,
    /// Recorded events replayed so far, over both replays (candidate, then live).
    pub replayed: u64,
    /// Recorded events both replays take together.
    pub total: u64,
    /// How many times a server start found the job queued or running (the server had
    /// stopped) and started it over from the beginning (issue 13: jobs survive a restart).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Once `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<BacktestResult>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a finished backtest found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BacktestResult {
    /// The candidate version; for a candidate sent as component bytes, the number it had in
    /// the backtest's scratch store only (the journey's next version number), with
    /// `candidate_digest` set.
    pub candidate_version: u32,
    /// For a candidate sent as component bytes: their SHA-256 (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_digest: Option<String>,
    /// The live version it is compared with (replayed over the same events).
    pub live_version: u32,
    /// The candidate's report, in the format of `GET /v1/journeys/{name}/report`.
    pub candidate: Report,
    /// The live version's report over the same replay.
    pub live: Report,
    /// Candidate against live.
    pub diff: BacktestDiff,
    /// With `fidelity: true`: the live version's replay against what ran live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<Fidelity>,
    /// With `candidate.migrate`: the move in the candidate's replay, as `GET
    /// /v1/journeys/{name}/migrations/{id}` shows a live one (its id is the scratch store's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<crate::journeys::MigrationStatus>,
    /// Into how many parts the live version's replay was split, to run on several cores at
    /// once: 1 when it was not. A replay of the live version alone (the candidate is the live
    /// version) is split, one part per core, when no customer's replay depends on another's
    /// (no identity merge or account in the events, no journey reading `stats` or allocating
    /// an experiment adaptively); the parts' results are combined into the same report, sends
    /// and fidelity as one replay's.
    #[serde(default = "one_part")]
    pub replay_parts: u64,
}

fn one_part() -> u64 {
    1
}

/// The fidelity check: did replaying the live version reproduce, customer by customer, the
/// enrollments (version, run, status, times, milestones, stalls, timers, state, variants) and
/// messages (channel, template, payload, decision time, idempotency key) that live recorded?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Fidelity {
    /// Customers with an enrollment in the journey, live or in the replay, in the sample.
    pub customers: u64,
    /// Of which reproduced exactly.
    pub identical: u64,
    /// Those that were not (the first 1,000 by customer id).
    pub divergences: Vec<Divergence>,
}

/// Where a customer's replay first departs from what ran live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Divergence {
    pub customer: String,
    /// The journey time of the earliest differing record: when the diverging trigger ran.
    pub at: Millis,
    /// What differs, both sides.
    pub what: String,
}

/// Candidate against live, both replayed over the same recorded events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BacktestDiff {
    /// Per declared milestone (the candidate's order, then any only live declares).
    pub milestones: Vec<MilestoneDiff>,
    /// Exits by reason.
    pub exits_by_reason: BTreeMap<String, Compared<u64>>,
    /// Sends per channel.
    pub sends_by_channel: BTreeMap<String, Compared<u64>>,
    /// Sends per customer who entered, on average.
    pub sends_per_customer: Compared<f64>,
    /// Milestone paths and how many customers took each.
    pub paths: Vec<PathDiff>,
    /// How many customers' sends (channel, template, time) differ.
    pub customers_changed: u64,
    /// Those customers' sends on each side (the first 1,000 customers by id).
    pub customers: Vec<CustomerDiff>,
}

/// One number on each side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Compared<T> {
    pub live: T,
    pub candidate: T,
}

/// One milestone on each side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MilestoneDiff {
    pub name: String,
    pub reached: Compared<u64>,
    pub conversion: Compared<Option<f64>>,
    pub median_time_to_reach_ms: Compared<Option<Millis>>,
}

/// One path on each side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PathDiff {
    pub path: Vec<String>,
    pub customers: Compared<u64>,
}

/// One customer whose sends differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CustomerDiff {
    pub customer: String,
    pub live: Vec<SentMessage>,
    pub candidate: Vec<SentMessage>,
}

/// One message a replay sent, in decision order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SentMessage {
    pub channel: String,
    pub template: String,
    /// When it was decided (journey time).
    pub decided_at: Millis,
    /// When it went out (taken as delivered; later than `decided_at` when the sending policy
    /// held it); `null` if it never did (suppressed, or still held at `to`).
    pub sent_at: Option<Millis>,
    /// Its idempotency key.
    pub id: String,
}
