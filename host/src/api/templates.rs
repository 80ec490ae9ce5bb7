//! Templates (issue 11): store the next version of a message template (checked and compiled
//! first: a syntax error is a 400 with its line and column), list, show (latest or
//! `?version=N`), delete, and preview one rendered for a stored customer or sample data.
//! See `docs/API.md` § Templates and the `template` module.

use super::dto;
use super::prelude::*;
use crate::host::TemplateLoadError;
use crate::model::Object;
use crate::template::{compile, RenderInput, TemplateError, TemplateSource};
use std::sync::Arc;
use waymark_api::templates::{
    Preview, PreviewRequest, Template, TemplateList, TemplateSummary, TemplateUpload,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/templates", get(list_templates))
        .route(
            "/v1/templates/{name}",
            put(put_template).get(get_template).delete(delete_template),
        )
        .route("/v1/templates/{name}/preview", post(preview_template))
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> ApiError {
        match e {
            TemplateError::Invalid(m) | TemplateError::Syntax(m) => {
                ApiError::bad_request("invalid_template", m)
            }
            TemplateError::Render(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "render_failed", m)
            }
        }
    }
}

fn no_template(name: &str) -> ApiError {
    ApiError::not_found(format!("no template {name:?}"))
}

async fn put_template(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Template>)> {
    valid_name("template", &name)?;
    let upload: TemplateUpload = parse_json(&body?)?;
    let source = TemplateSource::from(upload);
    // Checked and compiled before anything is stored: a version that is stored renders.
    let compiled = Arc::new(compile(&source)?);
    let host = &state.host;
    let stored = host
        .store
        .put_template(&tenant, &name, &source, host.clock.now())
        .await?;
    host.templates.put(&tenant, &name, stored.version, compiled);
    Ok((StatusCode::CREATED, Json(stored.into())))
}

async fn list_templates(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
) -> ApiResult<Json<TemplateList>> {
    let templates = state.host.store.templates(&tenant)?;
    Ok(Json(TemplateList {
        templates: templates.into_iter().map(TemplateSummary::from).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    version: Option<u32>,
}

async fn get_template(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    query: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Template>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let found = state.host.store.template(&tenant, &name, query.version)?;
    match (found, query.version) {
        (Some(version), _) => Ok(Json(version.into())),
        (None, Some(v)) => Err(ApiError::not_found(format!(
            "template {name:?} has no version {v}"
        ))),
        (None, None) => Err(no_template(&name)),
    }
}

async fn delete_template(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let host = &state.host;
    if host
        .store
        .delete_template(&tenant, &name, host.clock.now())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_template(&name))
    }
}

async fn preview_template(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Preview>> {
    let body = body?;
    let request: PreviewRequest = if body.is_empty() {
        PreviewRequest::default()
    } else {
        parse_json(&body)?
    };
    preview(&state, &tenant, name, request).map(Json)
}

/// Renders a preview as `POST /v1/templates/{name}/preview` does (shared with the dashboard,
/// issue 14).
pub(crate) fn preview(
    state: &AppState,
    tenant: &str,
    name: String,
    request: PreviewRequest,
) -> ApiResult<Preview> {
    let host = &state.host;
    let version = host
        .store
        .template(tenant, &name, request.version)?
        .ok_or_else(|| no_template(&name))?
        .version;
    let (customer_id, attributes): (String, Object) = match (request.customer, request.attributes) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                "give either customer or attributes, not both",
            ))
        }
        (Some(id), None) => {
            let customer = host
                .store
                .customer(tenant, &id)?
                .ok_or_else(|| ApiError::not_found(format!("no customer {id:?}")))?;
            (customer.id, customer.attributes)
        }
        (None, attributes) => ("preview".into(), attributes.unwrap_or_default()),
    };
    let payload = request
        .payload
        .unwrap_or_else(|| serde_json::Value::Object(Object::new()));
    let compiled = host
        .compiled_template(tenant, &name, version)
        .map_err(|e| match e {
            TemplateLoadError::Store(e) => ApiError::from(e),
            TemplateLoadError::Missing => no_template(&name),
            TemplateLoadError::Template(e) => ApiError::from(e),
        })?;
    // Unsubscribe (issue 11): a preview shows where a message's link would lead, signed by
    // nothing (a real message's token is minted at delivery).
    let unsubscribe_url = host
        .config
        .public_url
        .as_ref()
        .map(|base| format!("{base}/u/preview"));
    let rendered = compiled.render(RenderInput {
        customer_id: &customer_id,
        attributes: &attributes,
        payload: &payload,
        message_id: "preview",
        channel: compiled.channel().as_str(),
        unsubscribe_url: unsubscribe_url.as_deref(),
    })?;
    Ok(dto::preview(name, version, rendered))
}
