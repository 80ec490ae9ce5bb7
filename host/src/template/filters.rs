//! What the host adds to minijinja for message templates: the `date`, `datetime` and `time`
//! filters, which format a moment in the customer's own time zone (their `timezone`
//! attribute, IANA, UTC when absent or unknown), and the formatter for the `json-string`
//! escape of slack `blocks`.
//!
//! A moment is a number (milliseconds since the epoch, Waymark's time everywhere), an RFC 3339
//! string (`2026-12-01T09:30:00Z`, the usual shape of a trait), a date-time without offset
//! (taken as UTC), or a date alone (`2026-12-01`, formatted as that calendar day, no zone
//! applied). Formats are chrono's strftime (`%d %B %Y`); names of months and days are in the
//! rendered locale (`message.locale`) where chrono's locale data has it ([`names_locale`]),
//! else English.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Locale, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Error, ErrorKind, Output, State};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, RwLock};

/// The name of the custom escape of slack `blocks`.
pub const JSON_STRING: &str = "json-string";

/// `{{ when | date }}` or `{{ when | date("%d %B %Y") }}`; default `%Y-%m-%d`.
pub fn date(value: Value, format: Option<String>) -> Result<String, Error> {
    format_moment(&value, format.as_deref().unwrap_or("%Y-%m-%d"))
}

/// `{{ when | datetime }}`; default `%Y-%m-%d %H:%M`.
pub fn datetime(value: Value, format: Option<String>) -> Result<String, Error> {
    format_moment(&value, format.as_deref().unwrap_or("%Y-%m-%d %H:%M"))
}

/// `{{ when | time }}`; default `%H:%M`.
pub fn time(value: Value, format: Option<String>) -> Result<String, Error> {
    format_moment(&value, format.as_deref().unwrap_or("%H:%M"))
}

fn bad(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// The render's scope: set by `Compiled::render`, the only way these filters run (they are
/// registered in no other environment); UTC and English names should one run without it.
fn scope() -> RenderScope {
    RENDERING.get().unwrap_or(RenderScope {
        zone: Tz::UTC,
        names: Locale::POSIX,
    })
}

/// What the date filters of one message's render format with, worked out once per render
/// ([`RenderScope::enter`]) rather than looked up in the context and parsed at every filter
/// call: the customer's zone (their `timezone` attribute when it names an IANA zone, else
/// UTC) and the names locale of the locale rendered (`message.locale`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RenderScope {
    pub(crate) zone: Tz,
    pub(crate) names: Locale,
}

thread_local! {
    /// The render under way on this thread, if [`RenderScope::enter`] set one (a render never
    /// awaits, so it starts and ends on one thread).
    static RENDERING: std::cell::Cell<Option<RenderScope>> = const { std::cell::Cell::new(None) };
}

/// Restores the previous scope when a render ends, by return or by unwinding.
pub(crate) struct ScopeGuard(Option<RenderScope>);

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        RENDERING.set(self.0);
    }
}

impl RenderScope {
    /// For the customer zoned `timezone` and the template locale `locale`.
    pub(crate) fn new(timezone: Option<&str>, locale: &str) -> RenderScope {
        RenderScope {
            zone: timezone
                .and_then(|name| name.parse::<Tz>().ok())
                .unwrap_or(Tz::UTC),
            names: names_locale_cached(locale).unwrap_or(Locale::POSIX),
        }
    }

    /// Makes this the scope of the filters called on this thread until the guard drops.
    pub(crate) fn enter(self) -> ScopeGuard {
        ScopeGuard(RENDERING.replace(Some(self)))
    }
}

/// The locale of month and day names for a template locale tag: `pt-BR` → `pt_BR`; a
/// language alone, `de` → `de_DE` (its own country's, which chrono names for most languages);
/// `None` when chrono's locale data has neither (English names are used then).
pub fn names_locale(tag: &str) -> Option<Locale> {
    let mut parts = tag.split(['-', '_']);
    let language = parts.next()?.to_ascii_lowercase();
    let region = parts.next().map(str::to_ascii_uppercase);
    let exact = region.map(|r| format!("{language}_{r}"));
    let own = format!("{language}_{}", language.to_ascii_uppercase());
    exact
        .and_then(|t| Locale::try_from(t.as_str()).ok())
        .or_else(|| Locale::try_from(own.as_str()).ok())
}

/// [`names_locale`], remembered per tag: chrono's locale lookup compares the tag with each of
/// its few hundred locale names in turn, which was a good part of a date filter's cost, and a
/// tenant's templates use a handful of tags.
fn names_locale_cached(tag: &str) -> Option<Locale> {
    static SEEN: OnceLock<RwLock<HashMap<String, Option<Locale>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(RwLock::default);
    if let Some(locale) = seen.read().ok().and_then(|m| m.get(tag).copied()) {
        return locale;
    }
    let locale = names_locale(tag);
    if let Ok(mut m) = seen.write() {
        // Bounded: tags come from template versions, but a customer attribute could be anything.
        if m.len() < 1024 {
            m.insert(tag.to_owned(), locale);
        }
    }
    locale
}

