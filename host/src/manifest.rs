//! A channel plugin's manifest: the settings and secrets it reads and the hosts it talks to by
//! default, declared by the plugin's author in `channel.toml` and embedded in the component
//! (custom section `waymark:channel-manifest`, by the guest SDK's `channel_manifest!`).
//!
//! Why inside the component: registration validates the very bytes it will run, so a tenant
//! cannot pair a component with someone else's manifest, and there is nothing extra to upload.
//! Why at registration: a channel missing a required setting, or given a secret as a setting
//! (where the API would show it), is refused with a message naming the key, instead of
//! dead-lettering its first message.
//!
//! Pure: bytes and JSON in, a [`Manifest`] or a [`ManifestError`] out; no I/O. The caller
//! checks the hosts of [`Manifest::allowed_hosts_or_default`] as it checks given ones
//! (`sandbox::check_allowed_hosts`). A component without the section has no manifest
//! (`Ok(None)`) and registers unchecked, as components built before manifests did.
//!
//! The format (see `plugins/README.md`):
//!
//! ```toml
//! name = "webhook"
//! description = "POSTs each message as JSON to a configured URL."
//! allowed_hosts = []            # used when a registration gives none
//!
//! [settings.url]
//! required = true
//! description = "Where to POST."
//!
//! [secrets.bearer_token]        # required = false when left out
//! description = "Sent as a bearer token."
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmparser::{Parser, Payload};

use crate::model::Object;

/// The custom section a component carries its manifest in.
pub const SECTION: &str = "waymark:channel-manifest";

/// A manifest larger than this is refused: it is a few keys and sentences, not a document.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// What a channel plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name (e.g. `webhook`); a tenant may register it under any channel name.
    pub name: String,
    /// One sentence for whoever registers the channel.
    #[serde(default)]
    pub description: String,
    /// Non-secret configuration, shown back by the API.
    #[serde(default)]
    pub settings: BTreeMap<String, Key>,
    /// Secret configuration, never shown back.
    #[serde(default)]
    pub secrets: BTreeMap<String, Key>,
    /// Hosts (`host` or `host:port`) the plugin reaches when a registration names none.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// One setting or secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Whether a registration must give it (a `null` value counts as not given).
    #[serde(default)]
    pub required: bool,
    /// What it means, for whoever registers the channel.
    #[serde(default)]
    pub description: String,
}

/// Why a manifest could not be read, or why a registration does not satisfy it. Messages are
/// written for the tenant: they end up in an HTTP 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a WebAssembly binary that can be searched for the section.
    #[error("cannot read the component: {0}")]
    InvalidComponent(String),
    /// The section is there but is not a valid manifest.
    #[error("the component's channel manifest is invalid: {0}")]
    InvalidManifest(String),
    /// A required setting is absent (or `null`).
    #[error("setting {0:?} is required by the channel's manifest")]
    MissingSetting(String),
    /// A required secret is absent (or `null`).
    #[error("secret {0:?} is required by the channel's manifest")]
    MissingSecret(String),
    /// A secret was passed among the settings, where the API would show it back.
    #[error("{0:?} is a secret: pass it in `secrets`, not `settings`")]
    SecretAsSetting(String),
    /// A setting was passed among the secrets.
    #[error("{0:?} is a setting: pass it in `settings`, not `secrets`")]
    SettingAsSecret(String),
    /// A setting the manifest does not declare.
    #[error("unknown setting {key:?}; the channel's manifest declares {declared}")]
    UnknownSetting {
        /// The offending key.
        key: String,
        /// The declared settings, listed for the message.
        declared: String,
    },
    /// A secret the manifest does not declare.
    #[error("unknown secret {key:?}; the channel's manifest declares {declared}")]
    UnknownSecret {
        /// The offending key.
        key: String,
        /// The declared secrets, listed for the message.
        declared: String,
    },
}

impl ManifestError {
    /// The setting or secret the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ManifestError::InvalidComponent(_) | ManifestError::InvalidManifest(_) => None,
            ManifestError::MissingSetting(key)
            | ManifestError::MissingSecret(key)
            | ManifestError::SecretAsSetting(key)
            | ManifestError::SettingAsSecret(key)
            | ManifestError::UnknownSetting { key, .. }
            | ManifestError::UnknownSecret { key, .. } => Some(key),
        }
    }
}

