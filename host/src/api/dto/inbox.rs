//! In-app inbox and subscriptions (issue 11): inbox entries and pages, and a customer's
//! subscriptions, as the API shows them.

use crate::engine::profile::Subscriptions;
use crate::store::inbox::{InboxEntry, InboxPage};
use waymark_api::inbox as api;

/// One inbox entry.
pub(in crate::api) fn message(entry: InboxEntry) -> api::InboxMessage {
    let InboxEntry {
        message_id,
        customer: _,
        channel,
        journey,
        template,
        title,
        body,
        url,
        data,
        created_at,
        seen_at,
        read_at,
        clicked_at,
        archived_at,
    } = entry;
    api::InboxMessage {
        id: message_id,
        channel,
        journey,
        template,
        title,
        body,
        url,
        data,
        created_at,
        seen_at,
        read_at,
        clicked_at,
        archived_at,
    }
}

/// One page of an inbox, with the cursor of the next.
pub(in crate::api) fn page(page: InboxPage) -> api::InboxPage {
    let InboxPage { entries, next } = page;
    api::InboxPage {
        messages: entries.into_iter().map(message).collect(),
        next_cursor: next.map(|c| c.to_hex()),
    }
}

same_shape!(
    Subscriptions,
    api::Subscriptions {
        unsubscribed_all,
        channels,
        topics
    }
);
