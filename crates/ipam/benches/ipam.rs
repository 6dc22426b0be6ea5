//! IPAM core figures: allocations per second on one peer, and what an allocation that needs
//! a space request costs (handle calls, messages, simulated time).
//! Run: `cargo bench -p weft-ipam` (prints tables; nothing is asserted).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::Sim;
use weft_ipam::{Action, Allocator, Event, InitMode, IpamConfig, Reply};

fn cfg(range: &str, init: InitMode) -> IpamConfig {
    IpamConfig::new(range.parse().unwrap(), init)
}

/// Allocate `n` addresses on a lone peer, acknowledging each persist at once.
/// `encode` also encodes each persisted state (what the router writes before fsync).
fn one_peer(n: u64, live_before: u64, encode: bool) -> (f64, u64) {
    let mut a = Allocator::new(
        "a".into(),
        cfg("10.32.0.0/12", InitMode::Seed(vec!["a".into()])),
        None,
    )
    .unwrap();
    let mut id = 0;
    let mut bytes = 0u64;
    let mut alloc = |a: &mut Allocator, id: u64, owner: String, bytes: &mut u64| {
        let acts = a.handle(
            id,
            Event::Allocate {
                id,
                owner,
                subnet: None,
            },
        );
        for act in acts {
            if let Action::Persist { state, token } = act {
                if encode {
                    *bytes = state.encode().len() as u64;
                }
                let out = a.handle(id, Event::Persisted { token });
                assert!(out.iter().any(|x| matches!(
                    x,
                    Action::Reply {
                        result: Ok(Reply::Allocated(_)),
                        ..
                    }
                )));
            }
        }
    };
    for _ in 0..live_before {
        id += 1;
        alloc(&mut a, id, format!("warm{id}"), &mut bytes);
    }
    let t = Instant::now();
    for _ in 0..n {
        id += 1;
        alloc(&mut a, id, format!("c{id}"), &mut bytes);
    }
    let secs = t.elapsed().as_secs_f64();
    (n as f64 / secs, bytes)
}

/// Peer b has no space; it allocates once. Returns (simulated ms, handle calls, messages).
fn space_request(latency: u64, persist: u64) -> (u64, u64, u64, f64) {
    let peers = ["a", "b"]
        .iter()
        .map(|p| {
            (
                p.to_string(),
                cfg("10.32.0.0/12", InitMode::Seed(vec!["a".into()])),
            )
        })
        .collect();
    let mut sim = Sim::new(1, peers);
    sim.latency = (latency, latency);
    sim.persist_delay = (persist, persist);
    sim.tick_ms = 1_000_000; // no ticks inside the measured window
                             // Both peers have the ring before we measure.
    let id = sim.request(0, "", |id| Event::Prime { id });
    sim.run_until(10_000, |s| s.replies.contains_key(&id));
    let id = sim.request(1, "", |id| Event::Prime { id });
    sim.run_until(10_000, |s| s.replies.contains_key(&id));
    let (steps0, msgs0) = (sim.steps, sim.messages);
    let wall = Instant::now();
    let id = sim.allocate(1, "c1", None);
    let took = sim
        .run_until(10_000, |s| s.replies.contains_key(&id))
        .expect("answered");
    let wall = wall.elapsed().as_secs_f64() * 1e6;
    assert!(matches!(sim.replies[&id], Ok(Reply::Allocated(_))));
    (took, sim.steps - steps0, sim.messages - msgs0, wall)
}

/// Time for `n` consensus peers to create the ring after one asks (simulated ms).
fn consensus(n: usize, latency: u64, persist: u64) -> (u64, u64) {
    let peers = (0..n)
        .map(|i| {
            (
                format!("p{i}"),
                cfg("10.32.0.0/12", InitMode::Consensus(n as u32)),
            )
        })
        .collect();
    let mut sim = Sim::new(1, peers);
    sim.latency = (latency, latency);
    sim.persist_delay = (persist, persist);
    let msgs0 = sim.messages;
    let id = sim.allocate(n - 1, "c1", None);
    let took = sim
        .run_until(60_000, |s| s.replies.contains_key(&id))
        .expect("answered");
    (took, sim.messages - msgs0)
}

fn main() {
    println!("## Allocations per second on one peer (core only; fsync is the router's)");
    println!("| live allocations before | measured | allocs/s (ack at once) | allocs/s (+ encode state) | state bytes |");
    println!("|---|---|---|---|---|");
    for (warm, n) in [(0u64, 2_000u64), (1_000, 2_000), (10_000, 1_000)] {
        let (plain, _) = one_peer(n, warm, false);
        let (enc, bytes) = one_peer(n, warm, true);
        println!("| {warm} | {n} | {plain:.0} | {enc:.0} | {bytes} |");
    }
    println!();
    println!("## An allocation that needs a space request (peer b owns nothing, asks a)");
    println!("| one-way latency ms | persist ms | simulated ms | handle calls | messages | CPU µs | local allocation ms | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for (lat, p) in [(1u64, 0u64), (1, 5), (10, 0), (10, 5)] {
        let (ms, steps, msgs, wall) = space_request(lat, p);
        // A local allocation costs one persist.
        let local = p.max(1);
        println!(
            "| {lat} | {p} | {ms} | {steps} | {msgs} | {wall:.0} | {local} | {:.1}x |",
            ms as f64 / local as f64
        );
    }
    println!();
    println!("## Consensus: time until the first allocation is answered (retry 2 s)");
    println!("| peers | one-way latency ms | persist ms | simulated ms | messages |");
    println!("|---|---|---|---|---|");
    for (n, lat, p) in [(3usize, 1u64, 0u64), (3, 10, 5), (5, 10, 5), (9, 10, 5)] {
        let (ms, msgs) = consensus(n, lat, p);
        println!("| {n} | {lat} | {p} | {ms} | {msgs} |");
    }
}
