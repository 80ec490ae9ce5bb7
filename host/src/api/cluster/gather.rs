//! Requests a cluster of several partitions answers from all of them (issue 16,
//! `docs/SCALING.md` "Several partitions, as built"): a journey's report added up from every
//! partition's cells, the manual clock read and moved on every partition, tenant-wide listings
//! (tasks, dead letters, suppressions) merged in the host's order, a task found where it is,
//! dead letters requeued and webhooks taken on every partition, and `/metrics` of several
//! hosts as one exposition.

use super::spread::{derived, everywhere, unsupported};
use super::{to_partition, ClusterState, Held};
use crate::model::Spec;
use crate::report::cells::Cell;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use waymark_api::clock::{AdvanceClock, Clock, ClockAdvanced};
use waymark_api::dead_letters::Requeued;
use waymark_api::feedback::HookReceived;
use waymark_api::journeys::MigrationStatus;
use waymark_api::reports::JourneyReport;

/// The header asking a partition for its part of a journey's report ([`ReportParts`]).
pub const REPORT_PARTS: &str = "waymark-report-parts";

/// One partition's part of a journey's report: its own report, the spec whose milestones and
/// experiments make the rows, and its cells.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportParts {
    pub report: JourneyReport,
    pub spec: Spec,
    pub cells: Vec<Cell>,
}

/// Every partition's clock.
pub(super) async fn clocks(state: &ClusterState, held: &Held) -> Result<Vec<Clock>, Response> {
    everywhere(state, held, |_| {
        derived(held, Method::GET, "/v1/admin/clock", bytes::Bytes::new())
    })
    .await
}

/// `POST /v1/admin/clock/advance`: every partition's clock moved to the earliest one's time
/// plus the distance asked (a partition already there is left), so a request retried after a
/// failure halfway moves no partition twice past the others.
pub(super) async fn advance(state: &ClusterState, held: Held) -> Response {
    let Ok(asked) = serde_json::from_slice::<AdvanceClock>(&held.body) else {
        // Partition 0 says what is wrong with it.
        return to_partition(state, 0, held).await;
    };
    let clocks = match clocks(state, &held).await {
        Ok(clocks) => clocks,
        Err(response) => return response,
    };
    let Some(earliest) = clocks.iter().map(|c| c.now).min() else {
        return unsupported(&held);
    };
    let Some(to) = earliest
        .checked_add(asked.by_ms)
        .filter(|_| asked.by_ms >= 0)
    else {
        return to_partition(state, 0, held).await;
    };
    for (partition, clock) in (0..).zip(&clocks) {
        if clock.now >= to && asked.by_ms > 0 {
            continue;
        }
        let by = serde_json::to_vec(&AdvanceClock {
            by_ms: to - clock.now.min(to),
        })
        .unwrap_or_default();
        let moved = to_partition(
            state,
            partition,
            derived(&held, Method::POST, "/v1/admin/clock/advance", by.into()),
        )
        .await;
        if !moved.status().is_success() {
            return moved;
        }
    }
    axum::Json(ClockAdvanced { now: to }).into_response()
}

/// `GET /v1/journeys/{name}/report`: every partition's cells added up, against partition 0's
/// spec of the journey.
pub(super) async fn report(state: &ClusterState, held: Held) -> Response {
    let path = held.parts.uri.path().to_owned();
    let parts: Vec<ReportParts> = match everywhere(state, &held, |_| {
        let mut asked = derived(&held, Method::GET, &path, bytes::Bytes::new());
        asked
            .parts
            .headers
            .insert(REPORT_PARTS, HeaderValue::from_static("1"));
        asked
    })
    .await
    {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return unsupported(&held);
    };
    let mut cells = first.cells;
    for part in parts {
        cells.extend(part.cells);
    }
    let report = crate::report::cells::report(&first.spec, &cells);
    axum::Json(JourneyReport {
        report: report.into(),
        ..first.report
    })
    .into_response()
}

/// OpenMetrics expositions of several hosts as one: each family's metadata once, its samples
/// together, one `# EOF`.
pub(super) fn merge_expositions(expositions: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for text in expositions {
        let mut current = String::new();
        for line in text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(meta) = line.strip_prefix("# ") {
                let mut words = meta.split(' ');
                let _kind = words.next();
                let name = words.next().unwrap_or_default().to_owned();
                let entry = families.entry(name.clone()).or_insert_with(|| {
                    order.push(name.clone());
                    Default::default()
                });
                if !entry.0.iter().any(|l| l == line) {
                    entry.0.push(line.to_owned());
                }
                current = name;
            } else {
                let entry = families.entry(current.clone()).or_insert_with(|| {
                    order.push(current.clone());
                    Default::default()
                });
                entry.1.push(line.to_owned());
            }
        }
    }
    let mut merged = String::new();
    for name in order {
        if let Some((meta, samples)) = families.remove(&name) {
            for line in meta.iter().chain(&samples) {
                merged.push_str(line);
                merged.push('\n');
            }
        }
    }
    merged.push_str("# EOF\n");
    merged
}

