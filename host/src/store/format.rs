//! The on-disk format's version, and the one migration: a data directory is either of this
//! binary's format, migrated to it at start, or refused with what to do — never misread.
//!
//! | format | records | marker |
//! | --- | --- | --- |
//! | 1 | JSON | no `format` key in `meta` (every directory written before formats were numbered) |
//! | 2 | MessagePack with named fields ([`super::enc`]) | `meta["format"] = 2` (u32 BE) |
//!
//! Format 1 → 2 transcodes every JSON record in place, tree by tree, with no typed step in
//! between (JSON objects become MessagePack maps with the same keys, so every record type
//! decodes as it did). It is restartable: a record is JSON exactly when its first byte is `{`
//! (every record is an object; a MessagePack map never starts with that byte), so a migration
//! interrupted by a crash converts what is left on the next start. The marker is written, and
//! flushed, only after every tree is converted and flushed.
//!
//! Keys and the trees' raw values (sequence numbers, time keys, counters, component bytes) are
//! the same in both formats.

use super::StoreError;
use tracing::info;

/// The format this binary writes.
pub const FORMAT: u32 = 2;

/// The `meta` key holding the format.
const FORMAT_KEY: &str = "format";

/// The trees whose values are records (JSON in format 1), by their on-disk names.
pub(super) const RECORD_TREES: &[&str] = &[
    "tenants",
    "journeys",
    "channels",
    "events",
    "inbox",
    "customers",
    "enrollments",
    "timers",
    "outbox",
    "tasks",
];

/// Trees whose presence with data tells an unmarked directory is format 1, not new.
const DATA_TREES: &[&str] = &["tenants", "meta", "components"];

/// Brings `db` to [`FORMAT`]: marks a new directory, migrates an older one, refuses a newer.
/// Returns the format the directory had (`None` for a new one).
pub(super) fn ensure(db: &super::kv::Db) -> Result<Option<u32>, StoreError> {
    let meta = db.open_tree("meta")?;
    let found = match meta.get(FORMAT_KEY)? {
        Some(v) => Some(read_format(&v)?),
        None => {
            let mut has_data = false;
            for name in DATA_TREES.iter().chain(RECORD_TREES) {
                if !db.open_tree(name)?.is_empty() {
                    has_data = true;
                    break;
                }
            }
            has_data.then_some(1)
        }
    };
    match found {
        Some(FORMAT) => return Ok(found),
        Some(newer) if newer > FORMAT => {
            return Err(StoreError::Format(format!(
                "the data directory is in format {newer}, written by a newer Waymark; this \
                 binary reads format {FORMAT} and older. Run the newer Waymark on it, or start \
                 this one on another --data directory"
            )))
        }
        Some(older) => {
            info!(from = older, to = FORMAT, "migrating the data directory");
            let converted = migrate_1_to_2(db)?;
            info!(records = converted, "data directory migrated");
        }
        None => {}
    }
    meta.put(FORMAT_KEY, &FORMAT.to_be_bytes())?;
    db.flush()?;
    Ok(found)
}

fn read_format(v: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("meta format marker is {} bytes", v.len())))?;
    Ok(u32::from_be_bytes(bytes))
}

