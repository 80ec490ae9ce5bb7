//! Provider feedback (issue 11): what a provider's webhook needs to find, and what it leaves.
//!
//! - `message_refs`: how a webhook names a message, to the message it names. Three kinds of key,
//!   each → [`MessageRef`] (the customer and our message id):
//!   - `m␟tenant␟message id`: our id, which adapters pass as the provider's custom id;
//!   - `p␟tenant␟channel␟provider id`: the provider's id from the receipt (a Twilio `MessageSid`);
//!   - `a␟tenant␟channel␟address`: the latest message to an address (an inbound SMS names only
//!     its `From` number).
//!
//!   Written by the delivery loop when an adapter accepts a message ([`Store::index_message`]),
//!   before the attempt is recorded, so a webhook about a delivered message finds it. An index,
//!   not a record: losing an entry in a crash loses only the lookup.
//! - `suppressions`: `tenant␟channel␟address` → [`Suppression`]: the addresses a hard bounce or a
//!   complaint took off a channel. The delivery loop records a message to one `suppressed`
//!   instead of delivering it; `DELETE /v1/suppressions/{channel}/{address}` lifts one.

use super::keys::{key, prefix};
use super::{dec, enc, Store, StoreError};
use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// A message as the feedback index names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub customer: String,
    pub message_id: String,
}

/// An address a channel may no longer send to, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub channel: String,
    /// As [`crate::feedback::normalize_address`] writes it.
    pub address: String,
    /// `hard_bounce` or `complaint`.
    pub reason: String,
    /// The provider's words, when it gave some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub created_at: Millis,
}

fn our_id_key(tenant: &str, message: &str) -> Vec<u8> {
    key(&[b"m", tenant.as_bytes(), message.as_bytes()])
}

fn provider_id_key(tenant: &str, channel: &str, provider_id: &str) -> Vec<u8> {
    key(&[
        b"p",
        tenant.as_bytes(),
        channel.as_bytes(),
        provider_id.as_bytes(),
    ])
}

fn address_key(tenant: &str, channel: &str, address: &str) -> Vec<u8> {
    key(&[
        b"a",
        tenant.as_bytes(),
        channel.as_bytes(),
        address.as_bytes(),
    ])
}

fn suppression_key(tenant: &str, channel: &str, address: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), channel.as_bytes(), address.as_bytes()])
}

impl Store {
    /// Indexes a message an adapter accepted: by our id, by the provider's id if the receipt
    /// had one, and as the latest message to each of `addresses` on its channel.
    pub fn index_message(
        &self,
        tenant: &str,
        channel: &str,
        reference: &MessageRef,
        provider_id: Option<&str>,
        addresses: &[String],
    ) -> Result<(), StoreError> {
        // Issue 10 (throughput): plain inserts, not a `super::kv::Batch`. sled 0.34's `apply_batch`,
        // like a transaction, seals the log buffer (`PageCache::pin_log`) and so costs a log
        // write with its `sync_file_range` per delivered message; an insert goes into the
        // current buffer. The entries need no atomicity among themselves: each is a lookup on
        // its own, and an index entry lost in a crash loses only that lookup (see above).
        let value = super::kv::IVec::from(enc(reference));
        self.message_refs
            .insert(our_id_key(tenant, &reference.message_id), value.clone())?;
        if let Some(id) = provider_id {
            self.message_refs
                .insert(provider_id_key(tenant, channel, id), value.clone())?;
        }
        for address in addresses {
            self.message_refs
                .insert(address_key(tenant, channel, address), value.clone())?;
        }
        Ok(())
    }

    /// The message with our id `message_id`, if an adapter accepted it.
    pub fn message_by_id(
        &self,
        tenant: &str,
        message_id: &str,
    ) -> Result<Option<MessageRef>, StoreError> {
        self.message_ref(our_id_key(tenant, message_id))
    }

    /// The message the provider calls `provider_id` on `channel`.
    pub fn message_by_provider_id(
        &self,
        tenant: &str,
        channel: &str,
        provider_id: &str,
    ) -> Result<Option<MessageRef>, StoreError> {
        self.message_ref(provider_id_key(tenant, channel, provider_id))
    }

    /// The latest message `channel` delivered to `address`.
    pub fn message_to_address(
        &self,
        tenant: &str,
        channel: &str,
        address: &str,
    ) -> Result<Option<MessageRef>, StoreError> {
        self.message_ref(address_key(tenant, channel, address))
    }

    fn message_ref(&self, k: Vec<u8>) -> Result<Option<MessageRef>, StoreError> {
        self.message_refs.get(k)?.map(|v| dec(&v)).transpose()
    }

