//! Input checks shared by several resources: names, tenant-chosen ids, component sizes.

use super::limits::MAX_LIST_IN_BODY;
use super::prelude::*;
use crate::model::Limits;

/// The longest id a tenant may choose.
const MAX_ID: usize = 256;

/// Names of tenants, journeys and channels: short, URL- and key-safe.
pub(super) fn valid_name(what: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!("{what} name {name:?} must be 1-64 characters of a-z, 0-9, '-' or '_'"),
        ))
    }
}

/// Ids chosen by tenants (customers, events): non-empty, bounded, no control characters (the
/// store uses one as a key separator).
pub(super) fn valid_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        Err(format!(
            "{what} must be 1-{MAX_ID} bytes without control characters"
        ))
    } else {
        Ok(())
    }
}

// Account journeys (issue 12)
/// A customer id: an id ([`valid_id`]) that does not start with `account:`, the prefix of an
/// account's subject key (`engine::accounts`), so a customer is never taken for an account.
pub(super) fn valid_customer_id(what: &str, id: &str) -> Result<(), String> {
    valid_id(what, id)?;
    if crate::engine::accounts::is_reserved(id) {
        return Err(format!(
            "{what} must not start with {:?} (reserved for accounts)",
            crate::engine::accounts::SUBJECT_PREFIX
        ));
    }
    Ok(())
}

/// Refuses a list in a request body longer than [`MAX_LIST_IN_BODY`] (400 `invalid_input`).
pub(super) fn bounded_list(what: &str, len: usize) -> ApiResult<()> {
    if len > MAX_LIST_IN_BODY {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("{what} has {len} entries; at most {MAX_LIST_IN_BODY}"),
        ));
    }
    Ok(())
}

/// Refuses a component larger than the tenant may upload, before compiling it.
pub(super) fn check_component_size(bytes: &[u8], limits: &Limits) -> ApiResult<()> {
    if bytes.len() as u64 > limits.max_component_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the component is {} bytes; this tenant's limit is {} bytes",
                bytes.len(),
                limits.max_component_bytes
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_slugs() {
        assert!(valid_name("journey", "win-back_2").is_ok());
        assert!(valid_name("journey", "Win Back").is_err());
        assert!(valid_name("journey", "").is_err());
    }
}