/// A tenant-wide listing, gathered from every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    /// `GET /v1/tasks`: most urgent (lowest priority) and oldest first.
    Tasks,
    /// `GET /v1/dead-letters`: by message id.
    DeadLetters,
    /// `GET /v1/suppressions`: by channel then address, a page at a time.
    Suppressions,
}

impl Listing {
    /// The answer's field holding the list.
    fn field(self) -> &'static str {
        match self {
            Listing::Tasks => "tasks",
            Listing::DeadLetters => "dead_letters",
            Listing::Suppressions => "suppressions",
        }
    }

    /// An entry's place in the list: what the host orders it by.
    fn key(self, entry: &Value) -> (u64, i64, String, String) {
        let text = |f: &str| entry[f].as_str().unwrap_or_default().to_owned();
        match self {
            Listing::Tasks => (
                entry["priority"].as_u64().unwrap_or(u64::MAX),
                entry["created_at"].as_i64().unwrap_or(i64::MAX),
                text("id"),
                String::new(),
            ),
            Listing::DeadLetters => (0, 0, text("id"), String::new()),
            Listing::Suppressions => (0, 0, text("channel"), text("address")),
        }
    }
}

/// A tenant-wide listing: every partition asked the same (the client's key, the same query),
/// their entries put in the host's order, one entry per key, the first `limit`. A listing by
/// pages (suppressions) ends its page where some partition's page ended with more to come,
/// and names where the next page starts.
pub(super) async fn listing(state: &ClusterState, held: Held, kind: Listing) -> Response {
    let answers: Vec<Value> = match everywhere(state, &held, |_| held.clone()).await {
        Ok(answers) => answers,
        Err(response) => return response,
    };
    let limit = held
        .parts
        .uri
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("limit="))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(100);
    axum::Json(merge_listing(kind, &answers, limit)).into_response()
}

/// The partitions' answers to a listing as one answer of at most `limit` entries.
fn merge_listing(kind: Listing, answers: &[Value], limit: usize) -> Value {
    // Where the partitions' pages end while more follow: nothing after the earliest of those
    // is known to be complete.
    let mut complete_through: Option<(u64, i64, String, String)> = None;
    let mut entries = BTreeMap::new();
    for answer in answers {
        let page = answer[kind.field()].as_array().cloned().unwrap_or_default();
        if !answer["next"].is_null() {
            if let Some(last) = page.last().map(|e| kind.key(e)) {
                if complete_through.as_ref().is_none_or(|c| last < *c) {
                    complete_through = Some(last);
                }
            }
        }
        for entry in page {
            entries.entry(kind.key(&entry)).or_insert(entry);
        }
    }
    let total = entries.len();
    let mut kept: Vec<Value> = entries
        .into_iter()
        .filter(|(key, _)| complete_through.as_ref().is_none_or(|c| key <= c))
        .map(|(_, entry)| entry)
        .take(limit)
        .collect();
    let mut answer = serde_json::Map::new();
    let more = kept.len() < total || complete_through.is_some();
    let last = kept.last().filter(|_| more).map(|e| kind.key(e));
    match kind {
        Listing::Suppressions => {
            let next = last.map(|key| format!("{}/{}", key.2, key.3));
            answer.insert("next".into(), next.map_or(Value::Null, Value::String));
        }
        Listing::DeadLetters => {
            if let Some(key) = last {
                answer.insert("next".into(), Value::String(key.2));
            }
        }
        Listing::Tasks => {}
    }
    answer.insert(kind.field().into(), Value::Array(std::mem::take(&mut kept)));
    Value::Object(answer)
}

/// A request about one record whose partition the request does not say (a task by id): asked
/// of every partition at once, the first answer other than `404` in partition order is the
/// answer (a partition without the record changes nothing); all `404`: the last.
pub(super) async fn find(state: &ClusterState, held: Held) -> Response {
    // Every partition at once (a partition without the record answers 404 and changes
    // nothing, a claim or resolution included); the first other answer in partition order.
    let answers = futures::future::join_all(
        (0..state.directory.partitions()).map(|p| to_partition(state, p, held.clone())),
    )
    .await;
    let mut last = None;
    for response in answers {
        if response.status() != StatusCode::NOT_FOUND {
            return response;
        }
        last = Some(response);
    }
    last.unwrap_or_else(|| unsupported(&held))
}

