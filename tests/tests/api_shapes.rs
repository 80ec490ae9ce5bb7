//! Every route's answer is exactly its documented DTO: each response (success, and one per
//! distinct error shape) is deserialized into its `waymark-api` type, serialized back, and the
//! two JSON values compared — so a field the DTO does not know, one it invents, or a spelling
//! it gets wrong fails, naming the route and the difference. The JSON response examples of
//! `docs/API.md` are held to the same check (each is marked `<!-- dto: module::Type -->`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use waymark_api::channels::{Channel, ChannelList};
use waymark_api::clock::{Clock, ClockAdvanced};
use waymark_api::customers::CustomerEvents;
use waymark_api::dead_letters::{DeadLetters, Requeued};
use waymark_api::errors::ErrorBody;
use waymark_api::events::EventsAccepted;
use waymark_api::health::Health;
use waymark_api::journeys::{Decided, JourneyList, JourneyVersions, UploadedJourney};
use waymark_api::limits::TenantLimits;
use waymark_api::policy::SendingPolicy;
use waymark_api::reports::JourneyReport;
use waymark_api::tasks::{Task, TaskList};
use waymark_api::tenants::CreatedTenant;
use waymark_tests::*;

/// The differences between `raw` (what the server sent) and `dto` (the same through the DTO),
/// one line per JSON path.
fn differences(path: &str, raw: &Value, dto: &Value, out: &mut Vec<String>) {
    match (raw, dto) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let at = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => differences(&at, value, other, out),
                    None => out.push(format!("{at}: sent, unknown to the DTO ({value})")),
                }
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    out.push(format!(
                        "{path}.{key}: not sent, invented by the DTO ({value})"
                    ));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: sent {a}, the DTO makes it {b}")),
    }
}

/// Whether `raw` is exactly the JSON of a `T`; the differences if not.
fn round_trip<T: DeserializeOwned + Serialize>(raw: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(raw.clone()).map_err(|e| {
        format!(
            "does not deserialize into {}: {e}",
            std::any::type_name::<T>()
        )
    })?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    differences("$", raw, &back, &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "differs from {}:\n      {}",
            std::any::type_name::<T>(),
            out.join("\n      ")
        ))
    }
}

/// Collects every mismatch, so one run names them all.
#[derive(Default)]
struct Shapes {
    checked: Vec<String>,
    failures: Vec<String>,
}

impl Shapes {
    /// Checks that `route` answered `status` with exactly a `T`; returns the body.
    fn check<T: DeserializeOwned + Serialize>(
        &mut self,
        route: &str,
        answer: (StatusCode, Value),
        status: StatusCode,
    ) -> Value {
        let (got, body) = answer;
        self.checked.push(format!("{route} {got}"));
        if got != status {
            self.failures.push(format!(
                "{route}: answered {got}, expected {status}: {body}"
            ));
        } else if let Err(difference) = round_trip::<T>(&body) {
            self.failures
                .push(format!("{route} ({got}) {difference}\n    body: {body}"));
        }
        body
    }

    fn assert_none_failed(&self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} responses are not exactly their DTO:\n  {}",
            self.failures.len(),
            self.checked.len(),
            self.failures.join("\n  ")
        );
    }
}

