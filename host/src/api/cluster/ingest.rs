//! Ingest over a cluster of several partitions (issue 16, `docs/SCALING.md` "Several
//! partitions, as built"): `POST /v1/events` and the Segment-style routes split by customer,
//! each partition's share posted to it at once, the answers put back together.
//!
//! A share may come back refused whole as `421 merged_elsewhere` (`api::events`): one of its
//! events is of an id merged into one of another partition, which one node would ingest for
//! the id that chain of merges ends in. The answer carries the share's events as that
//! partition read them, such an event's customer the id it was merged into; they are posted
//! again, each to its customer's partition, round after round until every partition took its
//! own ([`post_events`]). Nothing of a share refused so is stored, so nothing is ingested
//! twice; a client never sees that answer.

use super::spread::{derived, partition_of, read, rebuilt, unsupported};
use super::{to_partition, ClusterState, Held};
use crate::api::error::ApiError;
use crate::api::events::MERGED_ELSEWHERE;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use waymark_api::events::{EventResult, EventsAccepted};
use waymark_api::segment::SegmentAccepted;

/// How many times a request's events may be passed on to the partition their customer was
/// merged into. A chain of merges may cross partitions at every step; this bounds the work
/// of one request.
const MOST_ROUNDS: usize = 16;

/// Just the customer of an event, to route it.
#[derive(Deserialize)]
struct Routed {
    customer: String,
}

/// What a `421 merged_elsewhere` carries: every event of the share, as the partition read it.
#[derive(Deserialize)]
struct Moved {
    error: MovedError,
    events: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct MovedError {
    code: String,
}

/// A partition's answer to one share.
enum Share<T> {
    /// Taken in: the route's answer.
    Taken(T),
    /// To be posted again (`merged_elsewhere`): the share's events, in its order.
    Moved(Vec<Box<RawValue>>),
    /// Refused, as it came (nothing of the share stored).
    Refused(Refusal),
}

/// A partition's refusal as it came: status, headers (`Retry-After`, `RateLimit`...), body.
struct Refusal(StatusCode, HeaderMap, bytes::Bytes);

impl Refusal {
    fn answer(self) -> Response {
        let Refusal(status, headers, body) = self;
        let mut response = rebuilt(status, body);
        for (name, value) in &headers {
            if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}

/// Reads a partition's answer to a share of `events` events.
async fn share<T: serde::de::DeserializeOwned>(
    response: Response,
    events: usize,
) -> Result<Share<T>, Response> {
    let headers = response.headers().clone();
    let (status, body) = read(response).await?;
    if status == StatusCode::MISDIRECTED_REQUEST {
        if let Ok(moved) = serde_json::from_slice::<Moved>(&body) {
            if moved.error.code == MERGED_ELSEWHERE && moved.events.len() == events {
                return Ok(Share::Moved(moved.events));
            }
        }
    }
    if !status.is_success() {
        return Ok(Share::Refused(Refusal(status, headers, body)));
    }
    Ok(match serde_json::from_slice::<T>(&body) {
        Ok(taken) => Share::Taken(taken),
        Err(_) => Share::Refused(Refusal(StatusCode::BAD_GATEWAY, headers, body)),
    })
}

/// What the shares of a request came to so far: the counts, each event's result by its place
/// in the request, and the first refusal.
struct Gathered {
    accepted: u64,
    duplicates: u64,
    results: Vec<Option<EventResult>>,
    refusal: Option<Refusal>,
}

impl Gathered {
    fn new(events: usize) -> Gathered {
        Gathered {
            accepted: 0,
            duplicates: 0,
            results: vec![None; events],
            refusal: None,
        }
    }

    /// A share of the events at `places` taken in.
    fn taken(&mut self, places: &[usize], taken: EventsAccepted) {
        self.accepted += taken.accepted;
        self.duplicates += taken.duplicates;
        for (i, result) in places.iter().zip(taken.results) {
            self.results[*i] = Some(result);
        }
    }

    /// The answer: the first refusal as it came, else the events' results in order.
    fn answer(self) -> Response {
        if let Some(refusal) = self.refusal {
            return refusal.answer();
        }
        (
            StatusCode::ACCEPTED,
            axum::Json(EventsAccepted {
                accepted: self.accepted,
                duplicates: self.duplicates,
                results: self.results.into_iter().flatten().collect(),
            }),
        )
            .into_response()
    }
}

/// A JSON array of `events`.
fn array<'a>(events: impl Iterator<Item = &'a RawValue>) -> bytes::Bytes {
    let mut body = vec![b'['];
    for (n, event) in events.enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event.get().as_bytes());
    }
    body.push(b']');
    body.into()
}

