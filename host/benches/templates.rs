//! What rendering a templated message adds to its delivery (issue 11): the cache lookup of the
//! pinned version, the render of the customer's locale, and the adapter payload with
//! `content` — everything `delivery::adapter_payload` does once the customer is loaded —
//! per message, and a version's one-off compile for comparison.
//!
//! `cargo bench -p waymark-host --bench templates` (or `--profile dev` for a quick figure: the
//! dependencies, minijinja among them, are optimised there too; the host's own code is not,
//! so that figure is an upper bound). Each scenario runs 7 rounds of a fixed number of calls
//! after a warm-up; it prints the median, fastest and slowest round in µs per message, and the
//! median per CPU time of the thread (what a message costs a core on a shared machine).
//!
//! Then the whole of a templated email's delivery, as the delivery loop does it once the
//! customer is loaded: render, `content`, and `deliver` through the real `email` plugin
//! (`waymark_email.wasm`, built by `cargo xtask test|bench`) to a loopback Postmark stand-in
//! in this process, one message at a time on a warm instance — beside the same delivery of an
//! untemplated payload, so the difference is what the template adds. Its CPU figure is the
//! process's (the stand-in and the HTTP client's work included), per message.

use serde_json::json;

/// The server's allocator (`host/src/main.rs`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};
use waymark_host::template::{
    compile, payload_with_content, ChannelKind, RenderInput, TemplateCache, TemplateError,
    TemplateSource,
};

const ROUNDS: usize = 7;
const CALLS: u32 = 20_000;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer to a timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// µs per call of `f`, per round: (wall, cpu).
fn measure(calls: u32, mut f: impl FnMut()) -> Vec<(f64, f64)> {
    for _ in 0..calls / 10 {
        f();
    }
    (0..ROUNDS)
        .map(|_| {
            let (wall, cpu) = (Instant::now(), thread_cpu());
            for _ in 0..calls {
                f();
            }
            let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(calls);
            (per(wall.elapsed()), per(thread_cpu() - cpu))
        })
        .collect()
}

fn report(what: &str, rounds: Vec<(f64, f64)>) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (wall, fastest, slowest) = median(rounds.iter().map(|r| r.0).collect());
    let (cpu, _, _) = median(rounds.iter().map(|r| r.1).collect());
    println!("{what:<58} {wall:>8.2} µs  ({fastest:.2}–{slowest:.2})  cpu {cpu:>8.2} µs");
}

/// The renewal-style email of `docs/API.md` § Templates: subject, text and HTML in two locales,
/// a date filter in the customer's zone, a loop over payload items.
fn email() -> TemplateSource {
    let parts = |subject: &str, greeting: &str| {
        BTreeMap::from([
            ("subject".to_string(), format!("{subject}, {{{{ customer.first_name }}}}")),
            (
                "text".to_string(),
                format!(
                    "{greeting} {{{{ customer.first_name }}}},\nYour {{{{ payload.plan }}}} plan renews on \
                     {{{{ customer.renewal_date | date(\"%d %B %Y\") }}}}.\n\
                     {{% for item in payload.items %}}- {{{{ item.name }}}}: {{{{ item.price }}}}\n{{% endfor %}}"
                ),
            ),
            (
                "html".to_string(),
                format!(
                    "<p>{greeting} {{{{ customer.first_name }}}},</p><p>Your {{{{ payload.plan }}}} plan renews on \
                     {{{{ customer.renewal_date | date(\"%d %B %Y\") }}}}.</p><ul>\
                     {{% for item in payload.items %}}<li>{{{{ item.name }}}}: {{{{ item.price }}}}</li>{{% endfor %}}</ul>"
                ),
            ),
        ])
    };
    TemplateSource {
        channel: ChannelKind::Email,
        default_locale: "en".into(),
        locales: BTreeMap::from([
            ("en".to_string(), parts("Your renewal", "Hi")),
            ("pt-BR".to_string(), parts("Sua renovação", "Oi")),
        ]),
    }
}

