//! The edge's limits: connection timeouts and caps, request sizes, per-event sizes, per-tenant
//! rates and concurrency, shard backpressure. Every one has a named default here, a `waymark
//! serve` flag (see `main.rs`), and a row in `docs/API.md` § Limits; the per-tenant ones can be
//! overridden through `PUT /v1/admin/tenants/{id}/limits`.

use crate::model::LimitOverrides;
use std::time::Duration;

/// How long a client may take to send a request's head (line and headers); also how long a
/// kept-alive connection may sit idle between requests. `--header-timeout-ms`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body. `--body-timeout-ms`.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; past it new ones wait in the listen backlog.
/// `--max-connections`.
pub const MAX_CONNECTIONS: usize = 4096;
/// The longest request target (path and query), in bytes: 414 beyond.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most bytes of request headers (names and values): 431 beyond.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest request head (request line, header fields, line ends): hyper's read buffer,
/// past which it refuses the head (431, made JSON by `api::head`). Larger than
/// [`MAX_URI_BYTES`] + [`MAX_HEADER_BYTES`] so that the router's finer answers come first, and
/// than hyper's own bound on a request target (64 KiB, 414) so that one is told apart.
pub const MAX_HEAD_BYTES: usize = 128 * 1024;
/// The most header fields in a request: 431 beyond (hyper's count, made JSON by `api::head`).
pub const MAX_HEADER_FIELDS: usize = 100;
/// How long a refused request's remaining bytes are read and dropped before its connection
/// closes (a lingering close: closing with bytes unread would reset the connection and could
/// discard the answer at the client).
pub const LINGER: Duration = Duration::from_secs(2);
/// The most bytes read and dropped in that time.
pub const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// The largest body of `POST /v1/events`. `--max-events-body-bytes`.
pub const MAX_EVENTS_BODY: usize = 16 * 1024 * 1024;
/// The largest body of a component upload (`PUT /v1/journeys/{name}`,
/// `PUT /v1/channels/{name}`); each tenant's `max_component_bytes` applies too.
pub const MAX_UPLOAD_BODY: usize = 32 * 1024 * 1024;
/// The largest body of every other route.
pub const MAX_SMALL_BODY: usize = 1024 * 1024;

/// Segment-compatible ingest (issue 12): Segment's documented limits, "a maximum of 32KB per
/// call (our batch endpoint accepts a maximum of 500KB per batch and 32KB per call)"
/// (<https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#max-request-size>),
/// KB read as 1024 bytes (as Segment's Python library does: `MAX_MSG_SIZE = 32 << 10`). The
/// batch limit bounds the body both as sent and once inflated.
pub const SEGMENT_MAX_BATCH_BYTES: usize = 500 * 1024;
/// The most bytes of one Segment message (a single call's body, or one entry of a batch).
pub const SEGMENT_MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// The most ids in one `POST /v1/dead-letters/retry`.
pub const MAX_RETRY_IDS: usize = 1000;
/// Dead letters requeued per store pass of a mass retry (each pass runs off the async workers).
pub const RETRY_BATCH: usize = 256;

/// The most entries of any other list in a request body: a policy's `frequency_caps` and its
/// quiet hours' `channels`, a channel's `allowed_hosts`, a dry-run decide's `stats`.
pub const MAX_LIST_IN_BODY: usize = 100;

/// The most bytes of one event's `properties`, as JSON.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;
/// The most bytes of one `identify` event's traits, as JSON.
pub const MAX_TRAITS_BYTES: usize = 16 * 1024;
/// The most bytes of one customer's attributes, as JSON, that an `identify` may lead to.
pub const MAX_CUSTOMER_ATTRIBUTES_BYTES: usize = 64 * 1024;
/// The longest event name, in bytes.
pub const MAX_EVENT_NAME: usize = 128;
/// The latest timestamp an event may carry (9999-12-31T23:59:59.999Z), in ms since the epoch.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799_999;

