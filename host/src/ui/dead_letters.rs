//! Dead letters: `GET /ui/dead-letters`, a page at a time in id order; requeuing one, or every
//! dead letter of a channel, runs `POST /v1/dead-letters/retry`'s code
//! (`api::shared::retry_dead_letters`): a fresh attempt budget, due now.

use super::customer::encode_path;
use super::error::{UiError, UiResult};
use super::session::{Checked, CsrfField, Signed};
use super::{reads, render, PAGE_SIZE};
use crate::api::AppState;
use axum::extract::{Query, State};
use axum::response::{Html, Redirect};
use serde::Deserialize;
use waymark_api::dead_letters::RetryDeadLetters;

#[derive(Deserialize)]
pub struct ListQuery {
    /// The last message id of the previous page.
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    session: Signed,
    Query(query): Query<ListQuery>,
) -> UiResult<Html<String>> {
    let (letters, more) =
        reads::dead_letters(&state, &session, query.after.clone(), PAGE_SIZE).await?;
    let next = more.then(|| letters.last().map(|m| m.id.clone())).flatten();
    let channels: Vec<String> = state
        .host
        .store
        .channels(&session.tenant)?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let html = render::page(
        "dead_letters.html",
        Some(&session),
        minijinja::context! {
            letters => render::ser(&letters),
            channels,
            next,
            first_page => query.after.is_none(),
            done => query.done,
        },
    )?;
    Ok(Html(html))
}

#[derive(Deserialize)]
pub struct RequeueForm {
    #[serde(default)]
    csrf: Option<String>,
    /// One dead letter...
    #[serde(default)]
    id: Option<String>,
    /// ...or every dead letter of this channel.
    #[serde(default)]
    channel: Option<String>,
}

impl CsrfField for RequeueForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /ui/dead-letters/requeue` with `id`, or with `channel`.
pub async fn requeue(
    State(state): State<AppState>,
    checked: Checked<RequeueForm>,
) -> UiResult<Redirect> {
    let Checked { session, form } = checked;
    session.require_admin()?;
    let id = form.id.filter(|s| !s.trim().is_empty());
    let channel = form.channel.filter(|s| !s.trim().is_empty());
    let input = match (id, channel) {
        (Some(id), None) => RetryDeadLetters {
            ids: vec![id],
            channel: None,
        },
        (None, Some(channel)) => RetryDeadLetters {
            ids: Vec::new(),
            channel: Some(channel),
        },
        _ => {
            return Err(UiError::BadRequest(
                "requeue one dead letter (id) or a channel's (channel), not both or neither".into(),
            ))
        }
    };
    let requeued = reads::retry_dead_letters(&state, &session, input).await?;
    Ok(Redirect::to(&format!(
        "/ui/dead-letters?done={}",
        encode_path(&format!("requeued {}", requeued.requeued))
    )))
}
