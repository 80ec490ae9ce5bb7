//! World `channel`: a channel adapter, called as `deliver`.
//!
//! The world is a list of capabilities ([`WORLD`]: `log`, WASI with real clocks, and outbound
//! `wasi:http` behind [`super::capability::http`]'s policy), from which both its linker and its
//! import allow-list are derived. This file holds the world's export bindings, the per-instance
//! store data, and [`ChannelComponent`]: a compiled adapter with its own pool of warm
//! instances, as journeys have. A whole `deliver` is bounded by the delivery timeout.

use super::capability::hints::{self, HasHints, HintState};
use super::capability::http::{self, OutboundHttp, OutboundPolicy};
use super::capability::log::{self, HasLog, LogState};
use super::capability::wasi::{self, WasiState};
use super::capability::World;
use super::convert::{delivery_error_from_wit, message_to_wit, receipt_from_wit};
use super::engine::Shared;
use super::error::SandboxError;
use super::failure::{is_hostcall_fuel_exhausted, DeliveryFailure, Stage};
use super::guest::{self, GuestState, MemoryCap};
use crate::feedback::types as feedback;
use crate::model;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::component::{InstancePre, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "waymark:journey/channel",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "waymark:journey/types": crate::sandbox::bindings::waymark::journey::types,
            "waymark:journey/log": crate::sandbox::bindings::waymark::journey::log,
            "waymark:journey/channel-types": crate::sandbox::bindings::waymark::journey::channel_types,
            "waymark:journey/delivery-hints": crate::sandbox::bindings::waymark::journey::delivery_hints,
            "waymark:journey/outbound": crate::sandbox::bindings::waymark::journey::outbound,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// World `receiving-channel` (contract 0.1.2): only its `feedback` export is used, looked up per
/// component ([`FeedbackIndices`]), since an adapter built before 0.1.2 does not have it.
mod receiving {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "waymark:journey/receiving-channel",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "waymark:journey/types": crate::sandbox::bindings::waymark::journey::types,
            "waymark:journey/log": crate::sandbox::bindings::waymark::journey::log,
            "waymark:journey/channel-types": crate::sandbox::bindings::waymark::journey::channel_types,
            "waymark:journey/delivery-hints": crate::sandbox::bindings::waymark::journey::delivery_hints,
            "waymark:journey/outbound": crate::sandbox::bindings::waymark::journey::outbound,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use bindings::ChannelPre;
use receiving::exports::waymark::journey::feedback::{
    self as wit_feedback, GuestIndices as FeedbackIndices,
};

/// What an adapter may import: its vocabulary, `log`, `delivery-hints`, WASI with real clocks
/// (no filesystem or sockets), and outgoing HTTP (`wasi:http`, and `outbound` since 0.1.3,
/// behind one policy). Not `stats`: that is a journey's.
pub(super) const WORLD: World<ChannelState> = World {
    name: "channel",
    vocabulary: &["waymark:journey/types@", "waymark:journey/channel-types@"],
    capabilities: &[
        log::capability(),
        hints::capability(),
        wasi::capability(),
        http::capability(),
        http::whole::capability(),
    ],
};

/// The store data of a channel instance, re-armed before every call.
pub(super) struct ChannelState {
    table: ResourceTable,
    wasi: WasiState,
    memory: MemoryCap,
    log: LogState,
    hints: HintState,
    http: OutboundHttp,
    /// Epoch ticks left before the call's deadline ([`guest::rearm_store`] sets them).
    ticks_left: u64,
}

impl guest::Rearmable for ChannelState {
    fn epoch_ticks_left(&mut self) -> &mut u64 {
        &mut self.ticks_left
    }
}

impl ChannelState {
    fn new(policy: OutboundPolicy, shared: &Shared, max_memory: u64) -> ChannelState {
        ChannelState {
            table: ResourceTable::new(),
            wasi: WasiState::real_time(),
            memory: MemoryCap::new(max_memory),
            log: LogState::new("channel"),
            hints: HintState::default(),
            http: OutboundHttp::new(policy, shared.outbound.clone()),
            ticks_left: 0,
        }
    }

    /// Prepares a reused instance's state for the next call: a new outbound policy (allowed
    /// hosts, timeouts, no denials yet), memory cap, log budget and hints, and emptied output; the
    /// resource table (whose stream handles the guest caches) and the real-time WASI context
    /// carry over.
    fn rearm(&mut self, policy: OutboundPolicy, shared: &Shared, max_memory: u64) {
        self.wasi.rearm_real_time();
        self.memory.reset(max_memory);
        self.log = LogState::new("channel");
        self.hints = HintState::default();
        self.http = OutboundHttp::new(policy, shared.outbound.clone());
    }
}

impl WasiView for ChannelState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.table,
        }
    }
}

