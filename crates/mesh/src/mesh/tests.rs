//! Unit tests of the mesh core.

use super::*;

fn mesh(name: &str, uid: u64) -> Mesh {
    Mesh::new(MeshConfig {
        name: name.into(),
        nickname: name.into(),
        uid,
        listen_port: 6783,
        conn_limit: 10,
        discovery: true,
        initial_version: 1,
        timing: Timing::default(),
    })
}

fn hello(name: &str, uid: u64) -> Hello {
    Hello {
        name: name.into(),
        nickname: name.into(),
        uid,
        listen_port: 6783,
    }
}

const ADDR: &str = "10.0.0.2:6783";

#[test]
fn a_peer_over_a_gossip_bound_is_disconnected_with_a_reason() {
    let mut m = mesh("a", 1);
    m.connected(0, 7, ADDR.parse().unwrap(), false, None, hello("b", 2));
    m.connected(
        0,
        8,
        "10.0.0.3:6783".parse().unwrap(),
        false,
        None,
        hello("c", 3),
    );
    let _ = m.take_actions();
    let huge = PeerEntry {
        name: "evil".into(),
        nickname: "evil".into(),
        uid: 1,
        version: 1,
        listen_port: 6783,
        edges: (0..crate::limits::MAX_EDGES + 1)
            .map(|i| crate::wire::EdgeInfo {
                name: format!("p{i}"),
                addr: "10.9.9.9:6783".into(),
                outbound: true,
            })
            .collect(),
    };
    m.received(
        1,
        7,
        Message::Gossip {
            entries: vec![huge],
        },
    );
    let acts = m.take_actions();
    assert!(
        acts.iter().any(|a| matches!(a, Action::Send { conn: 7, msg: Message::Refuse { reason } } if reason.contains("exceeded a limit"))),
        "{acts:?}"
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Close { conn: 7, reason } if reason.contains("edges"))),
        "{acts:?}"
    );
    assert!(m.peers().iter().all(|p| p.name != "evil"));
    // The mesh goes on serving the other connection.
    m.received(2, 8, Message::Heartbeat);
    assert!(m
        .connection_status(2)
        .iter()
        .any(|c| c.state == "established"));
}

#[test]
fn same_name_is_refused_with_a_reason_and_backoff_grows() {
    let mut m = mesh("a", 1);
    m.add_targets(0, &[ADDR.to_string()], false);
    assert_eq!(
        m.take_actions(),
        vec![Action::Dial {
            target: ADDR.into()
        }]
    );
    let mut delays = Vec::new();
    let mut now = 0;
    for _ in 0..5 {
        m.connected(
            now,
            7,
            ADDR.parse().unwrap(),
            true,
            Some(ADDR),
            hello("a", 2),
        );
        let acts = m.take_actions();
        assert!(
            matches!(&acts[0], Action::Send { msg: Message::Refuse { reason }, .. } if reason.contains("used by both peers")),
            "{acts:?}"
        );
        assert!(matches!(acts[1], Action::Close { .. }));
        let st = m.connection_status(now);
        assert_eq!(st[0].state, "failed");
        assert!(st[0].info.contains("used by both peers"), "{st:?}");
        // Find when it dials again.
        let start = now;
        loop {
            now += 100;
            m.tick(now);
            if m.take_actions()
                .iter()
                .any(|a| matches!(a, Action::Dial { .. }))
            {
                break;
            }
        }
        delays.push(now - start);
    }
    assert!(delays[4] > delays[0] * 4, "backoff grows: {delays:?}");
    assert!(m.peers().len() == 1);
}

#[test]
fn dialling_ourselves_is_not_a_name_clash() {
    let mut m = mesh("a", 1);
    m.add_targets(0, &[ADDR.to_string()], false);
    m.take_actions();
    m.connected(0, 1, ADDR.parse().unwrap(), true, Some(ADDR), hello("a", 1));
    let acts = m.take_actions();
    assert!(
        matches!(acts.as_slice(), [Action::Close { .. }]),
        "{acts:?}"
    );
    assert!(m.target_status()[0].last_error.contains("itself"));
}

