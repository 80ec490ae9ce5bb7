//! Messages, what a customer receives: decided sends, their delivery index, held messages and
//! dead letters.
//!
//! - `outbox`: `tenant␟customer␟message id` → [`Message`] (the "outbox key").
//! - `outbox_due`: `next attempt (time key, wall clock)` + outbox key → outbox key: the pending
//!   messages in delivery order. Only a [`MessageStatus::Pending`] message has an entry.
//! - `held`: `release time (time key, journey time)` + outbox key → outbox key: messages the
//!   sending policy deferred.
//! - `dead_letters`: `tenant␟message id` → outbox key, for every dead message.
//!
//! Messages are created by [`commit_trigger`](super::Store::commit_trigger) (never twice:
//! `insert_new`); delivery attempts are recorded by [`Store::record_attempts`], many in one
//! transaction ([`Store::record_attempt`] records one). Dead letters are listed and requeued
//! in [`super::dead_letters`].

use super::counters::{bump, counter_key, DELIVERY};
use super::keys::{key, prefix, time_from_key, time_key};
use super::kv::Transactional;
use super::kv::TransactionalTree;
use super::queue::QueuedTrigger;
use super::{abort, dec, enc, Store, StoreError, TxResult};
use crate::hash::SEP;
use crate::model::{Counter, Millis};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for its next delivery attempt.
    Pending,
    /// The adapter confirmed it.
    Delivered,
    /// Failed permanently or after every retry: a dead letter.
    Dead,
    /// Decided for a customer who may not receive it (unsubscribed or suppressed): recorded,
    /// never delivered.
    Suppressed,
    /// Deferred by the sending policy (a frequency cap, quiet hours) until `release_at`.
    Held,
}

/// A message: a send that was decided and persisted; delivery drains it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// The idempotency key.
    pub id: String,
    pub tenant: String,
    pub customer: String,
    pub journey: String,
    pub version: u32,
    pub enrollment: String,
    pub run: u32,
    pub channel: String,
    pub template: String,
    pub payload: serde_json::Value,
    pub status: MessageStatus,
    pub attempts: u32,
    /// Wall-clock time of the next attempt (retries are infrastructure time, not journey time).
    pub next_attempt_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Millis>,
    /// Journey time at which a send the sending policy deferred may go out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_at: Option<Millis>,
    /// The version of the tenant's stored template `template` that this message renders,
    /// pinned when the message was created (so retries and replays render the same content);
    /// `None` when the send named no stored template (its payload goes to the adapter as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
    /// Provider feedback (issue 11): what the adapter reported about the delivery
    /// (`delivery-hints.receipt-detail`, contract 0.1.2), e.g. an SMS's segment count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<serde_json::Value>,
}

/// A message's key in `outbox`.
fn outbox_key(m: &Message) -> Vec<u8> {
    key(&[m.tenant.as_bytes(), m.customer.as_bytes(), m.id.as_bytes()])
}

/// Which message a record is (its tenant, customer and id), opaque: what the delivery loop
/// tracks the messages it has taken by, so that reading the due index again skips them
/// without loading them ([`Store::due_messages_except`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageKey(Vec<u8>);

/// Looked up by the bytes of the due index's values. `Vec<u8>` hashes as its slice does, so
/// the derived `Hash` agrees with this.
impl std::borrow::Borrow<[u8]> for MessageKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Message {
    /// This message's [`MessageKey`].
    pub fn key(&self) -> MessageKey {
        MessageKey(outbox_key(self))
    }
}

/// Where and how far one [`Store::scan_due_messages`] reads: what is due at wall-clock `now`,
/// at most `limit` messages, looking at no more than `scan` entries, from `from` on.
#[derive(Debug, Clone, Copy)]
pub struct DueRead<'a> {
    pub now: Millis,
    pub limit: usize,
    pub scan: usize,
    pub from: Option<&'a [u8]>,
}

/// What one [`Store::scan_due_messages`] found.
#[derive(Debug, Default)]
pub struct DueScan {
    /// The due messages taken, earliest first.
    pub messages: Vec<Message>,
    /// Where the next scan goes on, when this one stopped before the end of what is due.
    pub resume: Option<Vec<u8>>,
    /// Whether a due message was passed over because its tenant or `accept` refused it.
    pub skipped: bool,
    /// Where a later scan for only the messages that fall due from this one's `now` on starts
    /// (what is committed later with an earlier due time, the feeder learns of from
    /// [`Store::take_due_written`]).
    pub caught_up: Vec<u8>,
}

