//! The path core on the seeded mesh simulation, without root: every peer runs a
//! [`PathCore`] on a real mesh core; its operations are carried out on a model of that
//! host's VXLAN FDB and sleeve tables, its heartbeats answered when the test says fastdp
//! between the two hosts works. Checked: direct peers on fastdp while it answers, on the
//! sleeve while it does not, back on fastdp after it heals; peers without a connection
//! relayed by the next hop (on a line too); a peer that left keeps its fastdp entries on
//! its neighbours and comes back on fastdp; and every broadcast reaches every other host
//! exactly once, through the tables the core asked for.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::SeedableRng;
use weft_mesh::sim::{earlier_targets, Sim, SimConfig};
use weft_mesh::MeshApp;
use weft_paths::{wire, Mode, Op, PathConfig, PathCore, PathEffect, SleeveKey};
use weft_types::CipherKind;

const CHANNEL: u16 = 3;
/// The overlay MTU fastdp must carry.
const MTU: u32 = 1450;

fn bmac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, (i >> 8) as u8, i as u8]
}

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

fn node_of_ip(a: Ipv4Addr) -> usize {
    let o = a.octets();
    ((o[1] as usize) << 16) | ((o[2] as usize) << 8) | o[3] as usize
}

/// One host's VXLAN FDB and sleeve tables, as the driver would have programmed them.
#[derive(Debug, Default)]
struct Kernel {
    vxlan_macs: HashMap<[u8; 6], Ipv4Addr>,
    flood: HashSet<Ipv4Addr>,
    sleeve_peers: HashMap<u32, Option<SocketAddr>>,
    keys: HashMap<u32, SleeveKey>,
    routes: HashMap<u32, u32>,
    sleeve_macs: HashMap<[u8; 6], u32>,
    bcast: HashMap<u32, Vec<u32>>,
    /// Sleeve peers without sleeve heartbeats (on fastdp).
    quiet: HashSet<u32>,
}

impl Kernel {
    fn apply(&mut self, op: Op) {
        match op {
            Op::VxlanMac { mac, ip: Some(ip) } => {
                self.vxlan_macs.insert(mac, ip);
            }
            Op::VxlanMac { mac, ip: None } => {
                self.vxlan_macs.remove(&mac);
            }
            Op::VxlanFlood { ip, on: true } => {
                self.flood.insert(ip);
            }
            Op::VxlanFlood { ip, on: false } => {
                self.flood.remove(&ip);
            }
            Op::SleevePeer { id, addr, key, .. } => {
                self.sleeve_peers.insert(id, addr);
                self.keys.insert(id, key);
            }
            Op::SleevePeerGone { id } => {
                self.sleeve_peers.remove(&id);
                self.sleeve_macs.retain(|_, p| *p != id);
                self.routes.retain(|d, v| *d != id && *v != id);
                self.bcast.remove(&id);
                self.quiet.remove(&id);
            }
            Op::SleeveQuiet { id, quiet: true } => {
                self.quiet.insert(id);
            }
            Op::SleeveQuiet { id, quiet: false } => {
                self.quiet.remove(&id);
            }
            Op::SleeveRoute { dst, via: Some(v) } => {
                self.routes.insert(dst, v);
            }
            Op::SleeveRoute { dst, via: None } => {
                self.routes.remove(&dst);
            }
            Op::SleeveMac { mac, id: Some(p) } => {
                self.sleeve_macs.insert(mac, p);
            }
            Op::SleeveMac { mac, id: None } => {
                self.sleeve_macs.remove(&mac);
            }
            Op::Broadcast {
                origin,
                hops: Some(h),
            } => {
                self.bcast.insert(origin, h);
            }
            Op::Broadcast { origin, hops: None } => {
                self.bcast.remove(&origin);
            }
        }
    }
}

struct World {
    sim: Sim<PathCore>,
    kernels: Vec<Kernel>,
    /// Host pairs (smaller first) between which VXLAN does not get through.
    blocked: HashSet<(usize, usize)>,
    /// Host pairs (smaller first) whose VXLAN path carries less than the overlay MTU:
    /// heartbeats get through, size probes do not.
    small: HashSet<(usize, usize)>,
    ids: HashMap<u32, usize>,
}

