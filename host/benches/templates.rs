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

use serde_json::json;
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
}
