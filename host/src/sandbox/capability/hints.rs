//! The `delivery-hints` import (contract 0.1.1): what an adapter tells the host about the
//! delivery in progress beyond its result. Today one hint: `retry-after`, the provider's own
//! word on when to call again (`Retry-After` on a 429 or 503).
//!
//! Contract 0.1.2 adds `receipt-detail`: a JSON object the host keeps on a delivered message
//! (an SMS's segment count), merged over the call and bounded ([`MAX_RECEIPT_DETAIL`]).
//!
//! A hint is per call: the store data's [`HintState`] is new for every delivery, and what it
//! holds after the call is read once by the caller ([`HintState::asked_wait`]). The host bounds
//! it ([`MAX_RETRY_AFTER`]): a provider's — or an adapter's — word cannot park a message for
//! longer than an hour per attempt, and the attempts are still counted toward dead-lettering.

use super::Capability;
use crate::sandbox::bindings::delivery_hints as wit;
use std::time::Duration;
use wasmtime::component::{HasData, Linker};

/// What this capability grants: the `delivery-hints` interface.
pub(in crate::sandbox) const INTERFACES: &[&str] = &["waymark:journey/delivery-hints@"];

/// The longest wait a `retry-after` hint can ask for; longer ones are cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Per-call state of the `delivery-hints` import.
/// The largest receipt detail kept, serialized; a larger one is dropped whole (a detail is a
/// few counters, not a payload).
pub const MAX_RECEIPT_DETAIL: usize = 4096;

#[derive(Debug, Clone, Default)]
pub(in crate::sandbox) struct HintState {
    retry_after: Option<Duration>,
    receipt: serde_json::Map<String, serde_json::Value>,
    receipt_too_large: bool,
}

impl HintState {
    /// The longest `retry-after` the adapter gave during the call, bounded by
    /// [`MAX_RETRY_AFTER`]; `None` if it gave none.
    pub(in crate::sandbox) fn asked_wait(&self) -> Option<Duration> {
        self.retry_after
    }

    /// What `receipt-detail` gave during the call, merged; `None` if nothing (or too much).
    pub(in crate::sandbox) fn reported_receipt(&self) -> Option<serde_json::Value> {
        if self.receipt.is_empty() || self.receipt_too_large {
            return None;
        }
        Some(serde_json::Value::Object(self.receipt.clone()))
    }
}

impl wit::Host for HintState {
    fn retry_after(&mut self, delay: wit::Duration) {
        // A negative delay means nothing; zero is a (useless) hint all the same.
        let Ok(ms) = u64::try_from(delay) else {
            return;
        };
        let delay = Duration::from_millis(ms).min(MAX_RETRY_AFTER);
        self.retry_after = Some(self.retry_after.map_or(delay, |d| d.max(delay)));
    }

    fn receipt_detail(&mut self, detail: wit::Json) {
        // Text that is not a JSON object is ignored, as the contract says; so is a detail
        // past the bound (which stays dropped for the rest of the call).
        if detail.len() > MAX_RECEIPT_DETAIL {
            self.receipt_too_large = true;
            return;
        }
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(&detail) {
            self.receipt.extend(fields);
            let size = serde_json::to_vec(&self.receipt).map_or(usize::MAX, |v| v.len());
            self.receipt_too_large |= size > MAX_RECEIPT_DETAIL;
        }
    }
}

struct Hints;

impl HasData for Hints {
    type Data<'a> = &'a mut HintState;
}

/// Store data that holds a [`HintState`].
pub(in crate::sandbox) trait HasHints {
    fn hint_state(&mut self) -> &mut HintState;
}

/// Adds the `delivery-hints` import, reading its state from the store data.
pub(in crate::sandbox) fn add_to_linker<T: HasHints + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Hints>(linker, T::hint_state)
}

/// `delivery-hints` as a world lists it.
pub(in crate::sandbox) const fn capability<T: HasHints + 'static>() -> Capability<T> {
    Capability {
        interfaces: INTERFACES,
        add_to_linker: add_to_linker::<T>,
    }
}

#[cfg(test)]
mod tests {
    use super::wit::Host;
    use super::*;

    #[test]
    fn the_longest_hint_counts_bounded_and_negative_ones_are_ignored() {
        let mut hints = HintState::default();
        assert_eq!(hints.asked_wait(), None);
        hints.retry_after(-5);
        assert_eq!(hints.asked_wait(), None);
        hints.retry_after(2_000);
        hints.retry_after(500);
        assert_eq!(hints.asked_wait(), Some(Duration::from_secs(2)));
        hints.retry_after(i64::MAX);
        assert_eq!(hints.asked_wait(), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn receipt_details_merge_and_anything_but_a_bounded_object_is_ignored() {
        let mut hints = HintState::default();
        assert_eq!(hints.reported_receipt(), None);
        hints.receipt_detail("[1]".into());
        hints.receipt_detail("not json".into());
        assert_eq!(hints.reported_receipt(), None);
        hints.receipt_detail(r#"{"segments": 1, "encoding": "GSM-7"}"#.into());
        hints.receipt_detail(r#"{"segments": 2}"#.into());
        assert_eq!(
            hints.reported_receipt(),
            Some(serde_json::json!({"segments": 2, "encoding": "GSM-7"}))
        );
        hints.receipt_detail(format!(r#"{{"x": "{}"}}"#, "y".repeat(MAX_RECEIPT_DETAIL)));
        assert_eq!(hints.reported_receipt(), None, "too large: dropped whole");
    }
}
