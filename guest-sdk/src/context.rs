//! What `decide` sees: the [`Context`] of one trigger, and the customer, event, enrollment and
//! delivery types it is made of.
//!
//! These are plain Rust mirrors of the contract's types, so journey logic is ordinary code that
//! unit tests can drive natively. The customer's attributes and an event's properties are
//! [`JsonObject`]s: they read like [`serde_json`] objects and are parsed from the host's JSON
//! text on first use, so a trigger that never reads them does not pay for parsing them.
//! Every type has small constructors and `with_*` builders for tests:
//!
//! ```
//! use waymark_guest::{days, json, Context, Customer, Event, Trigger};
//!
//! let signup = Event::new("signed_up").with_property("plan", json!("pro"));
//! let ctx = Context::entered(signup)
//!     .for_customer(Customer::new("c-42").with_attribute("email", json!("a@example.com")))
//!     .at(1_700_000_000_000);
//!
//! assert!(matches!(ctx.trigger, Trigger::Entered(_)));
//! assert_eq!(ctx.event().unwrap().property("plan"), Some(&json!("pro")));
//! assert_eq!(ctx.customer.attribute("email"), Some(&json!("a@example.com")));
//! assert_eq!(ctx.after(days(1)), 1_700_000_000_000 + days(1));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::calendar::{Moment, MonthDay, TimeZone};
pub use crate::object::JsonObject;
use crate::time::{Duration, Timestamp};

/// A JSON object: customer attributes, channel configuration, spec filters.
pub type Object = Map<String, Value>;

/// A customer as the journey sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Tenant-scoped id, as the tenant's product names the customer.
    pub id: String,
    /// Profile attributes, as the tenant's product last reported them: a JSON object, parsed
    /// the first time the journey reads it (`attribute`, `get`, `iter`, ...).
    #[serde(default)]
    pub attributes: JsonObject,
}

impl Customer {
    /// A customer with this id and no attributes.
    pub fn new(id: impl Into<String>) -> Self {
        Customer {
            id: id.into(),
            attributes: JsonObject::new(),
        }
    }

    /// Sets one attribute (builder style, for tests).
    pub fn with_attribute(mut self, name: impl Into<String>, value: Value) -> Self {
        self.attributes.insert(name.into(), value);
        self
    }

    /// One attribute, if the customer has it.
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }

    /// One attribute as a string, if the customer has it and it is a string.
    pub fn attribute_str(&self, name: &str) -> Option<&str> {
        self.attribute(name).and_then(Value::as_str)
    }

    /// The customer's time zone: attribute `timezone`, if it is an IANA name the tz database
    /// knows (the attribute the host's quiet hours read too). Journeys usually fall back to
    /// UTC: `ctx.customer.time_zone().unwrap_or_default()`.
    pub fn time_zone(&self) -> Option<TimeZone> {
        self.attribute_str("timezone").and_then(TimeZone::named)
    }

    /// One attribute as a date or a timestamp (see [`Moment::from_value`]): `"2026-07-01"`,
    /// `"2026-07-01T08:30:00Z"`, or milliseconds since the Unix epoch.
    pub fn attribute_moment(&self, name: &str) -> Option<Moment> {
        self.attribute(name).and_then(Moment::from_value)
    }

    /// One attribute as an instant: a timestamp as it is, a plain date at midnight in the
    /// customer's [`time_zone`](Self::time_zone) (UTC if they have none).
    pub fn attribute_timestamp(&self, name: &str) -> Option<Timestamp> {
        let zone = self.time_zone().unwrap_or_default();
        self.attribute_moment(name).map(|m| m.timestamp_in(zone))
    }

    /// One attribute as a day of the year (see [`MonthDay::from_value`]): `"03-14"`,
    /// `"1990-03-14"`, or a timestamp.
    pub fn attribute_month_day(&self, name: &str) -> Option<MonthDay> {
        self.attribute(name).and_then(MonthDay::from_value)
    }
}

