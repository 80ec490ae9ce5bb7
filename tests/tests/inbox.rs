//! The in-app inbox, one-click unsubscribe and subscription topics (issue 11), end to end on the
//! real server. The messenger test journey (`tests/guests/messenger`) sends what each `notify`
//! event asks for, through `inapp` (registered as the host's own in-app channel) or `webhook`
//! (the webhook plugin, delivering to a loopback sink), and writes down the engagement it hears.
//!
//! - The backend lists a customer's inbox with its key, newest first, in pages; a customer's
//!   token (minted by the API, or by the test itself from the documented format, as a tenant's
//!   backend would) lists only that customer's; another customer's message is a 404, a forged
//!   or expired token a 401; the customer routes answer CORS, the tenant routes do not.
//! - Marking a message clicked reaches the sending journey as `clicked`.
//! - The unsubscribe link's page changes nothing; its one-click POST (RFC 8058) leaves that
//!   channel: the next send there is recorded `suppressed` while `inapp` still delivers.
//! - Leaving the topic "product tips" keeps "billing".

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use waymark_api::inbox::{InboxPage, InboxTokenRequest, Subscriptions};
use waymark_client::InboxQuery;
use waymark_tests::artifacts::MESSENGER_CRATE;
use waymark_tests::*;

const JOURNEY: &str = "messenger";
/// Where customers reach the server, as the operator says (`--public-url`); the tests call the
/// server itself with the path of the links.
const PUBLIC_URL: &str = "https://waymark.test";

struct World {
    server: Server,
    sink: Sink,
    tenant: CreatedTenant,
}

