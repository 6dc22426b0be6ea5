//! Namespace targets (path, pid), sockets that live in a namespace, and MTU discovery.

mod common;

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use weft_datapath::mtu::{self, VXLAN_OVERHEAD_V4};
use weft_datapath::{Error, Netns, NetnsTarget};
use weft_testkit::netns::veth_pair;

/// Kills and reaps a child (by its pid) when dropped.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pid_target_names_the_process_namespace() {
    let c1 = Ns::new("c1");
    let child = Child(
        Command::new("ip")
            .args(["netns", "exec", &c1.name, "sleep", "30"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = child.0.id();
    // `ip netns exec` enters the namespace before it execs sleep: wait for that.
    let entered = wait_for(Duration::from_secs(2), || {
        std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == c1.ns.inode())
    });
    assert!(entered, "child {pid} never entered {}", c1.name);
    let ns = Netns::open(&NetnsTarget::Pid(pid)).unwrap();
    assert!(ns.same_as(&c1.ns));
    assert!(!ns.is_current());
}

#[test]
fn sockets_opened_in_a_namespace_stay_there() {
    let me = Netns::current().unwrap();
    let c1 = Ns::new("c1");
    let c2 = Ns::new("c2");
    veth_pair(
        (&c1.name, "va", "10.99.0.1/24"),
        (&c2.name, "vb", "10.99.0.2/24"),
    );

    // A listener in c2 (as the DNS will have in each container) and a sender in c1,
    // both used from this thread, which never leaves its own namespace.
    let rx = c2.ns.udp_bind("10.99.0.2:0".parse().unwrap()).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let tx = c1.ns.udp_bind("10.99.0.1:0".parse().unwrap()).unwrap();
    tx.send_to(b"query", rx.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = rx.recv_from(&mut buf).expect("datagram from c1");
    assert_eq!(&buf[..n], b"query");
    assert_eq!(from, tx.local_addr().unwrap());
    assert!(
        Netns::current().unwrap().same_as(&me),
        "caller's namespace changed"
    );

    // 10.99.0.2 does not exist in this (the test's) namespace: binding here fails.
    assert!(std::net::UdpSocket::bind("10.99.0.2:0").is_err());
    // Nor in c1.
    let e = c1.ns.udp_bind("10.99.0.2:0".parse().unwrap()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn mtu_follows_the_underlay_route() {
    let h = Ns::new("h");
    let p = Ns::new("p");
    h.ip(&format!(
        "link add ul mtu 1400 type veth peer name ul netns {}",
        p.name
    ));
    h.ip("addr add 192.168.77.1/24 dev ul");
    h.ip("link set ul up");
    h.ip("route add 192.168.78.0/24 dev ul mtu lock 1300");
    let peer: Ipv4Addr = "192.168.77.2".parse().unwrap();

    assert_eq!(h.run(|| mtu::underlay_mtu(peer)).unwrap(), 1400);
    assert_eq!(
        h.run(|| mtu::fastdp_mtu(peer)).unwrap(),
        1400 - VXLAN_OVERHEAD_V4
    );
    assert_eq!(h.run(|| mtu::sleeve_mtu(peer, 60)).unwrap(), 1340);
    assert_eq!(mtu::underlay_mtu_in(&h.ns, peer).unwrap(), 1400);
    // A route with a locked MTU wins over the device's.
    assert_eq!(
        h.run(|| mtu::underlay_mtu("192.168.78.9".parse().unwrap()))
            .unwrap(),
        1300
    );
    // No route at all: a clear error naming the peer.
    let e = h
        .run(|| mtu::underlay_mtu("203.0.113.9".parse().unwrap()))
        .unwrap_err();
    assert!(matches!(e, Error::NoRoute { .. }), "{e}");
    assert!(e.to_string().contains("203.0.113.9"), "{e}");
}