#[test]
fn simultaneous_dials_keep_one_connection_on_both_sides() {
    let (mut a, mut b) = (mesh("a", 1), mesh("b", 2));
    let sa: SocketAddr = "10.0.0.1:6783".parse().unwrap();
    let sb: SocketAddr = "10.0.0.2:6783".parse().unwrap();
    // Connection 1: a dialled b. Connection 2: b dialled a.
    a.connected(0, 1, sb, true, None, hello("b", 2));
    b.connected(0, 1, sa, false, None, hello("a", 1));
    a.connected(0, 2, sb, false, None, hello("b", 2));
    b.connected(0, 2, sa, true, None, hello("a", 1));
    let closed = |acts: Vec<Action>| -> Vec<ConnId> {
        acts.into_iter()
            .filter_map(|x| match x {
                Action::Close { conn, .. } => Some(conn),
                _ => None,
            })
            .collect()
    };
    // Both keep the one dialled by the smaller name (a): connection 1.
    assert_eq!(closed(a.take_actions()), vec![2]);
    assert_eq!(closed(b.take_actions()), vec![2]);
    assert_eq!(a.neighbours().len(), 1);
    assert_eq!(b.neighbours().len(), 1);
}

#[test]
fn silence_closes_a_connection() {
    let mut a = mesh("a", 1);
    a.connected(0, 1, ADDR.parse().unwrap(), true, None, hello("b", 2));
    a.take_actions();
    // Anything sent keeps the connection alive; with nothing else to say, a heartbeat.
    a.tick(1_000);
    assert!(a.take_actions().iter().any(|x| matches!(
        x,
        Action::Send {
            msg: Message::Heartbeat,
            ..
        }
    )));
    a.tick(5_100);
    assert!(a
        .take_actions()
        .iter()
        .any(|x| matches!(x, Action::Close { .. })));
    assert!(a.neighbours().is_empty());
}

#[test]
fn a_core_can_have_a_directly_connected_peer_dropped() {
    let mut m = mesh("a", 1);
    m.connected(0, 7, ADDR.parse().unwrap(), false, None, hello("b", 2));
    let _ = m.take_actions();
    // Not a neighbour: nothing to close.
    assert!(!m.disconnect_peer(1, "far", "too many DNS names"));
    assert!(m.take_actions().is_empty());
    assert!(m.disconnect_peer(1, "b", "too many DNS names"));
    let acts = m.take_actions();
    assert!(
        acts.iter().any(|a| matches!(a, Action::Send { conn: 7, msg: Message::Refuse { reason } } if reason.contains("too many DNS names"))),
        "{acts:?}"
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Close { conn: 7, .. })),
        "{acts:?}"
    );
    assert!(m.neighbours().is_empty());
}

#[test]
fn a_discovered_address_and_a_target_of_unknown_peer_are_not_dialled_at_once() {
    let dials = |acts: Vec<Action>| -> Vec<String> {
        acts.into_iter()
            .filter_map(|x| match x {
                Action::Dial { target } => Some(target),
                _ => None,
            })
            .collect()
    };
    let mut a = mesh("a", 1);
    // The explicit target by host name was not up yet: it waits for its backoff.
    a.add_targets(0, &["hostb:6783".into()], false);
    assert_eq!(dials(a.take_actions()), vec!["hostb:6783".to_string()]);
    a.connect_failed(10, Some("hostb:6783"), None, true, "connection refused");
    // c tells a of b (b dialled c): a dials b's address from gossip.
    a.connected(
        100,
        7,
        "10.0.0.3:6783".parse().unwrap(),
        true,
        None,
        hello("c", 3),
    );
    let _ = a.take_actions();
    let b_entry = PeerEntry {
        name: "b".into(),
        nickname: "b".into(),
        uid: 2,
        version: 1,
        listen_port: 6783,
        edges: vec![crate::wire::EdgeInfo {
            name: "c".into(),
            addr: "10.0.0.3:6783".into(),
            outbound: true,
        }],
    };
    let c_entry = PeerEntry {
        name: "c".into(),
        nickname: "c".into(),
        uid: 3,
        version: 1,
        listen_port: 6783,
        edges: vec![
            crate::wire::EdgeInfo {
                name: "a".into(),
                addr: "10.0.0.1:40000".into(),
                outbound: false,
            },
            crate::wire::EdgeInfo {
                name: "b".into(),
                addr: "10.0.0.2:40000".into(),
                outbound: false,
            },
        ],
    };
    a.received(
        200,
        7,
        Message::Gossip {
            entries: vec![c_entry, b_entry],
        },
    );
    a.tick(250);
    assert_eq!(dials(a.take_actions()), vec!["10.0.0.2:6783".to_string()]);
    // The host name's backoff ends while that dial is in flight: it waits.
    a.tick(5_000);
    assert!(dials(a.take_actions()).is_empty());
    // The dial is answered: b is connected, and the target by host name may go on (its
    // peer is unknown; once it connects, it is known to be b).
    a.connected(
        5_100,
        8,
        "10.0.0.2:6783".parse().unwrap(),
        true,
        Some("10.0.0.2:6783"),
        hello("b", 2),
    );
    let _ = a.take_actions();
    a.tick(5_250);
    assert_eq!(dials(a.take_actions()), vec!["hostb:6783".to_string()]);
}

