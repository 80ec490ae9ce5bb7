//! Journey versions: every upload of a journey is a new, immutable version.
//!
//! `journeys`: `tenant␟journey␟version (u32 BE)` → [`JourneyVersion`];
//! `journey_heads`: `tenant␟journey` → the journey's [`Rollout`] (latest, live and candidate
//! versions); a value of four bytes is the latest version (u32 BE) as stored before versions
//! could be staged, read as [`Rollout::legacy`]. The component bytes go to [`components`] in the
//! same transaction as the version.

use super::keys::{key, prefix, u32_value};
use super::kv::Transactional;
use super::{components, dec, enc, Store, StoreError};
use crate::model::rollout::{Rollout, RolloutChange, RolloutError, Stage};
use crate::model::{Millis, Spec};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One version of a journey: its component (by digest) and the spec it declared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JourneyVersion {
    pub name: String,
    pub version: u32,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    pub spec: Spec,
    pub uploaded_at: Millis,
}

/// A journey that new entrants can enter: its live version, and a candidate with its share
/// during a rollout.
#[derive(Debug, Clone)]
pub struct LiveJourney {
    pub live: Arc<JourneyVersion>,
    pub candidate: Option<(Arc<JourneyVersion>, u8)>,
}

fn head(v: &[u8]) -> Result<Rollout, StoreError> {
    if v.len() == 4 {
        Ok(Rollout::legacy(u32_value(v)))
    } else {
        dec(v)
    }
}

/// A store error inside a transaction's closure, aborting it.
fn abort(e: StoreError) -> sled::transaction::ConflictableTransactionError<StoreError> {
    sled::transaction::ConflictableTransactionError::Abort(e)
}

fn version_key(tenant: &str, name: &str, version: u32) -> Vec<u8> {
    key(&[tenant.as_bytes(), name.as_bytes(), &version.to_be_bytes()])
}

