//! Templates (tenant, issue 11): `PUT /v1/templates/{name}` stores the next version of a
//! message template, `GET /v1/templates[/{name}[?version=N]]` lists and shows them,
//! `DELETE /v1/templates/{name}` deletes one, and `POST /v1/templates/{name}/preview` renders
//! one for a stored customer or for sample data.

use crate::{Millis, Object};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The kind of channel a template is written for, which decides its parts: `email`
/// (`subject`, `html`, `text`), `sms` (`text`), `slack` (`blocks`), `inapp` (`title`, `body`,
/// `url`), `crm` (`subject`, `body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum TemplateChannel {
    Email,
    Sms,
    Slack,
    Inapp,
    /// A CRM task: `subject`, `body` (issue 11, crm slice).
    Crm,
}

/// Locale tag → part name → minijinja source.
pub type Locales = BTreeMap<String, BTreeMap<String, String>>;

/// The body of `PUT /v1/templates/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateUpload {
    /// The kind of channel, which decides the parts.
    pub channel: TemplateChannel,
    /// The locale a customer reads when neither their `locale` nor its language is here.
    pub default_locale: String,
    /// The parts' sources per locale.
    pub locales: Locales,
}

/// One version of a template: the answer to `PUT` (201) and `GET /v1/templates/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Template {
    pub name: String,
    /// 1, 2, ... per upload; a version never changes.
    pub version: u32,
    pub channel: TemplateChannel,
    pub default_locale: String,
    pub locales: Locales,
    /// When this version was stored.
    pub created_at: Millis,
}

/// A template's latest version, without its sources: an item of [`TemplateList`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TemplateSummary {
    pub name: String,
    /// The latest version.
    pub version: u32,
    pub channel: TemplateChannel,
    pub default_locale: String,
    /// The locale tags the latest version holds.
    pub locales: Vec<String>,
    /// When the latest version was stored.
    pub created_at: Millis,
}

/// The answer to `GET /v1/templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TemplateList {
    /// Every template of the tenant that is not deleted, by name.
    pub templates: Vec<TemplateSummary>,
}

/// The body of `POST /v1/templates/{name}/preview`: a stored customer (`customer`) or sample
/// attributes (`attributes`), not both; neither renders for a customer with no attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// A stored customer's id: their attributes are rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Sample attributes, for a customer with id `preview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Object>,
    /// The send's payload (`payload` in the template); `{}` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The version to render; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// The answer to `POST /v1/templates/{name}/preview`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Preview {
    pub name: String,
    pub version: u32,
    /// The locale rendered, after fallback.
    pub locale: String,
    /// Part name → rendered text (slack `blocks`: the parsed JSON).
    pub parts: Object,
}
