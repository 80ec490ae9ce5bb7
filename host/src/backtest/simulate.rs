//! `waymark simulate` (issue 13): one journey component run over a file of events with the
//! host's semantics and no server — the same [`IsolatedEngine`] backtests use, over a scratch
//! store holding only that journey, its clock moving continuously from event to event and
//! through every timer — and each customer's timeline read back from it. For a journey
//! author's own CI: the timeline is deterministic, so it can be compared with an expected one.

use super::engine::{ClockMoves, IsolatedEngine};
use crate::host::HostConfig;
use crate::model::rollout::Stage;
use crate::model::{Event, Millis};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::{MessageStatus, StoreError, Tenant};
use std::collections::BTreeMap;

/// The tenant a simulation runs as.
const TENANT: &str = "simulate";
/// The name the journey runs under.
pub const JOURNEY: &str = "journey";

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("the component is not a journey: {0}")]
    Component(String),
}

/// One line of a customer's timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    pub at: Millis,
    /// `entered`, `milestone`, `stalled`, `send`, `completed`, `exited`, `timer_pending`.
    pub what: &'static str,
    /// The run of the enrollment it belongs to.
    pub run: u32,
    /// The milestone, the exit reason, the timer, or `channel template payload` of a send.
    pub detail: String,
}

/// Runs the journey `component` over `events` (each at its own timestamp, in order; equal
/// timestamps keep the file's order) until `until` (the last event's time when `None`), and
/// returns every customer's timeline, by customer id.
pub async fn simulate(
    component: Vec<u8>,
    mut events: Vec<Event>,
    until: Option<Millis>,
) -> Result<BTreeMap<String, Vec<Entry>>, SimulateError> {
    events.sort_by_key(|e| e.timestamp);
    let start = events.first().map_or(0, |e| e.timestamp);
    let end = until.unwrap_or_else(|| events.last().map_or(start, |e| e.timestamp));
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let limits = SandboxConfig::default().defaults;
    let scratch = IsolatedEngine::scratch_store()?;
    let tenant = Tenant {
        id: TENANT.into(),
        created_at: start,
        limits: Default::default(),
        policy: Default::default(),
    };
    scratch.create_tenant(&tenant, "simulate").await?;
    let registry = crate::registry::Registry::new(sandbox.clone(), scratch.clone());
    let compiled = registry
        .compile_journey(component.clone().into())
        .await
        .map_err(|e| SimulateError::Component(e.to_string()))?;
    let spec = compiled
        .describe(&limits)
        .await
        .map_err(|f| SimulateError::Component(format!("describe failed: {}", f.message)))?;
    let digest = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&component))
    };
    scratch
        .add_journey_version(
            TENANT,
            JOURNEY,
            &digest,
            &component,
            &spec,
            Stage::Live,
            start,
        )
        .await?;
    let registry = crate::registry::Registry::new(sandbox, scratch.clone());
    let engine = IsolatedEngine::over(
        scratch,
        registry,
        &HostConfig::default(),
        TENANT,
        start,
        ClockMoves::Continuous,
        tokio_util::sync::CancellationToken::new(),
    );
    for event in &events {
        engine
            .feed(event, event.timestamp.max(engine.now()))
            .await?;
    }
    engine.advance_to(end.max(engine.now())).await?;
    timelines(engine.store())
}

/// Every customer's enrollments and messages as one timeline each.
fn timelines(store: &crate::store::Store) -> Result<BTreeMap<String, Vec<Entry>>, SimulateError> {
    let mut out: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in store.journey_enrollments(TENANT, JOURNEY)? {
        let lines = out.entry(e.customer.clone()).or_default();
        let line = |at, what, detail: String| Entry {
            at,
            what,
            run: e.run,
            detail,
        };
        lines.push(line(
            e.entered_at,
            "entered",
            format!("version {}", e.version),
        ));
        for m in &e.milestones {
            lines.push(line(m.at, "milestone", m.name.clone()));
        }
        for s in &e.stalls {
            lines.push(line(s.at, "stalled", s.name.clone()));
        }
        if let Some(ended) = e.ended_at {
            match e.status {
                crate::model::EnrollmentStatus::Completed => {
                    lines.push(line(ended, "completed", String::new()))
                }
                _ => lines.push(line(
                    ended,
                    "exited",
                    e.exit_reason.clone().unwrap_or_default(),
                )),
            }
        }
        for t in &e.timers {
            lines.push(line(t.due, "timer_pending", t.name.clone()));
        }
    }
    for m in store.tenant_messages(TENANT)? {
        let held = matches!(m.status, MessageStatus::Held | MessageStatus::Suppressed);
        let detail = format!(
            "{} {} {}{}",
            m.channel,
            m.template,
            m.payload,
            if held {
                format!(" ({:?})", m.status).to_lowercase()
            } else {
                String::new()
            }
        );
        out.entry(m.customer.clone()).or_default().push(Entry {
            at: m.created_at,
            what: "send",
            run: m.run,
            detail,
        });
    }
    for lines in out.values_mut() {
        lines.sort_by_key(|a| (a.at, a.run));
    }
    Ok(out)
}
