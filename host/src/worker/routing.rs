//! A shard's events: interpreted, routed by the engine through the customer's (or an
//! account's) enrollments and the live journeys, and every step run.

use super::*;

impl Shell<'_> {
    /// An event: interpreted, routed by the engine, every step run — unless a journey version
    /// it goes to has its breaker open: then nothing runs, and it returns when to try again.
    pub(super) async fn event(
        &mut self,
        commit: &mut TriggerCommit,
        event: Event,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        // Account journeys (issue 12): an event the host composed for an account (its task's
        // resolution) is the account's.
        if engine::accounts::account_of(&event.customer).is_some() {
            return self.account_owned_event(commit, event, now).await;
        }
        let store = &self.host.store;
        let existing = store.customer(&self.tenant, &event.customer)?;
        let seen = engine::interpret(existing.as_ref(), &event);
        let profile_changed = seen.customer_changed; // Audience triggers (issue 12)
        if seen.customer_changed {
            commit.customer = Some(seen.customer.clone());
        }
        let customer = seen.customer;
        let addressee = match seen.about {
            Some(engine::About::Message { id, engagement }) => store
                .message(&self.tenant, &customer.id, &id)?
                .map(|message| {
                    let enrollment = store.enrollment(
                        &self.tenant,
                        &customer.id,
                        &message.journey,
                        message.run,
                    )?;
                    Ok::<_, StoreError>(Addressee::Sender {
                        enrollment: enrollment.map(Box::new),
                        channel: message.channel,
                        engagement,
                    })
                })
                .transpose()?,
            Some(engine::About::Task { id }) => store
                .task(&self.tenant, &id)?
                .filter(|task| task.customer == customer.id)
                .map(|task| Addressee::TaskOwner {
                    enrollment_id: task.enrollment,
                }),
            None => None,
        };
        if let Some(Addressee::Sender {
            enrollment: Some(_),
            engagement,
            ..
        }) = &addressee
        {
            self.host.metrics.engagement(engagement.as_str());
        }
        // Engagement needs nothing more; a task resolution needs the customer's enrollments;
        // routing needs those and every live journey (the version this customer would enter).
        let enrollments = match &addressee {
            Some(Addressee::Sender { .. }) => Vec::new(),
            _ => store.enrollments(&self.tenant, &customer.id)?,
        };
        let live = match &addressee {
            None => self.host.catalog.live(store, &self.tenant)?,
            Some(_) => Arc::from([]),
        };
        let plain = addressee.is_none();
        let deferred = self
            .route(
                commit,
                &customer,
                &event,
                addressee,
                enrollments,
                &live,
                Subject::Customer,
                // Audience triggers (issue 12): a plain event is the customer's activity.
                plain.then_some(profile_changed),
                now,
            )
            .await?;
        // Account journeys (issue 12): the member's account's share of a plain event is
        // queued for the account's shard, with this trigger's commit.
        if plain && deferred.is_none() {
            accounts::forward(store, commit, &live, &customer, &event)?;
            // Audience triggers (issue 12): the account's other members see its new traits.
            audience::queue_members(store, commit, &live, &customer, &event)?;
        }
        Ok(deferred)
    }

    /// Routes `event` of `customer` (a customer, or an account as `engine::accounts` makes
    /// it) through `enrollments` and the live journeys that enroll `subject`, and runs every
    /// step — unless a journey version it goes to has its breaker open: then nothing runs,
    /// and it returns when to try again. `audience` is `Some(whether the profile changed)`
    /// when the event is the customer's own activity, which their audience watches see.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn route(
        &mut self,
        commit: &mut TriggerCommit,
        customer: &Customer,
        event: &Event,
        addressee: Option<Addressee>,
        enrollments: Vec<crate::model::Enrollment>,
        live: &[crate::store::LiveJourney],
        subject: Subject,
        audience: Option<bool>,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        // The version of each journey a new run of this customer would enter (account
        // journeys for an account, the others for a customer).
        let entering: Vec<&Arc<JourneyVersion>> = live
            .iter()
            .map(|j| match &j.candidate {
                Some((candidate, percent))
                    if engine::routing::enters_candidate(&j.live.name, &customer.id, *percent) =>
                {
                    candidate
                }
                _ => &j.live,
            })
            .filter(|j| engine::accounts::enrolls(&j.spec, subject))
            .collect();
        for e in &enrollments {
            self.version(&e.journey, e.version)?;
        }
        let mut steps = {
            let refs: Vec<JourneyRef<'_>> = entering
                .iter()
                .map(|j| JourneyRef {
                    name: &j.name,
                    version: j.version,
                    spec: &j.spec,
                })
                .collect();
            let versions = &self.versions;
            let spec_of = |journey: &str, version: u32| {
                versions
                    .get(journey, version)
                    .and_then(|v| v.as_ref())
                    .map(|v| &v.spec)
            };
            engine::plan_event(
                customer,
                event,
                addressee,
                &enrollments,
                &refs,
                spec_of,
                now,
            )
        };
        // Audience triggers (issue 12): the live journeys' audience triggers see the event (not
        // engagement or a task resolution, which are about a record, not the customer's
        // activity in the product).
        if let Some(profile_changed) = audience {
            self.audience_event(
                commit,
                customer,
                event,
                profile_changed,
                &entering,
                &enrollments,
                &mut steps,
                now,
            )?;
        }
        for j in entering {
            self.versions.keep(&j.name, j.version, Some(j.clone()));
        }
        if let Some(until) = self.deferral(&steps) {
            return Ok(Some(until));
        }
        for step in steps {
            self.step(commit, Cow::Borrowed(customer), step, now)
                .await?;
        }
        Ok(None)
    }
}
