//! `GET /ui/customers/{id}`: a customer's attributes, enrollments, and one timeline merged
//! from their records and sorted by time: entries, milestones, stalls, failures and exits of
//! each enrollment, each send and its outcome, and the tasks handed off about them, claimed and
//! resolved. `GET /ui/customers?id=` finds one by id.
//!
//! Events come from the per-customer index the worker keeps with each commit
//! (`store::customer_events`): the last [`RECENT_EVENTS`] processed, read from the log.
//! Events processed before that index existed are not shown.

use super::error::{UiError, UiResult};
use super::session::Signed;
use super::{reads, render};
use crate::api::AppState;
use crate::model::Event;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use waymark_api::customers::{Customer, EnrollmentStatus};
use waymark_api::tasks::Task;

/// How many of the customer's latest events the timeline shows.
pub const RECENT_EVENTS: usize = 50;

/// Properties shown on a timeline line, at most this many bytes of their JSON.
const PROPERTIES_SHOWN: usize = 160;

#[derive(Deserialize)]
pub struct FindQuery {
    id: Option<String>,
}

/// `GET /ui/customers?id=ada`: to that customer's page; without an id, the search form.
pub async fn find(session: Signed, Query(query): Query<FindQuery>) -> UiResult<Response> {
    match query
        .id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
    {
        Some(id) => {
            let to = format!("/ui/customers/{}", encode_path(id));
            Ok(Redirect::to(&to).into_response())
        }
        None => Ok(Html(render::page(
            "find_customer.html",
            Some(&session),
            minijinja::context! {},
        )?)
        .into_response()),
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters pass).
pub fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One line of the timeline.
#[derive(Debug, Serialize, PartialEq)]
pub struct Moment {
    pub at: i64,
    /// `enrollment`, `milestone`, `stall`, `exit`, `failure`, `send`, `delivery`, `task`, `timer`.
    pub kind: &'static str,
    pub journey: String,
    pub text: String,
}

/// Everything the customer's records say happened, oldest first.
pub fn timeline(customer: &Customer, tasks: &[Task], events: &[Event]) -> Vec<Moment> {
    let mut out = Vec::new();
    for e in events {
        let mut properties = serde_json::to_string(&e.properties).unwrap_or_default();
        if properties.len() > PROPERTIES_SHOWN {
            let mut end = PROPERTIES_SHOWN;
            while !properties.is_char_boundary(end) {
                end -= 1;
            }
            properties.truncate(end);
            properties.push('…');
        }
        let text = if e.properties.is_empty() {
            e.name.clone()
        } else {
            format!("{} {properties}", e.name)
        };
        out.push(Moment {
            at: e.timestamp,
            kind: "event",
            journey: String::new(),
            text,
        });
    }
    let mut push = |at: i64, kind: &'static str, journey: &str, text: String| {
        out.push(Moment {
            at,
            kind,
            journey: journey.to_string(),
            text,
        })
    };
    for e in &customer.enrollments {
        let j = e.journey.as_str();
        push(
            e.entered_at,
            "enrollment",
            j,
            format!("entered {j} v{} (run {})", e.version, e.run),
        );
        for m in &e.milestones {
            push(
                m.at,
                "milestone",
                j,
                format!("reached milestone {}", m.name),
            );
        }
        for s in &e.stalls {
            push(s.at, "stall", j, format!("stalled before {}", s.name));
        }
        for f in &e.failures {
            push(
                f.at,
                "failure",
                j,
                format!("{} failed ({}): {}", f.trigger, f.reason, f.message),
            );
        }
        for t in &e.timers {
            push(t.due, "timer", j, format!("timer {} due", t.name));
        }
        if let Some(at) = e.ended_at {
            let text = match e.status {
                EnrollmentStatus::Completed => "completed the journey".to_string(),
                _ => format!(
                    "exited ({})",
                    e.exit_reason.as_deref().unwrap_or("no reason given")
                ),
            };
            push(at, "exit", j, text);
        }
    }
    for m in &customer.messages {
        push(
            m.created_at,
            "send",
            &m.journey,
            format!(
                "{} via {}: {}{}",
                m.template,
                m.channel,
                m.status.as_str(),
                m.last_error
                    .as_deref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            ),
        );
        if let Some(at) = m.delivered_at {
            push(
                at,
                "delivery",
                &m.journey,
                format!("{} delivered", m.template),
            );
        }
    }
    for t in tasks {
        push(
            t.created_at,
            "task",
            &t.journey,
            format!(
                "handed off to {} (priority {}): {}",
                t.queue, t.priority, t.reason
            ),
        );
        if let Some(at) = t.claimed_at {
            let by = t.assignee.as_deref().unwrap_or("someone");
            push(at, "task", &t.journey, format!("task claimed by {by}"));
        }
        if let Some(at) = t.resolved_at {
            let how = t.resolution.as_deref().unwrap_or("");
            push(at, "task", &t.journey, format!("task resolved: {how}"));
        }
    }
    // At the same instant, in the order things happen: entry, progress, sends, outcomes.
    let rank = |kind: &str| {
        [
            "event",
            "enrollment",
            "milestone",
            "stall",
            "send",
            "delivery",
            "task",
            "failure",
            "exit",
            "timer",
        ]
        .iter()
        .position(|k| *k == kind)
    };
    out.sort_by(|a, b| a.at.cmp(&b.at).then(rank(a.kind).cmp(&rank(b.kind))));
    out
}

#[derive(Serialize)]
struct EnrollmentRow {
    journey: String,
    version: u32,
    run: u32,
    status: &'static str,
    entered_at: i64,
    ended_at: Option<i64>,
    exit_reason: Option<String>,
    milestones: Vec<String>,
    stalled_on: Option<String>,
    variants: Vec<String>,
    failure: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    session: Signed,
    Path(id): Path<String>,
) -> UiResult<Html<String>> {
    // Another tenant's customer is not found, as an unknown one is.
    let customer = reads::customer(&state, &session, &id).await?;
    let tasks: Vec<Task> = reads::tasks(&state, &session, None, None)
        .await?
        .into_iter()
        .filter(|t| t.customer == customer.id)
        .collect();
    let events = reads::customer_events(&state, &session, &customer.id, RECENT_EVENTS).await?;
    let moments = timeline(&customer, &tasks, &events);
    let enrollments: Vec<EnrollmentRow> = customer
        .enrollments
        .iter()
        .map(|e| EnrollmentRow {
            journey: e.journey.clone(),
            version: e.version,
            run: e.run,
            status: match e.status {
                EnrollmentStatus::Active => "active",
                EnrollmentStatus::Completed => "completed",
                EnrollmentStatus::Exited => "exited",
            },
            entered_at: e.entered_at,
            ended_at: e.ended_at,
            exit_reason: e.exit_reason.clone(),
            milestones: e.milestones.iter().map(|m| m.name.clone()).collect(),
            stalled_on: e.stalled_on.clone(),
            variants: e
                .variants
                .iter()
                .map(|v| format!("{}: {}", v.experiment, v.arm))
                .collect(),
            failure: e.failure.as_ref().map(|f| f.message.clone()),
        })
        .collect();
    let attributes = serde_json::to_string_pretty(&customer.attributes)
        .map_err(|e| UiError::Internal(e.to_string()))?;
    let html = render::page(
        "customer.html",
        Some(&session),
        minijinja::context! {
            id => customer.id,
            attributes,
            enrollments => render::ser(&enrollments),
            moments => render::ser(&moments),
        },
    )?;
    Ok(Html(html))
}
