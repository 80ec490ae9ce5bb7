//! Each customer's events (issue 14, the dashboard's timeline): `customer_events`:
//! `tenant␟customer␟sequence (u64 BE)` → nothing. The event log is keyed by tenant and
//! arrival, so one customer's events would otherwise take a scan of the tenant's log. Ingest
//! writes nothing here: the shard worker adds one key when it commits a logged event's
//! trigger, in the same transaction ([`Store::commit_triggers`]), so the index holds exactly
//! the processed events. Events processed before this index existed are not in it, and a
//! scratch store (a backtest's replay, which no dashboard reads) keeps none.

use super::keys::{key, prefix};
use super::{dec, Store, StoreError};
use crate::model::Event;

/// The index key of `customer`'s event logged under `seq` (the 8 bytes of its log key).
pub(super) fn customer_event_key(tenant: &str, customer: &str, seq: &[u8]) -> Vec<u8> {
    key(&[tenant.as_bytes(), customer.as_bytes(), seq])
}

impl Store {
    /// The customer's last `limit` processed events, newest first, with their log sequence
    /// numbers; an entry whose log record is gone is skipped.
    pub fn recent_customer_events(
        &self,
        tenant: &str,
        customer: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let start = prefix(&[tenant.as_bytes(), customer.as_bytes()]);
        let mut out = Vec::new();
        for kv in self.customer_events.scan_prefix(&start).rev() {
            if out.len() == limit {
                break;
            }
            let (k, _) = kv?;
            let seq = &k[start.len()..];
            let Ok(number) = <[u8; 8]>::try_from(seq) else {
                continue;
            };
            if let Some(v) = self.events.get(key(&[tenant.as_bytes(), seq]))? {
                out.push((u64::from_be_bytes(number), dec(&v)?));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};

    #[tokio::test]
    async fn a_committed_event_is_found_under_its_customer_newest_first() {
        let (_dir, store) = temp_store();
        for (id, customer) in [("e1", "ada"), ("e2", "bob"), ("e3", "ada")] {
            let mut commit = fixtures::logged_commit(&store, "t", id, customer).await;
            commit.event_customer = Some(customer.to_string());
            store.commit_trigger(&commit).unwrap();
        }
        let ada: Vec<String> = store
            .recent_customer_events("t", "ada", 10)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.id)
            .collect();
        assert_eq!(ada, ["e3", "e1"]);
        assert_eq!(
            store.recent_customer_events("t", "ada", 1).unwrap().len(),
            1
        );
        assert!(store
            .recent_customer_events("u", "ada", 10)
            .unwrap()
            .is_empty());
        assert!(store
            .recent_customer_events("t", "ad", 10)
            .unwrap()
            .is_empty());
    }
}
