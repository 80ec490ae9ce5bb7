//! [`Store::commit_trigger`]: everything one processed trigger changes, in one transaction with
//! the trigger's removal from the queue. It is the one write that spans record kinds (customer,
//! enrollments, timers, messages, tasks, counters, report cells), so a crash either applied a
//! trigger wholly or not at all, and an unprocessed trigger is simply processed again after
//! restart.

use super::counters::{bump, counter_key};
use super::customers::customer_key;
use super::enrollments::enrollment_key;
use super::outbox::{self, Message, NewMessage};
use super::tasks::{task_key, Task};
use super::timers::{timer_key, TimerRecord};
use super::{enc, Store, StoreError};
use crate::model::{Counter, Customer, Enrollment};
use crate::report::cells::CellDelta;
use sled::Transactional;

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
}

impl Store {
    /// Commits every effect of one trigger together with its removal from the queue. Messages
    /// already present (a replay after a crash between commit and flush cannot produce one, but
    /// a retried trigger might) are left as they are: the outbox never holds a duplicate. Does
    /// not flush: the shard worker flushes once per batch.
    pub fn commit_trigger(&self, c: &TriggerCommit) -> Result<(), StoreError> {
        let customer = c
            .customer
            .as_ref()
            .map(|cu| (customer_key(&c.tenant, &cu.id), enc(cu)));
        let enrollments: Vec<_> = c
            .enrollments
            .iter()
            .map(|e| {
                (
                    enrollment_key(&c.tenant, &e.customer, &e.journey, e.run),
                    enc(e),
                )
            })
            .collect();
        let timers_cancelled: Vec<_> = c.timers_cancelled.iter().map(timer_key).collect();
        let timers_set: Vec<_> = c
            .timers_set
            .iter()
            .map(|t| (timer_key(t), enc(t)))
            .collect();
        let messages: Vec<_> = c.outbox.iter().map(NewMessage::new).collect();
        let tasks: Vec<_> = c
            .tasks
            .iter()
            .map(|t| (task_key(&c.tenant, &t.id), enc(t)))
            .collect();
        let counters: Vec<_> = c
            .counters
            .iter()
            .map(|(journey, channel, counter)| counter_key(&c.tenant, journey, channel, *counter))
            .collect();
        let report_deltas = crate::report::cells::merge(&c.report_deltas);
        let shard = super::queue::shard_of_key(&c.queue_key);
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
                )| {
                    queue.remove(c.queue_key.as_slice())?;
                    if let Some((k, v)) = &customer {
                        customers_t.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &enrollments {
                        enrollments_t.insert(k.as_slice(), v.as_slice())?;
                    }
                    for k in &timers_cancelled {
                        timers.remove(k.as_slice())?;
                    }
                    for (k, v) in &timers_set {
                        timers.insert(k.as_slice(), v.as_slice())?;
                    }
                    for m in &messages {
                        outbox::insert_new(outbox_t, due, held, m)?;
                    }
                    for (k, v) in &tasks {
                        tasks_t.insert(k.as_slice(), v.as_slice())?;
                    }
                    for k in &counters {
                        bump(counters_t, k)?;
                    }
                    super::reports::apply(report_t, &c.tenant, shard, &report_deltas)?;
                    Ok(())
                },
            )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbox::MessageStatus;
    use super::super::{fixtures, temp_store};
    use super::*;

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
    fn records_keep_their_on_disk_keys() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "alice");
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

        let only_key = |tree: &sled::Tree| {
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
        assert_eq!(only_key(&store.counters), b"t\x1fwelcome\x1femail\x1fsent");
        // Values are the records' JSON, as before: a task's status is its word.
        let task = store.tasks.first().unwrap().unwrap().1;
        let task: serde_json::Value = serde_json::from_slice(&task).unwrap();
        assert_eq!(task["status"], "open");
    }
}
