//! [`Sink`]: an in-process loopback HTTP server that records every request the webhook channel
//! makes and answers 200, or whatever a test scripts; [`Received`] is one such request. It
//! counts the connections it accepts, and can hold back its answers to one customer's
//! deliveries until told to release them.

use crate::loopback::LoopbackServer;
use crate::wait::patience;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or a JSON string of the raw text if it is not JSON.
    pub body: Value,
    /// The status the sink answered with.
    pub answered: u16,
    /// When the request arrived.
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }

    /// The webhook body's template.
    pub fn template(&self) -> Option<&str> {
        self.body["template"].as_str()
    }

    /// The webhook body's customer id.
    pub fn customer(&self) -> Option<&str> {
        self.body["customer"]["id"].as_str()
    }

    /// A webhook delivery of `template` to `customer`.
    pub fn is(&self, template: &str, customer: &str) -> bool {
        self.template() == Some(template) && self.customer() == Some(customer)
    }

    /// The channel an [`Example`] delivered it through: the first segment of the path.
    pub fn channel(&self) -> &str {
        self.path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
    }

    /// The webhook body's payload.
    pub fn payload(&self) -> &Value {
        &self.body["payload"]
    }
}

/// How many of `received` are deliveries of `template` to `customer`.
pub fn count(received: &[Received], template: &str, customer: &str) -> usize {
    received.iter().filter(|r| r.is(template, customer)).count()
}

struct SinkState {
    received: Mutex<Vec<Received>>,
    script: Mutex<Script>,
    /// Count requests, answer 200, record nothing ([`Sink::quiet`]).
    quiet: bool,
    count: std::sync::atomic::AtomicU64,
    /// TCP connections accepted.
    connections: std::sync::atomic::AtomicU64,
    /// Customers whose deliveries are recorded but not answered until `released` is true.
    held: Mutex<Vec<String>>,
    released: tokio::sync::watch::Sender<bool>,
}

struct Script {
    /// Scripted answers: a status, and a `Retry-After` header's value when set.
    next: VecDeque<(StatusCode, Option<String>)>,
    default: StatusCode,
}

/// A loopback HTTP server recording every request. It runs on its own thread and runtime, so
/// it keeps answering whatever the test's own runtime is doing.
pub struct Sink {
    server: LoopbackServer,
    state: Arc<SinkState>,
}

impl Sink {
    pub fn start() -> Sink {
        Sink::start_with(false)
    }

    /// A sink that answers 200 to everything and only counts ([`Sink::count`]): for loads of
    /// a million deliveries, which a recording sink would hold in memory.
    pub fn quiet() -> Sink {
        Sink::start_with(true)
    }

