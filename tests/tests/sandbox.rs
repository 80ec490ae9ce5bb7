//! The sandbox holds against hostile tenants: a component that asks for sockets or files is
//! refused at upload; a journey that spins, exhausts memory, overflows its stack, floods the
//! boundary, returns too many commands or forged JSON, panics or errs fails that one trigger
//! with the reason recorded, while other customers and other tenants keep completing and the
//! server keeps serving; `decide` sees clocks and randomness that only its context decides; and
//! a channel reaches nothing its registration does not allow, nor loopback unless the operator
//! allows private networks.
//!
//! The hostile journey (`tests/guests/hostile`) enrolls customers on `signed_up` and then
//! misbehaves according to each event's name; its crate docs list the behaviours.

use std::collections::BTreeMap;
use tokio::task::JoinSet;
use waymark_tests::*;

/// The hostile journey's name, as uploaded.
const HOSTILE: &str = "hostile";

/// What the hostile journey panics with, and what it returns as `Err` (its crate's
/// `PANIC_MESSAGE` and `GUEST_ERROR`).
const PANIC_MESSAGE: &str = "the hostile journey panics on purpose";
const GUEST_ERROR: &str = "the hostile journey refuses on purpose";

/// One attack: the event that triggers it, the failure reasons the host may record for it, and
/// text the failure's message must contain.
struct Attack {
    event: &'static str,
    reasons: &'static [&'static str],
    says: Option<&'static str>,
}

const ATTACKS: &[Attack] = &[
    Attack {
        event: "spin",
        reasons: &["deadline"],
        says: None,
    },
    Attack {
        event: "bomb",
        reasons: &["memory"],
        says: None,
    },
    Attack {
        event: "recurse",
        reasons: &["trap"],
        says: None,
    },
    // Hostcall fuel running out while the host copies the payload shows as a trap; a host that
    // copies it and then refuses it records invalid commands. Either way, it never lands.
    Attack {
        event: "huge",
        reasons: &["trap", "invalid_commands"],
        says: None,
    },
    // 50,000 commands are more bytes than the default hostcall budget, so the copy may run out
    // of fuel (a trap) before the commands can be counted; `too_many` is the same attack small
    // enough that only the command limit can refuse it.
    Attack {
        event: "many",
        reasons: &["invalid_commands", "trap"],
        says: None,
    },
    Attack {
        event: "too_many",
        reasons: &["invalid_commands"],
        says: None,
    },
    Attack {
        event: "panic",
        reasons: &["trap"],
        says: Some(PANIC_MESSAGE),
    },
    Attack {
        event: "bad_json",
        reasons: &["invalid_commands"],
        says: None,
    },
    Attack {
        event: "error",
        reasons: &["guest_error"],
        says: Some(GUEST_ERROR),
    },
];

/// The customer who carries out `attack`.
fn attacker(attack: &Attack) -> String {
    format!("attacker-{}", attack.event)
}

/// A new tenant `name` with the webhook channel delivering to the sink and the hostile journey
/// uploaded.
async fn hostile_tenant(
    server: &Server,
    sink: &Sink,
    name: &str,
) -> (CreatedTenant, UploadedJourney) {
    let hostile = artifacts().component(HOSTILE_CRATE);
    tenant_with_journey(server, name, Some((sink, &[WEBHOOK])), HOSTILE, hostile).await
}

/// Signs `customer` up to the hostile journey and posts `name` for them, in one batch: a
/// customer's triggers are processed in order, so the event finds them enrolled.
fn enroll_and(customer: &str, name: &str) -> Vec<Value> {
    vec![
        event(&format!("{customer}-signed-up"), customer, "signed_up"),
        event(&format!("{customer}-{name}"), customer, name),
    ]
}

