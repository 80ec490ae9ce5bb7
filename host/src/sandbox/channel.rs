//! World `channel`: a tenant's adapter to a provider, called as `deliver`.
//!
//! This file holds the world's bindings (sharing the `types` and `log` interfaces with the
//! journey world's, and `wasi:http` with wasmtime-wasi-http's), the per-call store data, the
//! linker (WASI with real clocks, `log`, `wasi:http` behind [`super::http`]'s policy), and the
//! conversion of messages and receipts. A whole `deliver` is bounded by the delivery timeout.

use super::http::{self, OutboundHttp, OutboundPolicy};
use super::journey::{customer_to_wit, json_text};
use super::limits::{self, GuestState, MemoryCap, Stage};
use super::log::{self, LogState};
use super::wasi::{self, WasiState};
use super::{DeliveryFailure, SandboxError, Shared};
use crate::model;
use std::sync::Arc;
use wasmtime::component::{InstancePre, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "waymark:journey/channel",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "waymark:journey/types": crate::sandbox::journey::bindings::waymark::journey::types,
            "waymark:journey/log": crate::sandbox::journey::bindings::waymark::journey::log,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use bindings::waymark::journey::channel_types as wit;
use bindings::ChannelPre;

/// The longest adapter error message that is kept.
const MAX_ADAPTER_ERROR: usize = 2048;

/// The store data of one channel call.
pub(super) struct ChannelState {
    table: ResourceTable,
    wasi: WasiState,
    memory: MemoryCap,
    log: LogState,
    http: OutboundHttp,
}

impl WasiView for ChannelState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.table,
        }
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

/// The channel world's linker: what an adapter may import.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<ChannelState>> {
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker)?;
    http::add_to_linker(&mut linker)?;
    log::add_to_linker(&mut linker, |state: &mut ChannelState| &mut state.log)?;
    Ok(linker)
}

/// A validated, compiled channel adapter. Cheap to clone; every call runs in a fresh instance.
#[derive(Clone)]
pub struct ChannelComponent {
    pre: ChannelPre<ChannelState>,
    shared: Arc<Shared>,
}

impl ChannelComponent {
    pub(super) fn new(
        pre: InstancePre<ChannelState>,
        shared: Arc<Shared>,
    ) -> Result<ChannelComponent, SandboxError> {
        let pre = ChannelPre::new(pre).map_err(|e| {
            SandboxError::WrongWorld(format!(
                "not a channel component (it must export `deliver`): {e:#}"
            ))
        })?;
        Ok(ChannelComponent { pre, shared })
    }

    /// Delivers `msg`, letting the adapter reach only `allowed_hosts` (see [`super::http`]).
    ///
    /// The whole call — instantiation, the guest, its HTTP requests — is bounded by the
    /// delivery timeout: by the epoch while the guest computes, and by the wall clock while it
    /// waits on I/O. A trap or a timeout is a retryable [`DeliveryFailure::Guest`].
    pub async fn deliver(
        &self,
        msg: &model::DeliveryRequest,
        allowed_hosts: &[String],
        limits: &model::Limits,
    ) -> Result<model::Receipt, DeliveryFailure> {
        let config = &self.shared.config;
        let deadline = limits.deliver_timeout();
        let policy = OutboundPolicy::new(allowed_hosts, config.allow_private_network, deadline)
            .map_err(|e| DeliveryFailure::Adapter(model::DeliveryError::Permanent(e)))?;
        let state = ChannelState {
            table: ResourceTable::new(),
            wasi: WasiState::real_time(),
            memory: MemoryCap::new(limits.max_memory_bytes),
            log: LogState::new("channel"),
            http: OutboundHttp::new(policy),
        };
        let message = message_to_wit(msg);
        let mut store = limits::new_store(
            &self.shared.engine,
            state,
            deadline,
            limits.max_hostcall_bytes,
        );
        let outcome = tokio::time::timeout(deadline, async {
            let channel = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| (Stage::Instantiate, e))?;
            channel
                .call_deliver(&mut store, &message)
                .await
                .map_err(|e| (Stage::Call, e))
        })
        .await;
        let denials = store.data().http.denials();
        let explain = |message: String| {
            if denials.is_empty() {
                message
            } else {
                format!("{message}; refused by the host: {}", denials.join("; "))
            }
        };
        match limits::settle(&store, "channel", deadline, outcome) {
            Ok(Ok(receipt)) => Ok(model::Receipt {
                provider_id: receipt.provider_id,
            }),
            Ok(Err(error)) => Err(DeliveryFailure::Adapter(
                match delivery_error_from_wit(error) {
                    model::DeliveryError::Retryable(m) => {
                        model::DeliveryError::Retryable(explain(m))
                    }
                    model::DeliveryError::Permanent(m) => {
                        model::DeliveryError::Permanent(explain(m))
                    }
                },
            )),
            Err(mut failure) => {
                failure.message = explain(failure.message);
                Err(DeliveryFailure::Guest(failure))
            }
        }
    }
}

fn message_to_wit(msg: &model::DeliveryRequest) -> wit::Message {
    wit::Message {
        id: msg.id.clone(),
        channel: msg.channel.clone(),
        customer: customer_to_wit(&msg.customer),
        template: msg.template.clone(),
        payload: msg.payload.to_string(),
        config: json_text(&msg.config),
    }
}

fn delivery_error_from_wit(error: wit::DeliveryError) -> model::DeliveryError {
    match error {
        wit::DeliveryError::Retryable(m) => {
            model::DeliveryError::Retryable(limits::truncate(m, MAX_ADAPTER_ERROR))
        }
        wit::DeliveryError::Permanent(m) => {
            model::DeliveryError::Permanent(limits::truncate(m, MAX_ADAPTER_ERROR))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_carries_payload_and_config_as_json_text() {
        let msg = model::DeliveryRequest {
            id: "t/j/1/c/trig/0".into(),
            channel: "email".into(),
            customer: model::Customer {
                id: "c1".into(),
                attributes: json!({"email": "ada@example.com"})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            template: "welcome".into(),
            payload: json!({"first_name": "Ada"}),
            config: json!({"url": "https://api.example.com", "token": "s3cret"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let message = message_to_wit(&msg);
        assert_eq!(message.id, "t/j/1/c/trig/0");
        assert_eq!(message.payload, r#"{"first_name":"Ada"}"#);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&message.config).unwrap(),
            json!({"url": "https://api.example.com", "token": "s3cret"})
        );
        assert_eq!(
            message.customer.attributes,
            r#"{"email":"ada@example.com"}"#
        );
    }

    #[test]
    fn adapter_errors_keep_their_retryability() {
        assert_eq!(
            delivery_error_from_wit(wit::DeliveryError::Retryable("503".into())),
            model::DeliveryError::Retryable("503".into())
        );
        assert_eq!(
            delivery_error_from_wit(wit::DeliveryError::Permanent("400".into())),
            model::DeliveryError::Permanent("400".into())
        );
    }
}
