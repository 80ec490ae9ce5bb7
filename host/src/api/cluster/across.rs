//! The dashboard over several partitions (issue 14 in cluster mode): partition 0 serves the
//! pages (its sessions, and the tenant-global data every page starts from), and reads and does
//! what is spread over the partitions — reports, customers, tasks, dead letters, backtests —
//! through this node's front, as the JSON routes answer it for the signed-in tenant
//! ([`spread::answer`]: a customer's partition, a listing gathered from all, a report added
//! up). So a page shows what the route shows on any node, as on one node.
//!
//! A request the dashboard makes acts for the session's tenant with the session's scope, not
//! with a key (the session keeps only the key's digest). It says so in [`ACTING_FOR`], which a
//! node believes only on a request carrying a partition tag (only nodes, which know the admin
//! token, make one) and which the front strips from every other; a request answered on this
//! node carries the caller in its extensions.

use super::{spread, ClusterState, Held};
use crate::api::Caller;
use crate::store::Scope;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The header naming the tenant and scope a request passed on between nodes acts for:
/// `<scope> <tenant>`.
pub const ACTING_FOR: &str = "waymark-acting-for";

/// What a partition refused, as it said it.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

/// The dashboard's way to the other partitions: this node's front.
#[derive(Clone)]
pub struct Across {
    front: ClusterState,
}

impl Across {
    pub fn new(front: ClusterState) -> Across {
        Across { front }
    }

    /// `GET path` for `tenant` with `scope`, decoded.
    pub async fn get<T: DeserializeOwned>(
        &self,
        tenant: &str,
        scope: Scope,
        path: &str,
    ) -> Result<T, Refused> {
        self.ask(tenant, scope, Method::GET, path, bytes::Bytes::new())
            .await
    }

    /// `POST path` with `body` for `tenant` with `scope`, decoded.
    pub async fn post<T: DeserializeOwned>(
        &self,
        tenant: &str,
        scope: Scope,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Refused> {
        let body = serde_json::to_vec(body).map_err(|e| Refused {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
        })?;
        self.ask(tenant, scope, Method::POST, path, body.into())
            .await
    }

    async fn ask<T: DeserializeOwned>(
        &self,
        tenant: &str,
        scope: Scope,
        method: Method,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<T, Refused> {
        let internal = |message: String| Refused {
            status: StatusCode::BAD_GATEWAY,
            message,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(ACTING_FOR, acting_for(tenant, scope))
            .body(Body::empty())
            .map_err(|e| internal(e.to_string()))?;
        request.extensions_mut().insert(Caller {
            tenant: tenant.to_owned(),
            scope,
        });
        let (parts, _) = request.into_parts();
        let target = spread::target(
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            self.front.directory.partitions(),
        );
        let response = spread::answer(&self.front, target, Held { parts, body }).await;
        let (status, body) = spread::read(response)
            .await
            .map_err(|_| internal(format!("the answer to {path} could not be read")))?;
        if !status.is_success() {
            let said: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let message = said["error"]["message"]
                .as_str()
                .map_or_else(|| String::from_utf8_lossy(&body).into_owned(), String::from);
            return Err(Refused { status, message });
        }
        serde_json::from_slice(&body).map_err(|e| internal(format!("the answer to {path}: {e}")))
    }
}

fn acting_for(tenant: &str, scope: Scope) -> String {
    let scope = match scope {
        Scope::Admin => "admin",
        Scope::Read => "read",
        Scope::Write => "write",
    };
    format!("{scope} {tenant}")
}

/// The caller a request passed on by a node acts for ([`ACTING_FOR`]), if it names one.
pub(super) fn caller_named(headers: &HeaderMap) -> Option<Caller> {
    let value = headers.get(ACTING_FOR)?.to_str().ok()?;
    let (scope, tenant) = value.split_once(' ')?;
    let scope = match scope {
        "admin" => Scope::Admin,
        "read" => Scope::Read,
        "write" => Scope::Write,
        _ => return None,
    };
    Some(Caller {
        tenant: tenant.to_owned(),
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_caller_a_node_names_reads_back() {
        let mut headers = HeaderMap::new();
        let value = acting_for("acme", Scope::Read);
        headers.insert(ACTING_FOR, HeaderValue::from_str(&value).unwrap());
        let caller = caller_named(&headers).unwrap();
        assert_eq!(
            (caller.tenant.as_str(), caller.scope),
            ("acme", Scope::Read)
        );
        headers.insert(ACTING_FOR, HeaderValue::from_static("root acme"));
        assert!(caller_named(&headers).is_none());
    }
}