#[tokio::test]
async fn every_route_answers_exactly_its_dto() {
    use Method as M;
    let none = Body::Empty;
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let api = server.api();
    let admin = Some(server.admin_token());
    let mut shapes = Shapes::default();

    // Anyone.
    shapes.check::<Health>(
        "GET /healthz",
        api.request(M::GET, "/healthz", None, none.clone()).await,
        StatusCode::OK,
    );
    let (status, metrics) = api.request(M::GET, "/metrics", None, none.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.as_str().is_some_and(|t| t.contains("# EOF")),
        "{metrics}"
    );

    // Admin: tenants, limits, clock.
    let route = "POST /v1/admin/tenants";
    let tenant = shapes.check::<CreatedTenant>(
        route,
        api.request(
            M::POST,
            "/v1/admin/tenants",
            admin,
            json!({"name": "shapes"}),
        )
        .await,
        StatusCode::CREATED,
    );
    let tenant: CreatedTenant = serde_json::from_value(tenant).expect("a tenant");
    shapes.check::<ErrorBody>(
        route,
        api.request(
            M::POST,
            "/v1/admin/tenants",
            admin,
            json!({"name": "shapes"}),
        )
        .await,
        StatusCode::CONFLICT,
    );
    let limits = "/v1/admin/tenants/shapes/limits";
    shapes.check::<TenantLimits>(
        "GET /v1/admin/tenants/{id}/limits",
        api.request(M::GET, limits, admin, none.clone()).await,
        StatusCode::OK,
    );
    shapes.check::<TenantLimits>(
        "PUT /v1/admin/tenants/{id}/limits",
        api.request(M::PUT, limits, admin, json!({"decide_deadline_ms": 5000}))
            .await,
        StatusCode::OK,
    );
    shapes.check::<ErrorBody>(
        "GET /v1/admin/tenants/{id}/limits",
        api.request(
            M::GET,
            "/v1/admin/tenants/nobody/limits",
            admin,
            none.clone(),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    shapes.check::<Clock>(
        "GET /v1/admin/clock",
        api.request(M::GET, "/v1/admin/clock", admin, none.clone())
            .await,
        StatusCode::OK,
    );
    shapes.check::<ClockAdvanced>(
        "POST /v1/admin/clock/advance",
        api.request(
            M::POST,
            "/v1/admin/clock/advance",
            admin,
            json!({"by_ms": 1000}),
        )
        .await,
        StatusCode::OK,
    );

    // Tenant: who may not, and what is not there.
    let key = Some(tenant.api_key.as_str());
    shapes.check::<ErrorBody>(
        "GET /v1/journeys without a key",
        api.request(M::GET, "/v1/journeys", None, none.clone())
            .await,
        StatusCode::UNAUTHORIZED,
    );
    shapes.check::<ErrorBody>(
        "GET /v1/no-such-route",
        api.request(M::GET, "/v1/no-such-route", key, none.clone())
            .await,
        StatusCode::NOT_FOUND,
    );

    // Channels: the webhook as `webhook` and as `email`, one with a secret.
    let webhook = waymark_client::component_base64(&artifacts().component(WEBHOOK_CRATE));
    for (channel, secrets) in [
        ("webhook", json!({"bearer_token": "s3cret"})),
        ("email", json!({})),
    ] {
        shapes.check::<Channel>(
            "PUT /v1/channels/{name}",
            api.request(
                M::PUT,
                &format!("/v1/channels/{channel}"),
                key,
                json!({
                    "component": webhook,
                    "settings": {"url": format!("{}/{channel}", sink.url())},
                    "secrets": secrets,
                    "allowed_hosts": [sink.authority()],
                }),
            )
            .await,
            StatusCode::CREATED,
        );
    }
    shapes.check::<ChannelList>(
        "GET /v1/channels",
        api.request(M::GET, "/v1/channels", key, none.clone()).await,
        StatusCode::OK,
    );

    // Journeys: specs with and without stall windows, goals and experiments.
    for name in ["onboarding", "guided-onboarding", "ab-welcome"] {
        let component = artifacts().component(&example_crate(name));
        shapes.check::<UploadedJourney>(
            "PUT /v1/journeys/{name}",
            api.request(
                M::PUT,
                &format!("/v1/journeys/{name}"),
                key,
                Body::wasm(component),
            )
            .await,
            StatusCode::CREATED,
        );
    }
    shapes.check::<ErrorBody>(
        "PUT /v1/journeys/{name}",
        api.request(
            M::PUT,
            "/v1/journeys/junk",
            key,
            Body::wasm(b"junk".to_vec()),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    shapes.check::<JourneyList>(
        "GET /v1/journeys",
        api.request(M::GET, "/v1/journeys", key, none.clone()).await,
        StatusCode::OK,
    );
    shapes.check::<JourneyVersions>(
        "GET /v1/journeys/{name}",
        api.request(M::GET, "/v1/journeys/guided-onboarding", key, none.clone())
            .await,
        StatusCode::OK,
    );

    // Policy.
    let policy = json!({
        "frequency_caps": [{"channel": "*", "max": 100, "window_ms": HOUR_MS}],
        "quiet_hours": {"start": "22:00", "end": "06:00", "channels": ["sms"]},
    });
    shapes.check::<SendingPolicy>(
        "PUT /v1/policy",
        api.request(M::PUT, "/v1/policy", key, policy).await,
        StatusCode::OK,
    );
    shapes.check::<SendingPolicy>(
        "GET /v1/policy",
        api.request(M::GET, "/v1/policy", key, none.clone()).await,
        StatusCode::OK,
    );
    shapes.check::<ErrorBody>(
        "PUT /v1/policy",
        api.request(M::PUT, "/v1/policy", key, Body::json_text("{nope"))
            .await,
        StatusCode::BAD_REQUEST,
    );

    // Events: the first delivery is refused for good (a dead letter); a duplicate in the batch.
    let now = api.clock_now().await;
    sink.respond_next(1, StatusCode::BAD_REQUEST);
    let batch = json!([
        {"id": "ada-1", "customer": "ada", "name": "signed_up",
         "properties": {"plan": "pro"}, "timestamp": now},
        {"id": "bob-1", "customer": "bob", "name": "signed_up"},
        {"id": "ada-1", "customer": "ada", "name": "signed_up"},
    ]);
    shapes.check::<EventsAccepted>(
        "POST /v1/events",
        api.request(M::POST, "/v1/events", key, batch).await,
        StatusCode::ACCEPTED,
    );
    shapes.check::<ErrorBody>(
        "POST /v1/events",
        api.request(M::POST, "/v1/events", key, json!([{"id": "x"}]))
            .await,
        StatusCode::BAD_REQUEST,
    );
    let tenant_api = server.as_tenant(&tenant);
    let dead = wait_for_some("a dead letter", || async {
        let (_, body) = tenant_api
            .request(M::GET, "/v1/dead-letters", key, Body::Empty)
            .await;
        (body["dead_letters"]
            .as_array()
            .is_some_and(|d| !d.is_empty()))
        .then_some(body)
    })
    .await;
    shapes.check::<DeadLetters>(
        "GET /v1/dead-letters",
        (StatusCode::OK, dead),
        StatusCode::OK,
    );
    shapes.check::<Requeued>(
        "POST /v1/dead-letters/retry",
        api.request(M::POST, "/v1/dead-letters/retry", key, json!({}))
            .await,
        StatusCode::OK,
    );

    // Customers, once something was delivered to them.
    sink.wait_for("welcomes for ada and bob", |r| {
        count(r, "welcome", "ada") > 0 && count(r, "welcome", "bob") > 0
    })
    .await;
    let ada = shapes.check::<Customer>(
        "GET /v1/customers/{id}",
        api.request(M::GET, "/v1/customers/ada", key, none.clone())
            .await,
        StatusCode::OK,
    );
    shapes.check::<ErrorBody>(
        "GET /v1/customers/{id}",
        api.request(M::GET, "/v1/customers/nobody", key, none.clone())
            .await,
        StatusCode::NOT_FOUND,
    );
    // Their latest events, newest first.
    let events = shapes.check::<CustomerEvents>(
        "GET /v1/customers/{id}/events",
        api.request(M::GET, "/v1/customers/ada/events", key, none.clone())
            .await,
        StatusCode::OK,
    );
    assert_eq!(events["events"][0]["id"], "ada-1", "{events}");
    assert_eq!(events["events"][0]["properties"]["plan"], "pro", "{events}");
    shapes.check::<ErrorBody>(
        "GET /v1/customers/{id}/events",
        api.request(M::GET, "/v1/customers/nobody/events", key, none.clone())
            .await,
        StatusCode::NOT_FOUND,
    );

    // The dry run, in ada's onboarding context; a guest failure carries its reason.
    let enrollment = ada["enrollments"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["journey"] == "onboarding"))
        .cloned()
        .expect("ada is in onboarding");
    let now = api.clock_now().await;
    let context = |name: &str| {
        json!({"context": {
            "trigger": {"kind": "event", "event": {
                "id": "dry", "customer": "ada", "name": name, "properties": {}, "timestamp": now,
            }},
            "customer": {"id": "ada", "attributes": {}},
            "enrollment": enrollment,
            "now": now,
            "seed": 7,
        }})
    };
    shapes.check::<Decided>(
        "POST /v1/journeys/{name}/decide",
        api.request(
            M::POST,
            "/v1/journeys/onboarding/decide",
            key,
            context("first_value"),
        )
        .await,
        StatusCode::OK,
    );
    let mallory = api.create_tenant("mallory").await;
    let hostile = artifacts().component(HOSTILE_CRATE);
    let mallory_api = server.as_tenant(&mallory);
    mallory_api.upload_journey("hostile", hostile).await;
    shapes.check::<ErrorBody>(
        "POST /v1/journeys/{name}/decide",
        api.request(
            M::POST,
            "/v1/journeys/hostile/decide",
            Some(&mallory.api_key),
            context("error"),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );

    // Tasks: bob never logs in; two stalls hand him to customer success.
    for stalls in 1..=2 {
        api.advance_clock(2 * DAY_MS).await;
        tenant_api
            .wait_for_enrollment("bob", "guided-onboarding", "another stall", |e| {
                e.stalls.len() >= stalls
            })
            .await;
    }
    let tasks = wait_for_some("a task for bob", || async {
        let (_, body) = tenant_api
            .request(M::GET, "/v1/tasks?status=open", key, Body::Empty)
            .await;
        (body["tasks"].as_array().is_some_and(|t| !t.is_empty())).then_some(body)
    })
    .await;
    shapes.check::<TaskList>(
        "GET /v1/tasks",
        (StatusCode::OK, tasks.clone()),
        StatusCode::OK,
    );
    let id = tasks["tasks"][0]["id"]
        .as_str()
        .expect("a task id")
        .to_string();
    shapes.check::<Task>(
        "GET /v1/tasks/{id}",
        api.request(M::GET, &format!("/v1/tasks/{id}"), key, none.clone())
            .await,
        StatusCode::OK,
    );
    shapes.check::<Task>(
        "POST /v1/tasks/{id}/claim",
        api.request(
            M::POST,
            &format!("/v1/tasks/{id}/claim"),
            key,
            json!({"assignee": "grace@cs"}),
        )
        .await,
        StatusCode::OK,
    );
    shapes.check::<Task>(
        "POST /v1/tasks/{id}/resolve",
        api.request(
            M::POST,
            &format!("/v1/tasks/{id}/resolve"),
            key,
            json!({"resolution": "churned", "properties": {"note": "n"}}),
        )
        .await,
        StatusCode::OK,
    );
    shapes.check::<ErrorBody>(
        "POST /v1/tasks/{id}/claim",
        api.request(
            M::POST,
            &format!("/v1/tasks/{id}/claim"),
            key,
            json!({"assignee": "grace@cs"}),
        )
        .await,
        StatusCode::CONFLICT,
    );
    shapes.check::<ErrorBody>(
        "GET /v1/tasks",
        api.request(M::GET, "/v1/tasks?status=lost", key, none.clone())
            .await,
        StatusCode::BAD_REQUEST,
    );

    // Reports, with milestones, stalls and experiment arms; bob's view after it all.
    for journey in ["onboarding", "guided-onboarding", "ab-welcome"] {
        shapes.check::<JourneyReport>(
            "GET /v1/journeys/{name}/report",
            api.request(
                M::GET,
                &format!("/v1/journeys/{journey}/report"),
                key,
                none.clone(),
            )
            .await,
            StatusCode::OK,
        );
    }
    shapes.check::<Customer>(
        "GET /v1/customers/{id}",
        api.request(M::GET, "/v1/customers/bob", key, none.clone())
            .await,
        StatusCode::OK,
    );

    shapes.assert_none_failed();
}

/// `(dto, json)` for every ```json block of `docs/API.md` preceded by `<!-- dto: name -->`.
fn documented_examples() -> Vec<(String, String)> {
    let path = workspace_root().join("docs").join("API.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut examples = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(dto) = line
            .trim()
            .strip_prefix("<!-- dto:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.by_ref().find(|l| !l.trim().is_empty());
        assert_eq!(
            fence.map(str::trim),
            Some("```json"),
            "the marker `{line}` must precede a ```json block"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        examples.push((dto.trim().to_string(), body.join("\n")));
    }
    examples
}

/// Round-trips `raw` through the DTO named `name` (`module::Type` of `waymark-api`).
fn round_trip_named(name: &str, raw: &Value) -> Result<(), String> {
    macro_rules! named {
        ($($path:ident :: $ty:ident),* $(,)?) => {
            match name {
                $(concat!(stringify!($path), "::", stringify!($ty)) => {
                    round_trip::<waymark_api::$path::$ty>(raw)
                })*
                other => Err(format!("no DTO named {other}")),
            }
        };
    }
    named!(
        health::Health,
        errors::ErrorBody,
        tenants::CreatedTenant,
        limits::TenantLimits,
        clock::Clock,
        clock::ClockAdvanced,
        journeys::UploadedJourney,
        journeys::JourneyList,
        journeys::JourneyVersions,
        journeys::Decided,
        journeys::DecideRequest,
        reports::JourneyReport,
        channels::Channel,
        channels::ChannelList,
        events::EventsAccepted,
        customers::Customer,
        customers::CustomerEvents,
        policy::SendingPolicy,
        tasks::Task,
        tasks::TaskList,
        dead_letters::DeadLetters,
        dead_letters::Requeued,
        isolation::JourneyBreakers,
        // Issue 12.
        keys::CreatedKey,
        keys::KeyList,
        keys::Key,
        segment::SegmentAccepted,
        accounts::Account,
        // Templates (issue 11)
        templates::Template,
        templates::TemplateList,
        templates::Preview,
        // Backtests (issue 13)
        backtests::Backtest,
        backtests::BacktestDiff,
    )
}

#[test]
fn every_json_example_in_the_api_doc_is_exactly_its_dto() {
    let examples = documented_examples();
    assert!(
        examples.len() >= 15,
        "docs/API.md has {} marked examples; every route's answer should have one",
        examples.len()
    );
    let mut failures = Vec::new();
    for (dto, text) in &examples {
        let result = serde_json::from_str::<Value>(text)
            .map_err(|e| format!("is not JSON: {e}"))
            .and_then(|raw| round_trip_named(dto, &raw));
        if let Err(difference) = result {
            failures.push(format!("the example of {dto} {difference}"));
        }
    }
    assert!(
        failures.is_empty(),
        "docs/API.md has examples that are not exactly their DTO:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn a_field_the_dto_does_not_know_or_invents_is_a_difference() {
    let unknown = json!({"now": 1, "later": 2});
    let err = round_trip::<ClockAdvanced>(&unknown).unwrap_err();
    assert!(err.contains("$.later: sent, unknown to the DTO"), "{err}");
    // `goal` is always sent (null when unset); leaving it out is a difference.
    let spec = json!({"name": "j", "version": 1, "digest": "d", "spec": {
        "description": "", "entry": [], "exit_on": [], "milestones": [],
        "reentry": {"policy": "never"}, "channels": [], "experiments": []},
        "rollout": {"name": "j", "latest_version": 1, "live_version": 1, "candidate": null,
                    "previous_live_versions": []}});
    let err = round_trip::<UploadedJourney>(&spec).unwrap_err();
    assert!(
        err.contains("$.spec.goal: not sent, invented by the DTO"),
        "{err}"
    );
    assert_eq!(round_trip::<ClockAdvanced>(&json!({"now": 5})), Ok(()));
}