/// One delivery attempt, as [`Store::record_attempts`] writes it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The message as the attempt found it: its delivery-index entry is the one removed.
    pub before: Message,
    /// The same message as the attempt left it.
    pub after: Message,
    /// The delivery outcome for the journey, for a final outcome.
    pub report: Option<QueuedTrigger>,
    /// Bumped for `after`'s tenant, journey and channel.
    pub counter: Option<Counter>,
}

/// An entry of a time index (`outbox_due`, `held`): the time, then the outbox key.
pub(super) fn due_key(at: Millis, outbox_key: &[u8]) -> Vec<u8> {
    let mut k = time_key(at).to_vec();
    k.extend_from_slice(outbox_key);
    k
}

/// A dead letter's key.
pub(super) fn dead_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), id.as_bytes()])
}

/// A new message, encoded with the index entry its status calls for (and, for a scratch
/// store, kept decoded: `kv::Memo`).
pub(super) struct NewMessage {
    key: Vec<u8>,
    value: Vec<u8>,
    memo: Option<super::kv::Memo>,
    index: Option<Index>,
}

/// Which time index a new message joins.
enum Index {
    Due(Vec<u8>),
    Held(Vec<u8>),
}

impl NewMessage {
    /// Encodes `m` for [`insert_new`], keeping a copy decoded with `keep`.
    pub fn new(m: &Message, keep: bool) -> NewMessage {
        let key = outbox_key(m);
        let index = match (m.status, m.release_at) {
            (MessageStatus::Pending, _) => Some(Index::Due(due_key(m.next_attempt_at, &key))),
            (MessageStatus::Held, Some(at)) => Some(Index::Held(due_key(at, &key))),
            _ => None,
        };
        NewMessage {
            value: enc(m),
            memo: keep.then(|| super::memo(m)),
            key,
            index,
        }
    }
}

/// When a new message joins the due index: its first attempt's time, if it is pending.
pub(super) fn due_at(m: &Message) -> Option<Millis> {
    (m.status == MessageStatus::Pending).then_some(m.next_attempt_at)
}

/// Writes a new message and its index entry, inside a transaction, unless a message with its
/// id is there already: the outbox never holds a duplicate, and an existing message (perhaps
/// delivered since) is left as it is.
pub(super) fn insert_new(
    outbox: &TransactionalTree,
    due: &TransactionalTree,
    held: &TransactionalTree,
    m: &NewMessage,
) -> TxResult<()> {
    if outbox.get(&m.key)?.is_some() {
        return Ok(());
    }
    match &m.memo {
        Some(memo) => outbox.put_memo(m.key.as_slice(), m.value.as_slice(), memo.clone())?,
        None => outbox.put(m.key.as_slice(), m.value.as_slice())?,
    }
    match &m.index {
        Some(Index::Due(k)) => {
            due.put(k.as_slice(), m.key.as_slice())?;
        }
        Some(Index::Held(k)) => {
            held.put(k.as_slice(), m.key.as_slice())?;
        }
        None => {}
    }
    Ok(())
}

/// One attempt's writes, encoded.
struct EncodedAttempt {
    key: Vec<u8>,
    value: Vec<u8>,
    old_due: Vec<u8>,
    /// The next attempt's time and its due-index key, when the message stays pending.
    new_due: Option<(Millis, Vec<u8>)>,
    dead: Option<Vec<u8>>,
    report: Option<super::queue::QueueEntry>,
}

impl Store {
    /// Notes that due-index entries from `at` on were just committed, so the delivery feeder's
    /// next read goes back to them ([`Store::take_due_written`]). Called after the transaction
    /// that wrote them and before the feeder is woken, so no read can miss them for good: a
    /// read that walked past `at` before the commit is followed by one that starts there.
    pub(super) fn note_due_written(&self, at: Millis) {
        self.due_written
            .fetch_min(at, std::sync::atomic::Ordering::SeqCst);
    }

    /// The earliest due time committed to the due index since the last call, if any (issue 10:
    /// the delivery feeder reads from there and from where its last read ended, rather than
    /// walking a fixed minute of the index again for every new message).
    pub fn take_due_written(&self) -> Option<Millis> {
        let at = self
            .due_written
            .swap(Millis::MAX, std::sync::atomic::Ordering::SeqCst);
        (at != Millis::MAX).then_some(at)
    }

