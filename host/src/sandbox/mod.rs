//! The sandbox: where tenant components run, and the only module that knows wasmtime.
//!
//! A [`Sandbox`] owns one wasmtime engine (pooling allocator, epoch interruption), one linker
//! per world, and a thread that ticks the engine's epoch. Uploads are validated and compiled
//! into a [`JourneyComponent`] or a [`ChannelComponent`]. Calls reuse a warm instance when one
//! is idle: each journey, per tenant, has its own small pool ([`SandboxConfig::warm_instances`]),
//! and each channel registration (tenant and channel) its own
//! ([`SandboxConfig::warm_channel_instances`]). Every call, fresh or warm, gets fresh clocks
//! (journeys), randomness (journeys), memory cap, deadline and hostcall fuel, and a channel call
//! its registration's outbound policy; the context (or the message, with its configuration)
//! carries all a call needs, and an instance that failed is dropped, never reused. Channels'
//! outbound HTTP goes over one host-wide pool of kept-alive connections, per destination.
//! Nothing outside this module sees a wasmtime or WIT type.
//!
//! | module | what it is for |
//! | --- | --- |
//! | `config` | [`SandboxConfig`], [`DEFAULT_LIMITS`], and which tenant limits can be enforced |
//! | `engine` | the engine's configuration, the epoch ticker, what every component shares |
//! | `cache` | the compiled-code cache, so a restart does not recompile |
//! | `bindings` | the one host-side generation of the WIT package's shared interfaces |
//! | `convert` | model ↔ WIT at the boundary, with the checks on what a guest returns |
//! | `capability` | one module per grant (`wasi`, `log`, `stats`, `http`): interfaces, state, linking |
//! | `guest` | one call's store: memory cap, deadline, fuel; settling its outcome |
//! | `failure` | [`GuestFailure`], [`FailureReason`], [`DeliveryFailure`]: why a call failed |
//! | `error` | [`SandboxError`]: why an upload was refused |
//! | `journey`, `channel` | the two worlds: lists of capabilities, and the compiled components |
//!
//! Dependencies run one way, from the worlds down to `bindings`, `failure` and `error`; no
//! module names this file's items, so there is no circle to untangle when one moves.

mod bindings;
mod cache;
mod capability;
mod channel;
mod config;
mod convert;
mod engine;
mod error;
mod failure;
mod guest;
mod journey;

/// The WIT to model conversions of what guests return, for the fuzz targets (`fuzz/`) only.
#[doc(hidden)]
pub mod conversions {
    pub use super::bindings::types as wit;
    pub use super::convert::{decision_from_wit, spec_from_wit};
}

pub use capability::http::{check_allowed_hosts, MaySend};
pub use channel::ChannelComponent;
pub use config::{LimitsError, SandboxConfig, DEFAULT_LIMITS};
pub use engine::SandboxCounters;
pub use error::SandboxError;
pub use failure::{DeliveryFailure, FailureReason, GuestFailure};
pub use journey::JourneyComponent;

use engine::Shared;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};

/// A compiled-component factory: the engine, the linkers and the epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
    journey_linker: Arc<Linker<journey::JourneyState>>,
    channel_linker: Arc<Linker<channel::ChannelState>>,
}

impl Sandbox {
    /// Builds the engine and linkers and starts the epoch ticker.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.validate()?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                SandboxError::Internal(format!(
                    "cannot create the compile cache {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let shared = Shared::start(config)?;
        let journey_linker = journey::WORLD
            .linker(&shared.engine)
            .map_err(|e| SandboxError::Internal(format!("cannot link the journey world: {e:#}")))?;
        let channel_linker = channel::WORLD
            .linker(&shared.engine)
            .map_err(|e| SandboxError::Internal(format!("cannot link the channel world: {e:#}")))?;
        Ok(Sandbox {
            shared: Arc::new(shared),
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

    /// Validates that `bytes` is a component of world `journey` (it imports nothing its
    /// capabilities do not grant, instantiates with our linker and exports `describe` and
    /// `decide`) and compiles it, or loads what this host compiled before from the cache.
    ///
    /// Compiling is CPU-bound and can take a second or more for a large component: call this
    /// from `spawn_blocking`, not on an async worker.
    pub fn compile_journey(&self, bytes: &[u8]) -> Result<JourneyComponent, SandboxError> {
        let component = self.compile(bytes)?;
        let imports = self.imports(&component);
        journey::WORLD.check_imports(&imports)?;
        let reads_stats = imports.iter().any(|name| {
            capability::stats::INTERFACES
                .iter()
                .any(|i| name.starts_with(i))
        });
        let pre = self
            .journey_linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::WrongWorld(format!("not a journey component: {e:#}")))?;
        JourneyComponent::new(pre, reads_stats, self.shared.clone())
    }

    /// Validates that `bytes` is a component of world `channel` (it imports nothing its
    /// capabilities do not grant, instantiates with our linker and exports `deliver`) and
    /// compiles it. Same caveat as [`compile_journey`](Self::compile_journey): CPU-bound.
    pub fn compile_channel(&self, bytes: &[u8]) -> Result<ChannelComponent, SandboxError> {
        let component = self.compile(bytes)?;
        channel::WORLD.check_imports(self.imports(&component))?;
        let pre = self
            .channel_linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::WrongWorld(format!("not a channel component: {e:#}")))?;
        ChannelComponent::new(pre, self.shared.clone())
    }

