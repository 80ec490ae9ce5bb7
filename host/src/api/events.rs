//! Event ingest: one event or a batch, validated, deduplicated by id, durable before the answer,
//! and the owning shard workers woken.

use super::dto;
use super::prelude::*;
use super::validate::valid_id;
use crate::model::Event;
use serde_json::value::RawValue;
use waymark_api::events::{EventInput, EventResult, EventStatus, EventsAccepted};

/// The most events one request may carry.
const MAX_BATCH: usize = 10_000;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/events", post(post_events))
}

/// One posted event, read and checked on its own so an error can name its place in a batch.
fn parse_event(raw: &RawValue, now: Millis) -> Result<Event, String> {
    let input: EventInput = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    valid_id("id", &input.id)?;
    valid_id("customer", &input.customer)?;
    valid_id("name", &input.name)?;
    Ok(dto::event(input, now))
}

/// Reads an ingest body (one event object or an array of 1 to [`MAX_BATCH`] of them) as the
/// events it carries, received at `now`: the whole of `POST /v1/events` that does not touch the
/// store. Pure, so that it can be fuzzed (`fuzz/fuzz_targets/events.rs`).
pub fn parse_events(body: &[u8], now: Millis) -> Result<Vec<Event>, ApiError> {
    // A single event or an array of them: which one decides how errors are prefixed. The
    // body is checked as JSON once, then each event is parsed straight from its own text.
    let raw: &RawValue = parse_json(body)?;
    let values: Vec<&RawValue> = match raw.get().as_bytes().first() {
        Some(b'[') => parse_json(raw.get().as_bytes())?,
        Some(b'{') => vec![raw],
        _ => {
            return Err(ApiError::bad_request(
                "invalid_event",
                "expected an event object or an array of events",
            ))
        }
    };
    if values.is_empty() || values.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_event",
            format!("a batch holds 1 to {MAX_BATCH} events"),
        ));
    }
    let batch = values.len() > 1;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            parse_event(v, now).map_err(|m| {
                let at = if batch {
                    format!("event {i}: ")
                } else {
                    String::new()
                };
                ApiError::bad_request("invalid_event", format!("{at}{m}"))
            })
        })
        .collect()
}

async fn post_events(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<EventsAccepted>)> {
    let body = body?;
    let rt = &state.host;
    let now = rt.clock.now();
    let events = parse_events(&body, now)?;
    let window = rt.config.dedup_window_ms();
    let results = rt.store.ingest(&tenant, &events, now, window).await?;
    let mut accepted = 0;
    let mut out = Vec::with_capacity(events.len());
    let mut shards = vec![false; usize::from(rt.store.shards())];
    for (event, result) in events.iter().zip(&results) {
        let status = dto::event_status(result);
        if status == EventStatus::Accepted {
            accepted += 1;
            shards[usize::from(crate::store::shard_of(
                &tenant,
                &event.customer,
                rt.store.shards(),
            ))] = true;
        }
        out.push(EventResult {
            id: event.id.clone(),
            status,
        });
    }
    // Each shard with new work is woken once, not once per event.
    for (shard, woken) in shards.into_iter().enumerate() {
        if woken {
            rt.wake_shard(shard as u16);
        }
    }
    let duplicates = events.len() as u64 - accepted;
    rt.metrics.events_accepted.inc_by(accepted);
    rt.metrics.events_duplicate.inc_by(duplicates);
    Ok((
        StatusCode::ACCEPTED,
        Json(EventsAccepted {
            accepted,
            duplicates,
            results: out,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse_event(value: Value, now: Millis) -> Result<Event, String> {
        let raw = serde_json::value::to_raw_value(&value).unwrap();
        super::parse_event(&raw, now)
    }

    #[test]
    fn events_default_their_timestamp_and_properties() {
        let e = parse_event(json!({"id": "1", "customer": "c", "name": "x"}), 77).unwrap();
        assert_eq!(e.timestamp, 77);
        assert!(e.properties.is_empty());
    }

    #[test]
    fn events_with_bad_fields_are_refused_with_the_reason() {
        assert!(parse_event(json!({"customer": "c", "name": "x"}), 0)
            .unwrap_err()
            .contains("id"));
        assert!(parse_event(json!({"id": "", "customer": "c", "name": "x"}), 0).is_err());
        assert!(parse_event(json!({"id": "1", "customer": "a\u{1f}b", "name": "x"}), 0).is_err());
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "x", "properties": [1]}),
            0
        )
        .is_err());
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "x", "extra": 1}),
            0
        )
        .is_err());
    }
}
