//! The shell of identity merge (issue 12): what a shard worker does with the merge steps and
//! with triggers of an id that was merged into another. The rules are `engine::identity`'s,
//! the records `store/identity.rs`'s; the order that makes it sound is `ARCHITECTURE.md`
//! invariant 11:
//!
//! - [`Pending::MergeOut`] runs on the merged id's shard, behind that id's earlier triggers;
//!   from its commit on, the alias exists, so ingest queues that id's events for the known id
//!   and this worker passes on anything still queued for it ([`Store::forward`]) — queued
//!   behind the [`Pending::MergeIn`] that the same commit put on the known id's shard.
//! - [`Pending::MergeIn`] runs on the known id's shard, so only that shard's worker writes the
//!   known customer's records, as always.
//!
//! [`Store::forward`]: crate::store::Store::forward

use super::Processed;
use crate::engine::identity::{merge, Side};
use crate::host::Host;
use crate::model::Millis;
use crate::store::{MergeCommit, Pending, QueuedTrigger, StoreError};
use tracing::{debug, warn};

/// What to do with a trigger after the identity step.
pub(super) enum Next {
    /// Committed here.
    Done(Processed),
    /// Process it as usual (a forwarded trigger unwrapped).
    Process(QueuedTrigger),
}

/// The identity step of one trigger (see the module's documentation).
pub(super) fn step(
    host: &Host,
    queue_key: &[u8],
    item: QueuedTrigger,
    now: Millis,
) -> Result<Next, StoreError> {
    let store = &host.store;
    let done = |wake| Ok(Next::Done(Processed::Done { wake }));
    // A timer or delivery outcome of a run the merge ended (kept under the merged id, its
    // timers cancelled): nothing is left to address.
    if let Pending::Forwarded { from, inner } = &item.pending {
        if let Pending::Timer { journey, run, .. } | Pending::Delivery { journey, run, .. } =
            inner.as_ref()
        {
            if store
                .enrollment(&item.tenant, from, journey, *run)?
                .is_some()
            {
                debug!(tenant = %item.tenant, customer = %from, journey, run, "trigger of a run ended by a merge; dropped");
                store.discard(queue_key)?;
                return done(None);
            }
        }
    }
    let alias = store.alias(&item.tenant, &item.customer)?;
    match (&item.pending, alias) {
        // An id merges once: the first merge wins.
        (Pending::MergeOut { into }, Some(first)) => {
            debug!(tenant = %item.tenant, customer = %item.customer, %into, %first, "merged already; merge dropped");
            store.discard(queue_key)?;
            done(None)
        }
        (Pending::MergeOut { into }, None) => {
            done(store.merge_out(queue_key, &item.tenant, &item.customer, into)?)
        }
        (_, Some(into)) => {
            let pending = match item.pending {
                Pending::Logged => match store.logged_event(&item.tenant, queue_key)? {
                    Some(mut event) => {
                        event.customer = into.clone();
                        Pending::Event { event }
                    }
                    None => {
                        warn!(tenant = %item.tenant, "a queued event is missing from the log; dropped");
                        store.discard(queue_key)?;
                        return done(None);
                    }
                },
                Pending::Event { mut event } => {
                    event.customer = into.clone();
                    Pending::Event { event }
                }
                Pending::Forwarded { inner, .. } => *inner,
                other => other,
            };
            let forwarded = QueuedTrigger {
                tenant: item.tenant.clone(),
                customer: into,
                pending: Pending::Forwarded {
                    from: item.customer,
                    inner: Box::new(pending),
                },
            };
            done(Some(store.forward(queue_key, &forwarded)?))
        }
        (Pending::Forwarded { .. }, None) => {
            let Pending::Forwarded { inner, .. } = item.pending else {
                unreachable!("matched above")
            };
            let item = QueuedTrigger {
                pending: *inner,
                ..item
            };
            match &item.pending {
                Pending::MergeIn { .. } => step(host, queue_key, item, now),
                _ => Ok(Next::Process(item)),
            }
        }
        (Pending::MergeIn { from }, None) => {
            merge_in(host, queue_key, &item.tenant, &item.customer, from, now)?;
            done(None)
        }
        (_, None) => Ok(Next::Process(item)),
    }
}

/// Step two: `from`'s profile and enrollments merged into `known`'s, one transaction.
fn merge_in(
    host: &Host,
    queue_key: &[u8],
    tenant: &str,
    known: &str,
    from: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let store = &host.store;
    let known_customer = store.customer(tenant, known)?;
    let known_enrollments = store.enrollments(tenant, known)?;
    let merged_customer = store.customer(tenant, from)?;
    let merged_enrollments = store.enrollments(tenant, from)?;
    let mut commit = MergeCommit {
        tenant: tenant.to_string(),
        queue_key: queue_key.to_vec(),
        ..MergeCommit::default()
    };
    merge(
        &mut commit,
        Side {
            id: known,
            customer: known_customer.as_ref(),
            enrollments: &known_enrollments,
        },
        Side {
            id: from,
            customer: merged_customer.as_ref(),
            enrollments: &merged_enrollments,
        },
        now,
    );
    debug!(
        tenant,
        customer = known,
        merged = from,
        moved = commit.enrollments_removed.len(),
        "customers merged"
    );
    // Account journeys (issue 12): the merged id's account membership passes to the known id
    // before the merge commits (idempotent, so a crash between the two is harmless).
    store.move_membership(tenant, from, known, now)?;
    // Audience triggers (issue 12): the merged id's watches move with the merge.
    super::audience::move_watches(store, &mut commit, known, from)?;
    store.commit_merge(&commit)?;
    if !commit.timers_moved.is_empty() || !commit.audience.is_empty() {
        host.timers_changed();
    }
    Ok(())
}