/// Something a customer did, as the tenant's product reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Tenant-chosen id; the host drops retries with an id it has seen.
    pub id: String,
    /// What happened, e.g. `signed_up`.
    pub name: String,
    /// The event's properties: always a JSON object (`{}` when there are none), parsed the first
    /// time the journey reads it; `event.properties["plan"]` is `Value::Null` for a missing
    /// property rather than a panic.
    #[serde(default)]
    pub properties: JsonObject,
    /// When it happened, as the tenant reported it.
    pub timestamp: Timestamp,
}

impl Event {
    /// An event with this name, no properties, timestamp 0 and its name as its id.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Event {
            id: name.clone(),
            name,
            properties: JsonObject::new(),
            timestamp: 0,
        }
    }

    /// Sets the event's id (builder style, for tests).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets one property (builder style, for tests).
    pub fn with_property(mut self, name: impl Into<String>, value: Value) -> Self {
        self.properties.insert(name.into(), value);
        self
    }

    /// Replaces all properties with those of a JSON object; any other value leaves none
    /// (builder style, for tests).
    pub fn with_properties(mut self, properties: Value) -> Self {
        self.properties = match properties {
            Value::Object(map) => map.into(),
            _ => JsonObject::new(),
        };
        self
    }

    /// Sets the event's timestamp (builder style, for tests).
    pub fn at(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// One property, if the event has it.
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.properties.get(name)
    }

    /// One property as a string, if the event has it and it is a string.
    pub fn property_str(&self, name: &str) -> Option<&str> {
        self.property(name).and_then(Value::as_str)
    }

    /// Whether this event is named `name`.
    pub fn is(&self, name: &str) -> bool {
        self.name == name
    }

    // Account journeys (issue 12)
    /// In an account's journey ([`Spec::for_accounts`](crate::Spec::for_accounts)): the
    /// member whose event this is, as they were when the host processed it (property
    /// `member`: `{"id", "attributes"}`, which the host sets on every event it routes to an
    /// account journey). `None` in a customer's journey, and for a timer's or stall's trigger.
    ///
    /// ```
    /// use waymark_guest::{json, Customer, Event};
    ///
    /// let exec = Customer::new("ada").with_attribute("role", json!("executive"));
    /// let login = Event::new("logged_in").with_member(&exec);
    /// assert_eq!(login.member().unwrap().attribute_str("role"), Some("executive"));
    /// assert!(Event::new("logged_in").member().is_none());
    /// ```
    pub fn member(&self) -> Option<Customer> {
        self.property("member")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
    }

    /// Sets the member whose event this is, as the host does for an account's journey
    /// (builder style, for tests).
    pub fn with_member(self, member: &Customer) -> Self {
        self.with_property(
            "member",
            serde_json::json!({ "id": member.id, "attributes": member.attributes }),
        )
    }
}

/// Where an enrollment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentStatus {
    /// In the journey: waiting for events or timers.
    Active,
    /// Reached the goal milestone, or the journey said `complete`.
    Completed,
    /// Left without completing: an exit event, or the journey said `exit`.
    Exited,
}

/// A milestone the customer reached, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneHit {
    /// The milestone's name, as the spec declares it.
    pub name: String,
    /// When it was recorded.
    pub at: Timestamp,
}

/// A timer the journey scheduled and that has not fired yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTimer {
    /// The name the journey gave it in [`Decision::schedule`](crate::Decision::schedule).
    pub name: String,
    /// When it fires.
    pub due: Timestamp,
}

/// The arm of an experiment a customer was assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantAssignment {
    /// The experiment's name, as the spec declares it.
    pub experiment: String,
    /// The arm the customer is in.
    pub arm: String,
}

