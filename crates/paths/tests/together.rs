//! IPAM, DNS gossip and the path core together on every peer of the seeded mesh
//! simulation, with faults (loss, a partition, crashes and restarts): all three run through
//! the one mesh-application trait as the router runs them. Checked at the end: every
//! address request was answered and no address is held twice; every running peer resolves
//! exactly the names of the running peers (each given address has one); every running peer
//! uses fastdp to each directly connected peer and a relay to the others.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use rand::SeedableRng;
use weft_dns::{DnsGossip, GossipConfig};
use weft_ipam::{Allocator, Event, InitMode, IpamApp, IpamConfig, IpamEffect, Reply};
use weft_mesh::sim::{earlier_targets, Sim, SimConfig};
use weft_mesh::{Disconnect, MeshApp, Millis, TopologyView, Transmit};
use weft_paths::{wire, Mode, PathConfig, PathCore, PathEffect};

const IPAM: u16 = 1;
const DNS: u16 = 2;
const PATHS: u16 = 3;

/// One router's cores.
struct Router {
    ipam: IpamApp,
    dns: DnsGossip,
    paths: PathCore,
}

enum Effect {
    Ipam(IpamEffect),
    Paths(PathEffect),
}

impl MeshApp for Router {
    type Effect = Effect;
    fn handle_message(&mut self, now: Millis, channel: u16, from: &str, payload: &[u8]) {
        self.ipam.handle_message(now, channel, from, payload);
        self.dns.handle_message(now, channel, from, payload);
        self.paths.handle_message(now, channel, from, payload);
    }
    fn handle_topology(&mut self, now: Millis, topology: &TopologyView) {
        self.ipam.handle_topology(now, topology);
        self.dns.handle_topology(now, topology);
        self.paths.handle_topology(now, topology);
    }
    fn handle_timeout(&mut self, now: Millis) {
        if self.ipam.poll_timeout().is_some_and(|t| t <= now) {
            self.ipam.handle_timeout(now);
        }
        if self.dns.poll_timeout().is_some_and(|t| t <= now) {
            self.dns.handle_timeout(now);
        }
        if self.paths.poll_timeout().is_some_and(|t| t <= now) {
            self.paths.handle_timeout(now);
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ipam
            .poll_transmit()
            .or_else(|| self.dns.poll_transmit())
            .or_else(|| self.paths.poll_transmit())
    }
    fn poll_effect(&mut self) -> Option<Effect> {
        self.ipam
            .poll_effect()
            .map(Effect::Ipam)
            .or_else(|| self.paths.poll_effect().map(Effect::Paths))
    }
    fn poll_timeout(&self) -> Option<Millis> {
        [
            self.ipam.poll_timeout(),
            self.dns.poll_timeout(),
            self.paths.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
    fn poll_disconnect(&mut self) -> Option<Disconnect> {
        self.dns.poll_disconnect()
    }
}

fn bmac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, (i >> 8) as u8, i as u8]
}

#[test]
fn ipam_dns_and_paths_together_with_faults() {
    let n = 24;
    let mut runs = 0u64;
    let mut sim = Sim::new(
        SimConfig {
            seed: 5,
            loss: 0.01,
            ..SimConfig::default()
        },
        move |i| {
            runs += 1;
            let name = format!("p{i:04}");
            let cfg = IpamConfig::new(
                "10.32.0.0/12".parse().unwrap(),
                InitMode::Consensus(n as u32),
            );
            Router {
                // Each run starts without a disk: the test checks uniqueness among live
                // holders only, so a restarted peer's containers are gone with it.
                ipam: IpamApp::new(Allocator::new(name.clone(), cfg, None).unwrap(), IPAM),
                // Every life shares one wall clock: Unix time 1,000 s at the simulation's 0.
                dns: DnsGossip::new(&name, DNS, GossipConfig::default(), 1_000_000).unwrap(),
                paths: PathCore::new(PathConfig {
                    me: name,
                    channel: PATHS,
                    run: format!("{runs:x}"),
                    bmac: bmac(i),
                    fastdp: true,
                    encrypted: false,
                    trusted: Vec::new(),
                    ciphers: vec![weft_types::CipherKind::ChaCha20Poly1305],
                    mtu: 1450,
                }),
            }
        },
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for i in 0..n {
        sim.add_peer(&earlier_targets(i, 2, &mut rng));
    }
    // (peer, request id) → answered address.
    let mut open: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut held: BTreeMap<(usize, u64), u32> = BTreeMap::new();
    let mut next = 1u64;
    let step = |sim: &mut Sim<Router>,
                open: &mut BTreeSet<(usize, u64)>,
                held: &mut BTreeMap<(usize, u64), u32>| {
        sim.run_for(100);
        for i in 0..sim.len() {
            for e in sim.take_effects(i) {
                match e {
                    Effect::Ipam(IpamEffect::Persist { token, .. }) => {
                        sim.with_app(i, |r, now| r.ipam.request(now, Event::Persisted { token }));
                    }
                    Effect::Ipam(IpamEffect::Reply { id, result }) => {
                        if open.remove(&(i, id)) {
                            if let Ok(Reply::Allocated(c)) = result {
                                held.insert((i, id), c.addr);
                                // As at attach: the container's name for its address.
                                let (host, addr) = (format!("c{id}.weft.local"), c.addr);
                                sim.with_app(i, |r, now| {
                                    let c = format!("c{id}");
                                    r.dns.add(now, &c, &host, Ipv4Addr::from(addr)).unwrap()
                                });
                            }
                        }
                    }
                    Effect::Paths(PathEffect::Ping { dst, token, .. }) => {
                        let j = (dst[4] as usize) << 8 | dst[5] as usize;
                        if sim.alive(i) && sim.alive(j) {
                            let me = wire::short_id(sim.name(i));
                            let them = wire::short_id(sim.name(j));
                            sim.with_app(j, |r, now| r.paths.pinged(now, me, token));
                            sim.with_app(i, |r, now| r.paths.pong(now, them, token));
                        }
                    }
                    Effect::Paths(_) => {}
                }
            }
        }
    };
    let mut allocate = |sim: &mut Sim<Router>, open: &mut BTreeSet<(usize, u64)>, i: usize| {
        let id = next;
        next += 1;
        open.insert((i, id));
        let owner = format!("c{id}");
        sim.with_app(i, |r, now| {
            r.ipam.request(
                now,
                Event::Allocate {
                    id,
                    owner,
                    subnet: None,
                },
            )
        });
    };
    for _ in 0..100 {
        step(&mut sim, &mut open, &mut held);
    }
    for i in 0..n {
        allocate(&mut sim, &mut open, i);
    }
    // Faults: a partition, three crashes (one without a reset), restarts, a heal.
    for _ in 0..50 {
        step(&mut sim, &mut open, &mut held);
    }
    sim.partition(|j| u32::from(j >= n / 2));
    for _ in 0..80 {
        step(&mut sim, &mut open, &mut held);
    }
    sim.heal();
    sim.crash(3, true);
    sim.crash(9, false);
    sim.crash(15, true);
    held.retain(|(p, _), _| ![3, 9, 15].contains(p));
    open.retain(|(p, _)| ![3, 9, 15].contains(p));
    for _ in 0..100 {
        step(&mut sim, &mut open, &mut held);
    }
    for g in [3, 9, 15] {
        sim.restart(g);
    }
    for i in 0..n {
        allocate(&mut sim, &mut open, i);
    }
    sim.run_until_converged(60_000, 500).unwrap();
    let mut waited = 0;
    while !open.is_empty() && waited < 600 {
        step(&mut sim, &mut open, &mut held);
        waited += 1;
    }
    for _ in 0..60 {
        step(&mut sim, &mut open, &mut held);
    }
    assert!(open.is_empty(), "requests never answered: {open:?}");
    let mut seen = BTreeMap::new();
    for ((p, id), a) in &held {
        if let Some(other) = seen.insert(*a, (*p, *id)) {
            panic!("address {a:x} held by {other:?} and by ({p}, {id})");
        }
    }
    assert!(held.len() >= n, "only {} addresses given", held.len());
    // DNS: every running peer comes to hold exactly the names of the running peers'
    // containers (a delta a peer missed while the mesh settled waits for a digest).
    let names: BTreeSet<(String, Ipv4Addr)> = held
        .iter()
        .map(|((_, id), a)| (format!("c{id}.weft.local."), Ipv4Addr::from(*a)))
        .collect();
    let dns_names = |sim: &mut Sim<Router>, i: usize| -> BTreeSet<(String, Ipv4Addr)> {
        let records = sim.app(i).dns.records();
        let recs = records.read().unwrap();
        recs.live_entries()
            .map(|e| (e.key.hostname, e.key.addr))
            .collect()
    };
    let mut waited = 0;
    while (0..n).any(|i| dns_names(&mut sim, i) != names) && waited < 300 {
        step(&mut sim, &mut open, &mut held);
        waited += 1;
    }
    for i in 0..n {
        assert_eq!(
            dns_names(&mut sim, i),
            names,
            "p{i:04}'s DNS names 30 s after the last change"
        );
    }
    for i in 0..n {
        let m = sim.mesh(i).unwrap();
        let direct: BTreeSet<String> = m.neighbours().into_iter().map(|x| x.name).collect();
        let routes = m.routes();
        for (dst, hop) in routes {
            let got = sim.app(i).paths.mode_of(&dst).cloned();
            let ok = if direct.contains(&dst) {
                matches!(got, Some(Mode::Fastdp(_)))
            } else {
                got == Some(Mode::Relay(hop.clone()))
            };
            assert!(ok, "p{i:04} to {dst}: {got:?}");
        }
    }
}
