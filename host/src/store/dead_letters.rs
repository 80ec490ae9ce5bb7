//! Dead letters: the messages whose delivery failed for good, by `tenant␟message id` in the
//! `dead_letters` tree (→ their outbox key), listed and requeued here; a message becomes one
//! when its attempt is recorded dead ([`Store::record_attempts`]).

use super::keys::{key, prefix};
use super::kv::Transactional;
use super::outbox::{dead_key, due_key, Message, MessageStatus};
use super::{abort, dec, enc, Store, StoreError};
use crate::model::Millis;

impl Store {
    /// A tenant's dead letters, oldest message id first, at most `limit`.
    pub fn dead_letters(&self, tenant: &str, limit: usize) -> Result<Vec<Message>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .dead_letters
            .scan_prefix(prefix(&[tenant.as_bytes()]))
            .take(limit)
        {
            let (_, outbox_k) = kv?;
            if let Some(v) = self.outbox.get(&outbox_k)? {
                out.push(dec(&v)?);
            }
        }
        Ok(out)
    }

    /// Dashboard (issue 14): a page of the tenant's dead letters in id order, those after
    /// message `after` (exclusive), at most `limit`; and whether more follow.
    pub fn dead_letters_after(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        use std::ops::Bound;
        let start = prefix(&[tenant.as_bytes()]);
        let from = match after {
            Some(id) => Bound::Excluded(key(&[tenant.as_bytes(), id.as_bytes()])),
            None => Bound::Included(start.clone()),
        };
        let mut out = Vec::new();
        for kv in self.dead_letters.range((from, Bound::Unbounded)) {
            let (k, outbox_k) = kv?;
            if !k.starts_with(&start) {
                break;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            if let Some(v) = self.outbox.get(&outbox_k)? {
                out.push(dec(&v)?);
            }
        }
        Ok((out, false))
    }

    /// Puts dead letters back in the delivery queue with a fresh attempt budget, due at `now`
    /// (wall clock), and flushes. `ids` empty means every dead letter of the tenant; `channel`
    /// narrows it. Returns the messages requeued; ids that are not dead letters are skipped.
    pub async fn retry_dead_letters(
        &self,
        tenant: &str,
        ids: &[String],
        channel: Option<&str>,
        now: Millis,
    ) -> Result<Vec<Message>, StoreError> {
        let requeued = if ids.is_empty() {
            let dead_keys: Vec<Vec<u8>> = self
                .dead_letters
                .scan_prefix(prefix(&[tenant.as_bytes()]))
                .keys()
                .map(|k| k.map(|k| k.to_vec()))
                .collect::<Result<_, _>>()?;
            let mut requeued = Vec::new();
            for dead_k in dead_keys {
                requeued.extend(self.requeue_dead(&dead_k, channel, now)?);
            }
            requeued
        } else {
            self.requeue_dead_letters(tenant, ids, channel, now)?
        };
        self.flush().await?;
        Ok(requeued)
    }

    /// As [`Store::retry_dead_letters`] for the given ids, without the flush: one bounded
    /// step of a retry that the API runs off the async workers (the caller flushes).
    pub fn requeue_dead_letters(
        &self,
        tenant: &str,
        ids: &[String],
        channel: Option<&str>,
        now: Millis,
    ) -> Result<Vec<Message>, StoreError> {
        let mut requeued = Vec::new();
        for id in ids {
            requeued.extend(self.requeue_dead(&dead_key(tenant, id), channel, now)?);
        }
        Ok(requeued)
    }

    /// One page of a retry of every dead letter of `tenant` (of `channel`): looks at up to
    /// `limit` dead letters after `after` (a key this returned before; `None`: the first) and
    /// requeues those that match, without the flush. Returns the messages requeued and where
    /// the next page starts (`None`: that was the last).
    pub fn requeue_dead_letter_page(
        &self,
        tenant: &str,
        after: Option<&[u8]>,
        channel: Option<&str>,
        now: Millis,
        limit: usize,
    ) -> Result<(Vec<Message>, Option<Vec<u8>>), StoreError> {
        let start = prefix(&[tenant.as_bytes()]);
        let keys: Vec<Vec<u8>> = match after {
            Some(after) => self
                .dead_letters
                .range::<&[u8], _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .keys()
                .take_while(|k| k.as_ref().map_or(true, |k| k.starts_with(&start)))
                .take(limit)
                .map(|k| k.map(|k| k.to_vec()))
                .collect::<Result<_, _>>()?,
            None => self
                .dead_letters
                .scan_prefix(&start)
                .keys()
                .take(limit)
                .map(|k| k.map(|k| k.to_vec()))
                .collect::<Result<_, _>>()?,
        };
        let mut requeued = Vec::new();
        for dead_k in &keys {
            requeued.extend(self.requeue_dead(dead_k, channel, now)?);
        }
        let next = (keys.len() == limit)
            .then(|| keys.last().cloned())
            .flatten();
        Ok((requeued, next))
    }

    /// Requeues the dead letter at `dead_k` (if it is one, of `channel` if given).
    fn requeue_dead(
        &self,
        dead_k: &[u8],
        channel: Option<&str>,
        now: Millis,
    ) -> Result<Option<Message>, StoreError> {
        // Most ids a client names in vain cost a read, not a transaction.
        if !self.dead_letters.contains_key(dead_k)? {
            return Ok(None);
        }
        Ok(
            (&self.dead_letters, &self.outbox, &self.outbox_due).transaction(
                |(dead_letters, outbox, due)| {
                    let Some(outbox_k) = dead_letters.get(dead_k)? else {
                        return Ok(None);
                    };
                    let Some(v) = outbox.get(&outbox_k)? else {
                        return Ok(None);
                    };
                    let mut message: Message = dec(&v).map_err(abort)?;
                    if channel.is_some_and(|c| c != message.channel) {
                        return Ok(None);
                    }
                    message.status = MessageStatus::Pending;
                    message.attempts = 0;
                    message.next_attempt_at = now;
                    dead_letters.delete(dead_k)?;
                    outbox.put(outbox_k.as_ref(), enc(&message))?;
                    due.put(due_key(now, &outbox_k), outbox_k.as_ref())?;
                    Ok(Some(message))
                },
            )?,
        )
        .inspect(|requeued| {
            if requeued.is_some() {
                self.note_due_written(now);
            }
        })
    }
}