/// Splits `events` (each with its place in the request) by their customers' partitions.
fn by_partition<E: std::ops::Deref<Target = RawValue>>(
    events: impl IntoIterator<Item = (usize, E)>,
    partitions: u16,
) -> BTreeMap<u16, Vec<(usize, E)>> {
    let mut shares: BTreeMap<u16, Vec<(usize, E)>> = BTreeMap::new();
    for (i, event) in events {
        let partition = serde_json::from_str::<Routed>(event.get())
            .map_or(0, |r| partition_of(&r.customer, partitions));
        shares.entry(partition).or_default().push((i, event));
    }
    shares
}

/// One share's events, each with its place in the request: borrowed from the request, or as
/// a partition handed them back.
type Placed<'a> = Vec<(usize, Cow<'a, RawValue>)>;

/// Posts each of `shares` (a partition's events) as `POST /v1/events` to its partition, at
/// once, into `gathered`; then, round after round, the events a partition passed on
/// (`merged_elsewhere`) to their customers' partitions, each round in the request's order.
async fn post_events<'a>(
    state: &ClusterState,
    held: &Held,
    mut shares: BTreeMap<u16, Placed<'a>>,
    gathered: &mut Gathered,
) {
    let partitions = state.directory.partitions();
    for _ in 0..MOST_ROUNDS {
        if shares.is_empty() {
            return;
        }
        let posted = futures::future::join_all(shares.iter().map(|(partition, events)| {
            let body = array(events.iter().map(|(_, e)| e.as_ref()));
            to_partition(
                state,
                *partition,
                derived(held, Method::POST, "/v1/events", body),
            )
        }))
        .await;
        let mut moved: Placed<'a> = Vec::new();
        for (response, events) in posted.into_iter().zip(shares.into_values()) {
            let places: Vec<usize> = events.iter().map(|(i, _)| *i).collect();
            match share::<EventsAccepted>(response, events.len()).await {
                Ok(Share::Taken(taken)) => gathered.taken(&places, taken),
                Ok(Share::Moved(again)) => {
                    moved.extend(places.into_iter().zip(again.into_iter().map(Cow::Owned)));
                }
                Ok(Share::Refused(refusal)) => {
                    gathered.refusal.get_or_insert(refusal);
                }
                Err(response) => {
                    gathered.refusal.get_or_insert(unread(response).await);
                }
            }
        }
        // In the request's order: each partition takes its share as the request ordered it.
        moved.sort_by_key(|(i, _)| *i);
        shares = by_partition(moved, partitions);
    }
    if !shares.is_empty() {
        let response = ApiError::new(
            StatusCode::LOOP_DETECTED,
            "merge_chain",
            format!(
                "an event's customer was passed on through more than {MOST_ROUNDS} partitions' \
                 merges; it was not stored (the request's other events may have been: sent \
                 again, they are answered as duplicates)"
            ),
        )
        .into_response();
        gathered.refusal.get_or_insert(unread(response).await);
    }
}

/// A response of this node's own (an error) as a [`Refusal`].
async fn unread(response: Response) -> Refusal {
    let (status, headers) = (response.status(), response.headers().clone());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    Refusal(status, headers, body)
}