/// One customer in one journey version: everything the host remembers for the journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Stable id: `{journey}/{customer}/{run}`.
    pub id: String,
    /// The journey's name.
    pub journey: String,
    /// The journey version this enrollment runs.
    pub version: u32,
    /// Where the enrollment stands.
    pub status: EnrollmentStatus,
    /// When the customer entered.
    pub entered_at: Timestamp,
    /// Milestones reached, in the order they were reached.
    pub milestones: Vec<MilestoneHit>,
    /// Whatever the journey last stored with [`Decision::set_state`](crate::Decision::set_state);
    /// empty at entry.
    pub state: Vec<u8>,
    /// Timers scheduled and not yet fired.
    pub timers: Vec<PendingTimer>,
    /// Experiment arms recorded with [`Decision::assign`](crate::Decision::assign).
    pub variants: Vec<VariantAssignment>,
}

impl Enrollment {
    /// A fresh, active enrollment of `customer` in version 1 of `journey`, entered at 0, with id
    /// `{journey}/{customer}/1`.
    pub fn new(journey: impl Into<String>, customer: &str) -> Self {
        let journey = journey.into();
        Enrollment {
            id: format!("{journey}/{customer}/1"),
            journey,
            version: 1,
            status: EnrollmentStatus::Active,
            entered_at: 0,
            milestones: Vec::new(),
            state: Vec::new(),
            timers: Vec::new(),
            variants: Vec::new(),
        }
    }

    /// Whether the enrollment is still in the journey.
    pub fn is_active(&self) -> bool {
        self.status == EnrollmentStatus::Active
    }

    /// The named milestone, if it was reached.
    pub fn milestone(&self, name: &str) -> Option<&MilestoneHit> {
        self.milestones.iter().find(|m| m.name == name)
    }

    /// Whether the named milestone was reached.
    pub fn has_milestone(&self, name: &str) -> bool {
        self.milestone(name).is_some()
    }

    /// The named timer, if it is pending.
    pub fn timer(&self, name: &str) -> Option<&PendingTimer> {
        self.timers.iter().find(|t| t.name == name)
    }

    /// The stored state read as JSON into `T`: `Ok(None)` when nothing is stored yet (a fresh
    /// enrollment), `Err` when the bytes are not a `T`. Pairs with
    /// [`Decision::set_state_json`](crate::Decision::set_state_json).
    ///
    /// ```
    /// use waymark_guest::{Decision, Enrollment};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, Default, Debug, PartialEq)]
    /// struct Progress { stalls: u32 }
    ///
    /// let mut enrollment = Enrollment::new("onboarding", "c-1");
    /// assert_eq!(enrollment.state_json::<Progress>(), Ok(None));
    /// let decision = Decision::new().set_state_json(&Progress { stalls: 2 });
    /// # if let waymark_guest::Command::SetState(bytes) = &decision.commands()[0] {
    /// #     enrollment.state = bytes.clone();
    /// # }
    /// assert_eq!(enrollment.state_json::<Progress>(), Ok(Some(Progress { stalls: 2 })));
    /// ```
    pub fn state_json<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, String> {
        if self.state.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&self.state)
            .map(Some)
            .map_err(|e| format!("the enrollment's state is not what this journey stores: {e}"))
    }

    /// The arm recorded for `experiment`, if any.
    pub fn variant(&self, experiment: &str) -> Option<&str> {
        self.variants
            .iter()
            .find(|v| v.experiment == experiment)
            .map(|v| v.arm.as_str())
    }
}

/// What happened to a message a journey sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The adapter accepted it; the receipt's provider id, if any.
    Delivered(Option<String>),
    /// It could not be delivered after every retry, or the failure was permanent; why. A
    /// message whose address was suppressed (a hard bounce or a complaint) after the send was
    /// decided is `Failed` with a reason starting [`SUPPRESSED_PREFIX`]: see
    /// [`is_suppressed`](Self::is_suppressed).
    Failed(String),
}

/// How the host's reason starts for a message it did not attempt because its address was
/// suppressed after the send was decided (contract 0.1.2 hosts; the contract's
/// `delivery-report` has no outcome of its own for it).
pub const SUPPRESSED_PREFIX: &str = "suppressed: ";

