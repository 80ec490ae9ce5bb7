//! The CRM channel plugin (issue 11, crm slice) end to end on the real server: a journey's send
//! on `plugins/crm` becomes a HubSpot task for the customer's contact, created against a
//! loopback stand-in of HubSpot's CRM v3 tasks API (`tests/src/hubspot.rs`) that checks every
//! request as HubSpot's reference gives it. The onboarding journey's `welcome` (its channel,
//! `webhook`, registered as the crm plugin) is the handoff: each new signup becomes a call task
//! for the sales owner, its subject and notes from a stored `crm` template. A 401 is a dead
//! message with HubSpot's reason; a 429 or a 5xx is retried, then the task is created. A
//! registration's send rate spaces its deliveries' starts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use waymark_api::channels::SendRate;
use waymark_tests::*;

const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
const OWNER: &str = "64492917";

/// A server retrying quickly, its tenant, and HubSpot's stand-in.
struct World {
    server: Server,
    tenant: CreatedTenant,
    hubspot: HubSpot,
}

impl World {
    /// The onboarding journey with the crm plugin as its `webhook` channel, pointed at the
    /// stand-in, at `rate` if given, and template `welcome` stored as a `crm` template.
    async fn start(rate: Option<SendRate>) -> World {
        let hubspot = HubSpot::start(HubSpotAccount {
            token: TOKEN.into(),
            contacts: (101..=110).map(|id| id.to_string()).collect(),
            custom_properties: vec!["waymark_message_id".into()],
        });
        let server = Server::start(ServerOptions {
            args: vec!["--retry-base-ms".into(), "20".into()],
            ..ServerOptions::default()
        })
        .await;
        let tenant = server.api().create_tenant("acme").await;
        let api = server.as_tenant(&tenant);
        let settings = json!({
            "base_url": hubspot.url(),
            "owner_id": OWNER,
            "priority": "high",
            "task_type": "CALL",
            "due_in_hours": 24,
            "message_id_property": "waymark_message_id",
        });
        let secrets = json!({"access_token": TOKEN});
        let component = artifacts().component(CRM_CRATE);
        let hosts = [hubspot.authority()];
        match rate {
            None => {
                api.register_channel(WEBHOOK, &component, settings, secrets, &hosts)
                    .await;
            }
            Some(rate) => {
                let channel = api
                    .register_paced_channel(WEBHOOK, &component, (settings, secrets), &hosts, rate)
                    .await;
                assert_eq!(channel.rate, Some(rate), "the registration shows its rate");
            }
        }
        api.upload_journey(ONBOARDING, artifacts().component(ONBOARDING_CRATE))
            .await;
        let key = tenant.api_key.clone();
        let template = json!({"channel": "crm", "default_locale": "en", "locales": {"en": {
            "subject": "Welcome call: {{ customer.first_name }}",
            "body": "New signup on plan {{ customer.plan }} ({{ customer.email }}). Say hello within a day.",
        }}});
        let (status, stored) = api
            .request(Method::PUT, "/v1/templates/welcome", Some(&key), template)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        World {
            server,
            tenant,
            hubspot,
        }
    }

    fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    /// Identifies `customer` (HubSpot contact `contact`), then signs them up: the journey sends
    /// `welcome`.
    async fn sign_up(&self, customer: &str, contact: u32) {
        let traits = json!({
            "first_name": customer.to_uppercase(),
            "email": format!("{customer}@example.com"),
            "plan": "pro",
            "hubspot_contact_id": contact.to_string(),
        });
        let answer = self
            .api()
            .post_events(&[
                identify(&format!("{customer}-identify"), customer, traits),
                event(&format!("{customer}-signed-up"), customer, "signed_up"),
            ])
            .await;
        assert_eq!(answer.accepted, 2, "{answer:?}");
    }

    /// The customer's welcome once it is `status`.
    async fn welcome(&self, customer: &str, status: MessageStatus) -> Message {
        let api = self.api();
        wait_for_some(
            &format!("{customer}'s welcome to be {status:?}"),
            || async {
                let customer = api.customer(customer).await?;
                customer
                    .messages_with_template("welcome")
                    .first()
                    .filter(|m| m.status == status)
                    .map(|m| (*m).clone())
            },
        )
        .await
    }
}

