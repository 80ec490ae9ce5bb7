//! Compiled components, by content digest: a journey version or channel is compiled once per
//! process (at upload, or on first use after a restart) and shared by every call after that.

use crate::sandbox::{ChannelComponent, JourneyComponent, Sandbox, SandboxError};
use crate::store::{Store, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("component {0} is missing from the store")]
    Missing(String),
    #[error("compilation was cancelled: {0}")]
    Cancelled(String),
    #[error("compiled-code cache: {0}")]
    Cache(String),
}

#[derive(Clone)]
pub struct Registry {
    sandbox: Sandbox,
    store: Store,
    journeys: Arc<Mutex<HashMap<String, JourneyComponent>>>,
    /// Tenant → digest → the journey with that tenant's own warm instances: looked up by
    /// reference at each level, since every decision looks one up.
    tenant_journeys: Arc<Mutex<HashMap<String, HashMap<String, JourneyComponent>>>>,
    channels: Arc<Mutex<HashMap<String, ChannelComponent>>>,
    /// `tenant␟channel␟digest` → the adapter with that registration's own warm instances.
    registered_channels: Arc<Mutex<HashMap<String, ChannelComponent>>>,
}

impl Registry {
    pub fn new(sandbox: Sandbox, store: Store) -> Registry {
        Registry {
            sandbox,
            store,
            journeys: Default::default(),
            tenant_journeys: Default::default(),
            channels: Default::default(),
            registered_channels: Default::default(),
        }
    }

    /// A registry over `store` sharing this one's sandbox and the components compiled in it
    /// (known by digest, so the same whichever store names them), with warm instances of its
    /// own: the engines of one backtest, each over a scratch store, load a component once.
    pub fn sharing_compiled(&self, store: Store) -> Registry {
        Registry {
            sandbox: self.sandbox.clone(),
            store,
            journeys: self.journeys.clone(),
            tenant_journeys: Default::default(),
            channels: self.channels.clone(),
            registered_channels: Default::default(),
        }
    }

    /// The sandbox components run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Validates and compiles a journey component off the async workers (compiling is
    /// CPU-bound and can take a second for a large component).
    pub async fn compile_journey(&self, bytes: Bytes) -> Result<JourneyComponent, RegistryError> {
        let sandbox = self.sandbox.clone();
        let compiled = tokio::task::spawn_blocking(move || sandbox.compile_journey(&bytes))
            .await
            .map_err(|e| RegistryError::Cancelled(e.to_string()))??;
        Ok(compiled)
    }

    pub async fn compile_channel(&self, bytes: Bytes) -> Result<ChannelComponent, RegistryError> {
        let sandbox = self.sandbox.clone();
        let compiled = tokio::task::spawn_blocking(move || sandbox.compile_channel(&bytes))
            .await
            .map_err(|e| RegistryError::Cancelled(e.to_string()))??;
        Ok(compiled)
    }

    /// Remembers a journey component compiled at upload, once its version is stored, and
    /// keeps its compiled code for the next start.
    pub fn insert_journey(&self, digest: &str, component: JourneyComponent) {
        self.sandbox.keep_compiled(digest, component.component());
        lock(&self.journeys).insert(digest.to_string(), component);
    }

    /// Remembers a journey component without keeping its compiled code on disk: a backtest's
    /// candidate sent as bytes (issue 13), known to the isolated engine's registry only and
    /// never stored live, so the live host's cache must not hold it.
    pub fn insert_journey_unkept(&self, digest: &str, component: JourneyComponent) {
        lock(&self.journeys).insert(digest.to_string(), component);
    }

    /// Remembers a channel component compiled at registration, once it is stored; the
    /// component it replaced may be named by no stored version any more, so the compiled-code
    /// cache is trimmed too.
    pub fn insert_channel(&self, digest: &str, component: ChannelComponent) {
        self.sandbox.keep_compiled(digest, component.component());
        lock(&self.channels).insert(digest.to_string(), component);
        if let Err(error) = self.evict_compiled(false) {
            tracing::warn!(%error, "cannot trim the compiled-code cache");
        }
    }

    /// Bounds the compiled-code cache by what is stored: removes the entries of components
    /// that no journey version or channel registration names, and of other engine
    /// configurations; with `temporaries` (at start, before anything compiles), also what
    /// interrupted writes left. Returns how many files went.
    pub fn evict_compiled(&self, temporaries: bool) -> Result<usize, RegistryError> {
        let stored = self.store.stored_component_digests()?;
        self.sandbox
            .evict_compiled(&stored, temporaries)
            .map_err(|e| RegistryError::Cache(e.to_string()))
    }

    /// The compiled journey with this digest as `tenant` runs it, compiling the stored bytes
    /// on first use.
    ///
    /// Compiled code is shared by digest, but warm instances never are: each tenant gets its
    /// own pool, so nothing a guest leaves in its globals can reach another tenant, even when
    /// two tenants upload the very same bytes.
    pub async fn journey(
        &self,
        tenant: &str,
        digest: &str,
    ) -> Result<JourneyComponent, RegistryError> {
        let own = lock(&self.tenant_journeys)
            .get(tenant)
            .and_then(|journeys| journeys.get(digest))
            .cloned();
        if let Some(c) = own {
            return Ok(c);
        }
        let shared = lock(&self.journeys).get(digest).cloned();
        let compiled = match shared {
            Some(c) => c,
            None => {
                let component = self.compile_journey(self.stored(digest)?).await?;
                self.insert_journey(digest, component.clone());
                component
            }
        };
        let own = lock(&self.tenant_journeys)
            .entry(tenant.to_string())
            .or_default()
            .entry(digest.to_string())
            .or_insert_with(|| compiled.with_own_instances())
            .clone();
        Ok(own)
    }

    /// The compiled adapter with this digest as `tenant`'s channel `channel` runs it,
    /// compiling the stored bytes on first use.
    ///
    /// As for journeys, compiled code is shared by digest and warm instances never are: each
    /// registration (tenant and channel name) gets its own pool, so what an adapter leaves in
    /// its globals — a previous message, the configuration and secrets it was called with —
    /// never reaches another tenant or another of the tenant's registrations.
    pub async fn channel(
        &self,
        tenant: &str,
        channel: &str,
        digest: &str,
    ) -> Result<ChannelComponent, RegistryError> {
        let registration_key = format!("{tenant}\u{1f}{channel}\u{1f}{digest}");
        if let Some(c) = lock(&self.registered_channels).get(&registration_key) {
            return Ok(c.clone());
        }
        let shared = lock(&self.channels).get(digest).cloned();
        let compiled = match shared {
            Some(c) => c,
            None => {
                let component = self.compile_channel(self.stored(digest)?).await?;
                self.insert_channel(digest, component.clone());
                component
            }
        };
        let own = lock(&self.registered_channels)
            .entry(registration_key)
            .or_insert_with(|| compiled.with_own_instances())
            .clone();
        Ok(own)
    }

    fn stored(&self, digest: &str) -> Result<Bytes, RegistryError> {
        let bytes = self
            .store
            .component(digest)?
            .ok_or_else(|| RegistryError::Missing(digest.to_string()))?;
        Ok(Bytes::from(bytes))
    }
}

/// A poisoned map of compiled components is still a valid map: recover it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
