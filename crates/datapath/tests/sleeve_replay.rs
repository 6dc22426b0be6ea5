//! The sleeve refuses replayed and too-old datagrams: sealed datagrams captured on the
//! underlay (AF_PACKET on the receiving host's link) are sent again from the other host,
//! and the receiver drops and counts every one of them, within the window and after it
//! has moved past them. Real kernel, TAP, UDP, in namespaces removed on drop.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::Ns;
use weft_datapath::sleeve::crypto::REPLAY_WINDOW;
use weft_datapath::sleeve::{wire, CipherKind, PeerConfig, PeerId, Sleeve, SleeveConfig};

/// Two hosts joined by a veth underlay (10.97.0.1, 10.97.0.2), each with a bridge `weft`
/// and a container (10.44.0.1, 10.44.0.2) on it.
struct Two {
    h1: Ns,
    h2: Ns,
    c1: Ns,
    c2: Ns,
}

fn two_hosts() -> Two {
    let h1 = Ns::new("h1");
    let h2 = Ns::new("h2");
    h1.ip(&format!(
        "link add ul type veth peer name ul netns {}",
        h2.name
    ));
    let c1 = Ns::new("c1");
    let c2 = Ns::new("c2");
    for (h, ip, c, cip) in [
        (&h1, "10.97.0.1/24", &c1, "10.44.0.1/24"),
        (&h2, "10.97.0.2/24", &c2, "10.44.0.2/24"),
    ] {
        h.ip(&format!("addr add {ip} dev ul"));
        h.ip("link set ul up");
        h.ip("link add weft type bridge");
        h.ip("link set weft up");
        h.ip(&format!(
            "link add vc type veth peer name eth0 netns {}",
            c.name
        ));
        h.ip("link set vc master weft up");
        c.ip(&format!("addr add {cip} dev eth0"));
        c.ip("link set eth0 up");
    }
    Two { h1, h2, c1, c2 }
}

fn start(host: &Ns, id: u32, listen: &str) -> Sleeve {
    let mut cfg = SleeveConfig::new(PeerId(id), "sleeve0");
    cfg.listen = listen.parse().unwrap();
    cfg.bridge = Some("weft".into());
    cfg.require_encryption = true;
    cfg.heartbeat_interval = Duration::from_millis(200);
    host.run(move || Sleeve::start(cfg)).expect("sleeve starts")
}

fn peer(id: u32, addr: &str) -> PeerConfig {
    PeerConfig {
        id: PeerId(id),
        name: format!("peer{id}"),
        addr: Some(addr.parse().unwrap()),
        key: Some([0x33; 32]),
        cipher: CipherKind::supported()[0],
    }
}

/// Waits (bounded) until `f` holds, failing with `what`.
fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A packet socket on `host`'s underlay link that sees every IPv4 packet it receives.
fn capture(host: &Ns) -> OwnedFd {
    host.run(|| {
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: socket(2); checked below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: if_nametoindex on a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(c"ul".as_ptr()) };
        assert!(index > 0, "no underlay link");
        // SAFETY: all-zero sockaddr_ll is valid; filled below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto;
        sa.sll_ifindex = index as i32;
        // SAFETY: bind with a valid sockaddr_ll of its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        fd
    })
}

/// The sleeve datagrams (UDP payloads to port 6783) captured so far, from `sender`.
fn captured(fd: &OwnedFd, sender: PeerId) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: recv into a buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return out;
        }
        let p = &buf[..n as usize];
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if p.len() < ihl + 8 || p[9] != 17 || p[ihl + 2..ihl + 4] != 6783u16.to_be_bytes() {
            continue;
        }
        let dg = &p[ihl + 8..];
        // Only single datagrams (a GSO train would cross the veth as one packet).
        let ok = wire::parse(dg).is_ok_and(|h| h.common.sender == sender && h.common.sealed());
        if ok && dg.len() <= 1472 {
            out.push(dg.to_vec());
        }
    }
}

fn inject(host: &Ns, to: &str, datagrams: &[Vec<u8>]) {
    let to: SocketAddr = to.parse().unwrap();
    host.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind injector");
        for d in datagrams {
            s.send_to(d, to).expect("inject");
        }
    });
}

#[test]
fn sleeve_drops_and_counts_replayed_and_too_old_datagrams() {
    let t = two_hosts();
    let s1 = start(&t.h1, 1, "10.97.0.1:6783");
    let s2 = start(&t.h2, 2, "10.97.0.2:6783");
    let cap = capture(&t.h2);
    s1.add_peer(peer(2, "10.97.0.2:6783")).unwrap();
    s2.add_peer(peer(1, "10.97.0.1:6783")).unwrap();
    wait("heartbeats both ways", || {
        [(&s1, 2), (&s2, 1)]
            .iter()
            .all(|(s, id)| s.peer_stats(PeerId(*id)).is_some_and(|p| p.rtt.is_some()))
    });
    assert!(t.c1.ping("10.44.0.2"), "sealed ping across the sleeve");
    let got = captured(&cap, PeerId(1));
    assert!(got.len() >= 3, "captured only {} datagrams", got.len());

    // Replayed within the window: each one is authentic, seen before, dropped, counted.
    let before = s2.peer_stats(PeerId(1)).unwrap();
    inject(&t.h1, "10.97.0.2:6783", &got);
    let want = before.rx_replayed + got.len() as u64;
    wait("replays counted", || {
        s2.peer_stats(PeerId(1)).unwrap().rx_replayed >= want
    });
    let after = s2.peer_stats(PeerId(1)).unwrap();
    assert_eq!(after.rx_replayed, want, "{after:?}");
    assert_eq!(
        after.rx_frames, before.rx_frames,
        "a replayed frame reached the bridge"
    );
    assert!(s2.stats().rx_replayed >= got.len() as u64);

    // Move the window past them (more datagrams than it holds), then replay again: too old.
    let flood = t.c1.exec(&[
        "ping",
        "-f",
        "-c",
        &(REPLAY_WINDOW + 500).to_string(),
        "-s",
        "64",
        "-w",
        "60",
        "10.44.0.2",
    ]);
    assert!(flood.status.success(), "flood ping: {flood:?}");
    captured(&cap, PeerId(1));
    let before = s2.peer_stats(PeerId(1)).unwrap();
    inject(&t.h1, "10.97.0.2:6783", &got);
    let want = before.rx_replayed + got.len() as u64;
    wait("too-old datagrams counted", || {
        s2.peer_stats(PeerId(1)).unwrap().rx_replayed >= want
    });
    assert_eq!(
        s2.peer_stats(PeerId(1)).unwrap().rx_frames,
        before.rx_frames
    );
    // Fresh traffic still flows.
    assert!(t.c1.ping("10.44.0.2"), "ping after the replays");
    drop(t.c2);
}
