//! Per journey and channel delivery counters, offered to `decide` through the `stats` import:
//! `counters`: `tenant␟journey␟channel␟counter name` → count (u64 BE). The names are
//! [`Counter::as_str`]; they are part of the key, so they never change.
//!
//! Counters are bumped by [`commit_trigger`](super::Store::commit_trigger) (sends decided) and
//! [`record_attempt`](super::Store::record_attempt) (final outcomes), inside their transactions.

use super::keys::{key, prefix, u64_value};
use super::{Store, StoreError, TxResult};
use crate::hash::SEP;
use crate::model::{ChannelStats, Counter};
use sled::transaction::TransactionalTree;

/// A counter's key.
pub(super) fn counter_key(tenant: &str, journey: &str, channel: &str, counter: Counter) -> Vec<u8> {
    key(&[
        tenant.as_bytes(),
        journey.as_bytes(),
        channel.as_bytes(),
        counter.as_str().as_bytes(),
    ])
}

/// Adds one to the counter at `k`, inside a transaction.
pub(super) fn bump(counters: &TransactionalTree, k: &[u8]) -> TxResult<()> {
    add(counters, k, 1)
}

/// Adds `by` to the counter at `k`, inside a transaction.
pub(super) fn add(counters: &TransactionalTree, k: &[u8], by: u64) -> TxResult<()> {
    let n = counters.get(k)?.map_or(0, |v| u64_value(&v));
    counters.insert(k, &(n + by).to_be_bytes())?;
    Ok(())
}

impl Store {
    /// Delivery counts of every channel one journey of a tenant has used, by channel name.
    pub fn channel_stats(
        &self,
        tenant: &str,
        journey: &str,
    ) -> Result<Vec<ChannelStats>, StoreError> {
        let mut stats: Vec<ChannelStats> = Vec::new();
        let journey_prefix = prefix(&[tenant.as_bytes(), journey.as_bytes()]);
        for kv in self.counters.scan_prefix(&journey_prefix) {
            let (k, v) = kv?;
            let rest = &k[journey_prefix.len()..];
            let mut parts = rest.split(|b| *b == SEP);
            let channel = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let counter = std::str::from_utf8(parts.next().unwrap_or_default())
                .ok()
                .and_then(|name| name.parse::<Counter>().ok());
            let n = u64_value(&v);
            if stats.last().is_none_or(|s| s.channel != channel) {
                stats.push(ChannelStats {
                    channel,
                    sent: 0,
                    delivered: 0,
                    failed: 0,
                });
            }
            if let Some(s) = stats.last_mut() {
                match counter {
                    Some(Counter::Sent) => s.sent = n,
                    Some(Counter::Delivered) => s.delivered = n,
                    Some(Counter::Failed) => s.failed = n,
                    // Not offered through the `stats` import (yet).
                    Some(Counter::Suppressed) | None => {}
                }
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};
    use super::*;

    #[test]
    fn channel_stats_add_up_the_counters_of_one_journey() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "alice");
        for (journey, channel, counter) in [
            ("welcome", "email", Counter::Sent),
            ("welcome", "email", Counter::Sent),
            ("welcome", "email", Counter::Delivered),
            ("welcome", "email", Counter::Suppressed),
            ("welcome", "sms", Counter::Sent),
            ("welcome", "sms", Counter::Failed),
            ("winback", "email", Counter::Sent),
        ] {
            commit
                .counters
                .push((journey.into(), channel.into(), counter));
        }
        store.commit_trigger(&commit).unwrap();
        let stats = store.channel_stats("t", "welcome").unwrap();
        let stat = |channel: &str, sent, delivered, failed| ChannelStats {
            channel: channel.into(),
            sent,
            delivered,
            failed,
        };
        assert_eq!(stats, [stat("email", 2, 1, 0), stat("sms", 1, 0, 1)]);
        assert_eq!(
            store.channel_stats("t", "winback").unwrap(),
            [stat("email", 1, 0, 0)]
        );
        assert!(store.channel_stats("u", "welcome").unwrap().is_empty());
    }

    #[test]
    fn counter_keys_name_the_counter_as_stored() {
        assert_eq!(
            counter_key("t", "j", "email", Counter::Delivered),
            b"t\x1fj\x1femail\x1fdelivered"
        );
    }
}
