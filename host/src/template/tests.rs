//! Rendering as a tenant sees it: parts per locale, strict variables, dates in the customer's
//! zone, escapes per part, errors that say where.

use super::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn source(channel: ChannelKind, locales: &[(&str, &[(&str, &str)])]) -> TemplateSource {
    TemplateSource {
        channel,
        default_locale: locales[0].0.to_string(),
        locales: locales
            .iter()
            .map(|(tag, parts)| {
                let parts: BTreeMap<String, String> = parts
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (tag.to_string(), parts)
            })
            .collect(),
    }
}

fn render(
    t: &TemplateSource,
    attributes: Value,
    payload: Value,
) -> Result<Rendered, TemplateError> {
    let attributes = attributes.as_object().cloned().unwrap_or_default();
    compile(t)?.render(RenderInput {
        customer_id: "ada",
        attributes: &attributes,
        payload: &payload,
        message_id: "k1-abc-0",
        channel: "email",
        unsubscribe_url: None,
    })
}

fn part<'a>(r: &'a Rendered, name: &str) -> &'a str {
    r.parts[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {r:?}"))
}

#[test]
fn an_email_renders_customer_payload_and_message_variables() {
    let t = source(
        ChannelKind::Email,
        &[(
            "en",
            &[
                ("subject", "Welcome, {{ customer.first_name }}"),
                ("text", "Plan {{ payload.plan }} for {{ customer.id }} ({{ message.id }} via {{ message.channel }})"),
                ("html", "<p>Hi {{ customer.first_name }}</p>"),
            ],
        )],
    );
    let r = render(&t, json!({"first_name": "Ada <&>"}), json!({"plan": "pro"})).unwrap();
    assert_eq!(r.locale, "en");
    assert_eq!(part(&r, "subject"), "Welcome, Ada <&>");
    assert_eq!(part(&r, "text"), "Plan pro for ada (k1-abc-0 via email)");
    assert_eq!(
        part(&r, "html"),
        "<p>Hi Ada &lt;&amp;&gt;</p>",
        "customer data never becomes markup"
    );
}

#[test]
fn a_missing_variable_is_a_render_error_naming_the_part() {
    let t = source(
        ChannelKind::Sms,
        &[("en", &[("text", "Hi {{ customer.nickname }}")])],
    );
    let err = render(&t, json!({}), json!({})).unwrap_err();
    match &err {
        TemplateError::Render(m) => {
            assert_eq!(m, "locale \"en\", part \"text\": undefined value (line 1)")
        }
        other => panic!("expected a render error, got {other:?}"),
    }
    // Testing for it, or a default, is how a template says a variable is optional.
    let t = source(
        ChannelKind::Sms,
        &[(
            "en",
            &[(
                "text",
                "Hi {% if customer.nickname is defined %}{{ customer.nickname }}{% else %}there{% endif %}, {{ customer.city | default('friend') }}",
            )],
        )],
    );
    let r = render(&t, json!({}), json!({})).unwrap();
    assert_eq!(part(&r, "text"), "Hi there, friend");
}

#[test]
fn a_syntax_error_is_refused_with_line_and_column() {
    let t = source(
        ChannelKind::Sms,
        &[("en", &[("text", "Hello\n  {{ customer.name }\nbye")])],
    );
    let err = compile(&t).unwrap_err();
    let TemplateError::Syntax(m) = &err else {
        panic!("expected a syntax error, got {err:?}");
    };
    assert_eq!(
        m,
        "locale \"en\", part \"text\": syntax error at line 2, column 20: unexpected `}`, \
         expected end of variable block"
    );
}

#[test]
fn a_customer_reads_their_locale_with_fallback_to_language_then_default() {
    let t = source(
        ChannelKind::Inapp,
        &[
            ("en", &[("title", "Hello"), ("body", "b")]),
            ("pt", &[("title", "Olá"), ("body", "b")]),
            ("pt-BR", &[("title", "Oi"), ("body", "b")]),
        ],
    );
    let title = |locale: Value| {
        let r = render(&t, json!({ "locale": locale }), json!({})).unwrap();
        (r.locale.clone(), part(&r, "title").to_string())
    };
    assert_eq!(title(json!("pt-BR")), ("pt-BR".into(), "Oi".into()));
    assert_eq!(title(json!("pt-PT")), ("pt".into(), "Olá".into()));
    assert_eq!(title(json!("fr")), ("en".into(), "Hello".into()));
    assert_eq!(title(json!(null)), ("en".into(), "Hello".into()));
}

