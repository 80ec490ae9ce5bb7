//! Signed tokens the host hands out for customers (issue 11), **pure**: minted and verified
//! with a tenant's secret, never stored. HMAC-SHA256 (RFC 2104) over documented strings, so a
//! tenant's backend can mint inbox tokens itself with any HMAC library (`docs/API.md`
//! § In-app inbox); the key is the secret's text as UTF-8 bytes.
//!
//! - **Inbox token** (customer-scoped, expiring):
//!   `wmi1.<tenant>.<customer>.<expires>.<signature>` where `<tenant>` and `<customer>` are
//!   base64url without padding (RFC 4648 § 5), `<expires>` is Unix seconds (decimal), and
//!   `<signature>` is base64url(HMAC-SHA256(secret, everything before the last dot)).
//! - **Unsubscribe link token** (no expiry, so an old email's link still works):
//!   `<claims>.<signature>` where `<claims>` is base64url of
//!   `u1␟tenant␟customer␟scope␟message id` (`␟` is 0x1f, which ids may not hold) and the
//!   signature as above over `<claims>`. `scope` is `channel:<name>` or `topic:<name>`.
//!
//! Signatures are compared in constant time (`Mac::verify_slice`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The purpose (see `store::signing_secrets`) of the secret that signs inbox tokens.
pub const INBOX_PURPOSE: &str = "inbox";
/// The purpose of the secret that signs unsubscribe links.
pub const UNSUBSCRIBE_PURPOSE: &str = "unsubscribe";

const INBOX_VERSION: &str = "wmi1";
const UNSUBSCRIBE_VERSION: &str = "u1";
const SEP: char = '\u{1f}';

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not one this server issues")]
    Malformed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

/// A new random secret: 32 bytes from the operating system, hex, with a prefix that says what
/// it is when it turns up in a config file.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("wsec_{}", hex::encode(bytes)))
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

fn sign(secret: &str, input: &str) -> String {
    let mut m = mac(secret);
    m.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

/// Whether `signature` (base64url) signs `input` under one of `secrets`.
fn verifies<'a>(secrets: impl IntoIterator<Item = &'a str>, input: &str, signature: &str) -> bool {
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    secrets.into_iter().any(|secret| {
        let mut m = mac(secret);
        m.update(input.as_bytes());
        m.verify_slice(&signature).is_ok()
    })
}

fn b64_text(part: &str) -> Result<String, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    String::from_utf8(bytes).map_err(|_| TokenError::Malformed)
}

/// Whom an inbox token speaks for, and until when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxClaims {
    pub tenant: String,
    pub customer: String,
    pub expires_at: i64,
}

/// An inbox token for `claims`, signed with `secret`.
pub fn mint_inbox_token(secret: &str, claims: &InboxClaims) -> String {
    let unsigned = format!(
        "{INBOX_VERSION}.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(&claims.tenant),
        URL_SAFE_NO_PAD.encode(&claims.customer),
        claims.expires_at
    );
    let signature = sign(secret, &unsigned);
    format!("{unsigned}.{signature}")
}

/// The claims an inbox token makes, unverified: what to look the tenant's secret up by.
pub fn read_inbox_token(token: &str) -> Result<InboxClaims, TokenError> {
    let mut parts = token.split('.');
    let (Some(INBOX_VERSION), Some(tenant), Some(customer), Some(expires), Some(_), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    Ok(InboxClaims {
        tenant: b64_text(tenant)?,
        customer: b64_text(customer)?,
        expires_at: expires.parse().map_err(|_| TokenError::Malformed)?,
    })
}

/// Verifies an inbox token against the tenant's `secrets` at `now` (Unix seconds).
pub fn verify_inbox_token<'a>(
    token: &str,
    secrets: impl IntoIterator<Item = &'a str>,
    now: i64,
) -> Result<InboxClaims, TokenError> {
    let claims = read_inbox_token(token)?;
    let (unsigned, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    if !verifies(secrets, unsigned, signature) {
        return Err(TokenError::BadSignature);
    }
    if claims.expires_at <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// What an unsubscribe link leaves: one channel, or one subscription topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Channel(String),
    Topic(String),
}

impl Scope {
    fn encode(&self) -> String {
        match self {
            Scope::Channel(c) => format!("channel:{c}"),
            Scope::Topic(t) => format!("topic:{t}"),
        }
    }

    fn decode(text: &str) -> Option<Scope> {
        match text.split_once(':')? {
            ("channel", c) => Some(Scope::Channel(c.to_string())),
            ("topic", t) => Some(Scope::Topic(t.to_string())),
            _ => None,
        }
    }
}

/// What an unsubscribe link is about: a tenant's customer, the scope the message was sent
/// under, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeClaims {
    pub tenant: String,
    pub customer: String,
    pub scope: Scope,
    pub message: String,
}