    /// One message of a customer, by id.
    pub fn message(
        &self,
        tenant: &str,
        customer: &str,
        id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let k = key(&[tenant.as_bytes(), customer.as_bytes(), id.as_bytes()]);
        self.outbox.get(k)?.map(|v| dec(&v)).transpose()
    }

    /// Every message decided for a customer, oldest first (by `created_at`).
    pub fn messages(&self, tenant: &str, customer: &str) -> Result<Vec<Message>, StoreError> {
        let mut messages: Vec<Message> = self
            .outbox
            .scan_prefix(prefix(&[tenant.as_bytes(), customer.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect::<Result<_, _>>()?;
        messages.sort_by_key(|m| m.created_at);
        Ok(messages)
    }

    /// Pending messages whose next attempt is due at wall-clock `now`, earliest first.
    pub fn due_messages(&self, now: Millis, limit: usize) -> Result<Vec<Message>, StoreError> {
        let end = time_key(now.saturating_add(1));
        let mut out = Vec::new();
        for kv in self.outbox_due.range(..end.to_vec()).take(limit) {
            let (_, outbox_k) = kv?;
            // Taken to be attempted, so written again: a scratch store hands over what it kept.
            if let Some(read) = self.outbox.get_memo(&outbox_k, true)? {
                out.push(super::dec_memo(read)?);
            }
        }
        Ok(out)
    }

    /// When the earliest pending message is due (wall clock).
    pub fn next_message_due(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.outbox_due.first()?.map(|(k, _)| time_from_key(&k)))
    }

    /// Like [`due_messages`](Self::due_messages), leaving out the messages in `taken` (the
    /// delivery loop's, in flight or awaiting their record): they are skipped by key, never
    /// loaded.
    pub fn due_messages_except(
        &self,
        now: Millis,
        limit: usize,
        taken: &HashSet<MessageKey>,
    ) -> Result<Vec<Message>, StoreError> {
        let end = time_key(now.saturating_add(1));
        let mut out = Vec::new();
        for kv in self.outbox_due.range(..end.to_vec()) {
            if out.len() >= limit {
                break;
            }
            let (_, outbox_k) = kv?;
            if taken.contains(outbox_k.as_ref()) {
                continue;
            }
            if let Some(v) = self.outbox.get(&outbox_k)? {
                out.push(dec(&v)?);
            }
        }
        Ok(out)
    }

    /// Reads due messages (at wall-clock `now`) for a delivery loop that shares its slots out
    /// by tenant and channel: like [`Store::due_messages_except`], but it starts at `from` (a
    /// [`DueScan::resume`] of an earlier scan, or the earliest), looks at most `scan` index
    /// entries, skips — without loading them — the messages of tenants for which `tenant_open`
    /// is false, and keeps only the loaded messages that `accept` takes (it may count them).
    /// Both are given the message's due-index key, where a later scan for it may start.
    /// Skipped messages stay pending, in place, for a later scan.
    pub fn scan_due_messages(
        &self,
        DueRead {
            now,
            limit,
            scan,
            from,
        }: DueRead<'_>,
        taken: &HashSet<MessageKey>,
        tenant_open: &mut dyn FnMut(&str, &[u8]) -> bool,
        accept: &mut dyn FnMut(&Message, &[u8]) -> bool,
    ) -> Result<DueScan, StoreError> {
        let end = time_key(now.saturating_add(1)).to_vec();
        let start = from.map_or_else(Vec::new, <[u8]>::to_vec);
        let mut out = DueScan {
            caught_up: time_key(now).to_vec(),
            ..DueScan::default()
        };
        let mut looked = 0;
        for kv in self.outbox_due.range(start..end) {
            let (due_k, outbox_k) = kv?;
            if out.messages.len() >= limit || looked >= scan {
                out.resume = Some(due_k.to_vec());
                break;
            }
            if taken.contains(outbox_k.as_ref()) {
                continue;
            }
            looked += 1;
            let tenant = outbox_k.split(|b| *b == SEP).next().unwrap_or_default();
            if !tenant_open(&String::from_utf8_lossy(tenant), &due_k) {
                out.skipped = true;
                continue;
            }
            if let Some(v) = self.outbox.get(&outbox_k)? {
                let message: Message = dec(&v)?;
                if accept(&message, &due_k) {
                    out.messages.push(message);
                } else {
                    out.skipped = true;
                }
            }
        }
        Ok(out)
    }

    /// When the earliest pending message not in `taken` falls due strictly after `now` (wall
    /// clock).
    pub fn next_message_due_after(
        &self,
        now: Millis,
        taken: &HashSet<MessageKey>,
    ) -> Result<Option<Millis>, StoreError> {
        for kv in self
            .outbox_due
            .range(time_key(now.saturating_add(1)).to_vec()..)
        {
            let (k, outbox_k) = kv?;
            if !taken.contains(outbox_k.as_ref()) {
                return Ok(Some(time_from_key(&k)));
            }
        }
        Ok(None)
    }

    /// When the earliest pending message not in `taken` is due (wall clock).
    pub fn next_message_due_except(
        &self,
        taken: &HashSet<MessageKey>,
    ) -> Result<Option<Millis>, StoreError> {
        for kv in self.outbox_due.iter() {
            let (k, outbox_k) = kv?;
            if !taken.contains(outbox_k.as_ref()) {
                return Ok(Some(time_from_key(&k)));
            }
        }
        Ok(None)
    }

    /// Releases held messages whose time (journey time) has come, earliest first: they join
    /// the delivery queue at wall-clock `wall`, in one transaction. Returns how many held
    /// entries were due.
    pub fn release_held(
        &self,
        now: Millis,
        wall: Millis,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let end = time_key(now.saturating_add(1));
        let due: Vec<(Vec<u8>, Vec<u8>)> = self
            .held
            .range(..end.to_vec())
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()?;
        (&self.held, &self.outbox, &self.outbox_due).transaction(|(held, outbox, due_t)| {
            for (held_k, outbox_k) in &due {
                if held.remove(held_k.as_slice())?.is_none() {
                    continue;
                }
                let Some(v) = outbox.get(outbox_k)? else {
                    continue;
                };
                let mut message: Message = dec(&v).map_err(abort)?;
                message.status = MessageStatus::Pending;
                message.next_attempt_at = wall;
                outbox.put(outbox_k.as_slice(), enc(&message))?;
                due_t.put(due_key(wall, outbox_k), outbox_k.as_slice())?;
            }
            Ok(())
        })?;
        if !due.is_empty() {
            self.note_due_written(wall);
        }
        Ok(due.len())
    }

    /// When the earliest held message may go out (journey time).
    pub fn next_held_release(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.held.first()?.map(|(k, _)| time_from_key(&k)))
    }

    /// Records one delivery attempt of a message, in one transaction: writes `after` (the same
    /// message as `before`, as the attempt left it), moves its delivery-index entry from
    /// `before`'s next attempt to `after`'s if `after` is still pending (else drops it), lists
    /// a dead `after` as a dead letter, queues `report` (the delivery outcome for the journey)
    /// and bumps `counter` (journey, channel, counter). It does not flush: the caller decides.
    pub fn record_attempt(
        &self,
        before: &Message,
        after: &Message,
        report: Option<&QueuedTrigger>,
        counter: Option<(&str, &str, Counter)>,
    ) -> Result<(), StoreError> {
        let attempt = self.encode_attempt(before, after, report)?;
        let counter = counter.map(|(j, ch, c)| counter_key(&after.tenant, j, ch, c, DELIVERY));
        self.write_attempts(std::slice::from_ref(&attempt), counter.as_slice())
    }

    /// Records many delivery attempts in one transaction, each as
    /// [`record_attempt`](Self::record_attempt) would: all of them or none. The attempts must
    /// be of distinct messages. It does not flush: the caller decides.
    pub fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<(), StoreError> {
        let encoded = attempts
            .iter()
            .map(|a| self.encode_attempt(&a.before, &a.after, a.report.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let counters: Vec<Vec<u8>> = attempts
            .iter()
            .filter_map(|a| {
                let m = &a.after;
                a.counter
                    .map(|c| counter_key(&m.tenant, &m.journey, &m.channel, c, DELIVERY))
            })
            .collect();
        self.write_attempts(&encoded, &counters)
    }

    /// One attempt's writes, encoded outside the transaction (which sled may run more than once).
    fn encode_attempt(
        &self,
        before: &Message,
        after: &Message,
        report: Option<&QueuedTrigger>,
    ) -> Result<EncodedAttempt, StoreError> {
        let key = outbox_key(after);
        Ok(EncodedAttempt {
            old_due: due_key(before.next_attempt_at, &outbox_key(before)),
            new_due: due_at(after).map(|at| (at, due_key(at, &key))),
            dead: (after.status == MessageStatus::Dead).then(|| dead_key(&after.tenant, &after.id)),
            report: report.map(|r| self.queue_entry(r)).transpose()?,
            value: enc(after),
            key,
        })
    }

    /// Writes encoded attempts and bumps `counters` (a key may repeat: the transaction reads
    /// its own writes), in one transaction.
    fn write_attempts(
        &self,
        attempts: &[EncodedAttempt],
        counters: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        (
            &self.outbox,
            &self.outbox_due,
            &self.queue,
            &self.counters,
            &self.dead_letters,
        )
            .transaction(|(outbox, due, queue, counter_tree, dead_letters)| {
                for a in attempts {
                    outbox.put(a.key.as_slice(), a.value.as_slice())?;
                    if let Some(d) = &a.dead {
                        dead_letters.put(d.as_slice(), a.key.as_slice())?;
                    }
                    due.delete(a.old_due.as_slice())?;
                    if let Some((_, d)) = &a.new_due {
                        due.put(d.as_slice(), a.key.as_slice())?;
                    }
                    if let Some(entry) = &a.report {
                        entry.put(queue)?;
                    }
                }
                for ck in counters {
                    bump(counter_tree, ck)?;
                }
                Ok(())
            })?;
        if let Some(at) = attempts
            .iter()
            .filter_map(|a| a.new_due.as_ref())
            .map(|d| d.0)
            .min()
        {
            self.note_due_written(at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::Pending;
    use super::super::{fixtures, temp_store};
    use super::*;
    use crate::model::{DeliveryOutcome, DeliveryReport};

    fn commit_messages(store: &Store, messages: &[Message]) {
        let mut commit = fixtures::commit(store, "t", "alice");
        commit.outbox.extend_from_slice(messages);
        store.commit_trigger(&commit).unwrap();
    }

    fn ids(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.id.as_str()).collect()
    }

    fn delivery_report(m: &Message, outcome: DeliveryOutcome) -> QueuedTrigger {
        QueuedTrigger {
            tenant: m.tenant.clone(),
            customer: m.customer.clone(),
            pending: Pending::Delivery {
                journey: m.journey.clone(),
                run: m.run,
                report: DeliveryReport {
                    message_id: m.id.clone(),
                    channel: m.channel.clone(),
                    template: m.template.clone(),
                    outcome,
                },
            },
        }
    }

    fn queued_reports(store: &Store) -> Vec<DeliveryReport> {
        (0..store.shards())
            .flat_map(|shard| store.queued(shard, 100).unwrap())
            .filter_map(|(_, q)| match q.pending {
                Pending::Delivery { report, .. } => Some(report),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_outbox_never_holds_a_duplicate() {
        let (_dir, store) = temp_store();
        let first = fixtures::message("m1", "email", MessageStatus::Pending, 100);
        commit_messages(&store, std::slice::from_ref(&first));
        // Delivered since; a replayed trigger decides the same message again.
        let delivered = Message {
            status: MessageStatus::Delivered,
            ..first.clone()
        };
        store
            .record_attempt(&first, &delivered, None, None)
            .unwrap();
        let mut replay = first.clone();
        replay.payload = serde_json::json!({"replayed": true});
        commit_messages(&store, &[replay]);
        let messages = store.messages("t", "alice").unwrap();
        assert_eq!(ids(&messages), ["m1"]);
        assert_eq!(messages[0].status, MessageStatus::Delivered);
        assert!(store.due_messages(i64::MAX - 1, 10).unwrap().is_empty());
    }

    // Issue 10: the delivery feeder reads from where it stopped, and from the earliest due
    // time committed since.
    #[test]
    fn the_earliest_due_time_committed_is_noted_once_for_the_feeder() {
        let (_dir, store) = temp_store();
        assert_eq!(store.take_due_written(), None);
        let later = fixtures::message("a", "email", MessageStatus::Pending, 300);
        let earlier = fixtures::message("b", "email", MessageStatus::Pending, 200);
        let suppressed = fixtures::message("c", "email", MessageStatus::Suppressed, 100);
        commit_messages(&store, &[later.clone(), earlier.clone(), suppressed]);
        assert_eq!(store.take_due_written(), Some(200));
        assert_eq!(store.take_due_written(), None, "taken once");
        // A retry recorded for later is noted at its new time; a delivery is not noted.
        let retry = Message {
            attempts: 1,
            next_attempt_at: 900,
            ..later.clone()
        };
        let delivered = Message {
            status: MessageStatus::Delivered,
            ..earlier.clone()
        };
        store.record_attempt(&later, &retry, None, None).unwrap();
        store
            .record_attempt(&earlier, &delivered, None, None)
            .unwrap();
        assert_eq!(store.take_due_written(), Some(900));
        assert_eq!(store.take_due_written(), None);
    }

    #[test]
    fn messages_list_oldest_first_and_only_pending_ones_are_due() {
        let (_dir, store) = temp_store();
        let mut later = fixtures::message("a-later", "email", MessageStatus::Pending, 300);
        later.created_at = 20;
        let mut earlier = fixtures::message("b-earlier", "email", MessageStatus::Pending, 200);
        earlier.created_at = 10;
        let suppressed = fixtures::message("c", "email", MessageStatus::Suppressed, 100);
        commit_messages(&store, &[later, earlier, suppressed]);
        assert_eq!(
            ids(&store.messages("t", "alice").unwrap()),
            ["c", "b-earlier", "a-later"]
        );
        assert_eq!(store.next_message_due().unwrap(), Some(200));
        assert_eq!(ids(&store.due_messages(250, 10).unwrap()), ["b-earlier"]);
        assert_eq!(
            ids(&store.due_messages(300, 10).unwrap()),
            ["b-earlier", "a-later"]
        );
        assert_eq!(
            store.message("t", "alice", "c").unwrap().map(|m| m.status),
            Some(MessageStatus::Suppressed)
        );
    }

    #[test]
    fn a_final_outcome_queues_its_report_and_leaves_the_due_index_together() {
        let (_dir, store) = temp_store();
        let before = fixtures::message("m1", "email", MessageStatus::Pending, 100);
        commit_messages(&store, std::slice::from_ref(&before));
        let after = Message {
            status: MessageStatus::Delivered,
            attempts: 1,
            provider_id: Some("p-1".into()),
            delivered_at: Some(150),
            ..before.clone()
        };
        let outcome = DeliveryOutcome::Delivered {
            provider_id: Some("p-1".into()),
        };
        let report = delivery_report(&after, outcome.clone());
        store
            .record_attempt(
                &before,
                &after,
                Some(&report),
                Some(("welcome", "email", Counter::Delivered)),
            )
            .unwrap();
        assert!(store.due_messages(i64::MAX - 1, 10).unwrap().is_empty());
        assert_eq!(store.next_message_due().unwrap(), None);
        let reports = queued_reports(&store);
        assert_eq!(reports.len(), 1);
        assert_eq!(
            (reports[0].message_id.as_str(), &reports[0].outcome),
            ("m1", &outcome)
        );
        let stored = store.message("t", "alice", "m1").unwrap().unwrap();
        assert_eq!(stored.status, MessageStatus::Delivered);
        assert_eq!(stored.provider_id.as_deref(), Some("p-1"));
        assert_eq!(store.channel_stats("t", "welcome").unwrap()[0].delivered, 1);
    }

    #[test]
    fn a_retry_moves_the_due_index_entry_and_reports_nothing() {
        let (_dir, store) = temp_store();
        let before = fixtures::message("m1", "email", MessageStatus::Pending, 100);
        commit_messages(&store, std::slice::from_ref(&before));
        let after = Message {
            attempts: 1,
            next_attempt_at: 5_000,
            last_error: Some("503".into()),
            ..before.clone()
        };
        store.record_attempt(&before, &after, None, None).unwrap();
        assert!(store.due_messages(4_999, 10).unwrap().is_empty());
        assert_eq!(store.next_message_due().unwrap(), Some(5_000));
        let due = store.due_messages(5_000, 10).unwrap();
        assert_eq!(ids(&due), ["m1"]);
        assert_eq!(due[0].last_error.as_deref(), Some("503"));
        assert!(queued_reports(&store).is_empty());
    }

    #[tokio::test]
    async fn a_dead_letter_is_listed_and_requeued_only_for_its_channel() {
        let (_dir, store) = temp_store();
        let email = fixtures::message("m-email", "email", MessageStatus::Pending, 100);
        let sms = fixtures::message("m-sms", "sms", MessageStatus::Pending, 100);
        commit_messages(&store, &[email.clone(), sms.clone()]);
        for before in [&email, &sms] {
            let dead = Message {
                status: MessageStatus::Dead,
                attempts: 5,
                last_error: Some("gone".into()),
                ..before.clone()
            };
            let report = delivery_report(
                &dead,
                DeliveryOutcome::Failed {
                    reason: "gone".into(),
                },
            );
            store
                .record_attempt(before, &dead, Some(&report), None)
                .unwrap();
        }
        assert_eq!(
            ids(&store.dead_letters("t", 10).unwrap()),
            ["m-email", "m-sms"]
        );
        assert!(store.dead_letters("u", 10).unwrap().is_empty());
        assert!(store.due_messages(i64::MAX - 1, 10).unwrap().is_empty());

        let requeued = store
            .retry_dead_letters("t", &[], Some("sms"), 9_000)
            .await
            .unwrap();
        assert_eq!(ids(&requeued), ["m-sms"]);
        assert_eq!(
            (requeued[0].status, requeued[0].attempts),
            (MessageStatus::Pending, 0)
        );
        assert_eq!(ids(&store.dead_letters("t", 10).unwrap()), ["m-email"]);
        assert_eq!(ids(&store.due_messages(9_000, 10).unwrap()), ["m-sms"]);

        // Named ids: a message that is not a dead letter is skipped.
        let requeued = store
            .retry_dead_letters("t", &["m-sms".into(), "m-email".into()], None, 9_500)
            .await
            .unwrap();
        assert_eq!(ids(&requeued), ["m-email"]);
        assert!(store.dead_letters("t", 10).unwrap().is_empty());
    }

    #[test]
    fn a_batch_of_attempts_is_recorded_as_each_would_be_alone() {
        let (_dir, store) = temp_store();
        let pending = |id: &str| fixtures::message(id, "email", MessageStatus::Pending, 100);
        let (one, two, flaky, gone) = (pending("m1"), pending("m2"), pending("m3"), pending("m4"));
        commit_messages(
            &store,
            &[one.clone(), two.clone(), flaky.clone(), gone.clone()],
        );
        let delivered = |before: &Message, provider: &str| {
            let after = Message {
                status: MessageStatus::Delivered,
                attempts: 1,
                provider_id: Some(provider.into()),
                ..before.clone()
            };
            let outcome = DeliveryOutcome::Delivered {
                provider_id: Some(provider.into()),
            };
            AttemptRecord {
                report: Some(delivery_report(&after, outcome)),
                before: before.clone(),
                after,
                counter: Some(Counter::Delivered),
            }
        };
        let retry = AttemptRecord {
            before: flaky.clone(),
            after: Message {
                attempts: 1,
                next_attempt_at: 5_000,
                last_error: Some("503".into()),
                ..flaky.clone()
            },
            report: None,
            counter: None,
        };
        let dead_after = Message {
            status: MessageStatus::Dead,
            attempts: 1,
            last_error: Some("400".into()),
            ..gone.clone()
        };
        let dead = AttemptRecord {
            report: Some(delivery_report(
                &dead_after,
                DeliveryOutcome::Failed {
                    reason: "400".into(),
                },
            )),
            before: gone.clone(),
            after: dead_after,
            counter: Some(Counter::Failed),
        };
        store
            .record_attempts(&[delivered(&one, "p-1"), delivered(&two, "p-2"), retry, dead])
            .unwrap();

        let status = |id: &str| store.message("t", "alice", id).unwrap().unwrap().status;
        assert_eq!(
            ["m1", "m2", "m3", "m4"].map(status),
            [
                MessageStatus::Delivered,
                MessageStatus::Delivered,
                MessageStatus::Pending,
                MessageStatus::Dead
            ]
        );
        assert!(store.due_messages(4_999, 10).unwrap().is_empty());
        assert_eq!(ids(&store.due_messages(5_000, 10).unwrap()), ["m3"]);
        assert_eq!(ids(&store.dead_letters("t", 10).unwrap()), ["m4"]);
        let mut reported: Vec<String> = queued_reports(&store)
            .into_iter()
            .map(|r| r.message_id)
            .collect();
        reported.sort();
        assert_eq!(reported, ["m1", "m2", "m4"]);
        // Two deliveries of one journey's channel in one transaction count two.
        let stats = store.channel_stats("t", "welcome").unwrap();
        assert_eq!((stats[0].delivered, stats[0].failed), (2, 1));

        store.record_attempts(&[]).unwrap();
    }

    #[test]
    fn messages_taken_by_the_delivery_loop_are_skipped_when_reading_what_is_due() {
        let (_dir, store) = temp_store();
        let at =
            |id: &str, due: Millis| fixtures::message(id, "email", MessageStatus::Pending, due);
        let (a, b, c) = (at("a", 100), at("b", 200), at("c", 300));
        commit_messages(&store, &[a.clone(), b.clone(), c.clone()]);
        let mut taken = HashSet::new();
        assert_eq!(
            ids(&store.due_messages_except(300, 2, &taken).unwrap()),
            ["a", "b"]
        );
        assert_eq!(store.next_message_due_except(&taken).unwrap(), Some(100));

        taken.insert(a.key());
        taken.insert(c.key());
        assert_eq!(
            ids(&store.due_messages_except(300, 2, &taken).unwrap()),
            ["b"]
        );
        assert_eq!(store.next_message_due_except(&taken).unwrap(), Some(200));
        taken.insert(b.key());
        assert!(store
            .due_messages_except(300, 2, &taken)
            .unwrap()
            .is_empty());
        assert_eq!(store.next_message_due_except(&taken).unwrap(), None);
    }

    #[test]
    fn a_due_scan_passes_over_closed_tenants_and_refused_messages_and_resumes_where_it_stopped() {
        let (_dir, store) = temp_store();
        let at = |tenant: &str, id: &str, due: Millis| Message {
            tenant: tenant.into(),
            ..fixtures::message(id, "email", MessageStatus::Pending, due)
        };
        let messages = [
            at("noisy", "n1", 100),
            at("noisy", "n2", 110),
            at("quiet", "q1", 120),
            at("quiet", "q2", 130),
            at("quiet", "q3", 140),
            at("quiet", "later", 900),
        ];
        for m in &messages {
            let mut commit = fixtures::commit(&store, &m.tenant, &m.customer);
            commit.outbox.push(m.clone());
            store.commit_trigger(&commit).unwrap();
        }
        let taken = HashSet::new();
        let read = |scan, from| DueRead {
            now: 500,
            limit: 10,
            scan,
            from,
        };
        let mut open = |tenant: &str, _: &[u8]| tenant != "noisy";
        let mut refuse_q2 = |m: &Message, _: &[u8]| m.id != "q2";
        let first = store
            .scan_due_messages(read(3, None), &taken, &mut open, &mut refuse_q2)
            .unwrap();
        assert_eq!(ids(&first.messages), ["q1"], "three entries looked at");
        assert!(first.skipped);
        let rest = store
            .scan_due_messages(
                read(3, first.resume.as_deref()),
                &taken,
                &mut open,
                &mut refuse_q2,
            )
            .unwrap();
        assert_eq!(ids(&rest.messages), ["q3"]);
        assert_eq!(rest.resume, None, "nothing more is due");
        assert_eq!(
            store.next_message_due_after(500, &taken).unwrap(),
            Some(900)
        );
        // The messages passed over are still there for the next scan.
        let again = store
            .scan_due_messages(read(100, None), &taken, &mut |_, _| true, &mut |_, _| true)
            .unwrap();
        assert_eq!(ids(&again.messages), ["n1", "n2", "q1", "q2", "q3"]);
    }

    #[test]
    fn held_messages_are_released_in_order_of_their_release_time() {
        let (_dir, store) = temp_store();
        let held = |id: &str, release_at: Millis| Message {
            release_at: Some(release_at),
            ..fixtures::message(id, "email", MessageStatus::Held, 0)
        };
        commit_messages(
            &store,
            &[held("late", 300), held("early", 100), held("mid", 200)],
        );
        // Held messages are not due for delivery, whatever their next attempt says.
        assert!(store.due_messages(i64::MAX - 1, 10).unwrap().is_empty());
        assert_eq!(store.next_held_release().unwrap(), Some(100));

        assert_eq!(store.release_held(250, 7_000, 1).unwrap(), 1);
        assert_eq!(store.release_held(250, 7_001, 10).unwrap(), 1);
        assert_eq!(store.next_held_release().unwrap(), Some(300));
        let due = store.due_messages(i64::MAX - 1, 10).unwrap();
        assert_eq!(ids(&due), ["early", "mid"]);
        assert_eq!(
            due.iter()
                .map(|m| (m.status, m.next_attempt_at))
                .collect::<Vec<_>>(),
            [
                (MessageStatus::Pending, 7_000),
                (MessageStatus::Pending, 7_001)
            ]
        );
        assert_eq!(store.release_held(1_000, 8_000, 10).unwrap(), 1);
        assert_eq!(store.next_held_release().unwrap(), None);
    }
}