/// A request every partition answers for its own records, the answer `success` if any
/// partition's is (`DELETE /v1/suppressions/{channel}/{address}`: the address suppressed
/// on any partition is sent to again on all).
pub(super) async fn any_of(state: &ClusterState, held: Held) -> Response {
    let answers = futures::future::join_all(
        (0..state.directory.partitions()).map(|p| to_partition(state, p, held.clone())),
    )
    .await;
    let mut failed = None;
    for answer in answers {
        if answer.status().is_success() {
            return answer;
        }
        if failed.is_none() || answer.status() != StatusCode::NOT_FOUND {
            failed = Some(answer);
        }
    }
    failed.unwrap_or_else(|| unsupported(&held))
}

/// `POST /v1/dead-letters/retry`: every partition requeues its own; the counts added up and
/// the ids put together.
pub(super) async fn requeue(state: &ClusterState, held: Held) -> Response {
    let answers: Vec<Requeued> = match everywhere(state, &held, |_| held.clone()).await {
        Ok(answers) => answers,
        Err(response) => return response,
    };
    let mut all = Requeued {
        requeued: 0,
        ids: Vec::new(),
    };
    for answer in answers {
        all.requeued += answer.requeued;
        all.ids.extend(answer.ids);
    }
    axum::Json(all).into_response()
}

/// `POST /v1/hooks/{tenant}/{channel}`: a provider's webhook names messages by the provider's
/// ids, not by customer, so every partition takes it — each verifies it and suppresses the
/// addresses it reports (a suppression holds on every partition), and the partition that sent
/// a message ingests its events. The answers are put together event by event (an event is
/// matched where one partition matched it). An answer that is the adapter's own (not JSON: a
/// challenge, TwiML) is partition 0's.
pub(super) async fn hook(state: &ClusterState, held: Held) -> Response {
    let answers = futures::future::join_all(
        (0..state.directory.partitions()).map(|p| to_partition(state, p, held.clone())),
    )
    .await;
    let mut read = Vec::with_capacity(answers.len());
    for answer in answers {
        let json = answer
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
        let (status, body) = match super::spread::read(answer).await {
            Ok(read) => read,
            Err(response) => return response,
        };
        let parsed = serde_json::from_slice::<HookReceived>(&body).ok();
        match parsed {
            Some(parsed) if json && status.is_success() => read.push(parsed),
            _ => return super::spread::rebuilt(status, body),
        }
    }
    match merge_hooks(read) {
        Some(merged) => axum::Json(merged).into_response(),
        None => unsupported(&held),
    }
}

/// The partitions' answers to a webhook as one: each event as the partition that matched it
/// answered it, the counts added up, each newly suppressed address once.
fn merge_hooks(answers: Vec<HookReceived>) -> Option<HookReceived> {
    let mut parts = answers.into_iter();
    let mut merged = parts.next()?;
    for part in parts {
        for (event, other) in merged.events.iter_mut().zip(part.events) {
            if event.status == "unmatched" && other.status != "unmatched" {
                *event = other;
            }
        }
        merged.accepted += part.accepted;
        merged.duplicates += part.duplicates;
        for address in part.suppressed {
            if !merged.suppressed.contains(&address) {
                merged.suppressed.push(address);
            }
        }
    }
    merged.unmatched = merged
        .events
        .iter()
        .filter(|e| e.status == "unmatched")
        .count() as u64;
    Some(merged)
}

/// The header naming the id a partition gives a migration started over several partitions:
/// partition 0's.
pub const MIGRATION_ID: &str = "waymark-migration-id";

/// `POST /v1/journeys/{name}/migrate`: started on partition 0, which checks it and names it,
/// then on every other partition under the same id (each queues the moves of its own
/// customers' enrollments); the counts added up.
pub(super) async fn migrate(state: &ClusterState, held: Held) -> Response {
    let first = to_partition(state, 0, held.clone()).await;
    if !first.status().is_success() {
        return first;
    }
    let (status, body) = match super::spread::read(first).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let Ok(mut started) = serde_json::from_slice::<MigrationStatus>(&body) else {
        return super::spread::rebuilt(status, body);
    };
    let Ok(id) = HeaderValue::from_str(&started.id) else {
        return super::spread::rebuilt(status, body);
    };
    let rest = futures::future::join_all((1..state.directory.partitions()).map(|p| {
        let mut asked = held.clone();
        asked.parts.headers.insert(MIGRATION_ID, id.clone());
        to_partition(state, p, asked)
    }))
    .await;
    for answer in rest {
        let (status, body) = match super::spread::read(answer).await {
            Ok(read) => read,
            Err(response) => return response,
        };
        match serde_json::from_slice::<MigrationStatus>(&body) {
            Ok(part) if status.is_success() => started.queued += part.queued,
            _ => return super::spread::rebuilt(status, body),
        }
    }
    started.pending = started.queued;
    (StatusCode::ACCEPTED, axum::Json(started)).into_response()
}

