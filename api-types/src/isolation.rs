//! Isolation (issue 15): what holds one tenant's faults back from everyone else, as the API
//! shows it. `GET /v1/journeys/{name}/breaker` shows a journey's circuit breakers.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// The answer to `GET /v1/journeys/{name}/breaker`: the breakers of the journey's versions
/// that failed lately (a version not listed is closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JourneyBreakers {
    /// The journey.
    pub journey: String,
    /// One per version with a recent failure, by version.
    pub breakers: Vec<Breaker>,
}

/// One journey version's circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Breaker {
    /// The journey version.
    pub version: u32,
    /// `closed` (triggers run), `open` (triggers are deferred until `open_until`) or
    /// `half_open` (one trigger runs as a probe; the rest are deferred).
    pub state: BreakerState,
    /// While open: when (wall clock) a probe may go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<Millis>,
    /// Times it opened since the server started.
    pub opened: u64,
    /// Times a trigger was deferred by it since the server started.
    pub deferred: u64,
}

/// See [`Breaker::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}
