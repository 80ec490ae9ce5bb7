//! [`CliError`]: why a client command failed, as the code and message it prints
//! (`error: <code>: <message>`). An API error keeps the server's own code, so a script sees
//! `not_found` or `rate_limited` exactly as `docs/API.md` names them.

use waymark_client::ClientError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error: its code and message.
    #[error("{code}: {message}")]
    Api { code: String, message: String },
    /// No usable answer: the server is unreachable, or answered something undocumented.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The command line, the config file or the environment is wrong.
    #[error("config: {0}")]
    Config(String),
    /// An input (a file, a `KEY=VALUE`, an event's JSON) is wrong; the message names where.
    #[error("invalid_input: {0}")]
    Input(String),
    /// A local file could not be read or written.
    #[error("io: {0}")]
    Io(String),
    /// `cargo build` of a crate directory failed, or left no component.
    #[error("build_failed: {0}")]
    Build(String),
    /// The import's checkpoint belongs to another input (the file changed since).
    #[error("checkpoint_mismatch: {0}")]
    CheckpointMismatch(String),
}

impl CliError {
    /// The code printed after `error: `.
    pub fn code(&self) -> &str {
        match self {
            CliError::Api { code, .. } => code,
            CliError::Unreachable(_) => "unreachable",
            CliError::Config(_) => "config",
            CliError::Input(_) => "invalid_input",
            CliError::Io(_) => "io",
            CliError::Build(_) => "build_failed",
            CliError::CheckpointMismatch(_) => "checkpoint_mismatch",
        }
    }

    /// The message printed after the code.
    pub fn message(&self) -> String {
        match self {
            CliError::Api { message, .. } => message.clone(),
            CliError::Unreachable(m)
            | CliError::Config(m)
            | CliError::Input(m)
            | CliError::Io(m)
            | CliError::Build(m)
            | CliError::CheckpointMismatch(m) => m.clone(),
        }
    }

    /// An I/O failure on `path`.
    pub fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> CliError {
        CliError::Io(format!("{what} {}: {err}", path.display()))
    }
}

impl From<ClientError> for CliError {
    fn from(err: ClientError) -> CliError {
        match err {
            ClientError::Api { error, .. } => CliError::Api {
                code: error.code,
                message: error.message,
            },
            other => CliError::Unreachable(chain(&other)),
        }
    }
}

/// An error and its causes, `: `-separated: reqwest's own message ("error sending request")
/// says nothing of why without its sources ("connection refused").
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_keeps_the_servers_code_and_message() {
        let err = CliError::Api {
            code: "not_found".into(),
            message: "no journey \"x\"".into(),
        };
        assert_eq!(err.code(), "not_found");
        assert_eq!(err.message(), "no journey \"x\"");
        assert_eq!(
            CliError::Input("line 3: not JSON".into()).code(),
            "invalid_input"
        );
    }
}
