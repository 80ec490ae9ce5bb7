//! The guest SDK for [Waymark]: write a journey's branching logic as plain Rust, and build it
//! into a WebAssembly component with `cargo build --profile guest --target wasm32-wasip2` (the
//! profile is below, under *Building*). Channel adapters use
//! the companion crate `waymark-channel` (`guest-sdk/channel`), built on this one's types.
//!
//! A **journey** implements [`Journey`]: [`describe`](Journey::describe) returns its [`Spec`]
//! (entry events, milestones, goal, channels, ...), and [`decide`](Journey::decide) turns a
//! [`Context`] (the [`Trigger`], the customer, the enrollment, the host's `now`) into a
//! [`Decision`] (send, schedule, milestone, complete, ...). [`export_journey!`] turns it into
//! the component's exports.
//!
//! The map:
//! - [`context`] — what `decide` sees: [`Context`], [`Trigger`], [`Event`], [`Customer`],
//!   [`Enrollment`], with test-friendly builders.
//! - [`object`] — [`JsonObject`], the customer's attributes and an event's properties: read
//!   like a `serde_json` object, parsed from the host's text only when first read.
//! - [`decision`] — what `decide` returns: [`Decision`] and its [`Command`]s.
//! - [`spec`] — what `describe` returns: [`Spec`] and its parts.
//! - [`time`] — milliseconds: [`seconds`], [`minutes`], [`hours`], [`days`], [`weeks`].
//! - [`calendar`] — when things are on the customer's calendar: [`Date`], [`MonthDay`],
//!   [`TimeOfDay`], [`TimeZone`] (IANA, daylight saving time included) and [`Moment`] (an
//!   attribute holding a date or a timestamp).
//! - [`experiment`] — deterministic A/B assignment: [`assign_arm`].
//! - [`log`] and [`stats`] — the host imports a journey may call.
//!
//! Journey logic is ordinary Rust over ordinary types, so it is unit-tested natively:
//!
//! ```
//! use waymark_guest::prelude::*;
//!
//! pub struct Onboarding;
//!
//! impl Journey for Onboarding {
//!     fn describe() -> Spec {
//!         Spec::new("Welcome new signups; nudge them after three days")
//!             .enter_on("signed_up")
//!             .milestone("first_value", None)
//!             .goal("first_value")
//!             .channel("webhook")
//!     }
//!
//!     fn decide(ctx: &Context) -> Result<Decision, String> {
//!         Ok(match &ctx.trigger {
//!             Trigger::Entered(_) => Decision::new()
//!                 .send("webhook", "welcome", json!({"customer_id": ctx.customer.id}))
//!                 .schedule_in("nudge", days(3), ctx),
//!             Trigger::Event(e) if e.is("first_value") => {
//!                 Decision::new().milestone("first_value").complete()
//!             }
//!             Trigger::Timer(t) if t == "nudge" => {
//!                 Decision::new().send("webhook", "nudge", json!({}))
//!             }
//!             _ => Decision::new(),
//!         })
//!     }
//! }
//!
//! // In the journey's crate (crate-type = ["cdylib", "rlib"]):
//! // waymark_guest::export_journey!(Onboarding);
//!
//! let ctx = Context::entered(Event::new("signed_up")).at(1_000);
//! let decision = Onboarding::decide(&ctx).unwrap();
//! assert_eq!(decision.schedules().collect::<Vec<_>>(), vec![("nudge", 1_000 + days(3))]);
//! ```
//!
//! Determinism: `decide` must give the same decision for the same context, because the host
//! replays triggers. Use `ctx.now` rather than a clock and [`assign_arm`] (or `ctx.seed`)
//! rather than randomness; the host makes clocks and randomness virtual anyway.
//!
//! Building: give the component a profile of its own, as Waymark's workspace does, and build
//! with `cargo build --profile guest --target wasm32-wasip2`. Without debug info and with LTO a
//! journey is a few hundred KiB rather than several MiB, and every upload, compile and
//! instantiation pays for what the component weighs:
//!
//! ```toml
//! [profile.guest]
//! inherits = "release"
//! lto = true
//! codegen-units = 1
//! debug = false
//! strip = true
//! panic = "abort"
//! ```
//!
//! Memory: the SDK installs the component's global allocator (feature `allocator`, on by
//! default), which serves the many small blocks of a call from size-class free lists rather
//! than from wasi-libc's `malloc`. Turn default features off to bring your own.
//!
//! [Waymark]: https://github.com/waymark

#![warn(missing_docs)]

#[cfg(all(
    feature = "allocator",
    any(test, all(target_arch = "wasm32", not(target_feature = "atomics")))
))]
mod alloc;
#[doc(hidden)]
pub mod bindings;
#[doc(hidden)]
pub mod export;

/// Small blocks from size-class free lists (see `alloc.rs`): a component's calls allocate and
/// free dozens of them each.
#[cfg(all(
    feature = "allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: alloc::SizeClasses = alloc::SizeClasses::new();

pub mod calendar;
pub mod context;
pub mod decision;
pub mod experiment;
pub mod log;
pub mod object;
pub mod spec;
pub mod stats;
pub mod time;

