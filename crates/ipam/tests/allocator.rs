//! Behaviour of the IPAM core as a user sees it, on small fault-free networks.

mod common;

use common::Sim;
use weft_ipam::{
    Action, Allocator, Cidr, Event, InitMode, IpamConfig, IpamEffect, IpamError, PersistedState,
    Reply,
};

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn cfg(range: &str, init: InitMode) -> IpamConfig {
    let mut c = IpamConfig::new(cidr(range), init);
    c.retry_ms = 500;
    c.request_timeout_ms = 5_000;
    c.gossip_ms = 2_000;
    c
}

/// Peer `a`, the only seed of `range`, starting with no saved state.
fn alone(range: &str) -> Allocator {
    Allocator::new("a".into(), cfg(range, InitMode::Seed(names(&["a"]))), None).unwrap()
}

/// What `pick` finds in the effects among `acts`.
fn picked<T>(acts: &[Action], pick: impl Fn(&IpamEffect) -> Option<T>) -> Vec<T> {
    let effects = acts.iter().filter_map(|x| match x {
        Action::Effect(e) => Some(e),
        _ => None,
    });
    effects.filter_map(pick).collect()
}

/// `weft rmpeer NAME` on peer `at`; returns the request's id.
fn rmpeer(sim: &mut Sim, at: usize, name: &str) -> u64 {
    sim.request(at, "", |id| Event::RmPeer {
        id,
        name: name.into(),
    })
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn seeded(peers: &[&str], seeds: &[&str], range: &str) -> Sim {
    Sim::new(
        7,
        peers
            .iter()
            .map(|p| (p.to_string(), cfg(range, InitMode::Seed(names(seeds)))))
            .collect(),
    )
}

fn reply(sim: &mut Sim, id: u64, max_ms: u64) -> Result<Reply, IpamError> {
    sim.run_until(max_ms, |s| s.replies.contains_key(&id))
        .unwrap_or_else(|| panic!("request {id} not answered in {max_ms} ms"));
    sim.replies[&id].clone()
}

fn addr_of(r: &Result<Reply, IpamError>) -> Cidr {
    match r {
        Ok(Reply::Allocated(c)) | Ok(Reply::Claimed(c)) => *c,
        other => panic!("expected an address, got {other:?}"),
    }
}

#[test]
fn reply_waits_for_persist() {
    let mut a = alone("10.32.0.0/12");
    let acts = a.handle(
        0,
        Event::Allocate {
            id: 1,
            owner: "c1".into(),
            subnet: None,
        },
    );
    let token = match acts.as_slice() {
        [Action::Effect(IpamEffect::Persist { state, token })] => {
            assert_eq!(
                state.allocations.len(),
                1,
                "the allocation is in the persisted state"
            );
            *token
        }
        other => panic!("expected only a Persist before the reply, got {other:?}"),
    };
    let acts = a.handle(1, Event::Persisted { token });
    assert!(acts.contains(&Action::Effect(IpamEffect::Reply {
        id: 1,
        result: Ok(Reply::Allocated(cidr("10.32.0.1/12")))
    })));
    // Persisted state round-trips through its encoding.
    let st = a.persisted_state();
    assert_eq!(PersistedState::decode(&st.encode()).unwrap(), st);
}

#[test]
fn persists_are_group_committed_while_one_is_in_flight() {
    let mut a = alone("10.32.0.0/12");
    let alloc = |id| Event::Allocate {
        id,
        owner: format!("c{id}"),
        subnet: None,
    };
    let first = a.handle(0, alloc(1));
    assert!(matches!(
        first.as_slice(),
        [Action::Effect(IpamEffect::Persist { token: 1, .. })]
    ));
    // Two more while persist 1 is in flight: no new snapshot, no reply yet.
    assert!(a.handle(0, alloc(2)).is_empty());
    assert!(a.handle(0, alloc(3)).is_empty());
    let acts = a.handle(1, Event::Persisted { token: 1 });
    let replies = picked(&acts, |e| match e {
        IpamEffect::Reply { id, .. } => Some(*id),
        _ => None,
    });
    assert_eq!(replies, vec![1], "only the first allocation is durable");
    let token = match acts.last() {
        Some(Action::Effect(IpamEffect::Persist { state, token })) => {
            assert_eq!(
                state.allocations.len(),
                3,
                "one snapshot covers both waiting allocations"
            );
            *token
        }
        other => panic!("expected a Persist last, got {other:?}"),
    };
    let acts = a.handle(2, Event::Persisted { token });
    assert_eq!(acts.len(), 2, "both replies released: {acts:?}");
}

#[test]
fn allocates_locally_then_asks_a_peer_for_space() {
    let mut sim = seeded(&["a", "b"], &["a"], "10.32.0.0/24");
    let id = sim.allocate(0, "c1", None);
    assert_eq!(addr_of(&reply(&mut sim, id, 100)), cidr("10.32.0.1/24"));
    let id = sim.allocate(1, "c2", None);
    let got = addr_of(&reply(&mut sim, id, 2_000));
    assert!(
        got.addr >= cidr("10.32.0.128/32").addr,
        "b got space from the upper half of a's free run: {got}"
    );
    let ring = sim.node(1).ring().unwrap();
    assert_eq!(ring.owner_of(got.addr), Some("b"));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    // Allocating again for the same container gives the same address.
    let id = sim.allocate(1, "c2", None);
    assert_eq!(addr_of(&reply(&mut sim, id, 100)), got);
}

#[test]
fn claim_is_refused_clearly_when_another_container_holds_the_address() {
    let mut sim = seeded(&["a", "b"], &["a"], "10.32.0.0/24");
    let id = sim.allocate(0, "c1", None);
    let held = addr_of(&reply(&mut sim, id, 100));
    let id = sim.request(1, "c2", |id| Event::Claim {
        id,
        owner: "c2".into(),
        addr: held,
    });
    let err = reply(&mut sim, id, 2_000).unwrap_err();
    assert!(
        matches!(err, IpamError::AddressInUse { ref holder, ref peer, .. } if holder == "c1" && peer == "a")
    );
    assert!(
        err.to_string().contains("already held by c1 on peer a"),
        "{err}"
    );
    // A free address owned by a is handed over for the claim.
    let want = cidr("10.32.0.77/24");
    let id = sim.request(1, "c3", |id| Event::Claim {
        id,
        owner: "c3".into(),
        addr: want,
    });
    assert_eq!(reply(&mut sim, id, 2_000), Ok(Reply::Claimed(want)));
    assert_eq!(sim.node(0).ring().unwrap().owner_of(want.addr), Some("b"));
    // Network and broadcast addresses are refused.
    let id = sim.request(1, "c4", |id| Event::Claim {
        id,
        owner: "c4".into(),
        addr: cidr("10.32.0.255/24"),
    });
    assert!(matches!(
        reply(&mut sim, id, 10),
        Err(IpamError::NotUsable { .. })
    ));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn subnets_release_and_lookup() {
    let mut sim = seeded(&["a"], &["a"], "10.32.0.0/16");
    let sub = cidr("10.32.5.0/24");
    let id = sim.allocate(0, "c1", Some(sub));
    assert_eq!(addr_of(&reply(&mut sim, id, 100)), cidr("10.32.5.1/24"));
    let id = sim.allocate(0, "c1", None);
    assert_eq!(addr_of(&reply(&mut sim, id, 100)), cidr("10.32.0.1/16"));
    let id = sim.request(0, "c1", |id| Event::Lookup {
        id,
        owner: "c1".into(),
    });
    assert_eq!(
        reply(&mut sim, id, 100),
        Ok(Reply::Addresses(vec![
            cidr("10.32.0.1/16"),
            cidr("10.32.5.1/24")
        ]))
    );
    // The owner audit sees every allocation with its owner.
    let id = sim.request(0, "audit", |id| Event::Holdings { id });
    assert_eq!(
        reply(&mut sim, id, 100),
        Ok(Reply::Holdings(vec![
            ("c1".to_string(), cidr("10.32.0.1/16")),
            ("c1".to_string(), cidr("10.32.5.1/24"))
        ]))
    );
    let id = sim.request(0, "c1", |id| Event::Release {
        id,
        owner: "c1".into(),
        addr: None,
    });
    assert!(matches!(reply(&mut sim, id, 100), Ok(Reply::Released(v)) if v.len() == 2));
    let id = sim.allocate(0, "c9", Some(cidr("10.33.0.0/24")));
    let err = reply(&mut sim, id, 10).unwrap_err();
    assert!(
        err.to_string()
            .contains("not inside the allocation range 10.32.0.0/16"),
        "{err}"
    );
}

#[test]
fn subnet_full_is_reported_once_every_peer_is_full() {
    let mut sim = seeded(&["a", "b"], &["a", "b"], "10.32.0.0/29");
    let mut got = Vec::new();
    for i in 0..6 {
        let id = sim.allocate(i % 2, &format!("c{i}"), None);
        got.push(addr_of(&reply(&mut sim, id, 3_000)));
    }
    let id = sim.allocate(0, "c7", None);
    let err = reply(&mut sim, id, 3_000).unwrap_err();
    assert!(matches!(err, IpamError::SubnetFull { .. }), "{err}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn restart_keeps_ring_and_addresses() {
    let mut sim = seeded(&["a", "b"], &["a", "b"], "10.32.0.0/24");
    let mut mine = Vec::new();
    for i in 0..5 {
        let id = sim.allocate(0, &format!("c{i}"), None);
        mine.push(addr_of(&reply(&mut sim, id, 100)));
    }
    sim.crash(0);
    sim.restart(0);
    for (i, a) in mine.iter().enumerate() {
        let id = sim.request(0, "x", |id| Event::Lookup {
            id,
            owner: format!("c{i}"),
        });
        assert_eq!(reply(&mut sim, id, 100), Ok(Reply::Addresses(vec![*a])));
    }
    let id = sim.allocate(0, "c9", None);
    let new = addr_of(&reply(&mut sim, id, 100));
    assert!(!mine.contains(&new));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn rmpeer_refuses_live_peers_and_takes_space_of_dead_ones() {
    let mut sim = seeded(&["a", "b", "c"], &["a", "b", "c"], "10.32.0.0/24");
    let id = sim.request(0, "", |id| Event::Prime { id });
    assert_eq!(reply(&mut sim, id, 100), Ok(Reply::Primed));
    let id = rmpeer(&mut sim, 0, "b");
    let err = reply(&mut sim, id, 100).unwrap_err();
    assert!(matches!(err, IpamError::PeerReachable { .. }), "{err}");
    let id = rmpeer(&mut sim, 0, "zz");
    assert!(matches!(
        reply(&mut sim, id, 100),
        Err(IpamError::UnknownPeer { .. })
    ));
    sim.crash(1);
    sim.peers[1].removed = true;
    let id = rmpeer(&mut sim, 0, "b");
    assert!(
        matches!(reply(&mut sim, id, 100), Ok(Reply::RemovedPeer { addresses, .. }) if addresses > 80)
    );
    sim.run(3_000);
    let ring = sim.node(2).ring().unwrap();
    assert_eq!(ring.owned_count("b"), 0);
    assert!(ring.owned_count("a") > 160);
    let st = sim.node(2).status();
    assert!(!st.peers.iter().any(|p| p.name == "b"), "{st}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn shutdown_hands_space_to_the_others() {
    let mut sim = seeded(&["a", "b", "c"], &["a", "b", "c"], "10.32.0.0/24");
    let id = sim.allocate(1, "c1", None);
    addr_of(&reply(&mut sim, id, 100));
    let id = sim.request(1, "", |id| Event::Shutdown { id });
    let r = reply(&mut sim, id, 2_000);
    assert!(
        matches!(&r, Ok(Reply::HandedOver(v)) if v.iter().map(|x| x.1).sum::<u64>() == 85),
        "{r:?}"
    );
    sim.run(3_000);
    for i in [0, 2] {
        assert_eq!(sim.node(i).ring().unwrap().owned_count("b"), 0);
    }
    let id = sim.allocate(1, "c2", None);
    assert_eq!(reply(&mut sim, id, 10), Err(IpamError::ShuttingDown));
    // Alone, a peer cannot hand its space over and says so.
    let mut solo = seeded(&["a"], &["a"], "10.32.0.0/24");
    let id = solo.request(0, "", |id| Event::Prime { id });
    assert_eq!(reply(&mut solo, id, 100), Ok(Reply::Primed));
    let id = solo.request(0, "", |id| Event::Shutdown { id });
    assert!(matches!(
        reply(&mut solo, id, 100),
        Err(IpamError::NoPeerForHandover { .. })
    ));
}

fn consensus_sim(n: usize, quorum_n: u32) -> Sim {
    Sim::new(
        11,
        (0..n)
            .map(|i| {
                (
                    format!("p{i}"),
                    cfg("10.32.0.0/16", InitMode::Consensus(quorum_n)),
                )
            })
            .collect(),
    )
}

#[test]
fn consensus_says_what_it_waits_for_and_completes_when_healed() {
    let mut sim = consensus_sim(3, 3);
    sim.side = vec![0, 1, 2];
    sim.notify_peers();
    let id = sim.allocate(2, "c1", None);
    sim.run(1_000);
    let line = sim.node(2).status_line();
    assert!(
        line.contains("awaiting consensus (1 of 3 peers reachable, quorum 2"),
        "{line}"
    );
    let err = reply(&mut sim, id, 10_000).unwrap_err();
    assert!(err.to_string().contains("awaiting consensus"), "{err}");
    // Two of three can decide.
    sim.side = vec![0, 1, 1];
    sim.notify_peers();
    let id = sim.allocate(2, "c2", None);
    addr_of(&reply(&mut sim, id, 5_000));
    assert!(
        sim.node(0).ring().is_none(),
        "p0 is cut off and cannot know"
    );
    sim.side = vec![0, 0, 0];
    sim.notify_peers();
    sim.run(3_000);
    let r1 = sim.node(1).ring().unwrap().clone();
    assert_eq!(sim.node(0).ring(), Some(&r1));
    assert_eq!(r1.owners(), vec!["p1".to_string(), "p2".to_string()]);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn observer_takes_the_ring_and_asks_for_space() {
    let mut sim = Sim::new(
        3,
        vec![
            ("a".into(), cfg("10.32.0.0/16", InitMode::Consensus(1))),
            ("o".into(), cfg("10.32.0.0/16", InitMode::Observer)),
        ],
    );
    sim.side = vec![0, 1];
    sim.notify_peers();
    sim.allocate(1, "c1", None);
    sim.run(1_000);
    assert!(sim
        .node(1)
        .status_line()
        .contains("observer: waiting for the ring"));
    sim.side = vec![0, 0];
    sim.notify_peers();
    let id = sim.allocate(1, "c2", None);
    addr_of(&reply(&mut sim, id, 5_000));
    assert_eq!(
        sim.node(1).ring().unwrap().owners(),
        vec!["a".to_string(), "o".to_string()]
    );
}

#[test]
fn waiting_for_space_held_by_an_unreachable_peer_says_so() {
    let mut sim = seeded(&["a", "b"], &["a"], "10.32.0.0/24");
    sim.side = vec![0, 1];
    sim.notify_peers();
    let id = sim.allocate(1, "c1", None);
    sim.run(1_000);
    let line = sim.node(1).status_line();
    assert!(line.contains("only on unreachable peers a"), "{line}");
    let err = reply(&mut sim, id, 10_000).unwrap_err();
    assert!(err.to_string().contains("weft rmpeer"), "{err}");
}

#[test]
fn bad_configuration_and_restore_are_refused_clearly() {
    let bad = |range: &str, def: Option<&str>, init| {
        let mut c = cfg(range, init);
        c.default_subnet = def.map(cidr);
        Allocator::new("a".into(), c, None).unwrap_err().to_string()
    };
    assert!(bad("10.32.0.1/12", None, InitMode::Observer).contains("host bits"));
    assert!(bad("10.32.0.0/12", Some("10.0.0.0/24"), InitMode::Observer).contains("not inside"));
    assert!(bad("10.32.0.0/12", None, InitMode::Consensus(0)).contains("N of 1"));
    assert!(bad("10.32.0.0/12", None, InitMode::Seed(vec![])).contains("seed="));
    let mut a = alone("10.32.0.0/12");
    a.handle(0, Event::Prime { id: 1 });
    let st = a.persisted_state();
    let e = Allocator::new(
        "a".into(),
        cfg("10.40.0.0/16", InitMode::Observer),
        Some(st.clone()),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("--ipalloc-range 10.32.0.0/12"),
        "{e}"
    );
    let e = Allocator::new(
        "b".into(),
        cfg("10.32.0.0/12", InitMode::Observer),
        Some(st),
    )
    .unwrap_err();
    assert!(matches!(e, IpamError::RestoreName { .. }));
}

#[test]
fn peers_with_other_ranges_are_noted_not_merged() {
    let mut sim = Sim::new(
        5,
        vec![
            (
                "a".into(),
                cfg("10.32.0.0/16", InitMode::Seed(names(&["a"]))),
            ),
            (
                "b".into(),
                cfg("10.40.0.0/16", InitMode::Seed(names(&["b"]))),
            ),
        ],
    );
    sim.allocate(0, "c1", None);
    sim.allocate(1, "c2", None);
    sim.run(3_000);
    let st = sim.node(0).status();
    assert!(
        st.notes
            .iter()
            .any(|n| n.contains("uses range 10.40.0.0/16")),
        "{st}"
    );
}

#[test]
fn rmpeer_after_an_unseen_handover_leaves_the_space_with_its_new_owner() {
    // b hands its space to a (the only peer it reaches), then is gone. c never saw the
    // handover and removes b with rmpeer; once c hears from a, the space stays a's.
    let mut sim = seeded(&["a", "b", "c"], &["a", "b", "c"], "10.32.0.0/24");
    let id = sim.request(0, "", |id| Event::Prime { id });
    reply(&mut sim, id, 1_000).unwrap();
    sim.run(500);
    let b_range = sim.node(0).ring().unwrap().owned_by("b");
    sim.side = vec![0, 0, 1];
    sim.notify_peers();
    let id = sim.request(1, "", |id| Event::Shutdown { id });
    assert!(matches!(
        reply(&mut sim, id, 2_000),
        Ok(Reply::HandedOver(_))
    ));
    sim.crash(1);
    sim.peers[1].removed = true;
    let id = rmpeer(&mut sim, 2, "b");
    assert!(matches!(
        reply(&mut sim, id, 100),
        Ok(Reply::RemovedPeer { .. })
    ));
    let line = sim.node(2).status_line();
    assert!(
        line.contains("space taken from b is used once a sent"),
        "{line}"
    );
    sim.side = vec![0, 0, 0];
    sim.notify_peers();
    sim.run(3_000);
    for i in [0, 2] {
        let ring = sim.node(i).ring().unwrap();
        for (s, _) in &b_range {
            assert_eq!(ring.owner_of(*s as u32), Some("a"), "peer {i}");
        }
    }
    assert_eq!(sim.node(2).status_line(), "ready");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn a_request_waiting_for_space_completes_when_the_partition_heals() {
    let mut sim = seeded(&["a", "b"], &["a"], "10.32.0.0/24");
    let id = sim.request(1, "", |id| Event::Prime { id });
    reply(&mut sim, id, 1_000).unwrap();
    sim.side = vec![0, 1];
    sim.notify_peers();
    let id = sim.allocate(1, "c1", None);
    sim.run(2_000);
    assert!(!sim.replies.contains_key(&id), "no space reachable yet");
    assert!(sim.node(1).status_line().contains("waiting for space"));
    sim.side = vec![0, 0];
    sim.notify_peers();
    let took = sim
        .run_until(1_000, |s| s.replies.contains_key(&id))
        .expect("answered after the heal");
    assert!(took < 100, "answered {took} ms after the heal");
    addr_of(&sim.replies[&id]);
    assert_eq!(sim.node(1).status_line(), "ready");
}

#[test]
fn replies_and_status_have_a_json_form_for_the_http_api() {
    let r: Result<Reply, IpamError> = Ok(Reply::Allocated(cidr("10.32.0.1/12")));
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"Ok":{"Allocated":"10.32.0.1/12"}}"#
    );
    let c: Cidr = serde_json::from_str(r#""10.32.1.0/24""#).unwrap();
    assert_eq!(c, cidr("10.32.1.0/24"));
    assert!(serde_json::from_str::<Cidr>(r#""10.32.1.0""#).is_err());
    let mut sim = seeded(&["a", "b"], &["a"], "10.32.0.0/24");
    let id = sim.allocate(0, "c1", None);
    reply(&mut sim, id, 100).unwrap();
    sim.run(100);
    let st = sim.node(0).status();
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["line"], "ready");
    assert_eq!(json["peers"][0]["name"], "a");
    let text = st.to_string();
    assert!(
        text.contains("Status: ready") && text.contains("this peer"),
        "{text}"
    );
}

#[test]
fn garbage_from_peers_changes_nothing() {
    use weft_ipam::consensus::Ballot;
    use weft_ipam::Message;
    let mut a = Allocator::new(
        "a".into(),
        cfg("10.32.0.0/16", InitMode::Consensus(1)),
        None,
    )
    .unwrap();
    let before = a.persisted_state();
    for payload in [vec![], vec![0xff; 40], b"WI\x01\x01\x00".to_vec()] {
        let acts = a.handle(
            0,
            Event::Received {
                from: "x".into(),
                payload,
            },
        );
        assert!(acts.is_empty());
    }
    // An empty consensus value is refused.
    let ballot = Ballot {
        round: 9,
        proposer: "x".into(),
    };
    let acts = a.handle(
        1,
        Event::Received {
            from: "x".into(),
            payload: Message::Accept {
                ballot,
                value: vec![],
            }
            .encode(),
        },
    );
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(a.persisted_state(), before);
    assert_eq!(a.status().bad_messages, 3);
}

#[test]
fn an_allocation_not_yet_answered_fails_when_the_peer_resets() {
    let mut a = alone("10.32.0.0/24");
    a.handle(
        0,
        Event::PeersChanged {
            reachable: ["a".to_string(), "b".to_string()].into_iter().collect(),
        },
    );
    let acts = a.handle(
        0,
        Event::Allocate {
            id: 1,
            owner: "c1".into(),
            subnet: None,
        },
    );
    let Some(Action::Effect(IpamEffect::Persist { token, .. })) = acts.first() else {
        panic!("{acts:?}")
    };
    let token = *token;
    // Reset while the allocation's persist is in flight.
    a.handle(1, Event::Shutdown { id: 2 });
    let mut acts = a.handle(2, Event::Persisted { token });
    for _ in 0..3 {
        let more = picked(&acts, |e| match e {
            IpamEffect::Persist { token, .. } => Some(*token),
            _ => None,
        });
        for t in more {
            acts.extend(a.handle(3, Event::Persisted { token: t }));
        }
    }
    assert!(
        acts.contains(&Action::Effect(IpamEffect::Reply {
            id: 1,
            result: Err(IpamError::ShuttingDown)
        })),
        "{acts:?}"
    );
}
