//! [`Api`]: the tests' client of the HTTP API — a thin wrapper over [`waymark_client::Client`]
//! that panics with the route and the answer instead of returning `Result` (tests read better
//! without `?`), plus [`Api::request`] for the raw status and JSON body that error tests look
//! at, and the small builders of request bodies tests use ([`event`], [`identify`]).

use crate::wait::patience;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use waymark_api::backtests::{Backtest, BacktestRequest, BacktestStatus};
use waymark_api::channels::{Channel, ChannelRegistration};
use waymark_api::customers::{Customer, Enrollment};
use waymark_api::events::{EventInput, EventsAccepted};
use waymark_api::journeys::{DecideRequest, Decided, Migrate, MigrationStatus, UploadedJourney};
use waymark_api::tasks::{ResolveTask, Task, TaskQuery};
use waymark_api::tenants::CreatedTenant;
use waymark_api::Object;
use waymark_client::{Body, Client, ClientError};

/// A client of one server process: admin routes with the admin token, tenant routes with the
/// key given to [`Api::with_key`] (or [`crate::Server::as_tenant`]).
#[derive(Debug, Clone)]
pub struct Api {
    /// Acting with the admin token.
    admin: Client,
    /// Acting with the tenant's key, once given.
    tenant: Option<Client>,
}

impl Api {
    /// A client of the server at `base_url` over `http`, acting with `admin_token`.
    pub fn new(http: reqwest::Client, base_url: &str, admin_token: &str) -> Api {
        Api {
            admin: Client::with_http(http, base_url, Some(admin_token)),
            tenant: None,
        }
    }

    /// The same server, acting as the tenant whose API key is `key`.
    pub fn with_key(&self, key: &str) -> Api {
        Api {
            tenant: Some(self.admin.with_token(Some(key))),
            ..self.clone()
        }
    }

    /// The typed client acting with the admin token, for calls that want the `Result`.
    pub fn admin_client(&self) -> &Client {
        &self.admin
    }

    /// The typed client acting as the tenant, for calls that want the `Result`.
    pub fn tenant_client(&self) -> &Client {
        self.tenant
            .as_ref()
            .expect("a tenant route needs a tenant client: Server::as_tenant")
    }