pub use calendar::{Date, Moment, MonthDay, TimeOfDay, TimeZone};
pub use context::SUPPRESSED_PREFIX; // Provider feedback (issue 11)
pub use context::{
    Context, Customer, DeliveryOutcome, DeliveryReport, Enrollment, EnrollmentStatus, Event,
    JsonObject, Migration, MilestoneHit, Object, PendingTimer, Trigger, VariantAssignment,
};
pub use decision::{Command, Decision};
pub use experiment::{assign_arm, bucket, thompson_arm, thompson_pick};
pub use spec::{
    Allocation, AudienceTrigger, EntryTrigger, ExperimentSpec, MilestoneSpec, Reentry, Spec,
    Subject,
};
pub use stats::{arm_stats, channel_stats, ArmStats, ChannelStats};
pub use time::{days, hours, millis, minutes, seconds, weeks, Duration, Timestamp};

/// The `serde` this SDK uses, so a guest can derive its traits with
/// `#[serde(crate = "waymark_guest::serde")]` and no dependency of its own.
pub use serde;
/// The `serde_json` this SDK uses, so a journey needs no dependency of its own to build
/// payloads.
pub use serde_json;
/// Builds a [`serde_json::Value`] from JSON-like syntax: `json!({"plan": plan})`.
pub use serde_json::json;

/// Everything a journey usually needs: `use waymark_guest::prelude::*;`.
pub mod prelude {
    pub use crate::{
        assign_arm, days, hours, json, minutes, seconds, thompson_arm, weeks, Command, Context,
        Customer, Date, Decision, DeliveryOutcome, DeliveryReport, Enrollment, Event, Journey,
        Migration, Moment, MonthDay, Reentry, Spec, TimeOfDay, TimeZone, Timestamp, Trigger,
    };
    pub use serde_json::Value;
}

/// A journey: its declaration and its branching logic. Implement it on a unit struct and
/// export it with [`export_journey!`].
pub trait Journey {
    /// Declares the journey. The host calls it once, when a version is uploaded.
    fn describe() -> Spec;

    /// Decides what happens next for one customer. An `Err` fails this trigger only: the host
    /// records the message on the enrollment and carries on with other customers.
    ///
    /// Must be deterministic: the same context gives the same decision.
    fn decide(ctx: &Context) -> Result<Decision, String>;

    /// Adapts an enrollment that moves to this version from another
    /// (`POST /v1/journeys/{name}/migrate`): convert its state, move its timers, and so on, as
    /// `decide` would. An `Err` (or a panic) refuses the move for this enrollment: it stays on
    /// its version, untouched, and the refusal is reported with the migration.
    ///
    /// The default accepts every enrollment as it is: right when this version reads the state
    /// and timers of the versions it may take enrollments from.
    fn migrate(migration: &Migration) -> Result<Decision, String> {
        let _ = migration;
        Ok(Decision::new())
    }
}

/// Exports a [`Journey`] as the component's `describe` and `decide`, converting between the
/// contract's types and the SDK's. Invoke it once, at the root of a `cdylib` crate:
///
/// ```ignore
/// pub struct Onboarding;
/// impl waymark_guest::Journey for Onboarding { /* ... */ }
/// waymark_guest::export_journey!(Onboarding);
/// ```
///
/// JSON that the host sends malformed makes `decide` return an error; it never panics.
#[macro_export]
macro_rules! export_journey {
    ($journey:ty) => {
        const _: () = {
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            struct __WaymarkJourneyExport;

            impl $crate::__export::journey::Guest for __WaymarkJourneyExport {
                fn describe() -> $crate::__export::journey::Spec {
                    $crate::__export::describe::<$journey>()
                }

                fn decide(
                    context: $crate::__export::journey::Context,
                ) -> ::core::result::Result<
                    $crate::__export::Vec<$crate::__export::journey::Command>,
                    $crate::__export::String,
                > {
                    $crate::__export::decide::<$journey>(context)
                }
            }

            impl $crate::__export::journey::exports::waymark::journey::migration::Guest
                for __WaymarkJourneyExport
            {
                fn migrate(
                    context: $crate::__export::journey::exports::waymark::journey::migration::MigrationContext,
                ) -> ::core::result::Result<
                    $crate::__export::Vec<$crate::__export::journey::Command>,
                    $crate::__export::String,
                > {
                    $crate::__export::migrate::<$journey>(context)
                }
            }

            impl $crate::__export::journey::exports::waymark::journey::audience::Guest
                for __WaymarkJourneyExport
            {
                fn describe_audience(
                ) -> $crate::__export::journey::exports::waymark::journey::audience::AudienceSpec {
                    $crate::__export::describe_audience::<$journey>()
                }
            }

            // Issue 13: how the journey's experiments allocate (contract 0.1.2).
            impl $crate::__export::journey::exports::waymark::journey::allocation::Guest
                for __WaymarkJourneyExport
            {
                fn describe_allocation() -> $crate::__export::Vec<
                    $crate::__export::journey::exports::waymark::journey::allocation::ExperimentAllocation,
                > {
                    $crate::__export::describe_allocation::<$journey>()
                }
            }

            // Only a component exports anything: a native build (the crate's own tests, as an
            // rlib beside its cdylib) would hand the linker the interface export's symbol names
            // (`cabi_post_waymark:journey/migration@…`), which native linkers refuse.
            #[cfg(target_arch = "wasm32")]
            $crate::__export::journey::export!(
                __WaymarkJourneyExport with_types_in $crate::__export::journey
            );
        };
    };
}

#[doc(hidden)]
pub use export as __export;
