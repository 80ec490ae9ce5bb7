//! `Content-Encoding` of a Segment-compatible body: none, `identity` or `gzip` (Segment's
//! libraries gzip when asked: analytics-python's `gzip=True` sends one gzip member with
//! `Content-Encoding: gzip`). A gzip body is inflated under a bound, so a small body that
//! inflates to gigabytes (a gzip bomb) costs at most the bound before it is refused with 413.

use super::super::prelude::*;
use axum::http::{header, HeaderMap};
use std::io::Read;

/// The body as sent, inflated if it is gzipped; at most `limit` bytes once inflated.
pub(super) fn decoded(headers: &HeaderMap, body: Bytes, limit: usize) -> ApiResult<Bytes> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") | Some("x-gzip") => gunzip(&body, limit).map(Bytes::from),
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("Content-Encoding {other:?} is not taken; send gzip or no encoding"),
        )),
    }
}

/// Inflates every gzip member of `body` (RFC 1952 allows several), reading at most one byte
/// past `limit` of output: past it, 413.
fn gunzip(body: &[u8], limit: usize) -> ApiResult<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("the gzip body does not inflate: {e}"),
            )
        })?;
    if out.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the gzip body inflates past this route's {limit} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(encoding).unwrap(),
        );
        h
    }

    #[test]
    fn a_gzip_body_is_inflated_and_a_plain_one_kept() {
        let body = Bytes::from(gzip(b"{\"a\":1}"));
        assert_eq!(
            &decoded(&headers("GZIP"), body, 100).unwrap()[..],
            b"{\"a\":1}"
        );
        let plain = Bytes::from_static(b"{}");
        assert_eq!(
            &decoded(&HeaderMap::new(), plain.clone(), 100).unwrap()[..],
            b"{}"
        );
        assert_eq!(
            &decoded(&headers("identity"), plain, 100).unwrap()[..],
            b"{}"
        );
    }

    #[test]
    fn a_gzip_bomb_is_refused_at_the_bound() {
        // 64 MiB of zeros deflate to about 64 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10);
        let e = decoded(&headers("gzip"), Bytes::from(bomb), 500 << 10).unwrap_err();
        assert_eq!(e.into_response().status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn bad_gzip_and_other_encodings_are_refused() {
        let e = decoded(&headers("gzip"), Bytes::from_static(b"not gzip"), 100).unwrap_err();
        assert_eq!(e.into_response().status(), StatusCode::BAD_REQUEST);
        let e = decoded(&headers("br"), Bytes::from_static(b"{}"), 100).unwrap_err();
        assert_eq!(
            e.into_response().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
