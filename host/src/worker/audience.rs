//! Audience triggers (issue 12), the shell: loads a customer's watches for the live journeys'
//! audience triggers, asks `crate::audience` what an event or a fired due entry means, puts
//! the watch writes into the trigger's commit (so moving a deadline commits with the event's
//! processing, in one transaction) and adds the entries and exits to the trigger's steps.
//!
//! Account-subject journeys (`Subject::Account`) are left out: their enrollments are the
//! accounts', which this slice does not route.
//!
//! A condition may read `account.<trait>`, which any member's `group` call can change: the
//! calling member's own trigger re-evaluates their watches, and its commit queues
//! [`Pending::AccountChanged`] for each *other* member ([`queue_members`]), processed on that
//! member's shard, where only their `matches` triggers that read the account are evaluated
//! ([`Shell::audience_account_changed`]). The cost is one queued trigger per member, paid only
//! by a `group` call carrying traits when a live journey has such a condition.

use super::Shell;
use crate::audience::{self, Seen, Watch};
use crate::engine::{accounts, JourneyRef, Step};
use crate::model::{AudienceTrigger, Customer, Enrollment, Event, Millis, Object, Spec, Subject};
use crate::store::{
    AudienceWrite, JourneyVersion, LiveJourney, Pending, QueuedTrigger, Store, StoreError,
    TriggerCommit,
};
use std::borrow::Cow;
use std::sync::Arc;

/// Members read per page when queueing an account's re-evaluations.
const MEMBER_PAGE: usize = 512;

/// Whether a customer journey with `spec` has a condition that reads the account.
fn spec_reads_account(spec: &Spec) -> bool {
    spec.audience.subject == Subject::Customer
        && spec.audience.triggers.iter().any(Shell::reads_account)
}

/// The version of a live journey that `customer` would enter (its candidate's share, or the
/// live version).
fn entering_version(j: &LiveJourney, customer: &str) -> Arc<JourneyVersion> {
    match &j.candidate {
        Some((candidate, percent))
            if crate::engine::routing::enters_candidate(&j.live.name, customer, *percent) =>
        {
            candidate.clone()
        }
        _ => j.live.clone(),
    }
}

/// When `event` is a `group` call of `member` carrying traits and a live customer journey has
/// a condition reading `account.*`, queues [`Pending::AccountChanged`] with the member's
/// trigger's commit for every other member of the account (members are read in pages from
/// the accounts tree: the cost is proportional to the account's members).
pub(super) fn queue_members(
    store: &Store,
    commit: &mut TriggerCommit,
    live: &[LiveJourney],
    member: &Customer,
    event: &Event,
) -> Result<(), StoreError> {
    // Over several partitions the account's partition tells every member (issue 16).
    if store.place().is_some() {
        return Ok(());
    }
    let Ok(Some(change)) = accounts::group_change(event) else {
        return Ok(());
    };
    if change.traits.is_empty() {
        return Ok(());
    }
    let any = live.iter().any(|j| {
        spec_reads_account(&j.live.spec)
            || j.candidate
                .as_ref()
                .is_some_and(|(c, _)| spec_reads_account(&c.spec))
    });
    if !any {
        return Ok(());
    }
    let mut after: Option<String> = None;
    loop {
        let (page, more) = store.account_members(
            &commit.tenant,
            &change.account,
            after.as_deref(),
            MEMBER_PAGE,
        )?;
        for other in page.iter().filter(|m| **m != member.id) {
            commit.queued.push(QueuedTrigger {
                tenant: commit.tenant.clone(),
                customer: other.clone(),
                pending: Pending::AccountChanged {
                    account: change.account.clone(),
                },
            });
        }
        if !more {
            return Ok(());
        }
        after = page.last().cloned();
    }
}

/// What the customer looks like to the triggers, the account read only when a condition
/// reads it.
struct Looks {
    account: Option<Option<Object>>,
    zone: chrono_tz::Tz,
}

