//! The sandbox: where tenant components run, and the only module that knows wasmtime.
//!
//! A [`Sandbox`] owns one wasmtime [`Engine`] (pooling allocator, epoch interruption), one
//! linker per world, and a thread that ticks the engine's epoch. Uploads are validated and
//! compiled into a [`JourneyComponent`] or [`ChannelComponent`]; every call then gets a fresh
//! instance in a fresh store, so no state leaks between customers or triggers.
//!
//! Each capability granted to guests lives in its own file with one shape — its config, its
//! per-call state, and how it adds itself to a linker:
//!
//! - [`limits`]: engine configuration, the memory cap, the epoch ticker and deadlines, and how
//!   a failed call is classified ([`FailureReason`]).
//! - [`wasi`]: the WASI that Rust's std needs; for journeys deterministic (virtual clocks at
//!   `now`, randomness seeded from `seed`, no files, environment or network).
//! - [`log`]: the `log` import, into `tracing`, capped per call.
//! - [`stats`]: the read-only `stats` import.
//! - [`http`]: outbound `wasi:http` for channels, with the allowed-host and private-network
//!   policy enforced at the single `send_request` choke point.
//! - [`journey`] and [`channel`]: the two worlds' bindings, and conversion between WIT types
//!   and [`crate::model`] at the boundary. Nothing outside this module sees a wasmtime type.

mod channel;
mod http;
mod journey;
mod limits;
mod log;
mod stats;
mod wasi;

pub use channel::ChannelComponent;
pub use http::check_allowed_hosts;
pub use journey::JourneyComponent;
pub use limits::SandboxConfig;

use crate::model;
use limits::EpochTicker;
use std::fmt;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

/// A compiled-component factory: the engine, the linkers and the epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
    journey_linker: Arc<Linker<journey::JourneyState>>,
    channel_linker: Arc<Linker<channel::ChannelState>>,
}

/// What every compiled component keeps alive: the limits it runs under, and the epoch ticker,
/// without which deadlines would never fire (so it lives as long as any component does, not
/// just as long as the [`Sandbox`]).
pub(crate) struct Shared {
    engine: Engine,
    config: SandboxConfig,
    _ticker: EpochTicker,
}

impl Sandbox {
    /// Builds the engine and linkers and starts the epoch ticker.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.validate()?;
        let engine = Engine::new(&limits::engine_config(&config))
            .map_err(|e| SandboxError::Internal(format!("cannot create the wasm engine: {e:#}")))?;
        let journey_linker = journey::linker(&engine)
            .map_err(|e| SandboxError::Internal(format!("cannot link the journey world: {e:#}")))?;
        let channel_linker = channel::linker(&engine)
            .map_err(|e| SandboxError::Internal(format!("cannot link the channel world: {e:#}")))?;
        let ticker = EpochTicker::start(&engine)?;
        Ok(Sandbox {
            shared: Arc::new(Shared {
                engine,
                config,
                _ticker: ticker,
            }),
            journey_linker: Arc::new(journey_linker),
            channel_linker: Arc::new(channel_linker),
        })
    }

    /// The limits this sandbox enforces.
    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// Validates that `bytes` is a component of world `journey` (it instantiates with our
    /// linker and exports `describe` and `decide`) and compiles it.
    ///
    /// Compiling is CPU-bound and can take a second or more for a large component: call this
    /// from `spawn_blocking`, not on an async worker.
    pub fn compile_journey(&self, bytes: &[u8]) -> Result<JourneyComponent, SandboxError> {
        let component = self.compile(bytes)?;
        let pre = self
            .journey_linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::WrongWorld(format!("not a journey component: {e:#}")))?;
        JourneyComponent::new(pre, self.shared.clone())
    }

    /// Validates that `bytes` is a component of world `channel` (it instantiates with our
    /// linker and exports `deliver`) and compiles it. Same caveat as
    /// [`compile_journey`](Self::compile_journey): CPU-bound.
    pub fn compile_channel(&self, bytes: &[u8]) -> Result<ChannelComponent, SandboxError> {
        let component = self.compile(bytes)?;
        let pre = self
            .channel_linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::WrongWorld(format!("not a channel component: {e:#}")))?;
        ChannelComponent::new(pre, self.shared.clone())
    }

    fn compile(&self, bytes: &[u8]) -> Result<Component, SandboxError> {
        let max = self.shared.config.max_component_bytes;
        if bytes.len() > max {
            return Err(SandboxError::InvalidComponent(format!(
                "the component is {} bytes; the limit is {max} bytes",
                bytes.len()
            )));
        }
        check_preamble(bytes)?;
        // Only ever compile bytes here; never `Component::deserialize` what a tenant sent,
        // since precompiled code is trusted native code.
        Component::new(&self.shared.engine, bytes)
            .map_err(|e| SandboxError::InvalidComponent(format!("{e:#}")))
    }
}

/// Tells a core module (the usual mistake: `--target wasm32-unknown-unknown` or `wasip1`)
/// apart from a component before wasmtime's less specific validation error.
fn check_preamble(bytes: &[u8]) -> Result<(), SandboxError> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_LAYER: [u8; 2] = [0x01, 0x00];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(SandboxError::InvalidComponent(
            "not a WebAssembly binary (no `\\0asm` header)".into(),
        ));
    }
    if bytes[6..8] != COMPONENT_LAYER {
        return Err(SandboxError::InvalidComponent(
            "a core WebAssembly module, not a component; build with \
             `cargo build --target wasm32-wasip2`"
                .into(),
        ));
    }
    Ok(())
}

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
    /// A channel registration's settings are unusable (e.g. a malformed allowed host).
    #[error("invalid channel configuration: {0}")]
    InvalidConfig(String),
    /// The host's fault, not the component's.
    #[error("sandbox internal error: {0}")]
    Internal(String),
}

