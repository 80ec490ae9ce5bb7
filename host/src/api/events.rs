//! Event ingest: one event or a batch, validated, deduplicated by id, durable before the answer,
//! and the owning shard workers woken.

use super::dto;
use super::limits::{
    MAX_CUSTOMER_ATTRIBUTES_BYTES, MAX_EVENT_NAME, MAX_PROPERTIES_BYTES, MAX_TIMESTAMP,
    MAX_TRAITS_BYTES,
};
use super::prelude::*;
use super::validate::{valid_customer_id, valid_id};
use crate::model::Event;
use serde_json::value::RawValue;
use serde_json::Value;
use waymark_api::events::{EventInput, EventResult, EventStatus, EventsAccepted};

/// The most events one request may carry.
pub(super) const MAX_BATCH: usize = 10_000;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/events", post(post_events))
}

/// Why one posted event was refused: 400, or 413 for a size limit.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl From<String> for Refused {
    fn from(message: String) -> Refused {
        Refused {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
}

pub(super) fn oversized(message: String) -> Refused {
    Refused {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message,
    }
}

/// The JSON size of a value (as stored and as journeys see it).
fn json_len(value: &impl serde::Serialize) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// The traits an `identify` sets (as `engine::profile` reads them), if any.
fn traits(event: &Event) -> Option<&serde_json::Map<String, Value>> {
    if event.name != "identify" {
        return None;
    }
    match event.properties.get("traits") {
        Some(Value::Object(traits)) => Some(traits),
        _ => Some(&event.properties),
    }
}

/// One posted event, read and checked on its own so an error can name its place in a batch.
fn parse_event(raw: &RawValue, now: Millis) -> Result<Event, Refused> {
    let input: EventInput = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    check_event(input, now)
}

/// One event's checks (ids, name, time, sizes) and its conversion to the model: the one
/// gate of every ingest route (`POST /v1/events`, the Segment-compatible routes).
pub(super) fn check_event(input: EventInput, now: Millis) -> Result<Event, Refused> {
    valid_id("id", &input.id)?;
    valid_customer_id("customer", &input.customer)?;
    valid_id("name", &input.name)?;
    if input.name.len() > MAX_EVENT_NAME {
        return Err(format!("name must be at most {MAX_EVENT_NAME} bytes").into());
    }
    if let Some(t) = input.timestamp {
        if !(0..=MAX_TIMESTAMP).contains(&t) {
            return Err(
                format!("timestamp must be 0 to {MAX_TIMESTAMP} ms (the year 9999)").into(),
            );
        }
    }
    let event = dto::event(input, now);
    let size = json_len(&event.properties);
    if size > MAX_PROPERTIES_BYTES {
        return Err(oversized(format!(
            "properties are {size} bytes of JSON; at most {MAX_PROPERTIES_BYTES}"
        )));
    }
    if let Some(traits) = traits(&event) {
        let size = json_len(traits);
        if size > MAX_TRAITS_BYTES {
            return Err(oversized(format!(
                "traits are {size} bytes of JSON; at most {MAX_TRAITS_BYTES}"
            )));
        }
    }
    Ok(event)
}

/// Refuses an `identify` that would take its customer's attributes past
/// [`MAX_CUSTOMER_ATTRIBUTES_BYTES`]: the stored attributes with every trait of the batch for
/// that customer set (a bound: removals are not subtracted). Runs off the async workers.
fn check_attribute_sizes(
    store: &crate::store::Store,
    tenant: &str,
    events: &[Event],
) -> Result<(), (usize, Refused)> {
    let mut grown: std::collections::HashMap<&str, (usize, usize)> = Default::default();
    for (i, event) in events.iter().enumerate() {
        let Some(traits) = traits(event) else {
            continue;
        };
        let entry = match grown.get_mut(event.customer.as_str()) {
            Some(entry) => entry,
            None => {
                let stored = store
                    .customer(tenant, &event.customer)
                    .map_err(|e| (i, Refused::from(e.to_string())))?
                    .map_or(2, |c| json_len(&c.attributes));
                grown.entry(&event.customer).or_insert((stored, i))
            }
        };
        entry.0 += json_len(traits);
        if entry.0 > MAX_CUSTOMER_ATTRIBUTES_BYTES {
            return Err((
                i,
                oversized(format!(
                    "customer {:?} would have over {MAX_CUSTOMER_ATTRIBUTES_BYTES} bytes of attributes",
                    event.customer
                )),
            ));
        }
    }
    Ok(())
}

/// Bodies up to this size are parsed on the async worker; larger ones on the blocking pool.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// The error for event `i` of a request (`batch`: whether to name the index).
pub(super) fn refusal(batch: bool, i: usize, r: Refused) -> ApiError {
    let at = if batch {
        format!("event {i}: ")
    } else {
        String::new()
    };
    let code = if r.status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "invalid_event"
    };
    ApiError::new(r.status, code, format!("{at}{}", r.message))
}

