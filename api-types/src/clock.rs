//! `GET /v1/admin/clock` and `POST /v1/admin/clock/advance` (admin): the server's notion of
//! journey time, which the manual clock lets tests and demos move by hand.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// Which clock the server runs on (`--clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    /// Moves only through `POST /v1/admin/clock/advance`; persists across restarts.
    Manual,
    /// The system's wall clock.
    System,
}

/// The answer to `GET /v1/admin/clock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Clock {
    /// Manual or system.
    pub kind: ClockKind,
    /// The server's now.
    pub now: Millis,
}

/// The body of `POST /v1/admin/clock/advance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// How far to move the manual clock forward; never negative.
    pub by_ms: Millis,
}

/// The answer to `POST /v1/admin/clock/advance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClockAdvanced {
    /// The new now.
    pub now: Millis,
}