/// Why a guest call failed. The enrollment records it; other customers proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct GuestFailure {
    pub reason: FailureReason,
    pub message: String,
}

impl GuestFailure {
    pub(crate) fn new(reason: FailureReason, message: impl Into<String>) -> GuestFailure {
        GuestFailure {
            reason,
            message: message.into(),
        }
    }
}

/// The kind of a [`GuestFailure`]; [`as_str`](Self::as_str) is what `model::Failure::reason`
/// records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The guest trapped: a panic, `unreachable`, an out-of-bounds access, a stack overflow.
    Trap,
    /// The call ran past its deadline.
    Deadline,
    /// The guest tried to grow its memory past the limit.
    Memory,
    /// `decide` returned `err`.
    GuestError,
    /// `decide` returned commands the host refuses: a send payload that is not a JSON object,
    /// too many commands, state too large.
    InvalidCommands,
    /// `describe` returned a spec the host refuses (a filter that is not a JSON object, a goal
    /// that is not a milestone, ...).
    InvalidSpec,
    /// The component could not be instantiated (e.g. the instance pool is exhausted).
    Instantiate,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Trap => "trap",
            FailureReason::Deadline => "deadline",
            FailureReason::Memory => "memory",
            FailureReason::GuestError => "guest_error",
            FailureReason::InvalidCommands => "invalid_commands",
            FailureReason::InvalidSpec => "invalid_spec",
            FailureReason::Instantiate => "instantiate",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `deliver` did not deliver: the adapter said so, or the guest failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryFailure {
    /// The adapter returned `delivery-error`.
    #[error("adapter: {0}")]
    Adapter(model::DeliveryError),
    /// The adapter trapped, ran out of time or memory, or could not be instantiated.
    #[error("guest: {0}")]
    Guest(GuestFailure),
}

impl DeliveryFailure {
    /// Whether trying again later may succeed. A guest failure is retryable: a deadline is
    /// usually a slow provider, and the delivery module's backoff and dead-letter bound the
    /// cost of a guest that always traps.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryFailure::Adapter(model::DeliveryError::Retryable(_)) => true,
            DeliveryFailure::Adapter(model::DeliveryError::Permanent(_)) => false,
            DeliveryFailure::Guest(_) => true,
        }
    }

    /// The failure in the domain's vocabulary, as a delivery outcome records it.
    pub fn into_delivery_error(self) -> model::DeliveryError {
        match self {
            DeliveryFailure::Adapter(e) => e,
            DeliveryFailure::Guest(g) => model::DeliveryError::Retryable(g.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_and_garbage_are_refused_with_a_hint() {
        let core_module = b"\0asm\x01\x00\x00\x00";
        let component = b"\0asm\x0d\x00\x01\x00";
        assert!(matches!(
            check_preamble(b"hello world"),
            Err(SandboxError::InvalidComponent(m)) if m.contains("not a WebAssembly binary")
        ));
        assert!(matches!(
            check_preamble(core_module),
            Err(SandboxError::InvalidComponent(m)) if m.contains("wasm32-wasip2")
        ));
        assert_eq!(check_preamble(component), Ok(()));
    }

    #[test]
    fn failure_reasons_use_the_recorded_vocabulary() {
        let failure = GuestFailure::new(FailureReason::GuestError, "no such template");
        assert_eq!(failure.to_string(), "guest_error: no such template");
        assert_eq!(FailureReason::InvalidCommands.as_str(), "invalid_commands");
    }

    #[test]
    fn guest_failures_in_deliver_are_retryable_and_permanent_errors_are_not() {
        let trap = DeliveryFailure::Guest(GuestFailure::new(FailureReason::Trap, "boom"));
        assert!(trap.is_retryable());
        assert!(matches!(
            trap.into_delivery_error(),
            model::DeliveryError::Retryable(m) if m == "trap: boom"
        ));
        let permanent = DeliveryFailure::Adapter(model::DeliveryError::Permanent("400".into()));
        assert!(!permanent.is_retryable());
    }

    /// The onboarding example, if another build has produced it; end-to-end tests cover the
    /// guests fully, this only catches a WIT drift between host and examples early.
    fn built_example(name: &str) -> Option<Vec<u8>> {
        let target =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2");
        ["release", "debug"]
            .iter()
            .find_map(|profile| std::fs::read(target.join(profile).join(name)).ok())
    }

    #[tokio::test]
    async fn the_onboarding_example_compiles_and_describes_itself() {
        let Some(bytes) = built_example("waymark_example_onboarding.wasm") else {
            eprintln!("skipped: build examples/onboarding for wasm32-wasip2 to run this test");
            return;
        };
        let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let journey = sandbox
            .compile_journey(&bytes)
            .expect("a journey component");
        let spec = journey.describe().await.expect("a valid spec");
        assert!(
            !spec.entry.is_empty(),
            "onboarding declares how customers enter"
        );
        assert!(matches!(
            sandbox.compile_channel(&bytes),
            Err(SandboxError::WrongWorld(_))
        ));
    }

    #[tokio::test]
    async fn sandbox_starts_with_default_limits_and_refuses_a_core_module() {
        let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let err = sandbox
            .compile_journey(b"\0asm\x01\x00\x00\x00")
            .err()
            .expect("refused");
        assert!(matches!(err, SandboxError::InvalidComponent(_)));
        let too_big = vec![0u8; sandbox.config().max_component_bytes + 1];
        assert!(matches!(
            sandbox.compile_channel(&too_big),
            Err(SandboxError::InvalidComponent(m)) if m.contains("limit")
        ));
    }
}
