//! Templates (issue 11): the store's template versions and the renderer's output as the API
//! shows them, and uploads as the renderer takes them.

use crate::store::TemplateVersion;
use crate::template::{ChannelKind, Rendered, TemplateSource};
use waymark_api::templates as api;

impl From<ChannelKind> for api::TemplateChannel {
    fn from(kind: ChannelKind) -> Self {
        match kind {
            ChannelKind::Email => api::TemplateChannel::Email,
            ChannelKind::Sms => api::TemplateChannel::Sms,
            ChannelKind::Slack => api::TemplateChannel::Slack,
            ChannelKind::Inapp => api::TemplateChannel::Inapp,
            ChannelKind::Crm => api::TemplateChannel::Crm,
        }
    }
}

impl From<api::TemplateChannel> for ChannelKind {
    fn from(kind: api::TemplateChannel) -> Self {
        match kind {
            api::TemplateChannel::Email => ChannelKind::Email,
            api::TemplateChannel::Sms => ChannelKind::Sms,
            api::TemplateChannel::Slack => ChannelKind::Slack,
            api::TemplateChannel::Inapp => ChannelKind::Inapp,
            api::TemplateChannel::Crm => ChannelKind::Crm,
        }
    }
}

impl From<api::TemplateUpload> for TemplateSource {
    fn from(upload: api::TemplateUpload) -> Self {
        let api::TemplateUpload {
            channel,
            default_locale,
            locales,
        } = upload;
        TemplateSource {
            channel: channel.into(),
            default_locale,
            locales,
        }
    }
}

impl From<TemplateVersion> for api::Template {
    fn from(v: TemplateVersion) -> Self {
        let TemplateVersion {
            name,
            version,
            source:
                TemplateSource {
                    channel,
                    default_locale,
                    locales,
                },
            created_at,
        } = v;
        api::Template {
            name,
            version,
            channel: channel.into(),
            default_locale,
            locales,
            created_at,
        }
    }
}

impl From<TemplateVersion> for api::TemplateSummary {
    fn from(v: TemplateVersion) -> Self {
        let TemplateVersion {
            name,
            version,
            source:
                TemplateSource {
                    channel,
                    default_locale,
                    locales,
                },
            created_at,
        } = v;
        api::TemplateSummary {
            name,
            version,
            channel: channel.into(),
            default_locale,
            locales: locales.into_keys().collect(),
            created_at,
        }
    }
}

/// A preview's answer: what version `version` of `name` rendered.
pub fn preview(name: String, version: u32, rendered: Rendered) -> api::Preview {
    let Rendered { locale, parts } = rendered;
    api::Preview {
        name,
        version,
        locale,
        parts,
    }
}
