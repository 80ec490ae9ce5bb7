//! Tenants' scoped API keys (issue 12): several per tenant, each with a scope, listed by a
//! public prefix and revoked by it. Keys themselves are never stored, only their SHA-256 digest.
//!
//! `access_keys`: key digest (hex) → [`AccessKey`]. `access_key_prefixes`:
//! `tenant␟prefix` → key digest, so a tenant's keys list in prefix order and one is revoked by
//! its prefix. A key is also kept in `api_keys` (digest → tenant), the tree every key lived in
//! before scopes: a key found there but not in `access_keys` is a tenant's key from before
//! scopes, and is an `admin` key.

use super::keys::{key, prefix};
use super::kv::Transactional;
use super::{abort, dec, enc, Store, StoreError, Tenant};
use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Ingest only (`POST /v1/events` and the Segment-compatible routes): safe to ship in a
    /// browser or a mobile app.
    Write,
    /// Every read (`GET`) of the tenant's data.
    Read,
    /// Everything the tenant may do, keys included.
    Admin,
}

/// One key's record (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub tenant: String,
    /// The key's first characters: public, unique within the tenant.
    pub prefix: String,
    pub scope: Scope,
    pub created_at: Millis,
    /// The tenant's note of what the key is for.
    #[serde(default)]
    pub name: Option<String>,
}

fn prefix_key(tenant: &str, key_prefix: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), key_prefix.as_bytes()])
}

impl Store {
    /// Creates a tenant and its first key (an admin key) in one transaction; refuses an
    /// existing tenant id.
    pub async fn create_tenant_with_key(
        &self,
        tenant: &Tenant,
        first: &AccessKey,
        digest: &str,
    ) -> Result<(), StoreError> {
        let value = enc(tenant);
        let record = enc(first);
        let index = prefix_key(&first.tenant, &first.prefix);
        (
            &self.tenants,
            &self.api_keys,
            &self.access_keys,
            &self.access_key_prefixes,
        )
            .transaction(|(tenants, legacy, keys, prefixes)| {
                if tenants.get(tenant.id.as_bytes())?.is_some() {
                    return Err(abort(StoreError::Exists(format!("tenant {:?}", tenant.id))));
                }
                tenants.put(tenant.id.as_bytes(), value.as_slice())?;
                legacy.put(digest.as_bytes(), tenant.id.as_bytes())?;
                keys.put(digest.as_bytes(), record.as_slice())?;
                prefixes.put(index.as_slice(), digest.as_bytes())?;
                Ok(())
            })?;
        self.flush().await
    }

    /// Adds a key to its tenant; refuses a prefix the tenant already has (the caller draws
    /// another key) with [`StoreError::Exists`].
    pub async fn create_access_key(
        &self,
        record: &AccessKey,
        digest: &str,
    ) -> Result<(), StoreError> {
        let value = enc(record);
        let index = prefix_key(&record.tenant, &record.prefix);
        (&self.api_keys, &self.access_keys, &self.access_key_prefixes).transaction(
            |(legacy, keys, prefixes)| {
                if prefixes.get(index.as_slice())?.is_some() || keys.get(digest)?.is_some() {
                    return Err(abort(StoreError::Exists(format!(
                        "key prefix {:?}",
                        record.prefix
                    ))));
                }
                legacy.put(digest.as_bytes(), record.tenant.as_bytes())?;
                keys.put(digest.as_bytes(), value.as_slice())?;
                prefixes.put(index.as_slice(), digest.as_bytes())?;
                Ok(())
            },
        )?;
        self.flush().await
    }

    /// The key whose digest is `digest`, with its scope: a key from before scopes is its
    /// tenant's admin key (prefix unknown, shown as `""`).
    pub fn access_key(&self, digest: &str) -> Result<Option<AccessKey>, StoreError> {
        if let Some(v) = self.access_keys.get(digest.as_bytes())? {
            return dec(&v).map(Some);
        }
        Ok(self.tenant_by_key_digest(digest)?.map(|tenant| AccessKey {
            tenant,
            prefix: String::new(),
            scope: Scope::Admin,
            created_at: 0,
            name: None,
        }))
    }

    /// Records a key from before scopes (in `api_keys` only) as `record`, an admin key with
    /// its prefix, so that it is listed and revoked like the others. Does nothing if the
    /// digest has a record already, is not `record.tenant`'s, or the prefix is taken in the
    /// tenant. Not flushed: lost in a crash, it is done again on the key's next use.
    pub fn adopt_legacy_key(&self, record: &AccessKey, digest: &str) -> Result<(), StoreError> {
        let value = enc(record);
        let index = prefix_key(&record.tenant, &record.prefix);
        (&self.api_keys, &self.access_keys, &self.access_key_prefixes).transaction(
            |(legacy, keys, prefixes)| {
                let owner = legacy.get(digest)?;
                if owner.as_deref() != Some(record.tenant.as_bytes())
                    || keys.get(digest)?.is_some()
                    || prefixes.get(index.as_slice())?.is_some()
                {
                    return Ok(());
                }
                keys.put(digest.as_bytes(), value.as_slice())?;
                prefixes.put(index.as_slice(), digest.as_bytes())?;
                Ok(())
            },
        )?;
        Ok(())
    }

