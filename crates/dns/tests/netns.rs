//! The deployment weft uses: DNS sockets made inside a container's network namespace
//! (127.0.0.11:53 and 127.0.0.12:53), served by a runtime that lives in the router's
//! namespace, and upstream queries leaving from the router's namespace.
//!
//! The "container" is a network namespace from testkit's harness (a unique name, removed
//! when the test ends, also when it fails); its sockets are bound on a thread inside it,
//! and `dig` runs in it through `ip netns exec`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use weft_dns::{
    serve, AnswerConfig, Answerer, DnsGossip, DnsHandle, ForwardConfig, Forwarder, GossipConfig,
    RemoveFilter, CONTAINER_DNS_ADDR, DNS_PORT, DOCKER_DNS_ADDR,
};
use weft_testkit::netns::{in_netns, ns_output, Namespaces};

/// The mesh channel of the gossip core (unused here: no mesh).
const DNS_CHANNEL: u16 = 2;

type Sockets = Vec<(std::net::UdpSocket, std::net::TcpListener)>;

/// A network namespace from testkit's harness (removed on drop, also on panic) with the
/// DNS sockets bound inside it.
struct Container {
    name: String,
    _nss: Namespaces,
}

impl Container {
    /// Makes the namespace and binds UDP+TCP on each of `addrs` there.
    fn start(addrs: Vec<SocketAddr>) -> (Container, Sockets) {
        let mut nss = Namespaces::new();
        let name = nss.add("c");
        let sockets = in_netns(&name, || -> Result<Sockets, String> {
            addrs
                .iter()
                .map(|a| {
                    let u =
                        std::net::UdpSocket::bind(a).map_err(|e| format!("bind udp {a}: {e}"))?;
                    let t =
                        std::net::TcpListener::bind(a).map_err(|e| format!("bind tcp {a}: {e}"))?;
                    Ok((u, t))
                })
                .collect()
        })
        .unwrap_or_else(|e| panic!("container setup: {e}"));
        (Container { name, _nss: nss }, sockets)
    }

    /// Runs a command inside the namespace (blocking); returns trimmed stdout.
    fn run(&self, cmd: &[&str]) -> String {
        let out = ns_output(&self.name, cmd);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// An upstream on the router side's loopback that knows every name (192.0.2.53).
async fn upstream() -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.id, req.op_code);
            resp.add_queries(req.queries.iter().cloned());
            if let Some(q) = req.queries.first() {
                let a = RData::A(A(Ipv4Addr::new(192, 0, 2, 53)));
                resp.add_answer(Record::from_rdata(q.name().clone(), 30, a));
            }
            let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_made_in_a_container_netns_answer_there_and_forward_from_the_router() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test makes a network namespace: run as root"
    );
    let up = upstream().await;
    let mut gossip = DnsGossip::new("router-1", DNS_CHANNEL, GossipConfig::default(), 1).unwrap();
    gossip
        .add(0, "c1", "c1.weft.local", Ipv4Addr::new(10, 32, 0, 9))
        .unwrap();
    let answerer = Answerer::new(gossip.records(), AnswerConfig::default()).unwrap();
    let handle = DnsHandle::new(answerer, Forwarder::new(vec![up], ForwardConfig::default()));

    let addrs = vec![
        SocketAddr::from((CONTAINER_DNS_ADDR, DNS_PORT)),
        SocketAddr::from((DOCKER_DNS_ADDR, DNS_PORT)),
    ];
    let (container, sockets) = Container::start(addrs);
    let servers: Vec<_> = sockets
        .into_iter()
        .map(|(u, t)| tokio::spawn(serve(u, Some(t), handle.clone())))
        .collect();

    // 127.0.0.11:53 on this (the router's) side is not ours: the answers below come from
    // the sockets inside the container's namespace.
    let dig = |args: &'static [&'static str]| {
        let c = &container;
        let mut cmd = vec!["dig", "+time=5", "+tries=1"];
        cmd.extend_from_slice(args);
        c.run(&cmd)
    };
    let results = tokio::task::block_in_place(|| {
        (
            dig(&["@127.0.0.11", "+short", "c1.weft.local"]),
            dig(&["@127.0.0.12", "+short", "+tcp", "c1.weft.local"]),
            // The short name, with weft.local. as the search domain (as in the container's resolv.conf).
            dig(&["@127.0.0.11", "+short", "+domain=weft.local.", "c1"]),
            // Forwarded: the upstream is on the router's loopback, unreachable from the container.
            dig(&["@127.0.0.11", "+short", "outside.example"]),
            dig(&["@127.0.0.11", "-x", "10.32.0.9", "+short"]),
        )
    });
    assert_eq!(results.0, "10.32.0.9");
    assert_eq!(results.1, "10.32.0.9");
    assert_eq!(results.2, "10.32.0.9");
    assert_eq!(results.3, "192.0.2.53");
    assert_eq!(results.4, "c1.weft.local.");

    // Detach: the name stops resolving in the container (bounded wait of 2 s).
    let f = RemoveFilter {
        container: Some("c1".into()),
        ..Default::default()
    };
    gossip.remove(0, &f).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = tokio::task::block_in_place(|| loop {
        let s = dig(&["@127.0.0.11", "c1.weft.local"]);
        if s.contains("status: NXDOMAIN") || Instant::now() > deadline {
            return s;
        }
    });
    assert!(
        status.contains("status: NXDOMAIN"),
        "c1 still resolves 2 s after removal:\n{status}"
    );
    for s in servers {
        s.abort();
    }
}