impl http::whole::HasOutbound for ChannelState {
    fn outbound_http(&mut self) -> &mut OutboundHttp {
        &mut self.http
    }
}

impl WasiHttpView for ChannelState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.http.view(&mut self.table)
    }
}

impl GuestState for ChannelState {
    fn memory_cap(&mut self) -> &mut MemoryCap {
        &mut self.memory
    }

    fn memory_hit(&self) -> bool {
        self.memory.was_hit()
    }

    fn wasi(&self) -> &WasiState {
        &self.wasi
    }

    fn log(&self) -> &LogState {
        &self.log
    }
}

impl HasLog for ChannelState {
    fn log_state(&mut self) -> &mut LogState {
        &mut self.log
    }
}

impl HasHints for ChannelState {
    fn hint_state(&mut self) -> &mut HintState {
        &mut self.hints
    }
}

/// Calls after which a warm instance is retired anyway, so that whatever a guest leaks is
/// bounded (as for journeys).
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

/// An instantiated adapter waiting for its next delivery.
struct Warm {
    store: Store<ChannelState>,
    channel: bindings::Channel,
    calls: u32,
}

/// A validated, compiled channel adapter. Cheap to clone (clones share their idle instances).
///
/// Deliveries reuse an idle instance when there is one, as journeys' calls do: every call gets
/// a fresh outbound policy (its registration's allowed hosts), memory cap, deadline, hostcall
/// fuel and log budget, and its message and configuration arrive as the call's argument. An
/// instance that trapped, ran out of time or memory, or was cancelled is dropped, never reused;
/// one whose adapter returned a delivery error (the call itself finished) is reused. What an
/// adapter keeps in its globals between calls is the one thing a reused instance shows it: the
/// registry gives each channel registration of each tenant its own instances
/// ([`with_own_instances`](Self::with_own_instances)), so that is never another tenant's or
/// another registration's configuration or secrets.
#[derive(Clone)]
pub struct ChannelComponent {
    pre: ChannelPre<ChannelState>,
    /// Where the component's `feedback` export is; `None` if it has none (built before 0.1.2).
    feedback: Option<Arc<FeedbackIndices>>,
    shared: Arc<Shared>,
    idle: Arc<IdlePool>,
}

/// A channel's idle instances; gives their slots back to the overall count when dropped.
struct IdlePool {
    warm: Mutex<Vec<Warm>>,
    shared: Arc<Shared>,
}

impl IdlePool {
    fn new(shared: &Arc<Shared>) -> Arc<IdlePool> {
        Arc::new(IdlePool {
            warm: Mutex::default(),
            shared: shared.clone(),
        })
    }

    fn take(&self) -> Option<Warm> {
        let warm = lock(&self.warm).pop();
        if warm.is_some() {
            self.shared.idle_total.fetch_sub(1, Ordering::Relaxed);
        }
        warm
    }

    /// Keeps `warm` for the next call if this pool and the overall count have room (idle
    /// instances hold slots of the instance pool).
    fn put(&self, warm: Warm) {
        let config = &self.shared.config;
        if warm.calls >= MAX_CALLS_PER_INSTANCE {
            return;
        }
        let mut idle = lock(&self.warm);
        if idle.len() >= config.warm_channel_instances {
            return;
        }
        let room = self
            .shared
            .idle_total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < config.max_idle_instances).then_some(n + 1)
            })
            .is_ok();
        if room {
            idle.push(warm);
        }
    }
}

impl Drop for IdlePool {
    fn drop(&mut self) {
        let n = lock(&self.warm).len();
        self.shared.idle_total.fetch_sub(n, Ordering::Relaxed);
    }
}

impl ChannelComponent {
    /// The compiled component, for the compiled-code cache.
    pub fn component(&self) -> &wasmtime::component::Component {
        self.pre.instance_pre().component()
    }