#[test]
fn dates_are_formatted_in_the_customers_time_zone() {
    let t = source(
        ChannelKind::Sms,
        &[(
            "en",
            &[(
                "text",
                "{{ customer.trial_ends_at | date(\"%d %B %Y\") }} {{ customer.trial_ends_at | time }} {{ payload.at | datetime }} {{ payload.day | date(\"%A\") }}",
            )],
        )],
    );
    // 02:30 UTC on 1 December is still 30 November in São Paulo (UTC-3).
    let r = render(
        &t,
        json!({"trial_ends_at": "2026-12-01T02:30:00Z", "timezone": "America/Sao_Paulo"}),
        json!({"at": 1_796_083_200_000i64, "day": "2026-12-25"}),
    )
    .unwrap();
    assert_eq!(
        part(&r, "text"),
        "30 November 2026 23:30 2026-11-30 21:00 Friday"
    );
    let utc = render(
        &t,
        json!({"trial_ends_at": "2026-12-01T02:30:00Z", "timezone": "Not/AZone"}),
        json!({"at": 1_796_083_200_000i64, "day": "2026-12-25"}),
    )
    .unwrap();
    assert!(
        part(&utc, "text").starts_with("01 December 2026 02:30"),
        "{utc:?}"
    );
}

#[test]
fn bad_dates_and_formats_are_render_errors() {
    for text in [
        "{{ customer.x | date }}",
        "{{ customer.when | date(\"%Q\") }}",
        "{{ customer.day | date(\"%H\") }}",
    ] {
        let t = source(ChannelKind::Sms, &[("en", &[("text", text)])]);
        let err = render(
            &t,
            json!({"x": "soon", "when": "2026-12-01T00:00:00Z", "day": "2026-12-01"}),
            json!({}),
        )
        .unwrap_err();
        assert!(matches!(err, TemplateError::Render(_)), "{text}: {err:?}");
    }
}

#[test]
fn slack_blocks_escape_values_inside_json_strings_and_are_parsed() {
    let t = source(
        ChannelKind::Slack,
        &[(
            "en",
            &[(
                "blocks",
                r#"[{"type": "section", "text": {"type": "mrkdwn", "text": "*{{ customer.name }}* needs help: {{ payload.reason }}"}}, {"type": "context", "elements": {{ payload.elements | tojson }}}]"#,
            )],
        )],
    );
    let r = render(
        &t,
        json!({"name": "Ada \"the\" Count\\"}),
        json!({"reason": "line1\nline2", "elements": [{"type": "plain_text", "text": "x"}]}),
    )
    .unwrap();
    assert_eq!(
        r.parts["blocks"],
        json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Ada \"the\" Count\\* needs help: line1\nline2"}},
            {"type": "context", "elements": [{"type": "plain_text", "text": "x"}]}
        ])
    );
    let broken = source(
        ChannelKind::Slack,
        &[("en", &[("blocks", "[{{ payload.n }}")])],
    );
    let err = render(&broken, json!({}), json!({"n": 1})).unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn a_version_is_compiled_once_however_many_messages_render_it() {
    let cache = TemplateCache::new(2);
    let t = source(
        ChannelKind::Sms,
        &[("en", &[("text", "hi {{ customer.id }}")])],
    );
    for _ in 0..5 {
        let compiled = cache
            .get_or_compile::<TemplateError>("acme", "welcome", 1, || Ok(t.clone()))
            .unwrap();
        assert_eq!(compiled.channel(), ChannelKind::Sms);
    }
    assert_eq!(cache.compiles(), 1);
    // Bounded: the least recently used version goes when a third arrives.
    for (name, version) in [("a", 1), ("b", 1), ("welcome", 1)] {
        cache
            .get_or_compile::<TemplateError>("acme", name, version, || Ok(t.clone()))
            .unwrap();
    }
    assert_eq!(cache.len(), 2);
    assert_eq!(
        cache.compiles(),
        4,
        "welcome was evicted by b, then compiled again"
    );
}

#[test]
fn the_adapter_payload_keeps_the_journeys_fields_beside_the_content() {
    let rendered = Rendered {
        locale: "en".into(),
        parts: serde_json::Map::from_iter([("text".to_string(), json!("hi"))]),
    };
    let out = payload_with_content(&json!({"plan": "pro"}), "welcome", 3, rendered.clone());
    assert_eq!(
        out,
        json!({"plan": "pro", "content": {"template": "welcome", "version": 3, "locale": "en", "text": "hi"}})
    );
    let out = payload_with_content(&json!([1]), "welcome", 3, rendered);
    assert_eq!(out["payload"], json!([1]));
    assert_eq!(out["content"]["text"], "hi");
}

