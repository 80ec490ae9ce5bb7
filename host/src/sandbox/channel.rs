//! World `channel`: a channel adapter, called as `deliver`.
//!
//! The world is a list of capabilities ([`WORLD`]: `log`, WASI with real clocks, and outbound
//! `wasi:http` behind [`super::capability::http`]'s policy), from which both its linker and its
//! import allow-list are derived. This file holds the world's export bindings, the per-call
//! store data, and [`ChannelComponent`]. Every `deliver` runs in a fresh instance (only journeys
//! keep warm instances), and a whole `deliver` is bounded by the delivery timeout.

use super::capability::http::{self, OutboundHttp, OutboundPolicy};
use super::capability::log::{self, HasLog, LogState};
use super::capability::wasi::{self, WasiState};
use super::capability::World;
use super::convert::{delivery_error_from_wit, message_to_wit, receipt_from_wit};
use super::engine::Shared;
use super::error::SandboxError;
use super::failure::{DeliveryFailure, Stage};
use super::guest::{self, GuestState, MemoryCap};
use crate::model;
use std::sync::Arc;
use wasmtime::component::{InstancePre, ResourceTable};
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
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use bindings::ChannelPre;

/// What an adapter may import: its vocabulary, `log`, WASI with real clocks (no filesystem or
/// sockets), and outgoing HTTP. Not `stats`: that is a journey's.
pub(super) const WORLD: World<ChannelState> = World {
    name: "channel",
    vocabulary: &["waymark:journey/types@", "waymark:journey/channel-types@"],
    capabilities: &[log::capability(), wasi::capability(), http::capability()],
};

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

impl HasLog for ChannelState {
    fn log_state(&mut self) -> &mut LogState {
        &mut self.log
    }
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

    /// Delivers `msg`, letting the adapter reach only `allowed_hosts` (see [`super::capability::http`]).
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
        let mut store = guest::new_store(
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
        match guest::settle(&store, "channel", deadline, outcome) {
            Ok(Ok(receipt)) => Ok(receipt_from_wit(receipt)),
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
