//! Compiled template versions, by tenant, name and version, bounded: a version is compiled the
//! first time a message or a preview needs it and then shared, so a message costs a render,
//! never a parse. A version's content never changes (each upload is a new version), so an
//! entry is never stale; when the cache is full the least recently used entry goes.

use super::compile::{compile, Compiled};
use super::parts::{TemplateError, TemplateSource};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Compiled versions kept by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// `(tenant, template, version)`.
type Key = (String, String, u32);

/// The cache of compiled template versions.
#[derive(Debug)]
pub struct TemplateCache {
    capacity: usize,
    entries: Mutex<HashMap<Key, (Arc<Compiled>, u64)>>,
    /// A logical clock for recency: each hit or insert takes the next tick.
    tick: AtomicU64,
    compiles: AtomicU64,
}

impl Default for TemplateCache {
    fn default() -> Self {
        TemplateCache::new(DEFAULT_CAPACITY)
    }
}

impl TemplateCache {
    /// A cache holding at most `capacity` compiled versions (at least one).
    pub fn new(capacity: usize) -> TemplateCache {
        TemplateCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            tick: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Key, (Arc<Compiled>, u64)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The compiled version, compiling `source()` on a miss (outside the lock). `source` may
    /// fail with its own error `E` (a store read); a version that does not compile is a
    /// [`TemplateError`] wrapped by `E::from`.
    pub fn get_or_compile<E>(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
        source: impl FnOnce() -> Result<TemplateSource, E>,
    ) -> Result<Arc<Compiled>, E>
    where
        E: From<TemplateError>,
    {
        let key = (tenant.to_string(), name.to_string(), version);
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        if let Some((compiled, used)) = self.entries().get_mut(&key) {
            *used = tick;
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(compile(&source()?)?);
        self.compiles.fetch_add(1, Ordering::Relaxed);
        self.insert(key, compiled.clone(), tick);
        Ok(compiled)
    }

    /// Keeps a version just compiled (by an upload, which compiles to check it anyway).
    pub fn put(&self, tenant: &str, name: &str, version: u32, compiled: Arc<Compiled>) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        self.insert(
            (tenant.to_string(), name.to_string(), version),
            compiled,
            tick,
        );
    }

    fn insert(&self, key: Key, compiled: Arc<Compiled>, tick: u64) {
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            // O(n) only when full and missing: rare next to hits, and n is bounded.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (compiled, tick));
    }

    /// How many versions this cache has compiled since it was made.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// How many compiled versions it holds.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
