//! Channel registrations: `channels`: `tenant␟channel` → [`ChannelRecord`]. Registering a
//! channel again replaces it with the next version; its component bytes go to
//! [`components`] in the same transaction.

use super::keys::{key, prefix};
use super::kv::Transactional;
use super::{abort, components, dec, enc, Store, StoreError};
use crate::model::{Millis, Object};
use crate::pacing::SendRate;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A registered channel adapter: its component, configuration and allowed hosts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub name: String,
    pub version: u32,
    pub digest: String,
    pub settings: Object,
    pub secrets: Object,
    pub allowed_hosts: Vec<String>,
    pub updated_at: Millis,
    /// The send rate the registration declares (issue 11); records stored before it have none.
    #[serde(default)]
    pub rate: Option<SendRate>,
    /// What delivers its messages (issue 11); records stored before are components.
    #[serde(default)]
    pub adapter: ChannelAdapter,
}

// In-app inbox (issue 11)
/// What delivers a channel's messages: its component's `deliver`, or the host's own in-app
/// inbox (no component: `digest` is empty and no bytes are stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelAdapter {
    #[default]
    Component,
    Inapp,
}

/// Registrations decoded once (issue 10): every delivery reads its channel's registration, and
/// decoding its settings and secrets was about 1 % of the server's CPU per enrollment. A read
/// still looks the key up in the tree and uses the decoded record only if the stored bytes are
/// the ones it was decoded from, so a registration replaced by any path (the API, a cluster
/// partition's mirror, a scratch store's copy) is read anew at once.
#[derive(Default)]
pub(super) struct ChannelMemo(Mutex<HashMap<Vec<u8>, Decoded>>);

/// A registration's stored bytes and what they decode to.
type Decoded = (super::kv::IVec, Arc<ChannelRecord>);

/// Registrations a memo holds before it starts over (a host has a few per tenant).
const MEMO_ENTRIES: usize = 4096;

impl ChannelMemo {
    fn decoded(
        &self,
        key: Vec<u8>,
        bytes: super::kv::IVec,
    ) -> Result<Arc<ChannelRecord>, StoreError> {
        let mut memo = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, record)) = memo.get(&key) {
            if *seen == bytes {
                return Ok(record.clone());
            }
        }
        let record = Arc::new(dec::<ChannelRecord>(&bytes)?);
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.insert(key, (bytes, record.clone()));
        Ok(record)
    }
}

fn channel_key(tenant: &str, name: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), name.as_bytes()])
}

impl Store {
    /// Registers (or replaces) a channel; returns the stored record with its version.
    pub async fn put_channel(
        &self,
        tenant: &str,
        record: ChannelRecord,
        bytes: &[u8],
    ) -> Result<ChannelRecord, StoreError> {
        let k = channel_key(tenant, &record.name);
        let record =
            (&self.components, &self.channels).transaction(|(components_t, channels)| {
                let previous: Option<ChannelRecord> = channels
                    .get(&k)?
                    .map(|v| dec(&v))
                    .transpose()
                    .map_err(abort)?;
                let mut record = record.clone();
                record.version = previous.map_or(1, |p| p.version + 1);
                if record.adapter == ChannelAdapter::Component {
                    components::put(components_t, &record.digest, bytes)?;
                }
                channels.put(k.as_slice(), enc(&record))?;
                Ok(record)
            })?;
        self.flush().await?;
        Ok(record)
    }

    /// One channel of a tenant, by name.
    pub fn channel(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<Arc<ChannelRecord>>, StoreError> {
        let key = channel_key(tenant, name);
        match self.channels.get(&key)? {
            Some(bytes) => self.channel_memo.decoded(key, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every channel of a tenant, by name.
    pub fn channels(&self, tenant: &str) -> Result<Vec<ChannelRecord>, StoreError> {
        self.channels
            .scan_prefix(prefix(&[tenant.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn record(name: &str, digest: &str) -> ChannelRecord {
        ChannelRecord {
            name: name.into(),
            version: 0,
            digest: digest.into(),
            settings: Object::new(),
            secrets: Object::new(),
            allowed_hosts: vec!["example.com".into()],
            updated_at: 5,
            rate: None,
            adapter: ChannelAdapter::Component,
        }
    }

    #[tokio::test]
    async fn stored_components_are_those_a_version_or_a_current_registration_names() {
        let (_dir, store) = temp_store();
        store
            .put_channel("t", record("email", "d1"), b"one")
            .await
            .unwrap();
        // Replaced: `d1` is named by nothing any more (its bytes may stay).
        store
            .put_channel("t", record("email", "d2"), b"two")
            .await
            .unwrap();
        store
            .put_channel("u", record("sms", "d3"), b"three")
            .await
            .unwrap();
        let spec = crate::model::Spec {
            description: String::new(),
            entry: vec![],
            exit_on: vec![],
            milestones: vec![],
            goal: None,
            reentry: crate::model::Reentry::Never,
            channels: vec![],
            experiments: vec![],
            audience: Default::default(),
        };
        use crate::model::rollout::Stage;
        for digest in ["j1", "j2"] {
            store
                .add_journey_version("t", "welcome", digest, b"j", &spec, Stage::Live, 1)
                .await
                .unwrap();
        }
        let mut digests: Vec<String> = store
            .stored_component_digests()
            .unwrap()
            .into_iter()
            .collect();
        digests.sort();
        assert_eq!(digests, ["d2", "d3", "j1", "j2"]);
    }

    #[tokio::test]
    async fn registering_a_channel_again_increases_its_version() {
        let (_dir, store) = temp_store();
        let first = store
            .put_channel("t", record("email", "d1"), b"one")
            .await
            .unwrap();
        let second = store
            .put_channel("t", record("email", "d2"), b"two")
            .await
            .unwrap();
        let other = store
            .put_channel("u", record("email", "d3"), b"three")
            .await
            .unwrap();
        assert_eq!((first.version, second.version, other.version), (1, 2, 1));
        let stored = store.channel("t", "email").unwrap().unwrap();
        assert_eq!((stored.version, stored.digest.as_str()), (2, "d2"));
        assert_eq!(store.component("d2").unwrap().as_deref(), Some(&b"two"[..]));
    }

    #[tokio::test]
    async fn a_tenant_lists_only_its_own_channels() {
        let (_dir, store) = temp_store();
        for (tenant, name) in [("t", "sms"), ("t", "email"), ("tt", "slack")] {
            store
                .put_channel(tenant, record(name, "d"), b"")
                .await
                .unwrap();
        }
        let names: Vec<String> = store
            .channels("t")
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["email", "sms"]);
        assert!(store.channel("t", "slack").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_registration_replaced_outside_put_channel_is_read_anew() {
        let (_dir, store) = temp_store();
        store
            .put_channel("t", record("email", "d1"), b"one")
            .await
            .unwrap();
        let first = store.channel("t", "email").unwrap().unwrap();
        // Read twice, decoded once: the same record.
        assert!(Arc::ptr_eq(
            &first,
            &store.channel("t", "email").unwrap().unwrap()
        ));
        // Written straight into the tree, as a cluster partition's mirror or a scratch copy
        // writes it.
        let mut replaced = record("email", "d9");
        replaced.version = 7;
        store
            .channels
            .insert(channel_key("t", "email"), enc(&replaced))
            .unwrap();
        let read = store.channel("t", "email").unwrap().unwrap();
        assert_eq!((read.version, read.digest.as_str()), (7, "d9"));
        store.channels.remove(channel_key("t", "email")).unwrap();
        assert!(store.channel("t", "email").unwrap().is_none());
    }
}