/// Waits until `customer` has a message of `template` with `status`; returns it.
async fn wait_for_message(api: &Api, customer: &str, template: &str, status: &str) -> Message {
    wait_for_some(
        &format!("{customer}'s `{template}` message to be {status}"),
        || async {
            api.customer(customer).await.and_then(|c| {
                c.messages
                    .into_iter()
                    .find(|m| m.template == template && m.status == status)
            })
        },
    )
    .await
}

#[tokio::test]
async fn each_hostile_trigger_fails_alone_while_other_tenants_and_customers_keep_completing() {
    let mut world = Onboarding::start().await;
    let (mallory, _) = hostile_tenant(&world.server, &world.sink, "mallory").await;
    let hostile = world.server.as_tenant(&mallory);
    let acme = world.api();
    let now = world.admin().clock_now().await;

    // The attacks, acme's signups and mallory's well-behaved customers are all posted at once,
    // so the bystanders' triggers are processed while the attacks run.
    let attacks: Vec<Value> = ATTACKS
        .iter()
        .flat_map(|a| enroll_and(&attacker(a), a.event))
        .collect();
    let signups: Vec<String> = (0..6).map(|i| format!("signup-{i}")).collect();
    let signup_events: Vec<Value> = signups
        .iter()
        .map(|c| event(&format!("{c}-signed-up"), c, "signed_up"))
        .collect();
    let calm: Vec<String> = (0..4).map(|i| format!("calm-{i}")).collect();
    let calm_events: Vec<Value> = calm.iter().flat_map(|c| enroll_and(c, "ok")).collect();
    let (attacked, signed_up, calmed) = tokio::join!(
        hostile.post_events(&attacks),
        acme.post_events(&signup_events),
        hostile.post_events(&calm_events),
    );
    assert_eq!(attacked.accepted as usize, attacks.len(), "{attacked:?}");
    assert_eq!(signed_up.accepted as usize, signups.len(), "{signed_up:?}");
    assert_eq!(calmed.accepted as usize, calm_events.len(), "{calmed:?}");

    // Every attack fails its own trigger, with its reason, and leaves the enrollment active.
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for attack in ATTACKS {
        let customer = attacker(attack);
        let enrollment = hostile
            .wait_for_enrollment(&customer, HOSTILE, "a recorded failure", |e| {
                e.failure.is_some()
            })
            .await;
        let failure = enrollment.failure.clone().expect("just seen");
        assert!(
            attack.reasons.contains(&failure.reason.as_str()),
            "`{}` should fail with one of {:?}: {failure:?}",
            attack.event,
            attack.reasons
        );
        assert_eq!(failure.trigger, "event", "{failure:?}");
        assert_eq!(
            failure.at, now,
            "failures are stamped with the trigger's now: {failure:?}"
        );
        assert!(!failure.message.trim().is_empty(), "{failure:?}");
        if let Some(text) = attack.says {
            assert!(
                failure.message.contains(text),
                "`{}`'s failure should say {text:?}: {failure:?}",
                attack.event
            );
        }
        assert_eq!(
            enrollment.status,
            EnrollmentStatus::Active,
            "{enrollment:?}"
        );
        *recorded.entry(failure.reason).or_default() += 1;
    }

    // Meanwhile the other tenant's customers were welcomed and mallory's calm customers served.
    let received = world
        .sink
        .wait_for("every bystander's welcome or ok", |r| {
            signups.iter().all(|c| count(r, "welcome", c) > 0)
                && calm.iter().all(|c| count(r, "ok", c) > 0)
        })
        .await;
    for customer in &calm {
        assert_eq!(
            count(&received, "ok", customer),
            1,
            "{}",
            describe(&received)
        );
        let enrollment = hostile
            .customer(customer)
            .await
            .and_then(|c| c.enrollment(HOSTILE).cloned())
            .expect("enrolled");
        assert_eq!(enrollment.failure, None, "{enrollment:?}");
    }

    // The failure was that trigger's alone: each attacker's next trigger succeeds, clears the
    // failure, and is the only thing any of their triggers ever sent.
    let recoveries: Vec<Value> = ATTACKS
        .iter()
        .map(|a| {
            let customer = attacker(a);
            event(&format!("{customer}-ok"), &customer, "ok")
        })
        .collect();
    hostile.post_events(&recoveries).await;
    for attack in ATTACKS {
        let customer = attacker(attack);
        world.sink.wait_for_delivery("ok", &customer).await;
        let enrollment = hostile
            .wait_for_enrollment(&customer, HOSTILE, "the failure cleared", |e| {
                e.failure.is_none()
            })
            .await;
        assert_eq!(
            enrollment.status,
            EnrollmentStatus::Active,
            "{enrollment:?}"
        );
        let messages = hostile.customer(&customer).await.expect("known").messages;
        let templates: Vec<&str> = messages.iter().map(|m| m.template.as_str()).collect();
        assert_eq!(templates, ["ok"], "{customer}'s messages: {messages:#?}");
    }

    // Every failure was counted once, under its reason, and nothing else failed.
    let metrics = world.admin().metrics().await;
    for reason in [
        "trap",
        "deadline",
        "memory",
        "guest_error",
        "invalid_commands",
        "instantiate",
    ] {
        let counted = metric_sum(
            &metrics,
            "waymark_trigger_failures_total",
            ("reason", reason),
        );
        let expected = recorded.get(reason).copied().unwrap_or(0);
        assert_eq!(
            counted, expected as f64,
            "waymark_trigger_failures_total{{reason=\"{reason}\"}}; recorded {recorded:?}\n{metrics}"
        );
    }

    assert!(world.server.is_running(), "the server exited");
    assert!(world.admin().healthy().await, "the server is not healthy");
}

