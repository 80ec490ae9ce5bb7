//! What the host grants guests, one capability per module, each with the same shape.
//!
//! Like Spin's factors, every capability module declares:
//!
//! - `INTERFACES`: the WIT interfaces it grants, as prefixes of a component's import names
//!   (`wasi:clocks/` grants every clocks interface of any version, `waymark:journey/log@` the
//!   `log` interface of any version);
//! - its per-instance state (`WasiState`, `LogState`, `StatsState`, `OutboundHttp`), which a
//!   world's store data holds;
//! - `add_to_linker`, and `capability()`, which pairs the two as a [`Capability`].
//!
//! A world ([`World`]) is its vocabulary interfaces plus a list of capabilities. Its linker and
//! its import allow-list are both derived from that one list, so they cannot disagree: a
//! capability added to a world is both linked and allowed, one removed is neither. (WASI links
//! more than it grants, since wasmtime links WASI p2 as one set; see [`wasi::add_to_linker`].)
//!
//! Policy stays inside the capability it governs, at one choke point: which hosts an adapter may
//! reach is decided only in `http`'s `send_request`, never by a world or a caller.
//!
//! | capability | grants | to |
//! | --- | --- | --- |
//! | [`wasi`] | the WASI Rust's std needs; deterministic for journeys | both worlds |
//! | [`log`] | `log`, into `tracing`, capped per call | both worlds |
//! | [`stats`] | the read-only `stats` snapshot | journeys |
//! | [`http`] | outbound `wasi:http`, behind the one `send_request` policy check, over kept-alive connections | channels |
//! | [`hints`] | `delivery-hints`: the provider's `Retry-After`, passed on by the adapter (0.1.1) | channels |

pub(super) mod hints;
pub(super) mod http;
pub(super) mod log;
pub(super) mod stats;
pub(super) mod wasi;

use super::error::SandboxError;
use wasmtime::component::Linker;
use wasmtime::Engine;

/// One capability as a world uses it: what it grants, and how it links that into a linker
/// whose store data is `T`.
pub(super) struct Capability<T: 'static> {
    /// The WIT interfaces granted, as import-name prefixes.
    pub(super) interfaces: &'static [&'static str],
    /// Adds the capability's host functions to a linker.
    pub(super) add_to_linker: fn(&mut Linker<T>) -> wasmtime::Result<()>,
}

/// A world as the host serves it: the interfaces that only carry its vocabulary (types, no
/// functions, so nothing to link), and the capabilities it grants.
pub(super) struct World<T: 'static> {
    /// `journey` or `channel`, as refusals name it.
    pub(super) name: &'static str,
    /// Type-only interfaces the world may import.
    pub(super) vocabulary: &'static [&'static str],
    pub(super) capabilities: &'static [Capability<T>],
}

impl<T: 'static> World<T> {
    /// The world's linker: every capability, linked.
    pub(super) fn linker(&self, engine: &Engine) -> wasmtime::Result<Linker<T>> {
        let mut linker = Linker::new(engine);
        for capability in self.capabilities {
            (capability.add_to_linker)(&mut linker)?;
        }
        Ok(linker)
    }

    /// What a component of this world may import: its vocabulary and what its capabilities
    /// grant, as import-name prefixes.
    pub(super) fn allowed_imports(&self) -> Vec<&'static str> {
        let granted = self.capabilities.iter().flat_map(|c| c.interfaces);
        self.vocabulary.iter().chain(granted).copied().collect()
    }

    /// Refuses a component that imports anything outside [`allowed_imports`](Self::allowed_imports),
    /// naming what it imports and what it may.
    pub(super) fn check_imports<I, S>(&self, imports: I) -> Result<(), SandboxError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let allowed = self.allowed_imports();
        let forbidden: Vec<S> = imports
            .into_iter()
            .filter(|name| !allowed.iter().any(|p| name.as_ref().starts_with(p)))
            .collect();
        if forbidden.is_empty() {
            return Ok(());
        }
        Err(SandboxError::ForbiddenImport(format!(
            "a {} component may not import {}; it may import only {}",
            self.name,
            quoted(&forbidden),
            quoted(&allowed)
        )))
    }
}

fn quoted<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}