fn sms() -> TemplateSource {
    TemplateSource {
        channel: ChannelKind::Sms,
        default_locale: "en".into(),
        locales: BTreeMap::from([(
            "en".to_string(),
            BTreeMap::from([(
                "text".to_string(),
                "Hi {{ customer.first_name }}, your code is {{ payload.code }}".to_string(),
            )]),
        )]),
    }
}

fn main() {
    let attributes = json!({
        "first_name": "Ana", "last_name": "Souza", "email": "ana@example.com", "plan": "pro",
        "locale": "pt-BR", "timezone": "America/Sao_Paulo", "renewal_date": "2026-12-01T12:00:00Z",
        "company": "Acme", "seats": 12, "signed_up_at": 1_767_225_600_000i64,
    });
    let attributes = attributes.as_object().cloned().unwrap_or_default();
    let payload = json!({"plan": "pro", "code": "493021", "customer_id": "ana",
        "items": [{"name": "Seats", "price": "$120"}, {"name": "Support", "price": "$40"}]});
    let input = RenderInput {
        customer_id: "ana",
        attributes: &attributes,
        payload: &payload,
        message_id: "k1-0123456789abcdef0123456789abcdef-0",
        channel: "email",
        unsubscribe_url: None,
    };
    println!(
        "templates bench: {ROUNDS} rounds of {CALLS} calls; median (fastest–slowest), per message"
    );
    for (name, source) in [
        ("email, 3 parts, pt-BR, date filter, loop", email()),
        ("sms, 1 part", sms()),
    ] {
        let cache = TemplateCache::default();
        let render = || {
            let compiled = cache
                .get_or_compile::<TemplateError>("acme", "renewal", 1, || Ok(source.clone()))
                .expect("compiles");
            let rendered = compiled.render(input).expect("renders");
            black_box(payload_with_content(&payload, "renewal", 1, rendered));
        };
        report(&format!("render + content, {name}"), measure(CALLS, render));
        let compiled = compile(&source).expect("compiles");
        report(
            &format!("render only, {name}"),
            measure(CALLS, || {
                black_box(compiled.render(input).expect("renders"));
            }),
        );
        report(
            &format!("compile a version (once per version), {name}"),
            measure(CALLS / 10, || {
                black_box(compile(&source).expect("compiles"));
            }),
        );
        assert_eq!(cache.compiles(), 1, "a version compiles once");
    }
    render_and_deliver(&attributes, &payload);
}

/// Rounds and messages of the render + deliver scenario (a delivery costs tens of µs).
const DELIVERY_ROUNDS: usize = 5;
const DELIVERIES: u32 = 2_000;

fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer to a timespec; CLOCK_PROCESS_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The `email` plugin as `cargo xtask` builds it.
fn email_plugin() -> Option<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    };
    std::fs::read(target.join("wasm32-wasip2/guest/waymark_email.wasm")).ok()
}

/// A Postmark stand-in answering `POST /email` as Postmark's API reference shows a success
/// (<https://postmarkapp.com/developer/api/email-api>): the token and JSON content type are
/// checked, the body is parsed, the answer names the recipient and a message id.
async fn postmark() -> u16 {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    async fn email(headers: HeaderMap, body: axum::body::Bytes) -> (StatusCode, String) {
        let token = headers
            .get("x-postmark-server-token")
            .and_then(|v| v.to_str().ok());
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        match (token, parsed) {
            (Some("bench-token"), Some(email)) if email["Subject"].is_string() => (
                StatusCode::OK,
                json!({"To": email["To"], "SubmittedAt": "2026-11-30T10:00:00Z",
                    "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817", "ErrorCode": 0,
                    "Message": "OK"})
                .to_string(),
            ),
            _ => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"ErrorCode": 300, "Message": "Invalid email request"}).to_string(),
            ),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/email", post(email));
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// µs per message of `deliver` for `DELIVERIES` messages, per round: (wall, process cpu).
fn measure_deliveries<F: std::future::Future<Output = ()>>(
    runtime: &tokio::runtime::Runtime,
    mut one: impl FnMut(u32) -> F,
) -> Vec<(f64, f64)> {
    runtime.block_on(async {
        for i in 0..DELIVERIES / 10 {
            one(i).await;
        }
    });
    (0..DELIVERY_ROUNDS)
        .map(|_| {
            let (wall, cpu) = (Instant::now(), process_cpu());
            runtime.block_on(async {
                for i in 0..DELIVERIES {
                    one(i).await;
                }
            });
            let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(DELIVERIES);
            (per(wall.elapsed()), per(process_cpu() - cpu))
        })
        .collect()
}