    fn start_with(quiet: bool) -> Sink {
        let state = Arc::new(SinkState {
            received: Mutex::new(Vec::new()),
            script: Mutex::new(Script {
                next: VecDeque::new(),
                default: StatusCode::OK,
            }),
            quiet,
            count: Default::default(),
            connections: Default::default(),
            held: Mutex::new(Vec::new()),
            released: tokio::sync::watch::Sender::new(false),
        });
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let accepted = state.clone();
        let server = LoopbackServer::start_counting("sink", app, move || {
            accepted
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        Sink { server, state }
    }

    /// `http://127.0.0.1:PORT` (append any path).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `127.0.0.1:PORT`, for a channel's `allowed_hosts`.
    pub fn authority(&self) -> String {
        self.server.authority()
    }

    /// How many requests arrived so far (recorded or not).
    pub fn count(&self) -> u64 {
        self.state.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many TCP connections the sink has accepted so far.
    pub fn connections(&self) -> u64 {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records deliveries to `customer` as they arrive but answers none of them until
    /// [`release`](Self::release): a provider that is slow for one message.
    pub fn hold(&self, customer: &str) {
        self.state.released.send_replace(false);
        self.state.held.lock().unwrap().push(customer.to_string());
    }

    /// Answers every held delivery, and holds nothing from now on.
    pub fn release(&self) {
        self.state.held.lock().unwrap().clear();
        self.state.released.send_replace(true);
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// What was received after the first `start` requests, in arrival order: for watching
    /// arrivals without copying them all each time.
    pub fn requests_from(&self, start: usize) -> Vec<Received> {
        let received = self.state.received.lock().unwrap();
        received.get(start..).unwrap_or_default().to_vec()
    }

    /// Answers the next `n` requests with `status` (then the default again).
    pub fn respond_next(&self, n: usize, status: StatusCode) {
        let mut script = self.state.script.lock().unwrap();
        script.next.extend(std::iter::repeat_n((status, None), n));
    }

    /// Answers the next request with `status` and a `Retry-After: {retry_after}` header.
    pub fn respond_next_retry_after(&self, status: StatusCode, retry_after: &str) {
        let mut script = self.state.script.lock().unwrap();
        script
            .next
            .push_back((status, Some(retry_after.to_string())));
    }

    /// Answers every unscripted request with `status` (200 unless changed).
    pub fn respond_by_default(&self, status: StatusCode) {
        self.state.script.lock().unwrap().default = status;
    }

    /// Waits until `holds` is true of everything received; returns what was received then.
    pub async fn wait_for(&self, what: &str, holds: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let timeout = patience();
        let start = Instant::now();
        loop {
            let received = self.requests();
            if holds(&received) {
                return received;
            }
            if start.elapsed() > timeout {
                panic!(
                    "waited {timeout:?} for the sink to receive {what}; it received:\n{}",
                    describe(&received)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the first webhook delivery of `template` to `customer`.
    pub async fn wait_for_delivery(&self, template: &str, customer: &str) -> Received {
        let received = self
            .wait_for(&format!("`{template}` for {customer}"), |r| {
                count(r, template, customer) > 0
            })
            .await;
        received
            .into_iter()
            .find(|r| r.is(template, customer))
            .expect("just seen")
    }
}

async fn record(
    axum::extract::State(state): axum::extract::State<Arc<SinkState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::http::HeaderMap, axum::Json<Value>) {
    let at = Instant::now();
    let n = state
        .count
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    if state.quiet {
        return (
            StatusCode::OK,
            axum::http::HeaderMap::new(),
            axum::Json(json!({ "id": format!("sink-{n}") })),
        );
    }
    let (status, retry_after) = {
        let mut script = state.script.lock().unwrap();
        let default = script.default;
        script.next.pop_front().unwrap_or((default, None))
    };
    let mut answer_headers = axum::http::HeaderMap::new();
    if let Some(value) = retry_after.and_then(|v| v.parse().ok()) {
        answer_headers.insert(axum::http::header::RETRY_AFTER, value);
    }
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let customer = body["customer"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            method: method.to_string(),
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
            answered: status.as_u16(),
            at,
        });
        format!("sink-{}", received.len())
    };
    let held = state.held.lock().unwrap().contains(&customer);
    if held {
        let mut released = state.released.subscribe();
        let _ = released.wait_for(|released| *released).await;
    }
    (status, answer_headers, axum::Json(json!({ "id": id })))
}

/// One line per request, for failure messages and the demo.
pub fn describe(received: &[Received]) -> String {
    if received.is_empty() {
        return "  (nothing)".to_string();
    }
    let mut out = String::new();
    for (i, r) in received.iter().enumerate() {
        let _ = writeln!(
            out,
            "  #{i} {} {} -> {} template={} customer={} idempotency-key={} body={}",
            r.method,
            r.path,
            r.answered,
            r.template().unwrap_or("-"),
            r.customer().unwrap_or("-"),
            r.idempotency_key().unwrap_or("-"),
            r.body
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::http_client;

    #[tokio::test]
    async fn sink_records_requests_and_follows_its_script() {
        let sink = Sink::start();
        sink.respond_next(1, StatusCode::SERVICE_UNAVAILABLE);
        let http = http_client();
        let post = || {
            http.post(format!("{}/webhook", sink.url()))
                .header("Idempotency-Key", "k1")
                .json(&json!({ "template": "welcome", "customer": { "id": "ada" } }))
                .send()
        };
        assert_eq!(
            post().await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(post().await.unwrap().status(), StatusCode::OK);

        let received = sink.wait_for("two requests", |r| r.len() == 2).await;
        assert_eq!(
            received.iter().map(|r| r.answered).collect::<Vec<_>>(),
            [503, 200]
        );
        assert!(received[1].is("welcome", "ada"));
        assert_eq!(received[1].idempotency_key(), Some("k1"));
        assert_eq!(received[1].path, "/webhook");
        assert_eq!(count(&received, "welcome", "ada"), 2);
    }
}
