//! The dashboard's templates: minijinja, compiled once into one environment, HTML-escaped by
//! default (every template's name ends in `.html`, and minijinja escapes those), with the
//! filters pages use to show numbers, rates, durations and times.

use super::error::{UiError, UiResult};
use super::session::Signed;
use crate::model::Millis;
use minijinja::{context, Environment, Value};
use std::sync::OnceLock;

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("error.html", include_str!("templates/error.html")),
    ("journeys.html", include_str!("templates/journeys.html")),
    ("journey.html", include_str!("templates/journey.html")),
    ("customer.html", include_str!("templates/customer.html")),
    (
        "find_customer.html",
        include_str!("templates/find_customer.html"),
    ),
    ("tasks.html", include_str!("templates/tasks.html")),
    (
        "dead_letters.html",
        include_str!("templates/dead_letters.html"),
    ),
    ("channels.html", include_str!("templates/channels.html")),
    ("preview.html", include_str!("templates/preview.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Lenient: the API types leave out absent optional fields (an open task has no
        // assignee), and an absent value reads as none.
        for (name, source) in TEMPLATES {
            // The templates are part of the binary; `templates_compile` tests each one.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "dashboard template does not compile");
            }
        }
        env.add_filter("pct", pct);
        env.add_filter("duration", duration);
        env.add_filter("time", time);
        env.add_filter("num", num);
        env.add_filter("urlencode", |s: String| super::customer::encode_path(&s));
        env
    })
}

/// A rate (0..=1) as a percentage with one decimal; none as a dash.
fn pct(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r.is_finite() => format!("{:.1} %", r * 100.0),
        _ => "–".into(),
    }
}

/// Milliseconds as the two largest units (`2 d 4 h`, `3 min 5 s`); none as a dash.
fn duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "–".into() };
    let s = ms.max(0) / 1000;
    let units = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = s;
    for (size, name) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{} {name}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.is_empty() {
        format!("{} ms", ms.max(0))
    } else {
        parts.join(" ")
    }
}

/// Milliseconds since the epoch as a UTC date and time.
fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "–".into() };
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A count with thin-space thousands separators.
fn num(n: Option<i64>) -> String {
    let Some(n) = n else { return "–".into() };
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Renders page `name` in the frame (navigation, tenant, sign-out with its CSRF token).
pub fn page(name: &str, session: Option<&Signed>, ctx: Value) -> UiResult<String> {
    let frame = match session {
        Some(s) => context! {
            tenant => s.tenant.clone(),
            csrf_token => s.csrf.clone(),
            can_act => s.scope == crate::store::Scope::Admin,
        },
        None => context! { tenant => Value::from(()), can_act => false },
    };
    environment()
        .get_template(name)
        .and_then(|t| t.render(context! { ..ctx, ..frame }))
        .map_err(|e| UiError::Internal(format!("rendering {name}: {e:#}")))
}

/// An error page; if even that cannot render, the message as escaped text.
pub fn error_page(status: u16, title: &str, message: &str) -> String {
    let rendered = environment().get_template("error.html").and_then(|t| {
        t.render(context! {
            status, title, message, tenant => Value::from(()), can_act => false
        })
    });
    rendered.unwrap_or_else(|_| {
        let escaped = message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        format!("<!doctype html><title>{status} {title}</title><h1>{status} {title}</h1><p>{escaped}</p>")
    })
}

/// Any serializable value, for a template's context.
pub fn ser<T: serde::Serialize>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// Now, for "as of" lines: the host's clock (manual in tests and demos).
pub fn as_of(now: Millis) -> String {
    time(Some(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compile() {
        let env = environment();
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name} does not compile");
        }
    }

    #[test]
    fn values_read_as_people_write_them() {
        assert_eq!(pct(Some(0.4567)), "45.7 %");
        assert_eq!(pct(None), "–");
        assert_eq!(
            duration(Some(2 * 86_400_000 + 4 * 3_600_000 + 5)),
            "2 d 4 h"
        );
        assert_eq!(duration(Some(65_000)), "1 min 5 s");
        assert_eq!(duration(Some(0)), "0 s");
        assert_eq!(num(Some(1234567)), "1\u{2009}234\u{2009}567");
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn text_is_escaped() {
        let html = error_page(404, "Not Found", "<script>x</script>");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
    }
}
