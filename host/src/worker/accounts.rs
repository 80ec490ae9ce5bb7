//! The shell of account journeys (issue 12, accounts slice): what a shard worker does for a
//! journey whose subject is the account. The rules are `engine::accounts`'s; the order that
//! makes it sound is `ARCHITECTURE.md` invariant 12:
//!
//! - A member's event is processed on the member's shard as always (their own journeys),
//!   and, when the member belongs to an account and the tenant has a live account journey,
//!   the same commit queues [`Pending::Account`] for the account's subject key
//!   ([`forward`]): one transaction with the member's trigger's removal, so it is queued
//!   exactly once, behind the member's earlier events' forwards.
//! - [`Pending::Account`] runs on the account's shard ([`Shell::account_event`]): the account
//!   (its traits) is the customer, the event carries the member, and only account journeys
//!   route it. Timers and delivery outcomes of an account enrollment are queued for the
//!   subject key too, so they reach that shard; [`subject_customer`] loads the account for
//!   them.
//! - Engagement (`opened`, `clicked`, ...) with a message an account journey sent names a
//!   message stored under the subject key: a member's (forwarded as any plain event of theirs)
//!   and one the host composed for the subject key (provider feedback names the message's
//!   customer) both reach the sending enrollment as engagement ([`Shell::account_sender`]).
//!
//! [`Pending::Account`]: crate::store::Pending::Account

use super::Shell;
use crate::engine::{self, accounts, About, Addressee};
use crate::model::{Customer, Event, Millis, Subject};
use crate::store::{LiveJourney, Pending, QueuedTrigger, Store, StoreError, TriggerCommit};

/// Queues `event` for the account journeys of `member`'s account, with the member's trigger's
/// commit, when the member belongs to an account and one of `live` enrolls accounts.
pub(super) fn forward(
    store: &Store,
    commit: &mut TriggerCommit,
    live: &[LiveJourney],
    member: &Customer,
    event: &Event,
) -> Result<(), StoreError> {
    let any = live.iter().any(|j| {
        accounts::enrolls(&j.live.spec, Subject::Account)
            || j.candidate
                .as_ref()
                .is_some_and(|(c, _)| accounts::enrolls(&c.spec, Subject::Account))
    });
    if !any {
        return Ok(());
    }
    let account = store.customer_account(&commit.tenant, &member.id)?;
    if let Some(subject) = accounts::forward_to(account.as_deref(), any) {
        commit.queued.push(QueuedTrigger {
            tenant: commit.tenant.clone(),
            customer: subject,
            pending: Pending::Account {
                event: event.clone(),
                member: member.clone(),
            },
        });
    }
    Ok(())
}

/// The customer the engine handles for `id`: for an account's subject key, the account (its
/// traits as attributes); else the stored customer. `None` for a customer never stored.
pub(crate) fn subject_customer(
    store: &Store,
    tenant: &str,
    id: &str,
) -> Result<Option<Customer>, StoreError> {
    match accounts::account_of(id) {
        Some(account) => {
            let traits = store.account(tenant, account)?.map(|a| a.traits);
            Ok(Some(accounts::account_customer(id, traits)))
        }
        None => store.customer(tenant, id),
    }
}