/// The manifest embedded in `component`, if it has one. The section is found in whichever
/// core module of the component holds it (the plugin's own); the same manifest found twice
/// counts once, two different ones are an error.
pub fn read(component: &[u8]) -> Result<Option<Manifest>, ManifestError> {
    let mut found: Option<&[u8]> = None;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload.map_err(|e| ManifestError::InvalidComponent(e.to_string()))?;
        let Payload::CustomSection(section) = payload else {
            continue;
        };
        if section.name() != SECTION {
            continue;
        }
        match found {
            Some(earlier) if earlier != section.data() => {
                return Err(ManifestError::InvalidManifest(format!(
                    "the component carries two different `{SECTION}` sections"
                )))
            }
            _ => found = Some(section.data()),
        }
    }
    found.map(parse).transpose()
}

/// Parses and validates a manifest's text (the section's bytes).
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let invalid = ManifestError::InvalidManifest;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(invalid(format!(
            "{} bytes; at most {MAX_MANIFEST_BYTES} are allowed",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let manifest: Manifest = toml::from_str(text).map_err(|e| {
        let before = e.span().and_then(|span| text.get(..span.start));
        let line = before.map(|before| before.matches('\n').count() + 1);
        match line {
            Some(line) => invalid(format!("line {line}: {}", e.message())),
            None => invalid(e.message().to_string()),
        }
    })?;
    if manifest.name.trim().is_empty() {
        return Err(invalid("`name` is empty".into()));
    }
    let mut keys = manifest.settings.keys().chain(manifest.secrets.keys());
    if let Some(key) = keys.find(|key| key.trim().is_empty()) {
        return Err(invalid(format!("key {key:?} is empty")));
    }
    if let Some(key) = manifest
        .settings
        .keys()
        .find(|k| manifest.secrets.contains_key(*k))
    {
        return Err(invalid(format!(
            "{key:?} is declared both a setting and a secret"
        )));
    }
    Ok(manifest)
}

impl Manifest {
    /// Whether a registration's `settings` and `secrets` are what the plugin declares: every
    /// given key declared, in its own place, and every required key given. The first problem
    /// found is reported, naming its key: keys given in the wrong place, then unknown keys,
    /// then missing ones.
    pub fn check(&self, settings: &Object, secrets: &Object) -> Result<(), ManifestError> {
        for key in settings.keys() {
            if !self.settings.contains_key(key) {
                if self.secrets.contains_key(key) {
                    return Err(ManifestError::SecretAsSetting(key.clone()));
                }
                return Err(ManifestError::UnknownSetting {
                    key: key.clone(),
                    declared: listed(&self.settings),
                });
            }
        }
        for key in secrets.keys() {
            if !self.secrets.contains_key(key) {
                if self.settings.contains_key(key) {
                    return Err(ManifestError::SettingAsSecret(key.clone()));
                }
                return Err(ManifestError::UnknownSecret {
                    key: key.clone(),
                    declared: listed(&self.secrets),
                });
            }
        }
        if let Some(key) = missing(&self.settings, settings) {
            return Err(ManifestError::MissingSetting(key));
        }
        if let Some(key) = missing(&self.secrets, secrets) {
            return Err(ManifestError::MissingSecret(key));
        }
        Ok(())
    }

    /// The hosts a channel may reach: those its registration gives, if any, else the
    /// manifest's defaults.
    pub fn allowed_hosts_or_default(&self, given: &[String]) -> Vec<String> {
        if given.is_empty() {
            self.allowed_hosts.clone()
        } else {
            given.to_vec()
        }
    }
}

/// The first required key that `given` lacks or holds as `null`.
fn missing(declared: &BTreeMap<String, Key>, given: &Object) -> Option<String> {
    declared
        .iter()
        .filter(|(_, key)| key.required)
        .map(|(name, _)| name)
        .find(|name| given.get(*name).is_none_or(|value| value.is_null()))
        .cloned()
}

/// `"a", "b"` or `none`, for an error message.
fn listed(declared: &BTreeMap<String, Key>) -> String {
    if declared.is_empty() {
        return "none".into();
    }
    declared
        .keys()
        .map(|key| format!("{key:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const WEBHOOK_LIKE: &str = r#"
        name = "webhook"
        description = "POSTs messages."
        allowed_hosts = ["hooks.example.com"]

        [settings.url]
        required = true
        description = "Where to POST."

        [settings.headers]
        description = "Extra headers."

        [secrets.bearer_token]
        description = "A bearer token."

        [secrets.signing_key]
        required = true
    "#;

    fn manifest() -> Manifest {
        parse(WEBHOOK_LIKE.as_bytes()).expect("a valid manifest")
    }

    fn object(value: Value) -> Object {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn check(settings: Value, secrets: Value) -> Result<(), ManifestError> {
        manifest().check(&object(settings), &object(secrets))
    }

    /// A core module holding `sections` as custom sections, wrapped in a component the way
    /// `wasm-tools component new` nests the plugin's module.
    fn component_with(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut module = wasm_encoder::Module::new();
        for (name, data) in sections {
            module.section(&wasm_encoder::CustomSection {
                name: (*name).into(),
                data: (*data).into(),
            });
        }
        let mut component = wasm_encoder::Component::new();
        component.section(&wasm_encoder::ModuleSection(&module));
        component.finish()
    }

    #[test]
    fn a_manifest_declares_settings_secrets_and_default_hosts() {
        let m = manifest();
        assert_eq!(m.name, "webhook");
        assert_eq!(m.description, "POSTs messages.");
        assert!(m.settings["url"].required);
        assert!(!m.settings["headers"].required, "optional when left out");
        assert_eq!(m.secrets["bearer_token"].description, "A bearer token.");
        assert!(m.secrets["signing_key"].required);
        assert_eq!(m.allowed_hosts, vec!["hooks.example.com"]);
    }

    #[test]
    fn a_complete_registration_passes() {
        let given = check(
            json!({"url": "https://h/", "headers": {"X-A": "1"}}),
            json!({"signing_key": "k", "bearer_token": "t"}),
        );
        assert_eq!(given, Ok(()));
        assert_eq!(
            check(json!({"url": "https://h/"}), json!({"signing_key": "k"})),
            Ok(())
        );
    }

    #[test]
    fn a_missing_required_setting_or_secret_is_refused_by_name() {
        let no_url = check(json!({}), json!({"signing_key": "k"}));
        assert_eq!(no_url, Err(ManifestError::MissingSetting("url".into())));
        let null_url = check(json!({"url": null}), json!({"signing_key": "k"}));
        assert_eq!(null_url, Err(ManifestError::MissingSetting("url".into())));
        let no_key = check(json!({"url": "https://h/"}), json!({}));
        assert_eq!(
            no_key,
            Err(ManifestError::MissingSecret("signing_key".into()))
        );
        assert!(no_key.unwrap_err().to_string().contains("\"signing_key\""));
    }

    #[test]
    fn a_secret_passed_as_a_setting_is_refused_by_name() {
        let leaked = check(
            json!({"url": "https://h/", "bearer_token": "t"}),
            json!({"signing_key": "k"}),
        );
        assert_eq!(
            leaked,
            Err(ManifestError::SecretAsSetting("bearer_token".into()))
        );
        assert!(leaked.unwrap_err().to_string().contains("`secrets`"));
    }

    #[test]
    fn a_setting_passed_as_a_secret_is_refused_by_name() {
        let hidden = check(json!({}), json!({"url": "https://h/", "signing_key": "k"}));
        assert_eq!(hidden, Err(ManifestError::SettingAsSecret("url".into())));
    }

    #[test]
    fn an_unknown_key_is_refused_by_name_listing_the_declared_ones() {
        let typo = check(json!({"ulr": "https://h/"}), json!({"signing_key": "k"}));
        let error = typo.unwrap_err();
        assert_eq!(error.key(), Some("ulr"));
        assert_eq!(
            error.to_string(),
            r#"unknown setting "ulr"; the channel's manifest declares "headers", "url""#
        );
        let stray = check(json!({"url": "u"}), json!({"signing_key": "k", "pin": "1"}));
        assert!(matches!(stray, Err(ManifestError::UnknownSecret { ref key, .. }) if key == "pin"));
    }

    #[test]
    fn given_hosts_win_over_the_manifests_defaults() {
        let m = manifest();
        assert_eq!(m.allowed_hosts_or_default(&[]), vec!["hooks.example.com"]);
        let given = vec!["api.example.org:8443".to_string()];
        assert_eq!(m.allowed_hosts_or_default(&given), given);
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_reason() {
        let cases: [(&str, &str); 6] = [
            ("description = \"no name\"", "name"),
            ("name = \"\"", "empty"),
            ("name = \"x\"\n[settings.url]\nrequried = true", "requried"),
            ("name = \"x\"\nallowed_hosts = \"h\"", "sequence"),
            (
                "name = \"x\"\n[settings.k]\n[secrets.k]",
                "both a setting and a secret",
            ),
            ("name = ", "string"),
        ];
        for (text, why) in cases {
            match parse(text.as_bytes()) {
                Err(ManifestError::InvalidManifest(m)) => assert!(m.contains(why), "{text}: {m}"),
                other => panic!("{text}: expected an invalid manifest, got {other:?}"),
            }
        }
        assert!(
            matches!(parse(b"\xff"), Err(ManifestError::InvalidManifest(m)) if m.contains("UTF-8"))
        );
        let huge = format!(
            "name = \"x\"\ndescription = \"{}\"",
            "a".repeat(MAX_MANIFEST_BYTES)
        );
        assert!(matches!(
            parse(huge.as_bytes()),
            Err(ManifestError::InvalidManifest(_))
        ));
    }

    #[test]
    fn the_manifest_is_read_from_the_core_module_nested_in_a_component() {
        let component = component_with(&[("producers", b"x"), (SECTION, WEBHOOK_LIKE.as_bytes())]);
        assert_eq!(read(&component), Ok(Some(manifest())));
    }

    #[test]
    fn a_component_without_a_manifest_has_none() {
        assert_eq!(read(&component_with(&[("producers", b"x")])), Ok(None));
    }

    #[test]
    fn two_different_manifests_are_refused() {
        let twice = component_with(&[(SECTION, b"name = \"a\""), (SECTION, b"name = \"b\"")]);
        assert!(
            matches!(read(&twice), Err(ManifestError::InvalidManifest(m)) if m.contains("two"))
        );
        let same = component_with(&[(SECTION, b"name = \"a\""), (SECTION, b"name = \"a\"")]);
        assert!(matches!(read(&same), Ok(Some(m)) if m.name == "a"));
    }

    #[test]
    fn bytes_that_are_not_webassembly_are_refused() {
        assert!(matches!(
            read(b"not wasm at all"),
            Err(ManifestError::InvalidComponent(_))
        ));
    }

    /// The webhook component as `cargo build --profile guest --target wasm32-wasip2` leaves it
    /// (stripped: the manifest's custom section must survive the guest profile's `strip`).
    fn built_webhook() -> Vec<u8> {
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(|dir| workspace.join(dir))
            .unwrap_or_else(|| workspace.join("target"));
        let path = target.join("wasm32-wasip2/guest/waymark_webhook.wasm");
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the built webhook component at {} ({e}); build it with \
                 `cargo build --profile guest --target wasm32-wasip2 -p waymark-webhook` \
                 (same CARGO_TARGET_DIR), or run `cargo xtask test`",
                path.display()
            )
        })
    }

    #[test]
    fn the_built_webhook_carries_its_manifest_and_accepts_the_usual_registration() {
        let manifest = read(&built_webhook())
            .expect("a readable component")
            .expect("the webhook embeds plugins/webhook/channel.toml");
        assert_eq!(manifest.name, "webhook");
        assert!(manifest.settings["url"].required);
        assert!(manifest.allowed_hosts.is_empty());
        let settings = object(json!({"url": "http://127.0.0.1:9/webhook", "headers": {}}));
        let secrets = object(json!({"bearer_token": "t"}));
        assert_eq!(manifest.check(&settings, &secrets), Ok(()));
        assert_eq!(
            manifest.check(&Object::new(), &Object::new()),
            Err(ManifestError::MissingSetting("url".into()))
        );
    }
}
