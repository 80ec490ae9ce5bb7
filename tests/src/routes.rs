//! The API's routes as the host declares them, read from the `.route("path", get(..).post(..))`
//! calls of `host/src/api/`: tests that must cover every route (scopes, the OpenAPI document)
//! check a route added there without naming it. The dashboard's HTML routes (`host/src/ui/`,
//! issue 14) are not read: they are not JSON API routes and have no OpenAPI operation.

use crate::artifacts::workspace_root;
use reqwest::Method;
use std::collections::BTreeSet;

/// Every `(method, path)` the API routes, read from the `.route("path", get(..).post(..))`
/// calls of `host/src/api/`: a route added there is checked here without naming it.
pub fn declared() -> BTreeSet<(Method, String)> {
    let mut out = BTreeSet::new();
    let mut files = vec![workspace_root().join("host/src/api")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("the api sources") {
                files.push(entry.expect("a source").path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("a source");
        let mut rest = source.as_str();
        while let Some(at) = rest.find(".route(") {
            // The path literal, maybe on the next line (rustfmt wraps long calls).
            rest = rest[at + ".route(".len()..].trim_start();
            let Some(literal) = rest.strip_prefix('"') else {
                continue;
            };
            rest = literal;
            let Some(end) = rest.find('"') else { break };
            let route = rest[..end].to_string();
            // The handlers: up to the parenthesis closing `.route(`.
            let mut depth = 1;
            let mut close = rest.len();
            for (i, c) in rest[end..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    close = end + i;
                    break;
                }
            }
            let handlers = &rest[end..close];
            for (name, method) in [
                ("get", Method::GET),
                ("post", Method::POST),
                ("put", Method::PUT),
                ("delete", Method::DELETE),
                ("patch", Method::PATCH),
            ] {
                let called = handlers.match_indices(&format!("{name}(")).any(|(i, _)| {
                    i == 0
                        || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && handlers.as_bytes()[i - 1] != b'_'
                });
                if called {
                    out.insert((method, route.clone()));
                }
            }
            rest = &rest[close..];
        }
    }
    out
}
