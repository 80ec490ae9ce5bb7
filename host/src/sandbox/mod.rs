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
pub use limits::{SandboxConfig, DEFAULT_LIMITS};

use crate::model;
use limits::EpochTicker;
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

/// What a journey may import: its own world's interfaces and the WASI that Rust's std needs
/// for printing, clocks and randomness. Never the filesystem or sockets.
const JOURNEY_IMPORTS: &[&str] = &[
    "waymark:journey/types@",
    "waymark:journey/log@",
    "waymark:journey/stats@",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
];

/// What a channel adapter may import: as a journey (without `stats`), plus outgoing HTTP.
const CHANNEL_IMPORTS: &[&str] = &[
    "waymark:journey/types@",
    "waymark:journey/log@",
    "waymark:journey/channel-types@",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:http/types@",
    "wasi:http/outgoing-handler@",
];

/// Counts of the sandbox's work, exported on `/metrics`. Cheap to clone (shared counters).
#[derive(Clone, Debug, Default)]
pub struct SandboxCounters {
    /// Components compiled from their bytes.
    pub compiled: Counter,
    /// Components loaded from the compiled-code cache instead.
    pub cache_hits: Counter,
    /// Journey instances created.
    pub instantiated: Counter,
    /// Journey calls served by a warm instance.
    pub reused: Counter,
    /// Journey instances dropped after a failed call.
    pub recycled: Counter,
}

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
    /// A hash of what makes compiled code compatible with `engine` (wasmtime version, target,
    /// settings): part of every compile-cache key.
    engine_hash: u64,
    config: SandboxConfig,
    counters: SandboxCounters,
    /// Idle journey instances across all pools (at most `config.max_idle_instances`).
    idle_total: std::sync::atomic::AtomicUsize,
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
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.finish();
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                SandboxError::Internal(format!(
                    "cannot create the compile cache {}: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(Sandbox {
            shared: Arc::new(Shared {
                engine,
                engine_hash,
                config,
                counters: SandboxCounters::default(),
                idle_total: Default::default(),
                _ticker: ticker,
            }),
            journey_linker: Arc::new(journey_linker),
            channel_linker: Arc::new(channel_linker),
        })
    }

    /// How this sandbox was set up.
    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// The sandbox's work counters.
    pub fn counters(&self) -> &SandboxCounters {
        &self.shared.counters
    }

    /// Validates that `bytes` is a component of world `journey` (it imports nothing outside
    /// [`JOURNEY_IMPORTS`], instantiates with our linker and exports `describe` and `decide`)
    /// and compiles it, or loads what this host compiled before from the cache.
    ///
    /// Compiling is CPU-bound and can take a second or more for a large component: call this
    /// from `spawn_blocking`, not on an async worker.
    pub fn compile_journey(&self, bytes: &[u8]) -> Result<JourneyComponent, SandboxError> {
        let component = self.compile(bytes)?;
        self.check_imports(&component, "journey", JOURNEY_IMPORTS)?;
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
        self.check_imports(&component, "channel", CHANNEL_IMPORTS)?;
        let pre = self
            .channel_linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::WrongWorld(format!("not a channel component: {e:#}")))?;
        ChannelComponent::new(pre, self.shared.clone())
    }

    /// Refuses a component that imports anything outside `allowed`, naming what it imports.
    fn check_imports(
        &self,
        component: &Component,
        world: &str,
        allowed: &[&str],
    ) -> Result<(), SandboxError> {
        let engine = &self.shared.engine;
        let forbidden: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .filter(|name| !allowed.iter().any(|prefix| name.starts_with(prefix)))
            .collect();
        if forbidden.is_empty() {
            return Ok(());
        }
        Err(SandboxError::ForbiddenImport(format!(
            "a {world} component may not import {}; it may import only {}",
            quoted(&forbidden),
            quoted(allowed)
        )))
    }

    fn compile(&self, bytes: &[u8]) -> Result<Component, SandboxError> {
        check_preamble(bytes)?;
        let Some(dir) = &self.shared.config.cache_dir else {
            return self.compile_fresh(bytes);
        };
        let key = format!(
            "{}-{:016x}",
            hex::encode(Sha256::digest(bytes)),
            self.shared.engine_hash
        );
        let path = dir.join(format!("{key}.cwasm"));
        if let Some(component) = self.load_cached(&path) {
            self.shared.counters.cache_hits.inc();
            return Ok(component);
        }
        let component = self.compile_fresh(bytes)?;
        store_cached(&path, &component);
        Ok(component)
    }

    fn compile_fresh(&self, bytes: &[u8]) -> Result<Component, SandboxError> {
        self.shared.counters.compiled.inc();
        // Only ever compile bytes here; never `Component::deserialize` what a tenant sent,
        // since precompiled code is trusted native code.
        Component::new(&self.shared.engine, bytes)
            .map_err(|e| SandboxError::InvalidComponent(format!("{e:#}")))
    }

    /// Loads code this host compiled and cached, if it is there and intact: the sidecar
    /// digest, written after the code, must match, so a torn or altered file is recompiled.
    fn load_cached(&self, path: &Path) -> Option<Component> {
        let code = std::fs::read(path).ok()?;
        let digest = std::fs::read_to_string(path.with_extension("sha256")).ok()?;
        if hex::encode(Sha256::digest(&code)) != digest.trim() {
            tracing::warn!(path = %path.display(), "compiled-code cache entry is damaged; recompiling");
            return None;
        }
        // SAFETY: the cache directory is written only by `store_cached`, with code this
        // host's engine produced from validated bytes, and the digest check above ensures
        // the file is what was written. The key includes the engine's compatibility hash,
        // and wasmtime checks compatibility again while deserializing.
        match unsafe { Component::deserialize(&self.shared.engine, &code) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot load cached code; recompiling");
                None
            }
        }
    }
}