    /// Any request, with `Authorization: Bearer <key>` if a key is given; the status and the
    /// body as JSON (a body that is not JSON comes back as a JSON string).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        self.admin
            .with_token(key)
            .request(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET /healthz` answers 200.
    pub async fn healthy(&self) -> bool {
        self.admin.health().await.is_ok()
    }

    /// `POST /v1/admin/tenants`; panics unless it answers 201.
    pub async fn create_tenant(&self, name: &str) -> CreatedTenant {
        ok(self.admin.create_tenant(name).await)
    }

    /// The server's now (ms).
    pub async fn clock_now(&self) -> i64 {
        ok(self.admin.clock().await).now
    }

    /// Moves the manual clock forward; returns the new now.
    pub async fn advance_clock(&self, by_ms: i64) -> i64 {
        ok(self.admin.advance_clock(by_ms).await).now
    }

    /// `PUT /v1/journeys/{name}`; panics unless it answers 201.
    pub async fn upload_journey(&self, name: &str, component: Vec<u8>) -> UploadedJourney {
        ok(self.tenant_client().upload_journey(name, component).await)
    }

    /// `PUT /v1/channels/{name}`; panics unless it answers 201. `settings` and `secrets` are
    /// JSON objects.
    pub async fn register_channel(
        &self,
        name: &str,
        component: &[u8],
        settings: Value,
        secrets: Value,
        allowed_hosts: &[String],
    ) -> Channel {
        let registration = ChannelRegistration {
            component: waymark_client::component_base64(component),
            settings: object(settings, "settings"),
            secrets: object(secrets, "secrets"),
            allowed_hosts: allowed_hosts.to_vec(),
            rate: None,
        };
        ok(self
            .tenant_client()
            .register_channel(name, &registration)
            .await)
    }

    // Issue 11, crm slice: a registration with a send rate.
    /// Registers `component` as channel `name` as [`Api::register_channel`] does, with the send
    /// rate `rate`; panics unless it is accepted.
    pub async fn register_paced_channel(
        &self,
        name: &str,
        component: &[u8],
        config: (Value, Value),
        allowed_hosts: &[String],
        rate: waymark_api::channels::SendRate,
    ) -> Channel {
        let (settings, secrets) = config;
        let registration = ChannelRegistration {
            component: waymark_client::component_base64(component),
            settings: object(settings, "settings"),
            secrets: object(secrets, "secrets"),
            allowed_hosts: allowed_hosts.to_vec(),
            rate: Some(rate),
        };
        ok(self
            .tenant_client()
            .register_channel(name, &registration)
            .await)
    }

    /// Posts a batch (events as [`event`] builds them); panics unless it is accepted (202).
    pub async fn post_events(&self, events: &[Value]) -> EventsAccepted {
        let events: Vec<EventInput> = events
            .iter()
            .map(|e| {
                serde_json::from_value(e.clone())
                    .unwrap_or_else(|err| panic!("not an event ({err}): {e}"))
            })
            .collect();
        ok(self.tenant_client().post_events(&events).await)
    }

    /// `POST /v1/journeys/{journey}/migrate` of every enrollment on `from` to `to`; panics
    /// unless the migration starts.
    pub async fn migrate_all(&self, journey: &str, from: u32, to: u32) -> MigrationStatus {
        let customers = None;
        let migrate = Migrate {
            from,
            to,
            customers,
        };
        let started = self
            .tenant_client()
            .migrate_journey(journey, &migrate)
            .await;
        started.expect("migration started")
    }

    /// Waits until backtest `id` of `journey` ends (done, failed or cancelled) and answers it.
    pub async fn finished_backtest(&self, journey: &str, id: &str) -> Backtest {
        crate::wait::wait_for_some("the backtest to finish", || async {
            let backtest = self
                .tenant_client()
                .backtest(journey, id)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            match backtest.status {
                BacktestStatus::Queued | BacktestStatus::Running => None,
                _ => Some(backtest),
            }
        })
        .await
    }

    /// Starts `request` as a backtest of `journey` and waits until it ends.
    pub async fn backtested(&self, journey: &str, request: &BacktestRequest) -> Backtest {
        let started = self
            .tenant_client()
            .start_backtest(journey, request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.finished_backtest(journey, &started.id).await
    }

    /// The customer's profile, enrollments and messages; `None` on 404. A 503 (a cluster
    /// whose partition changes owners answers so for a moment) is asked again, within
    /// [`crate::patience`].
    pub async fn customer(&self, id: &str) -> Option<Customer> {
        let deadline = std::time::Instant::now() + crate::patience();
        loop {
            match self.tenant_client().customer(id).await {
                Ok(customer) => return Some(customer),
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => return None,
                Err(e)
                    if e.status() == Some(StatusCode::SERVICE_UNAVAILABLE)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// `POST /v1/journeys/{journey}/decide` with `body` (`{"version"?, "context", "stats"?}`);
    /// panics unless it answers 200.
    pub async fn dry_run_decide(&self, journey: &str, body: Value) -> Decided {
        let request: DecideRequest = serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("not a dry-run request ({e}): {body}"));
        ok(self.tenant_client().decide(journey, &request).await)
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        ok(self.admin.metrics().await)
    }

    /// `GET /v1/journeys/{journey}/report` as JSON (`{"name", "latest_version", "report":
    /// {"overall", "by_version", "by_arm"}}`), for indexing in assertions; panics unless it
    /// answers 200. The typed answer is [`Client::report`].
    pub async fn report(&self, journey: &str) -> Value {
        let report = ok(self.tenant_client().report(journey).await);
        serde_json::to_value(report).expect("a report is JSON")
    }

    /// `GET /v1/tasks`: the tasks, most urgent first.
    pub async fn tasks(&self, query: TaskQuery) -> Vec<Task> {
        ok(self.tenant_client().tasks(&query).await).tasks
    }

    /// `POST /v1/tasks/{id}/claim`; panics unless it answers 200. Returns the task.
    pub async fn claim_task(&self, id: &str, assignee: &str) -> Task {
        ok(self.tenant_client().claim_task(id, assignee).await)
    }

    /// `POST /v1/tasks/{id}/resolve`; panics unless it answers 200. Returns the task.
    pub async fn resolve_task(&self, id: &str, resolution: &str, properties: Value) -> Task {
        let resolve = ResolveTask {
            resolution: resolution.into(),
            properties: object(properties, "properties"),
        };
        ok(self.tenant_client().resolve_task(id, &resolve).await)
    }

    /// Polls the customer until their enrollment in `journey` satisfies `holds`; on timeout
    /// panics showing the last view of the customer.
    pub async fn wait_for_enrollment(
        &self,
        customer: &str,
        journey: &str,
        what: &str,
        holds: impl Fn(&Enrollment) -> bool,
    ) -> Enrollment {
        let timeout = patience();
        let start = Instant::now();
        loop {
            let seen = self.customer(customer).await;
            if let Some(enrollment) = seen.as_ref().and_then(|c| c.enrollment(journey)) {
                if holds(enrollment) {
                    return enrollment.clone();
                }
            }
            if start.elapsed() > timeout {
                panic!(
                    "waited {timeout:?} for {customer}'s {journey} enrollment: {what}; last seen: {seen:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The answer, or a panic naming the route and what it answered.
#[track_caller]
fn ok<T>(answer: Result<T, ClientError>) -> T {
    answer.unwrap_or_else(|e| panic!("{e}"))
}

/// A JSON object given as a `Value`.
#[track_caller]
fn object(value: Value, what: &str) -> Object {
    match value {
        Value::Object(map) => map,
        other => panic!("{what} must be a JSON object, not {other}"),
    }
}

/// Asserts an API error: the status, and a body `{"error": {"code": <code>, "message": <text>}}`.
#[track_caller]
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got, body) = answer;
    assert_eq!(
        *got, status,
        "expected {status} `{code}`, got {got}: {body}"
    );
    assert_eq!(body["error"]["code"], code, "error code, in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message must be non-empty text: {body}"
    );
}

/// The sum of every sample of `metric` in Prometheus `text` whose labels include `label="value"`
/// (0 when there is none): `metric_sum(&text, "waymark_trigger_failures_total", ("reason",
/// "deadline"))`.
pub fn metric_sum(text: &str, metric: &str, (label, value): (&str, &str)) -> f64 {
    let wanted = format!("{label}=\"{value}\"");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, sample) = line.rsplit_once(' ')?;
            let labels = series.strip_prefix(metric)?.strip_prefix('{')?;
            let labels = labels.strip_suffix('}')?;
            labels
                .split(',')
                .any(|l| l == wanted)
                .then(|| sample.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The sum of every sample of each of `metrics` (names without labels) in Prometheus `text`.
pub fn metrics_total(text: &str, metrics: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let (series, sample) = line.rsplit_once(' ')?;
            let name = series.split_once('{').map_or(series, |(name, _)| name);
            metrics
                .contains(&name)
                .then(|| sample.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The work a server (or a cluster node's partitions) holds that nothing has taken up yet, as
/// its `/metrics` text shows it: shards with queued triggers, timers and messages due, and
/// forwards not yet taken in by their partitions. Zero, with counters that stopped moving, is
/// a settled server; counters that stopped moving alone are not (a worker compiling a
/// component for its first trigger moves none for seconds on a loaded machine).
pub fn waiting_work(text: &str) -> u64 {
    metrics_total(
        text,
        &[
            "waymark_shards_with_triggers",
            "waymark_due",
            "waymark_forwards_waiting",
        ],
    ) as u64
}

/// An event as a tenant posts it: no properties, stamped by the server's clock.
pub fn event(id: &str, customer: &str, name: &str) -> Value {
    json!({ "id": id, "customer": customer, "name": name })
}

/// An event with properties, stamped by the server's clock.
pub fn event_with(id: &str, customer: &str, name: &str, properties: Value) -> Value {
    json!({ "id": id, "customer": customer, "name": name, "properties": properties })
}

/// An `identify` event setting `traits` as the customer's attributes.
pub fn identify(id: &str, customer: &str, traits: Value) -> Value {
    event_with(id, customer, "identify", json!({ "traits": traits }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_work_adds_the_backlog_gauges_and_nothing_else() {
        let text = "\
# HELP waymark_due Work due.
waymark_due{kind=\"timers\",partition=\"1\"} 2
waymark_due{kind=\"messages\"} 1
waymark_due_later 40
waymark_shards_with_triggers 3
waymark_forwards_waiting{partition=\"2\"} 4
waymark_triggers_total{kind=\"event\"} 9
";
        assert_eq!(waiting_work(text), 10);
        assert_eq!(waiting_work("waymark_triggers_total 9\n"), 0);
    }

    #[test]
    fn metric_sum_adds_the_samples_with_the_label_and_ignores_the_rest() {
        let text = "\
# HELP waymark_trigger_failures Triggers that failed, by reason.
# TYPE waymark_trigger_failures counter
waymark_trigger_failures_total{reason=\"deadline\"} 2
waymark_trigger_failures_total{tenant=\"t1\",reason=\"deadline\"} 1
waymark_trigger_failures_total{reason=\"trap\"} 5
waymark_trigger_failures_total_extra{reason=\"deadline\"} 7
waymark_triggers_total{kind=\"event\"} 9
";
        let sum = |reason| metric_sum(text, "waymark_trigger_failures_total", ("reason", reason));
        assert_eq!(sum("deadline"), 3.0);
        assert_eq!(sum("trap"), 5.0);
        assert_eq!(sum("memory"), 0.0);
    }
}
