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
use crate::store::identity::Carried;
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
                || store.ended_by_merge(&item.tenant, from, journey, *run)?
            {
                debug!(tenant = %item.tenant, customer = %from, journey, run, "trigger of a run ended by a merge; dropped");
                store.discard(queue_key)?;
                return done(None);
            }
        }
    }
    // Step three of a merge across partitions (issue 16), on the merged id's partition, where
    // the alias exists already.
    if let Pending::MergeBack { moved, ended, .. } = &item.pending {
        store.merge_back(queue_key, &item.tenant, &item.customer, moved, ended)?;
        return done(None);
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
            done(store.forward(queue_key, &forwarded)?)
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
        (Pending::MergeIn { from, carried }, None) => {
            let merging = Merging {
                tenant: &item.tenant,
                known: &item.customer,
                from,
                carried: carried.as_deref(),
            };
            merge_in(host, queue_key, merging, now)?;
            done(None)
        }
        (_, None) => Ok(Next::Process(item)),
    }
}

/// The two sides of step two: `from` merged into `known`, with `from`'s records carried from
/// its partition when it is another one's (issue 16), else read here.
struct Merging<'a> {
    tenant: &'a str,
    known: &'a str,
    from: &'a str,
    carried: Option<&'a Carried>,
}

/// Step two: `from`'s profile and enrollments merged into `known`'s, one transaction.
fn merge_in(
    host: &Host,
    queue_key: &[u8],
    merging: Merging<'_>,
    now: Millis,
) -> Result<(), StoreError> {
    let Merging {
        tenant,
        known,
        from,
        carried,
    } = merging;
    let store = &host.store;
    let known_customer = store.customer(tenant, known)?;
    let known_enrollments = store.enrollments(tenant, known)?;
    let (merged_customer, merged_enrollments) = match carried {
        Some(c) => (c.customer.clone(), c.enrollments.clone()),
        None => (
            store.customer(tenant, from)?,
            store.enrollments(tenant, from)?,
        ),
    };
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
        across = carried.is_some(),
        "customers merged"
    );
    match carried {
        None => {
            // Account journeys (issue 12): the merged id's account membership passes to the
            // known id before the merge commits (idempotent, so a crash between the two is
            // harmless).
            store.move_membership(tenant, from, known, now)?;
            // Audience triggers (issue 12): the merged id's watches move with the merge.
            super::audience::move_watches(store, &mut commit, known, from)?;
        }
        Some(carried) => {
            if let Some(account) = &carried.account {
                store.join_merged(tenant, known, account, now)?;
            }
            super::audience::take_watches(store, &mut commit, known, &carried.watches)?;
            across(&mut commit, from);
        }
    }
    store.commit_merge(&commit)?;
    if !commit.timers_moved.is_empty()
        || !commit.timers_set.is_empty()
        || !commit.audience.is_empty()
    {
        host.timers_changed();
    }
    Ok(())
}

/// Step two of a merge across partitions (issue 16): what the merge writes under the merged
/// id `from` stays on its partition, sent back in step three ([`Pending::MergeBack`]) and
/// marked here; the carried timers were taken out of that partition, so they are set here
/// as they are (moving one reads it from this store otherwise). Every report delta of a merge
/// is an ended run's: they are written with the run, there.
fn across(commit: &mut MergeCommit, from: &str) {
    let (ended, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut commit.enrollments)
        .into_iter()
        .partition(|e| e.customer == from);
    commit.enrollments = kept;
    commit.report_deltas.clear();
    commit.timers_cancelled.clear();
    commit.timers_set = std::mem::take(&mut commit.timers_moved)
        .into_iter()
        .map(|(_, known)| known)
        .collect();
    commit.ended_elsewhere = ended.iter().map(|e| (e.journey.clone(), e.run)).collect();
    let moved = std::mem::take(&mut commit.enrollments_removed)
        .into_iter()
        .map(|(_, journey, run)| (journey, run))
        .collect();
    commit.back = Some(QueuedTrigger {
        tenant: commit.tenant.clone(),
        customer: from.to_owned(),
        pending: Pending::MergeBack {
            into: commit
                .customer
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default(),
            moved,
            ended,
        },
    });
}
