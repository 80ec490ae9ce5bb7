//! Requests over a cluster of several partitions (issue 16, `docs/SCALING.md` "Several
//! partitions, as built"): which partition answers a request, and the requests answered by
//! more than one.
//!
//! - A customer's requests go to the customer's partition ([`partition_of`]).
//! - `POST /v1/events` is split by customer: each partition's events go to it as one batch, at
//!   once, and the answers are put back together in the batch's order.
//! - Tenant-global requests (tenants, keys, components and journeys, channels, templates,
//!   policy, the inbox secret) go to partition 0, where that data is written; a write answered
//!   there is answered to the client only once every other partition's mirror has it
//!   ([`crate::cluster::mirror`]), so an event accepted after a journey's upload is answered
//!   sees the journey on every partition, as on one node.
//! - A journey's report adds up every partition's cells; the manual clock is moved on every
//!   partition to the same time and read as the earliest of them; a breaker reset goes to
//!   every partition.
//! - Segment-style calls go to their customer's partition (a batch split as events are);
//!   unsubscribe links and inbox tokens to the partition of the customer they name.
//! - Tenant-wide listings (tasks, dead letters, suppressions) are gathered from every partition,
//!   a task by id found where it is, dead letters requeued and webhooks taken on every
//!   partition ([`super::gather`]).
//! - A migration starts on every partition under partition 0's id, and its status adds up; so
//!   does a backtest, each partition replaying its own customers ([`super::backtests`]).
//! - The dashboard is partition 0's, which reads and acts on the rest through this front
//!   ([`super::across`]); a template's preview goes to the partition of the customer it names.
//! - An account (`GET /v1/accounts/{id}`) is its subject key's partition's, which keeps its
//!   traits, its members and its journeys' enrollments; a `group` call goes to its member's
//!   partition, which tells the account's (`store/forwards.rs`).
//! - An identity merge goes with its event to the known id's partition, which forwards its
//!   first step to the merged id's (`store/identity.rs`); ingest's splitting and passing on is
//!   [`super::ingest`]'s.
//!
//! With one partition every request is that partition's, as before.

use super::{gather, mirrors, to_partition, ClusterState, Held};
use crate::api::error::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The largest answer read back from a partition.
const MAX_ANSWER: usize = 64 << 20;

/// How a request is answered in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// By one partition.
    One(u16),
    /// A batch of events, split by customer.
    Events,
    /// A Segment-style call or batch: by its customers' partitions.
    Segment,
    /// By partition 0; a write waits for the other partitions' mirrors.
    Global { write: bool },
    /// The manual clock, read from every partition.
    ClockRead,
    /// The manual clock, moved on every partition.
    ClockAdvance,
    /// A journey's report, added up over every partition.
    Report,
    /// By every partition (the answer is partition 0's).
    Everywhere,
    /// A tenant-wide listing, gathered from every partition.
    Listing(gather::Listing),
    /// One record whose partition is not in the request (a task by id): each partition asked.
    Find,
    /// Every partition, the answer a success if any is.
    AnyOf,
    /// Dead letters requeued on every partition.
    Requeue,
    /// A provider's webhook, taken by every partition.
    Hook,
    /// A migration started on every partition under partition 0's id.
    Migrate,
    /// A migration's status, added up over every partition.
    Migration,
    /// A template's preview: by the partition of the customer it names, else partition 0.
    Preview,
    /// A backtest started on every partition under partition 0's id.
    Backtest,
    /// A backtest read from every partition.
    BacktestRead,
    /// A backtest cancelled on every partition.
    BacktestCancel,
    /// Not answered across partitions yet.
    Unsupported,
}

/// The partition of `customer` in a cluster of `partitions`: by the customer's id alone (not
/// the tenant, which the front does not know before a partition authenticates the request).
pub fn partition_of(customer: &str, partitions: u16) -> u16 {
    crate::cluster::partitions::partition_of("", customer, partitions)
}