    /// A tenant's keys (those made since scopes), in prefix order.
    pub fn access_keys(&self, tenant: &str) -> Result<Vec<AccessKey>, StoreError> {
        let mut out = Vec::new();
        for entry in self
            .access_key_prefixes
            .scan_prefix(prefix(&[tenant.as_bytes()]))
        {
            let (_, digest) = entry?;
            if let Some(v) = self.access_keys.get(&digest)? {
                out.push(dec(&v)?);
            }
        }
        Ok(out)
    }

    /// Revokes the tenant's key with `key_prefix`: from the flush on, it authenticates
    /// nothing. Returns the revoked key's record, `None` if the tenant has no such key.
    pub async fn revoke_access_key(
        &self,
        tenant: &str,
        key_prefix: &str,
    ) -> Result<Option<AccessKey>, StoreError> {
        let index = prefix_key(tenant, key_prefix);
        let revoked = (&self.api_keys, &self.access_keys, &self.access_key_prefixes).transaction(
            |(legacy, keys, prefixes)| {
                let Some(digest) = prefixes.remove(index.as_slice())? else {
                    return Ok(None);
                };
                legacy.delete(digest.clone())?;
                let record = keys.remove(digest)?;
                record
                    .map(|v| dec::<AccessKey>(&v))
                    .transpose()
                    .map_err(abort)
            },
        )?;
        self.flush().await?;
        Ok(revoked)
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
            limits: Default::default(),
            policy: Default::default(),
        }
    }

    fn record(tenant: &str, prefix: &str, scope: Scope) -> AccessKey {
        AccessKey {
            tenant: tenant.into(),
            prefix: prefix.into(),
            scope,
            created_at: 5,
            name: None,
        }
    }

    #[tokio::test]
    async fn keys_are_found_by_digest_listed_by_tenant_and_revoked_by_prefix() {
        let (_dir, store) = temp_store();
        let first = record("acme", "wmk_0001", Scope::Admin);
        store
            .create_tenant_with_key(&tenant("acme"), &first, "d0")
            .await
            .unwrap();
        let write = record("acme", "wmk_0002", Scope::Write);
        store.create_access_key(&write, "d1").await.unwrap();
        store
            .create_access_key(&record("acmeco", "wmk_0003", Scope::Read), "d2")
            .await
            .unwrap();
        assert_eq!(store.access_key("d1").unwrap(), Some(write.clone()));
        assert_eq!(store.access_keys("acme").unwrap(), vec![first, write]);

        let revoked = store.revoke_access_key("acme", "wmk_0002").await.unwrap();
        assert_eq!(revoked.map(|k| k.scope), Some(Scope::Write));
        assert_eq!(store.access_key("d1").unwrap(), None);
        assert!(store.tenant_by_key_digest("d1").unwrap().is_none());
        assert!(store
            .revoke_access_key("acme", "wmk_0002")
            .await
            .unwrap()
            .is_none());
        // Another tenant's prefix is not this tenant's to revoke.
        assert!(store
            .revoke_access_key("acme", "wmk_0003")
            .await
            .unwrap()
            .is_none());
        assert!(store.access_key("d2").unwrap().is_some());
    }

    #[tokio::test]
    async fn a_prefix_is_unique_within_a_tenant() {
        let (_dir, store) = temp_store();
        store
            .create_access_key(&record("acme", "wmk_0001", Scope::Read), "d1")
            .await
            .unwrap();
        let again = store
            .create_access_key(&record("acme", "wmk_0001", Scope::Write), "d2")
            .await;
        assert!(matches!(again, Err(StoreError::Exists(_))));
        assert!(store.access_key("d2").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_key_from_before_scopes_is_its_tenants_admin_key() {
        let (_dir, store) = temp_store();
        store.create_tenant(&tenant("acme"), "old").await.unwrap();
        let key = store.access_key("old").unwrap().unwrap();
        assert_eq!((key.tenant.as_str(), key.scope), ("acme", Scope::Admin));
        assert!(store.access_keys("acme").unwrap().is_empty());

        // Adopted on use: listed, then revoked by its prefix like any key.
        let adopted = record("acme", "wmk_0old", Scope::Admin);
        store.adopt_legacy_key(&adopted, "old").unwrap();
        store.adopt_legacy_key(&adopted, "old").unwrap();
        assert_eq!(store.access_keys("acme").unwrap(), vec![adopted.clone()]);
        // Not another tenant's.
        store
            .adopt_legacy_key(&record("other", "wmk_0old", Scope::Admin), "old")
            .unwrap();
        assert!(store.access_keys("other").unwrap().is_empty());
        store.revoke_access_key("acme", "wmk_0old").await.unwrap();
        assert!(store.access_key("old").unwrap().is_none());
    }
}
