//! Tenants and their API keys.
//!
//! `tenants`: tenant id → [`Tenant`]. `api_keys`: SHA-256 digest of an API key (hex) → tenant
//! id; keys themselves are never stored.

use super::kv::Transactional;
use super::{abort, dec, enc, Store, StoreError};
use crate::model::{LimitOverrides, Millis, SendingPolicy};
use serde::{Deserialize, Serialize};

/// An isolated workspace: its settings. Stored as JSON under its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub created_at: Millis,
    /// The tenant's departures from the operator's default sandbox limits.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Frequency caps and quiet hours.
    #[serde(default)]
    pub policy: SendingPolicy,
}

impl Store {
    /// Creates a tenant with the digest of its API key; refuses an existing id.
    pub async fn create_tenant(&self, tenant: &Tenant, key_digest: &str) -> Result<(), StoreError> {
        let value = enc(tenant);
        (&self.tenants, &self.api_keys).transaction(|(tenants, keys)| {
            if tenants.get(tenant.id.as_bytes())?.is_some() {
                return Err(abort(StoreError::Exists(format!("tenant {:?}", tenant.id))));
            }
            tenants.put(tenant.id.as_bytes(), value.as_slice())?;
            keys.put(key_digest.as_bytes(), tenant.id.as_bytes())?;
            Ok(())
        })?;
        self.flush().await
    }

    /// One tenant, by id.
    pub fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.tenants
            .get(id.as_bytes())?
            .map(|v| dec(&v))
            .transpose()
    }

    /// Changes a tenant's settings with `change` (read, change, write in one transaction, so
    /// concurrent changes of different settings do not undo each other) and flushes. Returns
    /// the tenant as stored; `Ok(None)` when there is no such tenant. `change` may run more
    /// than once if the transaction is retried.
    pub async fn update_tenant(
        &self,
        id: &str,
        change: impl Fn(&mut Tenant),
    ) -> Result<Option<Tenant>, StoreError> {
        let updated = self.tenants.transaction(|tenants| {
            let Some(current) = tenants.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut tenant: Tenant = dec(&current).map_err(abort)?;
            change(&mut tenant);
            tenants.put(id.as_bytes(), enc(&tenant))?;
            Ok(Some(tenant))
        })?;
        self.flush().await?;
        Ok(updated)
    }

    /// The tenant an API key (by its digest) belongs to.
    pub fn tenant_by_key_digest(&self, digest: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .api_keys
            .get(digest.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn tenant(id: &str) -> Tenant {
        Tenant {
            id: id.into(),
            created_at: 1,
            limits: LimitOverrides::default(),
            policy: SendingPolicy::default(),
        }
    }

    #[tokio::test]
    async fn a_tenant_is_found_by_id_and_by_its_key_digest() {
        let (_dir, store) = temp_store();
        store.create_tenant(&tenant("acme"), "d1").await.unwrap();
        assert_eq!(store.tenant("acme").unwrap().unwrap().id, "acme");
        assert_eq!(
            store.tenant_by_key_digest("d1").unwrap().as_deref(),
            Some("acme")
        );
        assert!(store.tenant("other").unwrap().is_none());
        assert!(store.tenant_by_key_digest("d2").unwrap().is_none());
    }

    #[tokio::test]
    async fn creating_an_existing_tenant_is_refused_and_keeps_the_first_key() {
        let (_dir, store) = temp_store();
        store.create_tenant(&tenant("acme"), "d1").await.unwrap();
        let again = store.create_tenant(&tenant("acme"), "d2").await;
        assert!(matches!(again, Err(StoreError::Exists(_))));
        assert!(store.tenant_by_key_digest("d2").unwrap().is_none());
    }

    #[tokio::test]
    async fn update_tenant_changes_one_setting_and_keeps_the_others() {
        let (_dir, store) = temp_store();
        store.create_tenant(&tenant("acme"), "d1").await.unwrap();
        let limits = LimitOverrides {
            max_commands: Some(7),
            ..LimitOverrides::default()
        };
        store
            .update_tenant("acme", |t| t.limits = limits)
            .await
            .unwrap();
        let policy = SendingPolicy {
            frequency_caps: vec![crate::model::FrequencyCap {
                channel: "email".into(),
                max: 1,
                window_ms: 1_000,
            }],
            quiet_hours: None,
        };
        let updated = store
            .update_tenant("acme", |t| t.policy = policy.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.limits, limits);
        assert_eq!(updated.policy, policy);
        let stored = store.tenant("acme").unwrap().unwrap();
        assert_eq!((stored.limits, stored.policy), (limits, policy));
    }

    #[tokio::test]
    async fn update_tenant_on_a_missing_tenant_is_none_and_creates_nothing() {
        let (_dir, store) = temp_store();
        let updated = store
            .update_tenant("ghost", |t| t.created_at = 5)
            .await
            .unwrap();
        assert!(updated.is_none());
        assert!(store.tenant("ghost").unwrap().is_none());
    }
}
