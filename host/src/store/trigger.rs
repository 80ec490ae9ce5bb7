//! [`Store::commit_triggers`]: everything a batch of processed triggers changes, in one
//! transaction with the triggers' removal from the queue. It is the one write that spans record
//! kinds (customer, enrollments, timers, messages, tasks, counters, report cells), so a crash
//! either applied a batch wholly or not at all, and an unprocessed trigger is simply processed
//! again after restart.

use super::counters::{add, counter_key};
use super::customers::customer_key;
use super::enrollments::enrollment_key;
use super::kv::{Memo, Transactional, TransactionalTree};
use super::outbox::{self, Message, NewMessage};
use super::tasks::{task_key, Task};
use super::timers::{timer_key, TimerRecord};
use super::{enc, memo, Store, StoreError};
use crate::model::{Counter, Customer, Enrollment};
use crate::report::cells::CellDelta;
use std::collections::BTreeMap;

/// Everything one trigger changes, committed atomically with its removal from the queue.
#[derive(Debug, Default)]
pub struct TriggerCommit {
    pub tenant: String,
    /// The processed trigger's key in the queue (from [`Store::queued`]).
    pub queue_key: Vec<u8>,
    pub customer: Option<Customer>,
    pub enrollments: Vec<Enrollment>,
    pub timers_set: Vec<TimerRecord>,
    pub timers_cancelled: Vec<TimerRecord>,
    /// New messages; one whose id is stored already is left as it is.
    pub outbox: Vec<Message>,
    pub tasks: Vec<Task>,
    /// (journey, channel, counter) increments for the `stats` import.
    pub counters: Vec<(String, String, Counter)>,
    /// What writing `enrollments` does to the report's cells (each write's new tally minus the
    /// one it replaces); added up per cell, under the committing shard.
    pub report_deltas: Vec<CellDelta>,
    /// What a `migrate` trigger did to its enrollment ([`super::migrations`]).
    pub migration_outcomes: Vec<super::MigrationOutcome>,
    /// Dashboard (issue 14): for a logged event's trigger, its customer: the event is indexed
    /// under them (`customer_events`), its sequence number read from `queue_key`.
    pub event_customer: Option<String>,
    /// Account journeys (issue 12): triggers this one queues for other subjects (a member's
    /// event forwarded to their account's shard), inserted in the same transaction, so each is
    /// queued exactly once whatever crashes.
    pub queued: Vec<super::QueuedTrigger>,
    /// Audience triggers (issue 12): the customers' watches this trigger changed.
    pub audience: Vec<super::AudienceWrite>,
    /// Accounts over several partitions (issue 16): an account's members and traits kept on
    /// its partition, and the copies of its traits on its members'.
    pub accounts: Vec<super::accounts::AccountWrite>,
}

/// A record to write: its key, its bytes, and the record itself when the store keeps it.
type Kept = (Vec<u8>, Vec<u8>, Option<Memo>);

fn put_kept(
    tree: &TransactionalTree,
    (k, v, memo): &Kept,
) -> Result<(), sled::transaction::UnabortableTransactionError> {
    match memo {
        Some(memo) => tree.put_memo(k.as_slice(), v.as_slice(), memo.clone()),
        None => tree.put(k.as_slice(), v.as_slice()),
    }
}

impl Store {
    /// Commits every effect of one trigger together with its removal from the queue; see
    /// [`Store::commit_triggers`].
    pub fn commit_trigger(&self, c: &TriggerCommit) -> Result<(), StoreError> {
        self.commit_triggers(std::slice::from_ref(c))
    }