/// The same with `IN_FLIGHT` deliveries at a time, as the delivery loop runs them (up to 32):
/// while some wait on the provider, the others render and call.
fn measure_concurrent<F: std::future::Future<Output = ()>>(
    runtime: &tokio::runtime::Runtime,
    mut one: impl FnMut(u32) -> F,
) -> Vec<(f64, f64)> {
    concurrent_round(runtime, DELIVERIES / 10, &mut one);
    (0..DELIVERY_ROUNDS)
        .map(|_| concurrent_round(runtime, DELIVERIES, &mut one))
        .collect()
}

/// One round of `n` messages, `IN_FLIGHT` at a time: µs per message (wall, process cpu).
fn concurrent_round<F: std::future::Future<Output = ()>>(
    runtime: &tokio::runtime::Runtime,
    n: u32,
    one: &mut impl FnMut(u32) -> F,
) -> (f64, f64) {
    use futures::StreamExt;
    let (wall, cpu) = (Instant::now(), process_cpu());
    let started: Vec<F> = (0..n).map(one).collect();
    runtime.block_on(
        futures::stream::iter(started)
            .buffer_unordered(IN_FLIGHT)
            .for_each(|()| async {}),
    );
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    (per(wall.elapsed()), per(process_cpu() - cpu))
}

/// Pairs of rounds in the paired comparison: a round rendered beforehand, then a round
/// rendered in flight, in turn, so that whatever else the machine does drifts over both.
const PAIRS: usize = 15;

/// Deliveries in flight at once in the concurrent scenarios.
const IN_FLIGHT: usize = 16;