impl Shell<'_> {
    fn looks(&self, customer: &Customer) -> Looks {
        let default_zone = self
            .host
            .tenant_policy(&self.tenant)
            .ok()
            .and_then(|p| p.quiet_hours.map(|q| q.default_timezone))
            .unwrap_or_else(|| "UTC".to_string());
        Looks {
            account: None,
            zone: crate::policy::zone_of(customer, &default_zone),
        }
    }

    fn account_of(&self, looks: &mut Looks, customer: &str) -> Result<Option<Object>, StoreError> {
        if looks.account.is_none() {
            let store = &self.host.store;
            let traits = match store.customer_account(&self.tenant, customer)? {
                Some(id) => store.account(&self.tenant, &id)?.map(|a| a.traits),
                None => None,
            };
            looks.account = Some(traits);
        }
        Ok(looks.account.clone().flatten())
    }

    /// Whether evaluating `trigger` needs the account's traits.
    fn reads_account(trigger: &AudienceTrigger) -> bool {
        matches!(trigger, AudienceTrigger::Matches { expression, .. }
            if audience::expr::parse(expression).is_ok_and(|e| e.reads_account()))
    }

    /// An event was interpreted and planned: each live journey's audience triggers see it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn audience_event(
        &mut self,
        commit: &mut TriggerCommit,
        customer: &Customer,
        event: &Event,
        profile_changed: bool,
        entering: &[&Arc<JourneyVersion>],
        enrollments: &[Enrollment],
        steps: &mut Vec<Step>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut looks: Option<Looks> = None;
        for version in entering {
            if version.spec.audience.subject == Subject::Account {
                continue;
            }
            let mut mine: Vec<Enrollment> = enrollments
                .iter()
                .filter(|e| e.journey == version.name)
                .cloned()
                .collect();
            for trigger in &version.spec.audience.triggers {
                let store = &self.host.store;
                let old = store.audience_watch(
                    &self.tenant,
                    &customer.id,
                    &version.name,
                    trigger.name(),
                )?;
                let looks = looks.get_or_insert_with(|| self.looks(customer));
                let account = if Self::reads_account(trigger)
                    && (profile_changed || event.name == crate::engine::accounts::GROUP)
                {
                    self.account_of(looks, &customer.id)?
                } else {
                    None
                };
                let seen = Seen {
                    attributes: &customer.attributes,
                    account: account.as_ref(),
                    zone: looks.zone,
                };
                let outcome =
                    audience::on_event(trigger, old.as_ref(), event, profile_changed, seen, now);
                record(
                    commit,
                    customer,
                    &version.name,
                    trigger.name(),
                    old.as_ref(),
                    &outcome,
                );
                let journey = JourneyRef {
                    name: &version.name,
                    version: version.version,
                    spec: &version.spec,
                };
                audience::plan(
                    journey,
                    &customer.id,
                    trigger.name(),
                    outcome,
                    &mut mine,
                    steps,
                    now,
                );
            }
        }
        Ok(())
    }

    /// A watch's due entry was fired: the trigger is looked at for this customer alone. A
    /// journey that is no longer live, or whose live version no longer declares the trigger,
    /// drops the watch (how the watches of journeys and versions that went away are cleared:
    /// when they come due, at no cost before).
    pub(super) async fn audience_due(
        &mut self,
        commit: &mut TriggerCommit,
        customer_id: &str,
        journey: &str,
        trigger_name: &str,
        due: Millis,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let store = &self.host.store;
        let old = store.audience_watch(&self.tenant, customer_id, journey, trigger_name)?;
        let live = self.host.catalog.live(store, &self.tenant)?;
        let version = live
            .iter()
            .find(|j| j.live.name == journey)
            .map(|j| match &j.candidate {
                Some((candidate, percent))
                    if crate::engine::routing::enters_candidate(
                        &j.live.name,
                        customer_id,
                        *percent,
                    ) =>
                {
                    candidate.clone()
                }
                _ => j.live.clone(),
            });
        let trigger = version.as_ref().and_then(|v| {
            (v.spec.audience.subject == Subject::Customer)
                .then(|| {
                    v.spec
                        .audience
                        .triggers
                        .iter()
                        .find(|t| t.name() == trigger_name)
                })
                .flatten()
        });
        let (Some(version), Some(trigger)) = (version.clone(), trigger.cloned()) else {
            if let Some(old) = old.filter(|w| w.due == Some(due)) {
                commit.audience.push(AudienceWrite {
                    customer: customer_id.to_string(),
                    journey: journey.to_string(),
                    trigger: trigger_name.to_string(),
                    old_due: old.due,
                    watch: None,
                });
            }
            return Ok(None);
        };
        let customer = store
            .customer(&self.tenant, customer_id)?
            .unwrap_or_else(|| Customer {
                id: customer_id.to_string(),
                attributes: Default::default(),
            });
        let mut looks = self.looks(&customer);
        let account = if Self::reads_account(&trigger) {
            self.account_of(&mut looks, customer_id)?
        } else {
            None
        };
        let seen = Seen {
            attributes: &customer.attributes,
            account: account.as_ref(),
            zone: looks.zone,
        };
        let outcome = audience::on_due(&trigger, old.as_ref(), due, seen, now);
        record(
            commit,
            &customer,
            journey,
            trigger_name,
            old.as_ref(),
            &outcome,
        );
        let mut mine: Vec<Enrollment> = store
            .enrollments(&self.tenant, customer_id)?
            .into_iter()
            .filter(|e| e.journey == journey)
            .collect();
        let mut steps = Vec::new();
        let journey_ref = JourneyRef {
            name: &version.name,
            version: version.version,
            spec: &version.spec,
        };
        audience::plan(
            journey_ref,
            customer_id,
            trigger_name,
            outcome,
            &mut mine,
            &mut steps,
            now,
        );
        self.versions
            .keep(&version.name, version.version, Some(version.clone()));
        for e in &mine {
            self.version(&e.journey, e.version)?;
        }
        if let Some(until) = self.deferral(&steps) {
            return Ok(Some(until));
        }
        for step in steps {
            self.step(commit, Cow::Borrowed(&customer), step, now)
                .await?;
        }
        Ok(None)
    }
}

