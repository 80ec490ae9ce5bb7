//! Compiled components, by content digest: a journey version or channel is compiled once per
//! process (at upload, or on first use after a restart) and shared by every call after that.

use crate::sandbox::{ChannelComponent, JourneyComponent, Sandbox, SandboxError};
use crate::store::{Store, StoreError};
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
}

#[derive(Clone)]
pub struct Registry {
    sandbox: Sandbox,
    store: Store,
    journeys: Arc<Mutex<HashMap<String, JourneyComponent>>>,
    channels: Arc<Mutex<HashMap<String, ChannelComponent>>>,
}

impl Registry {
    pub fn new(sandbox: Sandbox, store: Store) -> Registry {
        Registry {
            sandbox,
            store,
            journeys: Default::default(),
            channels: Default::default(),
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Remembers a journey component compiled at upload.
    pub fn insert_journey(&self, digest: &str, component: JourneyComponent) {
        lock(&self.journeys).insert(digest.to_string(), component);
    }

    pub fn insert_channel(&self, digest: &str, component: ChannelComponent) {
        lock(&self.channels).insert(digest.to_string(), component);
    }

    /// The compiled journey with this digest, compiling the stored bytes on first use.
    pub fn journey(&self, digest: &str) -> Result<JourneyComponent, RegistryError> {
        if let Some(c) = lock(&self.journeys).get(digest) {
            return Ok(c.clone());
        }
        let bytes = self
            .store
            .component(digest)?
            .ok_or_else(|| RegistryError::Missing(digest.to_string()))?;
        let component = self.sandbox.compile_journey(&bytes)?;
        self.insert_journey(digest, component.clone());
        Ok(component)
    }

    pub fn channel(&self, digest: &str) -> Result<ChannelComponent, RegistryError> {
        if let Some(c) = lock(&self.channels).get(digest) {
            return Ok(c.clone());
        }
        let bytes = self
            .store
            .component(digest)?
            .ok_or_else(|| RegistryError::Missing(digest.to_string()))?;
        let component = self.sandbox.compile_channel(&bytes)?;
        self.insert_channel(digest, component.clone());
        Ok(component)
    }
}

/// A poisoned map of compiled components is still a valid map: recover it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
