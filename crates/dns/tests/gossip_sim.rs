//! DNS gossip on the seeded mesh simulation (`weft_mesh::sim`), run through the
//! mesh-application trait as the router runs it: deltas reach every peer at once, peers
//! converge under loss, names go and come back with their peer, a restarted peer replaces
//! its old names, and a hostile peer is dropped while the others keep their names.

use std::net::Ipv4Addr;

use rand::{Rng, SeedableRng};
use weft_dns::gossip::{DnsGossip, GossipConfig, RemoveFilter};
use weft_dns::records::{Entry, EntryKey, EntryState, MAX_ADDRS_PER_NAME};
use weft_dns::wire::Message;
use weft_mesh::sim::{Sim, SimConfig};
use weft_mesh::{MeshApp, Millis, Transmit};

const CHANNEL: u16 = 2;
/// Unix time at the simulation's 0 ms, shared by every life of every peer.
const EPOCH_WALL: u64 = 1_000_000;
/// A digest interval no test runs to: what arrives came by delta or join exchange.
const NO_DIGEST: Millis = 3_600_000;

fn core(i: usize, digest_interval: Millis) -> DnsGossip {
    let config = GossipConfig {
        digest_interval,
        ..GossipConfig::default()
    };
    DnsGossip::new(&name(i), CHANNEL, config, EPOCH_WALL).unwrap()
}

fn name(i: usize) -> String {
    format!("p{i:04}")
}