impl Shell<'_> {
    /// Another member changed the traits of `account`: this customer's `matches` triggers that
    /// read the account are evaluated again, nothing else. A customer who has left the account
    /// since is evaluated against the account they belong to now (what a condition reads).
    pub(super) async fn audience_account_changed(
        &mut self,
        commit: &mut TriggerCommit,
        customer_id: &str,
        account: &str,
        traits: Option<Object>,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let store = &self.host.store;
        let live = self.host.catalog.live(store, &self.tenant)?;
        let versions: Vec<Arc<JourneyVersion>> = live
            .iter()
            .map(|j| entering_version(j, customer_id))
            .filter(|v| spec_reads_account(&v.spec))
            .collect();
        if versions.is_empty() {
            return Ok(None);
        }
        tracing::debug!(tenant = %self.tenant, customer = customer_id, account, "account traits changed");
        let customer = store
            .customer(&self.tenant, customer_id)?
            .unwrap_or_else(|| Customer {
                id: customer_id.to_string(),
                attributes: Default::default(),
            });
        let enrollments = store.enrollments(&self.tenant, customer_id)?;
        let mut looks = self.looks(&customer);
        // Traits carried by the trigger (issue 16) are the account's as of now; the copy in
        // the store is written with this commit.
        let traits = match traits {
            Some(traits) => {
                looks.account = Some(Some(traits.clone()));
                Some(traits)
            }
            None => self.account_of(&mut looks, customer_id)?,
        };
        let mut steps = Vec::new();
        for version in &versions {
            let mut mine: Vec<Enrollment> = enrollments
                .iter()
                .filter(|e| e.journey == version.name)
                .cloned()
                .collect();
            for trigger in version
                .spec
                .audience
                .triggers
                .iter()
                .filter(|t| Self::reads_account(t))
            {
                let old = store.audience_watch(
                    &self.tenant,
                    customer_id,
                    &version.name,
                    trigger.name(),
                )?;
                let seen = Seen {
                    attributes: &customer.attributes,
                    account: traits.as_ref(),
                    zone: looks.zone,
                };
                let outcome = audience::on_account_change(trigger, old.as_ref(), seen, now);
                record(
                    commit,
                    &customer,
                    &version.name,
                    trigger.name(),
                    old.as_ref(),
                    &outcome,
                );
                let journey = JourneyRef {
                    name: &version.name,
                    version: version.version,
                    spec: &version.spec,
                };
                audience::plan(
                    journey,
                    customer_id,
                    trigger.name(),
                    outcome,
                    &mut mine,
                    &mut steps,
                    now,
                );
            }
        }
        for version in &versions {
            self.versions
                .keep(&version.name, version.version, Some(version.clone()));
        }
        for e in &enrollments {
            self.version(&e.journey, e.version)?;
        }
        if let Some(until) = self.deferral(&steps) {
            return Ok(Some(until));
        }
        for step in steps {
            self.step(commit, Cow::Borrowed(&customer), step, now)
                .await?;
        }
        Ok(None)
    }
}

/// Identity merge: moves each watch of the merged id `from` to `known` in the merge's commit
/// (`audience::merge_watches` decides what the known customer keeps), so the merge and the
/// move are one transaction and a deadline follows the known customer.
pub(super) fn move_watches(
    store: &Store,
    commit: &mut crate::store::MergeCommit,
    known: &str,
    from: &str,
) -> Result<(), StoreError> {
    let watches = store.audience_watches(&commit.tenant, from)?;
    for (journey, trigger, merged) in &watches {
        commit.audience.push(AudienceWrite {
            customer: from.to_string(),
            journey: journey.clone(),
            trigger: trigger.clone(),
            old_due: merged.due,
            watch: None,
        });
    }
    take_watches(store, commit, known, &watches)
}

/// Identity merge across partitions (issue 16): the merged id's watches, carried from its
/// partition (which removed them there), merged into the known id's as [`move_watches`] does.
pub(super) fn take_watches(
    store: &Store,
    commit: &mut crate::store::MergeCommit,
    known: &str,
    carried: &[(String, String, Watch)],
) -> Result<(), StoreError> {
    for (journey, trigger, merged) in carried {
        let theirs = store.audience_watch(&commit.tenant, known, journey, trigger)?;
        let kept = audience::merge_watches(theirs.as_ref(), merged);
        if theirs.as_ref() != Some(&kept) {
            commit.audience.push(AudienceWrite {
                customer: known.to_string(),
                journey: journey.clone(),
                trigger: trigger.clone(),
                old_due: theirs.and_then(|w| w.due),
                watch: Some(kept),
            });
        }
    }
    Ok(())
}

/// Puts an outcome's watch change into the commit.
fn record(
    commit: &mut TriggerCommit,
    customer: &Customer,
    journey: &str,
    trigger: &str,
    old: Option<&Watch>,
    outcome: &audience::Outcome,
) {
    if let Some(watch) = &outcome.write {
        commit.audience.push(AudienceWrite {
            customer: customer.id.clone(),
            journey: journey.to_string(),
            trigger: trigger.to_string(),
            old_due: old.and_then(|w| w.due),
            watch: watch.clone(),
        });
    }
}
