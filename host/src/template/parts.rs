//! What a template holds: its channel kind, its default locale, and per locale the source of
//! each part that kind of channel takes (email `subject`, `html`, `text`; sms `text`; slack
//! `blocks`; in-app `title`, `body`, `url`; crm `subject`, `body`). [`TemplateSource::check`] is the one rule for what
//! may be stored, before anything is compiled.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most locales one template version holds.
pub const MAX_LOCALES: usize = 64;
/// The most bytes of one part's source.
pub const MAX_PART_BYTES: usize = 64 * 1024;
/// The longest locale tag (BCP 47 tags in practice stay far below it).
pub const MAX_LOCALE_TAG: usize = 35;

/// The kind of channel a template is written for: it decides which parts there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Sms,
    Slack,
    Inapp,
    /// A CRM task (issue 11, crm slice): `subject`, `body`.
    Crm,
}

/// How a part's output is escaped where a template prints a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Printed as it is (plain text, subjects, URLs).
    None,
    /// HTML-escaped (email `html`): customer data never becomes markup.
    Html,
    /// Escaped as the inside of a JSON string (slack `blocks`), so `"Hi {{ customer.name }}"`
    /// stays valid JSON whatever the name holds; the rendered text is then parsed as JSON.
    JsonString,
}

/// One part a kind of channel takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub name: &'static str,
    pub required: bool,
    pub escape: Escape,
}

const fn part(name: &'static str, required: bool, escape: Escape) -> Part {
    Part {
        name,
        required,
        escape,
    }
}

const EMAIL: &[Part] = &[
    part("subject", true, Escape::None),
    part("html", false, Escape::Html),
    part("text", false, Escape::None),
];
const SMS: &[Part] = &[part("text", true, Escape::None)];
const SLACK: &[Part] = &[part("blocks", true, Escape::JsonString)];
const INAPP: &[Part] = &[
    part("title", true, Escape::None),
    part("body", true, Escape::None),
    part("url", false, Escape::None),
];
// A CRM task's title and notes: plain text, shown as they are by the CRM.
const CRM: &[Part] = &[
    part("subject", true, Escape::None),
    part("body", false, Escape::None),
];

impl ChannelKind {
    /// The parts this kind of channel takes.
    pub fn parts(self) -> &'static [Part] {
        match self {
            ChannelKind::Email => EMAIL,
            ChannelKind::Sms => SMS,
            ChannelKind::Slack => SLACK,
            ChannelKind::Inapp => INAPP,
            ChannelKind::Crm => CRM,
        }
    }

    /// The part called `name`, if this kind takes one.
    pub fn part(self, name: &str) -> Option<Part> {
        self.parts().iter().copied().find(|p| p.name == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Sms => "sms",
            ChannelKind::Slack => "slack",
            ChannelKind::Inapp => "inapp",
            ChannelKind::Crm => "crm",
        }
    }
}

/// A template version's content as uploaded: parts' sources per locale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSource {
    pub channel: ChannelKind,
    pub default_locale: String,
    /// Locale tag → part name → source.
    pub locales: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why a template cannot be stored or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The upload breaks a rule of its shape (locales, parts, sizes).
    #[error("{0}")]
    Invalid(String),
    /// A part does not parse; the message names the locale, the part, the line and column.
    #[error("{0}")]
    Syntax(String),
    /// Rendering failed for this input (a missing variable under strict mode, a bad filter
    /// argument, blocks that are not JSON): permanent for a message, never retried.
    #[error("{0}")]
    Render(String),
}

