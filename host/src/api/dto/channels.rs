//! Channels: a registration as the API shows it — the names of its secrets, never their
//! values, and not when it was stored.

use crate::store::{ChannelAdapter, ChannelRecord};
use waymark_api::channels as api;

impl From<ChannelRecord> for api::Channel {
    fn from(record: ChannelRecord) -> Self {
        let ChannelRecord {
            name,
            version,
            digest,
            settings,
            secrets,
            allowed_hosts,
            updated_at: _,
            rate,
            adapter,
        } = record;
        api::Channel {
            name,
            version,
            digest,
            allowed_hosts,
            settings,
            secrets: secrets.into_iter().map(|(key, _value)| key).collect(),
            rate: rate.map(|r| api::SendRate {
                per_second: r.per_second,
                burst: r.burst,
            }),
            // In-app inbox (issue 11)
            kind: (adapter == ChannelAdapter::Inapp).then(|| "inapp".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_channel_shows_the_names_of_its_secrets_never_their_values() {
        let record = ChannelRecord {
            name: "webhook".into(),
            version: 2,
            digest: "ab".into(),
            settings: serde_json::from_value(json!({"url": "http://x"})).unwrap_or_default(),
            secrets: serde_json::from_value(json!({"token": "hunter2", "b": "c"}))
                .unwrap_or_default(),
            allowed_hosts: vec!["x".into()],
            updated_at: 5,
            rate: None,
            adapter: ChannelAdapter::Component,
        };
        let shown = api::Channel::from(record);
        let mut names = shown.secrets.clone();
        names.sort();
        assert_eq!(names, ["b", "token"]);
        let text = serde_json::to_string(&shown).unwrap_or_default();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(shown.settings["url"], "http://x");
    }
}
