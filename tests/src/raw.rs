//! Raw HTTP/1.1 over a TCP stream, for what a well-behaved client cannot send: a request
//! target or headers past the server's limits, a `Content-Length` with no body behind it, half
//! a request head.

use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of a server's `http://host:port` URL.
pub fn authority(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// Sends `request` as is on a new connection and reads the answer until the server closes it
/// (send `Connection: close`) or 30 s pass: the status and the body as JSON (`Value::Null`
/// when it is not JSON).
pub async fn raw_request(url: &str, request: &[u8]) -> (u16, Value, String) {
    let mut stream = TcpStream::connect(authority(url))
        .await
        .expect("cannot connect");
    // The server may answer and close before it has read everything (e.g. a refused body).
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    parse_answer(&answer)
}

/// The status, the JSON body and the head of an HTTP/1.1 answer.
pub fn parse_answer(answer: &[u8]) -> (u16, Value, String) {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, body, head.to_string())
}
