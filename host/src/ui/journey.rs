//! `GET /ui/journeys/{name}`: one journey's report as `GET /v1/journeys/{name}/report`
//! answers it (the same function, so the same numbers), drawn: the milestone funnel, stalls,
//! exits by reason, the observed paths beside the declared milestone order, sends per channel,
//! and the experiments' arms compared. `?version=N` or `?arm=EXPERIMENT/ARM` shows that slice's
//! funnel instead of the overall one.

use super::charts;
use super::error::{UiError, UiResult};
use super::session::Signed;
use super::{reads, render};
use crate::api::{shared, AppState};
use axum::extract::{Path, Query, State};
use axum::response::Html;
use serde::{Deserialize, Serialize};
use waymark_api::reports::Funnel;

#[derive(Deserialize)]
pub struct SliceQuery {
    version: Option<u32>,
    arm: Option<String>,
}

/// A channel's sends and what became of them, as rates of what was sent and delivered.
#[derive(Serialize)]
struct ChannelRow {
    name: String,
    sent: u64,
    delivered: u64,
    failed: u64,
    suppressed: u64,
    delivery_rate: Option<f64>,
    open_rate: Option<f64>,
    click_rate: Option<f64>,
    reply_rate: Option<f64>,
    bounced: u64,
    unsubscribed: u64,
}

fn ratio(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

#[derive(Serialize)]
struct ArmRow {
    arm: String,
    sample_size: u64,
    converted: u64,
    rate: Option<f64>,
    low: Option<f64>,
    high: Option<f64>,
    probability_best: Option<f64>,
}

#[derive(Serialize)]
struct Experiment {
    name: String,
    metric: String,
    /// How the journey allocates arms, as the report says (issue 13): `fixed` or `thompson`.
    allocation: String,
    /// A `thompson` experiment's goal milestone: the report compares its arms on it.
    thompson_goal: Option<String>,
    arms: Vec<ArmRow>,
}

pub async fn page(
    State(state): State<AppState>,
    session: Signed,
    Path(name): Path<String>,
    Query(query): Query<SliceQuery>,
) -> UiResult<Html<String>> {
    let report = reads::report(&state, &session, &name).await?;
    let versions = shared::versions(&state, &session.tenant, name.clone())?;
    let live = versions.rollout.live_version;
    let shown = live.unwrap_or(versions.rollout.latest_version);
    let spec = versions
        .versions
        .iter()
        .find(|v| v.version == shown)
        .map(|v| v.spec.clone())
        .ok_or_else(|| UiError::Internal(format!("journey {name:?} lost version {shown}")))?;
    let r = &report.report;
    let (slice, funnel): (String, &Funnel) = match (&query.version, &query.arm) {
        (Some(v), _) => (
            format!("version {v}"),
            r.by_version.get(v).ok_or_else(|| {
                UiError::NotFound(format!("journey {name:?} has no version {v} in its report"))
            })?,
        ),
        (None, Some(arm)) => {
            let (experiment, arm_name) = arm.split_once('/').ok_or_else(|| {
                UiError::BadRequest(format!("arm is EXPERIMENT/ARM, not {arm:?}"))
            })?;
            (
                format!("experiment {experiment}, arm {arm_name}"),
                r.by_arm
                    .get(experiment)
                    .and_then(|arms| arms.get(arm_name))
                    .ok_or_else(|| {
                        UiError::NotFound(format!("no arm {arm:?} in this journey's report"))
                    })?,
            )
        }
        (None, None) => ("all versions and arms".into(), &r.overall),
    };
    let declared: Vec<String> = spec.milestones.iter().map(|m| m.name.clone()).collect();
    let chart = charts::funnel(funnel, spec.goal.as_deref());
    let flow = charts::flow(&declared, &funnel.paths);
    let channels: Vec<ChannelRow> = funnel
        .channels
        .iter()
        .map(|(name, c)| ChannelRow {
            name: name.clone(),
            sent: c.sent,
            delivered: c.delivered,
            failed: c.failed,
            suppressed: c.suppressed,
            delivery_rate: ratio(c.delivered, c.sent),
            open_rate: ratio(c.opened, c.delivered),
            click_rate: ratio(c.clicked, c.delivered),
            reply_rate: ratio(c.replied, c.delivered),
            bounced: c.bounced,
            unsubscribed: c.unsubscribed,
        })
        .collect();
    let experiments: Vec<Experiment> = r
        .experiments
        .iter()
        .map(|(name, e)| Experiment {
            name: name.clone(),
            metric: e.metric.clone(),
            allocation: e.allocation.clone(),
            thompson_goal: (e.allocation == "thompson").then(|| e.metric.clone()),
            arms: e
                .arms
                .iter()
                .map(|(arm, s)| ArmRow {
                    arm: arm.clone(),
                    sample_size: s.sample_size,
                    converted: s.converted,
                    rate: s.conversion.map(|c| c.rate),
                    low: s.conversion.map(|c| c.low),
                    high: s.conversion.map(|c| c.high),
                    probability_best: s.probability_best,
                })
                .collect(),
        })
        .collect();
    let version_options: Vec<u32> = r.by_version.keys().copied().collect();
    let arm_options: Vec<String> = r
        .by_arm
        .iter()
        .flat_map(|(e, arms)| arms.keys().map(move |a| format!("{e}/{a}")))
        .collect();
    let exits: Vec<(String, u64)> = funnel
        .exited_by_reason
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let max_exit = exits.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let backtests = reads::backtests(&state, &session, &name).await?;
    let html = render::page(
        "journey.html",
        Some(&session),
        minijinja::context! {
            name,
            description => spec.description,
            live_version => live,
            latest_version => versions.rollout.latest_version,
            goal => spec.goal,
            // Account journeys (issue 12): the counts are accounts'.
            accounts => report.subject == waymark_api::journeys::Subject::Account,
            declared,
            slice,
            selected_version => query.version,
            selected_arm => query.arm,
            version_options,
            arm_options,
            funnel => render::ser(funnel),
            chart => render::ser(&chart),
            flow => render::ser(&flow),
            paths => render::ser(&funnel.paths),
            exits,
            max_exit,
            channels => render::ser(&channels),
            experiments => render::ser(&experiments),
            backtests => render::ser(&backtests),
        },
    )?;
    Ok(Html(html))
}