    pub(super) fn new(
        pre: InstancePre<ChannelState>,
        shared: Arc<Shared>,
    ) -> Result<ChannelComponent, SandboxError> {
        let feedback = FeedbackIndices::new(&pre).ok().map(Arc::new);
        let pre = ChannelPre::new(pre).map_err(|e| {
            SandboxError::WrongWorld(format!(
                "not a channel component (it must export `deliver`): {e:#}"
            ))
        })?;
        Ok(ChannelComponent {
            idle: IdlePool::new(&shared),
            pre,
            feedback,
            shared,
        })
    }

    /// The same compiled adapter with a pool of warm instances of its own: what the registry
    /// hands each channel registration of each tenant.
    pub fn with_own_instances(&self) -> ChannelComponent {
        ChannelComponent {
            pre: self.pre.clone(),
            feedback: self.feedback.clone(),
            shared: self.shared.clone(),
            idle: IdlePool::new(&self.shared),
        }
    }

    /// Idle instances right now (for tests and metrics).
    pub fn idle_instances(&self) -> usize {
        lock(&self.idle.warm).len()
    }

    /// Delivers `msg`, letting the adapter reach only `allowed_hosts` (see [`super::capability::http`]).
    ///
    /// The whole call — instantiation if no instance is idle, the guest, its HTTP requests — is
    /// bounded by the delivery timeout: by the epoch while the guest computes, and by the wall
    /// clock while it waits on I/O. A trap or a timeout is a retryable [`DeliveryFailure::Guest`].
    pub async fn deliver(
        &self,
        msg: &model::DeliveryRequest,
        allowed_hosts: &[String],
        limits: &model::Limits,
    ) -> Result<model::Receipt, DeliveryFailure> {
        self.deliver_guarded(msg, allowed_hosts, limits, None).await
    }

    /// [`ChannelComponent::deliver`], every outgoing request first asking `may_send` (cluster
    /// mode, issue 16: a node paused inside `deliver` and resumed past its lease sends nothing).
    pub async fn deliver_guarded(
        &self,
        msg: &model::DeliveryRequest,
        allowed_hosts: &[String],
        limits: &model::Limits,
        may_send: Option<http::MaySend>,
    ) -> Result<model::Receipt, DeliveryFailure> {
        let deadline = limits.deliver_timeout();
        let policy = OutboundPolicy::new(allowed_hosts, deadline)
            .map_err(|e| DeliveryFailure::Adapter(model::DeliveryError::Permanent(e)))?
            .with_may_send(may_send);
        let shared = &self.shared;
        let (mut store, channel, calls) = match self.idle.take() {
            Some(Warm {
                mut store,
                channel,
                calls,
            }) => {
                store
                    .data_mut()
                    .rearm(policy, shared, limits.max_memory_bytes);
                guest::rearm_store(&mut store, deadline, limits.max_hostcall_bytes);
                shared.counters.channel_reused.inc();
                (store, Some(channel), calls)
            }
            None => {
                let state = ChannelState::new(policy, shared, limits.max_memory_bytes);
                let store = guest::new_rearmable_store(
                    &shared.engine,
                    state,
                    deadline,
                    limits.max_hostcall_bytes,
                );
                shared.counters.channel_instantiated.inc();
                (store, None, 0)
            }
        };
        let message = message_to_wit(msg);
        let outcome = tokio::time::timeout(deadline, async {
            let channel = match channel {
                Some(channel) => channel,
                None => self
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| (Stage::Instantiate, e))?,
            };
            let result = channel
                .call_deliver(&mut store, &message)
                .await
                .map_err(|e| (Stage::Call, e))?;
            Ok((channel, result))
        })
        .await;
        let (outcome, channel) = match outcome {
            Ok(Ok((channel, result))) => (Ok(Ok(result)), Some(channel)),
            Ok(Err(e)) => (Ok(Err(e)), None),
            Err(elapsed) => (Err(elapsed), None),
        };
        let denials = store.data().http.denials();
        let retry_after = store.data().hints.asked_wait();
        let receipt_detail = store.data().hints.reported_receipt();
        let explain = |message: String| {
            if denials.is_empty() {
                message
            } else {
                format!("{message}; refused by the host: {}", denials.join("; "))
            }
        };
        // More bytes than the boundary allows (a huge receipt or error, a request body over
        // the budget) would be the same on every attempt: a permanent failure, not a trap.
        let oversized =
            matches!(&outcome, Ok(Err((Stage::Call, e))) if is_hostcall_fuel_exhausted(e));
        let result = guest::settle(&store, "channel", deadline, outcome);
        // Only an instance whose call finished goes back (the adapter's own `err` is a finished
        // call): after a trap its state is undefined, and one that hit a limit is likely to hit
        // it again.
        if let (Ok(_), Some(channel)) = (&result, channel) {
            if !store.data().memory_hit() {
                self.idle.put(Warm {
                    store,
                    channel,
                    calls: calls + 1,
                });
            }
        }
        match result {
            Ok(Ok(receipt)) => receipt_from_wit(receipt).map(|receipt| model::Receipt {
                detail: receipt_detail,
                ..receipt
            }),
            Ok(Err(error)) => Err(match (delivery_error_from_wit(error), retry_after) {
                (model::DeliveryError::Retryable(m), Some(retry_after)) => {
                    DeliveryFailure::Throttled {
                        reason: explain(m),
                        retry_after,
                    }
                }
                (model::DeliveryError::Retryable(m), None) => {
                    DeliveryFailure::Adapter(model::DeliveryError::Retryable(explain(m)))
                }
                (model::DeliveryError::Permanent(m), _) => {
                    DeliveryFailure::Adapter(model::DeliveryError::Permanent(explain(m)))
                }
            }),
            Err(_) if oversized => Err(DeliveryFailure::Oversized(explain(format!(
                "the adapter passed the host more than max_hostcall_bytes ({} bytes) in one call",
                limits.max_hostcall_bytes
            )))),
            Err(mut failure) => {
                failure.message = explain(failure.message);
                Err(DeliveryFailure::Guest(failure))
            }
        }
    }
}

