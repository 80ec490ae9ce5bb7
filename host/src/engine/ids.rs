//! Identities derived from triggers: trigger ids, idempotency keys (message ids), task ids,
//! seeds and enrollment ids. Each is a pure function of the trigger's own identity, so
//! processing the same trigger again after a crash yields the same keys, ids and seed
//! (invariant 3), and a replay yields the same decision (invariant 5).
//!
//! # Formats
//!
//! | id | format | parts | encoding |
//! |----|--------|-------|----------|
//! | enrollment | `{journey}/{customer}/{run}` | journey, customer, run | journey is a validated name (no `/`), run is the decimal last segment: the customer is what is between |
//! | trigger | `e-{event id}`, `t-{timer}-{due}`, `s-{milestone}-{due}`, `d-{16 hex}` | kind, name or id, due time | the kind prefix tells kinds apart; the due time is the decimal last segment; a delivery report's is FNV-1a of its message id |
//! | message (idempotency key) | `k1-{32 hex}-{command index}` | tenant, journey, version, customer, run, trigger id | [`hash::parts_digest`] (SHA-256 over length-prefixed parts), first 128 bits |
//! | task | `task_{32 hex}` | enrollment id, trigger id, index | [`hash::parts_digest`], first 128 bits |
//! | seed | `u64` | tenant, enrollment id, trigger id | FNV-1a over parts each ended by `0x1f` |
//!
//! Message ids are what channel adapters pass on as `Idempotency-Key`, so they must never
//! collide (a receiver that honours the key drops the second message), whatever customer ids,
//! event ids and timer names contain, and a header must carry them. A `k1` key is at most
//! [`MAX_MESSAGE_ID`] bytes of `[0-9a-z-]` (an RFC 9110 token) for any parts, and two keys are
//! equal only if all their parts are (up to a collision of SHA-256 truncated to 128 bits, which
//! nobody can construct). The parts are kept beside the key: the message record carries tenant,
//! journey, version, customer, enrollment and run. The `k1` prefix versions the format: a
//! future format takes another prefix, so ids of both stay distinguishable.
//!
//! Before `k1`, keys were the parts joined with `/`, unescaped
//! (`{tenant}/{journey}/{version}/{customer}/{run}/{trigger id}/{index}`), so customer `a/1/e-x`
//! with event `y` and customer `a` with event `x/1/e-y` got the same key; a long timer name
//! made a key as long.
//!
//! # Existing ids keep working
//!
//! No id is ever re-derived from stored data in a different way:
//! - a message id is derived once, when the trigger that sends it commits, and stored with the
//!   message (the outbox record and the message history); delivery, retries, their jitter,
//!   delivery reports and engagement events all read the stored id. Messages committed before
//!   `k1` keep their old ids and are delivered under them. A trigger interrupted before its
//!   commit left no message behind (the outbox is written in the same transaction), so if it is
//!   processed again under `k1` nothing was ever sent under its old key.
//! - a delivery report's trigger id hashes the report's stored message id, of either format,
//!   the same way as before.
//! - task ids are derived once, when the trigger commits, and stored with the task; the
//!   `task_resolved` event names the stored id. Old tasks keep their 16-digit ids; new ones get
//!   32 digits (the old ids hashed with 64-bit FNV-1a, which one tenant's customers could be
//!   chosen to collide).
//! - seeds are unchanged, so decisions are unchanged: the same trigger gives the same seed
//!   before and after `k1`, and replays decide as they did. Their parts cannot contain `0x1f`
//!   (tenants and journeys are validated names, customer and event ids have no control
//!   characters, and guests' timer and milestone names are validated as commands), so the
//!   terminated encoding is unambiguous.
//! - enrollment ids are store keys: unchanged.

use crate::hash;
use crate::model::{Enrollment, Millis, Trigger};

/// The version of the idempotency-key format, the first segment of every key.
pub const KEY_FORMAT: &str = "k1";

