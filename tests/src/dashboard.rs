//! Signing in to the dashboard and reading its pages over plain HTTP, as a browser does
//! (issue 14): the security tests and the cluster's dashboard test read pages this way.

use crate::reqwest::{header, redirect, Client as Http, StatusCode};

pub fn http() -> Http {
    Http::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// A signed-in session: its cookie, its CSRF token, and the raw `Set-Cookie` it came with.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub set_cookie: String,
}

/// The `value` of `<input ... name="csrf" value="...">` in a page.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap_or_default().to_string()
}

/// The `Set-Cookie` of the session cookie among an answer's headers.
pub fn session_set_cookie(headers: &crate::reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("waymark_session="))
        .map(String::from)
}

pub fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

pub async fn get(http: &Http, base: &str, path: &str, cookie: &str) -> (StatusCode, String) {
    let r = http
        .get(format!("{base}{path}"))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .expect("an answer");
    (r.status(), r.text().await.unwrap_or_default())
}

/// Posts a form as a browser does; answers the status and the page.
pub async fn post_form(
    http: &Http,
    base: &str,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let r = send_form(http, base, path, cookie, fields).await;
    (r.status(), r.text().await.unwrap_or_default())
}

/// Posts a form as a browser does; answers the status and where it redirects to.
pub async fn post_form_to(
    http: &Http,
    base: &str,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, Option<String>) {
    let r = send_form(http, base, path, cookie, fields).await;
    let location = r
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (r.status(), location)
}

async fn send_form(
    http: &Http,
    base: &str,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> crate::reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    http.post(format!("{base}{path}"))
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("an answer")
}

/// Signs in with `key` as a browser would; the refusal's status otherwise.
pub async fn sign_in(http: &Http, base: &str, key: &str) -> Result<Session, StatusCode> {
    let form = http
        .get(format!("{base}/ui/sign-in"))
        .send()
        .await
        .expect("the form");
    let pre = cookie_of(
        form.headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .expect("a pre-session cookie"),
    );
    let token = csrf_of(&form.text().await.unwrap());
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("key", key), ("csrf", &token)])
        .finish();
    let answer = http
        .post(format!("{base}/ui/sign-in"))
        .header(header::COOKIE, &pre)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("an answer");
    if answer.status() != StatusCode::SEE_OTHER {
        return Err(answer.status());
    }
    let set_cookie = session_set_cookie(answer.headers()).expect("a session cookie");
    let cookie = cookie_of(&set_cookie);
    let (status, page) = get(http, base, "/ui/journeys", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    Ok(Session {
        cookie,
        csrf: csrf_of(&page),
        set_cookie,
    })
}