/// How the request `method path` (with `headers`) is answered in a cluster of `partitions`.
pub(super) fn target(
    method: &Method,
    path: &str,
    headers: &axum::http::HeaderMap,
    partitions: u16,
) -> Target {
    if partitions <= 1 {
        return Target::One(0);
    }
    let write = *method != Method::GET && *method != Method::HEAD;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let of = |customer: Option<String>| {
        Target::One(customer.map_or(0, |c| partition_of(&c, partitions)))
    };
    match parts.as_slice() {
        ["v1", "events"] => Target::Events,
        ["v1", "track" | "identify" | "page" | "screen" | "group" | "alias" | "batch"] => {
            Target::Segment
        }
        // An account is its subject key's partition's: its traits, members and journeys.
        ["v1", "accounts", id] => match percent_encoding::percent_decode_str(id).decode_utf8() {
            Ok(id) => Target::One(partition_of(
                &crate::engine::accounts::subject(&id),
                partitions,
            )),
            Err(_) => Target::One(0),
        },
        // The customer an unsubscribe link or an inbox token names (a forged one is refused
        // by the partition it names, as by one node).
        ["u", token] => of(crate::signed::read_unsubscribe_token(token)
            .ok()
            .map(|c| c.customer)),
        ["v1", "inbox"] | ["v1", "inbox", _, _] => of(crate::api::auth::bearer(headers)
            .and_then(|t| crate::signed::read_inbox_token(t).ok())
            .map(|c| c.customer)),
        ["v1", "customers", id, ..] => match percent_encoding::percent_decode_str(id).decode_utf8()
        {
            Ok(id) => Target::One(partition_of(&id, partitions)),
            Err(_) => Target::One(0),
        },
        ["v1", "admin", "cluster", "mirrored", partition, _] => {
            Target::One(partition.parse().unwrap_or(0))
        }
        ["v1", "admin", "clock"] => Target::ClockRead,
        ["v1", "admin", "clock", "advance"] => Target::ClockAdvance,
        ["v1", "journeys", _, "report"] => Target::Report,
        ["v1", "journeys", _, "breaker"] if write => Target::Everywhere,
        // A dry run writes nothing: nothing to wait for.
        ["v1", "journeys", _, "decide" | "breaker"] => Target::Global { write: false },
        ["v1", "templates", _, "preview"] => Target::Preview,
        // The dashboard: partition 0's, which reads the rest across the partitions.
        ["ui", ..] => Target::One(0),
        ["v1", "admin", "tenants", ..]
        | ["v1", "channels", ..]
        | ["v1", "journeys"]
        | ["v1", "journeys", _]
        | ["v1", "journeys", _, "promote" | "rollback"]
        | ["v1", "keys", ..]
        | ["v1", "policy"]
        | ["v1", "templates", ..]
        | ["v1", "inbox", "secret"] => Target::Global { write },
        ["v1", "tasks"] if !write => Target::Listing(gather::Listing::Tasks),
        ["v1", "tasks", _] | ["v1", "tasks", _, "claim" | "resolve"] => Target::Find,
        ["v1", "dead-letters"] if !write => Target::Listing(gather::Listing::DeadLetters),
        ["v1", "dead-letters", "retry"] => Target::Requeue,
        ["v1", "suppressions"] if !write => Target::Listing(gather::Listing::Suppressions),
        ["v1", "suppressions", _, _] => Target::AnyOf,
        ["v1", "hooks", _, _] => Target::Hook,
        ["v1", "journeys", _, "migrate"] => Target::Migrate,
        ["v1", "journeys", _, "migrations", _] => Target::Migration,
        ["v1", "journeys", _, "backtests"] if write => Target::Backtest,
        ["v1", "journeys", _, "backtests", _] if !write => Target::BacktestRead,
        ["v1", "journeys", _, "backtests", _, "cancel"] if write => Target::BacktestCancel,
        ["healthz"] | ["openapi.json"] => Target::One(0),
        _ => Target::Unsupported,
    }
}

