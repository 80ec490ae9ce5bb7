//! Events: what a tenant posts becomes the model's [`model::Event`] (with the server's now and
//! `{}` filled in); a dry run's trigger carries one as journeys see it.

use crate::model::{self, Millis};
use crate::store::Ingested;
use waymark_api::events as api;

/// The event a tenant posted, with what it left out filled in: no properties, and `now`.
pub(crate) fn event(input: api::EventInput, now: Millis) -> model::Event {
    let api::EventInput {
        id,
        customer,
        name,
        properties,
        timestamp,
    } = input;
    model::Event {
        id,
        customer,
        name,
        properties: properties.unwrap_or_default(),
        timestamp: timestamp.unwrap_or(now),
    }
}

/// Whether the store took a posted event as new.
pub(crate) fn event_status(ingested: &Ingested) -> api::EventStatus {
    match ingested {
        Ingested::Accepted => api::EventStatus::Accepted,
        Ingested::Duplicate => api::EventStatus::Duplicate,
    }
}

impl From<model::Event> for api::Event {
    fn from(event: model::Event) -> Self {
        let model::Event {
            id,
            customer,
            name,
            properties,
            timestamp,
        } = event;
        api::Event {
            id,
            customer,
            name,
            properties,
            timestamp,
        }
    }
}

impl From<api::Event> for model::Event {
    fn from(event: api::Event) -> Self {
        let api::Event {
            id,
            customer,
            name,
            properties,
            timestamp,
        } = event;
        model::Event {
            id,
            customer,
            name,
            properties,
            timestamp,
        }
    }
}
