//! The Segment-compatible routes (tenant, write or admin key; issue 12): `POST /v1/track`,
//! `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/batch`. Their bodies are Segment's HTTP
//! Tracking API messages, read by the host as Segment documents them; their answer is
//! Segment's.

use serde::{Deserialize, Serialize};

/// The answer of every Segment-compatible route when the message or batch was taken (200),
/// as Segment answers: `{"success": true}`. Duplicates (a `messageId` seen before) are taken
/// too, and not processed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SegmentAccepted {
    /// Always `true`.
    pub success: bool,
    /// Waymark's addition: how many messages were new.
    pub accepted: u64,
    /// Waymark's addition: how many were seen before (same `messageId` within the dedup
    /// window, or earlier in the batch).
    pub duplicates: u64,
}
