//! A channel adapter built against contract 0.1.1, from a frozen copy of that version's WIT
//! (`wit/waymark.wit` beside this crate, as of the last commit before 0.1.2; `wit/deps` links
//! to the workspace's WASI packages, which have not changed) with wit-bindgen alone — not the
//! channel SDK, which builds the 0.1.2 `receiving-channel` world. Its component exports only
//! `deliver`: no `feedback`, as every adapter built before provider feedback. A later host must
//! still deliver through it, and answer its webhook route 422.
//!
//! Without a `url` in its registration's config it delivers nowhere: it logs through the `log`
//! import and returns a receipt naming the message's template. With one, it POSTs the payload
//! there through `wasi:http/outgoing-handler`, the way every adapter reached a provider before
//! contract 0.1.3 gave the channel SDK its one-call `outbound` import: a later host must keep
//! serving that sequence of resources and streams.

// The generated `wasi:http` bindings have constructors with many arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "wit",
    world: "waymark:journey/channel",
    // The world imports `wasi:http`; bindings for it (unused here) are generated too.
    generate_all,
});

// `DeliveryError`, `Message` and `Receipt` come with the world's `use channel-types.{...}`.
use waymark::journey::log::{log, Level};

struct Legacy;

impl Guest for Legacy {
    fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
        log(
            Level::Info,
            &format!("legacy channel delivered {}", message.id),
        );
        let config: serde_json::Value = serde_json::from_str(&message.config)
            .map_err(|e| DeliveryError::Permanent(format!("config: {e}")))?;
        if let Some(url) = config["url"].as_str() {
            let status = post(url, &message.id, message.payload.as_bytes())?;
            if !(200..300).contains(&status) {
                return Err(DeliveryError::Retryable(format!("status {status}")));
            }
        }
        Ok(Receipt {
            provider_id: Some(format!("legacy-{}", message.template)),
        })
    }
}

/// `wasi:http` 0.2's sequence for one POST: fields, request, method, scheme, authority, path,
/// body, handle, write, finish, wait on the future response, read the status. Answers the
/// status.
fn post(url: &str, key: &str, body: &[u8]) -> Result<u16, DeliveryError> {
    use wasi::http::{outgoing_handler, types as http};
    let failed = |what: String| DeliveryError::Retryable(what);
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| DeliveryError::Permanent(format!("not an http URL: {url}")))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let fields = http::Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        ("idempotency-key".to_string(), key.as_bytes().to_vec()),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .map_err(|e| failed(format!("headers: {e:?}")))?;
    let request = http::OutgoingRequest::new(fields);
    let refused = |what: &str| failed(format!("the host refused the {what}"));
    request
        .set_method(&http::Method::Post)
        .map_err(|()| refused("method"))?;
    request
        .set_scheme(Some(&http::Scheme::Http))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| refused("path"))?;
    let outgoing = request.body().map_err(|()| refused("body"))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| failed(format!("{e:?}")))?;
    {
        let stream = outgoing.write().map_err(|()| refused("body stream"))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| failed(format!("write: {e:?}")))?;
        }
    }
    http::OutgoingBody::finish(outgoing, None).map_err(|e| failed(format!("{e:?}")))?;
    let pollable = future.subscribe();
    let response = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(failed(format!("{code:?}"))),
            Some(Err(())) => return Err(failed("response already taken".into())),
            None => pollable.block(),
        }
    };
    Ok(response.status())
}

export!(Legacy);
