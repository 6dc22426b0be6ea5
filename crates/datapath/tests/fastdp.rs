//! fastdp end to end: two hosts in netns joined by a veth underlay, kernel VXLAN between
//! them, one container on each; ping, TCP, ARP flooding and FDB programming.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;
use weft_datapath::fastdp;
use weft_datapath::link;
use weft_datapath::neigh;
use weft_datapath::nl::Handle;

#[test]
fn ping_and_tcp_cross_hosts_over_vxlan() {
    let lab = Lab::new();
    let (c1, a1) = container_on(&lab.h1, "c1", &["10.32.0.1/12"]);
    let (c2, a2) = container_on(&lab.h2, "c2", &["10.32.0.2/12"]);

    // The container sees ethwe with its address, the MTU and no default route.
    let addr = c1.ip("-4 -o addr show dev ethwe");
    assert!(addr.contains("10.32.0.1/12"), "{addr}");
    assert!(c1.ip("-o link show ethwe").contains("mtu 1450"));
    assert!(!c1.ip("route").contains("default"));
    // The host side is a port of the bridge.
    assert!(lab
        .h1
        .ip(&format!("-o link show {}", a1.host_veth))
        .contains("master weft"));

    assert!(c1.ping("10.32.0.2"), "ping c1 -> c2 across VXLAN failed");
    assert!(c2.ping("10.32.0.1"), "ping c2 -> c1 across VXLAN failed");
    // A full-size packet (1450 MTU: 1422 bytes of ICMP payload) fits without fragmenting.
    let big = c1.exec(&["ping", "-c1", "-W1", "-M", "do", "-s", "1422", "10.32.0.2"]);
    assert!(big.status.success(), "full-MTU ping failed: {big:?}");

    // ARP is broadcast: it crossed because of the all-zero FDB entries; c1 now knows c2's MAC.
    let n = c1
        .run(|| {
            let mut h = Handle::current()?;
            neigh::list(&mut h, None)
        })
        .unwrap();
    let e = n
        .iter()
        .find(|n| n.ip.to_string() == "10.32.0.2")
        .expect("c1 has a neighbour entry for c2");
    assert_eq!(e.mac, Some(a2.mac));

    // TCP: a listener opened inside c2's namespace, a client inside c1's.
    let listener = c2
        .ns
        .tcp_listen("10.32.0.2:0".parse().unwrap())
        .expect("listen in c2");
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("read");
        s.write_all(&buf).expect("echo");
        peer
    });
    let dst: SocketAddr = format!("10.32.0.2:{port}").parse().unwrap();
    let echoed = c1.run(move || {
        let mut s = TcpStream::connect_timeout(&dst, std::time::Duration::from_secs(2))?;
        s.write_all(b"hello")?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        std::io::Result::Ok(buf)
    });
    assert_eq!(&echoed.expect("tcp c1 -> c2"), b"hello");
    assert_eq!(server.join().unwrap().ip().to_string(), "10.32.0.1");
}

#[test]
fn fdb_entries_are_programmed_and_removed_per_peer() {
    let lab = Lab::new();
    let (c1, _) = container_on(&lab.h1, "c1", &["10.32.1.1/12"]);
    let (_c2, a2) = container_on(&lab.h2, "c2", &["10.32.1.2/12"]);

    // `bridge fdb` shows the flood entry to the peer.
    let fdb = lab
        .h1
        .exec(&["bridge", "fdb", "show", "dev", fastdp::VXLAN_NAME]);
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(fdb.contains("00:00:00:00:00:00 dst 192.168.77.2"), "{fdb}");
    // Adding the peer again is harmless.
    lab.h1
        .run(|| fastdp::add_peer(fastdp::VXLAN_NAME, U2))
        .unwrap();

    // A unicast entry for c2's MAC towards host 2; traffic still flows.
    lab.h1
        .run(|| fastdp::set_mac(fastdp::VXLAN_NAME, a2.mac, U2))
        .unwrap();
    let entries = lab.h1.run(|| fastdp::entries(fastdp::VXLAN_NAME)).unwrap();
    assert!(
        entries.iter().any(|e| e.mac == a2.mac && e.dst == Some(U2)),
        "{entries:?}"
    );
    assert_eq!(
        entries.iter().filter(|e| e.mac == [0; 6]).count(),
        1,
        "{entries:?}"
    );
    assert!(c1.ping("10.32.1.2"));

    // Removing the peer removes both entries, and the peer becomes unreachable.
    let n = lab
        .h1
        .run(|| fastdp::remove_peer(fastdp::VXLAN_NAME, U2))
        .unwrap();
    assert_eq!(n, 2);
    let left = lab.h1.run(|| fastdp::entries(fastdp::VXLAN_NAME)).unwrap();
    assert!(left.is_empty(), "{left:?}");
    c1.ip("neigh flush all");
    assert!(!c1.ping("10.32.1.2"), "ping crossed without any FDB entry");

    // Re-adding the peer restores the path.
    lab.h1
        .run(|| fastdp::add_peer(fastdp::VXLAN_NAME, U2))
        .unwrap();
    // Drop the failed ARP entry so a fresh request goes out at once (an entry still
    // probing re-sends only once a second, longer than the ping waits).
    c1.ip("neigh flush all");
    assert!(
        c1.ping("10.32.1.2"),
        "ping failed after the peer was added back"
    );

    // The device weft made: vxlan id 0xfeed, dstport 6784, nolearning, on the bridge.
    let d = lab
        .h1
        .ip(&format!("-d -o link show {}", fastdp::VXLAN_NAME));
    assert!(d.contains("vxlan id 65261"), "{d}");
    assert!(d.contains("dstport 6784"), "{d}");
    assert!(d.contains("nolearning"), "{d}");
    assert!(d.contains("master weft"), "{d}");
    let vx = lab
        .h1
        .run(|| link::require(&mut Handle::current()?, fastdp::VXLAN_NAME))
        .unwrap();
    assert_eq!(vx.mtu, MTU);
}

