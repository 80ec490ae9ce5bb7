//! What a backtest tries in place of the live version: a stored version of the journey, or a
//! component's bytes sent with the request (issue 13).
//!
//! Bytes are validated exactly as an upload is — compiled (world, imports) and `describe`d
//! (spec) — but in the backtest's own sandbox, so nothing about them reaches the live host:
//! not its store, not its registry, not its compiled-code cache. The isolated engine adds them
//! to its scratch store as the journey's next version ([`IsolatedEngine::add_unstored`]), where
//! they live and die with the replay.
//!
//! [`IsolatedEngine::add_unstored`]: super::engine::IsolatedEngine::add_unstored

use crate::model::{Limits, Spec};
use crate::sandbox::{FailureReason, JourneyComponent, Sandbox, SandboxError};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The candidate of a backtest.
#[derive(Debug, Clone)]
pub enum Candidate {
    /// A stored version of the journey (a draft, typically).
    Stored(u32),
    /// A component never stored as a version.
    Unstored(Arc<Unstored>),
}

/// A journey component sent as bytes, compiled in the sandbox the backtest runs.
pub struct Unstored {
    /// SHA-256 of the bytes (hex), as a stored version would be named.
    pub digest: String,
    pub bytes: Vec<u8>,
    /// What its `describe` declared.
    pub spec: Spec,
    /// Compiled by [`Unstored::sandbox`]: a component is tied to the engine that compiled it.
    pub component: JourneyComponent,
    /// The backtest's own sandbox, which both replays use.
    pub sandbox: Sandbox,
}

impl std::fmt::Debug for Unstored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unstored")
            .field("digest", &self.digest)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Why component bytes cannot be a backtest's candidate: the codes an upload answers with.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    /// Not a journey component of a world this host runs, or it imports what it may not.
    #[error(transparent)]
    Component(#[from] SandboxError),
    /// `describe` failed or declared an invalid spec.
    #[error("describe failed ({reason}): {message}")]
    Describe {
        /// Whether the spec itself was refused (`invalid_spec`) rather than the call.
        invalid_spec: bool,
        reason: &'static str,
        message: String,
    },
    /// The blocking compile task went away.
    #[error("the compile task failed: {0}")]
    Join(String),
}

impl Unstored {
    /// Compiles and describes `bytes` in a new sandbox configured as `like` (the live host's:
    /// same limits, same cache of code compiled from stored components, which it only reads).
    pub async fn validate(
        like: &Sandbox,
        bytes: Vec<u8>,
        limits: &Limits,
    ) -> Result<Unstored, CandidateError> {
        let sandbox = Sandbox::new(like.config().clone())?;
        let (sandbox, bytes, component) = tokio::task::spawn_blocking(move || {
            let compiled = sandbox.compile_journey(&bytes);
            (sandbox, bytes, compiled)
        })
        .await
        .map_err(|e| CandidateError::Join(e.to_string()))?;
        let component = component?;
        let spec = component
            .describe(limits)
            .await
            .map_err(|f| CandidateError::Describe {
                invalid_spec: f.reason == FailureReason::InvalidSpec,
                reason: f.reason.as_str(),
                message: f.message,
            })?;
        Ok(Unstored {
            digest: hex::encode(Sha256::digest(&bytes)),
            bytes,
            spec,
            component,
            sandbox,
        })
    }
}
