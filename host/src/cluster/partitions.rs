//! **Pure** partition arithmetic: which partition a customer's work belongs to, and which live
//! node owns (and which stands by for) each partition.
//!
//! A customer's partition is the shard function the queue already uses
//! ([`crate::store::shard_of`]), with the cluster's fixed partition count in place of the shard
//! count, so an account's subject key `account:<id>` lands with the account's records as on one
//! node. Ownership is rendezvous (highest-random-weight) hashing: every node ranks the live
//! nodes for a partition by a hash of (node, partition) and takes the first as the preferred
//! owner and the second as the standby. Every node computes the same answer from the same list
//! of nodes, with no coordinator, and a node leaving moves only the partitions it held.

use crate::hash;

/// The partition of `customer` of `tenant` in a cluster of `partitions` partitions.
pub fn partition_of(tenant: &str, customer: &str, partitions: u16) -> u16 {
    crate::store::shard_of(tenant, customer, partitions)
}

/// The weight of `node` for `partition`: FNV-1a over both, through one SplitMix64 step so that
/// nodes whose ids differ in a late character still rank independently.
fn weight(node: &str, partition: u16) -> u64 {
    let mut state = hash::fnv1a_joined(&[node, &partition.to_string()]);
    hash::splitmix64(&mut state)
}

/// The live nodes ranked for `partition`, best first (ties, which need equal 64-bit weights,
/// broken by the node id so every node agrees).
pub fn ranking(nodes: &[String], partition: u16) -> Vec<&str> {
    let mut ranked: Vec<(u64, &str)> = nodes
        .iter()
        .map(|n| (weight(n, partition), n.as_str()))
        .collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// Who should hold a partition: its preferred owner and, with two or more live nodes, its
/// standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The partition.
    pub partition: u16,
    /// The node that should hold the partition's lease.
    pub owner: &'a str,
    /// The node that keeps a copy and takes over when the owner goes.
    pub standby: Option<&'a str>,
}

/// The placement of every partition over `nodes` (empty when no node is live).
pub fn placements(nodes: &[String], partitions: u16) -> Vec<Placement<'_>> {
    (0..partitions)
        .filter_map(|partition| {
            let ranked = ranking(nodes, partition);
            Some(Placement {
                partition,
                owner: ranked.first()?,
                standby: ranked.get(1).copied(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn a_customer_s_partition_is_its_shard() {
        // The frozen shard function: the queue's golden outputs hold for partitions too.
        for (tenant, customer) in [("acme", "u1"), ("acme", "account:a9"), ("t", "")] {
            assert_eq!(
                partition_of(tenant, customer, 64),
                crate::store::shard_of(tenant, customer, 64)
            );
        }
    }

    #[test]
    fn three_nodes_share_sixty_four_partitions_evenly_enough() {
        let live = nodes(3);
        let placed = placements(&live, 64);
        assert_eq!(placed.len(), 64);
        for node in &live {
            let owned = placed.iter().filter(|p| p.owner == node).count();
            let standing = placed.iter().filter(|p| p.standby == Some(node)).count();
            // 64 / 3 ≈ 21; rendezvous hashing is binomial, so allow a wide but bounded spread.
            assert!((12..=31).contains(&owned), "{node} owns {owned} of 64");
            assert!(
                (12..=31).contains(&standing),
                "{node} stands by for {standing}"
            );
        }
        assert!(placed
            .iter()
            .all(|p| p.standby.is_some_and(|s| s != p.owner)));
    }

    #[test]
    fn one_node_owns_everything_with_no_standby() {
        let live = nodes(1);
        assert!(placements(&live, 8)
            .iter()
            .all(|p| p.owner == "node-1" && p.standby.is_none()));
        assert!(placements(&[], 8).is_empty());
    }

    proptest! {
        /// A node leaving moves only the partitions it owned, each to its former standby; the
        /// others keep their owner. A node joining takes partitions only for itself.
        #[test]
        fn a_leaving_node_moves_only_its_own_partitions(n in 2usize..8, leaver in 0usize..8, partitions in 1u16..200) {
            let live = nodes(n);
            let leaver = &live[leaver % n];
            let before = placements(&live, partitions);
            let rest: Vec<String> = live.iter().filter(|x| *x != leaver).cloned().collect();
            let after = placements(&rest, partitions);
            for (b, a) in before.iter().zip(&after) {
                if b.owner == leaver {
                    prop_assert_eq!(Some(a.owner), b.standby);
                } else {
                    prop_assert_eq!(a.owner, b.owner);
                }
            }
            // Joining is the same move backwards.
            let rejoined = placements(&live, partitions);
            prop_assert_eq!(rejoined, before);
        }

        /// The order of the node list does not matter: every node computes the same placement.
        #[test]
        fn placement_ignores_the_order_nodes_are_listed_in(n in 1usize..8, seed in any::<u64>()) {
            let live = nodes(n);
            let mut shuffled = live.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                let j = (hash::splitmix64(&mut state) % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            prop_assert_eq!(placements(&live, 64), placements(&shuffled, 64));
        }
    }
}