fn render_and_deliver(attributes: &waymark_host::model::Object, payload: &serde_json::Value) {
    use waymark_host::model::{Customer, DeliveryRequest};
    use waymark_host::sandbox::{Sandbox, SandboxConfig, DEFAULT_LIMITS};
    let Some(bytes) = email_plugin() else {
        println!("render + deliver: skipped, waymark_email.wasm is not built (run `cargo xtask test` once)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let port = runtime.block_on(postmark());
    let sandbox = Sandbox::new(SandboxConfig {
        // The stand-in is on loopback, which the operator allows here as tests and the demo do.
        allow_private_network: true,
        ..SandboxConfig::default()
    })
    .expect("a sandbox");
    let plugin = sandbox
        .compile_channel(&bytes)
        .expect("the email plugin compiles")
        .with_own_instances();
    let allowed = [format!("127.0.0.1:{port}")];
    let config = json!({"provider": "postmark", "base_url": format!("http://127.0.0.1:{port}"),
        "from": {"email": "hello@acme.example", "name": "Acme"}, "server_token": "bench-token"});
    let config = config.as_object().cloned().unwrap_or_default();
    let cache = TemplateCache::default();
    let source = email();
    let request = |id: u32, payload: serde_json::Value| DeliveryRequest {
        id: format!("k1-0123456789abcdef0123456789abcdef-{id}"),
        channel: "email".into(),
        customer: Customer {
            id: "ana".into(),
            attributes: attributes.clone(),
        },
        template: "renewal".into(),
        payload,
        config: config.clone(),
    };
    println!(
        "render + deliver: {DELIVERY_ROUNDS} rounds of {DELIVERIES} emails through the email \
         plugin (Postmark) to a loopback stand-in, one at a time; cpu = the whole process's"
    );
    // What the delivery loop does per templated message once the customer is loaded: the
    // cached version, its render for the customer's locale, the payload with `content`.
    let render = || {
        let compiled = cache
            .get_or_compile::<TemplateError>("acme", "renewal", 1, || Ok(source.clone()))
            .expect("compiles");
        let input = RenderInput {
            customer_id: "ana",
            attributes,
            payload,
            message_id: "k1-0123456789abcdef0123456789abcdef-0",
            channel: "email",
            unsubscribe_url: None,
        };
        compiled.render(input).expect("renders")
    };
    let with_content = |rendered| payload_with_content(payload, "renewal", 1, rendered);
    // The same email, its content written in the payload by the journey (the very text the
    // template renders, so both deliveries carry the same bytes): no template.
    let untemplated = {
        let mut p = payload.as_object().cloned().unwrap_or_default();
        p.extend(render().parts);
        serde_json::Value::Object(p)
    };
    let prerendered = with_content(render());
    let deliver = |request: DeliveryRequest| {
        let plugin = &plugin;
        let allowed = &allowed;
        async move {
            let receipt = plugin
                .deliver(&request, allowed, &DEFAULT_LIMITS)
                .await
                .expect("delivered");
            black_box(receipt);
        }
    };
    report(
        "deliver, payload as written (no template)",
        measure_deliveries(&runtime, |i| deliver(request(i, untemplated.clone()))),
    );
    report(
        "deliver, the templated payload rendered beforehand",
        measure_deliveries(&runtime, |i| deliver(request(i, prerendered.clone()))),
    );
    // The thread CPU spent in render + content alone, inside this loop.
    let mut in_render = Duration::ZERO;
    let mut renders = 0u32;
    report(
        "render + content + deliver, email 3 parts pt-BR",
        measure_deliveries(&runtime, |i| {
            let started = thread_cpu();
            let content = with_content(render());
            in_render += thread_cpu() - started;
            renders += 1;
            deliver(request(i, content))
        }),
    );
    println!(
        "{:<58} {:>8.2} µs of thread cpu per message",
        "  of which render + content, measured inside the loop",
        in_render.as_secs_f64() * 1e6 / f64::from(renders.max(1))
    );
    // The delivery loop's due messages rendered 16 at a time, then delivered: is what a render
    // costs beside a delivery its own work, or the caches a delivery leaves it cold?
    let mut batch: Vec<serde_json::Value> = Vec::new();
    report(
        "render 16 in a row, then deliver them (per message)",
        measure_deliveries(&runtime, |i| {
            if batch.is_empty() {
                batch.extend((0..16).map(|_| with_content(render())));
            }
            let content = batch.pop().expect("a rendered message");
            deliver(request(i, content))
        }),
    );
    println!(
        "the same, {IN_FLIGHT} deliveries in flight (futures are built first: a render happens \
         when its message is taken)"
    );
    report(
        "deliver, payload as written (no template), concurrent",
        measure_concurrent(&runtime, |i| deliver(request(i, untemplated.clone()))),
    );
    report(
        "deliver, templated payload rendered beforehand, concurrent",
        measure_concurrent(&runtime, |i| deliver(request(i, prerendered.clone()))),
    );
    report(
        "render + content + deliver, concurrent",
        measure_concurrent(&runtime, |i| {
            let (render, with_content, request, deliver) =
                (&render, &with_content, &request, &deliver);
            async move { deliver(request(i, with_content(render()))).await }
        }),
    );
    // What the template adds where it runs, read without the drift between scenarios: rounds
    // of the two in turn, the difference taken per pair, its median (and quartiles) reported.
    let mut added: Vec<f64> = (0..PAIRS)
        .map(|_| {
            let before = concurrent_round(&runtime, DELIVERIES, &mut |i| {
                deliver(request(i, prerendered.clone()))
            });
            let rendered = concurrent_round(&runtime, DELIVERIES, &mut |i| {
                let (render, with_content, request, deliver) =
                    (&render, &with_content, &request, &deliver);
                async move { deliver(request(i, with_content(render()))).await }
            });
            rendered.1 - before.1
        })
        .collect();
    added.sort_by(f64::total_cmp);
    println!(
        "{:<58} {:>8.2} µs of process cpu per message (quartiles {:.2}–{:.2}, {PAIRS} pairs)",
        "what rendering adds in flight, paired rounds",
        added[PAIRS / 2],
        added[PAIRS / 4],
        added[PAIRS * 3 / 4],
    );
}
