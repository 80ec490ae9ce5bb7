//! Tenants' signing secrets (issue 11): `signing_secrets`: `tenant␟purpose` → [`SigningSecret`].
//!
//! One secret per purpose (`inbox` signs customers' inbox tokens, `unsubscribe` signs
//! unsubscribe links), so rotating the inbox secret never breaks a link in an email already
//! sent. The caller hands in the fresh secret (the store picks nothing); the first use of a
//! purpose stores it, a rotation keeps the replaced one as `previous` so that tokens signed
//! just before still verify until the next rotation.

use super::keys::key;
use super::{dec, enc, Store, StoreError};
use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// A tenant's secret for one purpose, and the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub current: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub created_at: Millis,
}

impl SigningSecret {
    /// The secrets a token may be signed with: the current one first.
    pub fn verifying(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.as_str()).chain(self.previous.as_deref())
    }
}

fn secret_key(tenant: &str, purpose: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), purpose.as_bytes()])
}

impl Store {
    /// The tenant's secret for `purpose`, if it has one.
    pub fn signing_secret(
        &self,
        tenant: &str,
        purpose: &str,
    ) -> Result<Option<SigningSecret>, StoreError> {
        self.signing_secrets
            .get(secret_key(tenant, purpose))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// The tenant's secret for `purpose`, storing `fresh` first if it has none (two callers at
    /// once agree on one: the first write wins).
    pub async fn signing_secret_or_insert(
        &self,
        tenant: &str,
        purpose: &str,
        fresh: SigningSecret,
    ) -> Result<SigningSecret, StoreError> {
        if let Some(secret) = self.signing_secret(tenant, purpose)? {
            return Ok(secret);
        }
        let k = secret_key(tenant, purpose);
        let swapped =
            self.signing_secrets
                .compare_and_swap(&k, None as Option<&[u8]>, Some(enc(&fresh)))?;
        match swapped {
            Ok(()) => {
                self.flush().await?;
                Ok(fresh)
            }
            Err(current) => current
                .current
                .map(|v| dec(&v))
                .transpose()?
                .ok_or_else(|| StoreError::Corrupt("a signing secret vanished".into())),
        }
    }

    /// Replaces the tenant's secret for `purpose` with `fresh.current`, keeping the one it
    /// replaces as `previous`. Returns what is stored now.
    pub async fn rotate_signing_secret(
        &self,
        tenant: &str,
        purpose: &str,
        fresh: SigningSecret,
    ) -> Result<SigningSecret, StoreError> {
        let k = secret_key(tenant, purpose);
        let stored = self.signing_secrets.update_and_fetch(&k, |old| {
            let previous = old
                .and_then(|v| dec::<SigningSecret>(v).ok())
                .map(|s| s.current);
            Some(enc(&SigningSecret {
                previous,
                ..fresh.clone()
            }))
        })?;
        self.flush().await?;
        stored
            .map(|v| dec(&v))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt("a rotated secret vanished".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn secret(s: &str) -> SigningSecret {
        SigningSecret {
            current: s.into(),
            previous: None,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn the_first_secret_stays_and_a_rotation_keeps_the_one_it_replaced() {
        let (_dir, store) = temp_store();
        assert_eq!(store.signing_secret("t", "inbox").unwrap(), None);
        let first = store
            .signing_secret_or_insert("t", "inbox", secret("a"))
            .await
            .unwrap();
        let again = store
            .signing_secret_or_insert("t", "inbox", secret("b"))
            .await
            .unwrap();
        assert_eq!((first.current.as_str(), again.current.as_str()), ("a", "a"));
        let rotated = store
            .rotate_signing_secret("t", "inbox", secret("c"))
            .await
            .unwrap();
        assert_eq!(rotated.verifying().collect::<Vec<_>>(), ["c", "a"]);
        assert_eq!(
            store.signing_secret("t", "unsubscribe").unwrap(),
            None,
            "purposes are apart"
        );
    }
}