/// `POST /v1/events`: the batch checked as one node checks it (a refusal names the event as
/// posted), then split by customer, each partition's share posted to it at once, and the
/// answers put back in the batch's order. A share refused (a partition overloaded, or its
/// owner changing) is answered as it came; the other shares are accepted, and the batch sent
/// again is answered as duplicates for those. A share passed on (`merged_elsewhere`) is
/// posted again where its events lead.
pub(super) async fn events(state: &ClusterState, held: Held) -> Response {
    if let Err(refused) = crate::api::events::parse_events(&held.body, 0) {
        return refused.into_response();
    }
    let partitions = state.directory.partitions();
    let values: Vec<&RawValue> = match held.body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(&held.body).unwrap_or_default(),
        _ => serde_json::from_slice(&held.body)
            .map(|v| vec![v])
            .unwrap_or_default(),
    };
    let borrowed = values.iter().map(|v| Cow::Borrowed(*v)).enumerate();
    let shares = by_partition(borrowed, partitions);
    let mut gathered = Gathered::new(values.len());
    if shares.len() <= 1 {
        // The request as it came, and its answer as it came unless it is passed on.
        let partition = shares.keys().next().copied().unwrap_or(0);
        let response = to_partition(state, partition, held.clone()).await;
        if response.status() != StatusCode::MISDIRECTED_REQUEST {
            return response;
        }
        match share::<EventsAccepted>(response, values.len()).await {
            Ok(Share::Moved(again)) => {
                let moved = again.into_iter().map(Cow::Owned).enumerate();
                post_events(state, &held, by_partition(moved, partitions), &mut gathered).await;
            }
            Ok(Share::Taken(taken)) => {
                gathered.taken(&(0..values.len()).collect::<Vec<_>>(), taken)
            }
            Ok(Share::Refused(refusal)) => return refusal.answer(),
            Err(response) => return response,
        }
    } else {
        post_events(state, &held, shares, &mut gathered).await;
    }
    gathered.answer()
}

/// A Segment-style call or batch (`/v1/track`, `/identify`, `/page`, `/screen`, `/alias`,
/// `/batch`): read as the route reads it (a refusal the same as one node's), then passed to
/// its customer's partition as it came; a batch of several partitions' customers is split,
/// each share posted inflated with the batch's shared fields, and the counts added up. A share
/// passed on (`merged_elsewhere`) comes back as the events its messages are, posted again
/// where they lead as `POST /v1/events`, which ingests them as the Segment route does.
pub(super) async fn segment(state: &ClusterState, held: Held) -> Response {
    let route = held.parts.uri.path().rsplit('/').next().unwrap_or_default();
    let routed =
        crate::api::segment::read_for_routing(route, &held.parts.headers, held.body.clone());
    let (parsed, inflated) = match routed {
        Some(Ok(read)) => read,
        Some(Err(refused)) => return refused.into_response(),
        None => return unsupported(&held),
    };
    let partitions = state.directory.partitions();
    let mut shares: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, event) in parsed.iter().enumerate() {
        shares
            .entry(partition_of(&event.customer, partitions))
            .or_default()
            .push(i);
    }
    let posted = if shares.len() <= 1 {
        let partition = shares.keys().next().copied().unwrap_or(0);
        let response = to_partition(state, partition, held.clone()).await;
        if response.status() != StatusCode::MISDIRECTED_REQUEST {
            return response;
        }
        vec![response]
    } else {
        let Ok(serde_json::Value::Object(mut shared)) = serde_json::from_slice(&inflated) else {
            return to_partition(state, 0, held).await;
        };
        let Some(serde_json::Value::Array(messages)) = shared.remove("batch") else {
            return to_partition(state, 0, held).await;
        };
        let path = held.parts.uri.path().to_owned();
        futures::future::join_all(shares.iter().map(|(partition, indexes)| {
            let mut share = shared.clone();
            share.insert(
                "batch".into(),
                indexes.iter().map(|i| messages[*i].clone()).collect(),
            );
            let body = serde_json::to_vec(&share).unwrap_or_default();
            to_partition(
                state,
                *partition,
                derived(&held, Method::POST, &path, body.into()),
            )
        }))
        .await
    };
    let mut gathered = Gathered::new(parsed.len());
    let mut moved: Placed<'static> = Vec::new();
    for (response, places) in posted.into_iter().zip(shares.into_values()) {
        match share::<SegmentAccepted>(response, places.len()).await {
            Ok(Share::Taken(taken)) => {
                gathered.accepted += taken.accepted;
                gathered.duplicates += taken.duplicates;
            }
            Ok(Share::Moved(again)) => {
                moved.extend(places.into_iter().zip(again.into_iter().map(Cow::Owned)));
            }
            Ok(Share::Refused(refusal)) => {
                gathered.refusal.get_or_insert(refusal);
            }
            Err(response) => return response,
        }
    }
    moved.sort_by_key(|(i, _)| *i);
    post_events(state, &held, by_partition(moved, partitions), &mut gathered).await;
    if let Some(refusal) = gathered.refusal {
        return refusal.answer();
    }
    axum::Json(SegmentAccepted {
        success: true,
        accepted: gathered.accepted,
        duplicates: gathered.duplicates,
    })
    .into_response()
}
