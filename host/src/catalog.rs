//! Journey versions as the shard workers need them, memoised: every event is routed through the
//! tenant's live journeys and every trigger reads its enrollment's version, so reading and
//! decoding them from the store per trigger would dominate a trigger that decides nothing.
//!
//! A stored version never changes, so versions are kept for the life of the process (they are
//! few: one per upload). The live list of a tenant changes only when a version is uploaded,
//! promoted or rolled back, and each calls [`Catalog::forget_live`] after its write is durable.

use crate::store::{JourneyVersion, LiveJourney, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

/// By tenant, journey and version number: looked up by reference at each level, so a lookup
/// (one per trigger) copies no names; hashed with foldhash (hashbrown's own, seeded per map):
/// the keys are a few names uploads made, not per-request input.
type Versions = Map<String, Map<String, Map<u32, Arc<JourneyVersion>>>>;
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The cache of journey versions and each tenant's live journeys.
#[derive(Default)]
pub struct Catalog {
    versions: RwLock<Versions>,
    live: RwLock<Map<String, Arc<[LiveJourney]>>>,
    /// Bumped by every [`Catalog::forget_live`]: a list read from the store while an upload
    /// forgot the cached one may be stale, and is then not cached.
    forgotten: std::sync::atomic::AtomicU64,
}

impl Catalog {
    /// One version of a journey; `None` if it was never stored.
    pub fn version(
        &self,
        store: &Store,
        tenant: &str,
        journey: &str,
        version: u32,
    ) -> Result<Option<Arc<JourneyVersion>>, StoreError> {
        let cached = read(&self.versions)
            .get(tenant)
            .and_then(|journeys| journeys.get(journey))
            .and_then(|versions| versions.get(&version))
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let loaded = store
            .journey_version(tenant, journey, version)?
            .map(Arc::new);
        // An absent version is not remembered: a version number above the journey's latest
        // may still be uploaded.
        if let Some(v) = &loaded {
            write(&self.versions)
                .entry(tenant.to_string())
                .or_default()
                .entry(journey.to_string())
                .or_default()
                .insert(version, v.clone());
        }
        Ok(loaded)
    }

    /// Every journey of `tenant` that new entrants can enter (see [`Store::live_journeys`]).
    pub fn live(&self, store: &Store, tenant: &str) -> Result<Arc<[LiveJourney]>, StoreError> {
        if let Some(live) = read(&self.live).get(tenant) {
            return Ok(live.clone());
        }
        let generation = self.forgotten.load(Ordering::SeqCst);
        let loaded: Arc<[LiveJourney]> = store.live_journeys(tenant)?.into();
        let mut live = write(&self.live);
        if self.forgotten.load(Ordering::SeqCst) == generation {
            live.insert(tenant.to_string(), loaded.clone());
        }
        Ok(loaded)
    }

    /// Forgets `tenant`'s live journeys after an upload, a promotion or a rollback.
    pub fn forget_live(&self, tenant: &str) {
        let mut live = write(&self.live);
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        live.remove(tenant);
    }

    /// Forgets every tenant's live journeys (a cluster partition's mirror of the global
    /// records started again).
    pub fn forget_all_live(&self) {
        let mut live = write(&self.live);
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        live.clear();
    }
}

/// The lock's data even after a panic elsewhere: a cache entry is always whole.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rollout::Stage;
    use crate::model::{Reentry, Spec};

    fn spec() -> Spec {
        Spec {
            description: String::new(),
            entry: vec![],
            exit_on: vec![],
            milestones: vec![],
            goal: None,
            reentry: Reentry::Never,
            channels: vec![],
            experiments: vec![],
            audience: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_live_list_changes_only_when_forgotten_after_an_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 2, 8 << 20).unwrap();
        let catalog = Catalog::default();
        store
            .add_journey_version("t", "j", "d1", b"x", &spec(), Stage::Live, 0)
            .await
            .unwrap();
        assert_eq!(catalog.live(&store, "t").unwrap()[0].live.version, 1);
        assert!(catalog.version(&store, "t", "j", 2).unwrap().is_none());
        store
            .add_journey_version("t", "j", "d2", b"y", &spec(), Stage::Live, 1)
            .await
            .unwrap();
        assert_eq!(
            catalog.live(&store, "t").unwrap()[0].live.version,
            1,
            "cached"
        );
        catalog.forget_live("t");
        assert_eq!(catalog.live(&store, "t").unwrap()[0].live.version, 2);
        // A version looked up before it existed was not remembered as absent.
        assert_eq!(
            catalog
                .version(&store, "t", "j", 2)
                .unwrap()
                .unwrap()
                .digest,
            "d2"
        );
    }
}