/// `n` peers in a full mesh, settled; a share `loss` of the DNS payloads is lost (the mesh
/// itself stays reliable, so only the gossip has to repair).
fn world(n: usize, seed: u64, digest_interval: Millis, loss: f64) -> Sim<DnsGossip> {
    let config = SimConfig {
        seed,
        app_loss: loss,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(config, move |i| core(i, digest_interval));
    for i in 0..n {
        sim.add_peer(&(0..i).collect::<Vec<_>>());
    }
    sim.run_until_converged(30_000, 100).unwrap();
    sim.run_for(500);
    sim
}

fn add(sim: &mut Sim<DnsGossip>, i: usize, container: &str, host: &str, addr: [u8; 4]) {
    sim.with_app(i, |n, now| {
        n.add(now, container, host, Ipv4Addr::from(addr)).unwrap()
    });
}

fn lookup(sim: &mut Sim<DnsGossip>, i: usize, name: &str) -> Vec<Ipv4Addr> {
    sim.app(i).records().read().unwrap().lookup(name)
}

fn view(sim: &mut Sim<DnsGossip>, i: usize) -> Vec<(String, String, String, Ipv4Addr)> {
    let records = sim.app(i).records();
    let recs = records.read().unwrap();
    recs.live_entries()
        .map(|e| (e.key.origin, e.key.container, e.key.hostname, e.key.addr))
        .collect()
}

fn converged(sim: &mut Sim<DnsGossip>, peers: &[usize]) -> bool {
    let first = view(sim, peers[0]);
    peers.iter().all(|&i| view(sim, i) == first)
}

/// A world without digests where peers 0 and 1 added `names` and 200 ms passed.
fn two_names(n: usize, seed: u64, names: [(&str, &str, [u8; 4]); 2]) -> Sim<DnsGossip> {
    let mut sim = world(n, seed, NO_DIGEST, 0.0);
    for (i, (container, host, addr)) in names.into_iter().enumerate() {
        add(&mut sim, i, container, host, addr);
    }
    sim.run_for(200);
    sim
}

#[test]
fn add_and_remove_reach_every_peer_at_once_without_loss() {
    let mut sim = two_names(
        3,
        1,
        [
            ("c1", "web.weft.local", [10, 32, 0, 1]),
            ("c2", "web.weft.local", [10, 32, 0, 2]),
        ],
    );
    for n in 0..3 {
        assert_eq!(
            lookup(&mut sim, n, "web.weft.local."),
            vec![Ipv4Addr::new(10, 32, 0, 1), Ipv4Addr::new(10, 32, 0, 2)]
        );
    }
    // Removal goes out as a delta: delivered without any digest.
    let filter = RemoveFilter {
        container: Some("c1".into()),
        ..Default::default()
    };
    let n = sim.with_app(0, |a, now| a.remove(now, &filter).unwrap());
    assert_eq!(n, 1);
    sim.run_for(200);
    for n in 0..3 {
        assert_eq!(
            lookup(&mut sim, n, "web.weft.local."),
            vec![Ipv4Addr::new(10, 32, 0, 2)],
            "on {n}"
        );
    }
}

#[test]
fn peers_converge_under_message_loss() {
    for seed in [3, 17, 99, 1234, 98765] {
        let mut sim = world(5, seed, GossipConfig::default().digest_interval, 0.3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for step in 0..200u32 {
            let who = rng.random_range(0..5);
            let c = format!("c{}", rng.random_range(0..8));
            let host = format!("h{}.weft.local", rng.random_range(0..4));
            let addr = Ipv4Addr::new(10, 32, rng.random_range(0..4), rng.random_range(0..8));
            if rng.random_range(0..3) == 0 {
                let f = RemoveFilter {
                    container: Some(c),
                    ..Default::default()
                };
                sim.with_app(who, |n, now| n.remove(now, &f).unwrap());
            } else {
                sim.with_app(who, |n, now| n.add(now, &c, &host, addr).unwrap());
            }
            if step % 10 == 0 {
                sim.run_for(700);
            }
        }
        // Keep losing messages: digests repeat, so the peers still agree in bounded time.
        let all: Vec<usize> = (0..5).collect();
        let mut rounds = 0;
        while !converged(&mut sim, &all) {
            rounds += 1;
            assert!(
                rounds < 60,
                "seed {seed}: no convergence after {rounds} digest rounds"
            );
            sim.run_for(5_000);
        }
        // And every peer holds exactly each origin's own view of itself.
        let mut truth = Vec::new();
        for i in 0..5 {
            let me = name(i);
            truth.extend(view(&mut sim, i).into_iter().filter(|e| e.0 == me));
        }
        truth.sort();
        assert_eq!(view(&mut sim, 0), truth, "seed {seed}");
    }
}

#[test]
fn dead_peer_names_vanish_and_come_back_with_it() {
    let mut sim = world(3, 5, NO_DIGEST, 0.0);
    add(&mut sim, 2, "c9", "db.weft.local", [10, 32, 9, 9]);
    sim.run_for(200);
    assert_eq!(
        lookup(&mut sim, 0, "db.weft.local."),
        vec![Ipv4Addr::new(10, 32, 9, 9)]
    );
    // p2 becomes unreachable for p0 and p1.
    sim.partition(|i| u32::from(i == 2));
    sim.run_for(8_000);
    assert_eq!(sim.components(), 2);
    add(&mut sim, 2, "c8", "x.weft.local", [10, 32, 9, 8]);
    // A late delta of p2 arriving after it is gone is not taken.
    let late = Message::Delta {
        origin: name(2),
        clock: EPOCH_WALL * 2,
        entries: vec![Entry {
            key: EntryKey::new(&name(2), "c8", "x.weft.local", Ipv4Addr::new(10, 32, 9, 8))
                .unwrap(),
            state: EntryState {
                version: EPOCH_WALL * 2,
                tombstone: false,
            },
        }],
    }
    .encode();
    sim.with_app(1, |n, now| n.handle_message(now, CHANNEL, &name(2), &late));
    sim.run_for(200);
    assert!(lookup(&mut sim, 0, "db.weft.local.").is_empty());
    assert!(lookup(&mut sim, 1, "x.weft.local.").is_empty());
    // It comes back: the join exchange brings its names back.
    sim.heal();
    sim.run_until_converged(30_000, 100).unwrap();
    sim.run_for(500);
    assert_eq!(
        lookup(&mut sim, 1, "db.weft.local."),
        vec![Ipv4Addr::new(10, 32, 9, 9)]
    );
    assert_eq!(
        lookup(&mut sim, 0, "x.weft.local."),
        vec![Ipv4Addr::new(10, 32, 9, 8)]
    );
}

#[test]
fn a_new_peer_catches_up_and_a_restarted_peer_replaces_its_old_names() {
    let mut sim = two_names(
        2,
        11,
        [
            ("c1", "a.weft.local", [10, 32, 0, 1]),
            ("c2", "b.weft.local", [10, 32, 0, 2]),
        ],
    );
    sim.add_peer(&[0, 1]);
    sim.run_until_converged(30_000, 100).unwrap();
    sim.run_for(500);
    assert!(converged(&mut sim, &[0, 1, 2]));
    assert_eq!(
        lookup(&mut sim, 2, "a.weft.local."),
        vec![Ipv4Addr::new(10, 32, 0, 1)]
    );
    // p1 restarts (same name, empty store) without the others noticing it was gone,
    // then re-adds only one of its old names, under a new address.
    sim.run_for(1_000);
    let topology = sim.mesh(1).unwrap().topology_view();
    sim.with_app(1, |n, now| {
        *n = core(1, NO_DIGEST);
        n.handle_topology(now, &topology);
        n.add(now, "c3", "c.weft.local", Ipv4Addr::new(10, 32, 0, 3))
            .unwrap();
    });
    sim.run_for(500);
    assert!(converged(&mut sim, &[0, 1, 2]));
    for n in [0, 2] {
        assert!(
            lookup(&mut sim, n, "b.weft.local.").is_empty(),
            "stale name of old p1 on {n}"
        );
        assert_eq!(
            lookup(&mut sim, n, "c.weft.local."),
            vec![Ipv4Addr::new(10, 32, 0, 3)]
        );
    }
}

#[test]
fn a_hostile_peer_is_disconnected_and_the_others_keep_their_names() {
    let mut sim = world(4, 21, GossipConfig::default().digest_interval, 0.0);
    add(&mut sim, 0, "c0", "zero.weft.local", [10, 32, 0, 10]);
    add(&mut sim, 3, "c3", "three.weft.local", [10, 32, 0, 13]);
    sim.run_for(500);
    assert_eq!(lookup(&mut sim, 1, "three.weft.local.").len(), 1);
    // p3 broadcasts one name with more addresses than a name may have.
    let wide: Vec<Entry> = (0..=MAX_ADDRS_PER_NAME as u32)
        .map(|i| Entry {
            key: EntryKey::new(
                &name(3),
                &format!("w{i}"),
                "web.weft.local",
                Ipv4Addr::from(0x0a40_0000 + i),
            )
            .unwrap(),
            state: EntryState {
                version: EPOCH_WALL * 2,
                tombstone: false,
            },
        })
        .collect();
    let payload = Message::Delta {
        origin: name(3),
        clock: EPOCH_WALL * 2,
        entries: wide,
    }
    .encode();
    sim.app_send(
        3,
        Transmit::Broadcast {
            channel: CHANNEL,
            payload,
        },
    );
    // Well before it may dial again (the mesh's first backoff is 1 s).
    sim.run_for(300);
    // Every other peer dropped it: no connection to it is left, its names are gone
    // (the oversized name was never taken), and the others' names are still served.
    for i in 0..3 {
        let m = sim.mesh(i).unwrap();
        assert!(
            m.neighbours().iter().all(|nb| nb.name != name(3)),
            "p{i:04} still connected to the hostile peer"
        );
        assert!(lookup(&mut sim, i, "web.weft.local.").is_empty());
        assert!(lookup(&mut sim, i, "three.weft.local.").is_empty());
        assert_eq!(
            lookup(&mut sim, i, "zero.weft.local."),
            vec![Ipv4Addr::new(10, 32, 0, 10)]
        );
    }
    // The others go on gossiping among themselves.
    add(&mut sim, 1, "c1", "one.weft.local", [10, 32, 0, 11]);
    sim.run_for(500);
    assert_eq!(
        lookup(&mut sim, 2, "one.weft.local."),
        vec![Ipv4Addr::new(10, 32, 0, 11)]
    );
}
