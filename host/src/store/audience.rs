//! Audience watches (issue 12): what the host remembers per customer and audience trigger
//! (`crate::audience::Watch`), and a time-ordered index of the ones with a due time. One tree,
//! `audience`, two kinds of key:
//!
//! - `w␟tenant␟customer␟journey␟trigger` → [`Watch`];
//! - `d` + due (time key) + `␟tenant␟customer␟journey␟trigger` → nothing: the due index, read
//!   from its start like the timers tree, so a tick reads the due entries and nothing else.
//!
//! A watch and its due entry are written together with the trigger that changed them
//! ([`AudienceWrite`], in [`commit_triggers`](super::Store::commit_triggers)); the scheduler
//! moves due entries into the trigger queue ([`Store::fire_due_audience`]) in one transaction,
//! like timers. A watch keeps the due time it was indexed under, so the worker knows a fired
//! entry it no longer names for stale.

use super::keys::{key, time_from_key, time_key};
use super::kv::Transactional;
use super::kv::TransactionalTree;
use super::queue::{Pending, QueuedTrigger};
use super::{dec, enc, Store, StoreError};
use crate::audience::Watch;
use crate::model::Millis;
use sled::transaction::ConflictableTransactionError;

/// A change to one watch, committed with its trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceWrite {
    pub customer: String,
    pub journey: String,
    pub trigger: String,
    /// The due time the stored watch was indexed under (its entry is removed if it moves).
    pub old_due: Option<Millis>,
    /// The new watch; `None` removes it.
    pub watch: Option<Watch>,
}

fn watch_key(tenant: &str, customer: &str, journey: &str, trigger: &str) -> Vec<u8> {
    key(&[
        b"w",
        tenant.as_bytes(),
        customer.as_bytes(),
        journey.as_bytes(),
        trigger.as_bytes(),
    ])
}

fn due_key(due: Millis, tenant: &str, customer: &str, journey: &str, trigger: &str) -> Vec<u8> {
    let mut k = b"d".to_vec();
    k.extend_from_slice(&time_key(due));
    k.extend(key(&[
        b"",
        tenant.as_bytes(),
        customer.as_bytes(),
        journey.as_bytes(),
        trigger.as_bytes(),
    ]));
    k
}

/// The parts after the time of a due key: tenant, customer, journey, trigger.
fn due_parts(k: &[u8]) -> Option<(Millis, [String; 4])> {
    let time = time_from_key(k.get(1..9)?);
    let rest = k.get(10..)?;
    let parts: Vec<String> = rest
        .split(|b| *b == crate::hash::SEP)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let parts: [String; 4] = parts.try_into().ok()?;
    Some((time, parts))
}

/// Applies one trigger's watch changes inside the commit's transaction.
pub(super) fn apply(
    tree: &TransactionalTree,
    tenant: &str,
    w: &AudienceWrite,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let new_due = w.watch.as_ref().and_then(|x| x.due);
    if let Some(old) = w.old_due.filter(|old| Some(*old) != new_due) {
        tree.delete(due_key(old, tenant, &w.customer, &w.journey, &w.trigger))?;
    }
    if let Some(due) = new_due.filter(|due| Some(*due) != w.old_due) {
        tree.put(
            due_key(due, tenant, &w.customer, &w.journey, &w.trigger),
            &[],
        )?;
    }
    let k = watch_key(tenant, &w.customer, &w.journey, &w.trigger);
    match &w.watch {
        Some(watch) => tree.insert(k, enc(watch))?,
        None => tree.remove(k)?,
    };
    Ok(())
}

impl Store {
    /// One customer's watch of one audience trigger.
    pub fn audience_watch(
        &self,
        tenant: &str,
        customer: &str,
        journey: &str,
        trigger: &str,
    ) -> Result<Option<Watch>, StoreError> {
        self.audience
            .get(watch_key(tenant, customer, journey, trigger))?
            .map(|v| dec(&v))
            .transpose()
    }

