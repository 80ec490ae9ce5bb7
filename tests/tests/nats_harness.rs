//! The NATS harness itself (issue 16): three real `nats-server`s form one JetStream meta
//! cluster; it keeps a live meta leader when a node is killed or hangs, and takes the node back
//! when it restarts or resumes. The cluster tests rely on exactly this from
//! [`NatsCluster`], so it is checked on its own first.

use std::collections::BTreeSet;
use std::time::Instant;
use waymark_tests::nats::CLUSTER_NAME;
use waymark_tests::*;

/// Node `i`'s view of the meta cluster.
fn meta(cluster: &NatsCluster, i: usize) -> Value {
    cluster.jsz(i)["meta_cluster"].clone()
}

/// The meta leader node `i` names.
fn leader_seen_by(cluster: &NatsCluster, i: usize) -> String {
    meta(cluster, i)["leader"]
        .as_str()
        .unwrap_or_else(|| panic!("{} names no meta leader", cluster.name(i)))
        .to_string()
}

/// Polls `check` for [`patience`]; panics naming `what`.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < patience(),
            "waited {:?} for {what}",
            patience()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Node `i` answers with the common leader, and (unless it leads) the leader counts it as a
/// current replica of the meta group.
fn rejoined(cluster: &NatsCluster, i: usize) -> bool {
    let Some(leader) = cluster.leader() else {
        return false;
    };
    if leader == i {
        return true;
    }
    let replicas = meta(cluster, leader)["replicas"].clone();
    replicas
        .as_array()
        .into_iter()
        .flatten()
        .any(|replica| replica["name"] == cluster.name(i) && replica["current"] == true)
}

fn assert_one_meta_cluster_of_three(cluster: &NatsCluster, nodes: &[usize]) -> String {
    let leader = leader_seen_by(cluster, nodes[0]);
    for &i in nodes {
        let meta = meta(cluster, i);
        assert_eq!(meta["name"], CLUSTER_NAME, "{}: {meta}", cluster.name(i));
        assert_eq!(meta["cluster_size"], 3, "{}: {meta}", cluster.name(i));
        assert_eq!(
            meta["leader"],
            leader.as_str(),
            "{}: {meta}",
            cluster.name(i)
        );
    }
    assert!(
        nodes.iter().any(|&i| cluster.name(i) == leader),
        "the leader {leader} is among {nodes:?}"
    );
    leader
}

#[test]
fn three_nodes_form_one_meta_cluster_that_survives_losing_node_2_and_takes_it_back() {
    let mut cluster = NatsCluster::start(3);
    let urls: BTreeSet<String> = cluster.urls().into_iter().collect();
    assert_eq!(urls.len(), 3, "one client port per node: {urls:?}");
    assert_one_meta_cluster_of_three(&cluster, &[0, 1, 2]);
    for i in 0..3 {
        assert_eq!(cluster.jsz(i)["config"]["max_memory"], 256 * 1024 * 1024);
    }

    let killed = Instant::now();
    cluster.kill(1);
    cluster.wait_ready();
    eprintln!(
        "a live meta leader {:.1} s after n2 was killed",
        killed.elapsed().as_secs_f64()
    );
    assert_one_meta_cluster_of_three(&cluster, &[0, 2]);

    let restarted = Instant::now();
    cluster.restart(1);
    eventually("n2 to be a current replica again", || rejoined(&cluster, 1));
    eprintln!(
        "n2 rejoined {:.1} s after its restart",
        restarted.elapsed().as_secs_f64()
    );
    assert_one_meta_cluster_of_three(&cluster, &[0, 1, 2]);
}

#[test]
fn a_killed_meta_leader_is_replaced_by_a_survivor() {
    let mut cluster = NatsCluster::start(3);
    let old = cluster.leader().expect("a meta leader");
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();

    let killed = Instant::now();
    cluster.kill(old);
    cluster.wait_ready();
    eprintln!(
        "new meta leader {:.1} s after the leader was killed",
        killed.elapsed().as_secs_f64()
    );
    let new = assert_one_meta_cluster_of_three(&cluster, &survivors);
    assert_ne!(new, cluster.name(old));

    cluster.restart(old);
    eventually("the old leader to be a current replica again", || {
        rejoined(&cluster, old)
    });
}

#[test]
fn a_paused_meta_leader_is_replaced_and_follows_when_resumed() {
    let cluster = NatsCluster::start(3);
    let old = cluster.leader().expect("a meta leader");
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();

    let paused = Instant::now();
    cluster.pause(old);
    cluster.wait_ready();
    eprintln!(
        "new meta leader {:.1} s after the leader was paused",
        paused.elapsed().as_secs_f64()
    );
    let new = assert_one_meta_cluster_of_three(&cluster, &others);
    assert_ne!(new, cluster.name(old));

    cluster.resume(old);
    cluster.wait_ready();
    assert_eq!(leader_seen_by(&cluster, old), new, "the old leader follows");
    eventually("the old leader to be a current replica again", || {
        rejoined(&cluster, old)
    });
}