// Provider feedback (issue 11)
impl ChannelComponent {
    /// Whether the component exports `feedback` (contract 0.1.2), so it receives webhooks.
    pub fn receives(&self) -> bool {
        self.feedback.is_some()
    }

    /// Hands a provider's webhook request to the adapter's `receive`, in a fresh instance (a
    /// webhook is rare next to deliveries, and a fresh instance keeps what a request leaves in
    /// the guest's globals from any delivery), under the delivery's limits, with outgoing HTTP
    /// denied to every host: checking a signature needs no network.
    pub async fn receive(
        &self,
        request: &feedback::WebhookRequest,
        limits: &model::Limits,
    ) -> Result<feedback::Received, feedback::ReceiveFailure> {
        let Some(indices) = &self.feedback else {
            return Err(feedback::ReceiveFailure::Unsupported(
                "this channel's component does not export `feedback` (built before contract \
                 0.1.2): it receives no webhooks"
                    .into(),
            ));
        };
        let deadline = limits.deliver_timeout();
        let policy = OutboundPolicy::new(&[], deadline).map_err(feedback::ReceiveFailure::Guest)?;
        let state = ChannelState::new(policy, &self.shared, limits.max_memory_bytes);
        let mut store = guest::new_rearmable_store(
            &self.shared.engine,
            state,
            deadline,
            limits.max_hostcall_bytes,
        );
        self.shared.counters.channel_instantiated.inc();
        let wit_request = feedback_request_to_wit(request);
        let outcome = tokio::time::timeout(deadline, async {
            let instance = self
                .pre
                .instance_pre()
                .instantiate_async(&mut store)
                .await
                .map_err(|e| (Stage::Instantiate, e))?;
            let export = indices
                .load(&mut store, &instance)
                .map_err(|e| (Stage::Instantiate, e))?;
            export
                .call_receive(&mut store, &wit_request)
                .await
                .map_err(|e| (Stage::Call, e))
        })
        .await;
        match guest::settle(&store, "channel", deadline, outcome) {
            Ok(Ok(received)) => received_from_wit(received),
            Ok(Err(error)) => Err(match error {
                wit_feedback::FeedbackError::Unauthorized(m) => {
                    feedback::ReceiveFailure::Unauthorized(m)
                }
                wit_feedback::FeedbackError::Invalid(m) => feedback::ReceiveFailure::Invalid(m),
                wit_feedback::FeedbackError::Unsupported(m) => {
                    feedback::ReceiveFailure::Unsupported(m)
                }
            }),
            Err(failure) => Err(feedback::ReceiveFailure::Guest(failure.message)),
        }
    }
}

fn feedback_request_to_wit(r: &feedback::WebhookRequest) -> wit_feedback::WebhookRequest {
    wit_feedback::WebhookRequest {
        method: r.method.clone(),
        path: r.path.clone(),
        query: r.query.clone(),
        headers: r.headers.clone(),
        body: r.body.clone(),
        url: r.url.clone(),
        config: serde_json::Value::Object(r.config.clone()).to_string(),
        now: r.now,
    }
}

