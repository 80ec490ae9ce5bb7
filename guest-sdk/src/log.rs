//! Structured logging into the host's trace of the current call.
//!
//! Inside the host, each line goes through the `log` import and lands in the span of the
//! trigger or delivery being processed. In native tests it goes to stderr.
//!
//! ```
//! waymark_guest::log::info("customer entered onboarding");
//! waymark_guest::log::warn(format!("unknown plan {:?}", "gold"));
//! ```

use std::fmt;

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Useful while developing a journey.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong but the call goes on.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Logs `message` at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    emit(level, message.as_ref());
}

#[cfg(target_arch = "wasm32")]
fn emit(level: Level, message: &str) {
    // Both worlds import the same `waymark:journey/log` interface, so the journey world's
    // binding serves channel adapters too.
    use crate::bindings::journey::waymark::journey::log as host;
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn emit(level: Level, message: &str) {
    eprintln!("[waymark {level}] {message}");
}

/// Logs `message` at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Logs `message` at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Logs `message` at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Logs `message` at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Logs `message` at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_named() {
        assert!(Level::Trace < Level::Error);
        assert_eq!(Level::Warn.to_string(), "warn");
        // Natively this only prints; it must not panic.
        info("hello from a native test");
    }
}
