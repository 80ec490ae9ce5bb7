//! Enrollments, one customer in one journey run: `enrollments`:
//! `tenant␟customer␟journey␟run (u32 BE)` → [`Enrollment`]. A customer's enrollments are
//! contiguous, which is what the shard worker reads for every trigger. Written only by
//! [`commit_trigger`](super::Store::commit_trigger).

use super::keys::{key, prefix};
use super::{dec, enc, Store, StoreError};
use crate::model::Enrollment;

/// An enrollment's key.
pub(super) fn enrollment_key(tenant: &str, customer: &str, journey: &str, run: u32) -> Vec<u8> {
    key(&[
        tenant.as_bytes(),
        customer.as_bytes(),
        journey.as_bytes(),
        &run.to_be_bytes(),
    ])
}

impl Store {
    /// Every enrollment of a customer, in every journey and run.
    pub fn enrollments(&self, tenant: &str, customer: &str) -> Result<Vec<Enrollment>, StoreError> {
        self.enrollments
            .scan_prefix(prefix(&[tenant.as_bytes(), customer.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    /// One run of a customer in a journey.
    pub fn enrollment(
        &self,
        tenant: &str,
        customer: &str,
        journey: &str,
        run: u32,
    ) -> Result<Option<Enrollment>, StoreError> {
        self.read_enrollment(enrollment_key(tenant, customer, journey, run), false)
    }

    /// [`Store::enrollment`], for a trigger that is about to write it again: a scratch store
    /// hands over the enrollment its last commit kept decoded, rather than a copy (issue 13).
    pub fn enrollment_to_update(
        &self,
        tenant: &str,
        customer: &str,
        journey: &str,
        run: u32,
    ) -> Result<Option<Enrollment>, StoreError> {
        self.read_enrollment(enrollment_key(tenant, customer, journey, run), true)
    }

    /// The enrollment at `key`: its memo shared, or taken with `take` ([`super::kv::Tree::get_memo`]).
    fn read_enrollment(&self, key: Vec<u8>, take: bool) -> Result<Option<Enrollment>, StoreError> {
        let read = self.enrollments.get_memo(key, take)?;
        read.map(super::dec_memo).transpose()
    }

    /// Applies `change` to one stored enrollment atomically (compare-and-swap on its bytes,
    /// tried again if a worker wrote it meanwhile), writing it only if `change` says it
    /// changed something. Returns the enrollment as it now is and whether it changed; `None`
    /// if there is no such enrollment. For the API's resume of a paused enrollment (loop
    /// budgets, issue 15): that changes only its pause and loop window, which no report tally
    /// counts, so the write carries no report delta (invariant 9). Does not flush.
    pub fn update_enrollment(
        &self,
        tenant: &str,
        customer: &str,
        journey: &str,
        run: u32,
        change: impl Fn(&mut Enrollment) -> bool,
    ) -> Result<Option<(Enrollment, bool)>, StoreError> {
        let k = enrollment_key(tenant, customer, journey, run);
        loop {
            let Some(raw) = self.enrollments.get(&k)? else {
                return Ok(None);
            };
            let mut enrollment: Enrollment = dec(&raw)?;
            if !change(&mut enrollment) {
                return Ok(Some((enrollment, false)));
            }
            let swapped =
                self.enrollments
                    .compare_and_swap(&k, Some(raw), Some(enc(&enrollment)))?;
            if swapped.is_ok() {
                return Ok(Some((enrollment, true)));
            }
        }
    }

    /// Every enrollment of one journey of a tenant (a scan of the tenant's enrollments: for
    /// checks and repairs, never for an API call; reports read [`Store::report_cells`]).
    pub fn journey_enrollments(
        &self,
        tenant: &str,
        journey: &str,
    ) -> Result<Vec<Enrollment>, StoreError> {
        let mut out = Vec::new();
        for kv in self.enrollments.scan_prefix(prefix(&[tenant.as_bytes()])) {
            let enrollment: Enrollment = dec(&kv?.1)?;
            if enrollment.journey == journey {
                out.push(enrollment);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{dec, enc, fixtures, temp_store};
    use super::*;
    use serde::Serialize;

    #[test]
    fn an_enrollments_state_is_stored_as_binary_and_read_as_earlier_versions_stored_it() {
        let mut e = fixtures::enrollment("alice", "welcome", 1);
        e.state = (0..=255).collect();
        let stored = enc(&e);
        // A `bin 16` marker, the length (256, big-endian), then the bytes as they are.
        let bin = [0xc5, 0x01, 0x00, 0x00, 0x01, 0x02];
        assert!(
            stored.windows(bin.len()).any(|w| w == bin),
            "stored as binary"
        );
        assert_eq!(dec::<Enrollment>(&stored).unwrap(), e);
        // Before, `Vec<u8>` was written as an array of integers (as JSON still shows it).
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["state"], serde_json::json!(e.state));
        let mut earlier = Vec::new();
        json.serialize(&mut rmp_serde::Serializer::new(&mut earlier).with_struct_map())
            .unwrap();
        assert!(
            earlier.len() > stored.len() + 100,
            "one to two bytes per byte"
        );
        assert_eq!(dec::<Enrollment>(&earlier).unwrap(), e);
        assert_eq!(serde_json::from_value::<Enrollment>(json).unwrap(), e);
    }

    #[test]
    fn enrollments_read_back_by_customer_by_run_and_by_journey() {
        let (_dir, store) = temp_store();
        for (customer, journey, run) in [
            ("alice", "welcome", 1),
            ("alice", "welcome", 2),
            ("alice", "winback", 1),
            ("bob", "welcome", 1),
        ] {
            let mut commit = fixtures::commit(&store, "t", customer);
            commit
                .enrollments
                .push(fixtures::enrollment(customer, journey, run));
            store.commit_trigger(&commit).unwrap();
        }
        let ids = |es: Vec<Enrollment>| es.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.enrollments("t", "alice").unwrap()),
            ["welcome/alice/1", "welcome/alice/2", "winback/alice/1"]
        );
        assert_eq!(
            store
                .enrollment("t", "alice", "welcome", 2)
                .unwrap()
                .map(|e| e.run),
            Some(2)
        );
        assert!(store
            .enrollment("t", "alice", "welcome", 3)
            .unwrap()
            .is_none());
        let mut welcome = ids(store.journey_enrollments("t", "welcome").unwrap());
        welcome.sort();
        assert_eq!(
            welcome,
            ["welcome/alice/1", "welcome/alice/2", "welcome/bob/1"]
        );
        assert!(store.enrollments("u", "alice").unwrap().is_empty());
    }

    #[test]
    fn a_scratch_store_hands_back_what_it_committed_whether_kept_decoded_or_not() {
        let store = Store::open_scratch().unwrap();
        let mut e = fixtures::enrollment("ada", "welcome", 1);
        e.state = b"state".to_vec();
        let mut commit = fixtures::commit(&store, "t", "ada");
        commit.customer = Some(crate::model::Customer {
            id: "ada".into(),
            attributes: [("plan".to_string(), serde_json::json!("pro"))]
                .into_iter()
                .collect(),
        });
        commit.enrollments.push(e.clone());
        store.commit_trigger(&commit).unwrap();
        let read = || store.enrollment("t", "ada", "welcome", 1).unwrap();
        // Kept decoded: shared by a read, handed over to an update, then decoded from bytes.
        assert_eq!(read().as_ref(), Some(&e));
        let update = || {
            store
                .enrollment_to_update("t", "ada", "welcome", 1)
                .unwrap()
        };
        assert_eq!(update().as_ref(), Some(&e));
        assert_eq!(update().as_ref(), Some(&e));
        assert_eq!(read().as_ref(), Some(&e));
        assert_eq!(store.customer("t", "ada").unwrap(), commit.customer);
        assert_eq!(store.customer("t", "ada").unwrap(), commit.customer);
    }

    #[test]
    fn an_enrollment_stored_before_recent_failures_decodes_with_none() {
        let mut old = serde_json::to_value(fixtures::enrollment("ada", "welcome", 1)).unwrap();
        old.as_object_mut().unwrap().remove("failures");
        let decoded: Enrollment = crate::store::dec(&crate::store::enc(&old)).unwrap();
        assert!(decoded.failures.is_empty());
        assert_eq!(decoded.id, "welcome/ada/1");
    }

    #[test]
    fn an_enrollment_is_updated_in_place_only_when_the_change_says_so() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "ada");
        commit
            .enrollments
            .push(fixtures::enrollment("ada", "welcome", 1));
        store.commit_trigger(&commit).unwrap();
        let unchanged = store
            .update_enrollment("t", "ada", "welcome", 1, |_| false)
            .unwrap();
        assert!(matches!(unchanged, Some((_, false))));
        let (updated, changed) = store
            .update_enrollment("t", "ada", "welcome", 1, |e| {
                e.state = vec![7];
                true
            })
            .unwrap()
            .unwrap();
        assert!(changed);
        assert_eq!(updated.state, [7]);
        assert_eq!(
            store.enrollment("t", "ada", "welcome", 1).unwrap(),
            Some(updated)
        );
        assert!(store
            .update_enrollment("t", "ada", "welcome", 2, |_| true)
            .unwrap()
            .is_none());
    }
}
