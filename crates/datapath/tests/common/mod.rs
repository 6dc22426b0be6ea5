//! Test lab: network namespaces (hosts and containers) from testkit's harness, with a
//! handle each for library calls. Nothing here touches the root namespace.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::Output;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use weft_datapath::fastdp::{self, FastdpSpec};
use weft_datapath::{attach, AttachInfo, AttachSpec, Netns};
use weft_testkit::netns::{self, Namespaces};

/// The overlay range used by the tests.
pub const RANGE: &str = "10.32.0.0/12";
/// Underlay address of host 1 and host 2.
pub const U1: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// Underlay address of host 2.
pub const U2: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
/// Overlay MTU the tests use.
pub const MTU: u32 = 1450;

pub fn range() -> Ipv4Net {
    RANGE.parse().unwrap()
}

pub fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// A named network namespace (testkit's: unique name, deleted on drop, also on panic),
/// with a handle to enter it.
pub struct Ns {
    pub name: String,
    pub ns: Netns,
    // Dropped last: deletes the namespace once the handle is closed.
    _owner: Namespaces,
}

impl Ns {
    pub fn new(role: &str) -> Ns {
        let mut owner = Namespaces::new();
        let name = owner.add(role);
        let ns = Netns::open_path(std::path::Path::new(&format!("/run/netns/{name}")))
            .unwrap_or_else(|e| panic!("open netns {name}: {e}"));
        Ns {
            name,
            ns,
            _owner: owner,
        }
    }

    /// Runs library code with this namespace as the "current" one.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.ns.run(f).expect("enter test netns")
    }

    /// `ip -n NAME ARGS`, which must succeed; returns stdout.
    pub fn ip(&self, args: &str) -> String {
        netns::ip(&self.name, args)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        netns::ns_output(&self.name, cmd)
    }

    /// Names of the links in this namespace (as `ip -n NS link` shows them).
    pub fn links(&self) -> Vec<String> {
        let out = self.ip("-o link show");
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        v.sort();
        v
    }

    /// One ping with a 1 s timeout; true if answered.
    pub fn ping(&self, dst: &str) -> bool {
        netns::pings(&self.name, dst)
    }
}

/// Two hosts joined by a veth underlay (192.168.77.0/24), each with the weft bridge and
/// VXLAN device, flooding to the other.
pub struct Lab {
    pub h1: Ns,
    pub h2: Ns,
}

impl Lab {
    pub fn new() -> Lab {
        let h1 = Ns::new("h1");
        let h2 = Ns::new("h2");
        netns::underlay(
            &h1.name,
            &format!("{U1}/24"),
            &h2.name,
            &format!("{U2}/24"),
            "ul",
        );
        for (h, me, peer) in [(&h1, U1, U2), (&h2, U2, U1)] {
            h.run(|| {
                fastdp::setup(&FastdpSpec::new("weft", MTU, Some(me)))?;
                fastdp::add_peer(fastdp::VXLAN_NAME, peer)
            })
            .expect("fastdp setup");
        }
        Lab { h1, h2 }
    }
}

/// A container namespace (`role`) attached to `host` with `addrs`, as [`attach_to`].
pub fn container_on(host: &Ns, role: &str, addrs: &[&str]) -> (Ns, AttachInfo) {
    let c = Ns::new(role);
    let info = attach_to(host, &c, addrs);
    (c, info)
}

/// Attaches `c` to `host`'s bridge with `addrs` as `ethwe`.
pub fn attach_to(host: &Ns, c: &Ns, addrs: &[&str]) -> AttachInfo {
    try_attach(host, c, "ethwe", addrs).expect("attach")
}

pub fn spec(ifname: &str, addrs: &[&str]) -> AttachSpec {
    AttachSpec {
        ifname: ifname.into(),
        addrs: addrs.iter().map(|a| net(a)).collect(),
        range: range(),
        mtu: MTU,
        bridge: "weft".into(),
        default_gateway: None,
    }
}

pub fn try_attach(
    host: &Ns,
    c: &Ns,
    ifname: &str,
    addrs: &[&str],
) -> weft_datapath::Result<AttachInfo> {
    let s = spec(ifname, addrs);
    host.run(|| attach(&c.ns, &s))
}

/// Polls `f` every 10 ms until it is true or `limit` passes; returns whether it became true.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