/// The request's body without `hs_timestamp`, which each attempt sets from its own time.
fn without_due_time(call: &HubSpotCall) -> Value {
    let mut body = call.json();
    if let Some(properties) = body["properties"].as_object_mut() {
        properties.remove("hs_timestamp");
    }
    body
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_send_on_the_crm_channel_creates_a_hubspot_task_for_the_customers_contact() {
    let world = World::start(None).await;
    let before = wall_ms();
    world.sign_up("ana", 101).await;
    let delivered = world.welcome("ana", MessageStatus::Delivered).await;
    let after = wall_ms();

    let calls = world.hubspot.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call.problems, Vec::<String>::new());
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/crm/v3/objects/tasks")
    );
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(call.header("content-type"), Some("application/json"));
    let mut body = call.json();
    let due: i64 = body["properties"]["hs_timestamp"]
        .as_str()
        .and_then(|ms| ms.parse().ok())
        .expect("hs_timestamp is Unix milliseconds");
    let day = 24 * HOUR_MS;
    assert!(
        (before + day..=after + day).contains(&due),
        "due a day after delivery: {due} not in {}..={}",
        before + day,
        after + day
    );
    body["properties"]
        .as_object_mut()
        .expect("properties")
        .remove("hs_timestamp");
    assert_eq!(
        body,
        json!({
            "properties": {
                "hs_task_subject": "Welcome call: ANA",
                "hs_task_body": "New signup on plan pro (ana@example.com). Say hello within a day.",
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH",
                "hs_task_type": "CALL",
                "hubspot_owner_id": OWNER,
                "waymark_message_id": delivered.id,
            },
            "associations": [{
                "to": {"id": "101"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
            }],
        })
    );
    assert_eq!(delivered.attempts, 1);
    assert_eq!(
        delivered.provider_id.as_deref(),
        Some("90001"),
        "the receipt is the task's id"
    );
}

#[tokio::test]
async fn a_401_from_hubspot_is_a_dead_message_that_keeps_hubspots_reason() {
    let world = World::start(None).await;
    world.hubspot.answer_next(HubSpotAnswer::unauthorized());
    world.sign_up("bo", 102).await;
    let dead = world.welcome("bo", MessageStatus::Dead).await;
    assert_eq!(dead.attempts, 1, "a permanent failure is not retried");
    assert_eq!(
        dead.last_error.as_deref(),
        Some(
            "HubSpot HTTP 401: INVALID_AUTHENTICATION: Authentication credentials not found. \
             This API supports OAuth 2.0 authentication and you can find more details at \
             https://developers.hubspot.com/docs/methods/auth/oauth-overview \
             [correlationId 00000000-0000-4000-8000-000000000000]"
        )
    );
    assert_eq!(world.hubspot.calls().len(), 1);
}

#[tokio::test]
async fn a_hubspot_rate_limit_is_retried_and_then_the_task_is_created() {
    let world = World::start(None).await;
    world.hubspot.answer_next(HubSpotAnswer::rate_limited());
    world.sign_up("cy", 103).await;
    let delivered = world.welcome("cy", MessageStatus::Delivered).await;
    assert_eq!(delivered.attempts, 2);
    let calls = world.hubspot.calls();
    assert_eq!(
        calls.iter().map(|c| c.answered).collect::<Vec<_>>(),
        [429, 201]
    );
    assert_eq!(
        without_due_time(&calls[0]),
        without_due_time(&calls[1]),
        "the retry creates the same task (due the same time after its own attempt)"
    );
    assert_eq!(delivered.provider_id.as_deref(), Some("90002"));
}

#[tokio::test]
async fn a_hubspot_5xx_is_retried_and_then_the_task_is_created() {
    let world = World::start(None).await;
    world.hubspot.answer_next(HubSpotAnswer::bad_gateway());
    world.sign_up("dee", 104).await;
    let delivered = world.welcome("dee", MessageStatus::Delivered).await;
    assert_eq!(delivered.attempts, 2);
    assert_eq!(
        world
            .hubspot
            .calls()
            .iter()
            .map(|c| c.answered)
            .collect::<Vec<_>>(),
        [502, 201]
    );
}

#[tokio::test]
async fn a_registrations_send_rate_spaces_its_deliveries_and_drops_none() {
    // 4 per second, one at a time: the k-th task (from 0) cannot start before k × 250 ms after
    // the first could. Asserted as a lower bound on when each arrived, never as a speed.
    let rate = SendRate {
        per_second: 4.0,
        burst: 1,
    };
    let world = World::start(Some(rate)).await;
    let customers = ["eli", "fay", "gus", "hal", "ida"];
    let before = Instant::now();
    for (i, customer) in customers.iter().enumerate() {
        world.sign_up(customer, 105 + i as u32).await;
    }
    for customer in customers {
        world.welcome(customer, MessageStatus::Delivered).await;
    }
    let mut arrived: Vec<Duration> = world
        .hubspot
        .calls()
        .iter()
        .map(|c| c.at.duration_since(before))
        .collect();
    assert_eq!(
        arrived.len(),
        customers.len(),
        "one task per message, none dropped"
    );
    arrived.sort();
    // The bucket counts whole wall-clock milliseconds: allow one per start for the rounding.
    for (k, at) in arrived.iter().enumerate() {
        let earliest =
            Duration::from_millis(250 * k as u64).saturating_sub(Duration::from_millis(k as u64));
        assert!(
            *at >= earliest,
            "task {k} arrived {at:?} after the sends, before the rate allows ({earliest:?}): {arrived:?}"
        );
    }
}