impl World {
    async fn start() -> World {
        let server = Server::start(ServerOptions {
            args: vec!["--public-url".into(), PUBLIC_URL.into()],
            ..ServerOptions::default()
        })
        .await;
        let sink = Sink::start();
        let (tenant, _) = tenant_with_journey(
            &server,
            "acme",
            Some((&sink, &["webhook"])),
            JOURNEY,
            artifacts().component(MESSENGER_CRATE),
        )
        .await;
        let world = World {
            server,
            sink,
            tenant,
        };
        let inapp = world
            .client()
            .register_inapp_channel("inapp")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inapp.kind.as_deref(), Some("inapp"));
        world
    }

    fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    fn client(&self) -> Client {
        self.api().tenant_client().clone()
    }

    /// A client acting with a customer's inbox token.
    fn as_customer(&self, token: &str) -> Client {
        self.client().with_token(Some(token))
    }

    /// The journey sends `payload` to `customer` through `channel` with `template`.
    async fn notify(
        &self,
        id: &str,
        customer: &str,
        channel: &str,
        template: &str,
        payload: Value,
    ) {
        let answer = self
            .api()
            .post_events(&[event_with(
                id,
                customer,
                "notify",
                json!({"channel": channel, "template": template, "payload": payload}),
            )])
            .await;
        assert_eq!(answer.accepted, 1, "{answer:?}");
    }

    async fn inbox(&self, customer: &str, query: &InboxQuery) -> InboxPage {
        self.client()
            .customer_inbox(customer, query)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until the backend sees `n` messages in the customer's inbox.
    async fn inbox_of(&self, customer: &str, n: usize) -> InboxPage {
        wait_for_some(&format!("{n} messages in {customer}'s inbox"), || async {
            let page = self.inbox(customer, &InboxQuery::default()).await;
            (page.messages.len() == n).then_some(page)
        })
        .await
    }

    async fn token(&self, customer: &str) -> String {
        self.client()
            .mint_inbox_token(customer, &InboxTokenRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .token
    }

    /// The customer's message of `template` once it has a status other than `pending`.
    async fn settled_message(&self, customer: &str, template: &str) -> Message {
        wait_for_some(
            &format!("{customer}'s {template} message settled"),
            || async {
                self.api().customer(customer).await.and_then(|c| {
                    c.messages
                        .into_iter()
                        .find(|m| m.template == template && m.status != MessageStatus::Pending)
                })
            },
        )
        .await
    }

    async fn subscriptions(&self, customer: &str) -> Subscriptions {
        self.client()
            .subscriptions(customer)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A token minted as `docs/API.md` § In-app inbox says a tenant's backend may mint it.
fn mint(secret: &str, tenant: &str, customer: &str, expires_at: i64) -> String {
    let unsigned = format!(
        "wmi1.{}.{}.{expires_at}",
        URL_SAFE_NO_PAD.encode(tenant),
        URL_SAFE_NO_PAD.encode(customer)
    );
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(unsigned.as_bytes());
    format!(
        "{unsigned}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::test]
async fn customers_read_only_their_own_inbox_and_a_click_reaches_the_journey() {
    let world = World::start().await;
    let api = world.api();
    // A stored in-app template, whose link is the message's own unsubscribe URL.
    let (status, stored) = api
        .request(
            Method::PUT,
            "/v1/templates/tip",
            Some(&world.tenant.api_key),
            json!({"channel": "inapp", "default_locale": "en", "locales": {"en": {
                "title": "A tip for {{ customer.id }}",
                "body": "{{ payload.text }}",
                "url": "{{ message.unsubscribe_url }}"
            }}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");

    world
        .notify(
            "a1",
            "ada",
            "inapp",
            "welcome",
            json!({"title": "Welcome", "body": "Hi Ada", "url": "/start"}),
        )
        .await;
    world
        .notify(
            "b1",
            "bob",
            "inapp",
            "welcome",
            json!({"title": "Welcome", "body": "Hi Bob"}),
        )
        .await;
    world.inbox_of("ada", 1).await;
    api.advance_clock(MINUTE_MS).await;
    world
        .notify(
            "a2",
            "ada",
            "inapp",
            "tip",
            json!({"text": "Try the keyboard shortcuts"}),
        )
        .await;

    // The backend: newest first, in pages.
    let all = world.inbox_of("ada", 2).await;
    let (tip, welcome) = (&all.messages[0], &all.messages[1]);
    assert_eq!(tip.title.as_deref(), Some("A tip for ada"));
    assert_eq!(tip.body.as_deref(), Some("Try the keyboard shortcuts"));
    let link = tip.url.as_deref().unwrap_or_default();
    assert!(link.starts_with(&format!("{PUBLIC_URL}/u/")), "{link}");
    assert_eq!(
        (
            welcome.title.as_deref(),
            welcome.body.as_deref(),
            welcome.url.as_deref()
        ),
        (Some("Welcome"), Some("Hi Ada"), Some("/start"))
    );
    assert_eq!(
        (tip.journey.as_str(), tip.channel.as_str()),
        (JOURNEY, "inapp")
    );
    let first = world
        .inbox(
            "ada",
            &InboxQuery {
                limit: Some(1),
                ..InboxQuery::default()
            },
        )
        .await;
    assert_eq!(first.messages, all.messages[..1]);
    let second = world
        .inbox(
            "ada",
            &InboxQuery {
                limit: Some(1),
                cursor: first.next_cursor.clone(),
                ..InboxQuery::default()
            },
        )
        .await;
    assert_eq!(second.messages, all.messages[1..]);
    assert_eq!(second.next_cursor, None);
    // Delivered, as any channel: the journey counted it.
    let ada = world.settled_message("ada", "tip").await;
    assert_eq!(ada.status, MessageStatus::Delivered);

    // Each customer's token lists only their own.
    let ada_token = world.token("ada").await;
    let bob_token = world.token("bob").await;
    let own = world
        .as_customer(&ada_token)
        .inbox(&InboxQuery::default())
        .await
        .unwrap();
    assert_eq!(own.messages, all.messages);
    let bobs = world
        .as_customer(&bob_token)
        .inbox(&InboxQuery::default())
        .await
        .unwrap();
    assert_eq!(bobs.messages.len(), 1);
    assert_eq!(bobs.messages[0].body.as_deref(), Some("Hi Bob"));

    // Another customer's message is not found; a forged or expired token is refused.
    let path = format!("/v1/inbox/{}/clicked", tip.id);
    assert_error(
        &api.request(Method::POST, &path, Some(&bob_token), Body::Empty)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let parts: Vec<&str> = ada_token.split('.').collect();
    let forged = format!(
        "{}.{}.{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode("bob"),
        parts[3],
        parts[4]
    );
    for token in [forged.as_str(), "wmi1.junk", "not-a-token"] {
        assert_error(
            &api.request(Method::GET, "/v1/inbox", Some(token), Body::Empty)
                .await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    // A tenant key is a credential, not this route's.
    assert_error(
        &api.request(
            Method::GET,
            "/v1/inbox",
            Some(&world.tenant.api_key),
            Body::Empty,
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // The tenant's backend mints tokens itself with the secret; the secret a rotation
    // replaced still verifies tokens signed before it.
    let secret = world.client().rotate_inbox_secret().await.unwrap();
    assert!(secret.previous_still_valid);
    assert!(world
        .as_customer(&ada_token)
        .inbox(&InboxQuery::default())
        .await
        .is_ok());
    let minted = mint(&secret.secret, &world.tenant.id, "ada", now_seconds() + 600);
    let theirs = world
        .as_customer(&minted)
        .inbox(&InboxQuery::default())
        .await
        .unwrap();
    assert_eq!(theirs.messages.len(), 2);
    let expired = mint(&secret.secret, &world.tenant.id, "ada", now_seconds() - 1);
    assert_error(
        &api.request(Method::GET, "/v1/inbox", Some(&expired), Body::Empty)
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // Marking: clicked reaches the journey as `clicked`, counted on the channel.
    let ada_client = world.as_customer(&ada_token);
    let marked = ada_client
        .mark_inbox_message(&tip.id, "clicked")
        .await
        .unwrap();
    assert!(marked.clicked_at.is_some());
    let again = ada_client
        .mark_inbox_message(&tip.id, "clicked")
        .await
        .unwrap();
    assert_eq!(
        again.clicked_at, marked.clicked_at,
        "the first click is kept"
    );
    ada_client
        .mark_inbox_message(&welcome.id, "read")
        .await
        .unwrap();
    let heard = format!("clicked:{}", tip.id);
    let enrollment = api
        .wait_for_enrollment("ada", JOURNEY, "the click and the read heard", |e| {
            let state = String::from_utf8_lossy(&e.state);
            state.lines().any(|l| l == heard) && state.contains("opened:")
        })
        .await;
    let summary = &enrollment.channels["inapp"];
    assert_eq!((summary.clicked, summary.opened), (1, 1), "{summary:?}");
    assert_error(
        &api.request(
            Method::POST,
            &format!("/v1/inbox/{}/liked", tip.id),
            Some(&ada_token),
            Body::Empty,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Archived messages leave the default listing.
    ada_client
        .mark_inbox_message(&welcome.id, "archived")
        .await
        .unwrap();
    let listed = ada_client.inbox(&InboxQuery::default()).await.unwrap();
    assert_eq!(listed.messages.len(), 1);
    let everything = ada_client
        .inbox(&InboxQuery {
            archived: true,
            ..InboxQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(everything.messages.len(), 2);

    // CORS: on the customer routes only.
    let http = reqwest::Client::new();
    let preflight = http
        .request(Method::OPTIONS, format!("{}/v1/inbox", world.server.url()))
        .header("Origin", "https://app.acme.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"*"[..])
    );
    let tenant_route = http
        .get(format!("{}/v1/customers/ada", world.server.url()))
        .header("Origin", "https://app.acme.example")
        .bearer_auth(&world.tenant.api_key)
        .send()
        .await
        .unwrap();
    assert!(tenant_route.status().is_success());
    assert!(tenant_route
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

/// The path of an unsubscribe link (the server is reached directly, not at its public URL).
fn link_path(url: &str) -> String {
    url.strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("not a link of {PUBLIC_URL}: {url}"))
        .to_string()
}

#[tokio::test]
async fn one_click_unsubscribe_stops_that_channel_and_its_page_changes_nothing() {
    let world = World::start().await;
    let api = world.api();
    world
        .notify("n1", "ada", "webhook", "news", json!({"issue": 1}))
        .await;
    let received = world.sink.wait_for_delivery("news", "ada").await;
    let url = received.payload()["unsubscribe_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no unsubscribe_url in {}", received.payload()))
        .to_string();
    let path = link_path(&url);

    // The page: a form, and nothing changes.
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}{path}", world.server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("text/html")));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\"") && html.contains("One-Click"),
        "{html}"
    );
    assert_eq!(world.subscriptions("ada").await, Subscriptions::default());

    // A link that does not verify.
    let (status, _) = api
        .request(Method::GET, &format!("{path}x"), None, Body::Empty)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // RFC 8058's one-click POST: no key, the body `List-Unsubscribe=One-Click`.
    let posted = http
        .post(format!("{}{path}", world.server.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(
        posted.status(),
        StatusCode::OK,
        "{}",
        posted.text().await.unwrap_or_default()
    );
    wait_until("ada left the webhook channel", || async {
        world.subscriptions("ada").await.channels == ["webhook"]
    })
    .await;
    let enrollment = api
        .wait_for_enrollment("ada", JOURNEY, "the unsubscribe heard", |e| {
            e.channels
                .get("webhook")
                .is_some_and(|s| s.unsubscribed == 1)
        })
        .await;
    assert!(String::from_utf8_lossy(&enrollment.state).contains("unsubscribed:"));

    // The next webhook send is suppressed; in-app still goes out.
    let before = world.sink.count();
    world
        .notify("n2", "ada", "webhook", "news2", json!({"issue": 2}))
        .await;
    world
        .notify(
            "n3",
            "ada",
            "inapp",
            "note",
            json!({"title": "Still here", "body": "in-app"}),
        )
        .await;
    assert_eq!(
        world.settled_message("ada", "news2").await.status,
        MessageStatus::Suppressed
    );
    assert_eq!(
        world.settled_message("ada", "note").await.status,
        MessageStatus::Delivered
    );
    world.inbox_of("ada", 1).await;
    assert_eq!(
        world.sink.count(),
        before,
        "nothing more reached the webhook"
    );

    // A POST without RFC 8058's body is refused.
    let bad = http
        .post(format!("{}{path}", world.server.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=Maybe")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn leaving_product_tips_keeps_billing() {
    let world = World::start().await;
    let client = world.client();
    let wanted = Subscriptions {
        topics: vec!["product tips".into()],
        ..Subscriptions::default()
    };
    // A customer who never sent an event has no subscriptions to show yet.
    assert!(client.subscriptions("ada").await.is_err());
    let answered = client.set_subscriptions("ada", &wanted).await.unwrap();
    assert_eq!(answered, wanted);
    world
        .notify(
            "t1",
            "ada",
            "inapp",
            "tips",
            json!({"title": "Tip", "body": "b", "topic": "product tips"}),
        )
        .await;
    world
        .notify(
            "t2",
            "ada",
            "inapp",
            "invoice",
            json!({"title": "Invoice", "body": "b", "topic": "billing"}),
        )
        .await;
    assert_eq!(
        world.settled_message("ada", "tips").await.status,
        MessageStatus::Suppressed
    );
    assert_eq!(
        world.settled_message("ada", "invoice").await.status,
        MessageStatus::Delivered
    );
    let inbox = world.inbox_of("ada", 1).await;
    assert_eq!(inbox.messages[0].title.as_deref(), Some("Invoice"));
    assert_eq!(world.subscriptions("ada").await, wanted);

    // PUT replaces: back in "product tips".
    client
        .set_subscriptions("ada", &Subscriptions::default())
        .await
        .unwrap();
    wait_until("ada's subscriptions emptied", || async {
        world.subscriptions("ada").await == Subscriptions::default()
    })
    .await;
    let (status, body) = world
        .api()
        .request(
            Method::PUT,
            "/v1/customers/ada/subscriptions",
            Some(&world.tenant.api_key),
            json!({"topics": ["ok"], "channel": ["misspelt"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