/// The decision context of an `entropy` event for `customer` at `now` with `seed`, in the
/// host's JSON form (`DecisionContext` in host/src/model.rs).
fn entropy_context(customer: &str, now: i64, seed: u64) -> Value {
    json!({
        "trigger": {
            "kind": "event",
            "event": {
                "id": format!("{customer}-entropy"),
                "customer": customer,
                "name": "entropy",
                "properties": {},
                "timestamp": now,
            },
        },
        "customer": { "id": customer, "attributes": {} },
        "enrollment": {
            "id": format!("{HOSTILE}/{customer}/1"),
            "journey": HOSTILE,
            "version": 1,
            "customer": customer,
            "run": 1,
            "status": "active",
            "entered_at": now - HOUR_MS,
        },
        "now": now,
        "seed": seed,
    })
}

/// The one `entropy` payload of a decision.
fn entropy_payload(decided: &Decided) -> Value {
    let payloads = decided.payloads("entropy");
    assert_eq!(payloads.len(), 1, "one entropy send: {decided:?}");
    payloads[0].clone()
}

#[tokio::test]
async fn decide_sees_clocks_and_randomness_that_only_its_context_decides() {
    // Not a whole second, so that sub-second clock readings are checked too.
    const NOW: i64 = 1_700_000_000_123;
    let sink = Sink::start();
    let mut server = Server::start(ServerOptions::default()).await;
    let (mallory, journey) = hostile_tenant(&server, &sink, "mallory").await;
    let api = server.as_tenant(&mallory);
    let ask = |now: i64, seed: u64| json!({ "context": entropy_context("ada", now, seed) });

    let first = api.dry_run_decide(HOSTILE, ask(NOW, 42)).await;
    assert_eq!(
        (first.name.as_str(), first.version),
        (HOSTILE, journey.version)
    );
    let payload = entropy_payload(&first);
    assert_eq!(payload["context_now_ms"], NOW, "{payload}");
    assert_eq!(
        payload["wall_clock_ms"], NOW,
        "the guest's wall clock reads the context's now: {payload}"
    );
    assert_eq!(
        payload["wall_clock_subsec_nanos"],
        (NOW % 1000) * 1_000_000,
        "{payload}"
    );

    // Several at once, so that several instances answer; then one after another.
    let mut concurrent = JoinSet::new();
    for _ in 0..8 {
        let (api, body) = (api.clone(), ask(NOW, 42));
        concurrent.spawn(async move { api.dry_run_decide(HOSTILE, body).await });
    }
    while let Some(answer) = concurrent.join_next().await {
        let answer = answer.expect("a dry run panicked");
        assert_eq!(answer, first, "a concurrent answer differs");
    }
    for _ in 0..3 {
        let answer = api.dry_run_decide(HOSTILE, ask(NOW, 42)).await;
        assert_eq!(answer, first, "a sequential answer differs");
    }
    let pinned = json!({ "version": journey.version, "context": entropy_context("ada", NOW, 42) });
    assert_eq!(api.dry_run_decide(HOSTILE, pinned).await, first);

    // Another seed gives other randomness; another now, another clock reading.
    let reseeded = entropy_payload(&api.dry_run_decide(HOSTILE, ask(NOW, 43)).await);
    assert_eq!(reseeded["wall_clock_ms"], NOW, "{reseeded}");
    assert_ne!(reseeded["random_u64"], payload["random_u64"], "{reseeded}");
    assert_ne!(
        reseeded["random_bytes"], payload["random_bytes"],
        "{reseeded}"
    );
    assert_ne!(
        reseeded["insecure_seed"], payload["insecure_seed"],
        "{reseeded}"
    );
    let later = entropy_payload(&api.dry_run_decide(HOSTILE, ask(NOW + DAY_MS, 42)).await);
    assert_eq!(later["wall_clock_ms"], NOW + DAY_MS, "{later}");

    // A new process, compiling the component afresh, answers the same.
    server.restart().await;
    let api = server.as_tenant(&mallory);
    assert_eq!(api.dry_run_decide(HOSTILE, ask(NOW, 42)).await, first);
}

