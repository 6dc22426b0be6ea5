//! The DNS server on loopback: local names, NXDOMAIN, forwarding to a tiny upstream the
//! test runs itself (with TCP fallback on truncation), SERVFAIL when upstream is dead,
//! and the same seen through `dig`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use weft_dns::{
    serve, AnswerConfig, Answerer, DnsGossip, DnsHandle, ForwardConfig, Forwarder, GossipConfig,
    RemoveFilter, Transport,
};

/// The mesh channel of the gossip core (unused here: no mesh).
const DNS_CHANNEL: u16 = 2;

/// How the tiny upstream answers, and how many queries it saw.
struct Upstream {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
}

fn upstream_reply(query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let q = req.queries.first()?.clone();
    let mut resp = Message::response(req.id, req.op_code);
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    match q.name().to_ascii().to_ascii_lowercase().as_str() {
        "outside.example." => {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
            ));
        }
        // Pretend the answer is too big for UDP; the full answer comes over TCP.
        "big.example." if !tcp => resp.metadata.truncation = true,
        "big.example." => {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 8))),
            ));
        }
        _ => resp.metadata.response_code = ResponseCode::NXDomain,
    }
    resp.to_vec().ok()
}

/// Starts the upstream on one loopback port for both UDP and TCP.
async fn start_upstream() -> Upstream {
    let (udp, tcp) = loop {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)).await {
            break (udp, tcp);
        }
    };
    let addr = tcp.local_addr().unwrap();
    let udp_queries = Arc::new(AtomicUsize::new(0));
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&udp_queries);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            count.fetch_add(1, Ordering::SeqCst);
            if let Some(r) = upstream_reply(&buf[..n], false) {
                let _ = udp.send_to(&r, peer).await;
            }
        }
    });
    let count = Arc::clone(&tcp_queries);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(len) = s.read_u16().await else { return };
                let mut q = vec![0u8; len as usize];
                if s.read_exact(&mut q).await.is_err() {
                    return;
                }
                if let Some(r) = upstream_reply(&q, true) {
                    let _ = s.write_all(&(r.len() as u16).to_be_bytes()).await;
                    let _ = s.write_all(&r).await;
                }
            });
        }
    });
    Upstream {
        addr,
        udp_queries,
        tcp_queries,
    }
}

/// A gossip core with some local names, and a server for its store on loopback.
struct Weft {
    gossip: DnsGossip,
    udp: SocketAddr,
    tcp: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

async fn start_weft(upstream: Vec<SocketAddr>, config: ForwardConfig) -> Weft {
    let mut gossip = DnsGossip::new("peer-1", DNS_CHANNEL, GossipConfig::default(), 1).unwrap();
    gossip
        .add(0, "c1", "web.weft.local", Ipv4Addr::new(10, 32, 0, 5))
        .unwrap();
    gossip
        .add(0, "c2", "db.weft.local", Ipv4Addr::new(10, 32, 0, 6))
        .unwrap();
    gossip
        .add(0, "c3", "db.weft.local", Ipv4Addr::new(10, 32, 0, 7))
        .unwrap();
    let answerer = Answerer::new(gossip.records(), AnswerConfig::default()).unwrap();
    let handle = DnsHandle::new(answerer, Forwarder::new(upstream, config));
    // Pre-bound std sockets, as the router hands them over from a container's netns.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let server = tokio::spawn(async move {
        if let Err(e) = serve(udp, Some(tcp), handle).await {
            panic!("server stopped: {e}");
        }
    });
    Weft {
        gossip,
        udp: udp_addr,
        tcp: tcp_addr,
        server,
    }
}

fn query(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query(name, t);
    sock.send_to(&q, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no UDP answer for {name} within 10 s"))
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        m.id,
        Message::from_vec(&q).unwrap().id,
        "answer id for {name}"
    );
    m
}

async fn ask_tcp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    let q = query(name, t);
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(10), s.read_u16())
        .await
        .expect("TCP answer within 10 s")
        .unwrap();
    let mut b = vec![0u8; len as usize];
    s.read_exact(&mut b).await.unwrap();
    Message::from_vec(&b).unwrap()
}

fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn server_answers_local_names_and_forwards_the_rest() {
    let up = start_upstream().await;
    let mut weft = start_weft(vec![up.addr], ForwardConfig::default()).await;

    let m = ask_udp(weft.udp, "web.weft.local.", RecordType::A).await;
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 32, 0, 5)]);
    assert_eq!(m.answers[0].ttl, 1);
    let m = ask_tcp(weft.tcp, "WEB.weft.local.", RecordType::A).await;
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 32, 0, 5)]);

    // A shared name gives both addresses, first one alternating.
    let a = addrs(&ask_udp(weft.udp, "db.weft.local.", RecordType::A).await);
    let b = addrs(&ask_udp(weft.udp, "db.weft.local.", RecordType::A).await);
    assert_eq!(a.len(), 2);
    assert_ne!(a[0], b[0], "round-robin: {a:?} then {b:?}");

    let m = ask_udp(weft.udp, "nobody.weft.local.", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    assert_eq!(
        up.udp_queries.load(Ordering::SeqCst),
        0,
        "names in the domain never go upstream"
    );

    let m = ask_udp(weft.udp, "outside.example.", RecordType::A).await;
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    let m = ask_udp(weft.udp, "big.example.", RecordType::A).await;
    assert_eq!(
        addrs(&m),
        vec![Ipv4Addr::new(192, 0, 2, 8)],
        "TCP fallback after a truncated UDP answer"
    );
    assert!(!m.truncation);
    assert!(up.tcp_queries.load(Ordering::SeqCst) >= 1);
    let m = ask_tcp(weft.tcp, "outside.example.", RecordType::A).await;
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    let m = ask_udp(weft.udp, "missing.example.", RecordType::A).await;
    assert_eq!(
        m.response_code,
        ResponseCode::NXDomain,
        "upstream NXDOMAIN passed through"
    );

    // Removing a name takes effect for the very next query.
    let f = RemoveFilter {
        container: Some("c1".into()),
        ..Default::default()
    };
    weft.gossip.remove(0, &f).unwrap();
    let m = ask_udp(weft.udp, "web.weft.local.", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::NXDomain);

    // Garbage does not stop the server.
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    junk.send_to(&[0xff; 7], weft.udp).await.unwrap();
    let m = ask_udp(weft.udp, "db.weft.local.", RecordType::A).await;
    assert_eq!(addrs(&m).len(), 2);
    weft.server.abort();
}