#[test]
fn digest_hashes_go_to_every_connection_at_once_on_whole_periods() {
    let mut a = mesh("a", 1);
    // Two connections that came up at different moments.
    a.connected(300, 1, ADDR.parse().unwrap(), true, None, hello("b", 2));
    a.connected(
        1_700,
        2,
        "10.0.0.3:6783".parse().unwrap(),
        true,
        None,
        hello("c", 3),
    );
    let _ = a.take_actions();
    let digests = |acts: Vec<Action>| -> Vec<ConnId> {
        let mut c: Vec<ConnId> = acts
            .into_iter()
            .filter_map(|x| match x {
                Action::Send {
                    conn,
                    msg: Message::DigestHash { .. },
                } => Some(conn),
                _ => None,
            })
            .collect();
        c.sort();
        c
    };
    // Ticks every 250 ms (as the router's): the hashes go at 2 s and 4 s, both together,
    // not 2 s after each connection came up.
    let mut at = Vec::new();
    for now in (1_750..=4_500).step_by(250) {
        a.received(now, 1, Message::Heartbeat);
        a.received(now, 2, Message::Heartbeat);
        a.tick(now);
        let d = digests(a.take_actions());
        if !d.is_empty() {
            at.push((now, d));
        }
    }
    assert_eq!(at, vec![(2_000, vec![1, 2]), (4_000, vec![1, 2])]);
}

#[test]
fn a_target_whose_first_dial_failed_learns_its_peer_when_it_dials_us() {
    let mut a = mesh("a", 1);
    // The target by host name was dialled before b was up: refused, waiting to retry.
    a.add_targets(0, &["hostb:6783".into()], false);
    let _ = a.take_actions();
    a.connect_failed(
        10,
        Some("hostb:6783"),
        Some("10.0.0.2:6783".parse().unwrap()),
        true,
        "cannot connect to 10.0.0.2:6783: connection refused",
    );
    let failed = |a: &Mesh| {
        a.connection_status(100)
            .iter()
            .filter(|c| c.state == "failed")
            .count()
    };
    assert_eq!(failed(&a), 1);
    // b came up and dialled us (it found us by gossip) from an ephemeral port; it listens
    // on the address the target's dial went to.
    a.connected(
        500,
        7,
        "10.0.0.2:40123".parse().unwrap(),
        false,
        None,
        hello("b", 2),
    );
    let _ = a.take_actions();
    assert_eq!(failed(&a), 0, "{:?}", a.connection_status(600));
    let t = a.target_status();
    assert_eq!(t[0].state, "connected", "{t:?}");
    assert_eq!(t[0].peer.as_deref(), Some("b"));
    // And it is not dialled again while b is connected.
    a.tick(5_000);
    assert!(!a
        .take_actions()
        .iter()
        .any(|x| matches!(x, Action::Dial { .. })));
}