/// Writes compiled code to the cache, then its digest; each through a temporary file and a
/// rename, so a crash leaves either a complete entry or one that fails the digest check. A
/// cache that cannot be written only costs a recompilation at the next start.
fn store_cached(path: &Path, component: &Component) {
    let write = || -> std::io::Result<()> {
        let code = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let digest = hex::encode(Sha256::digest(&code));
        write_atomically(path, &code)?;
        write_atomically(&path.with_extension("sha256"), digest.as_bytes())
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-code cache");
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn quoted<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
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

    /// Whether trying again later may succeed (see [`DeliveryFailure::is_retryable`]).
    pub fn retryable(&self) -> bool {
        self.is_retryable()
    }

    /// The error text a delivery attempt records.
    pub fn describe(&self) -> String {
        match self {
            DeliveryFailure::Adapter(
                model::DeliveryError::Retryable(m) | model::DeliveryError::Permanent(m),
            ) => m.clone(),
            DeliveryFailure::Guest(f) => format!("{}: {}", f.reason.as_str(), f.message),
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
        let spec = journey
            .describe(&DEFAULT_LIMITS)
            .await
            .expect("a valid spec");
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
    }

    #[tokio::test]
    async fn compiled_code_is_cached_and_loaded_without_recompiling() {
        let Some(bytes) = built_example("waymark_example_onboarding.wasm") else {
            eprintln!("skipped: build examples/onboarding for wasm32-wasip2 to run this test");
            return;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let config = SandboxConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..SandboxConfig::default()
        };
        let first = Sandbox::new(config.clone()).expect("sandbox");
        first.compile_journey(&bytes).expect("compiles");
        assert_eq!(first.counters().compiled.get(), 1);

        // A new sandbox (a restart) loads the cached code.
        let second = Sandbox::new(config.clone()).expect("sandbox");
        let journey = second.compile_journey(&bytes).expect("loads");
        assert_eq!(
            (
                second.counters().compiled.get(),
                second.counters().cache_hits.get()
            ),
            (0, 1)
        );
        journey
            .describe(&DEFAULT_LIMITS)
            .await
            .expect("the cached code runs");

        // A damaged entry is recompiled, not trusted.
        let entry = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .expect("a cache entry");
        let mut code = std::fs::read(&entry).unwrap();
        let last = code.len() - 1;
        code[last] ^= 0xff;
        std::fs::write(&entry, code).unwrap();
        let third = Sandbox::new(config).expect("sandbox");
        third.compile_journey(&bytes).expect("recompiles");
        assert_eq!(
            (
                third.counters().compiled.get(),
                third.counters().cache_hits.get()
            ),
            (1, 0)
        );
    }

    #[tokio::test]
    async fn a_warm_instance_is_reused_and_decides_like_a_fresh_one() {
        let Some(bytes) = built_example("waymark_example_onboarding.wasm") else {
            eprintln!("skipped: build examples/onboarding for wasm32-wasip2 to run this test");
            return;
        };
        let warm = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let cold = Sandbox::new(SandboxConfig {
            warm_instances: 0,
            ..SandboxConfig::default()
        })
        .expect("sandbox");
        let (warm_journey, cold_journey) = (
            warm.compile_journey(&bytes).unwrap(),
            cold.compile_journey(&bytes).unwrap(),
        );
        let ctx = signed_up_context();
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(
                warm_journey
                    .decide(&ctx, Vec::new(), &DEFAULT_LIMITS)
                    .await
                    .unwrap(),
            );
            answers.push(
                cold_journey
                    .decide(&ctx, Vec::new(), &DEFAULT_LIMITS)
                    .await
                    .unwrap(),
            );
        }
        assert!(!answers[0].is_empty(), "onboarding answers a sign-up");
        assert!(answers.iter().all(|a| *a == answers[0]));
        assert_eq!(warm.counters().instantiated.get(), 1);
        assert_eq!(warm.counters().reused.get(), 2);
        assert_eq!(warm_journey.idle_instances(), 1);
        assert_eq!(cold.counters().instantiated.get(), 3);
        assert_eq!(cold_journey.idle_instances(), 0);
    }

    #[test]
    fn imports_outside_the_world_are_named_in_the_refusal() {
        assert_eq!(
            quoted(&["wasi:sockets/tcp@0.2.6", "wasi:filesystem/types@0.2.6"]),
            "`wasi:sockets/tcp@0.2.6`, `wasi:filesystem/types@0.2.6`"
        );
        let allowed = |name: &str, list: &[&str]| list.iter().any(|p| name.starts_with(p));
        assert!(allowed("wasi:random/random@0.2.6", JOURNEY_IMPORTS));
        assert!(allowed("waymark:journey/stats@0.1.0", JOURNEY_IMPORTS));
        assert!(!allowed("wasi:filesystem/preopens@0.2.6", JOURNEY_IMPORTS));
        assert!(!allowed("wasi:sockets/tcp@0.2.6", JOURNEY_IMPORTS));
        assert!(!allowed(
            "wasi:http/outgoing-handler@0.2.6",
            JOURNEY_IMPORTS
        ));
        assert!(allowed("wasi:http/outgoing-handler@0.2.6", CHANNEL_IMPORTS));
        assert!(!allowed("waymark:journey/stats@0.1.0", CHANNEL_IMPORTS));
    }

    fn signed_up_context() -> model::DecisionContext {
        let event = model::Event {
            id: "e1".into(),
            customer: "ada".into(),
            name: "signed_up".into(),
            properties: model::Object::new(),
            timestamp: 1_700_000_000_000,
        };
        model::DecisionContext {
            trigger: model::Trigger::Entered { event },
            customer: model::Customer {
                id: "ada".into(),
                attributes: model::Object::new(),
            },
            enrollment: crate::engine::enroll("onboarding", 1, "ada", 1, None, 1_700_000_000_000),
            now: 1_700_000_000_000,
            seed: 7,
        }
    }
}