    // Identity merge moves audience watches (issue 12, polish).
    /// Every watch of one customer, as (journey, trigger, watch): read when an identity merge
    /// moves them (bounded by the live journeys' audience triggers).
    pub fn audience_watches(
        &self,
        tenant: &str,
        customer: &str,
    ) -> Result<Vec<(String, String, Watch)>, StoreError> {
        let start = super::keys::prefix(&[b"w", tenant.as_bytes(), customer.as_bytes()]);
        let mut out = Vec::new();
        for kv in self.audience.scan_prefix(&start) {
            let (k, v) = kv?;
            let mut parts = k[start.len()..].split(|b| *b == crate::hash::SEP);
            let (Some(journey), Some(trigger), None) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            out.push((
                String::from_utf8_lossy(journey).into_owned(),
                String::from_utf8_lossy(trigger).into_owned(),
                dec(&v)?,
            ));
        }
        Ok(out)
    }

    /// When the earliest audience due entry is.
    pub fn next_audience_due(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self
            .audience
            .scan_prefix(b"d")
            .next()
            .transpose()?
            .and_then(|(k, _)| due_parts(&k))
            .map(|(t, _)| t))
    }

    /// Moves up to `limit` audience entries due at or before `now` into their customers' queue
    /// shards, in one transaction (an entry is either indexed or queued). Reads only the due
    /// entries: the index is ordered by time. Returns how many it found.
    pub fn fire_due_audience(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        let mut end = b"d".to_vec();
        end.extend_from_slice(&time_key(now.saturating_add(1)));
        let due: Vec<(Vec<u8>, QueuedTrigger)> = self
            .audience
            .range(b"d".to_vec()..end)
            .take(limit)
            .filter_map(|kv| match kv {
                Ok((k, _)) => due_parts(&k).map(|(due, [tenant, customer, journey, trigger])| {
                    Ok((
                        k.to_vec(),
                        QueuedTrigger {
                            tenant,
                            customer,
                            pending: Pending::Audience {
                                journey,
                                trigger,
                                due,
                            },
                        },
                    ))
                }),
                Err(e) => Some(Err(StoreError::from(e))),
            })
            .collect::<Result<_, StoreError>>()?;
        if due.is_empty() {
            // The common tick: one range read that found nothing, no transaction.
            return Ok(0);
        }
        let entries = due
            .iter()
            .map(|(_, q)| self.queue_entry(q))
            .collect::<Result<Vec<_>, StoreError>>()?;
        (&self.audience, &self.queue).transaction(|(audience, queue)| {
            for ((k, _), entry) in due.iter().zip(&entries) {
                if audience.remove(k.as_slice())?.is_some() {
                    queue.put(entry.key.as_slice(), entry.value.as_slice())?;
                }
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        Ok(due.len())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};
    use super::*;

    fn write(customer: &str, old_due: Option<Millis>, due: Option<Millis>) -> AudienceWrite {
        AudienceWrite {
            customer: customer.into(),
            journey: "win-back".into(),
            trigger: "inactive_30d".into(),
            old_due,
            watch: Some(Watch {
                due,
                last_seen: Some(1),
                ..Watch::default()
            }),
        }
    }

    #[test]
    fn watches_commit_with_their_trigger_and_due_ones_fire_into_the_queue_in_time_order() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "ada");
        commit.audience.push(write("ada", None, Some(50)));
        commit.audience.push(write("bob", None, Some(10)));
        store.commit_trigger(&commit).unwrap();
        assert_eq!(store.next_audience_due().unwrap(), Some(10));
        // Moving a deadline replaces its index entry.
        let mut moved = fixtures::commit(&store, "t", "ada");
        moved.audience.push(write("bob", Some(10), Some(70)));
        store.commit_trigger(&moved).unwrap();
        assert_eq!(store.next_audience_due().unwrap(), Some(50));
        let w = store
            .audience_watch("t", "bob", "win-back", "inactive_30d")
            .unwrap();
        assert_eq!(w.and_then(|w| w.due), Some(70));
        // Only what is due fires.
        assert_eq!(store.fire_due_audience(49, 100).unwrap(), 0);
        assert_eq!(store.fire_due_audience(60, 100).unwrap(), 1);
        let queued = store
            .queued(super::super::shard_of("t", "ada", store.shards()), 10)
            .unwrap();
        let fired: Vec<_> = queued
            .iter()
            .filter_map(|(_, q)| match &q.pending {
                Pending::Audience { trigger, due, .. } => {
                    Some((q.customer.clone(), trigger.clone(), *due))
                }
                _ => None,
            })
            .collect();
        assert_eq!(fired, [("ada".to_string(), "inactive_30d".to_string(), 50)]);
        assert_eq!(store.next_audience_due().unwrap(), Some(70));
    }
}