/// Whether `tag` is a plausible locale tag: letters, digits, `-` and `_`, starting with a
/// letter (`en`, `pt-BR`, `zh_Hant_TW`).
pub fn valid_locale_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_LOCALE_TAG
        && tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl TemplateSource {
    /// Checks the shape: a known default locale, valid tags, only the channel's parts, its
    /// required parts in every locale (an email needs `html` or `text` too), bounded sizes.
    pub fn check(&self) -> Result<(), TemplateError> {
        let invalid = |m: String| Err(TemplateError::Invalid(m));
        if self.locales.is_empty() {
            return invalid("locales must hold at least one locale".into());
        }
        if self.locales.len() > MAX_LOCALES {
            return invalid(format!(
                "locales has {} entries; at most {MAX_LOCALES}",
                self.locales.len()
            ));
        }
        if !self.locales.contains_key(&self.default_locale) {
            return invalid(format!(
                "default_locale {:?} is not one of the template's locales",
                self.default_locale
            ));
        }
        let kind = self.channel;
        for (tag, parts) in &self.locales {
            if !valid_locale_tag(tag) {
                return invalid(format!(
                    "locale {tag:?} must be 1-{MAX_LOCALE_TAG} letters, digits, '-' or '_', \
                     starting with a letter"
                ));
            }
            for (name, source) in parts {
                if kind.part(name).is_none() {
                    let known: Vec<&str> = kind.parts().iter().map(|p| p.name).collect();
                    return invalid(format!(
                        "locale {tag:?}: a {} template has no part {name:?} (its parts: {})",
                        kind.as_str(),
                        known.join(", ")
                    ));
                }
                if source.len() > MAX_PART_BYTES {
                    return invalid(format!(
                        "locale {tag:?}, part {name:?}: {} bytes; at most {MAX_PART_BYTES}",
                        source.len()
                    ));
                }
            }
            for p in kind.parts().iter().filter(|p| p.required) {
                if !parts.contains_key(p.name) {
                    return invalid(format!(
                        "locale {tag:?}: a {} template needs part {:?}",
                        kind.as_str(),
                        p.name
                    ));
                }
            }
            if kind == ChannelKind::Email
                && !parts.contains_key("html")
                && !parts.contains_key("text")
            {
                return invalid(format!(
                    "locale {tag:?}: an email template needs part \"html\" or \"text\""
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(channel: ChannelKind, parts: &[(&str, &str)]) -> TemplateSource {
        TemplateSource {
            channel,
            default_locale: "en".into(),
            locales: BTreeMap::from([(
                "en".to_string(),
                parts
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )]),
        }
    }

    #[test]
    fn each_channel_kind_takes_its_own_parts() {
        assert!(
            source(ChannelKind::Email, &[("subject", "s"), ("text", "t")])
                .check()
                .is_ok()
        );
        assert!(source(ChannelKind::Sms, &[("text", "t")]).check().is_ok());
        assert!(source(ChannelKind::Slack, &[("blocks", "[]")])
            .check()
            .is_ok());
        assert!(source(ChannelKind::Crm, &[("subject", "s")])
            .check()
            .is_ok());
        assert!(source(ChannelKind::Crm, &[("body", "b")]).check().is_err());
        assert!(source(ChannelKind::Inapp, &[("title", "t"), ("body", "b")])
            .check()
            .is_ok());
        let err = source(ChannelKind::Sms, &[("text", "t"), ("subject", "s")])
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("no part \"subject\""), "{err}");
    }

    #[test]
    fn required_parts_are_required_in_every_locale() {
        let err = source(ChannelKind::Email, &[("subject", "s")])
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("\"html\" or \"text\""), "{err}");
        let err = source(ChannelKind::Inapp, &[("title", "t")])
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("needs part \"body\""), "{err}");
    }

    #[test]
    fn the_default_locale_must_be_one_of_the_locales_and_tags_are_checked() {
        let mut s = source(ChannelKind::Sms, &[("text", "t")]);
        s.default_locale = "fr".into();
        assert!(s
            .check()
            .unwrap_err()
            .to_string()
            .contains("default_locale"));
        assert!(valid_locale_tag("pt-BR") && valid_locale_tag("zh_Hant_TW"));
        assert!(!valid_locale_tag("") && !valid_locale_tag("1en") && !valid_locale_tag("en US"));
    }
}
