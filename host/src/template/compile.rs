//! A template version compiled once: one minijinja environment holding every part of every
//! locale as its own template (`{locale}/{part}`), with strict undefined, the host's filters and
//! each part's escape. [`Compiled::render`] renders the parts of the customer's locale.

use super::filters::{self, JSON_STRING};
use super::locale;
use super::parts::{ChannelKind, Escape, TemplateError, TemplateSource};
use crate::model::Object;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::BTreeSet;

/// A compiled template version: parse once, render many times (it is `Send + Sync`, shared
/// by every delivery through an `Arc`).
pub struct Compiled {
    env: Environment<'static>,
    channel: ChannelKind,
    default_locale: String,
    /// The version's locales, and each one's parts, in order.
    locales: Vec<(String, Vec<Part>)>,
    /// Per locale (same order), what its parts read of the customer and the payload.
    reads: Vec<Reads>,
}

/// One part of one locale, as a render needs it: worked out once per version rather than per
/// message.
#[derive(Debug)]
struct Part {
    /// The part's name (`subject`).
    name: String,
    /// Its template's name in the environment (`pt-BR/subject`).
    template: String,
    /// Whether its output is JSON to parse (slack `blocks`), not text.
    json: bool,
}

/// The keys of a top-level map that a locale's parts read: only those are converted into the
/// render's context, since converting every attribute and payload field into minijinja's values
/// was most of a render's cost (the customer's whole profile for a template reading three).
#[derive(Debug, Clone, PartialEq)]
enum Keys {
    /// The map as a whole is read (printed, iterated, passed to a filter, indexed by a
    /// variable) or the parts include others: every key.
    All,
    /// Only these keys are read (`customer.first_name` reads `first_name`).
    Only(BTreeSet<String>),
}

impl Keys {
    /// Whether `key` is read.
    fn has(&self, key: &str) -> bool {
        match self {
            Keys::All => true,
            Keys::Only(keys) => keys.contains(key),
        }
    }

    fn with(&mut self, key: Option<&str>) {
        match (key, &mut *self) {
            (_, Keys::All) => {}
            (None, _) => *self = Keys::All,
            (Some(key), Keys::Only(keys)) => {
                keys.insert(key.to_owned());
            }
        }
    }
}

/// What a locale's parts read of `customer`, `payload` and `message`.
#[derive(Debug, Clone, PartialEq)]
struct Reads {
    customer: Keys,
    payload: Keys,
    message: Keys,
}

impl Reads {
    /// Everything: what a part whose reads cannot be worked out gets.
    const ALL: Reads = Reads {
        customer: Keys::All,
        payload: Keys::All,
        message: Keys::All,
    };
}

impl Reads {
    /// From the variables the parts use (minijinja's `undeclared_variables`, with attribute
    /// lookups): `customer.x` reads `x`; a bare `customer` reads it all. (The `date` filters
    /// take the zone from the render's scope, not the context.) A part that includes,
    /// imports or extends another reads what that one does, which this does not follow: then
    /// everything is kept.
    fn of(env: &Environment<'_>, names: &[String], sources: &[&str]) -> Reads {
        let mut reads = Reads {
            customer: Keys::Only(BTreeSet::new()),
            payload: Keys::Only(BTreeSet::new()),
            message: Keys::Only(BTreeSet::new()),
        };
        let composes = sources.iter().any(|s| {
            s.split("{%").skip(1).any(|block| {
                let tag = block.trim_start_matches(['-', '+']).trim_start();
                ["include", "import", "extends", "from"]
                    .iter()
                    .any(|t| tag.starts_with(t))
            })
        });
        if composes {
            return Reads::ALL;
        }
        for name in names {
            let Ok(template) = env.get_template(name) else {
                return Reads::ALL;
            };
            for variable in template.undeclared_variables(true) {
                let mut path = variable.splitn(3, '.');
                let root = path.next().unwrap_or_default();
                let key = path.next();
                match root {
                    "customer" => reads.customer.with(key),
                    "payload" => reads.payload.with(key),
                    "message" => reads.message.with(key),
                    _ => {}
                }
            }
        }
        reads
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("channel", &self.channel)
            .field("default_locale", &self.default_locale)
            .field("locales", &self.locales)
            .finish()
    }
}