/// `GET /v1/journeys/{name}/migrations/{id}`: every partition's part of the migration added
/// up, its refusals together (the first 1,000).
pub(super) async fn migration(state: &ClusterState, held: Held) -> Response {
    let parts: Vec<MigrationStatus> = match everywhere(state, &held, |_| held.clone()).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let mut parts = parts.into_iter();
    let Some(mut all) = parts.next() else {
        return unsupported(&held);
    };
    for part in parts {
        crate::api::add_up_migration(&mut all, part);
    }
    axum::Json(all).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_of_suppressions_ends_where_a_partition_has_more() {
        let s = |c: &str, a: &str| json!({"channel": c, "address": a});
        let answers = [
            json!({"suppressions": [s("email", "a"), s("email", "d")], "next": "email/d"}),
            json!({"suppressions": [s("email", "b"), s("email", "c"), s("email", "e")], "next": null}),
            json!({"suppressions": [s("email", "a")], "next": null}),
        ];
        let page = merge_listing(Listing::Suppressions, &answers, 3);
        assert_eq!(
            page,
            json!({"suppressions": [s("email", "a"), s("email", "b"), s("email", "c")], "next": "email/c"})
        );
        // Past `d` only partition 1 is complete: the page stops at `d`.
        let page = merge_listing(Listing::Suppressions, &answers, 10);
        assert_eq!(page["next"], "email/d");
        assert_eq!(page["suppressions"].as_array().map(Vec::len), Some(4));
        let tasks = [
            json!({"tasks": [{"id": "t2", "priority": 1, "created_at": 5}]}),
            json!({"tasks": [{"id": "t1", "priority": 0, "created_at": 9}, {"id": "t3", "priority": 1, "created_at": 2}]}),
        ];
        let ids: Vec<Value> = merge_listing(Listing::Tasks, &tasks, 10)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].clone())
            .collect();
        assert_eq!(ids, [json!("t1"), json!("t3"), json!("t2")]);

        // Dead letters page by id: a page ends where a partition's did with more to come,
        // even when every entry read is kept.
        let m = |id: &str| json!({"id": id});
        let answers = [
            json!({"dead_letters": [m("k1"), m("k4")], "next": "k4"}),
            json!({"dead_letters": [m("k2")]}),
        ];
        let page = merge_listing(Listing::DeadLetters, &answers, 10);
        assert_eq!(
            page,
            json!({"dead_letters": [m("k1"), m("k2"), m("k4")], "next": "k4"})
        );
        let answers = [
            json!({"dead_letters": [m("k1")]}),
            json!({"dead_letters": []}),
        ];
        let page = merge_listing(Listing::DeadLetters, &answers, 10);
        assert_eq!(
            page,
            json!({"dead_letters": [m("k1")]}),
            "the last page names none"
        );
    }

    #[test]
    fn a_webhook_answer_takes_each_event_from_the_partition_that_matched_it() {
        let event = |status: &str, id: Option<&str>| waymark_api::feedback::HookEvent {
            name: "delivered".into(),
            id: id.map(String::from),
            customer: id.map(|_| "c1".into()),
            message_id: id.map(|_| "m1".into()),
            status: status.into(),
        };
        let answer = |accepted, suppressed: &[&str], events| HookReceived {
            accepted,
            duplicates: 0,
            unmatched: 0,
            suppressed: suppressed.iter().map(|s| s.to_string()).collect(),
            events,
        };
        let merged = merge_hooks(vec![
            answer(
                0,
                &["x@example.com"],
                vec![event("unmatched", None), event("unmatched", None)],
            ),
            answer(
                1,
                &["x@example.com"],
                vec![event("accepted", Some("e1")), event("unmatched", None)],
            ),
        ])
        .unwrap();
        assert_eq!(merged.accepted, 1);
        assert_eq!(merged.unmatched, 1);
        assert_eq!(merged.suppressed, ["x@example.com"]);
        assert_eq!(merged.events[0].status, "accepted");
        assert_eq!(merged.events[1].status, "unmatched");
    }

    #[test]
    fn expositions_merge_into_one_family_each() {
        let a = "# HELP waymark_x X.\n# TYPE waymark_x counter\nwaymark_x_total{partition=\"0\"} 1\n# TYPE waymark_y gauge\nwaymark_y{partition=\"0\"} 2\n# EOF\n";
        let b = "# HELP waymark_x X.\n# TYPE waymark_x counter\nwaymark_x_total{partition=\"1\"} 3\n# EOF\n";
        let merged = merge_expositions(&[a.into(), b.into()]);
        assert_eq!(
            merged,
            "# HELP waymark_x X.\n# TYPE waymark_x counter\nwaymark_x_total{partition=\"0\"} 1\nwaymark_x_total{partition=\"1\"} 3\n# TYPE waymark_y gauge\nwaymark_y{partition=\"0\"} 2\n# EOF\n"
        );
    }
}