impl World {
    fn new(seed: u64) -> World {
        World::with(seed, false)
    }

    /// With a password when `encrypted`: even peers offer AES-256-GCM and
    /// ChaCha20-Poly1305, odd peers ChaCha20-Poly1305 only.
    fn with(seed: u64, encrypted: bool) -> World {
        let mut runs = 0u64;
        let sim = Sim::new(
            SimConfig {
                seed,
                ..SimConfig::default()
            },
            move |i| {
                runs += 1;
                PathCore::new(PathConfig {
                    me: format!("p{i:04}"),
                    channel: CHANNEL,
                    run: format!("{runs:016x}"),
                    bmac: bmac(i),
                    fastdp: true,
                    encrypted,
                    trusted: Vec::new(),
                    ciphers: if i % 2 == 0 {
                        vec![CipherKind::Aes256Gcm, CipherKind::ChaCha20Poly1305]
                    } else {
                        vec![CipherKind::ChaCha20Poly1305]
                    },
                    mtu: MTU,
                })
            },
        );
        World {
            sim,
            kernels: Vec::new(),
            blocked: HashSet::new(),
            small: HashSet::new(),
            ids: HashMap::new(),
        }
    }

    fn add(&mut self, targets: &[usize]) -> usize {
        let i = self.sim.add_peer(targets);
        self.kernels.push(Kernel::default());
        self.ids.insert(wire::short_id(self.sim.name(i)), i);
        i
    }

    /// Whether frames of `size` get through VXLAN between the two hosts (0: the smallest).
    fn vxlan_carries(&self, a: usize, b: usize, size: u32) -> bool {
        let pair = (a.min(b), a.max(b));
        !self.blocked.contains(&pair)
            && (size < MTU || !self.small.contains(&pair))
            && self.sim.alive(a)
            && self.sim.alive(b)
    }

    /// Whether fastdp serves the pair: frames of the overlay MTU get through.
    fn fastdp_works(&self, a: usize, b: usize) -> bool {
        self.vxlan_carries(a, b, MTU)
    }