/// What the adapter reported, checked: its events ([`feedback_event_from_wit`]) and its reply,
/// bounded and with a valid content type, since the host writes it as the HTTP answer.
fn received_from_wit(
    r: wit_feedback::Received,
) -> Result<feedback::Received, feedback::ReceiveFailure> {
    let events = r
        .events
        .into_iter()
        .map(feedback_event_from_wit)
        .collect::<Result<_, _>>()?;
    let reply = match r.reply {
        Some(reply) => {
            let reply = feedback::WebhookReply {
                content_type: reply.content_type,
                body: reply.body,
            };
            reply.check().map_err(feedback::ReceiveFailure::Guest)?;
            Some(reply)
        }
        None => None,
    };
    Ok(feedback::Received { events, reply })
}

/// One event as the adapter gave it, checked: its strings are bounded, since the host stores
/// them as event properties.
fn feedback_event_from_wit(
    e: wit_feedback::FeedbackEvent,
) -> Result<feedback::FeedbackEvent, feedback::ReceiveFailure> {
    use feedback::{BounceKind, FeedbackKind};
    let kind = match e.kind {
        wit_feedback::FeedbackKind::Delivered => FeedbackKind::Delivered,
        wit_feedback::FeedbackKind::Opened => FeedbackKind::Opened,
        wit_feedback::FeedbackKind::Clicked(url) => FeedbackKind::Clicked { url },
        wit_feedback::FeedbackKind::Bounced((kind, reason)) => FeedbackKind::Bounced {
            kind: match kind {
                wit_feedback::BounceKind::Hard => BounceKind::Hard,
                wit_feedback::BounceKind::Soft => BounceKind::Soft,
            },
            reason,
        },
        wit_feedback::FeedbackKind::Complained => FeedbackKind::Complained,
        wit_feedback::FeedbackKind::Replied(text) => FeedbackKind::Replied { text },
        wit_feedback::FeedbackKind::Unsubscribed => FeedbackKind::Unsubscribed,
    };
    let event = feedback::FeedbackEvent {
        kind,
        message_id: e.message_id,
        provider_id: e.provider_id,
        address: e.address,
        event_id: e.event_id,
    };
    event.check().map_err(feedback::ReceiveFailure::Guest)?;
    Ok(event)
}