/// Hex digits of the digest in a key or task id (128 bits).
const DIGEST_HEX: usize = 32;

/// The longest message id of the current format: `k1-`, the digest, `-`, and a command index
/// (a `usize`, at most 20 digits).
pub const MAX_MESSAGE_ID: usize = KEY_FORMAT.len() + 1 + DIGEST_HEX + 1 + 20;

/// Identifies one trigger of one enrollment; part of every idempotency key it produces.
///
/// Derived from the trigger's own identity (event id, timer name and due time, message id), so
/// that re-processing the same trigger after a crash yields the same keys.
pub fn trigger_id(trigger: &Trigger, due: Option<Millis>) -> String {
    match trigger {
        Trigger::Entered { event } | Trigger::Event { event } => format!("e-{}", event.id),
        Trigger::Timer { name } => format!("t-{name}-{}", due.unwrap_or_default()),
        Trigger::Stalled { milestone } => format!("s-{milestone}-{}", due.unwrap_or_default()),
        // Message ids contain earlier trigger ids: hash them so keys do not grow per hop.
        Trigger::Delivery { report } => {
            format!("d-{:016x}", hash::fnv1a(report.message_id.as_bytes()))
        }
        Trigger::Migrated { migration, .. } => format!("m-{migration}"),
    }
}

/// The id of the `index`th task a trigger hands off: short, URL-safe, and the same if the
/// trigger is processed again after a crash.
pub fn task_id(enrollment_id: &str, trigger_id: &str, index: usize) -> String {
    let index = index.to_string();
    let digest = hash::parts_digest(&[
        b"task",
        enrollment_id.as_bytes(),
        trigger_id.as_bytes(),
        index.as_bytes(),
    ]);
    format!("task_{}", hex::encode(&digest[..DIGEST_HEX / 2]))
}

/// The deterministic seed of one trigger, offered to `decide`.
pub fn seed(tenant: &str, enrollment_id: &str, trigger_id: &str) -> u64 {
    hash::fnv1a_terminated(&[tenant, enrollment_id, trigger_id])
}

/// Where the idempotency keys of one trigger's sends start: `k1-` and 32 hex digits of the
/// digest of tenant, journey, version, customer, run and trigger id. Every key is this prefix
/// plus the command's index ([`message_id`]).
pub fn key_prefix(tenant: &str, enrollment: &Enrollment, trigger_id: &str) -> String {
    // Computed for every trigger that decides: the numbers written and the digest encoded
    // on the stack, into one allocation for the key.
    let (mut version, mut run) = (itoa::Buffer::new(), itoa::Buffer::new());
    let digest = hash::parts_digest(&[
        KEY_FORMAT.as_bytes(),
        tenant.as_bytes(),
        enrollment.journey.as_bytes(),
        version.format(enrollment.version).as_bytes(),
        enrollment.customer.as_bytes(),
        run.format(enrollment.run).as_bytes(),
        trigger_id.as_bytes(),
    ]);
    let mut hex = [0u8; DIGEST_HEX];
    // The buffer is exactly twice the digest part's length, so encoding cannot fail.
    let _ = hex::encode_to_slice(&digest[..DIGEST_HEX / 2], &mut hex);
    let mut key = String::with_capacity(KEY_FORMAT.len() + 1 + DIGEST_HEX);
    key.push_str(KEY_FORMAT);
    key.push('-');
    key.extend(hex.iter().map(|b| char::from(*b)));
    key
}

/// The idempotency key (message id) of the send at command `index` of a trigger whose keys
/// start with `prefix`.
pub fn message_id(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}")
}

/// Whether `value` can be carried as an HTTP header value as it is, and is a token (RFC 9110
/// `tchar`s: visible ASCII without separators), so no receiver needs to quote or parse it.
pub fn is_header_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `{journey}/{customer}/{run}`: unique per tenant.
pub fn enrollment_id(journey: &str, customer: &str, run: u32) -> String {
    format!("{journey}/{customer}/{run}")
}