#[test]
fn month_and_day_names_are_in_the_rendered_locale() {
    let t = source(
        ChannelKind::Sms,
        &[
            (
                "en",
                &[("text", "{{ customer.day | date(\"%A %d %B %Y\") }}")],
            ),
            (
                "pt-BR",
                &[("text", "{{ customer.day | date(\"%A, %d de %B de %Y\") }}")],
            ),
            (
                "de",
                &[(
                    "text",
                    "{{ customer.day | date(\"%A, %d. %B %Y\") }} ({{ message.locale }})",
                )],
            ),
        ],
    );
    let text = |locale: &str| {
        let r = render(
            &t,
            json!({"day": "2026-12-25", "locale": locale}),
            json!({}),
        )
        .unwrap();
        part(&r, "text").to_string()
    };
    assert_eq!(text("pt-BR"), "sexta, 25 de dezembro de 2026");
    assert_eq!(text("de-AT"), "Freitag, 25. Dezember 2026 (de)");
    assert_eq!(text("en-GB"), "Friday 25 December 2026");
    // A locale that chrono's data does not have gets English names.
    assert_eq!(filters::names_locale("xx-YY"), None);
    assert_eq!(
        filters::names_locale("pt_br"),
        filters::names_locale("pt-BR")
    );
}

/// Only what a locale's parts read is converted into the context (a render's main cost): the
/// rendering must not tell. A part reading the whole `customer` (a loop over it), one reading
/// a key by a variable, and one that includes another see every attribute; a key a part does
/// not name is still missing under strict undefined.
#[test]
fn a_render_sees_every_attribute_it_reads_however_it_reads_them() {
    let attributes = json!({"first_name": "Ada", "plan": "pro", "city": "Lisbon"});
    let t = source(
        ChannelKind::Sms,
        &[(
            "en",
            &[("text", "{{ customer.first_name }} {{ payload.code }}")],
        )],
    );
    let r = render(&t, attributes.clone(), json!({"code": 7, "other": 1})).unwrap();
    assert_eq!(part(&r, "text"), "Ada 7");

    let whole = source(
        ChannelKind::Sms,
        &[(
            "en",
            &[(
                "text",
                "{% for k, v in customer|items %}{{ k }}={{ v }};{% endfor %}{{ payload|length }}",
            )],
        )],
    );
    let r = render(&whole, attributes.clone(), json!({"a": 1, "b": 2})).unwrap();
    assert_eq!(
        part(&r, "text"),
        "city=Lisbon;first_name=Ada;id=ada;plan=pro;2"
    );

    let by_variable = source(
        ChannelKind::Sms,
        &[("en", &[("text", "{% set k = 'city' %}{{ customer[k] }}")])],
    );
    let r = render(&by_variable, attributes.clone(), json!({})).unwrap();
    assert_eq!(part(&r, "text"), "Lisbon");

    let unnamed = source(
        ChannelKind::Sms,
        &[(
            "en",
            &[("text", "{{ customer.first_name }} {{ customer.nickname }}")],
        )],
    );
    assert!(matches!(
        render(&unnamed, attributes, json!({})),
        Err(TemplateError::Render(_))
    ));
}

/// The date filters take the zone and month names from the render's scope, set for one
/// message's parts and gone after it, whether the render succeeded or failed: the next
/// customer's render never formats in the previous customer's zone or names.
#[test]
fn a_render_scope_ends_with_its_message() {
    let t = source(
        ChannelKind::Sms,
        &[
            (
                "en",
                &[("text", "{{ customer.when | datetime(\"%d %B %H:%M\") }}")],
            ),
            (
                "pt-BR",
                &[(
                    "text",
                    "{{ customer.when | datetime(\"%d %B %H:%M\") }} {{ customer.x }}",
                )],
            ),
        ],
    );
    let when = "2026-12-01T02:30:00Z";
    let ana = json!({"when": when, "timezone": "America/Sao_Paulo", "locale": "pt-BR", "x": 1});
    assert_eq!(
        part(&render(&t, ana, json!({})).unwrap(), "text"),
        "30 novembro 23:30 1"
    );
    // A failing render in São Paulo (no `x`) leaves no scope behind either.
    let failing = json!({"when": when, "timezone": "America/Sao_Paulo", "locale": "pt-BR"});
    assert!(render(&t, failing, json!({})).is_err());
    let bob = json!({"when": when});
    assert_eq!(
        part(&render(&t, bob, json!({})).unwrap(), "text"),
        "01 December 02:30"
    );
    // A template that names neither `customer.timezone` nor `message.locale` still formats in
    // the customer's zone and locale.
    let tokyo = json!({"when": when, "timezone": "Asia/Tokyo"});
    assert_eq!(
        part(&render(&t, tokyo, json!({})).unwrap(), "text"),
        "01 December 11:30"
    );
}
