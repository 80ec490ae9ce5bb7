//! Signing in to the dashboard with a tenant key, and what every page then checks.
//!
//! - **Sign-in** takes an `admin` or `read` key (never a `write` key: those ship in browsers
//!   and apps to post events) and opens a server-side session: a random 256-bit id goes to the
//!   browser in the cookie; the store keeps only its SHA-256 with the tenant, the key's digest,
//!   the CSRF token and the expiry (`store::sessions`). Signing out deletes the record; the key
//!   is looked up again on every request, so revoking it ends its sessions at once.
//! - **The cookie** is `HttpOnly; SameSite=Strict; Path=/ui`, and `Secure` when the request
//!   came over TLS. The host serves plain HTTP itself, so TLS means a terminating proxy in
//!   front: a request carrying `X-Forwarded-Proto: https` (or `Forwarded: proto=https`) gets a
//!   `Secure` cookie. Trusting the header cannot weaken anything: a client that sends it only
//!   makes its own cookie stricter.
//! - **CSRF**: every form of a session carries its synchronizer token (random, 256 bits, kept
//!   in the session's record) and [`Checked`] compares it in constant time before the handler
//!   runs; a form without it, or with another, is refused with 403. The sign-in form, which
//!   has no session yet, carries a token that must equal the one in a short-lived pre-session
//!   cookie set with the form (double submit), so no other site can sign a browser in.

use super::error::{UiError, UiResult};
use super::render;
use crate::api::AppState;
use crate::clock::system_now;
use crate::model::Millis;
use crate::store::{Scope, UiSession};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "waymark_session";
/// The sign-in form's pre-session cookie (double-submit CSRF token).
const SIGN_IN_COOKIE: &str = "waymark_sign_in";
/// How long a session lasts after sign-in.
const SESSION_TTL_MS: Millis = 12 * 60 * 60 * 1000;
/// How long a sign-in form stays usable.
const SIGN_IN_TTL_S: u64 = 30 * 60;

/// 32 random bytes, hex.
fn random_token() -> UiResult<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| UiError::Internal(e.to_string()))?;
    Ok(hex::encode(b))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Whether two tokens are equal, in time independent of where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A cookie's value from the request's `Cookie` headers (RFC 6265 § 5.4: `name=value` pairs
/// separated by `; `).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Whether the request reached the TLS-terminating proxy in front of the host over HTTPS.
fn over_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https")
        });
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        });
    forwarded_proto || forwarded
}

/// A `Set-Cookie` value for the dashboard's path with the attributes every one of its cookies
/// has; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// A signed-in browser: the tenant, what its key may do, and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Signed {
    pub tenant: String,
    pub scope: Scope,
    pub csrf: String,
    id_digest: String,
}