    /// Runs `ms` in steps of 100 ms, carrying out every effect after each step.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms / 100 {
            self.sim.run_for(100);
            for i in 0..self.sim.len() {
                for e in self.sim.take_effects(i) {
                    match e {
                        PathEffect::Apply(op) => self.kernels[i].apply(op),
                        PathEffect::Ping { dst, token, size } => {
                            let j = (dst[4] as usize) << 8 | dst[5] as usize;
                            // The kernel sends by the VXLAN entry of that bridge MAC; the
                            // answer has the size of the ping.
                            let to = self.kernels[i].vxlan_macs.get(&dst).copied();
                            if to == Some(ip(j)) && self.vxlan_carries(i, j, size) {
                                let id = wire::short_id(self.sim.name(j));
                                let me = wire::short_id(self.sim.name(i));
                                self.sim.with_app(j, |c, now| c.pinged(now, me, token));
                                if self.sim.app(j).answer_to(me) == Some(bmac(i)) {
                                    self.sim.with_app(i, |c, now| c.pong(now, id, token));
                                }
                            }
                        }
                        PathEffect::Switched { .. } | PathEffect::Path { .. } => {}
                    }
                }
            }
        }
    }

    fn crash(&mut self, i: usize) {
        self.sim.crash(i, true);
    }

    fn restart(&mut self, i: usize) {
        self.sim.restart(i);
        // A restarted router re-creates the sleeve; the VXLAN FDB stays in the kernel.
        let k = &mut self.kernels[i];
        k.sleeve_peers.clear();
        k.routes.clear();
        k.sleeve_macs.clear();
        k.bcast.clear();
        k.quiet.clear();
    }

    /// What each running peer's mesh says: direct neighbours and next hops.
    fn mesh_view(&mut self, i: usize) -> (BTreeSet<usize>, HashMap<usize, usize>) {
        let m = self.sim.mesh(i).expect("running");
        let direct = m
            .neighbours()
            .iter()
            .map(|n| n.name[1..].parse::<usize>().unwrap())
            .collect();
        let hops = m
            .routes()
            .into_iter()
            .map(|(d, h)| {
                (
                    d[1..].parse::<usize>().unwrap(),
                    h[1..].parse::<usize>().unwrap(),
                )
            })
            .collect();
        (direct, hops)
    }

    /// Every running peer's path to every other running peer is what the rules say.
    fn check_paths(&mut self) -> Result<(), String> {
        for i in 0..self.sim.len() {
            if !self.sim.alive(i) {
                continue;
            }
            let (direct, hops) = self.mesh_view(i);
            for (&j, &hop) in &hops {
                let name = self.sim.name(j).to_string();
                let want = if direct.contains(&j) {
                    if self.fastdp_works(i, j) {
                        Mode::Fastdp(ip(j))
                    } else {
                        Mode::Sleeve(SocketAddr::new(IpAddr::V4(ip(j)), 6783))
                    }
                } else {
                    Mode::Relay(self.sim.name(hop).to_string())
                };
                let got = self.sim.app(i).mode_of(&name).cloned();
                if got.as_ref() != Some(&want) {
                    return Err(format!(
                        "p{i:04} to {name}: path {got:?}, want {want:?} (t={} ms)",
                        self.sim.now()
                    ));
                }
                // The sleeve measures only the direct peers it may carry.
                let quiet = self.kernels[i].quiet.contains(&wire::short_id(&name));
                if quiet != want.is_fastdp() {
                    return Err(format!(
                        "p{i:04} to {name} on {want:?}: sleeve heartbeats quiet {quiet} (t={} ms)",
                        self.sim.now()
                    ));
                }
            }
        }
        Ok(())
    }

    /// A broadcast from `o` through the tables: VXLAN flood entries (never passed on,
    /// the VXLAN port is isolated) and the sleeve's broadcast routes (passed on).
    fn check_broadcast(&mut self, o: usize) -> Result<(), String> {
        let oid = wire::short_id(self.sim.name(o));
        let mut got = vec![0u32; self.sim.len()];
        for &ipv in &self.kernels[o].flood {
            let j = node_of_ip(ipv);
            if self.fastdp_works(o, j) {
                got[j] += 1;
            }
        }
        let mut queue = vec![o];
        let mut steps = 0;
        while let Some(x) = queue.pop() {
            steps += 1;
            if steps > 100_000 {
                return Err(format!("broadcast of p{o:04} loops"));
            }
            let hops = self.kernels[x].bcast.get(&oid).cloned().unwrap_or_default();
            for h in hops {
                let Some(&j) = self.ids.get(&h) else { continue };
                let known = self.kernels[x]
                    .sleeve_peers
                    .get(&h)
                    .is_some_and(|a| a.is_some());
                if known && self.sim.alive(j) {
                    got[j] += 1;
                    queue.push(j);
                }
            }
        }
        let (_, hops) = self.mesh_view(o);
        for (j, n) in got.iter().enumerate() {
            let want = u32::from(hops.contains_key(&j));
            if *n != want {
                return Err(format!(
                    "a broadcast of p{o:04} reaches p{j:04} {n} times, want {want} (t={} ms)",
                    self.sim.now()
                ));
            }
        }
        Ok(())
    }

    fn check_all(&mut self, origins: &[usize]) {
        self.check_paths().unwrap();
        for &o in origins {
            if self.sim.alive(o) {
                self.check_broadcast(o).unwrap();
            }
        }
    }
}

