//! The in-app inbox (issue 11): the messages a tenant's `inapp` channels delivered, per customer.
//!
//! - `inapp_inbox`: `tenant␟customer␟newest-first time␟message id` → [`InboxEntry`]. The time
//!   part is the message's creation time with every bit flipped, so a prefix scan of one
//!   customer lists newest first and a page goes on from the last key it returned
//!   ([`InboxCursor`]) without counting what came before.
//! - `inapp_inbox_ids`: `tenant␟customer␟message id` → the entry's key, so a mark (seen, read,
//!   clicked, archived) finds its entry by the message id alone, and only under the customer it
//!   belongs to.
//!
//! (The trigger queue's tree is called `inbox` on disk for historical reasons; these trees are
//! `inapp_*` so the two never meet.)

use super::keys::{key, prefix};
use super::kv::Transactional;
use super::{dec, enc, Store, StoreError};
use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// One message in a customer's in-app inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The message's id (its idempotency key in the outbox).
    pub message_id: String,
    pub customer: String,
    /// The `inapp` channel registration that delivered it.
    pub channel: String,
    pub journey: String,
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The send's payload as the journey gave it (what a front end may want beside the text).
    #[serde(default)]
    pub data: serde_json::Value,
    /// The message's creation time (journey time): what the inbox is ordered by.
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicked_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<Millis>,
}

/// What a customer may do to one of their inbox messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxMark {
    Seen,
    Read,
    Clicked,
    Archived,
}

impl InboxEntry {
    /// Records `mark` at `at`, keeping the first time of each. Returns whether it was new.
    pub fn mark(&mut self, mark: InboxMark, at: Millis) -> bool {
        let slot = match mark {
            InboxMark::Seen => &mut self.seen_at,
            InboxMark::Read => &mut self.read_at,
            InboxMark::Clicked => &mut self.clicked_at,
            InboxMark::Archived => &mut self.archived_at,
        };
        if slot.is_some() {
            return false;
        }
        *slot = Some(at);
        true
    }
}

/// Where the next page of a customer's inbox starts: the position (inverted time and message
/// id) of the last entry of the page before, exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxCursor(Vec<u8>);

impl InboxCursor {
    /// The cursor as the API shows it: hex, opaque to clients.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// A cursor the API handed out, or `None` if it is not one.
    pub fn from_hex(text: &str) -> Option<InboxCursor> {
        hex::decode(text)
            .ok()
            .filter(|b| b.len() > 9)
            .map(InboxCursor)
    }
}

/// One page of a customer's inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxPage {
    pub entries: Vec<InboxEntry>,
    /// Where the next page starts, if there may be more.
    pub next: Option<InboxCursor>,
}

/// Newest first: the creation time with every bit flipped, big-endian.
fn newest_first(created_at: Millis) -> [u8; 8] {
    let t = super::keys::time_key(created_at);
    let mut out = [0u8; 8];
    for (o, b) in out.iter_mut().zip(t) {
        *o = !b;
    }
    out
}

/// The entry's position under its customer's prefix: inverted time, separator, message id.
fn position(created_at: Millis, message_id: &str) -> Vec<u8> {
    key(&[&newest_first(created_at), message_id.as_bytes()])
}

fn id_key(tenant: &str, customer: &str, message_id: &str) -> Vec<u8> {
    key(&[
        tenant.as_bytes(),
        customer.as_bytes(),
        message_id.as_bytes(),
    ])
}

impl Store {
    /// Puts a delivered message in its customer's inbox. Writing the same message again (a
    /// delivery attempted again after a crash) replaces it in place, keeping its marks.
    pub fn put_inbox_entry(&self, tenant: &str, entry: &InboxEntry) -> Result<(), StoreError> {
        let customer_prefix = prefix(&[tenant.as_bytes(), entry.customer.as_bytes()]);
        let mut entry_key = customer_prefix;
        entry_key.extend(position(entry.created_at, &entry.message_id));
        let index_key = id_key(tenant, &entry.customer, &entry.message_id);
        (&self.inapp_inbox, &self.inapp_inbox_ids).transaction(|(entries, ids)| {
            let mut entry = entry.clone();
            if let Some(old) = entries.get(&entry_key)? {
                let old: InboxEntry = dec(&old).map_err(super::abort)?;
                entry.seen_at = old.seen_at;
                entry.read_at = old.read_at;
                entry.clicked_at = old.clicked_at;
                entry.archived_at = old.archived_at;
            }
            entries.put(entry_key.as_slice(), enc(&entry))?;
            ids.put(index_key.as_slice(), entry_key.as_slice())?;
            Ok(())
        })?;
        Ok(())
    }