impl DeliveryOutcome {
    /// Whether the host did not attempt the message because its address was suppressed: such a
    /// message counts as suppressed in reports, not as sent or failed.
    pub fn is_suppressed(&self) -> bool {
        matches!(self, DeliveryOutcome::Failed(reason) if reason.starts_with(SUPPRESSED_PREFIX))
    }
}

/// A message's fate, reported back to the journey that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// The message's id (its idempotency key).
    pub message_id: String,
    /// The channel it was sent through.
    pub channel: String,
    /// The template it was sent with.
    pub template: String,
    /// Delivered or failed.
    pub outcome: DeliveryOutcome,
}

impl DeliveryReport {
    /// A report that `template` was delivered through `channel`, without a provider id; the
    /// message id is empty (set it with [`with_message_id`](Self::with_message_id)).
    pub fn delivered(channel: impl Into<String>, template: impl Into<String>) -> Self {
        DeliveryReport {
            message_id: String::new(),
            channel: channel.into(),
            template: template.into(),
            outcome: DeliveryOutcome::Delivered(None),
        }
    }

    /// A report that `template` failed to go through `channel`, for `reason`.
    pub fn failed(
        channel: impl Into<String>,
        template: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        DeliveryReport {
            message_id: String::new(),
            channel: channel.into(),
            template: template.into(),
            outcome: DeliveryOutcome::Failed(reason.into()),
        }
    }

    /// Sets the message id (builder style, for tests).
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = id.into();
        self
    }

    /// Whether the message was delivered.
    pub fn is_delivered(&self) -> bool {
        matches!(self.outcome, DeliveryOutcome::Delivered(_))
    }
}

/// Why `decide` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The customer just entered the journey, on this event.
    Entered(Event),
    /// An event of an enrolled customer.
    Event(Event),
    /// A timer the journey scheduled came due; its name.
    Timer(String),
    /// The customer did not reach this milestone within its stall window
    /// ([`MilestoneSpec::stall_after`](crate::MilestoneSpec::stall_after)): it is the milestone
    /// they are stuck before. It comes again after each further window they stay stuck.
    Stalled(String),
    /// A message this enrollment sent was delivered or failed.
    Delivery(DeliveryReport),
}