/// Reads an ingest body (one event object or an array of 1 to [`MAX_BATCH`] of them) as the
/// events it carries, received at `now`, each checked; the first refused one refuses the whole
/// body. The whole of `POST /v1/events` that does not touch the store; pure, so that it can be
/// fuzzed (`fuzz/fuzz_targets/events.rs`).
pub fn parse_events(body: &[u8], now: Millis) -> ApiResult<Vec<Event>> {
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
        .map(|(i, v)| parse_event(v, now).map_err(|r| refusal(batch, i, r)))
        .collect()
}

async fn post_events(
    State(state): State<AppState>,
    Ingest(tenant): Ingest,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<EventsAccepted>)> {
    let body = body?;
    let now = state.host.clock.now();
    // Parsing a large batch takes a while: off the async workers, so it delays no one else.
    let events = if body.len() > INLINE_PARSE_BYTES {
        tokio::task::spawn_blocking(move || parse_events(&body, now))
            .await
            .map_err(ApiError::internal)??
    } else {
        parse_events(&body, now)?
    };
    let accepted = ingest(&state, &tenant, events, now, Merged::PassOn).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Where ingest takes an event of an id merged into one of another partition (cluster mode,
/// issue 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Merged {
    /// Where the id leads: the request is answered `merged_elsewhere` for the node's front to
    /// post there (`POST /v1/events` and the Segment routes, which reach a partition of
    /// several only through the front, `api/cluster/ingest.rs`).
    PassOn,
    /// Here, its trigger passed on by the id's shard worker as a forward: the events a
    /// partition makes itself for a customer of its own (a provider's webhook, an unsubscribe,
    /// an inbox mark, a subscription change), none of which merges or groups.
    Here,
}

/// Ingests checked events received at `now`: the tenant's event rate and the shards'
/// backpressure (refused whole, nothing stored), the attribute sizes `identify` would lead to,
/// then dedup and the durable append, and the owning shard workers woken. Shared by every
/// ingest route.
pub(super) async fn ingest(
    state: &AppState,
    tenant: &str,
    events: Vec<Event>,
    now: Millis,
    merged: Merged,
) -> ApiResult<EventsAccepted> {
    let rt = &state.host;
    let tenant = tenant.to_string();
    let batch = events.len() > 1;
    let refused = move |i: usize, r: Refused| refusal(batch, i, r);
    // Identity merge (issue 12): a merged id's events go to the id it was merged into, and
    // the ids that `identify` and `alias` merge are checked like customer ids.
    let window = rt.config.dedup_window_ms();
    let (events, merges, moved) =
        identities(&rt.store, &tenant, events, batch, (now, window), merged)?;
    // Accounts (issue 12): what each `group` event does to the tenant's accounts.
    let accounts = account_changes(&events, batch)?;
    // Cluster mode (issue 16): checked whole first, then passed on if any event must be.
    if let Some((i, customer, into)) = moved {
        return Err(merged_elsewhere(&events, batch, i, &customer, &into));
    }
    // The tenant's event rate, then each target shard's backlog: refused whole, nothing stored.
    state
        .edge
        .take_events(state, &tenant, events.len() as u64)?;
    let mut targets = vec![false; usize::from(rt.store.shards())];
    let merged = merges.iter().flatten();
    for customer in events.iter().map(|e| &e.customer).chain(merged) {
        targets[usize::from(crate::store::shard_of(&tenant, customer, rt.store.shards()))] = true;
    }
    for (shard, targeted) in targets.into_iter().enumerate() {
        if targeted && state.edge.shard_full(state, shard as u16).await? {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "shard {shard} has over {} triggers waiting; retry shortly",
                    state.edge.config.shard_queue_bound
                ),
            )
            .with_headers(vec![(axum::http::header::RETRY_AFTER, "1".to_string())]));
        }
    }
    let events = if events.iter().any(|e| traits(e).is_some()) {
        let store = rt.store.clone();
        let owner = tenant.clone();
        tokio::task::spawn_blocking(move || {
            check_attribute_sizes(&store, &owner, &events).map(|()| events)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|(i, r)| refused(i, r))?
    } else {
        events
    };
    let results = rt
        .store
        .ingest_with(crate::store::Extras {
            tenant: &tenant,
            events: &events,
            merges: &merges,
            accounts: &accounts,
            now,
            window,
        })
        .await?;
    let mut accepted = 0;
    let mut out = Vec::with_capacity(events.len());
    let mut shards = vec![false; usize::from(rt.store.shards())];
    for (i, (event, result)) in events.iter().zip(&results).enumerate() {
        let status = dto::event_status(result);
        if status == EventStatus::Accepted {
            accepted += 1;
            let merged = merges.get(i).and_then(|m| m.as_deref());
            // A `group` call over several partitions queues for its account's subject key.
            let grouped = accounts
                .get(i)
                .and_then(Option::as_ref)
                .map(|change| crate::engine::accounts::subject(&change.account));
            let grouped = grouped.as_deref();
            for customer in std::iter::once(event.customer.as_str())
                .chain(merged)
                .chain(grouped)
            {
                shards[usize::from(crate::store::shard_of(&tenant, customer, rt.store.shards()))] =
                    true;
            }
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
    Ok(EventsAccepted {
        accepted,
        duplicates,
        results: out,
    })
}

// Identity merge (issue 12)
/// Per event, the id it merges into its customer, if any.
type Merges = Vec<Option<String>>;

/// Cluster mode (issue 16): the first event of a request to be passed on, as its place, its
/// customer and the id of another partition that customer was merged into.
type Moved = (usize, String, String);

/// Each event's customer as ingest queues it (a merged id's events go to the id it was merged
/// into: `Store::resolve`), and the id each event merges into its customer, if any
/// (`engine::identity::merge_source`), checked as a customer id is. A merge naming the id its
/// customer resolves to merges nothing. In a cluster of several partitions, also the first
/// event to pass on (`merged`), if any.
fn identities(
    store: &crate::store::Store,
    tenant: &str,
    mut events: Vec<Event>,
    batch: bool,
    (now, window): (Millis, Option<Millis>),
    merged: Merged,
) -> ApiResult<(Vec<Event>, Merges, Option<Moved>)> {
    let mut merges = Vec::with_capacity(events.len());
    let mut moved = None;
    for (i, event) in events.iter_mut().enumerate() {
        let from = crate::engine::identity::merge_source(event).map(str::to_string);
        if let Some(from) = &from {
            valid_customer_id("the merged id", from).map_err(|e| refusal(batch, i, e.into()))?;
        }
        event.customer = store.resolve(tenant, &event.customer)?;
        // Over several partitions (issue 16) the chain of merges stops at the last id of this
        // partition. An event of an id merged into one of another partition is ingested where
        // the chain leads, for the id it ends in, as one node ingests it: the request is
        // answered `merged_elsewhere` and the node's front posts it there. Unless this
        // partition took the event's id already (sent again after its customer was merged):
        // then ingest answers it as a duplicate here, as one node does.
        let stopped = match store.place() {
            Some(_) => store.alias(tenant, &event.customer)?,
            None => None,
        };
        let mut from = from;
        if let Some(into) = stopped {
            if merged == Merged::PassOn && !store.event_seen(tenant, &event.id, now, window)? {
                moved.get_or_insert((i, event.customer.clone(), into.clone()));
                event.customer = into;
            } else if from.as_deref() == Some(into.as_str()) {
                // Taken here: a merge of the id it was merged into merges nothing, as on one
                // node.
                from = None;
            }
        }
        let from = from.filter(|from| *from != event.customer);
        merges.push(from);
    }
    Ok((events, merges, moved))
}

/// Cluster mode (issue 16): the answer to a request with an event of an id merged into one of
/// another partition (event `i`'s `customer` into `into`): refused whole,
/// nothing stored, with every event of the request as ingest read it (such an event's customer
/// the id it was merged into). The node's front posts them again, each to its customer's
/// partition (`api/cluster/ingest.rs`), so the event is ingested where its customer leads, as
/// one node ingests it for the id the chain of merges ends in; a client never sees this answer.
fn merged_elsewhere(
    events: &[Event],
    batch: bool,
    i: usize,
    customer: &str,
    into: &str,
) -> ApiError {
    let at = if batch {
        format!("event {i}: ")
    } else {
        String::new()
    };
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        MERGED_ELSEWHERE,
        format!(
            "{at}{customer:?} was merged into {into:?} of another partition: the request is \
             ingested there, by the node's front"
        ),
    )
    .with_field("events", serde_json::to_value(events).unwrap_or_default())
}

/// The code of [`merged_elsewhere`]'s answer.
pub(crate) const MERGED_ELSEWHERE: &str = "merged_elsewhere";

// Accounts (issue 12)
/// Each event's account change (`engine::accounts::group_change`), its account id checked as
/// a customer id is and its traits as `identify`'s are.
fn account_changes(
    events: &[Event],
    batch: bool,
) -> ApiResult<Vec<Option<crate::store::AccountChange>>> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let change = crate::engine::accounts::group_change(event)
                .map_err(|e| refusal(batch, i, e.into()))?;
            if let Some(change) = &change {
                valid_id("group_id", &change.account).map_err(|e| refusal(batch, i, e.into()))?;
                let size = json_len(&change.traits);
                if size > MAX_TRAITS_BYTES {
                    return Err(refusal(
                        batch,
                        i,
                        oversized(format!(
                            "traits are {size} bytes of JSON; at most {MAX_TRAITS_BYTES}"
                        )),
                    ));
                }
            }
            Ok(change)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse_event(value: Value, now: Millis) -> Result<Event, String> {
        let raw = serde_json::value::to_raw_value(&value).unwrap();
        super::parse_event(&raw, now).map_err(|r| r.message)
    }

    #[test]
    fn events_past_a_size_or_time_limit_are_refused() {
        let big = "x".repeat(MAX_PROPERTIES_BYTES);
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "x", "properties": {"a": big}}),
            0
        )
        .unwrap_err()
        .contains("properties"));
        let traits = "x".repeat(MAX_TRAITS_BYTES);
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "identify", "properties": {"traits": {"a": traits}}}),
            0
        )
        .unwrap_err()
        .contains("traits"));
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "x", "timestamp": i64::MAX}),
            0
        )
        .is_err());
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "x", "timestamp": -1}),
            0
        )
        .is_err());
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "n".repeat(129)}),
            0
        )
        .is_err());
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
