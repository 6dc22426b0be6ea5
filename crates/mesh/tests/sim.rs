//! Deterministic simulation of the mesh: many peers, random connectivity, message loss,
//! partitions that heal, crashes and restarts. Every run is reproducible from its seed.
//!
//! The heavy scenario runs WEFT_SIM_SEEDS seeds (default 3 in release builds, 1 in debug)
//! of WEFT_SIM_PEERS peers (default 200 in release, 100 in debug, where it is ~10x slower):
//! `cargo test --release -p weft-mesh --test sim` is the full run;
//! `WEFT_SIM_SEEDS=20 cargo test --release ...` runs more seeds.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use weft_mesh::sim::{NoApp, Sim, SimConfig};
use weft_mesh::{MeshApp, Millis, TopologyView, Transmit};
use weft_types::knob;

/// Random connectivity: each peer names one earlier peer, some name a second.
fn random_mesh<A: MeshApp>(sim: &mut Sim<A>, n: usize, rng: &mut rand::rngs::StdRng) {
    sim.add_random_peers(n, rng, None);
}

#[test]
fn three_peers_each_naming_one_converge() {
    let mut sim = Sim::new(SimConfig::default(), |_| NoApp);
    sim.add_peer(&[1]);
    sim.add_peer(&[2]);
    sim.add_peer(&[0]);
    let t = sim.run_until_converged(10_000, 50).unwrap();
    assert!(t < 2_000, "took {t} ms");
    let (peers, edges) = sim.mesh(0).unwrap().view();
    assert_eq!(peers.len(), 3);
    assert_eq!(edges.len(), 3);
}

