//! The path core's own cost on a full mesh of N simulated peers (default 1000; set
//! `WEFT_BENCH_PEERS=100,1000`): time per idle heartbeat period (one tick that checks every
//! peer and asks for its heartbeats, plus the N pongs that answer them), per pong, and for
//! one peer leaving and coming back (a topology change). No mesh and no kernel: the core
//! alone, as the router's driver runs it.
//!
//!     cargo bench -p weft-paths --bench idle

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use weft_mesh::{MeshApp, Reachable, TopologyView};
use weft_paths::{wire, PathConfig, PathCore, StateMsg, TICK_MS, TOKEN_BEAT, TOKEN_PROBE};

fn name(i: usize) -> String {
    format!("p{i:04}")
}

/// A full mesh seen from peer 0: everyone direct, our tree a star.
fn view(n: usize, without: Option<usize>) -> TopologyView {
    let peers = (0..n)
        .filter(|&i| Some(i) != without)
        .map(|i| Reachable {
            name: name(i),
            nickname: name(i),
            listen_port: 6783,
            direct: (i != 0).then(|| {
                SocketAddr::new(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8).into(), 6783)
            }),
            next_hop: (i != 0).then(|| name(i)),
            children: if i == 0 {
                (1..n).filter(|&j| Some(j) != without).map(name).collect()
            } else {
                Vec::new()
            },
            relays_ours: false,
        })
        .collect();
    TopologyView { me: name(0), peers }
}

fn drain(c: &mut PathCore) -> usize {
    while c.poll_transmit().is_some() {}
    std::iter::from_fn(|| c.poll_effect()).count()
}

fn run(n: usize) {
    let mut c = PathCore::new(PathConfig {
        me: name(0),
        channel: 3,
        run: "00".into(),
        bmac: [2, 0, 0, 0, 0, 0],
        fastdp: true,
        encrypted: false,
        trusted: Vec::new(),
        ciphers: vec![weft_types::CipherKind::ChaCha20Poly1305],
        // With size probes, as the router runs it: to peers that announce the form (all
        // here) the size probe is the heartbeat, one effect per pinged peer and period.
        mtu: 1450,
    });
    let mut now = 0;
    c.handle_topology(now, &view(n, None));
    for i in 1..n {
        let m = StateMsg {
            v: wire::STATE_VERSION,
            id: wire::short_id(&name(i)),
            run: format!("{i:x}"),
            seq: 1,
            bmac: wire::fmt_mac(&[2, 0, 0, 0, (i >> 8) as u8, i as u8]),
            macs: vec![wire::fmt_mac(&[2, 1, 0, 0, (i >> 8) as u8, i as u8])],
            ciphers: Vec::new(),
            reply: false,
            beats: wire::BEATS_VERSION,
        };
        c.handle_message(now, 3, &name(i), &m.encode());
    }
    let ids: Vec<u32> = (1..n).map(|i| wire::short_id(&name(i))).collect();
    // Settle: everyone answers, all on fastdp.
    for _ in 0..4 {
        now += TICK_MS;
        c.handle_timeout(now);
        for id in &ids {
            if *id > c.id() {
                c.pong(now, *id, TOKEN_PROBE | TOKEN_BEAT);
            } else {
                c.pinged(now, *id, TOKEN_PROBE | TOKEN_BEAT | 1);
            }
        }
        drain(&mut c);
    }
    let rounds = 200;
    let (mut tick_ns, mut pong_ns, mut effects) = (0u128, 0u128, 0usize);
    for _ in 0..rounds {
        now += TICK_MS;
        let t = Instant::now();
        c.handle_timeout(now);
        effects += drain(&mut c);
        tick_ns += t.elapsed().as_nanos();
        let t = Instant::now();
        for id in &ids {
            if *id > c.id() {
                c.pong(now, *id, TOKEN_PROBE | TOKEN_BEAT);
            } else {
                c.pinged(now, *id, TOKEN_PROBE | TOKEN_BEAT | 1);
            }
        }
        effects += drain(&mut c);
        pong_ns += t.elapsed().as_nanos();
    }
    let pings = effects;
    let t = Instant::now();
    c.handle_topology(now, &view(n, Some(n / 2)));
    let leave_ops = drain(&mut c);
    let leave = t.elapsed();
    let t = Instant::now();
    c.handle_topology(now, &view(n, None));
    let back_ops = drain(&mut c);
    let back = t.elapsed();
    let period_us = (tick_ns + pong_ns) as f64 / rounds as f64 / 1000.0;
    println!(
        "{n:>6} peers: idle heartbeat period {period_us:>8.1} µs ({:.3} % of a core at one period per {TICK_MS} ms; tick {:.1} µs, {:.0} ns per heartbeat, {} pings per period), \
         a peer leaves {:.1} µs ({leave_ops} effects), comes back {:.1} µs ({back_ops} effects)",
        period_us / (TICK_MS as f64 * 1000.0) * 100.0,
        tick_ns as f64 / rounds as f64 / 1000.0,
        pong_ns as f64 / rounds as f64 / (n - 1) as f64,
        pings / rounds,
        leave.as_secs_f64() * 1e6,
        back.as_secs_f64() * 1e6,
    );
    assert!(matches!(
        c.mode_of(&name(1)),
        Some(weft_paths::Mode::Fastdp(_))
    ));
}

fn main() {
    let sizes = std::env::var("WEFT_BENCH_PEERS").unwrap_or_else(|_| "25,100,1000".into());
    for n in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        run(n);
    }
}