    /// Commits the effects of a batch of triggers, in order, together with their removal from
    /// the queue, in one transaction: a crash applied the whole batch or none of it. Messages
    /// already present (a retried trigger might produce one) are left as they are: the outbox
    /// never holds a duplicate. Counter increments are summed before they are written. Does not
    /// flush: the shard worker flushes once per batch.
    pub fn commit_triggers(&self, batch: &[TriggerCommit]) -> Result<(), StoreError> {
        let mut queue_keys = Vec::with_capacity(batch.len());
        let mut customers: Vec<Kept> = Vec::new();
        let mut enrollments: Vec<Kept> = Vec::new();
        let mut timers_cancelled = Vec::new();
        let mut timers_set = Vec::new();
        let mut messages = Vec::new();
        let mut tasks = Vec::new();
        let mut outcomes = Vec::new();
        let mut customer_events = Vec::new();
        let mut counters: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut audience = Vec::new(); // Audience triggers (issue 12)
        let mut accounts = Vec::new(); // Accounts over several partitions (issue 16)
                                       // Report deltas by tenant and committing shard (a worker's batch is all one shard),
                                       // added up per cell below: each cell a batch touches is written once.
        let mut deltas: BTreeMap<(&str, u16), Vec<&CellDelta>> = BTreeMap::new();
        // A scratch store (a backtest's replay) is never read by the dashboard: its customers'
        // events go unindexed.
        let index_events = !self.is_scratch();
        // A scratch store keeps each customer and enrollment it writes decoded beside its
        // bytes, for the next trigger to read without decoding (`kv::Memo`).
        let keep = self.is_scratch();
        for c in batch {
            queue_keys.push(c.queue_key.as_slice());
            audience.extend(c.audience.iter().map(|w| (c.tenant.as_str(), w)));
            accounts.extend(c.accounts.iter().map(|w| (c.tenant.as_str(), w)));
            let indexed = c.event_customer.as_ref().filter(|_| index_events);
            if let (Some(customer), Some(seq)) = (indexed, c.queue_key.get(2..)) {
                customer_events.push(super::customer_events::customer_event_key(
                    &c.tenant, customer, seq,
                ));
            }
            if let Some(cu) = &c.customer {
                let memo = keep.then(|| memo(cu));
                customers.push((customer_key(&c.tenant, &cu.id), enc(cu), memo));
            }
            for e in &c.enrollments {
                let k = enrollment_key(&c.tenant, &e.customer, &e.journey, e.run);
                enrollments.push((k, enc(e), keep.then(|| memo(e))));
            }
            // Cancellations before settings, trigger by trigger: a timer a later trigger of the
            // batch sets again stays set.
            timers_cancelled.extend(
                c.timers_cancelled
                    .iter()
                    .map(|t| (timers_set.len(), timer_key(t))),
            );
            timers_set.extend(
                c.timers_set
                    .iter()
                    .map(|t| (timer_key(t), enc(t), keep.then(|| memo(t)))),
            );
            messages.extend(c.outbox.iter().map(|m| NewMessage::new(m, keep)));
            tasks.extend(c.tasks.iter().map(|t| (task_key(&c.tenant, &t.id), enc(t))));
            outcomes.extend(
                c.migration_outcomes
                    .iter()
                    .map(|o| (super::migrations::outcome_key(&c.tenant, o), enc(o))),
            );
            let shard = super::queue::shard_of_key(&c.queue_key);
            deltas
                .entry((c.tenant.as_str(), shard))
                .or_default()
                .extend(&c.report_deltas);
            for (journey, channel, counter) in &c.counters {
                *counters
                    .entry(counter_key(
                        &c.tenant,
                        journey,
                        channel,
                        *counter,
                        super::queue::shard_of_key(&c.queue_key),
                    ))
                    .or_default() += 1;
            }
        }
        // Staged outside the transaction: sled hands out sequence numbers outside transactions.
        let queued = batch
            .iter()
            .flat_map(|c| &c.queued)
            .map(|t| self.queue_entry(t))
            .collect::<Result<Vec<_>, _>>()?;
        let deltas: Vec<((&str, u16), _)> = deltas
            .into_iter()
            .map(|(at, d)| (at, crate::report::cells::merge(d)))
            .collect();
        (
            &self.queue,
            &self.customers,
            &self.enrollments,
            &self.timers,
            &self.outbox,
            &self.outbox_due,
            &self.tasks,
            &self.counters,
            &self.held,
            &self.report_cells,
            &self.migrations,
            &self.customer_events,
            &self.audience,
            &self.accounts,
        )
            .transaction(
                |(
                    queue,
                    customers_t,
                    enrollments_t,
                    timers,
                    outbox_t,
                    due,
                    tasks_t,
                    counters_t,
                    held,
                    report_t,
                    migrations_t,
                    customer_events_t,
                    audience_t,
                    accounts_t,
                )| {
                    for k in &queue_keys {
                        queue.delete(*k)?;
                    }
                    for entry in &queued {
                        entry.put(queue)?;
                    }
                    // Later writes of the same key (one customer twice in a batch) win.
                    for entry in &customers {
                        put_kept(customers_t, entry)?;
                    }
                    for entry in &enrollments {
                        put_kept(enrollments_t, entry)?;
                    }
                    // A cancellation applies to the timers set before it in the batch, not after.
                    let mut set = timers_set.iter().enumerate().peekable();
                    for (before, k) in &timers_cancelled {
                        while let Some((_, entry)) = set.next_if(|(i, _)| i < before) {
                            put_kept(timers, entry)?;
                        }
                        timers.delete(k.as_slice())?;
                    }
                    for (_, entry) in set {
                        put_kept(timers, entry)?;
                    }
                    for m in &messages {
                        outbox::insert_new(outbox_t, due, held, m)?;
                    }
                    for (k, v) in &tasks {
                        tasks_t.put(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &outcomes {
                        migrations_t.put(k.as_slice(), v.as_slice())?;
                    }
                    for (k, by) in &counters {
                        add(counters_t, k, *by)?;
                    }
                    for ((tenant, shard), d) in &deltas {
                        super::reports::apply(report_t, tenant, *shard, d)?;
                    }
                    for k in &customer_events {
                        customer_events_t.put(k.as_slice(), &[])?;
                    }
                    for (tenant, w) in &audience {
                        super::audience::apply(audience_t, tenant, w)?;
                    }
                    for (tenant, w) in &accounts {
                        super::accounts::apply_write(accounts_t, tenant, w)?;
                    }
                    Ok(())
                },
            )?;
        self.note_forwards(queued.iter());
        let due = batch.iter().flat_map(|c| &c.outbox);
        if let Some(at) = due.filter_map(outbox::due_at).min() {
            self.note_due_written(at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbox::MessageStatus;
    use super::super::{fixtures, temp_store};
    use super::*;

    // Account journeys (issue 12)
    #[test]
    fn a_commit_queues_its_forwards_with_its_own_removal() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "ada");
        let event = crate::model::Event {
            id: "e1".into(),
            customer: "ada".into(),
            name: "logged_in".into(),
            properties: Default::default(),
            timestamp: 0,
        };
        commit.queued.push(super::super::QueuedTrigger {
            tenant: "t".into(),
            customer: "account:acme".into(),
            pending: super::super::Pending::Account {
                event,
                member: fixtures::customer("ada"),
            },
        });
        store.commit_trigger(&commit).unwrap();
        let shard = super::super::shard_of("t", "account:acme", store.shards());
        let queued = store.queued(shard, 10).unwrap();
        assert_eq!(
            fixtures::queued_count(&store),
            1,
            "the fixture's trigger is gone"
        );
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].1.customer, "account:acme");
        assert!(matches!(
            &queued[0].1.pending,
            super::super::Pending::Account { member, .. } if member.id == "ada"
        ));
    }

    #[test]
    fn a_commit_removes_its_trigger_and_applies_every_effect() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "alice");
        assert_eq!(fixtures::queued_count(&store), 1);
        commit.customer = Some(fixtures::customer("alice"));
        commit
            .enrollments
            .push(fixtures::enrollment("alice", "welcome", 1));
        commit
            .timers_set
            .push(fixtures::timer("alice", "nudge", 100));
        commit
            .outbox
            .push(fixtures::message("m1", "email", MessageStatus::Pending, 10));
        commit.tasks.push(fixtures::task("k1"));
        commit
            .counters
            .push(("welcome".into(), "email".into(), Counter::Sent));
        store.commit_trigger(&commit).unwrap();

