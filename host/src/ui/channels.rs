//! Channels and templates: `GET /ui/channels` lists the tenant's channel registrations
//! (settings, allowed hosts, the names of secrets — never their values) and templates;
//! `GET /ui/templates/{name}/preview?customer=` renders a template for a stored customer with
//! `POST /v1/templates/{name}/preview`'s code (`api::shared::preview`). A preview changes
//! nothing, so it is a plain link, not a form.

use super::error::{UiError, UiResult};
use super::session::Signed;
use super::{reads, render};
use crate::api::AppState;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use serde::Deserialize;
use waymark_api::channels::Channel;
use waymark_api::templates::{PreviewRequest, TemplateSummary};

pub async fn page(State(state): State<AppState>, session: Signed) -> UiResult<Html<String>> {
    let store = &state.host.store;
    let channels: Vec<Channel> = store
        .channels(&session.tenant)?
        .into_iter()
        .map(Channel::from)
        .collect();
    let templates: Vec<TemplateSummary> = store
        .templates(&session.tenant)?
        .into_iter()
        .map(TemplateSummary::from)
        .collect();
    let channels: Vec<_> = channels
        .into_iter()
        .map(|c| {
            let settings = serde_json::to_string(&c.settings).unwrap_or_default();
            minijinja::context! { channel => render::ser(&c), settings }
        })
        .collect();
    let html = render::page(
        "channels.html",
        Some(&session),
        minijinja::context! { channels, templates => render::ser(&templates) },
    )?;
    Ok(Html(html))
}

#[derive(Deserialize)]
pub struct PreviewQuery {
    #[serde(default)]
    customer: Option<String>,
}

pub async fn preview(
    State(state): State<AppState>,
    session: Signed,
    Path(name): Path<String>,
    Query(query): Query<PreviewQuery>,
) -> UiResult<Html<String>> {
    let customer = query
        .customer
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            UiError::BadRequest("name a customer to preview this template for".into())
        })?;
    let request = PreviewRequest {
        customer: Some(customer.clone()),
        attributes: None,
        payload: None,
        version: None,
    };
    let preview = reads::preview(&state, &session, &name, request).await?;
    let parts: Vec<(String, String)> = preview
        .parts
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            };
            (k.clone(), text)
        })
        .collect();
    let html = render::page(
        "preview.html",
        Some(&session),
        minijinja::context! {
            name => preview.name,
            version => preview.version,
            locale => preview.locale,
            customer,
            parts,
        },
    )?;
    Ok(Html(html))
}