/// A shard's queue length past which ingest answers 503. `--shard-queue-bound`.
pub const SHARD_QUEUE_BOUND: usize = 50_000;
/// How long a shard's measured queue length is trusted before it is counted again, at least:
/// a queue near or past its bound is counted this often, one with room for longer
/// ([`shard_queue_trusted_for`]).
pub const SHARD_QUEUE_RECHECK: Duration = Duration::from_millis(200);

/// How long a count of `length` against `bound` is trusted: from [`SHARD_QUEUE_RECHECK`] for a
/// queue past three quarters of its bound up to four times that for an empty one. Counting
/// walks the queue's keys (up to the bound), which under a sustained burst was about 1 % of the
/// server's CPU at one count every 200 ms per shard (issue 10); a queue with half its bound
/// free needs over 100,000 events/s into one shard to fill in the 400 ms it is trusted.
pub fn shard_queue_trusted_for(length: usize, bound: usize) -> Duration {
    let free = bound.saturating_sub(length) as u128;
    let quarters = (free * 4 / (bound.max(1) as u128)).clamp(1, 4) as u32;
    SHARD_QUEUE_RECHECK * quarters
}

/// The operator's default rates and concurrency per tenant; a tenant's
/// [`LimitOverrides`] replace them field by field. A rate of 0 is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantRates {
    /// Requests per second, sustained. `--requests-per-second`.
    pub requests_per_second: u64,
    /// Requests a tenant may make at once above the rate. `--request-burst`.
    pub request_burst: u64,
    /// Events per second, sustained. `--events-per-second`.
    pub events_per_second: u64,
    /// Events a tenant may post at once above the rate. `--event-burst`.
    pub event_burst: u64,
    /// Expensive requests (uploads, mass retries, listings) in flight at once.
    /// `--max-expensive-requests`.
    pub max_expensive_requests: u64,
}

impl TenantRates {
    pub const DEFAULT: TenantRates = TenantRates {
        requests_per_second: 1_000,
        request_burst: 2_000,
        events_per_second: 50_000,
        event_burst: 100_000,
        max_expensive_requests: 4,
    };

    /// These defaults with a tenant's overrides applied.
    pub fn with(self, o: &LimitOverrides) -> TenantRates {
        TenantRates {
            requests_per_second: o.requests_per_second.unwrap_or(self.requests_per_second),
            request_burst: o.request_burst.unwrap_or(self.request_burst),
            events_per_second: o.events_per_second.unwrap_or(self.events_per_second),
            event_burst: o.event_burst.unwrap_or(self.event_burst),
            max_expensive_requests: o
                .max_expensive_requests
                .unwrap_or(self.max_expensive_requests),
        }
    }
}

/// Everything the edge is configured with.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub max_head_bytes: usize,
    pub max_header_fields: usize,
    pub max_events_body: usize,
    pub max_upload_body: usize,
    pub max_small_body: usize,
    pub shard_queue_bound: usize,
    pub rates: TenantRates,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_uri_bytes: MAX_URI_BYTES,
            max_header_bytes: MAX_HEADER_BYTES,
            max_head_bytes: MAX_HEAD_BYTES,
            max_header_fields: MAX_HEADER_FIELDS,
            max_events_body: MAX_EVENTS_BODY,
            max_upload_body: MAX_UPLOAD_BODY,
            max_small_body: MAX_SMALL_BODY,
            shard_queue_bound: SHARD_QUEUE_BOUND,
            rates: TenantRates::DEFAULT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_count_is_trusted_longer_the_more_room_it_left() {
        let at = |length| shard_queue_trusted_for(length, 1_000);
        assert_eq!(at(0), SHARD_QUEUE_RECHECK * 4);
        assert_eq!(at(250), SHARD_QUEUE_RECHECK * 3);
        assert_eq!(at(500), SHARD_QUEUE_RECHECK * 2);
        assert_eq!(at(750), SHARD_QUEUE_RECHECK);
        assert_eq!(at(1_000), SHARD_QUEUE_RECHECK);
        assert_eq!(at(1_001), SHARD_QUEUE_RECHECK);
        // A bound of zero: every count is past it.
        assert_eq!(shard_queue_trusted_for(0, 0), SHARD_QUEUE_RECHECK);
    }
}