        assert_eq!(fixtures::queued_count(&store), 0);
        assert!(store.customer("t", "alice").unwrap().is_some());
        assert_eq!(store.enrollments("t", "alice").unwrap().len(), 1);
        assert_eq!(store.next_timer_due().unwrap(), Some(100));
        assert_eq!(store.due_messages(10, 10).unwrap().len(), 1);
        assert!(store.task("t", "k1").unwrap().is_some());
        assert_eq!(store.channel_stats("t", "welcome").unwrap()[0].sent, 1);
    }

    #[test]
    fn a_batch_commits_every_trigger_in_order_and_sums_counters() {
        let (_dir, store) = temp_store();
        let mut first = fixtures::commit(&store, "t", "alice");
        first
            .timers_set
            .push(fixtures::timer("alice", "nudge", 100));
        first
            .counters
            .push(("welcome".into(), "email".into(), Counter::Sent));
        // The same customer again: cancels the timer the first set, sets another, sends again.
        let mut second = fixtures::commit(&store, "t", "alice");
        second
            .timers_cancelled
            .push(fixtures::timer("alice", "nudge", 100));
        second
            .timers_set
            .push(fixtures::timer("alice", "later", 200));
        second
            .counters
            .push(("welcome".into(), "email".into(), Counter::Sent));
        // Another customer in the same batch.
        let mut third = fixtures::commit(&store, "t", "bob");
        third.timers_set.push(fixtures::timer("bob", "nudge", 50));
        assert_eq!(fixtures::queued_count(&store), 3);
        store.commit_triggers(&[first, second, third]).unwrap();

        assert_eq!(fixtures::queued_count(&store), 0);
        let due: Vec<_> = store
            .timers
            .iter()
            .map(|kv| super::super::dec::<TimerRecord>(&kv.unwrap().1).unwrap())
            .map(|t| (t.customer, t.name))
            .collect();
        assert_eq!(
            due,
            [
                ("bob".into(), "nudge".into()),
                ("alice".into(), "later".into())
            ]
        );
        assert_eq!(store.channel_stats("t", "welcome").unwrap()[0].sent, 2);
    }

    #[test]
    fn records_keep_their_on_disk_keys() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "alice");
        let commit_key = commit.queue_key.clone();
        commit.customer = Some(fixtures::customer("alice"));
        commit
            .enrollments
            .push(fixtures::enrollment("alice", "welcome", 2));
        commit.timers_set.push(fixtures::timer("alice", "nudge", 1));
        commit
            .outbox
            .push(fixtures::message("m1", "email", MessageStatus::Pending, 1));
        commit.tasks.push(fixtures::task("k1"));
        commit
            .counters
            .push(("welcome".into(), "email".into(), Counter::Sent));
        store.commit_trigger(&commit).unwrap();

        let only_key = |tree: &crate::store::kv::Tree| {
            assert_eq!(tree.len(), 1);
            tree.first().unwrap().unwrap().0.to_vec()
        };
        let time_one = [0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(only_key(&store.customers), b"t\x1falice");
        assert_eq!(
            only_key(&store.enrollments),
            b"t\x1falice\x1fwelcome\x1f\0\0\0\x02"
        );
        assert_eq!(
            only_key(&store.timers),
            [
                &time_one[..],
                &b"\x1ft\x1falice\x1fwelcome\x1f\0\0\0\x01\x1fnudge"[..]
            ]
            .concat()
        );
        assert_eq!(only_key(&store.outbox), b"t\x1falice\x1fm1");
        assert_eq!(
            only_key(&store.outbox_due),
            [&time_one[..], &b"t\x1falice\x1fm1"[..]].concat()
        );
        assert_eq!(only_key(&store.tasks), b"t\x1fk1");
        let shard = super::super::queue::shard_of_key(&commit_key).to_be_bytes();
        assert_eq!(
            only_key(&store.counters),
            [&b"t\x1fwelcome\x1femail\x1fsent\x1f"[..], &shard[..]].concat()
        );
        // Values are the records with named fields: a task's status is its word.
        let task = store.tasks.first().unwrap().unwrap().1;
        let task: serde_json::Value = super::super::dec(&task).unwrap();
        assert_eq!(task["status"], "open");
    }
}