impl Signed {
    /// Whether this session may change things (claim, resolve, requeue): admin keys only, as
    /// on the JSON routes.
    pub fn require_admin(&self) -> UiResult<()> {
        match self.scope {
            Scope::Admin => Ok(()),
            _ => Err(UiError::Forbidden(
                "this session was opened with a read key, which cannot change anything".into(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> UiResult<Signed> {
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(UiError::SignIn)?;
        let id_digest = sha256_hex(id);
        let store = &state.host.store;
        let session = store
            .ui_session(&id_digest, system_now())?
            .ok_or(UiError::SignIn)?;
        // The key is checked on every request: a revoked key ends its sessions now.
        let key = store
            .access_key(&session.key_digest)?
            .filter(|k| k.tenant == session.tenant && k.scope != Scope::Write)
            .ok_or(UiError::SignIn)?;
        Ok(Signed {
            tenant: session.tenant,
            scope: key.scope,
            csrf: session.csrf,
            id_digest,
        })
    }
}

/// A form every field of which is checked only after its `csrf` field matched the session's
/// token: the one way a dashboard handler takes a form.
pub struct Checked<T> {
    pub session: Signed,
    pub form: T,
}

/// A form's CSRF field, whatever else it holds.
pub trait CsrfField {
    fn csrf(&self) -> Option<&str>;
}

impl<T> FromRequest<AppState> for Checked<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = UiError;

    async fn from_request(request: Request, state: &AppState) -> UiResult<Checked<T>> {
        let (mut parts, body) = request.into_parts();
        let session = Signed::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(|e| UiError::BadRequest(e.body_text()))?;
        match form.csrf() {
            Some(token) if same_token(token, &session.csrf) => Ok(Checked { session, form }),
            _ => Err(UiError::Forbidden(
                "this form is missing its CSRF token, or has another session's; reload the page and try again"
                    .into(),
            )),
        }
    }
}

/// The sign-in form's optional `?error=`.
#[derive(Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    error: Option<String>,
}

/// `GET /ui/sign-in`: the form, with a fresh pre-session token in the form and the cookie.
pub async fn sign_in_page(
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> UiResult<Response> {
    let token = random_token()?;
    let error = query.error;
    let page = render::page(
        "sign_in.html",
        None,
        minijinja::context! { csrf => token.clone(), error => error },
    )?;
    Ok((
        [(
            header::SET_COOKIE,
            set_cookie(SIGN_IN_COOKIE, &token, SIGN_IN_TTL_S, over_tls(&headers)),
        )],
        Html(page),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /ui/sign-in`: an admin or read key opens a session; anything else is refused with
/// 401 on the form's page.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> UiResult<Response> {
    let expected = cookie(&headers, SIGN_IN_COOKIE);
    let fresh = match (expected, form.csrf.as_deref()) {
        (Some(a), Some(b)) => same_token(a, b),
        _ => false,
    };
    if !fresh {
        return Err(UiError::Forbidden(
            "this sign-in form is missing its CSRF token or has expired; reload it and try again"
                .into(),
        ));
    }
    let key = form.key.trim();
    let key_digest = sha256_hex(key);
    let found = if key.is_empty() {
        None
    } else {
        state.host.store.access_key(&key_digest)?
    };
    let Some(found) = found.filter(|k| k.scope != Scope::Write) else {
        return refused(&headers);
    };
    let id = random_token()?;
    let now = system_now();
    let session = UiSession {
        tenant: found.tenant.clone(),
        key_digest,
        csrf: random_token()?,
        created_at: now,
        expires_at: now + SESSION_TTL_MS,
    };
    state
        .host
        .store
        .create_ui_session(&sha256_hex(&id), &session, now)
        .await?;
    tracing::info!(tenant = %found.tenant, "dashboard session opened");
    let secure = over_tls(&headers);
    let mut response = Redirect::to("/ui/journeys").into_response();
    let cookies = response.headers_mut();
    for value in [
        set_cookie(SESSION_COOKIE, &id, (SESSION_TTL_MS / 1000) as u64, secure),
        set_cookie(SIGN_IN_COOKIE, "", 0, secure),
    ] {
        if let Ok(value) = value.parse() {
            cookies.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// A refused sign-in: the form again, 401, saying why in words that do not tell a wrong key
/// from a write key.
fn refused(headers: &HeaderMap) -> UiResult<Response> {
    let token = random_token()?;
    let page = render::page(
        "sign_in.html",
        None,
        minijinja::context! {
            csrf => token.clone(),
            error => "That key cannot sign in: use an admin or read key of your tenant.",
        },
    )?;
    Ok((
        axum::http::StatusCode::UNAUTHORIZED,
        [(
            header::SET_COOKIE,
            set_cookie(SIGN_IN_COOKIE, &token, SIGN_IN_TTL_S, over_tls(headers)),
        )],
        Html(page),
    )
        .into_response())
}

/// A form that carries nothing but its CSRF token.
#[derive(Deserialize)]
pub struct TokenOnly {
    #[serde(default)]
    csrf: Option<String>,
}

impl CsrfField for TokenOnly {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /ui/sign-out`: deletes the session and the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    checked: Checked<TokenOnly>,
) -> UiResult<Response> {
    state
        .host
        .store
        .delete_ui_session(&checked.session.id_digest)
        .await?;
    let mut response = Redirect::to("/ui/sign-in").into_response();
    if let Ok(value) = set_cookie(SESSION_COOKIE, "", 0, over_tls(&headers)).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_read_by_name_among_several() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; waymark_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "waymark"), None);
    }

    #[test]
    fn the_cookie_is_secure_only_behind_tls() {
        let mut h = HeaderMap::new();
        assert!(!over_tls(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.2.3.4;proto=https"),
        );
        assert!(over_tls(&h));
        assert_eq!(
            set_cookie("n", "v", 5, true),
            "n=v; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=5; Secure"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abcd", "abcd"));
        assert!(!same_token("abcd", "abce"));
        assert!(!same_token("abcd", "abc"));
    }
}
