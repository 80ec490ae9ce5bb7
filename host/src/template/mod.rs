//! Message templates: a tenant's versioned message content per channel, rendered by the host
//! with minijinja (Jinja syntax, which Braze and Customer.io users already write) when a message
//! is delivered.
//!
//! | module | what it is for |
//! | --- | --- |
//! | [`parts`] | what a template holds (channel kind, locales, parts) and the rules it must follow |
//! | [`compile`] | one version compiled into an environment; rendering a customer's locale |
//! | [`filters`] | `date`, `datetime`, `time` in the customer's time zone and the rendered locale's names; the blocks' JSON escape |
//! | [`locale`] | which locale a customer reads: theirs, its language, the default |
//! | [`cache`] | compiled versions by tenant, name and version, bounded |
//!
//! Strict undefined: printing, iterating or testing a variable that is not there is an error.
//! At upload a syntax error is refused with its line and column; at delivery a render error
//! fails that message permanently with the reason on it (the input is at fault, and a retry
//! would render the same thing: the message is pinned to the version it was created with).
//!
//! Pure apart from the cache's lock: no store, no clock, no I/O.

pub mod cache;
pub mod compile;
pub mod filters;
pub mod locale;
pub mod parts;

pub use cache::TemplateCache;
pub use compile::{compile, Compiled, RenderInput, Rendered};
pub use parts::{ChannelKind, TemplateError, TemplateSource};

/// The key of the payload a channel adapter receives that holds a templated message's rendered
/// content: `{"template", "version", "locale", <part>: ...}`. The journey's own payload fields
/// stay as they were beside it.
pub const CONTENT_KEY: &str = "content";

/// The payload an adapter receives for a message rendered as `rendered` from version `version`
/// of template `name`: the journey's payload with [`CONTENT_KEY`] set (replacing a journey
/// field of that name). A payload that is not an object is kept whole under `payload`.
pub fn payload_with_content(
    payload: &serde_json::Value,
    name: &str,
    version: u32,
    rendered: Rendered,
) -> serde_json::Value {
    // The rendered parts' map becomes `content` (no part is named like these three).
    let mut content = rendered.parts;
    content.insert("template".into(), name.into());
    content.insert("version".into(), version.into());
    content.insert("locale".into(), rendered.locale.into());
    let mut out = match payload {
        serde_json::Value::Object(fields) => fields.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        other => serde_json::Map::from_iter([("payload".to_string(), other.clone())]),
    };
    out.insert(CONTENT_KEY.into(), serde_json::Value::Object(content));
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests;