    /// A page of `customer`'s inbox, newest first: at most `limit` entries after `after`,
    /// archived ones only if `archived` says so.
    pub fn inbox_page(
        &self,
        tenant: &str,
        customer: &str,
        after: Option<&InboxCursor>,
        limit: usize,
        archived: bool,
    ) -> Result<InboxPage, StoreError> {
        let customer_prefix = prefix(&[tenant.as_bytes(), customer.as_bytes()]);
        let mut start = customer_prefix.clone();
        if let Some(InboxCursor(position)) = after {
            start.extend_from_slice(position);
            // Exclusive: the smallest key after the cursor's.
            start.push(0);
        }
        let mut entries = Vec::new();
        let mut last = None;
        for kv in self.inapp_inbox.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&customer_prefix) {
                break;
            }
            if entries.len() == limit {
                // There is at least one more: the page ends at the last one taken.
                return Ok(InboxPage {
                    entries,
                    next: last.map(InboxCursor),
                });
            }
            let entry: InboxEntry = dec(&v)?;
            last = Some(k[customer_prefix.len()..].to_vec());
            if archived || entry.archived_at.is_none() {
                entries.push(entry);
            }
        }
        Ok(InboxPage {
            entries,
            next: None,
        })
    }

    /// Marks one of `customer`'s inbox messages; `None` if the customer has no such message.
    /// Returns the entry as it is now and whether the mark was new.
    pub async fn mark_inbox_entry(
        &self,
        tenant: &str,
        customer: &str,
        message_id: &str,
        mark: InboxMark,
        at: Millis,
    ) -> Result<Option<(InboxEntry, bool)>, StoreError> {
        let index_key = id_key(tenant, customer, message_id);
        let marked = (&self.inapp_inbox, &self.inapp_inbox_ids).transaction(|(entries, ids)| {
            let Some(entry_key) = ids.get(&index_key)? else {
                return Ok(None);
            };
            let Some(stored) = entries.get(&entry_key)? else {
                return Ok(None);
            };
            let mut entry: InboxEntry = dec(&stored).map_err(super::abort)?;
            let new = entry.mark(mark, at);
            if new {
                entries.put(entry_key.as_ref(), enc(&entry))?;
            }
            Ok(Some((entry, new)))
        })?;
        if matches!(marked, Some((_, true))) {
            self.flush().await?;
        }
        Ok(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn entry(customer: &str, id: &str, at: Millis) -> InboxEntry {
        InboxEntry {
            message_id: id.into(),
            customer: customer.into(),
            channel: "inapp".into(),
            journey: "j".into(),
            template: "t".into(),
            title: Some(format!("title {id}")),
            body: Some("body".into()),
            url: None,
            data: serde_json::Value::Null,
            created_at: at,
            seen_at: None,
            read_at: None,
            clicked_at: None,
            archived_at: None,
        }
    }

    fn ids(page: &InboxPage) -> Vec<&str> {
        page.entries.iter().map(|e| e.message_id.as_str()).collect()
    }

    #[tokio::test]
    async fn a_customers_inbox_lists_newest_first_in_pages_and_only_theirs() {
        let (_dir, store) = temp_store();
        for (customer, id, at) in [
            ("ada", "m1", 10),
            ("ada", "m3", 30),
            ("ada", "m2", 20),
            ("adam", "x1", 40),
            ("bob", "b1", 15),
        ] {
            store
                .put_inbox_entry("t", &entry(customer, id, at))
                .unwrap();
        }
        store.put_inbox_entry("u", &entry("ada", "u1", 50)).unwrap();
        let first = store.inbox_page("t", "ada", None, 2, false).unwrap();
        assert_eq!(ids(&first), ["m3", "m2"]);
        let second = store
            .inbox_page("t", "ada", first.next.as_ref(), 2, false)
            .unwrap();
        assert_eq!(ids(&second), ["m1"]);
        assert_eq!(second.next, None);
        let cursor = first.next.unwrap();
        assert_eq!(InboxCursor::from_hex(&cursor.to_hex()), Some(cursor));
        assert_eq!(InboxCursor::from_hex("zz"), None);
    }

    #[tokio::test]
    async fn marks_are_kept_once_found_only_under_their_customer_and_survive_a_rewrite() {
        let (_dir, store) = temp_store();
        store.put_inbox_entry("t", &entry("ada", "m1", 10)).unwrap();
        let none = store
            .mark_inbox_entry("t", "bob", "m1", InboxMark::Clicked, 5)
            .await
            .unwrap();
        assert!(none.is_none(), "another customer's message is not found");
        let (marked, new) = store
            .mark_inbox_entry("t", "ada", "m1", InboxMark::Clicked, 5)
            .await
            .unwrap()
            .unwrap();
        assert!(new && marked.clicked_at == Some(5));
        let (again, new) = store
            .mark_inbox_entry("t", "ada", "m1", InboxMark::Clicked, 9)
            .await
            .unwrap()
            .unwrap();
        assert!(
            !new && again.clicked_at == Some(5),
            "the first click is kept"
        );
        store
            .mark_inbox_entry("t", "ada", "m1", InboxMark::Archived, 6)
            .await
            .unwrap();
        // Delivered again (after a crash): the marks stay.
        store.put_inbox_entry("t", &entry("ada", "m1", 10)).unwrap();
        let all = store.inbox_page("t", "ada", None, 10, true).unwrap();
        assert_eq!(all.entries[0].clicked_at, Some(5));
        let unarchived = store.inbox_page("t", "ada", None, 10, false).unwrap();
        assert!(unarchived.entries.is_empty());
    }
}