/// An unsubscribe link's token for `claims`, signed with `secret`.
pub fn mint_unsubscribe_token(secret: &str, claims: &UnsubscribeClaims) -> String {
    let text = [
        UNSUBSCRIBE_VERSION,
        &claims.tenant,
        &claims.customer,
        &claims.scope.encode(),
        &claims.message,
    ]
    .join(&SEP.to_string());
    let encoded = URL_SAFE_NO_PAD.encode(text);
    let signature = sign(secret, &encoded);
    format!("{encoded}.{signature}")
}

/// The claims of an unsubscribe token, unverified: what to look the tenant's secret up by.
pub fn read_unsubscribe_token(token: &str) -> Result<UnsubscribeClaims, TokenError> {
    let (encoded, _) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let text = b64_text(encoded)?;
    let parts: Vec<&str> = text.split(SEP).collect();
    let [UNSUBSCRIBE_VERSION, tenant, customer, scope, message] = parts.as_slice() else {
        return Err(TokenError::Malformed);
    };
    Ok(UnsubscribeClaims {
        tenant: tenant.to_string(),
        customer: customer.to_string(),
        scope: Scope::decode(scope).ok_or(TokenError::Malformed)?,
        message: message.to_string(),
    })
}

/// Verifies an unsubscribe token against the tenant's `secrets`.
pub fn verify_unsubscribe_token<'a>(
    token: &str,
    secrets: impl IntoIterator<Item = &'a str>,
) -> Result<UnsubscribeClaims, TokenError> {
    let claims = read_unsubscribe_token(token)?;
    let (encoded, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if !verifies(secrets, encoded, signature) {
        return Err(TokenError::BadSignature);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires_at: i64) -> InboxClaims {
        InboxClaims {
            tenant: "acme".into(),
            customer: "ada.lovelace@example.com".into(),
            expires_at,
        }
    }

    #[test]
    fn an_inbox_token_verifies_under_its_secret_until_it_expires() {
        let token = mint_inbox_token("s1", &claims(100));
        assert!(token.starts_with("wmi1.YWNtZQ."), "{token}");
        assert_eq!(verify_inbox_token(&token, ["s1"], 99), Ok(claims(100)));
        assert_eq!(
            verify_inbox_token(&token, ["s0", "s1"], 99),
            Ok(claims(100)),
            "a previous secret still verifies"
        );
        assert_eq!(
            verify_inbox_token(&token, ["s1"], 100),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_inbox_token(&token, ["other"], 99),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_token_changed_anywhere_is_refused() {
        let token = mint_inbox_token("s1", &claims(100));
        let other = URL_SAFE_NO_PAD.encode("bob");
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{other}.{}.{}",
            parts[0], parts[1], parts[3], parts[4]
        );
        assert_eq!(
            verify_inbox_token(&forged, ["s1"], 0),
            Err(TokenError::BadSignature)
        );
        let later = token.replace(".100.", ".999999.");
        assert_eq!(
            verify_inbox_token(&later, ["s1"], 0),
            Err(TokenError::BadSignature)
        );
        for junk in [
            "",
            "wmi1",
            "wmi1.a.b.c.d.e",
            "wmi2.YQ.YQ.1.x",
            "wmi1.!!.YQ.1.x",
        ] {
            assert_eq!(
                verify_inbox_token(junk, ["s1"], 0),
                Err(TokenError::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_the_documented_string() {
        // What a tenant's backend computes with any HMAC library (RFC 4231's test case 2 key
        // and message shape: key "Jefe").
        let token = mint_inbox_token(
            "Jefe",
            &InboxClaims {
                tenant: "t".into(),
                customer: "c".into(),
                expires_at: 1,
            },
        );
        let (unsigned, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(unsigned, "wmi1.dA.Yw.1");
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        m.update(b"wmi1.dA.Yw.1");
        assert_eq!(signature, URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
    }

    #[test]
    fn an_unsubscribe_token_round_trips_and_refuses_a_forgery() {
        let claims = UnsubscribeClaims {
            tenant: "acme".into(),
            customer: "ada".into(),
            scope: Scope::Topic("product tips".into()),
            message: "k1-ab-0".into(),
        };
        let token = mint_unsubscribe_token("s", &claims);
        assert!(!token.contains('/') && !token.contains('+'), "URL-safe");
        assert_eq!(verify_unsubscribe_token(&token, ["s"]), Ok(claims.clone()));
        assert_eq!(
            verify_unsubscribe_token(&token, ["t"]),
            Err(TokenError::BadSignature)
        );
        let bob = UnsubscribeClaims {
            customer: "bob".into(),
            ..claims
        };
        let (forged_claims, _) = mint_unsubscribe_token("x", &bob)
            .split_once('.')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        let (_, signature) = token.split_once('.').unwrap();
        assert_eq!(
            verify_unsubscribe_token(&format!("{forged_claims}.{signature}"), ["s"]),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn new_secrets_differ() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + 64);
    }
}