impl Store {
    /// Stores a new journey version (and its component, by digest), staged live or as a
    /// draft, and returns it.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_journey_version(
        &self,
        tenant: &str,
        name: &str,
        digest: &str,
        bytes: &[u8],
        spec: &Spec,
        stage: Stage,
        now: Millis,
    ) -> Result<JourneyVersion, StoreError> {
        let head_key = key(&[tenant.as_bytes(), name.as_bytes()]);
        let version = (&self.components, &self.journeys, &self.journey_heads).transaction(
            |(components_t, journeys, heads)| {
                let current = match heads.get(&head_key)? {
                    Some(v) => Some(head(&v).map_err(abort)?),
                    None => None,
                };
                let rollout = Rollout::uploaded(current, stage);
                let version = rollout.latest;
                let record = JourneyVersion {
                    name: name.to_string(),
                    version,
                    digest: digest.to_string(),
                    spec: spec.clone(),
                    uploaded_at: now,
                };
                components::put(components_t, digest, bytes)?;
                journeys.put(version_key(tenant, name, version), enc(&record))?;
                heads.put(head_key.as_slice(), enc(&rollout))?;
                Ok(record)
            },
        )?;
        self.flush().await?;
        Ok(version)
    }

    /// A journey's version pointers; `None` if it has no version.
    pub fn journey_rollout(&self, tenant: &str, name: &str) -> Result<Option<Rollout>, StoreError> {
        self.journey_heads
            .get(key(&[tenant.as_bytes(), name.as_bytes()]))?
            .map(|v| head(&v))
            .transpose()
    }

    /// Changes a journey's version pointers (promote, roll back), durably; the outer error is
    /// the store's, the inner one the change's refusal. `Ok(None)`: no such journey.
    pub async fn change_rollout(
        &self,
        tenant: &str,
        name: &str,
        change: RolloutChange,
    ) -> Result<Option<Result<Rollout, RolloutError>>, StoreError> {
        let head_key = key(&[tenant.as_bytes(), name.as_bytes()]);
        let outcome = self.journey_heads.transaction(|heads| {
            let Some(current) = heads.get(&head_key)? else {
                return Ok(None);
            };
            let current = head(&current).map_err(abort)?;
            let changed = current.changed(change);
            if let Ok(next) = &changed {
                heads.put(head_key.as_slice(), enc(next))?;
            }
            Ok(Some(changed))
        })?;
        if matches!(outcome, Some(Ok(_))) {
            self.flush().await?;
        }
        Ok(outcome)
    }

    /// Every journey of a tenant with its pointers, by name.
    pub fn journey_rollouts(&self, tenant: &str) -> Result<Vec<(String, Rollout)>, StoreError> {
        self.journey_heads
            .scan_prefix(prefix(&[tenant.as_bytes()]))
            .map(|kv| {
                let (k, v) = kv?;
                let name = String::from_utf8_lossy(&k[tenant.len() + 1..]).into_owned();
                Ok((name, head(&v)?))
            })
            .collect()
    }

    /// Every journey of a tenant that new entrants can enter: its live version and the
    /// candidate of a rollout. Journeys with only drafts are not listed.
    pub fn live_journeys(&self, tenant: &str) -> Result<Vec<LiveJourney>, StoreError> {
        let mut live = Vec::new();
        for (name, rollout) in self.journey_rollouts(tenant)? {
            let Some(version) = rollout.live else {
                continue;
            };
            let Some(current) = self.journey_version(tenant, &name, version)? else {
                continue;
            };
            let candidate = match rollout.candidate {
                Some(c) => self
                    .journey_version(tenant, &name, c.version)?
                    .map(|v| (Arc::new(v), c.percent)),
                None => None,
            };
            live.push(LiveJourney {
                live: Arc::new(current),
                candidate,
            });
        }
        Ok(live)
    }

    /// One version of a journey.
    pub fn journey_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<JourneyVersion>, StoreError> {
        self.journeys
            .get(version_key(tenant, name, version))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// Every version of one journey, oldest first.
    pub fn journey_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<JourneyVersion>, StoreError> {
        self.journeys
            .scan_prefix(prefix(&[tenant.as_bytes(), name.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;
    use crate::model::Reentry;

    fn spec(description: &str) -> Spec {
        Spec {
            description: description.into(),
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

    async fn upload(store: &Store, tenant: &str, name: &str, digest: &str) -> u32 {
        staged(store, tenant, name, digest, Stage::Live).await
    }

    async fn staged(store: &Store, tenant: &str, name: &str, digest: &str, stage: Stage) -> u32 {
        store
            .add_journey_version(
                tenant,
                name,
                digest,
                digest.as_bytes(),
                &spec(digest),
                stage,
                10,
            )
            .await
            .unwrap()
            .version
    }

    #[tokio::test]
    async fn each_upload_is_the_next_version_and_keeps_its_component() {
        let (_dir, store) = temp_store();
        assert_eq!(upload(&store, "t", "welcome", "d1").await, 1);
        assert_eq!(upload(&store, "t", "welcome", "d2").await, 2);
        // Versions count per journey and per tenant.
        assert_eq!(upload(&store, "t", "winback", "d3").await, 1);
        assert_eq!(upload(&store, "u", "welcome", "d4").await, 1);
        let v1 = store.journey_version("t", "welcome", 1).unwrap().unwrap();
        assert_eq!(
            (v1.digest.as_str(), v1.spec.description.as_str()),
            ("d1", "d1")
        );
        assert_eq!(store.component("d2").unwrap().as_deref(), Some(&b"d2"[..]));
        assert!(store.journey_version("t", "welcome", 3).unwrap().is_none());
        let versions: Vec<u32> = store
            .journey_versions("t", "welcome")
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, [1, 2]);
    }

    /// A live journey as the test compares it: name, live version, candidate and share.
    type Pointers = (String, u32, Option<(u32, u8)>);

    #[tokio::test]
    async fn live_journeys_follow_the_pointers_not_the_newest_upload() {
        let (_dir, store) = temp_store();
        upload(&store, "t", "welcome", "d1").await;
        upload(&store, "t", "welcome", "d2").await;
        upload(&store, "t", "winback", "d3").await;
        staged(&store, "t", "winback", "d4", Stage::Draft).await;
        staged(&store, "t", "drafty", "d5", Stage::Draft).await;
        upload(&store, "t2", "other", "d6").await;
        let live = |store: &Store| {
            let mut live: Vec<Pointers> = store
                .live_journeys("t")
                .unwrap()
                .into_iter()
                .map(|j| {
                    (
                        j.live.name.clone(),
                        j.live.version,
                        j.candidate.map(|(v, p)| (v.version, p)),
                    )
                })
                .collect();
            live.sort();
            live
        };
        // A draft is entered by no one: `drafty` is not listed, `winback` stays on 1.
        assert_eq!(
            live(&store),
            [("welcome".into(), 2, None), ("winback".into(), 1, None)]
        );
        let promote = RolloutChange::Promote {
            version: 2,
            percent: Some(30),
        };
        let changed = store.change_rollout("t", "winback", promote).await.unwrap();
        assert!(matches!(changed, Some(Ok(_))));
        assert_eq!(live(&store)[1], ("winback".into(), 1, Some((2, 30))));
        // A refused change changes nothing; an unknown journey is `None`.
        let bad = RolloutChange::Promote {
            version: 9,
            percent: None,
        };
        assert_eq!(
            store.change_rollout("t", "winback", bad).await.unwrap(),
            Some(Err(RolloutError::NoSuchVersion(9)))
        );
        assert_eq!(store.change_rollout("t", "nope", bad).await.unwrap(), None);
        assert_eq!(live(&store)[1], ("winback".into(), 1, Some((2, 30))));
        assert!(store.live_journeys("nobody").unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_head_stored_before_staging_reads_as_its_latest_version_live() {
        let (_dir, store) = temp_store();
        upload(&store, "t", "welcome", "d1").await;
        upload(&store, "t", "welcome", "d2").await;
        // The old format: the latest version as four bytes.
        store
            .journey_heads
            .insert(key(&[b"t", b"welcome"]), &2u32.to_be_bytes())
            .unwrap();
        assert_eq!(
            store.journey_rollout("t", "welcome").unwrap(),
            Some(Rollout::legacy(2))
        );
        assert_eq!(store.live_journeys("t").unwrap()[0].live.version, 2);
        // The next upload continues from it.
        assert_eq!(upload(&store, "t", "welcome", "d3").await, 3);
        let rollout = store.journey_rollout("t", "welcome").unwrap().unwrap();
        assert_eq!((rollout.live, rollout.previous), (Some(3), vec![2]));
    }
}