impl Shell<'_> {
    /// A member's event on the account's shard: routed through the account journeys only,
    /// with the account as the customer and the member in the event.
    pub(super) async fn account_event(
        &mut self,
        commit: &mut TriggerCommit,
        subject: &str,
        event: Event,
        member: Customer,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let store = &self.host.store;
        let account = subject_customer(store, &self.tenant, subject)?
            .unwrap_or_else(|| accounts::account_customer(subject, None));
        let event = accounts::member_event(&event, &member);
        // Engagement with the account's message goes to the enrollment that sent it.
        let addressee = match engine::interpret(Some(&account), &event).about {
            Some(About::Message { id, engagement }) => {
                self.account_sender(subject, &id, engagement)?
            }
            _ => None,
        };
        let (enrollments, live) = match addressee {
            None => (
                store.enrollments(&self.tenant, subject)?,
                self.host.catalog.live(store, &self.tenant)?,
            ),
            Some(_) => (Vec::new(), std::sync::Arc::from([])),
        };
        self.route(
            commit,
            &account,
            &event,
            addressee,
            enrollments,
            &live,
            Subject::Account,
            None,
            now,
        )
        .await
    }

    /// The sender of the account's message `id` (stored under the subject key), when there is
    /// one, as an engagement's addressee; counted in the engagement metrics as a customer's is.
    fn account_sender(
        &self,
        subject: &str,
        id: &str,
        engagement: engine::Engagement,
    ) -> Result<Option<Addressee>, StoreError> {
        let store = &self.host.store;
        let Some(message) = store.message(&self.tenant, subject, id)? else {
            return Ok(None);
        };
        let enrollment = store.enrollment(&self.tenant, subject, &message.journey, message.run)?;
        if enrollment.is_some() {
            self.host.metrics.engagement(engagement.as_str());
        }
        Ok(Some(Addressee::Sender {
            enrollment: enrollment.map(Box::new),
            channel: message.channel,
            engagement,
        }))
    }

    /// An event queued for the account's subject key itself: the host composes task
    /// resolutions so (a handoff's task names the account as its customer), which go to the
    /// enrollment that handed the task off, and provider feedback about the account's
    /// messages, which goes to the sending enrollment as engagement; anything else routes as a
    /// member's event does, without a member. The account's traits are never changed by it.
    pub(super) async fn account_owned_event(
        &mut self,
        commit: &mut TriggerCommit,
        event: Event,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let store = &self.host.store;
        let subject = event.customer.clone();
        let account = subject_customer(store, &self.tenant, &subject)?
            .unwrap_or_else(|| accounts::account_customer(&subject, None));
        let addressee = match engine::interpret(Some(&account), &event).about {
            Some(engine::About::Task { id }) => store
                .task(&self.tenant, &id)?
                .filter(|task| task.customer == subject)
                .map(|task| Addressee::TaskOwner {
                    enrollment_id: task.enrollment,
                }),
            // Provider feedback about the account's message names the subject key.
            Some(About::Message { id, engagement }) => {
                self.account_sender(&subject, &id, engagement)?
            }
            None => None,
        };
        let enrollments = store.enrollments(&self.tenant, &subject)?;
        let live = match addressee {
            None => self.host.catalog.live(store, &self.tenant)?,
            Some(_) => std::sync::Arc::from([]),
        };
        self.route(
            commit,
            &account,
            &event,
            addressee,
            enrollments,
            &live,
            Subject::Account,
            None,
            now,
        )
        .await
    }
}

// Accounts over several partitions (issue 16): the account's partition keeps its traits and
// members; each member's partition keeps the member's membership and a copy of the traits.
impl Shell<'_> {
    /// A member's `group` call, on the account's partition (`subject` is the account's subject
    /// key): the call's traits merged and the member listed, with this commit. When the traits
    /// change, every member (the caller too) is sent the account's traits; a member new to the
    /// account is sent them in any case, so their partition's copy starts whole.
    pub(super) fn grouped(
        &mut self,
        commit: &mut TriggerCommit,
        subject: &str,
        member: String,
        traits: crate::model::Object,
        at: Millis,
    ) -> Result<(), StoreError> {
        let Some(account) = accounts::account_of(subject) else {
            return Ok(());
        };
        let store = &self.host.store;
        let stored = store.account(&self.tenant, account)?.map(|a| a.traits);
        let before = stored.clone().unwrap_or_default();
        let mut merged = before.clone();
        merged.extend(traits.iter().map(|(k, v)| (k.clone(), v.clone())));
        let changed = stored.is_none() || merged != before;
        let known = store.is_account_member(&self.tenant, account, &member)?;
        let mut told = Vec::new();
        if changed {
            let mut after: Option<String> = None;
            loop {
                let (page, more) =
                    store.account_members(&self.tenant, account, after.as_deref(), 512)?;
                after = page.last().cloned();
                told.extend(page);
                if !more {
                    break;
                }
            }
        }
        if !known || (changed && !told.contains(&member)) {
            told.push(member.clone());
        }
        for customer in told {
            commit.queued.push(QueuedTrigger {
                tenant: commit.tenant.clone(),
                customer,
                pending: Pending::AccountTraits {
                    account: account.to_owned(),
                    traits: merged.clone(),
                },
            });
        }
        commit.accounts.push(crate::store::AccountWrite::Joined {
            account: account.to_owned(),
            member,
            traits,
            at,
        });
        Ok(())
    }

    /// A member left the account whose subject key is `subject`, on the account's partition.
    pub(super) fn left(&mut self, commit: &mut TriggerCommit, subject: &str, member: String) {
        if let Some(account) = accounts::account_of(subject) {
            commit.accounts.push(crate::store::AccountWrite::Left {
                account: account.to_owned(),
                member,
            });
        }
    }

    /// The traits of `account`, on the partition of `customer`, a member: kept as this
    /// partition's copy, and the member's watches that read the account evaluated again with
    /// them — if the member still belongs to it (a member who left since leaves the copy be
    /// for the account's other members here).
    pub(super) async fn account_traits(
        &mut self,
        commit: &mut TriggerCommit,
        customer: &str,
        account: String,
        traits: crate::model::Object,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        commit.accounts.push(crate::store::AccountWrite::Traits {
            account: account.clone(),
            traits: traits.clone(),
        });
        let belongs = self.host.store.customer_account(&self.tenant, customer)?;
        if belongs.as_deref() != Some(account.as_str()) {
            return Ok(None);
        }
        self.audience_account_changed(commit, customer, &account, Some(traits), now)
            .await
    }
}
