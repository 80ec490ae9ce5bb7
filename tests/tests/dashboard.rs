//! The dashboard (issue 14) end to end: a real headless Chromium, driven through WebDriver
//! (chromedriver, started here on an ephemeral port), signs in, reads a journey filled by the
//! guided-onboarding example and checks its funnel against `GET /v1/journeys/{name}/report`,
//! opens a customer's timeline, claims and resolves a task (the journey gets the resolution),
//! requeues a dead letter, and signs out. The security checks are plain HTTP.
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver`, which
//! `cargo xtask test` installs when missing. Each page's screenshot is kept under
//! `target/screenshots/`.

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use waymark_api::backtests::{BacktestRequest, BacktestStatus, Candidate};
use waymark_tests::dashboard::{
    cookie_of, csrf_of, get, http, post_form, session_set_cookie, sign_in,
};
use waymark_tests::reqwest::header;
use waymark_tests::*;

const EMAIL: &str = "email";
const JOURNEY: &str = "guided-onboarding";
/// `tests/guests/adaptive` (issue 13): an experiment allocated by Thompson sampling.
const ADAPTIVE: &str = "adaptive";

// ---------------------------------------------------------------------------------------------
// chromedriver and Chromium
// ---------------------------------------------------------------------------------------------

/// chromedriver and the WebDriver session on it; the driver is killed on drop.
struct Driver {
    process: Child,
    browser: Browser,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The first of `names` found on `PATH` or in `/usr/bin`.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push("/usr/bin".into());
    dirs.push("/usr/lib/chromium".into());
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// A free loopback port (bound, read, released: chromedriver takes it at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn start_browser() -> Driver {
    let driver = find_program(&["chromedriver"]).unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed: run the end-to-end tests with `cargo xtask test`, \
             which installs Debian's `chromium` and `chromium-driver` when missing"
        )
    });
    let chromium =
        find_program(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
            panic!("chromium is not installed: run `cargo xtask test`, which installs it")
        });
    let port = free_port();
    let process = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
    let url = format!("http://127.0.0.1:{port}");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1360,1500"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = wait_for_some("chromedriver to accept a session", || {
        let (caps, connector, url) = (caps.clone(), connector.clone(), url.clone());
        async move {
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&url)
                .await
                .ok()
        }
    })
    .await;
    Driver { process, browser }
}

/// Saves the page's screenshot as `target/screenshots/<name>.png`.
async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    let dir = target_dir().join("screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshots folder");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot written");
}

async fn text(browser: &Browser, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .expect("its text")
}

async fn attr(browser: &Browser, css: &str, name: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .attr(name)
        .await
        .expect("the attribute")
        .unwrap_or_default()
}

async fn fill(browser: &Browser, css: &str, value: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .send_keys(value)
        .await
        .expect("typed");
}

async fn click(browser: &Browser, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .expect("clicked");
}

async fn path(browser: &Browser) -> String {
    browser
        .current_url()
        .await
        .expect("a url")
        .path()
        .to_string()
}

/// Waits for the page at `expected` (a click that submits a form returns before the next
/// page has loaded).
async fn wait_for_path(browser: &Browser, expected: &str) {
    wait_until(&format!("the browser at {expected}"), || async {
        path(browser).await == expected
    })
    .await;
}

/// Waits until the element `css` exists and its text contains `needle`.
async fn wait_for_text(browser: &Browser, css: &str, needle: &str) {
    wait_until(&format!("{css} to say {needle:?}"), || async {
        match browser.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.is_ok_and(|t| t.contains(needle)),
            Err(_) => false,
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// the world: guided onboarding with stalls, tasks and a dead letter
// ---------------------------------------------------------------------------------------------

/// Ada logs in, bob and cyd never do: after four days both are handed to customer success,
/// and one of the first nudges was refused for good by the provider (a dead letter).
async fn guided_world() -> (Example, String) {
    // The journey hands stallers to customer success through Slack and a CRM task too.
    let world = Example::start(JOURNEY, &[EMAIL, "slack", "crm"]).await;
    let (api, admin) = (world.api(), world.admin());
    let key = world.tenant.api_key.as_str();
    world
        .post(&[
            event("ada-signed-up", "ada", "signed_up"),
            event("bob-signed-up", "bob", "signed_up"),
            event("cyd-signed-up", "cyd", "signed_up"),
            event("ada-logged-in", "ada", "logged_in"),
        ])
        .await;
    for customer in ["ada", "bob", "cyd"] {
        world.delivered(EMAIL, "welcome", customer).await;
    }
    world
        .wait_for("ada", "first_login reached", |e| {
            e.milestone("first_login").is_some()
        })
        .await;
    // The next request the provider sees is refused with 400: permanent.
    world.sink.respond_next(1, StatusCode::BAD_REQUEST);
    admin.advance_clock(2 * DAY_MS).await;
    let dead = wait_for_some("a dead letter", || async {
        let (status, body) = api
            .request(Method::GET, "/v1/dead-letters", Some(key), Body::Empty)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["dead_letters"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    admin.advance_clock(2 * DAY_MS).await;
    wait_for_some("two open cs tasks", || async {
        let tasks = api
            .tasks(TaskQuery {
                status: Some(TaskStatus::Open),
                queue: Some("cs".into()),
                limit: None,
            })
            .await;
        (tasks.len() == 2).then_some(())
    })
    .await;
    (world, dead)
}

/// The report route's answer, once two reads in a row agree (nothing is still being
/// processed).
async fn settled_report(api: &Api) -> Value {
    wait_for_some("the report to settle", || async {
        let first = api.report(JOURNEY).await;
        let second = api.report(JOURNEY).await;
        (first == second).then_some(first)
    })
    .await
}

#[tokio::test]
async fn an_operator_reads_the_funnel_works_the_queue_and_requeues_a_dead_letter_in_a_browser() {
    let (world, dead) = guided_world().await;
    let api = world.api();
    let key = Some(world.tenant.api_key.as_str());
    let base = world.server.url().to_string();
    let driver = start_browser().await;
    let b = &driver.browser;

    // Not signed in: every page leads to the sign-in form.
    b.goto(&format!("{base}/ui/journeys")).await.unwrap();
    assert_eq!(path(b).await, "/ui/sign-in");
    screenshot(b, "sign-in").await;
    fill(b, "#key", &world.tenant.api_key).await;
    click(b, "#sign-in").await;
    wait_for_path(b, "/ui/journeys").await;
    let report = settled_report(&api).await;
    let overall = &report["report"]["overall"];
    let row = format!("tr[data-journey=\"{JOURNEY}\"]");
    assert_eq!(
        text(b, &format!("{row} .entered")).await,
        overall["entered"].to_string()
    );
    screenshot(b, "journeys").await;

    // The journey: the funnel shown is the report route's.
    b.goto(&format!("{base}/ui/journeys/{JOURNEY}"))
        .await
        .unwrap();
    let report_after = settled_report(&api).await;
    assert_eq!(
        report, report_after,
        "the report moved while the page was read"
    );
    assert_eq!(text(b, "#entered").await, overall["entered"].to_string());
    // Account journeys (issue 12): the page says what its counts count.
    assert_eq!(attr(b, "#subject", "data-subject").await, "customer");
    assert_eq!(text(b, "#subject").await, "counts customers");
    assert_eq!(text(b, "#active").await, overall["active"].to_string());
    assert_eq!(
        text(b, "#stalled-now").await,
        overall["stalled_now"].to_string()
    );
    assert_eq!(
        text(b, "#stalled-ever").await,
        overall["stalled_ever"].to_string()
    );
    let milestones = overall["milestones"].as_array().expect("milestones");
    assert!(!milestones.is_empty());
    for m in milestones {
        let name = m["name"].as_str().unwrap();
        let cell = |class: &str| format!("tr[data-milestone=\"{name}\"] .{class}");
        let reached = attr(b, &cell("reached"), "data-value").await;
        assert_eq!(reached, m["reached"].to_string(), "{name} reached");
        let conversion = attr(b, &cell("conversion"), "data-value").await;
        match m["conversion"].as_f64() {
            Some(c) => assert_eq!(conversion.parse::<f64>().ok(), Some(c), "{name} conversion"),
            None => assert_eq!(conversion, "", "{name} conversion"),
        }
        let median = attr(b, &cell("median"), "data-value").await;
        match m["median_time_to_reach_ms"].as_i64() {
            Some(ms) => assert_eq!(median.parse::<i64>().ok(), Some(ms), "{name} median"),
            None => assert_eq!(median, "", "{name} median"),
        }
        for stalls in ["stalled_now", "stalled_ever"] {
            let shown = attr(b, &cell(&stalls.replace('_', "-")), "data-value").await;
            assert_eq!(shown, m[stalls].to_string(), "{name} {stalls}");
        }
    }
    assert!(overall["milestones"][0]["reached"].as_u64().unwrap() >= 1);
    let stalled_ever: u64 = milestones
        .iter()
        .map(|m| m["stalled_ever"].as_u64().unwrap())
        .sum();
    assert!(
        stalled_ever >= 1,
        "the world has a stall, per milestone too"
    );
    assert_eq!(text(b, "#backtests .empty").await, "No backtests.");
    screenshot(b, "journey").await;

    // A backtest of the live version over everything recorded: its diff shows on the page.
    let now = api.clock_now().await;
    let client = api.tenant_client().clone();
    let request = BacktestRequest {
        candidate: Candidate::stored(1),
        from: 0,
        to: now + 1,
        customers: None,
        sample_fraction: None,
        fidelity: false,
    };
    let started = client
        .start_backtest(JOURNEY, &request)
        .await
        .expect("a backtest");
    let done = wait_for_some("the backtest to finish", || {
        let (client, id) = (client.clone(), started.id.clone());
        async move {
            let bt = client.backtest(JOURNEY, &id).await.ok()?;
            (bt.status == BacktestStatus::Done).then_some(bt)
        }
    })
    .await;
    let result = done.result.expect("a finished backtest has a result");
    b.refresh().await.unwrap();
    let section = format!("#backtest-{}", done.id);
    assert_eq!(attr(b, &section, "data-status").await, "done");
    assert!(!result.diff.milestones.is_empty());
    for m in &result.diff.milestones {
        let reached = format!("{section} tr[data-milestone=\"{}\"] .reached", m.name);
        assert_eq!(
            attr(b, &reached, "data-live").await,
            m.reached.live.to_string()
        );
        assert_eq!(
            attr(b, &reached, "data-candidate").await,
            m.reached.candidate.to_string()
        );
    }
    assert_eq!(
        attr(b, &format!("{section} .customers-changed"), "data-value").await,
        result.diff.customers_changed.to_string()
    );
    screenshot(b, "journey-backtest").await;

    // Issue 13: an experiment's allocation shows beside its arms, as the report says it —
    // the adaptive journey allocates by Thompson sampling on its goal milestone.
    api.upload_journey(ADAPTIVE, artifacts().component(ADAPTIVE_CRATE))
        .await;
    world
        .post(&[event("eve-signed-up", "eve", "signed_up")])
        .await;
    api.wait_for_enrollment("eve", ADAPTIVE, "an arm assigned", |e| {
        !e.variants.is_empty()
    })
    .await;
    let adaptive = api.report(ADAPTIVE).await;
    let offer = &adaptive["report"]["experiments"]["offer"];
    assert_eq!(offer["allocation"], "thompson", "{adaptive:#}");
    b.goto(&format!("{base}/ui/journeys/{ADAPTIVE}"))
        .await
        .unwrap();
    let allocation = ".allocation[data-experiment=\"offer\"]";
    assert_eq!(
        attr(b, allocation, "data-allocation").await,
        offer["allocation"].as_str().unwrap()
    );
    assert_eq!(
        attr(b, allocation, "data-goal").await,
        offer["metric"].as_str().unwrap()
    );
    assert_eq!(
        text(b, allocation).await,
        "Allocation: adaptive, Thompson sampling on goal milestone bought"
    );
    screenshot(b, "journey-allocation").await;

    // A customer's timeline: bob signed up (the event), entered, stalled, was nudged, and was
    // handed off.
    b.goto(&format!("{base}/ui/customers/bob")).await.unwrap();
    assert_eq!(text(b, "#customer-id").await, "bob");
    for kind in ["event", "enrollment", "stall", "send", "task"] {
        b.find(Locator::Css(&format!("#timeline li[data-kind=\"{kind}\"]")))
            .await
            .unwrap_or_else(|e| panic!("no {kind} on bob's timeline: {e}"));
    }
    screenshot(b, "customer").await;

    // The handoff queue: claim bob's task, then resolve it.
    b.goto(&format!("{base}/ui/tasks?queue=cs&status=open"))
        .await
        .unwrap();
    let bob_row = "tr[data-customer=\"bob\"]";
    let task_id = attr(b, bob_row, "data-task").await;
    screenshot(b, "tasks").await;
    fill(
        b,
        &format!("{bob_row} form.claim input[name=assignee]"),
        "grace@cs",
    )
    .await;
    click(b, &format!("{bob_row} form.claim button")).await;
    wait_for_text(b, "#done", "claimed").await;
    fill(
        b,
        &format!("{bob_row} form.resolve input[name=resolution]"),
        "call booked",
    )
    .await;
    click(b, &format!("{bob_row} form.resolve button")).await;
    wait_for_text(b, "#done", "resolved").await;
    let (status, task) = api
        .request(
            Method::GET,
            &format!("/v1/tasks/{task_id}"),
            key,
            Body::Empty,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["status"], "resolved");
    assert_eq!(task["assignee"], "grace@cs");
    assert_eq!(task["resolution"], "call booked");
    // The journey got the resolution as `POST /v1/tasks/{id}/resolve` sends it: its follow-up.
    let follow_up = world.delivered(EMAIL, "cs_follow_up", "bob").await;
    assert_eq!(follow_up.payload()["resolution"], "call booked");
    let bob = api.customer("bob").await.expect("bob");
    assert!(bob.messages_with_template("cs_follow_up").len() == 1);

    // Dead letters: requeue the refused nudge; the provider takes it now.
    b.goto(&format!("{base}/ui/dead-letters")).await.unwrap();
    screenshot(b, "dead-letters").await;
    click(
        b,
        &format!("tr[data-message=\"{dead}\"] form.requeue button"),
    )
    .await;
    wait_for_text(b, "#done", "requeued 1").await;
    wait_for_some("the requeued message delivered", || async {
        let (_, body) = api
            .request(Method::GET, "/v1/dead-letters", key, Body::Empty)
            .await;
        let gone = body["dead_letters"]
            .as_array()
            .is_some_and(|d| d.iter().all(|m| m["id"] != dead.as_str()));
        gone.then_some(())
    })
    .await;
    let delivered = wait_for_some("its delivery", || async {
        for customer in ["bob", "cyd"] {
            if let Some(c) = api.customer(customer).await {
                if let Some(m) = c.messages.iter().find(|m| m.id == dead) {
                    return (m.status == "delivered").then_some(m.id.clone());
                }
            }
        }
        None
    })
    .await;
    assert_eq!(delivered, dead);

    b.goto(&format!("{base}/ui/channels")).await.unwrap();
    screenshot(b, "channels").await;

    // Sign out: the session is gone.
    click(b, "#sign-out").await;
    wait_for_path(b, "/ui/sign-in").await;
    b.goto(&format!("{base}/ui/journeys")).await.unwrap();
    assert_eq!(path(b).await, "/ui/sign-in");

    // Another tenant signed in sees none of acme's customers or tasks.
    let other = world.admin().create_tenant("other").await;
    let http = http();
    let session = sign_in(&http, &base, &other.api_key)
        .await
        .expect("other's admin key signs in");
    let (status, _) = get(&http, &base, "/ui/customers/bob", &session.cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = post_form(
        &http,
        &base,
        &format!("/ui/tasks/{task_id}/claim"),
        &session.cookie,
        &[("csrf", &session.csrf), ("assignee", "mallory")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    assert!(page.contains("<html"), "an error page is HTML: {page}");
}

// ---------------------------------------------------------------------------------------------
// security, over plain HTTP
// ---------------------------------------------------------------------------------------------

async fn create_key(api: &Api, admin_key: &str, scope: &str) -> String {
    let (status, body) = api
        .request(
            Method::POST,
            "/v1/keys",
            Some(admin_key),
            json!({ "scope": scope, "name": format!("{scope} key") }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().expect("the key").to_string()
}

#[tokio::test]
async fn only_a_tenants_admin_or_read_key_signs_in_and_every_form_needs_its_token() {
    let server = Server::start(ServerOptions::default()).await;
    let tenant = server.api().create_tenant("acme").await;
    let api = server.as_tenant(&tenant);
    let base = server.url().to_string();
    let http = http();

    // Wrong keys and write keys cannot sign in; an empty key neither.
    assert_eq!(
        sign_in(&http, &base, "wmk_not_a_key").await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        sign_in(&http, &base, "").await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let write = create_key(&api, &tenant.api_key, "write").await;
    assert_eq!(
        sign_in(&http, &base, &write).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );

    // A read key signs in, and may look but not act.
    let read = create_key(&api, &tenant.api_key, "read").await;
    let reader = sign_in(&http, &base, &read)
        .await
        .expect("a read key signs in");
    let (status, _) = post_form(
        &http,
        &base,
        "/ui/dead-letters/requeue",
        &reader.cookie,
        &[("csrf", &reader.csrf), ("channel", "email")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The admin key's session cookie: HttpOnly, SameSite=Strict, Path=/ui; no Secure over
    // plain HTTP.
    let session = sign_in(&http, &base, &tenant.api_key)
        .await
        .expect("signed in");
    let attributes: Vec<&str> = session.set_cookie.split(';').map(str::trim).collect();
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(
            attributes.contains(&wanted),
            "{wanted} missing: {}",
            session.set_cookie
        );
    }
    assert!(!attributes.contains(&"Secure"), "{}", session.set_cookie);
    assert_eq!(session.csrf.len(), 64, "a 256-bit token");

    // Behind a TLS-terminating proxy (X-Forwarded-Proto: https) the cookie is Secure.
    let form = http
        .get(format!("{base}/ui/sign-in"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let pre = form.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(pre.split(';').any(|a| a.trim() == "Secure"), "{pre}");
    let token = csrf_of(&form.text().await.unwrap());
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("key", tenant.api_key.as_str()), ("csrf", &token)])
        .finish();
    let answer = http
        .post(format!("{base}/ui/sign-in"))
        .header("x-forwarded-proto", "https")
        .header(header::COOKIE, cookie_of(&pre))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let secure = session_set_cookie(answer.headers()).expect("a session cookie");
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(
            secure.split(';').any(|a| a.trim() == wanted),
            "{wanted}: {secure}"
        );
    }

    // Forms without their CSRF token, or with another session's, are refused with 403 and
    // do nothing; the sign-in form too.
    for fields in [
        vec![("channel", "email")],
        vec![("csrf", reader.csrf.as_str()), ("channel", "email")],
    ] {
        let (status, page) = post_form(
            &http,
            &base,
            "/ui/dead-letters/requeue",
            &session.cookie,
            &fields,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
        assert!(page.contains("CSRF"), "{page}");
    }
    let (status, _) = post_form(&http, &base, "/ui/sign-out", &session.cookie, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post_form(&http, &base, "/ui/sign-in", "", &[("key", &tenant.api_key)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Unknown pages are HTML 404s; with its token, sign-out ends the session.
    let (status, page) = get(&http, &base, "/ui/nowhere", &session.cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("<html"), "{page}");
    // Malformed input and a wrong method are readable pages too, with their status.
    let (status, page) = get(&http, &base, "/ui/tasks?page=many", &session.cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("<html") && page.contains("page"), "{page}");
    let (status, page) = get(&http, &base, "/ui/sign-out", &session.cookie).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(page.contains("<html"), "{page}");
    let (status, page) = get(&http, &base, "/ui/journeys/nope", &session.cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("no journey named"), "{page}");
    let (status, _) = post_form(
        &http,
        &base,
        "/ui/sign-out",
        &session.cookie,
        &[("csrf", &session.csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = get(&http, &base, "/ui/journeys", &session.cookie).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "signed out: back to the form"
    );

    // Revoking a key ends its sessions at once.
    let (status, keys) = api
        .request(Method::GET, "/v1/keys", Some(&tenant.api_key), Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let prefix = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scope"] == "read")
        .and_then(|k| k["prefix"].as_str())
        .expect("the read key's prefix")
        .to_string();
    let (status, body) = api
        .request(
            Method::DELETE,
            &format!("/v1/keys/{prefix}"),
            Some(&tenant.api_key),
            Body::Empty,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, _) = get(&http, &base, "/ui/journeys", &reader.cookie).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a revoked key's session is over"
    );
}
