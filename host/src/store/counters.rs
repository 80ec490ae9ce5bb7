//! Per journey and channel delivery counters, offered to `decide` through the `stats` import:
//! `counters`: `tenant␟journey␟channel␟counter name␟writer (u16 BE)` → count (u64 BE). The
//! names are [`Counter::as_str`]; they are part of the key, so they never change.
//!
//! Each writer keeps its own part of a counter, and a read adds the parts up: the shard workers
//! (writer = shard, sends decided, in [`commit_triggers`](super::Store::commit_triggers)) and
//! the delivery loop (writer [`DELIVERY`], final outcomes) run their transactions
//! concurrently, and one shared key per counter would make them conflict and retry whole
//! batches. Keys written before parts existed (no writer suffix) are read as one more part.

use super::keys::{key, prefix, u64_value};
use super::kv::TransactionalTree;
use super::{Store, StoreError, TxResult};
use crate::hash::SEP;
use crate::model::{ChannelStats, Counter};

/// The writer part of the delivery loop's counters (shard workers write under their shard).
pub(super) const DELIVERY: u16 = u16::MAX;

/// The key of one writer's part of a counter.
pub(super) fn counter_key(
    tenant: &str,
    journey: &str,
    channel: &str,
    counter: Counter,
    writer: u16,
) -> Vec<u8> {
    key(&[
        tenant.as_bytes(),
        journey.as_bytes(),
        channel.as_bytes(),
        counter.as_str().as_bytes(),
        &writer.to_be_bytes(),
    ])
}

/// The counter name in what follows the channel in a key: `name` or `name␟writer`.
fn counter_name(tail: &[u8]) -> &[u8] {
    match tail.len().checked_sub(3) {
        Some(at) if tail[at] == SEP => &tail[..at],
        _ => tail,
    }
}

/// Adds one to the counter at `k`, inside a transaction.
pub(super) fn bump(counters: &TransactionalTree, k: &[u8]) -> TxResult<()> {
    add(counters, k, 1)
}

/// Adds `by` to the counter at `k`, inside a transaction.
pub(super) fn add(counters: &TransactionalTree, k: &[u8], by: u64) -> TxResult<()> {
    let n = counters.get(k)?.map_or(0, |v| u64_value(&v));
    counters.put(k, &(n + by).to_be_bytes())?;
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
        // Per entry of `stats`: sends counted sent, then suppressed at delivery time.
        let mut late: Vec<u64> = Vec::new();
        let journey_prefix = prefix(&[tenant.as_bytes(), journey.as_bytes()]);
        for kv in self.counters.scan_prefix(&journey_prefix) {
            let (k, v) = kv?;
            let rest = &k[journey_prefix.len()..];
            let (channel, tail) = match rest.iter().position(|b| *b == SEP) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            let channel = String::from_utf8_lossy(channel).into_owned();
            let counter = std::str::from_utf8(counter_name(tail))
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
                late.push(0);
            }
            if let Some(s) = stats.last_mut() {
                match counter {
                    Some(Counter::Sent) => s.sent += n,
                    Some(Counter::Delivered) => s.delivered += n,
                    Some(Counter::Failed) => s.failed += n,
                    Some(Counter::SuppressedLate) => {
                        if let Some(l) = late.last_mut() {
                            *l += n;
                        }
                    }
                    // Not offered through the `stats` import (yet).
                    Some(Counter::Suppressed) | None => {}
                }
            }
        }
        // A send suppressed at delivery time is not sent (its parts may sort before `sent`'s).
        for (s, l) in stats.iter_mut().zip(late) {
            s.sent = s.sent.saturating_sub(l);
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
            ("welcome", "email", Counter::Sent),
            ("welcome", "email", Counter::SuppressedLate),
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
    fn counter_keys_name_the_counter_and_the_writer_as_stored() {
        assert_eq!(
            counter_key("t", "j", "email", Counter::Delivered, 0x1f01),
            b"t\x1fj\x1femail\x1fdelivered\x1f\x1f\x01"
        );
    }

    #[test]
    fn the_parts_of_a_counter_add_up_with_a_key_from_before_parts() {
        let (_dir, store) = temp_store();
        let before_parts = key(&[b"t", b"j", b"email", b"sent"]);
        store
            .counters
            .insert(before_parts, &5u64.to_be_bytes())
            .unwrap();
        for (writer, n) in [(0u16, 2u64), (0x1f1f, 3), (DELIVERY, 1)] {
            store
                .counters
                .insert(
                    counter_key("t", "j", "email", Counter::Sent, writer),
                    &n.to_be_bytes(),
                )
                .unwrap();
        }
        store
            .counters
            .insert(
                counter_key("t", "j", "email", Counter::Delivered, DELIVERY),
                &4u64.to_be_bytes(),
            )
            .unwrap();
        let stats = store.channel_stats("t", "j").unwrap();
        assert_eq!(
            stats,
            [ChannelStats {
                channel: "email".into(),
                sent: 11,
                delivered: 4,
                failed: 0
            }]
        );
    }
}