#[tokio::test]
async fn dead_upstream_gives_servfail_in_bounded_time() {
    // A port nobody listens on: bind, note the port, close.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ForwardConfig {
        timeout: Duration::from_millis(200),
        attempts: 2,
    };
    let weft = start_weft(vec![dead], config).await;
    let started = Instant::now();
    let m = ask_udp(weft.udp, "outside.example.", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SERVFAIL took {:?}",
        started.elapsed()
    );
    // No upstream at all: SERVFAIL too, and local names still work.
    let weft2 = start_weft(vec![], ForwardConfig::default()).await;
    assert_eq!(
        ask_udp(weft2.udp, "outside.example.", RecordType::A)
            .await
            .response_code,
        ResponseCode::ServFail
    );
    assert_eq!(
        addrs(&ask_udp(weft2.udp, "web.weft.local.", RecordType::A).await).len(),
        1
    );
    weft.server.abort();
    weft2.server.abort();
}

#[tokio::test]
async fn resolve_bytes_for_dns_lookup() {
    let up = start_upstream().await;
    let weft = start_weft(vec![up.addr], ForwardConfig::default()).await;
    let answerer = Answerer::new(weft.gossip.records(), AnswerConfig::default()).unwrap();
    let handle = DnsHandle::new(
        answerer,
        Forwarder::new(vec![up.addr], ForwardConfig::default()),
    );
    // A weft name, answered locally, and another forwarded upstream.
    for (name, want) in [
        ("web.weft.local.", Ipv4Addr::new(10, 32, 0, 5)),
        ("outside.example.", Ipv4Addr::new(192, 0, 2, 7)),
    ] {
        let r = handle
            .resolve(&query(name, RecordType::A), Transport::Tcp)
            .await
            .unwrap();
        assert_eq!(addrs(&Message::from_vec(&r).unwrap()), vec![want], "{name}");
    }
    assert!(handle.resolve(&[1, 2], Transport::Tcp).await.is_none());
    // What `weft status dns` / `weft report` show.
    let report = handle.report();
    assert_eq!(report.domain, "weft.local.");
    assert_eq!(report.ttl, 1);
    assert_eq!(report.upstream, vec![up.addr.to_string()]);
    let names: Vec<(&str, &str, &str)> = report
        .entries
        .iter()
        .map(|e| {
            (
                e.hostname.as_str(),
                e.address.as_str(),
                e.container.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("db.weft.local.", "10.32.0.6", "c2"),
            ("db.weft.local.", "10.32.0.7", "c3"),
            ("web.weft.local.", "10.32.0.5", "c1")
        ]
    );
    assert!(report.entries.iter().all(|e| e.origin == "peer-1"));
    assert_eq!(
        weft_dns::docker_dns_args("weft.local."),
        "--dns=127.0.0.12 --dns-search=weft.local."
    );
    weft.server.abort();
}

/// Runs dig against the server, as a user would.
fn dig(server: SocketAddr, args: &[&str]) -> String {
    let mut dig = std::process::Command::new("dig");
    dig.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=5", "+tries=1"])
        .args(args);
    let out = weft_testkit::netns::command_ok(
        &mut dig,
        &format!("dig {args:?} failed"),
        "dig is missing: install dnsutils (apt-get install -y dnsutils)",
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_names_reverse_names_and_forwarded_names() {
    let up = start_upstream().await;
    let weft = start_weft(vec![up.addr], ForwardConfig::default()).await;
    let (u, t) = (weft.udp, weft.tcp);
    let runs = tokio::task::spawn_blocking(move || {
        (
            dig(u, &["+short", "web.weft.local"]),
            dig(t, &["+short", "+tcp", "web.weft.local"]),
            dig(u, &["+short", "-x", "10.32.0.5"]),
            dig(u, &["+short", "outside.example"]),
            dig(u, &["nobody.weft.local"]),
            dig(u, &["+short", "AAAA", "web.weft.local"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(runs.0.trim(), "10.32.0.5");
    assert_eq!(runs.1.trim(), "10.32.0.5");
    assert_eq!(runs.2.trim(), "web.weft.local.");
    assert_eq!(runs.3.trim(), "192.0.2.7");
    assert!(runs.4.contains("status: NXDOMAIN"), "{}", runs.4);
    assert_eq!(runs.5.trim(), "", "no AAAA for a container");
    weft.server.abort();
}