#[test]
fn discovery_builds_a_full_mesh_from_one_named_peer() {
    let cfg = SimConfig {
        discovery: true,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(cfg, |_| NoApp);
    sim.add_peer(&[]);
    for _ in 1..20 {
        sim.add_peer(&[0]);
    }
    sim.run_for(5_000);
    sim.run_until_converged(20_000, 100).unwrap();
    for i in 0..20 {
        assert_eq!(sim.mesh(i).unwrap().neighbours().len(), 19, "peer {i}");
    }
}

#[test]
fn conn_limit_bounds_discovered_connections() {
    let cfg = SimConfig {
        discovery: true,
        conn_limit: 5,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(cfg, |_| NoApp);
    sim.add_peer(&[]);
    for i in 1..30 {
        sim.add_peer(&[i - 1]);
    }
    sim.run_for(10_000);
    sim.run_until_converged(20_000, 100).unwrap();
    for i in 0..30 {
        let n = sim.mesh(i).unwrap().neighbours().len();
        // Explicit targets and inbound connections may exceed the limit by the explicit ones.
        assert!(n <= 7, "peer {i} has {n} connections");
    }
    assert_eq!(sim.mesh(0).unwrap().view().0.len(), 30);
}

/// Runs `sim` until its views agree (within `limit` ms, checking every `step` ms), failing
/// with which `phase` of the scenario did not converge; how long it took.
fn converge<A: MeshApp>(sim: &mut Sim<A>, seed: u64, phase: &str, limit: u64, step: u64) -> u64 {
    sim.run_until_converged(limit, step)
        .unwrap_or_else(|e| panic!("seed {seed}: {phase} did not converge: {e}"))
}

/// The heavy scenario: join, loss, partition and heal, crashes (reset and silent),
/// restarts; every phase must converge.
fn chaos(seed: u64, n: usize) {
    let cfg = SimConfig {
        seed,
        loss: 0.01,
        ..SimConfig::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xabcdef);
    let mut sim = Sim::new(cfg, |_| NoApp);
    random_mesh(&mut sim, n, &mut rng);
    let t = converge(&mut sim, seed, "initial join", 60_000, 250);
    eprintln!("seed {seed}: {n} peers joined in {t} ms");
    assert_eq!(
        sim.components(),
        1,
        "seed {seed}: the mesh is one component"
    );

    // Partition into two halves, then heal.
    let split: Vec<u32> = (0..n).map(|_| rng.random_range(0..2)).collect();
    sim.partition(move |i| split[i]);
    sim.run_for(8_000);
    let t = converge(&mut sim, seed, "partition", 60_000, 250);
    eprintln!("seed {seed}: partitioned views converged {t} ms after detection");
    sim.heal();
    sim.run_for(2_000);
    let t = converge(&mut sim, seed, "heal", 90_000, 250);
    eprintln!("seed {seed}: healed in {t} ms");
    assert_eq!(
        sim.components(),
        1,
        "seed {seed}: healed into one component"
    );

    // Crash a few peers, half with socket resets, half silently.
    let victims: Vec<usize> = (0..5).map(|_| rng.random_range(0..n)).collect();
    for (k, v) in victims.iter().enumerate() {
        sim.crash(*v, k % 2 == 0);
    }
    let t = converge(&mut sim, seed, "crash", 30_000, 100);
    assert!(t <= 10_000, "seed {seed}: crash noticed after {t} ms");
    eprintln!("seed {seed}: crashes noticed and converged in {t} ms");
    for v in &victims {
        sim.restart(*v);
    }
    sim.run_for(1_000);
    let t = converge(&mut sim, seed, "restart", 60_000, 250);
    eprintln!("seed {seed}: restarted peers rejoined in {t} ms");
    let alive = sim.alive_names().len();
    let (peers, _) = sim.mesh(victims[0]).unwrap().view();
    assert_eq!(
        peers.len(),
        alive,
        "seed {seed}: a restarted peer sees the whole mesh"
    );
}

#[test]
fn chaos_many_peers_many_seeds() {
    let release = !cfg!(debug_assertions);
    let seeds = knob("WEFT_SIM_SEEDS", if release { 3 } else { 1 });
    let n: usize = knob("WEFT_SIM_PEERS", if release { 200 } else { 100 });
    for seed in 0..seeds {
        chaos(seed + 1, n);
    }
}

/// Counts payloads per (channel, origin).
#[derive(Default)]
struct Counter {
    got: HashMap<(u16, String), u32>,
}

impl MeshApp for Counter {
    type Effect = ();
    fn handle_message(&mut self, _: Millis, channel: u16, from: &str, _: &[u8]) {
        *self.got.entry((channel, from.to_string())).or_default() += 1;
    }
    fn handle_topology(&mut self, _: Millis, _: &TopologyView) {}
}

#[test]
fn unicast_and_broadcast_reach_each_peer_exactly_once() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut sim = Sim::new(SimConfig::default(), |_| Counter::default());
    random_mesh(&mut sim, 60, &mut rng);
    sim.run_until_converged(30_000, 100).unwrap();
    let dst = sim.name(37).to_string();
    sim.app_send(
        5,
        Transmit::To {
            channel: 7,
            dst,
            payload: b"hi".to_vec(),
        },
    );
    sim.app_send(
        9,
        Transmit::Broadcast {
            channel: 8,
            payload: b"all".to_vec(),
        },
    );
    sim.run_for(2_000);
    let src5 = sim.name(5).to_string();
    let src9 = sim.name(9).to_string();
    assert_eq!(sim.app(37).got.get(&(7, src5.clone())), Some(&1));
    for i in 0..60 {
        let want = if i == 9 { None } else { Some(&1) };
        assert_eq!(sim.app(i).got.get(&(8, src9.clone())), want, "peer {i}");
        if i != 37 {
            assert_eq!(sim.app(i).got.get(&(7, src5.clone())), None);
        }
    }
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut sim = Sim::new(
            SimConfig {
                seed,
                loss: 0.02,
                ..SimConfig::default()
            },
            |_| NoApp,
        );
        random_mesh(&mut sim, 30, &mut rng);
        sim.run_for(10_000);
        sim.crash(3, true);
        sim.crash(7, false);
        sim.run_for(8_000);
        sim.restart(3);
        sim.run_for(5_000);
        (sim.total_traffic().bytes, sim.now())
    };
    assert_eq!(run(5), run(5));
}