#[tokio::test]
async fn a_journey_never_sees_another_tenants_customers_even_with_the_same_component() {
    // Two tenants upload byte-identical components (a shared template, say); the guest keeps
    // every customer it sees in a global, and reports what it saw before on `remember`.
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let (alice, alice_journey) = hostile_tenant(&server, &sink, "alice").await;
    let (mallory, mallory_journey) = hostile_tenant(&server, &sink, "mallory").await;
    assert_eq!(
        alice_journey.digest, mallory_journey.digest,
        "the same bytes"
    );
    let (alice, mallory) = (server.as_tenant(&alice), server.as_tenant(&mallory));

    // Alice's customers go first, one after another, so that their instances are idle when
    // mallory's trigger comes. This can only miss a leak, never fail a correct server.
    let alices: Vec<String> = (0..3).map(|i| format!("alice-customer-{i}")).collect();
    for customer in &alices {
        alice.post_events(&enroll_and(customer, "remember")).await;
        sink.wait_for_delivery("remember", customer).await;
    }
    mallory
        .post_events(&enroll_and("mallory-probe", "remember"))
        .await;
    let probe = sink.wait_for_delivery("remember", "mallory-probe").await;
    let seen = probe.body["payload"]["seen_before"].clone();
    let leaked: Vec<&String> = alices
        .iter()
        .filter(|c| seen.as_array().is_some_and(|s| s.contains(&json!(c))))
        .collect();
    assert!(
        seen.is_array() && leaked.is_empty(),
        "mallory's journey saw alice's customers {leaked:?}: {}",
        probe.body
    );
}