/// Packets received by `dev` in `ns` (from the namespace's /proc/net/dev).
fn rx_packets(ns: &Ns, dev: &str) -> u64 {
    let out = ns.exec(&["cat", "/proc/net/dev"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == dev).then(|| rest.split_whitespace().nth(1)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{dev} not in /proc/net/dev of {}: {text}", ns.name))
}

#[test]
fn unicast_entry_sends_only_to_its_host() {
    // Three hosts: h1 is joined to h2 and to h3 by separate underlay links.
    let h1 = Ns::new("h1");
    let h2 = Ns::new("h2");
    let h3 = Ns::new("h3");
    let u3: std::net::Ipv4Addr = "192.168.78.3".parse().unwrap();
    h1.ip(&format!(
        "link add ul2 type veth peer name ul netns {}",
        h2.name
    ));
    h1.ip(&format!(
        "link add ul3 type veth peer name ul netns {}",
        h3.name
    ));
    for (h, dev, ip) in [
        (&h1, "ul2", "192.168.77.1/24"),
        (&h1, "ul3", "192.168.78.1/24"),
        (&h2, "ul", "192.168.77.2/24"),
        (&h3, "ul", "192.168.78.3/24"),
    ] {
        h.ip(&format!("addr add {ip} dev {dev}"));
        h.ip(&format!("link set {dev} up"));
    }
    h1.run(|| {
        fastdp::setup(&fastdp::FastdpSpec::new("weft", MTU, None))?;
        fastdp::add_peer(fastdp::VXLAN_NAME, U2)?;
        fastdp::add_peer(fastdp::VXLAN_NAME, u3)
    })
    .unwrap();
    h2.run(|| {
        fastdp::setup(&fastdp::FastdpSpec::new("weft", MTU, Some(U2)))?;
        fastdp::add_peer(fastdp::VXLAN_NAME, U1)
    })
    .unwrap();
    h3.run(|| {
        fastdp::setup(&fastdp::FastdpSpec::new("weft", MTU, Some(u3)))?;
        fastdp::add_peer(fastdp::VXLAN_NAME, "192.168.78.1".parse().unwrap())
    })
    .unwrap();
    let (c1, _) = container_on(&h1, "c1", &["10.32.10.1/12"]);
    let (_c2, a2) = container_on(&h2, "c2", &["10.32.10.2/12"]);
    assert!(c1.ping("10.32.10.2"));

    // Forty pings; returns how many were answered (each answered one crossed to h2).
    let burst = || -> u64 {
        let out = c1.exec(&["ping", "-c40", "-i0.01", "-W1", "10.32.10.2"]);
        assert!(out.status.success(), "ping burst failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(',')
            .find_map(|part| part.trim().strip_suffix(" received"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no reply count in ping's output: {text}"))
    };
    // Without a unicast entry, frames to c2's MAC are flooded: h3 receives them too.
    let before = rx_packets(&h3, fastdp::VXLAN_NAME);
    burst();
    let flooded = rx_packets(&h3, fastdp::VXLAN_NAME) - before;
    assert!(
        flooded >= 40,
        "h3 got {flooded} packets while unicast was flooded"
    );

    // With c2's MAC pinned to h2, h3 sees (almost) nothing; h2 gets all of it.
    h1.run(|| fastdp::set_mac(fastdp::VXLAN_NAME, a2.mac, U2))
        .unwrap();
    let before3 = rx_packets(&h3, fastdp::VXLAN_NAME);
    let before2 = rx_packets(&h2, fastdp::VXLAN_NAME);
    let answered = burst();
    let to_h3 = rx_packets(&h3, fastdp::VXLAN_NAME) - before3;
    let to_h2 = rx_packets(&h2, fastdp::VXLAN_NAME) - before2;
    // On a busy machine a ping may go unanswered; every answered one reached h2.
    assert!(
        answered >= 20 && to_h2 >= answered,
        "h2 got {to_h2} packets for {answered} answered pings"
    );
    // Broadcast and multicast (ARP refresh, IPv6 neighbour discovery) are still
    // flooded meanwhile, a few frames whatever the burst; the pings are not.
    assert!(
        to_h3 * 4 <= answered,
        "h3 still got {to_h3} packets for {answered} pings with a unicast entry"
    );
}