/// What a message renders from: the customer (`customer`: their attributes and `id`), the
/// send's payload (`payload`) and the message (`message.id`, `message.channel`).
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    pub customer_id: &'a str,
    pub attributes: &'a Object,
    pub payload: &'a serde_json::Value,
    pub message_id: &'a str,
    pub channel: &'a str,
    /// The message's one-click unsubscribe URL (issue 11), when the host has a public URL.
    pub unsubscribe_url: Option<&'a str>,
}

/// The rendered parts of one locale.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The locale rendered (after fallback).
    pub locale: String,
    /// Part name → text; slack `blocks` → the parsed JSON.
    pub parts: serde_json::Map<String, serde_json::Value>,
}

/// The context's `customer`: the attributes with `id` set to the customer's id, serialised
/// straight from the borrowed map (no copy of the attributes), only the keys the parts read.
struct CustomerView<'a> {
    id: &'a str,
    attributes: &'a Object,
    keys: &'a Keys,
}

impl Serialize for CustomerView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if self.keys.has("id") {
            map.serialize_entry("id", self.id)?;
        }
        match self.keys {
            Keys::All => {
                for (k, v) in self.attributes.iter().filter(|(k, _)| k.as_str() != "id") {
                    map.serialize_entry(k, v)?;
                }
            }
            Keys::Only(keys) => {
                for k in keys.iter().filter(|k| k.as_str() != "id") {
                    if let Some(v) = self.attributes.get(k) {
                        map.serialize_entry(k, v)?;
                    }
                }
            }
        }
        map.end()
    }
}

/// The context's `payload`: the send's payload, only the fields the parts read when it is an
/// object.
struct PayloadView<'a> {
    payload: &'a serde_json::Value,
    keys: &'a Keys,
}

impl Serialize for PayloadView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.payload, self.keys) {
            (serde_json::Value::Object(fields), Keys::Only(keys)) => {
                let mut map = s.serialize_map(None)?;
                for k in keys {
                    if let Some(v) = fields.get(k) {
                        map.serialize_entry(k, v)?;
                    }
                }
                map.end()
            }
            (payload, _) => payload.serialize(s),
        }
    }
}

/// The context's `message`, only the fields the parts read.
struct MessageView<'a> {
    id: &'a str,
    channel: &'a str,
    /// The locale being rendered (after fallback): what the `date` filters name months in.
    locale: &'a str,
    /// `message.unsubscribe_url` (issue 11): the signed one-click link. Absent when the host
    /// runs without `--public-url`, so a template that prints it then fails as undefined.
    unsubscribe_url: Option<&'a str>,
    keys: &'a Keys,
}

impl Serialize for MessageView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let fields = [
            ("id", Some(self.id)),
            ("channel", Some(self.channel)),
            ("locale", Some(self.locale)),
            ("unsubscribe_url", self.unsubscribe_url),
        ];
        for (name, value) in fields {
            if let (Some(value), true) = (value, self.keys.has(name)) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Context<'a> {
    customer: CustomerView<'a>,
    payload: PayloadView<'a>,
    message: MessageView<'a>,
}

/// Where in `source` the byte `offset` is, as 1-based line and column (in characters).
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// A syntax error as the upload's answer says it: locale, part, line, column and why.
fn syntax_error(locale: &str, part: &str, source: &str, e: &minijinja::Error) -> TemplateError {
    let (line, column) = match e.range() {
        Some(range) => line_column(source, range.start),
        None => (e.line().unwrap_or(1), 1),
    };
    let why = e.detail().unwrap_or("invalid syntax");
    TemplateError::Syntax(format!(
        "locale {locale:?}, part {part:?}: syntax error at line {line}, column {column}: {why}"
    ))
}

