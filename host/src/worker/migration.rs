//! A `migrate` trigger in the shard worker (issue 13): one enrollment moves to another version
//! of its journey, adapted by that version's `migrate` export, and the outcome is recorded with
//! the trigger's commit (`store/migrations.rs`).

use super::Shell;
use crate::engine;
use crate::model::{Customer, Millis};
use crate::store::{MigrationOutcome, MigrationResult, StoreError, TriggerCommit};
use std::borrow::Cow;

/// A `migrate` trigger's orders: move run `run` of `journey` from version `from` to `to`.
pub(super) struct Move {
    pub(super) journey: String,
    pub(super) run: u32,
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) migration: String,
}

impl Shell<'_> {
    /// A `migrate` trigger: the enrollment moves to the new version if it is still active on
    /// the old one and the new version's `migrate` accepts it; what became of it is recorded
    /// with the trigger's commit either way.
    pub(super) async fn migrate(
        &mut self,
        commit: &mut TriggerCommit,
        customer_id: &str,
        move_: Move,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let store = &self.host.store;
        let enrollment = store.enrollment(&self.tenant, customer_id, &move_.journey, move_.run)?;
        let step = enrollment
            .and_then(|e| engine::plan_migration(e, move_.from, move_.to, &move_.migration));
        let outcome = match step {
            None => MigrationResult::Skipped,
            Some(step) => {
                if let Some(until) = self.deferral(std::slice::from_ref(&step)) {
                    return Ok(Some(until));
                }
                // An account journey's enrollment migrates with its account (issue 12).
                let customer = super::accounts::subject_customer(store, &self.tenant, customer_id)?
                    .unwrap_or_else(|| Customer {
                        id: customer_id.to_string(),
                        attributes: Default::default(),
                    });
                match self
                    .step(commit, Cow::Borrowed(&customer), step, now)
                    .await?
                {
                    None => MigrationResult::Moved,
                    Some(failure) => MigrationResult::Refused {
                        reason: failure.reason.as_str().to_string(),
                        message: failure.message,
                    },
                }
            }
        };
        commit.migration_outcomes.push(MigrationOutcome {
            migration: move_.migration,
            journey: move_.journey,
            customer: customer_id.to_string(),
            run: move_.run,
            outcome,
            at: now,
        });
        Ok(None)
    }
}
