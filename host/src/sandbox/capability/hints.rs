//! The `delivery-hints` import (contract 0.1.1): what an adapter tells the host about the
//! delivery in progress beyond its result. Today one hint: `retry-after`, the provider's own
//! word on when to call again (`Retry-After` on a 429 or 503).
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
#[derive(Debug, Clone, Default)]
pub(in crate::sandbox) struct HintState {
    retry_after: Option<Duration>,
}

impl HintState {
    /// The longest `retry-after` the adapter gave during the call, bounded by
    /// [`MAX_RETRY_AFTER`]; `None` if it gave none.
    pub(in crate::sandbox) fn asked_wait(&self) -> Option<Duration> {
        self.retry_after
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
}