    /// The names of the interfaces `component` imports.
    fn imports(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .imports(&self.shared.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    fn compile(&self, bytes: &[u8]) -> Result<Component, SandboxError> {
        check_preamble(bytes)?;
        let Some(dir) = &self.shared.config.cache_dir else {
            return self.compile_fresh(bytes);
        };
        let path = cache::entry_path(dir, bytes, self.shared.engine_hash);
        if let Some(component) = cache::load(&self.shared.engine, &path) {
            self.shared.counters.cache_hits.inc();
            return Ok(component);
        }
        // Not cached yet: written by `keep_compiled` once the component is stored, so that a
        // component refused after compiling (wrong world, bad spec) leaves nothing on disk.
        self.compile_fresh(bytes)
    }

    /// Writes `component`'s compiled code to the cache (if there is one and it is not there
    /// yet), for the stored component with SHA-256 `digest` (hex): call it once the version or
    /// channel that names it is stored.
    pub fn keep_compiled(&self, digest: &str, component: &Component) {
        let Some(dir) = &self.shared.config.cache_dir else {
            return;
        };
        let path = cache::digest_entry_path(dir, digest, self.shared.engine_hash);
        if !path.exists() {
            cache::store(&path, component);
        }
    }

    /// Removes from the compiled-code cache every entry of a component not in `stored`
    /// (SHA-256 hex digests of the components some stored version names) or compiled by another
    /// engine configuration; with `temporaries`, also what interrupted writes left (call it so
    /// only while nothing compiles, at start). Returns how many files were removed.
    pub fn evict_compiled(
        &self,
        stored: &std::collections::HashSet<String>,
        temporaries: bool,
    ) -> std::io::Result<usize> {
        match &self.shared.config.cache_dir {
            Some(dir) => cache::evict(dir, stored, self.shared.engine_hash, temporaries),
            None => Ok(0),
        }
    }

    fn compile_fresh(&self, bytes: &[u8]) -> Result<Component, SandboxError> {
        self.shared.counters.compiled.inc();
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model;
    use sha2::Digest as _;
    use std::collections::HashSet;

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

    /// A guest built for wasm32-wasip2 with the workspace's `guest` profile, from
    /// `CARGO_TARGET_DIR` (as the end-to-end harness finds it) or the workspace's `target/`. A
    /// missing guest fails the test, saying how to build it: a test that passes without running
    /// would only hide a WIT drift.
    pub(crate) fn built_guest(name: &str) -> Vec<u8> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target"),
        };
        let dir = target.join("wasm32-wasip2").join("guest");
        std::fs::read(dir.join(name)).unwrap_or_else(|_| {
            panic!(
                "{name} is not built under {}: run `cargo xtask test` (it builds every \
                 guest), or `cargo build --profile guest --target wasm32-wasip2 -p \
                 waymark-example-onboarding`",
                dir.display()
            )
        })
    }

    const ONBOARDING: &str = "waymark_example_onboarding.wasm";

    #[tokio::test]
    async fn the_onboarding_example_compiles_and_describes_itself() {
        let bytes = built_guest(ONBOARDING);
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

    // Issue 10: the worker computes a `stats` snapshot only for journeys that can read one.
    #[test]
    fn a_journey_reads_stats_only_if_it_imports_them() {
        let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let onboarding = sandbox
            .compile_journey(&built_guest(ONBOARDING))
            .expect("a journey component");
        assert!(!onboarding.reads_stats(), "onboarding never calls `stats`");
        // The adaptive test journey reads its arms (`stats.by-arm`) to allocate entrants.
        let adaptive = sandbox
            .compile_journey(&built_guest("waymark_test_adaptive.wasm"))
            .expect("a journey component");
        assert!(adaptive.reads_stats());
        assert!(adaptive.with_own_instances().reads_stats());
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
        let bytes = built_guest(ONBOARDING);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = SandboxConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..SandboxConfig::default()
        };
        let first = Sandbox::new(config.clone()).expect("sandbox");
        let compiled = first.compile_journey(&bytes).expect("compiles");
        assert_eq!(first.counters().compiled.get(), 1);
        // Nothing is written until the component is kept (stored by the caller).
        assert_eq!(cache_files(dir.path()), Vec::<String>::new());
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        first.keep_compiled(&digest, compiled.component());

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
        let bytes = built_guest(ONBOARDING);
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
    fn a_journey_may_import_its_capabilities_and_nothing_else() {
        let granted = [
            "waymark:journey/types@0.1.0",
            "waymark:journey/log@0.1.0",
            "waymark:journey/stats@0.1.0",
            "wasi:io/streams@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:cli/stderr@0.2.6",
        ];
        assert_eq!(journey::WORLD.check_imports(granted), Ok(()));
        for forbidden in [
            "wasi:filesystem/preopens@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "waymark:journey/channel-types@0.1.0",
            "waymark:journey/delivery-hints@0.1.1",
            "waymark:journey/outbound@0.1.3",
        ] {
            assert!(
                matches!(
                    journey::WORLD.check_imports([forbidden]),
                    Err(SandboxError::ForbiddenImport(m)) if m.contains(forbidden)
                ),
                "{forbidden}"
            );
        }
    }

    #[test]
    fn a_channel_may_import_outgoing_http_but_not_stats() {
        let granted = [
            "waymark:journey/types@0.1.0",
            "waymark:journey/channel-types@0.1.0",
            "waymark:journey/log@0.1.0",
            "waymark:journey/delivery-hints@0.1.1",
            "wasi:http/types@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "waymark:journey/outbound@0.1.3",
            "wasi:clocks/monotonic-clock@0.2.6",
        ];
        assert_eq!(channel::WORLD.check_imports(granted), Ok(()));
        assert!(channel::WORLD
            .check_imports(["waymark:journey/stats@0.1.0"])
            .is_err());
        assert!(channel::WORLD
            .check_imports(["wasi:http/incoming-handler@0.2.6"])
            .is_err());
    }

    #[test]
    fn imports_outside_the_world_are_named_in_the_refusal() {
        let refusal = journey::WORLD
            .check_imports([
                "wasi:random/random@0.2.6",
                "wasi:sockets/tcp@0.2.6",
                "wasi:filesystem/types@0.2.6",
            ])
            .unwrap_err();
        let SandboxError::ForbiddenImport(message) = refusal else {
            panic!("{refusal:?}")
        };
        assert!(
            message.starts_with(
                "a journey component may not import `wasi:sockets/tcp@0.2.6`, \
                 `wasi:filesystem/types@0.2.6`; it may import only `waymark:journey/types@`"
            ),
            "{message}"
        );
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

    /// The file names in a cache directory, sorted.
    fn cache_files(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn the_cache_keeps_only_stored_components_of_this_engine() {
        let bytes = built_guest(ONBOARDING);
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        let dir = tempfile::tempdir().expect("temp dir");
        let sandbox = Sandbox::new(SandboxConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..SandboxConfig::default()
        })
        .expect("sandbox");
        let compiled = sandbox.compile_journey(&bytes).expect("compiles");
        sandbox.keep_compiled(&digest, compiled.component());
        let kept = cache_files(dir.path());
        assert_eq!(kept.len(), 2, "code and sidecar: {kept:?}");

        // Another engine's entry, an unknown component's, a torn write, and a stranger.
        let other_engine = format!("{digest}-0123456789abcdef.cwasm");
        let unknown = format!(
            "{}-{:016x}.cwasm",
            "ab".repeat(32),
            sandbox.shared.engine_hash
        );
        let torn = format!("{digest}-{:016x}.tmp4242", sandbox.shared.engine_hash);
        for name in [&other_engine, &unknown, &torn, &"README".to_string()] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let stored: HashSet<String> = [digest.clone()].into();

        // While uploads may be writing, temporaries stay.
        assert_eq!(sandbox.evict_compiled(&stored, false).unwrap(), 2);
        let mut expected = kept.clone();
        expected.extend([torn.clone(), "README".to_string()]);
        expected.sort();
        assert_eq!(cache_files(dir.path()), expected);

        // At start they go too; a component no stored version names goes with everything else.
        assert_eq!(sandbox.evict_compiled(&stored, true).unwrap(), 1);
        assert_eq!(sandbox.evict_compiled(&HashSet::new(), true).unwrap(), 2);
        assert_eq!(cache_files(dir.path()), vec!["README".to_string()]);
    }
}
