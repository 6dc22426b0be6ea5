//! IPAM core figures: allocations per second on one peer, and what an allocation that needs
//! a space request costs (handle calls, messages, simulated time).
//! Run: `cargo bench -p weft-ipam` (prints tables; nothing is asserted).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::Sim;
use weft_ipam::{Action, Allocator, Event, InitMode, IpamConfig, IpamEffect, Reply};

fn cfg(range: &str, init: InitMode) -> IpamConfig {
    IpamConfig::new(range.parse().unwrap(), init)
}

/// Allocate `n` addresses on a lone peer, `batch` requests per durable write (the router
/// acknowledges each persist at once; `encode` also encodes each persisted state, which the
/// router writes before fsync). Returns (allocations per second, state bytes at the end).
fn one_peer(n: u64, live_before: u64, batch: u64, encode: bool) -> (f64, u64) {
    let mut a = Allocator::new(
        "a".into(),
        cfg("10.32.0.0/12", InitMode::Seed(vec!["a".into()])),
        None,
    )
    .unwrap();
    let mut id = 0;
    let mut bytes = 0u64;
    let run = |a: &mut Allocator, count: u64, prefix: &str, id: &mut u64, bytes: &mut u64| {
        let mut left = count;
        while left > 0 {
            let k = left.min(batch);
            left -= k;
            let mut acts = Vec::new();
            for _ in 0..k {
                *id += 1;
                acts.extend(a.handle(
                    *id,
                    Event::Allocate {
                        id: *id,
                        owner: format!("{prefix}{id}"),
                        subnet: None,
                    },
                ));
            }
            let mut replies = 0;
            while let Some(act) = acts.pop() {
                match act {
                    Action::Effect(IpamEffect::Persist { state, token }) => {
                        if encode {
                            *bytes = state.encode().len() as u64;
                        }
                        acts.extend(a.handle(*id, Event::Persisted { token }));
                    }
                    Action::Effect(IpamEffect::Reply {
                        result: Ok(Reply::Allocated(_)),
                        ..
                    }) => replies += 1,
                    Action::Effect(IpamEffect::Reply { result, .. }) => {
                        panic!("allocation failed: {result:?}")
                    }
                    // The seed ring's first gossip; a lone peer has nobody to send it to.
                    Action::Transmit(_) => {}
                }
            }
            assert_eq!(replies, k);
        }
    };
    run(&mut a, live_before, "warm", &mut id, &mut bytes);
    let t = Instant::now();
    run(&mut a, n, "c", &mut id, &mut bytes);
    let secs = t.elapsed().as_secs_f64();
    (n as f64 / secs, bytes)
}

/// Peer b has no space; it allocates once. Returns (simulated ms, handle calls, messages,
/// CPU µs, simulated ms of a local allocation on peer a).
fn space_request(latency: u64, persist: u64) -> (u64, u64, u64, f64, u64) {
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
    let (steps, msgs) = (sim.steps - steps0, sim.messages - msgs0);
    let id = sim.allocate(0, "c2", None);
    let local = sim
        .run_until(10_000, |s| s.replies.contains_key(&id))
        .expect("answered");
    (took, steps, msgs, wall, local)
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

/// `n` peers (seed = the first), each allocating `per` addresses, then idle for 10 s:
/// messages delivered per allocation, and simulated ms until every request is answered.
fn many_peers(n: usize, per: usize) -> (f64, u64) {
    let names: Vec<String> = (0..n).map(|i| format!("p{i:03}")).collect();
    let peers = names
        .iter()
        .map(|p| {
            let mut c = cfg("10.32.0.0/12", InitMode::Seed(vec!["p000".into()]));
            c.gossip_ms = 10_000;
            (p.clone(), c)
        })
        .collect();
    let mut sim = Sim::new(1, peers);
    sim.latency = (1, 5);
    sim.persist_delay = (1, 2);
    let mut ids = Vec::new();
    for k in 0..per {
        for i in 0..n {
            ids.push(sim.allocate(i, &format!("c{i}-{k}"), None));
        }
    }
    let took = sim
        .run_until(60_000, |s| ids.iter().all(|id| s.replies.contains_key(id)))
        .expect("all answered");
    sim.run(10_000);
    let ok = ids
        .iter()
        .filter(|id| matches!(sim.replies[*id], Ok(Reply::Allocated(_))))
        .count();
    assert_eq!(ok, ids.len());
    (sim.messages as f64 / ids.len() as f64, took)
}

fn main() {
    println!(
        "## Allocations per second on one peer (core only; the router adds one fsync per persist)"
    );
    println!("| live before | measured | requests per persist | allocs/s | allocs/s + encode state | persists | state bytes |");
    println!("|---|---|---|---|---|---|---|");
    for (warm, n) in [(0u64, 4_000u64), (1_000, 4_000), (10_000, 2_000)] {
        for batch in [1u64, 64] {
            let (plain, _) = one_peer(n, warm, batch, false);
            let (enc, bytes) = one_peer(n, warm, batch, true);
            println!(
                "| {warm} | {n} | {batch} | {plain:.0} | {enc:.0} | {} | {bytes} |",
                n.div_ceil(batch)
            );
        }
    }
    println!();
    println!("## An allocation that needs a space request (peer b owns nothing, asks a)");
    println!("| one-way latency ms | persist ms | simulated ms | handle calls | messages | CPU µs | local allocation ms |");
    println!("|---|---|---|---|---|---|---|");
    for (lat, p) in [(1u64, 0u64), (1, 5), (10, 0), (10, 5)] {
        let (ms, steps, msgs, wall, local) = space_request(lat, p);
        println!("| {lat} | {p} | {ms} | {steps} | {msgs} | {wall:.0} | {local} |");
    }
    println!("(a space request costs 2 one-way latencies + 2 persists: the donor's, then ours)");
    println!();
    println!(
        "## Many peers: one seed owns the range, every peer allocates (space requests, gossip)"
    );
    println!("| peers | allocations | messages per allocation (incl. 10 s idle gossip) | simulated ms until all answered |");
    println!("|---|---|---|---|");
    for (n, per) in [(5usize, 20usize), (20, 10), (50, 4)] {
        let (m, took) = many_peers(n, per);
        println!("| {n} | {} | {m:.1} | {took} |", n * per);
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