#[tokio::test]
async fn a_bad_send_rate_is_refused_at_registration() {
    let world = World::start(None).await;
    let key = world.tenant.api_key.clone();
    let component = waymark_client::component_base64(&artifacts().component(CRM_CRATE));
    for (rate, message) in [
        (
            json!({"per_second": 0}),
            "rate.per_second must be a number above 0 and at most 10000",
        ),
        (
            json!({"per_second": 1, "burst": 0}),
            "rate.burst must be 1 to 10000",
        ),
    ] {
        let (status, body) = world
            .api()
            .request(
                Method::PUT,
                "/v1/channels/paced",
                Some(&key),
                json!({"component": component, "secrets": {"access_token": TOKEN},
                       "allowed_hosts": [world.hubspot.authority()], "rate": rate}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_rate", "{body}");
        assert_eq!(body["error"]["message"], message, "{body}");
    }
}

// ---------------------------------------------------------------------------------------------
// guided-onboarding on real channels: its CS handoff is posted to Slack and opens a HubSpot task
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn guided_onboardings_handoff_posts_to_slack_and_opens_a_hubspot_task() {
    let hubspot = HubSpot::start(HubSpotAccount {
        token: TOKEN.into(),
        contacts: vec!["201".into()],
        custom_properties: vec![],
    });
    let hook_path = "/services/T0001/B0001/cshandoffs";
    let slack = StandIn::start(Provider::SlackWebhook {
        path: hook_path.into(),
    });
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let (tenant, _) = tenant_with_journey(
        &server,
        "acme",
        Some((&sink, &["email"])),
        "guided-onboarding",
        artifacts().component(&example_crate("guided-onboarding")),
    )
    .await;
    let api = server.as_tenant(&tenant);
    api.register_channel(
        "slack",
        &artifacts().component(SLACK_CRATE),
        json!({"mode": "webhook"}),
        json!({"webhook_url": format!("{}{hook_path}", slack.url())}),
        &[slack.authority()],
    )
    .await;
    api.register_channel(
        "crm",
        &artifacts().component(CRM_CRATE),
        json!({"base_url": hubspot.url(), "owner_id": OWNER, "due_in_hours": 4}),
        json!({"access_token": TOKEN}),
        &[hubspot.authority()],
    )
    .await;
    let answer = api
        .post_events(&[
            identify("bob-identify", "bob", json!({"hubspot_contact_id": "201"})),
            event("bob-signed-up", "bob", "signed_up"),
        ])
        .await;
    assert_eq!(answer.accepted, 2, "{answer:?}");
    sink.wait_for_delivery("welcome", "bob").await;

    // Bob never logs in: two stall windows later he is handed to customer success.
    let admin = server.api();
    for stalls in 1..=2 {
        admin.advance_clock(2 * DAY_MS).await;
        api.wait_for_enrollment("bob", "guided-onboarding", "another stall", |e| {
            e.stalls.len() >= stalls
        })
        .await;
    }
    let posted = slack.wait_for_calls(1).await;
    assert_eq!(posted[0].problems, Vec::<String>::new());
    assert_eq!(
        posted[0].json(),
        json!({"text": "Onboarding handoff: bob stalled 2 times; stuck before first_login"})
    );
    let created = hubspot.wait_for_calls(1).await;
    assert_eq!(created[0].problems, Vec::<String>::new());
    let task = created[0].json();
    assert_eq!(task["properties"]["hs_task_subject"], "Help bob onboard");
    assert_eq!(task["properties"]["hs_task_priority"], "HIGH");
    assert_eq!(task["properties"]["hubspot_owner_id"], OWNER);
    assert_eq!(task["associations"][0]["to"]["id"], "201");
    let body = task["properties"]["hs_task_body"]
        .as_str()
        .unwrap_or_default();
    assert!(
        body.starts_with("bob stalled 2 times; stuck before first_login.\n\nWaymark message k1-"),
        "{body}"
    );
    let handoff = wait_for_some("the crm message delivered", || async {
        let customer = api.customer("bob").await?;
        customer
            .messages_with_template("cs_handoff_task")
            .first()
            .filter(|m| m.status == MessageStatus::Delivered)
            .map(|m| (*m).clone())
    })
    .await;
    assert_eq!(handoff.provider_id.as_deref(), Some("90001"));
}
