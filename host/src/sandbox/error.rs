//! Why an upload was refused or the sandbox could not start: [`SandboxError`].
//!
//! Kept apart from [`super::failure`] (why a *call* failed) because the two end up in different
//! places: a `SandboxError` is an HTTP 400 (or a server that does not start), a call failure is
//! recorded on an enrollment or a message. Every other sandbox module may name this one; it names
//! none of them.

/// Why an upload was refused or the sandbox could not start. Messages are written for the
/// tenant: they end up in an HTTP 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// Not a valid WebAssembly component (or too large).
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// A valid component, but not of the expected world: an import we do not provide, or a
    /// missing or mistyped export.
    #[error("wrong world: {0}")]
    WrongWorld(String),
    /// The component imports an interface its world does not grant (the filesystem, sockets,
    /// ...); the message names it.
    #[error("forbidden import: {0}")]
    ForbiddenImport(String),
    /// A channel registration's settings are unusable (e.g. a malformed allowed host).
    #[error("invalid channel configuration: {0}")]
    InvalidConfig(String),
    /// The host's fault, not the component's.
    #[error("sandbox internal error: {0}")]
    Internal(String),
}