    /// Suppresses `s.address` on `s.channel`; an address already suppressed keeps its first
    /// record (a provider repeats itself). Returns whether it is new. Flushed before it returns.
    pub async fn suppress_address(
        &self,
        tenant: &str,
        s: &Suppression,
    ) -> Result<bool, StoreError> {
        let k = suppression_key(tenant, &s.channel, &s.address);
        let swapped =
            self.suppressions
                .compare_and_swap(&k, None as Option<&[u8]>, Some(enc(s)))?;
        self.flush().await?;
        Ok(swapped.is_ok())
    }

    /// The suppression of `address` on `channel`, if there is one.
    pub fn suppression(
        &self,
        tenant: &str,
        channel: &str,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        self.suppressions
            .get(suppression_key(tenant, channel, address))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// The tenant's suppressions, by channel then address, at most `limit`, after the
    /// `(channel, address)` given.
    pub fn suppressions(
        &self,
        tenant: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<Suppression>, StoreError> {
        let start = prefix(&[tenant.as_bytes()]);
        let range = match after {
            Some((channel, address)) => {
                let mut from = suppression_key(tenant, channel, address);
                from.push(0);
                self.suppressions.range(from..)
            }
            None => self.suppressions.range(start.clone()..),
        };
        let mut out = Vec::new();
        for item in range {
            let (k, v) = item?;
            if !k.starts_with(&start) || out.len() >= limit {
                break;
            }
            out.push(dec(&v)?);
        }
        Ok(out)
    }

    /// Lifts the suppression of `address` on `channel`. Returns whether there was one.
    pub async fn lift_suppression(
        &self,
        tenant: &str,
        channel: &str,
        address: &str,
    ) -> Result<bool, StoreError> {
        let removed = self
            .suppressions
            .remove(suppression_key(tenant, channel, address))?;
        self.flush().await?;
        Ok(removed.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn suppression(channel: &str, address: &str, reason: &str) -> Suppression {
        Suppression {
            channel: channel.into(),
            address: address.into(),
            reason: reason.into(),
            detail: None,
            customer: Some("ada".into()),
            message_id: Some("m1".into()),
            created_at: 5,
        }
    }

    #[tokio::test]
    async fn an_address_is_suppressed_once_listed_per_tenant_and_lifted() {
        let (_dir, store) = temp_store();
        let first = suppression("email", "ada@example.com", "hard_bounce");
        assert!(store.suppress_address("acme", &first).await.unwrap());
        let again = suppression("email", "ada@example.com", "complaint");
        assert!(!store.suppress_address("acme", &again).await.unwrap());
        assert_eq!(
            store
                .suppression("acme", "email", "ada@example.com")
                .unwrap(),
            Some(first.clone()),
            "the first record stays"
        );
        store
            .suppress_address("acme", &suppression("sms", "+15005550006", "complaint"))
            .await
            .unwrap();
        store
            .suppress_address(
                "acmex",
                &suppression("email", "bo@example.com", "complaint"),
            )
            .await
            .unwrap();
        let listed = store.suppressions("acme", None, 10).unwrap();
        assert_eq!(listed.len(), 2);
        let page = store
            .suppressions("acme", Some(("email", "ada@example.com")), 10)
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].channel, "sms");
        assert!(store
            .lift_suppression("acme", "email", "ada@example.com")
            .await
            .unwrap());
        assert!(!store
            .lift_suppression("acme", "email", "ada@example.com")
            .await
            .unwrap());
        assert_eq!(
            store
                .suppression("acme", "email", "ada@example.com")
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_message_is_found_by_our_id_the_providers_id_and_its_address() {
        let (_dir, store) = temp_store();
        let reference = MessageRef {
            customer: "ada".into(),
            message_id: "m1".into(),
        };
        store
            .index_message(
                "acme",
                "sms",
                &reference,
                Some("SM1"),
                &["+15005550006".into()],
            )
            .unwrap();
        assert_eq!(
            store.message_by_id("acme", "m1").unwrap(),
            Some(reference.clone())
        );
        assert_eq!(
            store.message_by_provider_id("acme", "sms", "SM1").unwrap(),
            Some(reference.clone())
        );
        assert_eq!(
            store
                .message_to_address("acme", "sms", "+15005550006")
                .unwrap(),
            Some(reference)
        );
        assert_eq!(
            store
                .message_by_provider_id("acme", "email", "SM1")
                .unwrap(),
            None
        );
        assert_eq!(store.message_by_id("other", "m1").unwrap(), None);
    }
}