/// A strftime format parsed once: templates use a few formats for every message. `None` for
/// an invalid format. Each thread remembers the last few it used (compared as strings, no
/// lock and no hashing), in front of the process's map.
fn parsed_format(format: &str) -> Option<Arc<[Item<'static>]>> {
    type Parsed = Option<Arc<[Item<'static>]>>;
    const RECENT: usize = 16;
    thread_local! {
        static RECENT_FORMATS: std::cell::RefCell<Vec<(Box<str>, Parsed)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let recent = RECENT_FORMATS.with_borrow(|recent| {
        recent
            .iter()
            .find(|(f, _)| &**f == format)
            .map(|(_, items)| items.clone())
    });
    if let Some(items) = recent {
        return items;
    }
    let items = parsed_format_shared(format);
    RECENT_FORMATS.with_borrow_mut(|recent| {
        if recent.len() == RECENT {
            recent.remove(0);
        }
        recent.push((format.into(), items.clone()));
    });
    items
}

/// [`parsed_format`]'s process-wide map.
fn parsed_format_shared(format: &str) -> Option<Arc<[Item<'static>]>> {
    type Formats = HashMap<String, Option<Arc<[Item<'static>]>>>;
    static SEEN: OnceLock<RwLock<Formats>> = OnceLock::new();
    let seen = SEEN.get_or_init(RwLock::default);
    if let Some(items) = seen.read().ok().and_then(|m| m.get(format).cloned()) {
        return items;
    }
    let items: Option<Arc<[Item<'static>]>> = StrftimeItems::new(format)
        .parse_to_owned()
        .ok()
        .filter(|items| !items.iter().any(|i| matches!(i, Item::Error)))
        .map(Arc::from);
    if let Ok(mut m) = seen.write() {
        // Bounded: formats come from templates, which are few.
        if m.len() < 1024 {
            m.insert(format.to_owned(), items.clone());
        }
    }
    items
}

/// A moment as the filters take it.
enum Moment {
    Instant(DateTime<Utc>),
    Day(NaiveDate),
}

fn moment(value: &Value) -> Result<Moment, Error> {
    let from_ms = |ms: i64| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(Moment::Instant)
            .ok_or_else(|| bad(format!("{ms} ms is outside the dates this filter formats")))
    };
    match value.kind() {
        ValueKind::Number => match value.as_i64() {
            Some(ms) => from_ms(ms),
            None => {
                let ms = f64::try_from(value.clone())
                    .map_err(|_| bad(format!("{value} is not a time in milliseconds")))?;
                from_ms(ms as i64)
            }
        },
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default().trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(Moment::Instant(t.with_timezone(&Utc)));
            }
            for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
                    return Ok(Moment::Instant(t.and_utc()));
                }
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Moment::Day)
                .map_err(|_| {
                    bad(format!(
                        "{s:?} is not a date: expected RFC 3339 (2026-12-01T09:30:00Z), \
                         a date (2026-12-01) or milliseconds since the epoch"
                    ))
                })
        }
        other => Err(bad(format!(
            "cannot format {other} {value} as a date: expected a string or milliseconds"
        ))),
    }
}

fn format_moment(value: &Value, format: &str) -> Result<String, Error> {
    let Some(items) = parsed_format(format) else {
        return Err(bad(format!("{format:?} is not a valid strftime format")));
    };
    let mut out = String::new();
    // chrono reports a specifier the value cannot fill (an hour of a date alone) as a
    // formatting error, which `to_string` would turn into a panic: write and check instead.
    let RenderScope { zone, names } = scope();
    let written = match moment(value)? {
        Moment::Instant(t) => write!(
            out,
            "{}",
            t.with_timezone(&zone)
                .format_localized_with_items(items.iter(), names)
        ),
        Moment::Day(d) => write!(
            out,
            "{}",
            d.format_localized_with_items(items.iter(), names)
        ),
    };
    written.map_err(|_| bad(format!("{format:?} asks for more than {value} holds")))?;
    Ok(out)
}

/// The environment's formatter: minijinja's own, plus the [`JSON_STRING`] escape, which writes
/// a printed value as the inside of a JSON string literal (quotes, backslashes and control
/// characters escaped). A value marked safe (`| safe`, `| tojson`) is written as it is, so
/// `{{ payload.items | tojson }}` places a whole JSON value.
pub fn formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match state.auto_escape() {
        AutoEscape::Custom(name) if name == JSON_STRING => {
            if value.is_safe() {
                return out
                    .write_str(value.as_str().unwrap_or_default())
                    .map_err(Error::from);
            }
            let text = value.to_string();
            let quoted = serde_json::to_string(&text)
                .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
            out.write_str(&quoted[1..quoted.len() - 1])
                .map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}
