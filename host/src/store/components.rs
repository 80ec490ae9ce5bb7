//! Component bytes by content digest: `components`: SHA-256 (hex) → the component as uploaded.
//!
//! Journeys and channels name their component by digest, so two uploads of the same bytes
//! share one record. Components are written inside the journey or channel registration
//! transaction (`put`), never on their own, so a registration never names missing bytes.

use super::channels::ChannelRecord;
use super::journeys::JourneyVersion;
use super::kv::TransactionalTree;
use super::{dec, Store, StoreError, TxResult};
use std::collections::HashSet;

/// Writes a component's bytes under its digest, inside a registration's transaction.
pub(super) fn put(components: &TransactionalTree, digest: &str, bytes: &[u8]) -> TxResult<()> {
    components.put(digest.as_bytes(), bytes)?;
    Ok(())
}

impl Store {
    /// The digests of the components some journey version (of any tenant) or channel
    /// registration names: what the compiled-code cache keeps.
    pub fn stored_component_digests(&self) -> Result<HashSet<String>, StoreError> {
        let mut digests = HashSet::new();
        for kv in self.journeys.iter() {
            let version: JourneyVersion = dec(&kv?.1)?;
            digests.insert(version.digest);
        }
        for kv in self.channels.iter() {
            let channel: ChannelRecord = dec(&kv?.1)?;
            if !channel.digest.is_empty() {
                // An in-app channel names no component (issue 11).
                digests.insert(channel.digest);
            }
        }
        Ok(digests)
    }

    /// A component's bytes, by digest.
    pub fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.components.get(digest.as_bytes())?.map(|v| v.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    #[test]
    fn a_component_is_read_back_by_its_digest() {
        let (_dir, store) = temp_store();
        store
            .components
            .transaction(|components| put(components, "abc", b"\0asm"))
            .unwrap();
        assert_eq!(
            store.component("abc").unwrap().as_deref(),
            Some(&b"\0asm"[..])
        );
        assert!(store.component("def").unwrap().is_none());
    }
}
