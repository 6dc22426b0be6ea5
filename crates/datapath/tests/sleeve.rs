//! End-to-end tests of the sleeve: hosts are network namespaces joined by veth underlays,
//! each with a bridge, a sleeve TAP and a "container" namespace on the bridge. Real kernel,
//! real TAP, real UDP; every namespace is removed on drop, also when a test fails.

// The namespace harness shared by every test and bench that makes namespaces.
use weft_testkit::netns::{in_netns, run, succeeds, underlay, Namespaces};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use weft_datapath::sleeve::{CipherKind, PeerConfig, PeerId, Sleeve, SleeveConfig, SleeveError};

fn start(ns: &str, id: u32, listen: &str) -> Sleeve {
    let mut cfg = SleeveConfig::new(PeerId(id), "sleeve0");
    cfg.listen = listen.parse().unwrap();
    cfg.bridge = Some("weft".into());
    cfg.heartbeat_interval = Duration::from_millis(200);
    in_netns(ns, move || Sleeve::start(cfg)).expect("sleeve starts")
}

fn peer(id: u32, addr: Option<&str>, key: Option<[u8; 32]>) -> PeerConfig {
    PeerConfig {
        id: PeerId(id),
        name: format!("peer{id}"),
        addr: addr.map(|a| a.parse::<SocketAddr>().unwrap()),
        key,
        cipher: CipherKind::supported()[0],
    }
}