#[test]
fn fastdp_fails_and_heals_peers_leave_and_return_on_sixty_peers() {
    let n = 60;
    let mut w = World::new(7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..n {
        // Each dials up to three earlier peers: several hops across, relays needed.
        w.add(&earlier_targets(i, 3, &mut rng));
    }
    w.sim.run_until_converged(60_000, 500).unwrap();
    w.run(6_000);
    let origins: Vec<usize> = (0..n).step_by(7).collect();
    w.check_all(&origins);
    let relayed = (0..n)
        .filter(|&i| {
            let (d, h) = w.mesh_view(i);
            h.keys().any(|j| !d.contains(j))
        })
        .count();
    assert!(
        relayed > n / 2,
        "the mesh has too few relayed paths ({relayed})"
    );

    // fastdp fails between ten connected pairs: they use the sleeve, both ways.
    let mut pairs = Vec::new();
    for i in (0..n).step_by(6) {
        let (d, _) = w.mesh_view(i);
        if let Some(&j) = d.iter().next() {
            pairs.push((i.min(j), i.max(j)));
        }
    }
    w.blocked.extend(pairs.iter().copied());
    w.run(5_000);
    w.check_all(&origins);
    let on_sleeve = pairs
        .iter()
        .filter(|(a, b)| {
            let name = w.sim.name(*b).to_string();
            matches!(w.sim.app(*a).mode_of(&name), Some(Mode::Sleeve(_)))
        })
        .count();
    assert_eq!(on_sleeve, pairs.len());

    // It heals: back on fastdp after the hysteresis.
    w.blocked.clear();
    w.run(5_000);
    w.check_all(&origins);

    // Five routers stop: their fastdp neighbours keep their VXLAN entries (the grace).
    let gone = [3, 17, 29, 41, 55];
    let mut kept = Vec::new();
    for &g in &gone {
        let (d, _) = w.mesh_view(g);
        kept.extend(d.into_iter().filter(|x| !gone.contains(x)).map(|x| (x, g)));
        w.crash(g);
    }
    w.run(8_000);
    w.sim.run_until_converged(30_000, 500).unwrap();
    w.run(2_000);
    w.check_all(&origins);
    for &(x, g) in &kept {
        let name = w.sim.name(g).to_string();
        assert_eq!(
            w.sim.app(x).mode_of(&name),
            Some(&Mode::Fastdp(ip(g))),
            "p{x:04} keeps the departed p{g:04} on fastdp"
        );
        assert!(w.kernels[x].vxlan_macs.get(&bmac(g)) == Some(&ip(g)));
    }

    // They come back: on fastdp again, broadcasts once.
    for &g in &gone {
        w.restart(g);
    }
    w.sim.run_until_converged(30_000, 500).unwrap();
    w.run(5_000);
    w.check_all(&origins);
    w.check_all(&gone);
}

#[test]
fn a_line_relays_through_the_middle_and_broadcasts_once() {
    let mut w = World::new(3);
    for i in 0..6 {
        let t: Vec<usize> = if i == 0 { vec![] } else { vec![i - 1] };
        w.add(&t);
    }
    w.sim.run_until_converged(20_000, 200).unwrap();
    w.run(3_000);
    w.check_all(&[0, 1, 2, 3, 4, 5]);
    let p1 = w.sim.name(1).to_string();
    let p5 = w.sim.name(5).to_string();
    assert_eq!(w.sim.app(0).mode_of(&p1), Some(&Mode::Fastdp(ip(1))));
    assert_eq!(w.sim.app(0).mode_of(&p5), Some(&Mode::Relay(p1.clone())));
    // p1 passes p0's broadcasts on: no flood entry at p0, the sleeve carries them.
    assert!(w.kernels[0].flood.is_empty());
    // The middle of the line breaks fastdp: p2 to p3 on the sleeve, relays unchanged.
    w.blocked.insert((2, 3));
    w.run(5_000);
    w.check_all(&[0, 1, 2, 3, 4, 5]);
    assert_eq!(w.sim.app(0).mode_of(&p5), Some(&Mode::Relay(p1)));
}

#[test]
fn same_seed_same_tables() {
    let run = || {
        let mut w = World::new(11);
        for i in 0..12 {
            let t: Vec<usize> = if i == 0 { vec![] } else { vec![i / 2] };
            w.add(&t);
        }
        w.run(8_000);
        w.blocked.insert((0, 1));
        w.run(5_000);
        let mut out: Vec<String> = Vec::new();
        for k in &w.kernels {
            let mut f: Vec<_> = k.flood.iter().collect();
            f.sort();
            let mut b: Vec<_> = k.bcast.iter().collect();
            b.sort();
            out.push(format!("{f:?} {b:?}"));
        }
        out
    };
    assert_eq!(run(), run());
}

#[test]
fn each_pair_seals_with_the_cipher_both_offer() {
    let mut w = World::with(13, true);
    for i in 0..8 {
        let t: Vec<usize> = (0..i).collect();
        w.add(&t);
    }
    w.sim.run_until_converged(20_000, 200).unwrap();
    w.run(3_000);
    for i in 0..8 {
        for j in 0..8 {
            if i == j {
                continue;
            }
            let id = wire::short_id(w.sim.name(j));
            let want = if i % 2 == 0 && j % 2 == 0 {
                CipherKind::Aes256Gcm
            } else {
                CipherKind::ChaCha20Poly1305
            };
            match w.kernels[i].keys.get(&id) {
                Some(SleeveKey::Derive { cipher, .. }) => {
                    assert_eq!(*cipher, want, "p{i:04} to p{j:04}")
                }
                other => panic!("p{i:04} to p{j:04}: key {other:?}"),
            }
        }
    }
}

#[test]
fn a_vxlan_path_smaller_than_the_overlay_mtu_moves_to_the_sleeve_and_back() {
    let mut w = World::new(17);
    for i in 0..10 {
        let mut t: Vec<usize> = if i == 0 { vec![] } else { vec![i / 2, i - 1] };
        t.dedup();
        w.add(&t);
    }
    w.sim.run_until_converged(20_000, 200).unwrap();
    w.run(4_000);
    w.check_all(&[0, 5]);
    let mut pairs = Vec::new();
    for i in [0, 3, 6] {
        let (d, _) = w.mesh_view(i);
        let j = *d.iter().next().expect("a neighbour");
        pairs.push((i.min(j), i.max(j)));
    }
    // Heartbeats still answer, frames of the overlay MTU do not: both sides use the sleeve.
    w.small.extend(pairs.iter().copied());
    w.run(5_000);
    w.check_all(&[0, 5]);
    for &(a, b) in &pairs {
        for (x, y) in [(a, b), (b, a)] {
            let name = w.sim.name(y).to_string();
            assert!(
                matches!(w.sim.app(x).mode_of(&name), Some(Mode::Sleeve(_))),
                "p{x:04} to p{y:04} on the sleeve"
            );
        }
    }
    // The path grows again: back on fastdp after the hysteresis.
    w.small.clear();
    w.run(5_000);
    w.check_all(&[0, 5]);
    for &(a, b) in &pairs {
        let name = w.sim.name(b).to_string();
        assert_eq!(w.sim.app(a).mode_of(&name), Some(&Mode::Fastdp(ip(b))));
    }
}

/// A peer lost from the view for a moment (a duplicate connection closed at one end while
/// the other end's view never changed) while the pair was still on the sleeve: the side
/// that lost it forgets its state, and the other side, which saw nothing, would send it
/// again only with its next re-announcement (30 s). The lost side's announcement on the
/// peer's return asks for an answer, and gets one at once.
#[test]
fn a_peer_lost_for_a_moment_sends_its_state_again_at_once() {
    let mut w = World::new(23);
    w.add(&[]);
    w.add(&[0]);
    // fastdp between them does not work yet: they are on the sleeve.
    w.blocked.insert((0, 1));
    w.sim.run_until_converged(10_000, 100).unwrap();
    w.run(3_000);
    w.check_all(&[0, 1]);
    let id0 = wire::short_id(w.sim.name(0));
    assert_eq!(w.sim.app(1).answer_to(id0), Some(bmac(0)));
    // p1 loses p0 for a moment; p0's view does not change.
    let full = w.sim.mesh(1).expect("running").topology_view();
    let mut without = full.clone();
    let p0 = w.sim.name(0).to_string();
    without.peers.retain(|r| r.name != p0);
    for r in &mut without.peers {
        r.children.retain(|c| *c != p0);
    }
    w.sim.with_app(1, |c, now| {
        c.handle_topology(now, &without);
        c.handle_topology(now, &full);
    });
    // fastdp works now: well within the re-announcement period both use it.
    w.blocked.clear();
    w.run(5_000);
    assert_eq!(
        w.sim.app(1).answer_to(id0),
        Some(bmac(0)),
        "p1 has p0's state again"
    );
    w.check_all(&[0, 1]);
    let p1 = w.sim.name(1).to_string();
    assert_eq!(w.sim.app(0).mode_of(&p1), Some(&Mode::Fastdp(ip(1))));
}
