//! Where a command finds its server and credentials, first match wins: the flags (`--url`,
//! `--key`, `--admin-token`), the environment (`WAYMARK_URL`, `WAYMARK_KEY`,
//! `WAYMARK_ADMIN_TOKEN`), then a profile of the config file (`$WAYMARK_CONFIG`, else
//! `$XDG_CONFIG_HOME/waymark/config.toml`, else `~/.config/waymark/config.toml`):
//!
//! ```toml
//! default_profile = "local"      # optional; else the profile named "default"
//! [profiles.local]
//! url = "http://127.0.0.1:7700"
//! key = "wmk_..."                # a tenant's API key
//! admin_token = "..."            # for `waymark tenant create`
//! ```
//!
//! `--profile` (or `WAYMARK_PROFILE`) picks another profile. Without any of these the URL is
//! `waymark serve`'s default listen address.

use super::CliError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use waymark_client::Client;

/// `waymark serve`'s default `--listen`.
const DEFAULT_URL: &str = "http://127.0.0.1:7700";

/// How long one request may take; an import batch of 1,000 events takes well under it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The connection options every client command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Options {
    /// The server, `http://HOST:PORT`.
    #[arg(long, env = "WAYMARK_URL", global = true)]
    pub url: Option<String>,
    /// A tenant's API key.
    #[arg(long, env = "WAYMARK_KEY", global = true, hide_env_values = true)]
    pub key: Option<String>,
    /// The admin token (`waymark tenant create`).
    #[arg(
        long,
        env = "WAYMARK_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// A profile of the config file.
    #[arg(long, env = "WAYMARK_PROFILE", global = true)]
    pub profile: Option<String>,
    /// The config file (default `~/.config/waymark/config.toml`).
    #[arg(long, env = "WAYMARK_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// One profile of the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    url: Option<String>,
    key: Option<String>,
    admin_token: Option<String>,
}

/// Which credential a command acts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A tenant's API key.
    Tenant,
    /// The admin token.
    Admin,
}

/// The resolved connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub url: String,
    pub token: String,
}

impl Options {
    /// A client acting as `role`, or why there is none.
    pub fn client(&self, role: Role) -> Result<Client, CliError> {
        let resolved = self.resolve(role, default_config_path().as_deref())?;
        Client::new(&resolved.url, Some(&resolved.token), REQUEST_TIMEOUT).map_err(CliError::from)
    }

    /// Flags and environment first (clap has merged them), then the profile.
    fn resolve(&self, role: Role, default_path: Option<&Path>) -> Result<Resolved, CliError> {
        let profile = self.profile(default_path)?;
        let url = self
            .url
            .clone()
            .or(profile.url)
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        if !url.starts_with("http://") {
            return Err(CliError::Config(format!(
                "--url {url:?}: only http:// URLs are supported (the client speaks plain HTTP)"
            )));
        }
        let (token, what) = match role {
            Role::Tenant => (self.key.clone().or(profile.key), "--key or WAYMARK_KEY"),
            Role::Admin => (
                self.admin_token.clone().or(profile.admin_token),
                "--admin-token or WAYMARK_ADMIN_TOKEN",
            ),
        };
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            CliError::Config(format!(
                "no credential: pass {what}, or set it in a config-file profile"
            ))
        })?;
        Ok(Resolved { url, token })
    }

    /// The chosen profile of the config file; an empty one when there is no file and no
    /// profile was asked for by name.
    fn profile(&self, default_path: Option<&Path>) -> Result<Profile, CliError> {
        let (path, explicit) = match &self.config {
            Some(path) => (Some(path.clone()), true),
            None => (default_path.map(Path::to_path_buf), false),
        };
        let file = match path {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => toml::from_str::<File>(&text)
                    .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => File::default(),
                Err(e) => return Err(CliError::io("cannot read", &path, e)),
            },
            None => File::default(),
        };
        let wanted = self.profile.clone().or(file.default_profile.clone());
        match wanted {
            Some(name) => {
                file.profiles.get(&name).cloned().ok_or_else(|| {
                    CliError::Config(format!("no profile {name:?} in the config file"))
                })
            }
            None => Ok(file.profiles.get("default").cloned().unwrap_or_default()),
        }
    }
}

/// `$XDG_CONFIG_HOME/waymark/config.toml`, else `$HOME/.config/waymark/config.toml`.
fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("waymark").join("config.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const FILE: &str = r#"
default_profile = "staging"
[profiles.default]
url = "http://127.0.0.1:1"
key = "k-default"
[profiles.staging]
url = "http://10.0.0.2:7700"
key = "k-staging"
admin_token = "admin-staging-token"
"#;

    #[test]
    fn flags_win_over_the_profile_and_the_profile_fills_the_rest() {
        let (_dir, path) = config(FILE);
        let options = Options {
            key: Some("k-flag".into()),
            ..Options::default()
        };
        let got = options.resolve(Role::Tenant, Some(&path)).unwrap();
        assert_eq!(got.url, "http://10.0.0.2:7700");
        assert_eq!(got.token, "k-flag");
        let admin = options.resolve(Role::Admin, Some(&path)).unwrap();
        assert_eq!(admin.token, "admin-staging-token");
    }

    #[test]
    fn a_named_profile_is_chosen_over_the_default_one() {
        let (_dir, path) = config(FILE);
        let options = Options {
            profile: Some("default".into()),
            ..Options::default()
        };
        let got = options.resolve(Role::Tenant, Some(&path)).unwrap();
        assert_eq!(got.token, "k-default");
        let missing = Options {
            profile: Some("prod".into()),
            ..Options::default()
        };
        let err = missing.resolve(Role::Tenant, Some(&path)).unwrap_err();
        assert!(err.message().contains("prod"), "{err}");
    }

    #[test]
    fn without_a_file_the_url_is_the_servers_default_and_a_key_is_required() {
        let options = Options::default();
        let err = options.resolve(Role::Tenant, None).unwrap_err();
        assert_eq!(err.code(), "config");
        let options = Options {
            key: Some("k".into()),
            ..Options::default()
        };
        assert_eq!(
            options.resolve(Role::Tenant, None).unwrap().url,
            DEFAULT_URL
        );
    }

    #[test]
    fn an_explicit_config_file_that_is_missing_or_malformed_is_an_error() {
        let options = Options {
            config: Some("/nonexistent/waymark.toml".into()),
            key: Some("k".into()),
            ..Options::default()
        };
        assert_eq!(
            options.resolve(Role::Tenant, None).unwrap_err().code(),
            "io"
        );
        let (_dir, path) = config("profiles = 3");
        let options = Options {
            config: Some(path),
            key: Some("k".into()),
            ..Options::default()
        };
        assert_eq!(
            options.resolve(Role::Tenant, None).unwrap_err().code(),
            "config"
        );
    }

    #[test]
    fn an_https_url_is_refused_clearly() {
        let options = Options {
            url: Some("https://waymark.example".into()),
            key: Some("k".into()),
            ..Options::default()
        };
        let err = options.resolve(Role::Tenant, None).unwrap_err();
        assert!(err.message().contains("http://"), "{err}");
    }
}