#[tokio::test]
async fn a_dry_run_reports_why_a_decision_failed_and_has_no_effect() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let (mallory, _) = hostile_tenant(&server, &sink, "mallory").await;
    let api = server.as_tenant(&mallory);
    let key = Some(mallory.api_key.as_str());
    let context = |name: &str, customer: &str| {
        let mut context = entropy_context(customer, 1_700_000_000_000, 7);
        context["trigger"]["event"]["name"] = json!(name);
        json!({ "context": context })
    };

    for (name, reason) in [
        ("panic", "trap"),
        ("error", "guest_error"),
        ("too_many", "invalid_commands"),
        ("bad_json", "invalid_commands"),
    ] {
        let answer = api
            .request(
                Method::POST,
                &format!("/v1/journeys/{HOSTILE}/decide"),
                key,
                context(name, "dry"),
            )
            .await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "decide_failed");
        assert_eq!(
            answer.1["error"]["reason"], reason,
            "`{name}`: {}",
            answer.1
        );
    }
    let unknown = api
        .request(
            Method::POST,
            "/v1/journeys/no-such-journey/decide",
            key,
            context("ok", "dry"),
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");

    let decided = api.dry_run_decide(HOSTILE, context("ok", "dry")).await;
    assert_eq!(
        decided.payloads("ok"),
        [&json!({ "customer_id": "dry" })],
        "{decided:?}"
    );

    // A real customer's `ok` reaches the sink; the dry runs left no customer, message or
    // delivery behind.
    api.post_events(&enroll_and("real", "ok")).await;
    let received = sink.wait_for_delivery("ok", "real").await;
    assert_eq!(received.body["payload"], json!({ "customer_id": "real" }));
    assert!(
        api.customer("dry").await.is_none(),
        "a dry run stored a customer"
    );
    let received = sink.requests();
    assert!(
        received.iter().all(|r| r.customer() != Some("dry")),
        "a dry run delivered:\n{}",
        describe(&received)
    );
}

#[tokio::test]
async fn uploads_importing_sockets_or_the_filesystem_are_refused_and_store_nothing() {
    let server = Server::start(ServerOptions::default()).await;
    let tenant = server.api().create_tenant("mallory").await;
    let api = server.as_tenant(&tenant);
    let key = Some(tenant.api_key.as_str());

    for (name, component, interface) in [
        (
            "sockets",
            artifacts().component(SOCKETS_CRATE),
            "wasi:sockets/",
        ),
        (
            "files",
            artifacts().component(FILES_CRATE),
            "wasi:filesystem/",
        ),
    ] {
        let path = format!("/v1/journeys/{name}");
        let answer = api
            .request(Method::PUT, &path, key, Body::wasm(component))
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "forbidden_import");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(interface),
            "the refusal names the `{interface}` import: {message}"
        );
        let stored = api.request(Method::GET, &path, key, Body::Empty).await;
        assert_error(&stored, StatusCode::NOT_FOUND, "not_found");
    }
    let (status, journeys) = api
        .request(Method::GET, "/v1/journeys", key, Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK, "{journeys}");
    assert_eq!(
        journeys["journeys"],
        json!([]),
        "nothing stored: {journeys}"
    );

    // Clocks and randomness are not forbidden: the hostile journey imports them and is taken.
    let accepted = api
        .upload_journey(HOSTILE, artifacts().component(HOSTILE_CRATE))
        .await;
    assert_eq!(accepted.version, 1);
}

