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
    // A merge across partitions whose step two came back to the merged id through the aliases
    // of the ids it was merged into (issue 16) closed a cycle: it merges nothing, as on one
    // node (a `MergeIn` is otherwise always for another id than the one it merges).
    let cycle = match merge_in_of(&item.pending) {
        Some((from, Some(carried))) if from == item.customer => Some(carried),
        _ => None,
    };
    if let Some(carried) = cycle {
        debug!(tenant = %item.tenant, customer = %item.customer, "a merge closed a cycle; it merges nothing");
        store.merge_undone(queue_key, &item.tenant, &item.customer, carried, now)?;
        return done(None);
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
            // A merge within this partition whose known id was merged into an id of another
            // partition meanwhile (issue 16): the merged id's records go with it.
            let unaccompanied = match merge_in_of(&item.pending) {
                Some((from, None)) => Some(from),
                _ => None,
            };
            if let Some(from) = unaccompanied.filter(|_| store.elsewhere(&into).is_some()) {
                return done(store.carry_out(queue_key, &item.tenant, from, &into)?);
            }
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

/// Step two of a merge, as queued or forwarded: the merged id, and its records when they were
/// carried from another partition.
fn merge_in_of(pending: &Pending) -> Option<(&str, Option<&Carried>)> {
    match pending {
        Pending::MergeIn { from, carried } => Some((from, carried.as_deref())),
        Pending::Forwarded { inner, .. } => merge_in_of(inner),
        _ => None,
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
            across(&mut commit, from, carried);
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
/// id `from` stays on its partition, sent back in step three ([`Pending::MergeBack`]); every
/// carried run that does not move is marked here, so that a trigger of it passed on later is
/// dropped as one node drops it. The timers that were pending there are set here for the runs
/// that move (moving one reads it from this store otherwise); one that fired meanwhile comes
/// passed on. Every report delta of a merge is an ended run's: written with the run, there.
fn across(commit: &mut MergeCommit, from: &str, carried: &Carried) {
    let (ended, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut commit.enrollments)
        .into_iter()
        .partition(|e| e.customer == from);
    commit.enrollments = kept;
    commit.report_deltas.clear();
    commit.timers_cancelled.clear();
    commit.timers_set = std::mem::take(&mut commit.timers_moved)
        .into_iter()
        .filter(|(theirs, _)| {
            carried
                .pending
                .iter()
                .any(|(j, r, n)| *j == theirs.journey && *r == theirs.run && *n == theirs.name)
        })
        .map(|(_, known)| known)
        .collect();
    let moved: Vec<(String, u32)> = std::mem::take(&mut commit.enrollments_removed)
        .into_iter()
        .map(|(_, journey, run)| (journey, run))
        .collect();
    commit.ended_elsewhere = carried
        .enrollments
        .iter()
        .map(|e| (e.journey.clone(), e.run))
        .filter(|run| !moved.contains(run))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnrollmentStatus, PendingTimer};
    use crate::store::fixtures;

    #[test]
    fn across_partitions_the_runs_that_stay_go_back_marked_and_only_pending_timers_are_set() {
        // The known id has a run of `welcome`; the merged id has an active one (ended by the
        // merge), an old completed one (over already) and an active run of `trial` (moved),
        // whose `remind` is pending and whose `gone` fired meanwhile.
        let known = [fixtures::enrollment("ada", "welcome", 1)];
        let ended = fixtures::enrollment("anon", "welcome", 2);
        let mut over = fixtures::enrollment("anon", "welcome", 1);
        over.status = EnrollmentStatus::Completed;
        let mut moving = fixtures::enrollment("anon", "trial", 1);
        moving.timers = ["remind", "gone"]
            .into_iter()
            .map(|name| PendingTimer {
                name: name.into(),
                due: 50,
            })
            .collect();
        let carried = Carried {
            customer: Some(fixtures::customer("anon")),
            enrollments: vec![over.clone(), ended.clone(), moving.clone()],
            pending: vec![("trial".into(), 1, "remind".into())],
            watches: vec![],
            account: None,
        };
        let mut commit = MergeCommit {
            tenant: "t".into(),
            ..MergeCommit::default()
        };
        merge(
            &mut commit,
            Side {
                id: "ada",
                customer: None,
                enrollments: &known,
            },
            Side {
                id: "anon",
                customer: carried.customer.as_ref(),
                enrollments: &carried.enrollments,
            },
            7,
        );
        across(&mut commit, "anon", &carried);

        // Written here: the moved run, under the known id; no report cell, no removal.
        let written: Vec<(&str, &str)> = commit
            .enrollments
            .iter()
            .map(|e| (e.customer.as_str(), e.journey.as_str()))
            .collect();
        assert_eq!(written, [("ada", "trial")]);
        assert!(commit.report_deltas.is_empty());
        assert!(commit.enrollments_removed.is_empty());
        let set: Vec<(&str, &str)> = commit
            .timers_set
            .iter()
            .map(|t| (t.customer.as_str(), t.name.as_str()))
            .collect();
        assert_eq!(set, [("ada", "remind")], "the fired timer comes passed on");
        // Marked here: both runs that stay with the merged id.
        let mut marked = commit.ended_elsewhere.clone();
        marked.sort();
        assert_eq!(
            marked,
            [("welcome".to_string(), 1), ("welcome".to_string(), 2)]
        );
        // Sent back: the moved run to remove, the ended one to write.
        let Some(QueuedTrigger {
            customer,
            pending:
                Pending::MergeBack {
                    into,
                    moved,
                    ended: back,
                },
            ..
        }) = &commit.back
        else {
            panic!("step three: {:?}", commit.back)
        };
        assert_eq!((customer.as_str(), into.as_str()), ("anon", "ada"));
        assert_eq!(moved, &[("trial".to_string(), 1)]);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].run, 2);
        assert_eq!(back[0].status, EnrollmentStatus::Exited);
    }
}
