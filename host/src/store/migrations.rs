//! Migrations of enrollments between versions of a journey (`POST /v1/journeys/{name}/migrate`).
//!
//! `migrations`: `h␟tenant␟journey␟id` → the [`Migration`] as requested, and
//! `o␟tenant␟journey␟id␟customer␟run` → the [`MigrationOutcome`] of one enrollment, written by
//! the shard worker in the same transaction as the move itself (or its refusal), so an outcome
//! is recorded exactly when the trigger is done. The request writes its record and one queued
//! `migrate` trigger per enrollment in one transaction: each enrollment moves in its customer's
//! shard, in order with the customer's other triggers.

use super::keys::{key, prefix};
use super::kv::Transactional;
use super::queue::QueuedTrigger;
use super::{dec, enc, Store, StoreError};
use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// A migration as requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub id: String,
    pub journey: String,
    pub from: u32,
    pub to: u32,
    pub requested_at: Millis,
    /// Enrollments queued to move.
    pub queued: u64,
}

/// What became of one enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It moved to the new version, adapted by its `migrate`.
    Moved,
    /// The new version's `migrate` refused it (an `err`, a trap, a deadline, commands the host
    /// refuses, or no `migration` export): it stays on its version, untouched.
    Refused { reason: String, message: String },
    /// It was no longer active on the old version when its turn came (it ended, or moved).
    Skipped,
}

/// One enrollment's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationOutcome {
    pub migration: String,
    pub journey: String,
    pub customer: String,
    pub run: u32,
    pub outcome: Outcome,
    pub at: Millis,
}

fn record_key(tenant: &str, journey: &str, id: &str) -> Vec<u8> {
    key(&[b"h", tenant.as_bytes(), journey.as_bytes(), id.as_bytes()])
}

fn outcomes_prefix(tenant: &str, journey: &str, id: &str) -> Vec<u8> {
    prefix(&[b"o", tenant.as_bytes(), journey.as_bytes(), id.as_bytes()])
}

/// Where `outcome` is stored.
pub(super) fn outcome_key(tenant: &str, outcome: &MigrationOutcome) -> Vec<u8> {
    let run = outcome.run.to_be_bytes();
    key(&[
        b"o",
        tenant.as_bytes(),
        outcome.journey.as_bytes(),
        outcome.migration.as_bytes(),
        outcome.customer.as_bytes(),
        &run,
    ])
}

impl Store {
    /// A fresh migration id: unique in the database, short.
    pub fn new_migration_id(&self) -> Result<String, StoreError> {
        Ok(format!("mig_{:x}", self.db.generate_id()?))
    }

    /// Records `migration` and queues `moves` (one `migrate` trigger per enrollment), together.
    pub fn start_migration(
        &self,
        tenant: &str,
        migration: &Migration,
        moves: &[QueuedTrigger],
    ) -> Result<(), StoreError> {
        let entries = moves
            .iter()
            .map(|t| self.queue_entry(t))
            .collect::<Result<Vec<_>, _>>()?;
        let record = (
            record_key(tenant, &migration.journey, &migration.id),
            enc(migration),
        );
        (&self.migrations, &self.queue).transaction(|(migrations, queue)| {
            migrations.put(record.0.as_slice(), record.1.as_slice())?;
            for entry in &entries {
                queue.put(entry.key.as_slice(), entry.value.as_slice())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// A migration as requested, if it exists.
    pub fn migration(
        &self,
        tenant: &str,
        journey: &str,
        id: &str,
    ) -> Result<Option<Migration>, StoreError> {
        self.migrations
            .get(record_key(tenant, journey, id))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// The outcomes recorded so far for a migration, in customer order.
    pub fn migration_outcomes(
        &self,
        tenant: &str,
        journey: &str,
        id: &str,
    ) -> Result<Vec<MigrationOutcome>, StoreError> {
        self.migrations
            .scan_prefix(outcomes_prefix(tenant, journey, id))
            .map(|kv| dec(&kv?.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};
    use super::*;

    #[test]
    fn a_migration_and_its_outcomes_read_back_apart_from_other_migrations() {
        let (_dir, store) = temp_store();
        let migration = Migration {
            id: store.new_migration_id().unwrap(),
            journey: "renewal".into(),
            from: 1,
            to: 2,
            requested_at: 5,
            queued: 2,
        };
        store.start_migration("t", &migration, &[]).unwrap();
        assert_eq!(
            store.migration("t", "renewal", &migration.id).unwrap(),
            Some(migration.clone())
        );
        assert_eq!(
            store.migration("u", "renewal", &migration.id).unwrap(),
            None
        );
        for (id, customer) in [(&migration.id, "ada"), (&"mig_other".to_string(), "bob")] {
            let mut commit = fixtures::commit(&store, "t", customer);
            commit.migration_outcomes.push(MigrationOutcome {
                migration: id.clone(),
                journey: "renewal".into(),
                customer: customer.into(),
                run: 1,
                outcome: Outcome::Moved,
                at: 7,
            });
            store.commit_trigger(&commit).unwrap();
        }
        let outcomes = store
            .migration_outcomes("t", "renewal", &migration.id)
            .unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].customer, "ada");
    }
}