impl Trigger {
    /// The trigger's kind as the host names it: `entered`, `event`, `timer`, `stalled` or
    /// `delivery`.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Entered(_) => "entered",
            Trigger::Event(_) => "event",
            Trigger::Timer(_) => "timer",
            Trigger::Stalled(_) => "stalled",
            Trigger::Delivery(_) => "delivery",
        }
    }

    /// The event behind an `Entered` or `Event` trigger.
    pub fn event(&self) -> Option<&Event> {
        match self {
            Trigger::Entered(e) | Trigger::Event(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this is an `Event` trigger for an event named `name` (not the entry event).
    pub fn is_event(&self, name: &str) -> bool {
        matches!(self, Trigger::Event(e) if e.name == name)
    }

    /// Whether this is the timer named `name` coming due.
    pub fn is_timer(&self, name: &str) -> bool {
        matches!(self, Trigger::Timer(t) if t == name)
    }

    /// Whether this is a stall on the way to the milestone named `milestone`.
    pub fn is_stalled(&self, milestone: &str) -> bool {
        matches!(self, Trigger::Stalled(m) if m == milestone)
    }
}

/// Everything `decide` may base its decision on. The same context always yields the same
/// decision: that is what makes replay honest.
///
/// Tests build one with a constructor per trigger ([`entered`](Self::entered),
/// [`on_event`](Self::on_event), [`timer`](Self::timer), [`stalled`](Self::stalled),
/// [`delivery`](Self::delivery)) and adjust it with the `at`/`for_customer`/`with_*` builders.
/// Defaults: customer `customer-1` without attributes, an active enrollment
/// `journey/customer-1/1` of version 1 entered at 0, `now` 0, `seed` 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// Why `decide` runs.
    pub trigger: Trigger,
    /// The customer, with their current attributes.
    pub customer: Customer,
    /// The customer's enrollment in this journey, before this decision.
    pub enrollment: Enrollment,
    /// The host's notion of now (virtual on a manual clock and during replay).
    pub now: Timestamp,
    /// Deterministic per trigger; seeds experiment assignment and any randomness.
    pub seed: u64,
}

impl Context {
    /// A context for `trigger` with the defaults described on [`Context`].
    pub fn new(trigger: Trigger) -> Self {
        let customer = Customer::new("customer-1");
        let enrollment = Enrollment::new("journey", &customer.id);
        Context {
            trigger,
            customer,
            enrollment,
            now: 0,
            seed: 0,
        }
    }

    /// In an account's journey: the member whose event triggered this decision (see
    /// [`Event::member`]); `None` for timers, stalls, delivery reports and customers' journeys.
    /// The account itself is [`customer`](Self::customer): its id and its traits.
    pub fn member(&self) -> Option<Customer> {
        self.trigger.event().and_then(Event::member)
    }

    /// The customer just entered on `event`.
    pub fn entered(event: Event) -> Self {
        Context::new(Trigger::Entered(event))
    }

    /// An enrolled customer did `event` (named `on_event` because [`event`](Self::event) reads
    /// the trigger's event).
    pub fn on_event(event: Event) -> Self {
        Context::new(Trigger::Event(event))
    }

    /// The timer `name` came due.
    pub fn timer(name: impl Into<String>) -> Self {
        Context::new(Trigger::Timer(name.into()))
    }

    /// The customer did not reach `milestone` within its stall window.
    pub fn stalled(milestone: impl Into<String>) -> Self {
        Context::new(Trigger::Stalled(milestone.into()))
    }

    /// A message was delivered or failed.
    pub fn delivery(report: DeliveryReport) -> Self {
        Context::new(Trigger::Delivery(report))
    }

    /// Sets `now`.
    pub fn at(mut self, now: Timestamp) -> Self {
        self.now = now;
        self
    }

    /// Sets the customer (the enrollment keeps its id).
    pub fn for_customer(mut self, customer: Customer) -> Self {
        self.customer = customer;
        self
    }

    /// Replaces the enrollment.
    pub fn with_enrollment(mut self, enrollment: Enrollment) -> Self {
        self.enrollment = enrollment;
        self
    }

    /// Sets when the customer entered.
    pub fn entered_at(mut self, at: Timestamp) -> Self {
        self.enrollment.entered_at = at;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Records a milestone as already reached at `at`.
    pub fn with_milestone(mut self, name: impl Into<String>, at: Timestamp) -> Self {
        self.enrollment.milestones.push(MilestoneHit {
            name: name.into(),
            at,
        });
        self
    }

    /// Records a timer as pending.
    pub fn with_timer(mut self, name: impl Into<String>, due: Timestamp) -> Self {
        self.enrollment.timers.push(PendingTimer {
            name: name.into(),
            due,
        });
        self
    }

    /// Sets the journey's stored state.
    pub fn with_state(mut self, state: impl Into<Vec<u8>>) -> Self {
        self.enrollment.state = state.into();
        self
    }

    /// Records an experiment arm as already assigned.
    pub fn with_variant(mut self, experiment: impl Into<String>, arm: impl Into<String>) -> Self {
        self.enrollment.variants.push(VariantAssignment {
            experiment: experiment.into(),
            arm: arm.into(),
        });
        self
    }

    /// Sets the enrollment's status.
    pub fn with_status(mut self, status: EnrollmentStatus) -> Self {
        self.enrollment.status = status;
        self
    }

    /// The event behind an `Entered` or `Event` trigger.
    pub fn event(&self) -> Option<&Event> {
        self.trigger.event()
    }

    /// `now + duration`: the timestamp `duration` from now. Saturates instead of overflowing.
    pub fn after(&self, duration: Duration) -> Timestamp {
        self.now.saturating_add(duration)
    }

    /// How long the customer has been in the journey.
    pub fn time_in_journey(&self) -> Duration {
        self.now.saturating_sub(self.enrollment.entered_at)
    }

    /// The customer's arm of `experiment`: the one recorded in the enrollment if there is one,
    /// else [`assign_arm`](crate::assign_arm)`(experiment, customer id, "", arms)`, which depends
    /// on nothing but the experiment and the customer, so a customer keeps their arm across
    /// triggers, runs and replays.
    ///
    /// Record a fresh pick with [`Decision::assign`](crate::Decision::assign) so that reports
    /// can split by arm. Empty `arms` give `""`.
    pub fn arm<'a>(&'a self, experiment: &str, arms: &'a [&'a str]) -> &'a str {
        match self.enrollment.variant(experiment) {
            Some(arm) => arm,
            None => crate::assign_arm(experiment, &self.customer.id, "", arms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failure_naming_a_suppressed_address_is_suppressed() {
        let late = DeliveryOutcome::Failed(
            "suppressed: ada@example.com is suppressed on channel \"email\" (hard_bounce)".into(),
        );
        assert!(late.is_suppressed());
        assert!(!DeliveryOutcome::Failed("HTTP 400: invalid address".into()).is_suppressed());
        assert!(!DeliveryOutcome::Delivered(None).is_suppressed());
    }

    #[test]
    fn event_properties_default_to_an_empty_object() {
        let e = Event::new("signed_up");
        assert_eq!(e.properties, json!({}));
        assert_eq!(e.properties["missing"], Value::Null);
        assert_eq!(e.property("missing"), None);
    }

    #[test]
    fn event_builders_set_what_they_say() {
        let e = Event::new("order_placed")
            .with_id("e-1")
            .with_property("total", json!(42))
            .with_property("currency", json!("EUR"))
            .at(7);
        assert_eq!(e.id, "e-1");
        assert_eq!(e.timestamp, 7);
        assert_eq!(e.properties, json!({"total": 42, "currency": "EUR"}));
        assert_eq!(e.property_str("currency"), Some("EUR"));
        assert!(e.is("order_placed"));
    }

    #[test]
    fn context_defaults_are_an_active_first_run() {
        let ctx = Context::timer("nudge");
        assert_eq!(ctx.customer.id, "customer-1");
        assert_eq!(ctx.enrollment.id, "journey/customer-1/1");
        assert!(ctx.enrollment.is_active());
        assert_eq!((ctx.now, ctx.seed), (0, 0));
        assert!(ctx.trigger.is_timer("nudge"));
        assert_eq!(ctx.trigger.kind(), "timer");
    }

    #[test]
    fn context_builders_fill_the_enrollment() {
        let ctx = Context::on_event(Event::new("first_value"))
            .at(100)
            .entered_at(40)
            .with_milestone("activated", 50)
            .with_timer("nudge", 200)
            .with_state(b"s".to_vec())
            .with_variant("copy", "b")
            .with_seed(9);
        assert_eq!(ctx.time_in_journey(), 60);
        assert_eq!(ctx.after(5), 105);
        assert!(ctx.enrollment.has_milestone("activated"));
        assert_eq!(ctx.enrollment.timer("nudge").map(|t| t.due), Some(200));
        assert_eq!(ctx.enrollment.state, b"s");
        assert_eq!(ctx.enrollment.variant("copy"), Some("b"));
        assert_eq!(ctx.seed, 9);
        assert!(ctx.trigger.is_event("first_value"));
        assert_eq!(ctx.event().map(|e| e.name.as_str()), Some("first_value"));
    }

    #[test]
    fn recorded_arm_wins_over_a_fresh_pick() {
        let arms = ["a", "b", "c"];
        let fresh = Context::timer("t");
        let picked = fresh.arm("copy", &arms).to_string();
        assert!(arms.contains(&picked.as_str()));
        assert_eq!(fresh.arm("copy", &arms), picked, "the pick is stable");

        let recorded = Context::timer("t").with_variant("copy", "zzz");
        assert_eq!(recorded.arm("copy", &arms), "zzz");
    }

    #[test]
    fn time_zone_is_the_timezone_attribute_when_it_names_one() {
        let tokyo = Customer::new("c").with_attribute("timezone", json!("Asia/Tokyo"));
        assert_eq!(tokyo.time_zone().map(|z| z.name()), Some("Asia/Tokyo"));
        let unknown = Customer::new("c").with_attribute("timezone", json!("Nowhere/Land"));
        assert_eq!(unknown.time_zone(), None);
        assert_eq!(
            Customer::new("c").time_zone().unwrap_or_default(),
            TimeZone::UTC
        );
    }

    #[test]
    fn date_attributes_read_dates_timestamps_and_month_days() {
        let customer = Customer::new("c")
            .with_attribute("renewal_date", json!("2026-07-01"))
            .with_attribute("renewal_at", json!("2026-07-01T08:30:00Z"))
            .with_attribute("signed_up_at", json!(1_700_000_000_000_i64))
            .with_attribute("birthday", json!("03-14"))
            .with_attribute("plan", json!("pro"));
        let july_first = crate::calendar::Date::new(2026, 7, 1).unwrap();
        assert_eq!(
            customer.attribute_moment("renewal_date"),
            Some(Moment::Date(july_first))
        );
        assert_eq!(
            customer.attribute_timestamp("renewal_date"),
            Some(1_782_864_000_000),
            "a date is midnight UTC for a customer without a zone"
        );
        assert_eq!(
            customer.attribute_timestamp("renewal_at"),
            Some(1_782_894_600_000)
        );
        assert_eq!(
            customer.attribute_timestamp("signed_up_at"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            customer.attribute_month_day("birthday"),
            MonthDay::new(3, 14)
        );
        assert_eq!(customer.attribute_moment("plan"), None);
        assert_eq!(customer.attribute_moment("missing"), None);

        let in_tokyo = customer.with_attribute("timezone", json!("Asia/Tokyo"));
        assert_eq!(
            in_tokyo.attribute_timestamp("renewal_date"),
            Some(1_782_864_000_000 - 9 * 3_600_000),
            "midnight in the customer's zone"
        );
    }

    #[test]
    fn state_json_round_trips_through_set_state_json() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Progress {
            stalls: u32,
            task: Option<String>,
        }
        let fresh = Enrollment::new("j", "c");
        assert_eq!(fresh.state_json::<Progress>(), Ok(None));

        let decision = crate::Decision::new().set_state_json(&Progress {
            stalls: 2,
            task: Some("task_1".into()),
        });
        let crate::Command::SetState(bytes) = &decision.commands()[0] else {
            panic!("not a set_state: {decision:?}");
        };
        let stored = Context::timer("t").with_state(bytes.clone());
        assert_eq!(
            stored.enrollment.state_json::<Progress>(),
            Ok(Some(Progress {
                stalls: 2,
                task: Some("task_1".into())
            }))
        );

        let garbage = Context::timer("t").with_state(b"\xff not json".to_vec());
        assert!(garbage.enrollment.state_json::<Progress>().is_err());
    }

    #[test]
    fn delivery_reports_say_what_happened() {
        let ok = DeliveryReport::delivered("webhook", "welcome").with_message_id("m-1");
        assert!(ok.is_delivered());
        assert_eq!(ok.message_id, "m-1");
        let failed = DeliveryReport::failed("webhook", "welcome", "410 gone");
        assert_eq!(failed.outcome, DeliveryOutcome::Failed("410 gone".into()));
        assert_eq!(Context::delivery(failed).trigger.kind(), "delivery");
    }
}

/// What [`Journey::migrate`](crate::Journey::migrate) may base its answer on: an enrollment
/// moving to this version from another. Deterministic, as [`Context`] is.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The version the enrollment leaves.
    pub from_version: u32,
    /// The customer, with their current attributes.
    pub customer: Customer,
    /// The enrollment as the old version left it (state, timers, milestones, variants),
    /// already carrying this version's number.
    pub enrollment: Enrollment,
    /// The host's notion of now.
    pub now: Timestamp,
    /// Deterministic per migration of this enrollment.
    pub seed: u64,
}
