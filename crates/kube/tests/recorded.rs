//! The core against recorded node lists (tests/data): which targets each router dials, and
//! which router reclaims a departed node's space, when, and when not.

use std::collections::BTreeSet;

use weft_kube::{
    peer_name_for_node, Core, CoreConfig, Decisions, MeshView, NodeList, ReclaimOutcome,
};

fn list(name: &str) -> NodeList {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    NodeList::parse(&std::fs::read(&path).unwrap()).unwrap()
}

const GRACE: u64 = 30_000;

fn core(node: &str) -> Core {
    Core::new(
        CoreConfig {
            node: node.to_string(),
            port: 6783,
            reclaim_after: GRACE,
            fixed_targets: BTreeSet::new(),
        },
        BTreeSet::new(),
    )
}

fn view(reachable: &[&str], owners: &[&str]) -> MeshView {
    MeshView {
        reachable: reachable.iter().map(|s| s.to_string()).collect(),
        space_owners: Some(owners.iter().map(|s| s.to_string()).collect()),
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const ALL: &[&str] = &["node-a", "node-b", "node-c"];

/// The node list without node-c (deleted from the API), handed to `core` at `now` while
/// the routers `reachable` answer and every node owns space.
fn node_c_deleted(core: &mut Core, now: u64, reachable: &[&str]) -> Decisions {
    core.nodes(now, &list("node-c-deleted.json"), &view(reachable, ALL))
}

#[test]
fn dials_every_other_node_once_and_forgets_those_that_leave() {
    let mut b = core("node-b");
    let d = b.nodes(0, &list("one-node.json"), &view(&["node-b"], &[]));
    assert_eq!(d.connect, strs(&["192.168.56.11:6783"]));
    let d = b.nodes(1, &list("three-nodes.json"), &view(&["node-b"], &[]));
    assert_eq!(
        d.connect,
        strs(&["192.168.56.13:6783"]),
        "only the new node"
    );
    assert!(d.forget.is_empty());
    let d = b.nodes(2, &list("three-nodes.json"), &view(ALL, ALL));
    assert!(d.connect.is_empty() && d.forget.is_empty(), "{d:?}");
    // NotReady is still a node: keep dialling it.
    let d = b.nodes(
        3,
        &list("node-c-notready.json"),
        &view(&["node-a", "node-b"], ALL),
    );
    assert!(d.connect.is_empty() && d.forget.is_empty(), "{d:?}");
    // Being deleted: stop dialling.
    let d = b.nodes(
        4,
        &list("node-c-deleting.json"),
        &view(&["node-a", "node-b"], ALL),
    );
    assert_eq!(d.forget, strs(&["192.168.56.13:6783"]));
    let d = b.nodes(
        5,
        &list("node-c-deleted.json"),
        &view(&["node-a", "node-b"], ALL),
    );
    assert!(d.connect.is_empty() && d.forget.is_empty(), "{d:?}");
}

#[test]
fn launch_targets_are_never_forgotten() {
    let mut cfg = CoreConfig {
        node: "node-a".into(),
        port: 6783,
        reclaim_after: GRACE,
        fixed_targets: ["192.168.56.13:6783".to_string()].into(),
    };
    let mut a = Core::new(cfg.clone(), BTreeSet::new());
    a.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    let d = node_c_deleted(&mut a, 1, ALL);
    assert!(d.forget.is_empty(), "{d:?}");
    cfg.fixed_targets.clear();
    let mut a = Core::new(cfg, BTreeSet::new());
    a.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    let d = node_c_deleted(&mut a, 1, ALL);
    assert_eq!(d.forget, strs(&["192.168.56.13:6783"]));
}

/// node-c's router dies; the node goes NotReady, is deleted, and only then, after the grace,
/// node-a (the lowest-named live node) reclaims its space; node-b never does.
#[test]
fn only_the_lowest_live_node_reclaims_and_only_after_deletion_and_grace() {
    let mut a = core("node-a");
    let mut b = core("node-b");
    let live = &["node-a", "node-b"];
    for c in [&mut a, &mut b] {
        let d = c.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
        assert!(d.seen_changed && d.reclaim.is_empty());
    }
    // NotReady for a long time: present in the API, never reclaimed.
    for t in [1_000, 100_000, 10_000_000] {
        for c in [&mut a, &mut b] {
            let d = c.nodes(t, &list("node-c-notready.json"), &view(live, ALL));
            assert!(d.reclaim.is_empty() && d.held.is_none(), "{d:?}");
        }
    }
    // Deletion begun (finalizers pending): still present, not reclaimed.
    let d = a.nodes(10_001_000, &list("node-c-deleting.json"), &view(live, ALL));
    assert!(d.reclaim.is_empty(), "{d:?}");
    // Deleted: the wait starts.
    let t0 = 10_002_000;
    let d = node_c_deleted(&mut a, t0, live);
    assert!(d.reclaim.is_empty(), "no reclaim before the grace: {d:?}");
    assert_eq!(a.waiting().get("node-c"), Some(&t0));
    let d = node_c_deleted(&mut b, t0, live);
    assert!(d.reclaim.is_empty());
    let d = node_c_deleted(&mut b, t0 + GRACE, live);
    assert!(d.reclaim.is_empty(), "node-b is not the reclaimer: {d:?}");
    assert!(d.held.unwrap().contains("node-a reclaims"));

    let d = node_c_deleted(&mut a, t0 + GRACE - 1, live);
    assert!(d.reclaim.is_empty());
    let d = node_c_deleted(&mut a, t0 + GRACE, live);
    assert_eq!(d.reclaim, strs(&["node-c"]));
    // Handed out once: not again while it runs.
    let d = node_c_deleted(&mut a, t0 + GRACE + 1, live);
    assert!(d.reclaim.is_empty());
    a.reclaimed(t0 + GRACE + 2, "node-c", ReclaimOutcome::Done);
    assert!(!a.seen().contains("node-c") && a.waiting().is_empty());
    let d = a.nodes(
        t0 + GRACE + 3,
        &list("node-c-deleted.json"),
        &view(live, &["node-a", "node-b"]),
    );
    assert!(d.reclaim.is_empty() && d.held.is_none(), "{d:?}");
}

#[test]
fn a_failed_reclaim_is_tried_again_and_a_reachable_peer_waits_again() {
    let mut a = core("node-a");
    let live = &["node-a", "node-b"];
    a.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    node_c_deleted(&mut a, 1, live);
    let d = node_c_deleted(&mut a, 1 + GRACE, live);
    assert_eq!(d.reclaim, strs(&["node-c"]));
    a.reclaimed(2 + GRACE, "node-c", ReclaimOutcome::Failed);
    let d = node_c_deleted(&mut a, 3 + GRACE, live);
    assert_eq!(d.reclaim, strs(&["node-c"]), "tried again");
    a.reclaimed(4 + GRACE, "node-c", ReclaimOutcome::Reachable);
    let d = node_c_deleted(&mut a, 5 + GRACE, live);
    assert!(d.reclaim.is_empty(), "waits a full grace again: {d:?}");
    let d = node_c_deleted(&mut a, 4 + 2 * GRACE, live);
    assert_eq!(d.reclaim, strs(&["node-c"]));
}

#[test]
fn a_deleted_node_whose_router_is_still_reachable_is_not_reclaimed() {
    let mut a = core("node-a");
    a.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    let d = node_c_deleted(&mut a, 1, ALL);
    assert!(d.reclaim.is_empty());
    let d = node_c_deleted(&mut a, 10 * GRACE, ALL);
    assert!(d.reclaim.is_empty(), "{d:?}");
    assert!(a.waiting().is_empty());
    // Once it becomes unreachable the grace starts from then.
    let live = &["node-a", "node-b"];
    let d = node_c_deleted(&mut a, 10 * GRACE + 1, live);
    assert!(d.reclaim.is_empty());
    let d = node_c_deleted(&mut a, 11 * GRACE + 1, live);
    assert_eq!(d.reclaim, strs(&["node-c"]));
}

#[test]
fn never_self_never_a_peer_that_was_not_a_node_never_without_a_majority() {
    // Self is deleted from the API while its router runs: nothing to reclaim of itself.
    let mut c = core("node-c");
    c.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    let d = node_c_deleted(&mut c, 1, &["node-c"]);
    let d2 = node_c_deleted(&mut c, 1 + 10 * GRACE, &["node-c"]);
    assert!(d.reclaim.is_empty() && d2.reclaim.is_empty(), "{d2:?}");
    assert!(c.waiting().is_empty());
    // node-b missing from the list (wrong NODE_NAME?) while node-c waits: node-b holds off.
    let mut b = core("node-b");
    b.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    b.nodes(1, &list("one-node.json"), &view(&["node-a", "node-b"], ALL));
    let d = b.nodes(
        1 + GRACE,
        &list("one-node.json"),
        &view(&["node-a", "node-b"], ALL),
    );
    assert!(d.reclaim.is_empty());
    assert!(d.held.unwrap().contains("not in the API's node list"));

    // A peer that owns space but was never a node (a host joined by hand) is left alone.
    let mut a = core("node-a");
    let owners = &["node-a", "node-b", "node-c", "laptop"];
    a.nodes(0, &list("three-nodes.json"), &view(ALL, owners));
    let d = a.nodes(10 * GRACE, &list("three-nodes.json"), &view(ALL, owners));
    assert!(d.reclaim.is_empty() && a.waiting().is_empty(), "{d:?}");

    // node-a alone of three listed nodes (a partition): no majority, no reclaim.
    let mut a = core("node-a");
    a.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    let d = a.nodes(
        1,
        &list("three-nodes.json"),
        &view(&["node-a"], &["node-a", "node-b", "node-c"]),
    );
    assert!(d.reclaim.is_empty());
    let mut a = core("node-a");
    a.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    let mut l = list("node-c-deleted.json");
    // node-b is listed but its router is down too: 1 of 2 is not a majority.
    a.nodes(1, &l, &view(&["node-a"], ALL));
    let d = a.nodes(1 + GRACE, &l, &view(&["node-a"], ALL));
    assert!(d.reclaim.is_empty(), "{d:?}");
    assert!(d.held.unwrap().contains("not a majority"));
    // Once node-b is deleted too, node-a is the whole cluster: it reclaims node-c, whose
    // grace has run, at once, and node-b after its own.
    l.nodes.retain(|n| n.name == "node-a");
    let d = a.nodes(2 + GRACE, &l, &view(&["node-a"], ALL));
    assert_eq!(d.reclaim, strs(&["node-c"]));
    let d = a.nodes(2 + 2 * GRACE, &l, &view(&["node-a"], ALL));
    assert_eq!(d.reclaim, strs(&["node-b"]));
}

#[test]
fn nothing_is_reclaimed_or_forgotten_before_the_ring_is_known() {
    let mut a = core("node-a");
    a.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    let unknown = MeshView {
        reachable: ["node-a".to_string(), "node-b".to_string()].into(),
        space_owners: None,
    };
    let d = a.nodes(1, &list("node-c-deleted.json"), &unknown);
    let d2 = a.nodes(10 * GRACE, &list("node-c-deleted.json"), &unknown);
    assert!(d.reclaim.is_empty() && d2.reclaim.is_empty());
    assert!(a.seen().contains("node-c"));
}

/// The seen set survives a restart (the router persists it): a router restarted after the
/// node was deleted still reclaims it.
#[test]
fn the_seen_set_carries_over_a_restart() {
    let mut a = core("node-a");
    a.nodes(0, &list("three-nodes.json"), &view(ALL, ALL));
    let seen = a.seen().clone();
    let mut again = Core::new(
        CoreConfig {
            node: "node-a".into(),
            port: 6783,
            reclaim_after: GRACE,
            fixed_targets: BTreeSet::new(),
        },
        seen,
    );
    let live = &["node-a", "node-b"];
    node_c_deleted(&mut again, 5, live);
    let d = node_c_deleted(&mut again, 5 + GRACE, live);
    assert_eq!(d.reclaim, strs(&["node-c"]));
}

#[test]
fn peer_names_follow_node_names() {
    assert_eq!(peer_name_for_node("node-a"), "node-a");
    assert_eq!(
        peer_name_for_node("ip-10-0-1-7.ec2.internal"),
        "ip-10-0-1-7.ec2.internal"
    );
    let long = format!("{}.example.com", "x".repeat(70));
    let p = peer_name_for_node(&long);
    assert_eq!(p.len(), 64);
    assert!(p.starts_with("xxxx"));
    let other = peer_name_for_node(&format!("{}.example.org", "x".repeat(70)));
    assert_ne!(p, other, "long names that share a head stay apart");
    assert_eq!(p, peer_name_for_node(&long), "deterministic");
}

#[test]
fn the_api_error_body_is_not_a_node_list() {
    let path = format!("{}/tests/data/forbidden.json", env!("CARGO_MANIFEST_DIR"));
    let e = NodeList::parse(&std::fs::read(path).unwrap()).unwrap_err();
    assert!(e.to_string().contains("Status"), "{e}");
}
