//! Channels: register (or replace) an adapter component with its settings, secrets and
//! allowed hosts, checked against the plugin's embedded manifest when it has one; list them
//! (never their secrets).

use super::prelude::*;
use super::validate::bounded_list;
use crate::store::{ChannelAdapter, ChannelRecord};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use waymark_api::channels::{Channel, ChannelList, ChannelRegistration};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/channels", get(list_channels))
        .route("/v1/channels/{name}", put(register_channel))
}

async fn register_channel(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Channel>)> {
    valid_name("channel", &name)?;
    let body = body?;
    // In-app inbox (issue 11): `{"kind": "inapp"}` registers a channel the host keeps itself.
    if let Some(kind) = registration_kind(&body) {
        return register_inapp(&state, &tenant, name, kind, &body).await;
    }
    let input: ChannelRegistration = parse_json(&body)?;
    bounded_list("allowed_hosts", input.allowed_hosts.len())?;
    crate::sandbox::check_allowed_hosts(&input.allowed_hosts)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(input.component.as_bytes())
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_component",
                format!("component is not valid base64: {e}"),
            )
        })?;
    let rt = &state.host;
    let bytes = Bytes::from(bytes);
    check_component_size(&bytes, &rt.tenant_limits(&tenant)?)?;
    // A plugin that declares its configuration is checked against it now, rather than
    // dead-lettering its first message; one without a manifest registers as before.
    let manifest = crate::manifest::read(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_component", e.to_string()))?;
    let rate = input
        .rate
        .map(|r| crate::pacing::SendRate::checked(r.per_second, r.burst))
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_rate", e.to_string()))?;
    let mut allowed_hosts = input.allowed_hosts;
    if let Some(manifest) = &manifest {
        manifest
            .check(&input.settings, &input.secrets)
            .map_err(|e| ApiError::bad_request("invalid_config", e.to_string()))?;
        allowed_hosts = manifest.allowed_hosts_or_default(&allowed_hosts);
        crate::sandbox::check_allowed_hosts(&allowed_hosts)?;
    }
    let component = rt.registry.compile_channel(bytes.clone()).await?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let record = ChannelRecord {
        name: name.clone(),
        version: 0,
        digest: digest.clone(),
        settings: input.settings,
        secrets: input.secrets,
        allowed_hosts,
        updated_at: rt.clock.now(),
        rate,
        adapter: ChannelAdapter::Component,
    };
    let record = rt.store.put_channel(&tenant, record, &bytes).await?;
    rt.registry.insert_channel(&digest, component);
    // Shown without its secrets' values (see `dto`).
    Ok((StatusCode::CREATED, Json(record.into())))
}

async fn list_channels(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
) -> ApiResult<Json<ChannelList>> {
    let channels = state.host.store.channels(&tenant)?;
    Ok(Json(ChannelList {
        channels: channels.into_iter().map(Channel::from).collect(),
    }))
}

// In-app inbox (issue 11)
/// The `kind` a registration body names, if it names one (a component registration does not).
fn registration_kind(body: &[u8]) -> Option<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("kind").cloned()
}

/// Registers (or replaces) an `inapp` channel: no component, no settings, no hosts; its
/// messages are delivered into customers' inboxes by the host (`inapp`).
async fn register_inapp(
    state: &AppState,
    tenant: &str,
    name: String,
    kind: serde_json::Value,
    body: &[u8],
) -> ApiResult<(StatusCode, Json<Channel>)> {
    if kind.as_str() != Some("inapp") {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("channel kind {kind} is not one the host keeps: only \"inapp\" (a component registration has no `kind`)"),
        ));
    }
    let _: waymark_api::inbox::InappRegistration = parse_json(body)?;
    let rt = &state.host;
    let record = ChannelRecord {
        name,
        version: 0,
        digest: String::new(),
        settings: Default::default(),
        secrets: Default::default(),
        allowed_hosts: Vec::new(),
        updated_at: rt.clock.now(),
        rate: None,
        adapter: ChannelAdapter::Inapp,
    };
    let record = rt.store.put_channel(tenant, record, &[]).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}