/// Waits (bounded) until `s` has heard from `id`.
fn wait_heard(s: &Sleeve, id: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = s.peer_stats(PeerId(id)).expect("peer is configured");
        if st.last_heard.is_some() && st.rtt.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sleeve {:?} never heard a heartbeat answer from peer {id}: {st:?}",
            s.local_id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ping(from: &str, to_ip: &str) -> bool {
    succeeds(&[
        "ip", "netns", "exec", from, "ping", "-c", "2", "-i", "0.2", "-W", "2", to_ip,
    ])
}

/// Sends `len` pseudo-random bytes over TCP from `client_ns` to `server_ip` in
/// `server_ns` and checks that exactly those bytes arrived.
fn tcp_transfer(client_ns: &str, server_ns: &str, server_ip: &str, len: usize) {
    let data: Vec<u8> = (0..len as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    let expected = data.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let sns = server_ns.to_string();
    let bind = format!("{server_ip}:5201");
    let server = std::thread::spawn(move || {
        in_netns(&sns, move || {
            let l = TcpListener::bind(&bind).expect("bind test server");
            tx.send(()).unwrap();
            let (mut s, _) = l.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("read all");
            got
        })
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("server listening");
    let target = format!("{server_ip}:5201");
    in_netns(client_ns, move || {
        let addr: SocketAddr = target.parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&data).expect("send");
    });
    let got = server.join().expect("server thread");
    assert_eq!(
        got.len(),
        expected.len(),
        "TCP byte count across the sleeve"
    );
    assert!(got == expected, "TCP content changed across the sleeve");
}

/// Sleeves 1 on `h1` and 2 on `h2` (of [`two_hosts`]), each the other's plain-text peer,
/// once each has heard the other.
fn paired_sleeves(h1: &str, h2: &str) -> (Sleeve, Sleeve) {
    let s1 = start(h1, 1, "10.99.0.1:6783");
    let s2 = start(h2, 2, "10.99.0.2:6783");
    s1.add_peer(peer(2, Some("10.99.0.2:6783"), None)).unwrap();
    s2.add_peer(peer(1, Some("10.99.0.1:6783"), None)).unwrap();
    wait_heard(&s1, 2);
    wait_heard(&s2, 1);
    (s1, s2)
}

/// Two hosts h1, h2 with containers c1 (10.40.0.1) and c2 (10.40.0.2).
fn two_hosts(lab: &mut Namespaces) -> (String, String, String, String) {
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    underlay(&h1, "10.99.0.1/24", &h2, "10.99.0.2/24", "ul0");
    let c1 = lab.container(&h1, "c1", "10.40.0.1/24");
    let c2 = lab.container(&h2, "c2", "10.40.0.2/24");
    (h1, h2, c1, c2)
}

#[test]
fn sleeve_carries_ping_arp_and_tcp_between_two_hosts() {
    let mut lab = Namespaces::new();
    let (h1, h2, c1, c2) = two_hosts(&mut lab);
    let (s1, s2) = paired_sleeves(&h1, &h2);

    // ARP (broadcast) has to cross for the first ping to work.
    assert!(
        ping(&c1, "10.40.0.2"),
        "c1 cannot ping c2 through the sleeve"
    );
    assert!(
        ping(&c2, "10.40.0.1"),
        "c2 cannot ping c1 through the sleeve"
    );
    let neigh = Command::new("ip")
        .args(["-n", &c1, "neigh", "show", "10.40.0.2"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&neigh.stdout).contains("lladdr"),
        "c1 has no ARP entry for c2"
    );
    tcp_transfer(&c1, &c2, "10.40.0.2", 8 << 20);
    tcp_transfer(&c2, &c1, "10.40.0.1", 2 << 20);

    let st = s1.peer_stats(PeerId(2)).unwrap();
    assert!(st.tx_bytes > 8 << 20, "tx bytes counted: {st:?}");
    assert!(st.rtt.is_some() && st.alive(Instant::now(), Duration::from_secs(2)));
    // The TCP traffic crossed as super-frames: fewer frames than 1500-byte packets.
    assert!(
        st.tx_frames < (8 << 20) / 1448,
        "expected TSO super-frames, got {} frames for 8 MiB",
        st.tx_frames
    );
    // The MAC of c2 was learned behind peer 2 from its frames.
    let mac = Command::new("ip")
        .args(["-n", &c2, "-br", "link", "show", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&mac.stdout).to_string();
    let m: Vec<u8> = text
        .split_whitespace()
        .nth(2)
        .expect("mac in ip -br output")
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    let mac: [u8; 6] = m.try_into().unwrap();
    assert_eq!(s1.lookup_mac(&mac), Some(PeerId(2)));

    // When h2's sleeve goes away, h1 stops hearing heartbeats: the router sees the path die.
    s2.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s1
        .peer_stats(PeerId(2))
        .unwrap()
        .alive(Instant::now(), Duration::from_millis(600))
    {
        assert!(
            Instant::now() < deadline,
            "peer 2 still looks alive after its sleeve stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !ping(&c1, "10.40.0.2"),
        "ping crossed with the far sleeve stopped"
    );
    drop(s1);
}

#[test]
fn sleeve_encrypts_and_drops_traffic_with_a_wrong_key() {
    let mut lab = Namespaces::new();
    let (h1, h2, c1, c2) = two_hosts(&mut lab);
    let mut cfg = SleeveConfig::new(PeerId(1), "sleeve0");
    cfg.listen = "10.99.0.1:6783".parse().unwrap();
    cfg.bridge = Some("weft".into());
    cfg.require_encryption = true;
    cfg.heartbeat_interval = Duration::from_millis(200);
    let s1 = in_netns(&h1, move || Sleeve::start(cfg)).unwrap();
    let s2 = start(&h2, 2, "10.99.0.2:6783");

    // With a password set, a peer without a key is refused with a clear error.
    let err = s1
        .add_peer(peer(2, Some("10.99.0.2:6783"), None))
        .unwrap_err();
    assert!(matches!(err, SleeveError::Peer { .. }), "{err}");
    assert!(err.to_string().contains("key"), "{err}");

    let key = [0x42u8; 32];
    s1.add_peer(peer(2, Some("10.99.0.2:6783"), Some(key)))
        .unwrap();
    s2.add_peer(peer(1, Some("10.99.0.1:6783"), Some(key)))
        .unwrap();
    wait_heard(&s1, 2);
    wait_heard(&s2, 1);
    assert!(ping(&c1, "10.40.0.2"), "encrypted ping failed");
    tcp_transfer(&c1, &c2, "10.40.0.2", 4 << 20);
    assert!(s1.peer_stats(PeerId(2)).unwrap().encrypted);

    // Now h2 uses a different key: everything from it is rejected, nothing gets through.
    s2.add_peer(peer(1, Some("10.99.0.1:6783"), Some([0x43u8; 32])))
        .unwrap();
    let before = s1.peer_stats(PeerId(2)).unwrap().rx_rejected;
    let deadline = Instant::now() + Duration::from_secs(10);
    while s1.peer_stats(PeerId(2)).unwrap().rx_rejected <= before {
        assert!(
            Instant::now() < deadline,
            "datagrams with the wrong key were not rejected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run(&["ip", "-n", &c1, "neigh", "flush", "all"]);
    assert!(!ping(&c1, "10.40.0.2"), "ping crossed despite a wrong key");
    let heard = s2.peer_stats(PeerId(1)).unwrap();
    assert!(
        heard.last_heard.is_none(),
        "h2 accepted datagrams sealed with another key"
    );
}

#[test]
fn sleeve_relays_between_hosts_without_a_direct_path() {
    let mut lab = Namespaces::new();
    let a = lab.host("a");
    let b = lab.host("b");
    let c = lab.host("c");
    underlay(&a, "10.98.1.1/24", &b, "10.98.1.2/24", "ul1");
    underlay(&b, "10.98.2.2/24", &c, "10.98.2.3/24", "ul2");
    // a and c have no route to each other on the underlay.
    assert!(!succeeds(&[
        "ip",
        "netns",
        "exec",
        &a,
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "10.98.2.3"
    ]));
    let ca = lab.container(&a, "ca", "10.41.0.1/24");
    let cc = lab.container(&c, "cc", "10.41.0.3/24");
    let key_ab = [1u8; 32];
    let key_bc = [2u8; 32];
    let sa = start(&a, 1, "0.0.0.0:6783");
    let sb = start(&b, 2, "0.0.0.0:6783");
    let sc = start(&c, 3, "0.0.0.0:6783");
    sa.add_peer(peer(2, Some("10.98.1.2:6783"), Some(key_ab)))
        .unwrap();
    sa.add_peer(peer(3, None, None)).unwrap();
    sa.set_route(PeerId(3), Some(PeerId(2)));
    sb.add_peer(peer(1, Some("10.98.1.1:6783"), Some(key_ab)))
        .unwrap();
    sb.add_peer(peer(3, Some("10.98.2.3:6783"), Some(key_bc)))
        .unwrap();
    sb.set_broadcast_route(PeerId(1), Some(vec![PeerId(3)]));
    sb.set_broadcast_route(PeerId(3), Some(vec![PeerId(1)]));
    sc.add_peer(peer(2, Some("10.98.2.2:6783"), Some(key_bc)))
        .unwrap();
    sc.add_peer(peer(1, None, None)).unwrap();
    sc.set_route(PeerId(1), Some(PeerId(2)));
    wait_heard(&sa, 2);
    wait_heard(&sc, 2);

    assert!(
        ping(&ca, "10.41.0.3"),
        "container on a cannot reach container on c via b"
    );
    tcp_transfer(&ca, &cc, "10.41.0.3", 4 << 20);
    tcp_transfer(&cc, &ca, "10.41.0.1", 1 << 20);
    let relayed = sb.peer_stats(PeerId(3)).unwrap();
    assert!(
        relayed.tx_bytes > 4 << 20,
        "b did not relay to c: {relayed:?}"
    );
    // b never delivered a's unicast frames into its own bridge.
    assert!(sa.peer_stats(PeerId(3)).unwrap().last_heard.is_none());
}

#[test]
fn sleeve_start_fails_cleanly_on_a_missing_bridge() {
    let mut lab = Namespaces::new();
    let h = lab.add("h");
    let mut cfg = SleeveConfig::new(PeerId(1), "sleeve0");
    cfg.listen = "127.0.0.1:6783".parse().unwrap();
    cfg.bridge = Some("nosuchbr".into());
    let r = in_netns(&h, move || Sleeve::start(cfg).map(|_| ()));
    let err = r.unwrap_err();
    assert!(matches!(err, SleeveError::Bridge { .. }), "{err}");
    assert!(err.to_string().contains("nosuchbr"), "{err}");
    // The TAP was removed again.
    assert!(!succeeds(&["ip", "-n", &h, "link", "show", "sleeve0"]));
    // And the port is free again: a second start in the same namespace works.
    let mut cfg = SleeveConfig::new(PeerId(1), "sleeve0");
    cfg.listen = "127.0.0.1:6783".parse().unwrap();
    let s = in_netns(&h, move || Sleeve::start(cfg)).expect("restart after failure");
    assert!(succeeds(&["ip", "-n", &h, "link", "show", "sleeve0"]));
    s.stop();
    assert!(!succeeds(&["ip", "-n", &h, "link", "show", "sleeve0"]));
}

#[test]
fn sleeve_works_over_an_ipv6_underlay() {
    let mut lab = Namespaces::new();
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    run(&[
        "ip", "-n", &h1, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", &h2,
    ]);
    for (h, cidr) in [(&h1, "fd00:99::1/64"), (&h2, "fd00:99::2/64")] {
        run(&["ip", "-n", h, "addr", "add", cidr, "dev", "ul0", "nodad"]);
        run(&["ip", "-n", h, "link", "set", "ul0", "up"]);
    }
    let c1 = lab.container(&h1, "c1", "10.40.0.1/24");
    let c2 = lab.container(&h2, "c2", "10.40.0.2/24");
    let s1 = start(&h1, 1, "[fd00:99::1]:6783");
    let s2 = start(&h2, 2, "[::]:6783");
    // A peer address of the other family is refused with a clear error.
    let err = s1
        .add_peer(peer(2, Some("10.0.0.2:6783"), None))
        .unwrap_err();
    assert!(err.to_string().contains("family"), "{err}");
    s1.add_peer(peer(2, Some("[fd00:99::2]:6783"), None))
        .unwrap();
    s2.add_peer(peer(1, Some("[fd00:99::1]:6783"), None))
        .unwrap();
    wait_heard(&s1, 2);
    wait_heard(&s2, 1);
    assert!(ping(&c1, "10.40.0.2"), "no ping across the IPv6 underlay");
    tcp_transfer(&c2, &c1, "10.40.0.1", 2 << 20);
}

#[test]
fn a_quiet_peer_gets_no_heartbeats_and_resumed_gets_one_at_once() {
    let mut lab = Namespaces::new();
    let (h1, h2, c1, _c2) = two_hosts(&mut lab);
    let (s1, _s2) = paired_sleeves(&h1, &h2);
    let sent = |s: &Sleeve| s.peer_stats(PeerId(2)).unwrap().pings_sent;
    s1.set_quiet(PeerId(2), true);
    // A round may have been under way; then none for five heartbeat intervals.
    std::thread::sleep(Duration::from_millis(50));
    let before = sent(&s1);
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(sent(&s1), before, "heartbeats went to a quiet peer");
    // Quiet stops only the sleeve's own heartbeats: traffic still crosses.
    assert!(
        ping(&c1, "10.40.0.2"),
        "c1 cannot reach c2 through a quiet peer"
    );
    // Resumed: a heartbeat at once, not at the next round of the schedule.
    s1.set_quiet(PeerId(2), false);
    let deadline = Instant::now() + Duration::from_millis(150);
    while sent(&s1) == before {
        assert!(
            Instant::now() < deadline,
            "no heartbeat within 150 ms of resuming"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
