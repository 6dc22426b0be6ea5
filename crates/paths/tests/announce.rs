//! The state gossip between two path cores, driven by hand: a peer that asks for our state
//! (`reply`) is answered even when it sent nothing new, at most once per `REPLY_MIN_MS`,
//! and a reachable peer whose state we lack is asked again until it answers. The fastdp
//! heartbeats a peer gets follow what its state says it understands.

use std::net::{Ipv4Addr, SocketAddr};

use weft_mesh::{MeshApp, Reachable, TopologyView, Transmit};
use weft_paths::{
    wire, PathConfig, PathCore, PathEffect, StateMsg, PING_MS, REPLY_MIN_MS, TICK_MS, TOKEN_BEAT,
    TOKEN_PROBE,
};
use weft_types::CipherKind;

const CHANNEL: u16 = 3;

fn core(me: &str) -> PathCore {
    PathCore::new(PathConfig {
        me: me.into(),
        channel: CHANNEL,
        run: format!("run-{me}"),
        bmac: [2, 0, 0, 0, 0, me.len() as u8],
        fastdp: true,
        encrypted: false,
        trusted: Vec::new(),
        ciphers: vec![CipherKind::ChaCha20Poly1305],
        mtu: 1450,
    })
}

/// `me` and `other`, directly connected.
fn view(me: &str, other: &str) -> TopologyView {
    let r = |n: &str, direct: bool| Reachable {
        name: n.into(),
        nickname: n.into(),
        listen_port: 6783,
        direct: direct.then(|| SocketAddr::new(Ipv4Addr::new(10, 0, 0, 2).into(), 6783)),
        next_hop: direct.then(|| n.to_string()),
        children: Vec::new(),
        relays_ours: false,
    };
    let mut peers = vec![r(me, false), r(other, true)];
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    TopologyView {
        me: me.into(),
        peers,
    }
}

/// The state messages `c` sends to `dst` alone, decoded.
fn sent_to(c: &mut PathCore, dst: &str) -> Vec<StateMsg> {
    std::iter::from_fn(|| c.poll_transmit())
        .filter_map(|t| match t {
            Transmit::To {
                dst: d, payload, ..
            } if d == dst => StateMsg::decode(&payload),
            _ => None,
        })
        .collect()
}

fn state_of(name: &str, reply: bool) -> Vec<u8> {
    state_beats(name, reply, wire::BEATS_VERSION)
}

fn state_beats(name: &str, reply: bool, beats: u32) -> Vec<u8> {
    StateMsg {
        v: wire::STATE_VERSION,
        id: wire::short_id(name),
        run: format!("run-{name}"),
        seq: 1,
        bmac: "02:00:00:00:00:09".into(),
        macs: Vec::new(),
        ciphers: Vec::new(),
        reply,
        beats,
    }
    .encode()
}

#[test]
fn a_request_for_our_state_is_answered_once_per_period() {
    let mut a = core("a");
    a.handle_topology(0, &view("a", "b"));
    // b just became reachable and we lack its state: we send ours and ask for its.
    let first = sent_to(&mut a, "b");
    assert_eq!(first.len(), 1);
    assert!(first[0].reply, "a asks b for its state");
    // b's state arrives (new): a answers it once (a new run of b), without asking.
    a.handle_message(10, CHANNEL, "b", &state_of("b", false));
    let answer = sent_to(&mut a, "b");
    assert_eq!(answer.len(), 1);
    assert!(!answer[0].reply);
    // b lost ours and asks again, three times within the period: one answer.
    for t in [100, 200, 300] {
        a.handle_message(t, CHANNEL, "b", &state_of("b", true));
    }
    let answers = sent_to(&mut a, "b");
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(!answers[0].reply, "an answer asks for nothing");
    // The same state without the request: a duplicate, no answer.
    a.handle_message(400, CHANNEL, "b", &state_of("b", false));
    assert!(sent_to(&mut a, "b").is_empty());
    // After the period, a new request is answered again.
    a.handle_message(100 + REPLY_MIN_MS, CHANNEL, "b", &state_of("b", true));
    assert_eq!(sent_to(&mut a, "b").len(), 1);
}

#[test]
fn a_peer_whose_state_never_comes_is_asked_again_but_not_flooded() {
    let mut a = core("a");
    a.handle_topology(0, &view("a", "b"));
    assert_eq!(sent_to(&mut a, "b").len(), 1);
    // Ten seconds without b's state: asked every 2 * REPLY_MIN_MS, no more.
    let mut asks = 0;
    let mut now = 0;
    while now < 10_000 {
        now += TICK_MS;
        a.handle_timeout(now);
        let sent = sent_to(&mut a, "b");
        assert!(sent.iter().all(|m| m.reply));
        asks += sent.len();
    }
    assert_eq!(asks as u64, 10_000 / (2 * REPLY_MIN_MS));
    // Once it has come, no more requests.
    a.handle_message(now, CHANNEL, "b", &state_of("b", false));
    let _ = sent_to(&mut a, "b");
    for _ in 0..40 {
        now += TICK_MS;
        a.handle_timeout(now);
        assert!(sent_to(&mut a, "b").is_empty());
    }
}

/// The (token, size) of every fastdp heartbeat `c` asks for.
fn pings(c: &mut PathCore) -> Vec<(u64, u32)> {
    while c.poll_transmit().is_some() {}
    std::iter::from_fn(|| c.poll_effect())
        .filter_map(|e| match e {
            PathEffect::Ping { token, size, .. } => Some((token, size)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_that_knows_it_gets_one_frame_per_period_an_older_one_two() {
    // The smaller id of a pair pings.
    let (a, b) = if wire::short_id("a") < wire::short_id("b") {
        ("a", "b")
    } else {
        ("b", "a")
    };
    for (beats, want) in [
        (wire::BEATS_VERSION, vec![(TOKEN_PROBE | TOKEN_BEAT, 1450)]),
        (0, vec![(0, 0), (TOKEN_PROBE, 1450)]),
    ] {
        let mut c = core(a);
        c.handle_topology(0, &view(a, b));
        c.handle_message(0, CHANNEL, b, &state_beats(b, false, beats));
        let _ = pings(&mut c);
        let mut now = 0;
        let mut seen = Vec::new();
        while now < 10 * PING_MS {
            now += TICK_MS;
            c.handle_timeout(now);
            seen.extend(pings(&mut c));
        }
        // No answer yet: the verdict is 0 in every heartbeat, one round per period (the
        // first at once, then on whole periods).
        let rounds = seen.len() / want.len();
        assert_eq!(rounds, 11, "beats {beats}: {seen:?}");
        assert!(
            seen.chunks(want.len()).all(|r| r == want),
            "beats {beats}: {seen:?}"
        );
        // The answers echo the tokens; an answer to the one frame counts for the
        // heartbeat and the size probe alike.
        for (token, _) in &want {
            c.pong(now, wire::short_id(b), *token);
        }
        now += PING_MS;
        c.handle_timeout(now);
        let next = pings(&mut c);
        assert_eq!(
            next[0].0 & 1,
            1,
            "beats {beats}: the verdict says the answers arrive"
        );
    }
}