/// Answers a request that is not simply one partition's.
pub(super) async fn answer(state: &ClusterState, target: Target, held: Held) -> Response {
    match target {
        Target::One(partition) => to_partition(state, partition, held).await,
        Target::Events => super::ingest::events(state, held).await,
        Target::Segment => super::ingest::segment(state, held).await,
        Target::Global { write } => {
            let response = to_partition(state, 0, held).await;
            if write && response.status().is_success() {
                mirrors::mirrored_everywhere(state).await;
            }
            response
        }
        Target::ClockRead => match gather::clocks(state, &held).await {
            Ok(clocks) => match clocks.into_iter().min_by_key(|c| c.now) {
                Some(earliest) => axum::Json(earliest).into_response(),
                None => unsupported(&held),
            },
            Err(response) => response,
        },
        Target::ClockAdvance => gather::advance(state, held).await,
        Target::Report => gather::report(state, held).await,
        Target::Everywhere => {
            let mut first = None;
            for partition in 0..state.directory.partitions() {
                let response = to_partition(state, partition, held.clone()).await;
                if !response.status().is_success() {
                    return response;
                }
                first.get_or_insert(response);
            }
            first.unwrap_or_else(|| unsupported(&held))
        }
        Target::Listing(kind) => gather::listing(state, held, kind).await,
        Target::Find => gather::find(state, held).await,
        Target::AnyOf => gather::any_of(state, held).await,
        Target::Requeue => gather::requeue(state, held).await,
        Target::Hook => gather::hook(state, held).await,
        Target::Migrate => gather::migrate(state, held).await,
        Target::Migration => gather::migration(state, held).await,
        Target::Preview => {
            // Templates are everywhere (mirrored); a stored customer is in one partition.
            #[derive(Deserialize)]
            struct Named {
                customer: Option<String>,
            }
            let partitions = state.directory.partitions();
            let partition = serde_json::from_slice::<Named>(&held.body)
                .ok()
                .and_then(|named| named.customer)
                .map_or(0, |customer| partition_of(&customer, partitions));
            to_partition(state, partition, held).await
        }
        Target::Backtest => super::backtests::start(state, held).await,
        Target::BacktestRead => super::backtests::get(state, held).await,
        Target::BacktestCancel => super::backtests::cancel(state, held).await,
        Target::Unsupported => unsupported(&held),
    }
}

pub(super) fn unsupported(held: &Held) -> Response {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_across_partitions",
        format!(
            "{} {} is not answered in a cluster of several partitions yet (docs/SCALING.md, \
             \"Several partitions, as built\"); a cluster of one partition answers it",
            held.parts.method,
            held.parts.uri.path()
        ),
    )
    .into_response()
}

/// `held` with another method, path and body (the client's headers kept: its authority).
pub(super) fn derived(held: &Held, method: Method, path: &str, body: bytes::Bytes) -> Held {
    let mut parts = held.parts.clone();
    parts.method = method;
    parts.uri = path.parse().unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    if !body.is_empty() {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Held { parts, body }
}

/// A response's status and body.
pub(super) async fn read(response: Response) -> Result<(StatusCode, bytes::Bytes), Response> {
    let status = response.status();
    match axum::body::to_bytes(response.into_body(), MAX_ANSWER).await {
        Ok(body) => Ok((status, body)),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "partition_answer",
            format!("a partition's answer could not be read: {e}"),
        )
        .into_response()),
    }
}

/// Rebuilds a response from its status and body (a partition's error, passed on as it came).
pub(super) fn rebuilt(status: StatusCode, body: bytes::Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from(body),
    )
        .into_response()
}

