//! The HTTP API's bodies ([`waymark_api`]) converted to and from the host's own types, field
//! by field, one file per resource.
//!
//! The host's types are free to change: `model` is the domain's vocabulary, `store` has its
//! records, `report` its measurements. The DTOs are the public API and change only on purpose.
//! This module is the one place that ties the two, and it does so without serde: every
//! conversion destructures or matches its source exhaustively, so renaming, adding or removing
//! an internal field or variant fails to compile here instead of silently changing the wire.
//!
//! - Responses: model, store and report types → DTOs (`From`, or a small `fn` where the
//!   answer is assembled from several sources).
//! - Requests that carry domain data → model: the dry run's decision context, a sending
//!   policy, limit overrides, events. Where the model is stricter than the DTO (a failure
//!   reason is a word the model must know), the conversion is a `TryFrom`.

/// Conversions both ways between a host type and its DTO of the same shape, field by field.
/// Destructuring keeps them exhaustive: a field added to or renamed in either type fails to
/// compile here.
macro_rules! same_shape {
    ($host:path, $dto:path { $($field:ident),+ $(,)? }) => {
        impl From<$host> for $dto {
            fn from(value: $host) -> Self {
                let $host { $($field),+ } = value;
                $dto { $($field),+ }
            }
        }

        impl From<$dto> for $host {
            fn from(value: $dto) -> Self {
                let $dto { $($field),+ } = value;
                $host { $($field),+ }
            }
        }
    };
}

mod channels;
mod clock;
mod customers;
mod events;
pub(super) mod inbox;
mod journeys;
mod limits;
mod messages;
mod policy;
mod reports;
mod tasks;
mod templates; // Templates (issue 11) // In-app inbox and subscriptions (issue 11)

pub(super) use clock::clock;
pub(super) use customers::{customer, failure_reason_word};
pub(super) use events::{event, event_status};
pub(super) use journeys::{rollout, summary};
pub(super) use limits::tenant_limits;
pub(super) use templates::preview; // Templates (issue 11)

/// Converts every element of `items`.
fn all<A, B: From<A>>(items: Vec<A>) -> Vec<B> {
    items.into_iter().map(B::from).collect()
}
