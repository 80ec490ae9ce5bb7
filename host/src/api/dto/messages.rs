//! Messages as a customer receives them: the store's outbox record without what only the
//! delivery loop needs (tenant, customer, version, run, next attempt time).

use crate::store::{Message, MessageStatus};
use waymark_api::messages as api;

impl From<Message> for api::Message {
    fn from(message: Message) -> Self {
        let Message {
            id,
            tenant: _,
            customer: _,
            journey,
            version: _,
            enrollment,
            run: _,
            channel,
            template,
            payload,
            status,
            attempts,
            next_attempt_at: _,
            last_error,
            provider_id,
            created_at,
            delivered_at,
            release_at,
            template_version,
            receipt,
        } = message;
        api::Message {
            id,
            journey,
            enrollment,
            channel,
            template,
            payload,
            status: status.into(),
            attempts,
            last_error,
            provider_id,
            created_at,
            delivered_at,
            release_at,
            template_version,
            receipt,
        }
    }
}

impl From<MessageStatus> for api::MessageStatus {
    fn from(status: MessageStatus) -> Self {
        match status {
            MessageStatus::Pending => api::MessageStatus::Pending,
            MessageStatus::Delivered => api::MessageStatus::Delivered,
            MessageStatus::Dead => api::MessageStatus::Dead,
            MessageStatus::Suppressed => api::MessageStatus::Suppressed,
            MessageStatus::Held => api::MessageStatus::Held,
        }
    }
}