/// Asks every partition `method path` with `body`, at once; answers each one's decoded answer
/// in partition order, or the first partition's failure as it came.
pub(super) async fn everywhere<T: serde::de::DeserializeOwned>(
    state: &ClusterState,
    held: &Held,
    request: impl Fn(u16) -> Held,
) -> Result<Vec<T>, Response> {
    let answers = futures::future::join_all(
        (0..state.directory.partitions()).map(|p| to_partition(state, p, request(p))),
    )
    .await;
    let mut decoded = Vec::with_capacity(answers.len());
    for answer in answers {
        let (status, body) = read(answer).await?;
        if !status.is_success() {
            return Err(rebuilt(status, body));
        }
        decoded.push(serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "partition_answer",
                format!("a partition's answer to {}: {e}", held.parts.uri.path()),
            )
            .into_response()
        })?);
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_answers_everything_and_several_split_by_kind() {
        let get = Method::GET;
        let h = axum::http::HeaderMap::new();
        assert_eq!(target(&get, "/v1/tasks", &h, 1), Target::One(0));
        assert_eq!(target(&Method::POST, "/v1/events", &h, 4), Target::Events);
        let customer = target(&get, "/v1/customers/c%2000042/inbox", &h, 4);
        assert_eq!(customer, Target::One(partition_of("c 00042", 4)));
        assert_eq!(
            target(&Method::PUT, "/v1/journeys/renewal", &h, 4),
            Target::Global { write: true }
        );
        assert_eq!(
            target(&get, "/v1/journeys", &h, 4),
            Target::Global { write: false }
        );
        assert_eq!(
            target(&get, "/v1/journeys/renewal/report", &h, 4),
            Target::Report
        );
        assert_eq!(
            target(&Method::POST, "/v1/templates/welcome/preview", &h, 4),
            Target::Preview
        );
        assert_eq!(target(&get, "/ui/journeys/renewal", &h, 4), Target::One(0));
        assert_eq!(target(&get, "/v1/admin/clock", &h, 4), Target::ClockRead);
        assert_eq!(
            target(&Method::POST, "/v1/admin/clock/advance", &h, 4),
            Target::ClockAdvance
        );
        assert_eq!(
            target(&get, "/v1/tasks", &h, 4),
            Target::Listing(gather::Listing::Tasks)
        );
        assert_eq!(
            target(&Method::POST, "/v1/journeys/renewal/backtests", &h, 4),
            Target::Backtest
        );
        assert_eq!(
            target(
                &get,
                "/v1/journeys/renewal/backtests/bt_0000000000000001",
                &h,
                4
            ),
            Target::BacktestRead
        );
        assert_eq!(
            target(
                &Method::POST,
                "/v1/journeys/renewal/backtests/bt_0000000000000001/cancel",
                &h,
                4
            ),
            Target::BacktestCancel
        );
        assert_eq!(
            target(&get, "/v1/admin/cluster/mirrored/3/17", &h, 4),
            Target::One(3)
        );
        assert_eq!(target(&Method::POST, "/v1/batch", &h, 4), Target::Segment);
        assert_eq!(target(&Method::POST, "/v1/group", &h, 4), Target::Segment);
        assert_eq!(
            target(&get, "/v1/accounts/acme", &h, 4),
            Target::One(partition_of("account:acme", 4))
        );
        // An unsubscribe link and an inbox token: their customer's partition.
        let claims = crate::signed::UnsubscribeClaims {
            tenant: "t".into(),
            customer: "c00042".into(),
            scope: crate::signed::Scope::Channel("email".into()),
            message: "m".into(),
        };
        let token = crate::signed::mint_unsubscribe_token("secret", &claims);
        let link = format!("/u/{token}");
        assert_eq!(
            target(&get, &link, &h, 4),
            Target::One(partition_of("c00042", 4))
        );
        let inbox = crate::signed::mint_inbox_token(
            "secret",
            &crate::signed::InboxClaims {
                tenant: "t".into(),
                customer: "c00043".into(),
                expires_at: i64::MAX,
            },
        );
        let mut bearer = axum::http::HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {inbox}")).unwrap(),
        );
        assert_eq!(
            target(&get, "/v1/inbox", &bearer, 4),
            Target::One(partition_of("c00043", 4))
        );
    }
}