/// The files of the server's compiled-code cache, sorted.
fn compiled_cache(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.data_dir().join("compiled"))
        .expect("the compiled-code cache exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn refused_uploads_leave_the_compiled_code_cache_as_it_was_and_it_keeps_only_what_is_stored()
{
    let mut server = Server::start(ServerOptions::default()).await;
    let tenant = server.api().create_tenant("tidy").await;
    let api = server.as_tenant(&tenant);
    let key = Some(tenant.api_key.as_str());
    api.upload_journey(ONBOARDING, artifacts().component(ONBOARDING_CRATE))
        .await;
    let cached = compiled_cache(&server);
    assert_eq!(
        cached.len(),
        2,
        "the journey's code and its digest: {cached:?}"
    );

    // Each of these compiles, then is refused: a channel adapter as a journey (it imports
    // HTTP), a journey as a channel, a journey that imports sockets.
    let refused = [
        (
            "/v1/journeys/adapter",
            artifacts().component(WEBHOOK_CRATE),
            "forbidden_import",
        ),
        (
            "/v1/channels/journey",
            serde_json::to_vec(&json!({
                "component": waymark_client::component_base64(&artifacts().component(HOSTILE_CRATE)),
                "settings": {},
                "secrets": {},
                "allowed_hosts": [],
            }))
            .unwrap(),
            "invalid_component",
        ),
        (
            "/v1/journeys/sockets",
            artifacts().component(SOCKETS_CRATE),
            "forbidden_import",
        ),
    ];
    for (path, bytes, code) in refused {
        let body = if path.starts_with("/v1/channels/") {
            Body::Raw {
                content_type: "application/json",
                bytes,
            }
        } else {
            Body::wasm(bytes)
        };
        let answer = api.request(Method::PUT, path, key, body).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{path}: {}", answer.1);
        assert_eq!(answer.1["error"]["code"], code, "{path}: {}", answer.1);
        assert_eq!(compiled_cache(&server), cached, "after the refused {path}");
    }

    // What a crash or an older engine left, and a component nothing stores any more, go at
    // the next start; what is stored stays and is loaded instead of compiled.
    let (digest_and_engine, _) = cached[0].split_once('.').unwrap();
    let (_, engine) = digest_and_engine.split_once('-').unwrap();
    let dir = server.data_dir().join("compiled");
    let leftovers = [
        format!("{}-{engine}.cwasm", "0".repeat(64)),
        format!("{}-{engine}.sha256", "0".repeat(64)),
        format!("{digest_and_engine}.tmp777"),
        format!("{}-{}.cwasm", &digest_and_engine[..64], "f".repeat(16)),
    ];
    for name in &leftovers {
        std::fs::write(dir.join(name), b"stale").unwrap();
    }
    server.restart().await;
    assert_eq!(compiled_cache(&server), cached);
    let api = server.as_tenant(&tenant);
    let accepted = api.post_events(&[event("e1", "ada", "signed_up")]).await;
    assert_eq!(accepted.accepted, 1);
}

#[tokio::test]
async fn a_webhook_to_a_host_outside_allowed_hosts_is_dead_and_never_sent() {
    let world = Onboarding::start().await;
    let stray = world.admin().create_tenant("stray").await;
    let api = world.server.as_tenant(&stray);
    api.register_channel(
        WEBHOOK,
        &artifacts().component(WEBHOOK_CRATE),
        json!({ "url": format!("{}/webhook", world.sink.url()) }),
        json!({}),
        &["hooks.example.com".to_string()],
    )
    .await;
    api.upload_journey(ONBOARDING, artifacts().component(ONBOARDING_CRATE))
        .await;

    api.post_events(&[event("ada-signed-up", "ada", "signed_up")])
        .await;
    let dead = wait_for_message(&api, "ada", "welcome", "dead").await;
    let error = dead.last_error.clone().unwrap_or_default();
    assert!(
        error.to_ascii_lowercase().contains("denied") && error.contains("allowed_hosts"),
        "the error says the host denied the request, and why: {dead:?}"
    );

    // The refusal came before any connection; the correctly configured tenant is unaffected.
    world.sign_up("bob").await;
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "welcome", "ada"),
        0,
        "{}",
        describe(&received)
    );
}

#[tokio::test]
async fn without_private_network_a_webhook_to_loopback_is_refused_even_when_allowed() {
    let options = ServerOptions {
        allow_private_network: false,
        ..ServerOptions::default()
    };
    let world = Onboarding::start_with(options, "acme").await;
    let api = world.api();

    world.post("ada-signed-up", "ada", "signed_up").await;
    let dead = wait_for_message(&api, "ada", "welcome", "dead").await;
    let error = dead.last_error.clone().unwrap_or_default();
    assert!(
        error.to_ascii_lowercase().contains("denied") && error.contains("non-public address"),
        "the error says the host denied the request, and why: {dead:?}"
    );
    let received = world.sink.requests();
    assert!(
        received.is_empty(),
        "loopback was reached:\n{}",
        describe(&received)
    );
}
