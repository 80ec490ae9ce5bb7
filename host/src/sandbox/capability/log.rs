//! The `log` import: guest messages into the host's `tracing`, as structured events.
//!
//! Events carry the guest's level and the component kind, and are emitted inside whatever span
//! the caller runs the call in (the trigger's or the delivery's), so they land next to the
//! host's own record of that call. A guest cannot flood the host's logs: each call may emit at
//! most [`LogConfig::max_messages`] messages of at most [`LogConfig::max_message_bytes`]; the
//! rest are counted and reported once when the call ends.

use super::Capability;
use crate::sandbox::bindings::log as wit;
use crate::sandbox::failure::truncate;
use wasmtime::component::{HasData, Linker};

/// What this capability grants: the `log` interface.
pub(in crate::sandbox) const INTERFACES: &[&str] = &["waymark:journey/log@"];

/// Per-call caps of the `log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sandbox) struct LogConfig {
    pub(in crate::sandbox) max_messages: u32,
    pub(in crate::sandbox) max_message_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_messages: 100,
            max_message_bytes: 1024,
        }
    }
}

/// Per-call state of the `log` import.
pub(in crate::sandbox) struct LogState {
    config: LogConfig,
    /// `journey` or `channel`: which kind of guest is speaking.
    kind: &'static str,
    emitted: u32,
    dropped: u32,
}

impl LogState {
    pub(in crate::sandbox) fn new(kind: &'static str) -> LogState {
        LogState::with_config(kind, LogConfig::default())
    }

    pub(in crate::sandbox) fn with_config(kind: &'static str, config: LogConfig) -> LogState {
        LogState {
            config,
            kind,
            emitted: 0,
            dropped: 0,
        }
    }

    /// Reports messages dropped by the cap, once, when the call is over.
    pub(in crate::sandbox) fn finish(&self) {
        if self.dropped > 0 {
            tracing::warn!(
                target: "waymark::guest",
                guest = self.kind,
                dropped = self.dropped,
                "guest log messages dropped by the per-call cap"
            );
        }
    }

    /// Whether a message may be emitted; counts it either way.
    fn admit(&mut self) -> bool {
        if self.emitted < self.config.max_messages {
            self.emitted += 1;
            true
        } else {
            self.dropped = self.dropped.saturating_add(1);
            false
        }
    }
}

impl wit::Host for LogState {
    fn log(&mut self, level: wit::Level, message: String) {
        if !self.admit() {
            return;
        }
        let message = truncate(message, self.config.max_message_bytes);
        let guest = self.kind;
        // `tracing` levels are static per call site, hence one macro per level.
        match level {
            wit::Level::Trace => {
                tracing::trace!(target: "waymark::guest", guest, guest_message = %message)
            }
            wit::Level::Debug => {
                tracing::debug!(target: "waymark::guest", guest, guest_message = %message)
            }
            wit::Level::Info => {
                tracing::info!(target: "waymark::guest", guest, guest_message = %message)
            }
            wit::Level::Warn => {
                tracing::warn!(target: "waymark::guest", guest, guest_message = %message)
            }
            wit::Level::Error => {
                tracing::error!(target: "waymark::guest", guest, guest_message = %message)
            }
        }
    }
}

struct Log;

impl HasData for Log {
    type Data<'a> = &'a mut LogState;
}

/// Store data that holds a [`LogState`].
pub(in crate::sandbox) trait HasLog {
    fn log_state(&mut self) -> &mut LogState;
}

/// Adds the `log` import, reading its state from the store data.
pub(in crate::sandbox) fn add_to_linker<T: HasLog + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Log>(linker, T::log_state)
}

/// `log` as a world lists it.
pub(in crate::sandbox) const fn capability<T: HasLog + 'static>() -> Capability<T> {
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
    fn messages_past_the_cap_are_dropped_and_counted() {
        let mut log = LogState::with_config(
            "journey",
            LogConfig {
                max_messages: 2,
                max_message_bytes: 8,
            },
        );
        for _ in 0..5 {
            log.log(wit::Level::Info, "a message longer than eight bytes".into());
        }
        assert_eq!(log.emitted, 2);
        assert_eq!(log.dropped, 3);
    }
}