/// Compiles every part of every locale of `source`, after checking its shape.
pub fn compile(source: &TemplateSource) -> Result<Compiled, TemplateError> {
    source.check()?;
    let kind = source.channel;
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Debug mode copies the source into every error: messages carry their own reason.
    env.set_debug(false);
    env.set_formatter(filters::formatter);
    env.set_auto_escape_callback(move |name| {
        let part = name.rsplit('/').next().unwrap_or(name);
        match kind.part(part).map(|p| p.escape) {
            Some(Escape::Html) => AutoEscape::Html,
            Some(Escape::JsonString) => AutoEscape::Custom(JSON_STRING.into()),
            _ => AutoEscape::None,
        }
    });
    env.add_filter("date", filters::date);
    env.add_filter("datetime", filters::datetime);
    env.add_filter("time", filters::time);
    let mut locales = Vec::with_capacity(source.locales.len());
    for (locale, parts) in &source.locales {
        for (part, text) in parts {
            env.add_template_owned(format!("{locale}/{part}"), text.clone())
                .map_err(|e| syntax_error(locale, part, text, &e))?;
        }
        let parts = parts
            .keys()
            .map(|part| Part {
                name: part.clone(),
                template: format!("{locale}/{part}"),
                json: kind.part(part).map(|p| p.escape) == Some(Escape::JsonString),
            })
            .collect();
        locales.push((locale.clone(), parts));
    }
    let reads = source
        .locales
        .iter()
        .map(|(locale, parts)| {
            let names: Vec<String> = parts.keys().map(|p| format!("{locale}/{p}")).collect();
            let sources: Vec<&str> = parts.values().map(String::as_str).collect();
            Reads::of(&env, &names, &sources)
        })
        .collect();
    Ok(Compiled {
        env,
        channel: kind,
        default_locale: source.default_locale.clone(),
        locales,
        reads,
    })
}

impl Compiled {
    /// The channel kind the template is written for.
    pub fn channel(&self) -> ChannelKind {
        self.channel
    }

    /// Renders the parts of the customer's locale (their `locale` attribute, with fallback).
    /// Any failure is a [`TemplateError::Render`] naming the locale and part: the input, not
    /// the host, is at fault, so a message that meets one fails for good.
    pub fn render(&self, input: RenderInput<'_>) -> Result<Rendered, TemplateError> {
        let wanted = input.attributes.get("locale").and_then(|l| l.as_str());
        let locale = locale::resolve(
            wanted,
            self.locales.iter().map(|(l, _)| l.as_str()),
            &self.default_locale,
        );
        let index = self.locales.iter().position(|(l, _)| l == locale);
        let parts = index
            .map(|i| self.locales[i].1.as_slice())
            .unwrap_or_default();
        let reads = index.and_then(|i| self.reads.get(i)).unwrap_or(&Reads::ALL);
        let context = Value::from(Serde(&Context {
            customer: CustomerView {
                id: input.customer_id,
                attributes: input.attributes,
                keys: &reads.customer,
            },
            payload: PayloadView {
                payload: input.payload,
                keys: &reads.payload,
            },
            message: MessageView {
                id: input.message_id,
                channel: input.channel,
                locale,
                unsubscribe_url: input.unsubscribe_url,
                keys: &reads.message,
            },
        }));
        // The date filters' zone and month names, once for the message's parts.
        let timezone = input.attributes.get("timezone").and_then(|tz| tz.as_str());
        let _scope = filters::RenderScope::new(timezone, locale).enter();
        let mut rendered = serde_json::Map::with_capacity(parts.len());
        for part in parts {
            let failed = |why: String| {
                let name = &part.name;
                TemplateError::Render(format!("locale {locale:?}, part {name:?}: {why}"))
            };
            let text = self
                .env
                .get_template(&part.template)
                .and_then(|t| t.render(context.clone()))
                .map_err(|e| failed(describe(&e)))?;
            let value = if part.json {
                serde_json::from_str(&text)
                    .map_err(|e| failed(format!("the rendered blocks are not JSON: {e}")))?
            } else {
                serde_json::Value::String(text)
            };
            rendered.insert(part.name.clone(), value);
        }
        Ok(Rendered {
            locale: locale.to_string(),
            parts: rendered,
        })
    }
}

/// A render error in one line: what went wrong, and the line of the part.
fn describe(e: &minijinja::Error) -> String {
    let mut text = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}