/// Transcodes every JSON record to MessagePack; returns how many it converted.
fn migrate_1_to_2(db: &super::kv::Db) -> Result<u64, StoreError> {
    let mut converted = 0;
    for name in RECORD_TREES {
        let tree = db.open_tree(name)?;
        let mut batch = super::kv::Batch::default();
        let mut pending = 0;
        for kv in tree.iter() {
            let (k, v) = kv?;
            if v.first() != Some(&b'{') {
                continue;
            }
            batch.insert(k, json_to_record(&v)?);
            pending += 1;
            converted += 1;
            if pending == 4096 {
                tree.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        tree.apply_batch(batch)?;
        tree.flush()?;
    }
    // Format 2 finds expired event ids by walking the log (`events.rs`): the index format 1
    // kept for that goes.
    db.drop_tree("event_id_times")?;
    Ok(converted)
}

/// One format-1 record (JSON) as its format-2 bytes.
pub(super) fn json_to_record(json: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(json.len());
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut ser = rmp_serde::Serializer::new(&mut out).with_struct_map();
    serde_transcode::transcode(&mut de, &mut ser)
        .map_err(|e| StoreError::Corrupt(format!("format 1 record does not transcode: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{dec, Store};
    use super::*;
    use crate::model::Customer;

    fn reopen(dir: &std::path::Path) -> Result<Store, StoreError> {
        super::super::open_unlocked(
            dir,
            || Store::open(dir, 2, 8 << 20),
            |e| matches!(e, StoreError::Sled(_)),
        )
    }

    /// Writes a format-1 directory: a JSON customer, no format marker.
    fn format_1_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("customers")
            .unwrap()
            .insert(
                b"t\x1falice",
                &br#"{"id":"alice","attributes":{"plan":"pro","seats":3}}"#[..],
            )
            .unwrap();
        db.open_tree("counters")
            .unwrap()
            .insert(b"t\x1fj\x1fc\x1fsent", &7u64.to_be_bytes())
            .unwrap();
        db.open_tree("event_id_times")
            .unwrap()
            .insert(b"\x80\0\0\0\0\0\0\x01\x1ft\x1fe1", &[])
            .unwrap();
        db.flush().unwrap();
        dir
    }

    #[test]
    fn a_new_directory_is_marked_with_this_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = reopen(dir.path()).unwrap();
        let v = store.meta.get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(read_format(&v).unwrap(), FORMAT);
    }

    #[test]
    fn a_format_1_directory_is_migrated_at_open() {
        let dir = format_1_dir();
        let store = reopen(dir.path()).unwrap();
        let customer = store.customer("t", "alice").unwrap().unwrap();
        assert_eq!(customer.attributes["plan"], "pro");
        assert_eq!(customer.attributes["seats"], 3);
        let raw = store.customers.get(b"t\x1falice").unwrap().unwrap();
        assert_ne!(raw[0], b'{', "stored as MessagePack now");
        // The expiry index of format 1 is gone.
        assert!(!store
            .db
            .tree_names()
            .iter()
            .any(|n| &**n == b"event_id_times"));
        // Raw values are left as they were.
        let counter = store.counters.get(b"t\x1fj\x1fc\x1fsent").unwrap().unwrap();
        assert_eq!(&*counter, &7u64.to_be_bytes());
        drop(store);
        // Opening again finds the marker and changes nothing.
        let store = reopen(dir.path()).unwrap();
        assert_eq!(store.customer("t", "alice").unwrap().unwrap(), customer);
    }

    #[test]
    fn a_half_migrated_directory_finishes_its_migration() {
        let dir = format_1_dir();
        {
            let db = sled::open(dir.path()).unwrap();
            let customers = db.open_tree("customers").unwrap();
            let done = json_to_record(br#"{"id":"bob","attributes":{}}"#).unwrap();
            customers.insert(b"t\x1fbob", done).unwrap();
            db.flush().unwrap();
        }
        let store = reopen(dir.path()).unwrap();
        assert_eq!(store.customer("t", "bob").unwrap().unwrap().id, "bob");
        assert_eq!(store.customer("t", "alice").unwrap().unwrap().id, "alice");
    }

    #[test]
    fn a_newer_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(FORMAT_KEY, &(FORMAT + 1).to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let error = match reopen(dir.path()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a newer format opened"),
        };
        assert!(error.contains("newer Waymark"), "{error}");
        assert!(error.contains("--data"), "{error}");
    }

    #[test]
    fn a_transcoded_record_decodes_as_its_type() {
        let json = br#"{"id":"ada","attributes":{"n":1.5,"tags":["a","b"],"nested":{"x":null}}}"#;
        let from_json: Customer = serde_json::from_slice(json).unwrap();
        let transcoded: Customer = dec(&json_to_record(json).unwrap()).unwrap();
        assert_eq!(transcoded, from_json);
    }
}
