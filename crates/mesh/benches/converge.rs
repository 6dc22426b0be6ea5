//! Convergence cost of the mesh in the deterministic simulation: for meshes of 10, 100
//! and 1000 peers (random connectivity: each peer names one or two earlier ones), the
//! simulated time and the bytes sent per peer until every peer's view is right again
//! after one peer joins and after one peer is killed (its sockets reset) or cut off
//! (silent: noticed by heartbeats). Run: `cargo bench -p weft-mesh --bench converge`
//! (WEFT_BENCH_SIZES=10,100 to choose sizes).

use rand::SeedableRng;
use weft_mesh::sim::{NoApp, Sim, SimConfig};

fn build(n: usize, seed: u64) -> Sim<NoApp> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sim = Sim::new(
        SimConfig {
            seed,
            ..SimConfig::default()
        },
        |_| NoApp,
    );
    // Peers arrive in waves of 50, as a cluster that is rolled out.
    sim.add_random_peers(n, &mut rng, Some(50));
    sim.run_until_converged(600_000, 100)
        .unwrap_or_else(|e| panic!("{n} peers did not converge: {e}"));
    sim.run_for(3_000);
    sim
}

/// Runs until converged; returns (ms, bytes per running peer, messages per running peer).
fn measure(sim: &mut Sim<NoApp>, what: &str) -> (u64, f64, f64) {
    let before = sim.total_traffic();
    let t = sim
        .run_until_converged(120_000, 10)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let after = sim.total_traffic();
    let alive = sim.alive_names().len() as f64;
    (
        t,
        (after.bytes - before.bytes) as f64 / alive,
        (after.messages - before.messages) as f64 / alive,
    )
}

fn main() {
    let sizes: Vec<usize> = std::env::var("WEFT_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000]);
    println!("mesh convergence in the simulation (latency 1-20 ms, heartbeat 1 s, dead after 5 s)");
    println!(
        "{:>6} {:>10} | {:>14} {:>12} {:>10} | {:>14} {:>12} {:>10} | {:>14} {:>12} {:>10} | {:>9}",
        "peers",
        "build s",
        "join ms",
        "join B/peer",
        "msgs/peer",
        "kill ms",
        "kill B/peer",
        "msgs/peer",
        "cut ms",
        "cut B/peer",
        "msgs/peer",
        "idle B/s/p"
    );
    for n in sizes {
        let started = std::time::Instant::now();
        let mut sim = build(n, 7);
        let build_s = started.elapsed().as_secs_f64();
        // Idle cost: heartbeats and digest hashes.
        let before = sim.total_traffic();
        sim.run_for(10_000);
        let idle = (sim.total_traffic().bytes - before.bytes) as f64 / n as f64 / 10.0;
        let target = n / 2;
        sim.add_peer(&[target]);
        let join = measure(&mut sim, "join");
        sim.run_for(3_000);
        sim.crash(n / 3, true);
        let kill = measure(&mut sim, "kill");
        sim.run_for(3_000);
        sim.crash(n / 4, false);
        let cut = measure(&mut sim, "cut");
        println!(
            "{n:>6} {build_s:>10.1} | {:>14} {:>12.0} {:>10.1} | {:>14} {:>12.0} {:>10.1} | {:>14} {:>12.0} {:>10.1} | {idle:>9.0}",
            join.0, join.1, join.2, kill.0, kill.1, kill.2, cut.0, cut.1, cut.2
        );
    }
}
