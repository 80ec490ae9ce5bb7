//! Journey versions: every upload of a journey is a new, immutable version.
//!
//! `journeys`: `tenant␟journey␟version (u32 BE)` → [`JourneyVersion`];
//! `journey_heads`: `tenant␟journey` → the latest version (u32 BE). The component bytes go to
//! [`components`] in the same transaction.

use super::keys::{key, prefix, u32_value};
use super::{components, dec, enc, Store, StoreError};
use crate::model::{Millis, Spec};
use serde::{Deserialize, Serialize};
use sled::Transactional;

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

fn version_key(tenant: &str, name: &str, version: u32) -> Vec<u8> {
    key(&[tenant.as_bytes(), name.as_bytes(), &version.to_be_bytes()])
}

impl Store {
    /// Stores a new journey version (and its component, by digest) and returns its number.
    pub async fn add_journey_version(
        &self,
        tenant: &str,
        name: &str,
        digest: &str,
        bytes: &[u8],
        spec: &Spec,
        now: Millis,
    ) -> Result<JourneyVersion, StoreError> {
        let head_key = key(&[tenant.as_bytes(), name.as_bytes()]);
        let version = (&self.components, &self.journeys, &self.journey_heads).transaction(
            |(components_t, journeys, heads)| {
                let version = heads.get(&head_key)?.map_or(0, |v| u32_value(&v)) + 1;
                let record = JourneyVersion {
                    name: name.to_string(),
                    version,
                    digest: digest.to_string(),
                    spec: spec.clone(),
                    uploaded_at: now,
                };
                components::put(components_t, digest, bytes)?;
                journeys.insert(version_key(tenant, name, version), enc(&record))?;
                heads.insert(head_key.as_slice(), &version.to_be_bytes())?;
                Ok(record)
            },
        )?;
        self.flush().await?;
        Ok(version)
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

    /// The latest version of every journey of a tenant, by name.
    pub fn latest_journeys(&self, tenant: &str) -> Result<Vec<JourneyVersion>, StoreError> {
        let mut latest = Vec::new();
        for kv in self.journey_heads.scan_prefix(prefix(&[tenant.as_bytes()])) {
            let (k, v) = kv?;
            let name = &k[tenant.len() + 1..];
            let jk = key(&[tenant.as_bytes(), name, &u32_value(&v).to_be_bytes()]);
            if let Some(record) = self.journeys.get(jk)? {
                latest.push(dec(&record)?);
            }
        }
        Ok(latest)
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
        }
    }

    async fn upload(store: &Store, tenant: &str, name: &str, digest: &str) -> u32 {
        store
            .add_journey_version(tenant, name, digest, digest.as_bytes(), &spec(digest), 10)
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

    #[tokio::test]
    async fn latest_journeys_lists_each_journey_once_at_its_newest_version() {
        let (_dir, store) = temp_store();
        upload(&store, "t", "welcome", "d1").await;
        upload(&store, "t", "welcome", "d2").await;
        upload(&store, "t", "winback", "d3").await;
        upload(&store, "t2", "other", "d4").await;
        let mut latest: Vec<(String, u32, String)> = store
            .latest_journeys("t")
            .unwrap()
            .into_iter()
            .map(|j| (j.name, j.version, j.digest))
            .collect();
        latest.sort();
        assert_eq!(
            latest,
            [
                ("welcome".into(), 2, "d2".into()),
                ("winback".into(), 1, "d3".into())
            ]
        );
        assert!(store.latest_journeys("nobody").unwrap().is_empty());
    }
}