/// A poisoned pool of idle instances is still a pool: recover it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use crate::model::{self, DeliveryError};
    use crate::sandbox::tests::built_guest;
    use crate::sandbox::{DeliveryFailure, Sandbox, SandboxConfig, DEFAULT_LIMITS};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    const WEBHOOK: &str = "waymark_webhook.wasm";

    /// A loopback server that records each request's path and `Authorization` header, and
    /// answers 503 to `/fail`, 200 to anything else (with a provider id of n bytes to `/id/{n}`).
    async fn receiver() -> (u16, Arc<Mutex<Vec<(String, Option<String>)>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    let path = request.uri().path().to_string();
                    let authorization = request
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                    record.lock().unwrap().push((path.clone(), authorization));
                    async move {
                        let status = if path == "/fail" { 503 } else { 200 };
                        // `/id/{n}` answers with a provider id of n bytes.
                        let body = match path.strip_prefix("/id/").and_then(|n| n.parse().ok()) {
                            Some(n) => format!(r#"{{"id":"{}"}}"#, "p".repeat(n)),
                            None => r#"{"id":"p-1"}"#.to_string(),
                        };
                        let mut response = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        ));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service),
                );
            }
        });
        (port, seen)
    }

    fn message(id: &str, url: String, token: Option<&str>) -> model::DeliveryRequest {
        let mut config = model::Object::new();
        config.insert("url".into(), json!(url));
        if let Some(token) = token {
            config.insert("bearer_token".into(), json!(token));
        }
        model::DeliveryRequest {
            id: id.into(),
            channel: "hook".into(),
            customer: model::Customer {
                id: "ada".into(),
                attributes: model::Object::new(),
            },
            template: "welcome".into(),
            payload: json!({}),
            config,
        }
    }

    #[tokio::test]
    async fn a_warm_instance_serves_each_delivery_with_that_deliverys_config_and_policy() {
        let (port, seen) = receiver().await;
        let sandbox = Sandbox::new(SandboxConfig {
            allow_private_network: true,
            ..SandboxConfig::default()
        })
        .expect("sandbox");
        let webhook = sandbox
            .compile_channel(&built_guest(WEBHOOK))
            .expect("a channel component")
            .with_own_instances();
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let allowed = [format!("127.0.0.1:{port}")];

        let receipt = webhook
            .deliver(
                &message("m1", url("/hook"), Some("s3cret")),
                &allowed,
                &DEFAULT_LIMITS,
            )
            .await
            .expect("delivered");
        assert_eq!(receipt.provider_id.as_deref(), Some("p-1"));
        // The same instance, without a token this time: none is sent.
        webhook
            .deliver(
                &message("m2", url("/hook"), None),
                &allowed,
                &DEFAULT_LIMITS,
            )
            .await
            .expect("delivered");
        // The same instance under a registration that allows another host: refused.
        let refused = webhook
            .deliver(
                &message("m3", url("/hook"), None),
                &["hooks.example.com".to_string()],
                &DEFAULT_LIMITS,
            )
            .await;
        assert!(
            matches!(&refused, Err(DeliveryFailure::Adapter(DeliveryError::Permanent(m)))
                if m.contains("allowed_hosts")),
            "{refused:?}"
        );
        // And the refusal of that call is not reported by the next one.
        let failed = webhook
            .deliver(
                &message("m4", url("/fail"), None),
                &allowed,
                &DEFAULT_LIMITS,
            )
            .await;
        assert!(
            matches!(&failed, Err(DeliveryFailure::Adapter(DeliveryError::Retryable(m)))
                if m.contains("503") && !m.contains("refused by the host")),
            "{failed:?}"
        );

        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("/hook".to_string(), Some("Bearer s3cret".to_string())),
                ("/hook".to_string(), None),
                ("/fail".to_string(), None),
            ]
        );
        let counters = sandbox.counters();
        assert_eq!(
            (
                counters.channel_instantiated.get(),
                counters.channel_reused.get()
            ),
            (1, 3),
            "one instance served every delivery, an adapter's own error included"
        );
        assert_eq!(webhook.idle_instances(), 1);
        // Another registration of the same code has instances of its own.
        assert_eq!(webhook.with_own_instances().idle_instances(), 0);
    }

    #[tokio::test]
    async fn an_oversized_receipt_is_a_permanent_failure_not_a_retried_trap() {
        let (port, _seen) = receiver().await;
        let sandbox = Sandbox::new(SandboxConfig {
            allow_private_network: true,
            ..SandboxConfig::default()
        })
        .expect("sandbox");
        let webhook = sandbox
            .compile_channel(&built_guest(WEBHOOK))
            .expect("a channel component");
        let allowed = [format!("127.0.0.1:{port}")];
        let limits = model::Limits {
            max_hostcall_bytes: 64 << 10,
            ..DEFAULT_LIMITS
        };
        let deliver = |path: String| {
            let webhook = webhook.clone();
            let allowed = allowed.clone();
            async move {
                let url = format!("http://127.0.0.1:{port}{path}");
                webhook
                    .deliver(&message("m", url, None), &allowed, &limits)
                    .await
            }
        };
        let fits = deliver("/id/1024".into()).await.expect("delivered");
        assert_eq!(fits.provider_id.map(|id| id.len()), Some(1024));

        // Over the receipt's own bound, within the boundary's.
        let long = deliver("/id/2000".into()).await.unwrap_err();
        assert!(
            matches!(&long, DeliveryFailure::Oversized(m) if m.contains("receipt is too large")),
            "{long:?}"
        );
        assert!(!long.retryable());

        // Over the boundary's bound: lifting the receipt runs out of hostcall fuel.
        let huge = deliver(format!("/id/{}", 128 << 10)).await.unwrap_err();
        assert!(
            matches!(&huge, DeliveryFailure::Oversized(m) if m.contains("max_hostcall_bytes")),
            "{huge:?}"
        );
        assert!(!huge.retryable(), "the same message would do it again");
    }

    #[tokio::test]
    async fn without_warm_channel_instances_every_delivery_instantiates() {
        let (port, _seen) = receiver().await;
        let sandbox = Sandbox::new(SandboxConfig {
            allow_private_network: true,
            warm_channel_instances: 0,
            ..SandboxConfig::default()
        })
        .expect("sandbox");
        let webhook = sandbox
            .compile_channel(&built_guest(WEBHOOK))
            .expect("a channel component");
        let allowed = [format!("127.0.0.1:{port}")];
        for id in ["m1", "m2"] {
            let url = format!("http://127.0.0.1:{port}/hook");
            webhook
                .deliver(&message(id, url, None), &allowed, &DEFAULT_LIMITS)
                .await
                .expect("delivered");
        }
        let counters = sandbox.counters();
        assert_eq!(
            (
                counters.channel_instantiated.get(),
                counters.channel_reused.get()
            ),
            (2, 0)
        );
        assert_eq!(webhook.idle_instances(), 0);
    }

    // Provider feedback (issue 11)
    mod feedback {
        use crate::feedback::{FeedbackKind, ReceiveFailure, WebhookRequest};
        use crate::sandbox::tests::built_guest;
        use crate::sandbox::{Sandbox, SandboxConfig, DEFAULT_LIMITS};
        use hmac::{Hmac, Mac};
        use serde_json::json;
        use sha2::Sha256;

        const SECRET: &str = "slack-signing-secret";

        /// A Slack Events API request with `body`, signed at `ts` as Slack signs.
        fn slack_request(body: &str, ts: i64, secret: &str) -> WebhookRequest {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("v0:{ts}:{body}").as_bytes());
            let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
            WebhookRequest {
                method: "POST".into(),
                path: "/v1/hooks/acme/slack".into(),
                query: String::new(),
                headers: vec![
                    ("x-slack-request-timestamp".into(), ts.to_string()),
                    ("x-slack-signature".into(), signature),
                    ("content-type".into(), "application/json".into()),
                ],
                body: body.as_bytes().to_vec(),
                url: "https://waymark.example/v1/hooks/acme/slack".into(),
                config: json!({"mode": "bot", "signing_secret": SECRET})
                    .as_object()
                    .cloned()
                    .unwrap(),
                now: (ts + 10) * 1000,
            }
        }

        #[tokio::test]
        async fn receive_hands_the_request_to_the_adapter_and_maps_its_answer() {
            let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
            let slack = sandbox
                .compile_channel(&built_guest("waymark_slack.wasm"))
                .expect("a channel component");
            assert!(slack.receives(), "built with the 0.1.2 SDK");
            let body = json!({
                "type": "event_callback", "event_id": "Ev1",
                "event": {"type": "message", "text": "On it", "ts": "2.0", "thread_ts": "1.0"}
            })
            .to_string();
            let received = slack
                .receive(
                    &slack_request(&body, 1_700_000_000, SECRET),
                    &DEFAULT_LIMITS,
                )
                .await
                .expect("received");
            assert_eq!(
                received.reply, None,
                "an event callback takes the host's answer"
            );
            let events = received.events;
            assert_eq!(events.len(), 1);
            assert_eq!(
                events[0].kind,
                FeedbackKind::Replied {
                    text: "On it".into()
                }
            );
            assert_eq!(events[0].provider_id.as_deref(), Some("1.0"));
            assert_eq!(events[0].event_id.as_deref(), Some("Ev1"));

            let handshake =
                json!({"type": "url_verification", "token": "t", "challenge": "ch4ll3nge"})
                    .to_string();
            let answered = slack
                .receive(
                    &slack_request(&handshake, 1_700_000_000, SECRET),
                    &DEFAULT_LIMITS,
                )
                .await
                .expect("received");
            assert!(answered.events.is_empty());
            let reply = answered.reply.expect("the challenge is echoed");
            assert_eq!(reply.content_type, "text/plain");
            assert_eq!(reply.body, b"ch4ll3nge");

            let forged = slack
                .receive(
                    &slack_request(&body, 1_700_000_000, "guess"),
                    &DEFAULT_LIMITS,
                )
                .await;
            assert!(
                matches!(forged, Err(ReceiveFailure::Unauthorized(_))),
                "{forged:?}"
            );

            let webhook = sandbox
                .compile_channel(&built_guest("waymark_webhook.wasm"))
                .expect("a channel component");
            let refused = webhook
                .receive(
                    &slack_request(&body, 1_700_000_000, SECRET),
                    &DEFAULT_LIMITS,
                )
                .await;
            assert!(
                matches!(&refused, Err(ReceiveFailure::Unsupported(m)) if m.contains("receives no webhooks")),
                "{refused:?}"
            );
        }
    }
}
