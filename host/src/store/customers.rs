//! Customer profiles: `customers`: `tenant␟customer id` → [`Customer`]. Written only by
//! [`commit_trigger`](super::Store::commit_trigger), with the trigger that changed them.

use super::keys::key;
use super::{Store, StoreError};
use crate::model::Customer;

/// A customer's key.
pub(super) fn customer_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), id.as_bytes()])
}

impl Store {
    /// One customer's profile; `None` before their first trigger was processed.
    pub fn customer(&self, tenant: &str, id: &str) -> Result<Option<Customer>, StoreError> {
        let read = self.customers.get_memo(customer_key(tenant, id), false)?;
        read.map(super::dec_memo).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};

    #[test]
    fn a_committed_customer_reads_back_for_its_tenant_only() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "alice");
        let mut alice = fixtures::customer("alice");
        alice
            .attributes
            .insert("plan".into(), serde_json::json!("pro"));
        commit.customer = Some(alice.clone());
        store.commit_trigger(&commit).unwrap();
        assert_eq!(store.customer("t", "alice").unwrap(), Some(alice));
        assert_eq!(store.customer("u", "alice").unwrap(), None);
        assert_eq!(store.customer("t", "bob").unwrap(), None);
    }
}
