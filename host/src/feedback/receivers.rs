//! Which channel registrations receive webhooks (issue 10), so the delivery loop indexes only
//! messages that a webhook can ask about.
//!
//! The feedback index (`store::feedback`, three random-key writes per delivered message) serves
//! `POST /v1/hooks/{tenant}/{channel}` alone. A registration whose adapter receives no
//! webhooks — a component without the `feedback` export (built before contract 0.1.2), or one
//! whose `receive` answers `unsupported` under the registration's config (the SDK's default
//! `receive`, the webhook adapter, an email registration with a provider whose webhooks the
//! plugin does not take) — gets the 422 for every webhook, so indexing its messages is pure
//! cost: about a tenth of the delivery loop's CPU.
//!
//! What a registration does is asked once per registration (its version and time, so a changed
//! config is asked again): its adapter's `receive` runs on an empty request (`POST`, no headers,
//! no body) under the registration's settings and secrets, in the sandbox as for a real
//! webhook. `unsupported` is the contract's "this adapter receives no webhooks"; any other
//! answer — a refused signature, an invalid request, even a guest failure — counts as
//! receiving, so a message is left unindexed only when its adapter said it receives none.

use crate::feedback::{ReceiveFailure, WebhookRequest};
use crate::model::{Limits, Millis};
use crate::sandbox::ChannelComponent;
use crate::store::ChannelRecord;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// What each registration answered: `(tenant, channel)` → the registration asked about.
#[derive(Default)]
pub struct Receivers {
    known: Mutex<HashMap<(String, String), Answer>>,
}

/// A registration's answer, for the registration it was (re-registering makes a new one).
struct Answer {
    version: u32,
    updated_at: Millis,
    digest: String,
    receives: bool,
}

impl Receivers {
    /// Whether `record` (of `tenant`), whose adapter is `component`, receives webhooks.
    pub async fn receives(
        &self,
        tenant: &str,
        record: &ChannelRecord,
        component: &ChannelComponent,
        limits: &Limits,
        now: Millis,
    ) -> bool {
        let key = (tenant.to_string(), record.name.clone());
        let same = |a: &Answer| {
            a.version == record.version
                && a.updated_at == record.updated_at
                && a.digest == record.digest
        };
        if let Some(answer) = self.known().get(&key).filter(|a| same(a)) {
            return answer.receives;
        }
        let receives = if component.receives() {
            let mut config = record.settings.clone();
            config.extend(record.secrets.clone());
            let probe = WebhookRequest {
                method: "POST".into(),
                path: format!("/v1/hooks/{tenant}/{}", record.name),
                query: String::new(),
                headers: Vec::new(),
                body: Vec::new(),
                url: String::new(),
                config,
                now,
            };
            !matches!(
                component.receive(&probe, limits).await,
                Err(ReceiveFailure::Unsupported(_))
            )
        } else {
            false
        };
        self.known().insert(
            key,
            Answer {
                version: record.version,
                updated_at: record.updated_at,
                digest: record.digest.clone(),
                receives,
            },
        );
        receives
    }

    fn known(&self) -> MutexGuard<'_, HashMap<(String, String), Answer>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::tests::built_guest;
    use crate::sandbox::{Sandbox, SandboxConfig, DEFAULT_LIMITS};
    use serde_json::json;

    fn registration(name: &str, version: u32, settings: serde_json::Value) -> ChannelRecord {
        ChannelRecord {
            name: name.into(),
            version,
            digest: "d".into(),
            settings: settings.as_object().cloned().unwrap_or_default(),
            secrets: Default::default(),
            allowed_hosts: Vec::new(),
            updated_at: 1,
            rate: None,
            adapter: Default::default(),
        }
    }

    #[tokio::test]
    async fn only_registrations_whose_adapter_takes_webhooks_are_indexed_and_each_is_asked_again_when_it_changes(
    ) {
        let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let webhook = sandbox
            .compile_channel(&built_guest("waymark_webhook.wasm"))
            .expect("the webhook adapter");
        let email = sandbox
            .compile_channel(&built_guest("waymark_email.wasm"))
            .expect("the email adapter");
        let receivers = Receivers::default();
        let asks = |record: ChannelRecord, component: &'static str| {
            let component = if component == "webhook" {
                &webhook
            } else {
                &email
            };
            let receivers = &receivers;
            async move {
                receivers
                    .receives("t", &record, component, &DEFAULT_LIMITS, 0)
                    .await
            }
        };
        // The webhook adapter keeps the SDK's `receive`: no webhooks.
        let hooks = registration("hooks", 1, json!({"url": "https://example.com/in"}));
        assert!(!asks(hooks, "webhook").await);
        // Postmark's and SendGrid's webhooks are received (an empty request is refused as
        // unsigned, not as unsupported); Mailgun's are not.
        let postmark = registration("mail", 1, json!({"provider": "postmark"}));
        assert!(asks(postmark.clone(), "email").await);
        let sendgrid = registration("grid", 1, json!({"provider": "sendgrid"}));
        assert!(asks(sendgrid, "email").await);
        let mailgun = registration("gun", 1, json!({"provider": "mailgun"}));
        assert!(!asks(mailgun, "email").await);
        // `mail` registered again, now with Mailgun: asked again.
        let changed = registration("mail", 2, json!({"provider": "mailgun"}));
        assert!(!asks(changed, "email").await);
        assert!(asks(postmark, "email").await, "and back");
    }
}
