//! Valid inputs for each target, made with weft's own encoders: the starting corpus
//! (`weft-fuzz seed` writes them to `corpus/`, which is checked in).

use weft_mesh::wire::{DigestItem, EdgeInfo};
use weft_mesh::{Hello, Message, PeerEntry, Role, Session};

/// The seed inputs of target `name` (empty for an unknown name).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "mesh_message" => mesh_messages().iter().map(Message::encode).collect(),
        "mesh_session" => mesh_sessions(),
        "sleeve_datagram" => sleeve(),
        "dns_query" => dns_queries(),
        "dns_gossip" => dns_gossip(),
        "services_gossip" => services_gossip(),
        "ipam_message" => ipam(),
        "datapath_announcement" => datapath(),
        "docker_plugin" => docker_plugin(),
        "docker_create" => docker_create(),
        "api_body" => api_bodies(),
        "cni_stdin" => cni_stdin(),
        "kube_nodes" => kube_nodes(),
        _ => Vec::new(),
    }
}

fn mesh_messages() -> Vec<Message> {
    let entry = PeerEntry {
        name: "aa:bb:cc:dd:ee:01".into(),
        nickname: "h1".into(),
        uid: 7,
        version: 3,
        listen_port: 6783,
        edges: vec![EdgeInfo {
            name: "aa:bb:cc:dd:ee:02".into(),
            addr: "172.29.0.2:6783".into(),
            outbound: true,
        }],
    };
    vec![
        Message::Hello(Hello {
            name: "aa:bb:cc:dd:ee:01".into(),
            nickname: "h1".into(),
            uid: 9,
            listen_port: 6783,
        }),
        Message::Heartbeat,
        Message::Refuse {
            reason: "too many connections".into(),
        },
        Message::Gossip {
            entries: vec![entry.clone(), entry],
        },
        Message::DigestHash { hash: 42, count: 2 },
        Message::Digest {
            items: vec![DigestItem {
                name: "aa:bb:cc:dd:ee:01".into(),
                version: 3,
            }],
        },
        Message::Request {
            names: vec!["aa:bb:cc:dd:ee:02".into()],
        },
        Message::Unicast {
            channel: 1,
            src: "a".into(),
            dst: "b".into(),
            ttl: 8,
            payload: b"ipam".to_vec(),
        },
        Message::Broadcast {
            channel: 2,
            src: "a".into(),
            payload: b"dns".to_vec(),
        },
    ]
}

/// The bytes a responder (and an initiator) receives in a real handshake followed by a few
/// messages, with and without a password; the first byte is the target's mode byte.
fn mesh_sessions() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for password in [None, Some("fuzz")] {
        let hello = |n: &str| Hello {
            name: n.into(),
            nickname: n.into(),
            uid: 1,
            listen_port: 6783,
        };
        let mut i = Session::new(Role::Initiator, password, hello("i"));
        let mut r = Session::new(Role::Responder, password, hello("r"));
        let (mut to_r, mut to_i) = (Vec::new(), Vec::new());
        for _ in 0..6 {
            let a = i.take_output();
            to_r.extend_from_slice(&a);
            let _ = r.receive(&a);
            let b = r.take_output();
            to_i.extend_from_slice(&b);
            let _ = i.receive(&b);
        }
        for m in mesh_messages() {
            if i.send(&m).is_ok() {
                to_r.extend_from_slice(&i.take_output());
            }
        }
        let flag = if password.is_some() { 2 } else { 0 };
        out.push([&[flag][..], &to_r].concat());
        out.push([&[flag | 1][..], &to_i].concat());
    }
    out
}

fn sleeve() -> Vec<Vec<u8>> {
    use weft_datapath::sleeve::wire::{self, Common, Data, Kind};
    use weft_datapath::sleeve::PeerId;
    let datagram = |kind: Kind, data: Option<Data>, payload: &[u8]| {
        let common = Common {
            kind,
            flags: 0,
            sender: PeerId(1),
            counter: 5,
        };
        let mut b = vec![0u8; common.header_len()];
        common.write(&mut b);
        if let Some(d) = data {
            d.write(&mut b);
        }
        b.extend_from_slice(payload);
        b
    };
    let data = |offset: u32, total: u32| Data {
        origin: PeerId(1),
        dst: PeerId(2),
        frame_id: 3,
        total_len: total,
        offset,
        ttl: wire::INITIAL_TTL,
    };
    let frame = vec![0xabu8; 100];
    let whole = datagram(Kind::Data, Some(data(0, 100)), &frame);
    let first = datagram(Kind::Data, Some(data(0, 100)), &frame[..60]);
    let second = datagram(Kind::Data, Some(data(60, 100)), &frame[60..]);
    let ping = datagram(Kind::Ping, None, &7u64.to_be_bytes());
    let pong = datagram(Kind::Pong, None, &7u64.to_be_bytes());
    let seq = |ds: &[&Vec<u8>]| -> Vec<u8> {
        let mut out = Vec::new();
        for d in ds {
            out.extend_from_slice(&(d.len() as u16).to_be_bytes());
            out.extend_from_slice(d);
        }
        out
    };
    vec![
        seq(&[&whole]),
        seq(&[&first, &second]),
        seq(&[&ping, &pong]),
        seq(&[&first, &ping, &second, &whole]),
    ]
}

/// A DNS query for `name` of `qtype`, optionally with an EDNS OPT record.
fn dns_query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

fn dns_queries() -> Vec<Vec<u8>> {
    vec![
        dns_query(1, "web.weft.local", 1, false),
        dns_query(2, "web.weft.local", 28, true),
        dns_query(3, "nothere.weft.local", 1, false),
        dns_query(4, "1.0.32.10.in-addr.arpa", 12, false),
        dns_query(5, "weft.local", 6, true),
        dns_query(6, "example.com", 1, false),
    ]
}

fn dns_gossip() -> Vec<Vec<u8>> {
    use weft_dns::wire::Message;
    use weft_dns::{Entry, EntryKey, EntryState};
    let entries: Vec<Entry> = ["web", "db"]
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let key = EntryKey::new(
                "peer1",
                &format!("c{i}"),
                &format!("{n}.weft.local."),
                std::net::Ipv4Addr::new(10, 32, 0, i as u8 + 1),
            )
            .ok()?;
            Some(Entry {
                key,
                state: EntryState {
                    version: i as u64 + 1,
                    tombstone: i == 1,
                },
            })
        })
        .collect();
    [
        Message::Delta {
            origin: "peer1".into(),
            clock: 3,
            entries: entries.clone(),
        },
        Message::Full {
            origin: "peer1".into(),
            clock: 3,
            entries,
        },
        Message::Digest {
            origin: "peer1".into(),
            clock: 3,
            live: 1,
            checksum: 99,
        },
        Message::Request {
            origin: "peer2".into(),
        },
    ]
    .iter()
    .map(Message::encode)
    .collect()
}

/// What a services core sends: its join exchange (names, task set, request), creates,
/// task changes, a removal and a digest.
fn services_gossip() -> Vec<Vec<u8>> {
    use std::net::Ipv4Addr;
    use weft_mesh::{MeshApp, Transmit};
    use weft_services::{EndpointMode, HealthCheck, HealthKind, PortSpec, Publish, ServiceSpec};
    use weft_types::port::Proto;
    // The join exchange first, then every change as a delta.
    let mut core = crate::targets::services_core("peer1", "peer2");
    let spec = |name: &str, vip: Option<u8>| ServiceSpec {
        name: name.into(),
        mode: if vip.is_some() {
            EndpointMode::Vip
        } else {
            EndpointMode::Dnsrr
        },
        subnet: "10.32.0.0/24".parse().unwrap(),
        vip: vip.map(|v| Ipv4Addr::new(10, 32, 0, v)),
        ports: vec![PortSpec {
            proto: Proto::Udp,
            port: 53,
        }],
        published: vec![Publish {
            proto: Proto::Tcp,
            host_port: 8000 + u16::from(vip.unwrap_or(0)),
            port: 80,
        }],
        health: Some(HealthCheck {
            kind: HealthKind::Http {
                path: "/healthz".into(),
            },
            interval_ms: 1000,
        }),
    };
    let _ = core.create(0, spec("web", Some(200)));
    let _ = core.create(0, spec("dns", None));
    let _ = core.add_task(0, "web", Ipv4Addr::new(10, 32, 0, 2), "c1");
    let _ = core.add_task(0, "dns", Ipv4Addr::new(10, 32, 0, 3), "c2");
    core.set_health(0, "web", Ipv4Addr::new(10, 32, 0, 2), true);
    core.remove_task(0, "dns", Ipv4Addr::new(10, 32, 0, 3));
    let _ = core.remove(0, "dns");
    core.handle_timeout(60_000);
    std::iter::from_fn(|| core.poll_transmit())
        .map(|t| match t {
            Transmit::To { payload, .. } | Transmit::Broadcast { payload, .. } => payload,
        })
        .collect()
}

fn ipam() -> Vec<Vec<u8>> {
    use weft_ipam::consensus::Ballot;
    use weft_ipam::messages::RingKind;
    use weft_ipam::{Cidr, Message, Ring};
    let range = Cidr {
        addr: u32::from(std::net::Ipv4Addr::new(10, 32, 0, 0)),
        prefix: 12,
    };
    let ring = Ring::split(range, &["p1".to_string(), "p2".to_string()], 1);
    let ballot = Ballot {
        round: 2,
        proposer: "p1".into(),
    };
    [
        Message::Ring {
            ring: ring.clone(),
            kind: RingKind::Exchange,
        },
        Message::HandoverAck,
        Message::SpaceRequest {
            nonce: 1,
            subnet: range,
            want: Some(range.addr + 5),
        },
        Message::SpaceGranted { nonce: 1, ring },
        Message::Want { mode: 0 },
        Message::Prepare {
            ballot: ballot.clone(),
        },
        Message::Nack {
            ballot: ballot.clone(),
            promised: ballot.clone(),
        },
        Message::Accept {
            ballot: ballot.clone(),
            value: vec!["p1".into(), "p2".into()],
        },
        Message::Accepted { ballot },
    ]
    .iter()
    .map(Message::encode)
    .collect()
}

fn datapath() -> Vec<Vec<u8>> {
    use crate::targets::datapath_wire::{Probe, StateMsg, PING, STATE_VERSION};
    let state = StateMsg {
        v: STATE_VERSION,
        id: 3,
        run: "0123456789abcdef".into(),
        seq: 4,
        bmac: "02:00:00:00:00:01".into(),
        macs: vec!["02:00:00:00:00:02".into(), "02:00:00:00:00:03".into()],
        ciphers: Vec::new(),
        reply: false,
        beats: 0,
    };
    let offers = StateMsg {
        ciphers: vec!["aes-256-gcm".into(), "chacha20-poly1305".into()],
        ..state.clone()
    };
    let probe = Probe {
        dst: [2, 0, 0, 0, 0, 1],
        src: [2, 0, 0, 0, 0, 2],
        kind: PING,
        sender: 3,
        token: 9,
    };
    vec![state.encode(), probe.encode().to_vec(), offers.encode()]
}

fn docker_plugin() -> Vec<Vec<u8>> {
    [
        r#"{"NetworkID":"n1","Options":{"com.docker.network.generic":{"weft.subnet":"10.32.5.0/24"}},"IPv4Data":[{"AddressSpace":"weft","Pool":"10.32.5.0/24","Gateway":"10.32.5.1/24"}],"IPv6Data":[]}"#,
        r#"{"NetworkID":"n1","EndpointID":"e1","Interface":{"Address":"10.32.5.2/24","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080}],"com.docker.network.endpoint.macaddress":"AgAAAAAB"}}"#,
        r#"{"NetworkID":"n1","EndpointID":"e1","SandboxKey":"/var/run/docker/netns/abc","Options":{}}"#,
        r#"{"AddressSpace":"weft","Pool":"10.32.5.0/24","SubPool":"","Options":{},"V6":false}"#,
        r#"{"PoolID":"weft-10.32.5.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#,
        r#"{"PoolID":"weft-10.32.5.0/24","Address":"10.32.5.2"}"#,
        r#"{"NetworkID":"n1"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn docker_create() -> Vec<Vec<u8>> {
    [
        r#"{"Image":"busybox","Env":["WEFT_CIDR=10.32.1.5/24 net:10.32.2.0/24"],"HostConfig":{"NetworkMode":"default"}}"#,
        r#"{"Image":"busybox","Env":["WEAVE_CIDR=net:default"],"Hostname":"web","HostConfig":{}}"#,
        r#"{"Image":"busybox","Env":["WEFT_CIDR=none"]}"#,
        r#"{"Image":"busybox","HostConfig":{"NetworkMode":"bridge","Dns":["8.8.8.8"]}}"#,
        "/v1.41/containers/create?name=web",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn api_bodies() -> Vec<Vec<u8>> {
    [
        r#"{"netns":"/run/netns/c1","addrs":["net:10.32.1.0/24","ip:10.32.2.9/24"],"ifname":"ethwe","hostname":"c1.weft.local"}"#,
        r#"{"container":"c1","netns":"","addrs":[]}"#,
        r#"{"peers":["172.29.0.2","172.29.0.3:6783"],"replace":true}"#,
        r#"{"peers":["172.29.0.2"]}"#,
        "net:default,10.32.0.5/12,ip:10.32.1.1/24",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn cni_stdin() -> Vec<Vec<u8>> {
    [
        r#"{"cniVersion":"1.0.0","name":"weft","type":"weft","socket":"/run/weft/weft.sock","capabilities":{"ips":true,"portMappings":true},"runtimeConfig":{"ips":["10.32.0.9"],"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#,
        r#"{"cniVersion":"0.3.1","name":"t","type":"weft","subnet":"10.40.0.0/24","args":{"cni":{"ips":["10.40.0.5/24"]}}}"#,
        r#"{"cniVersion":"1.0.0","name":"weft","type":"weft","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"vethwe1","mac":"02:00:00:00:00:01"},{"name":"eth0","mac":"02:00:00:00:00:02","sandbox":"/run/netns/x"}],"ips":[{"address":"10.32.0.5/12","gateway":"10.32.0.1","interface":1}],"routes":[{"dst":"0.0.0.0/0","gw":"10.32.0.1"}],"dns":{"nameservers":["127.0.0.11"],"domain":"weft.local","search":["weft.local"]}}}"#,
        r#"{"cniVersion":"1.1.0","name":"weft","type":"weft","cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}]}"#,
        "IgnoreUnknown=1;NOMAD_REGION=global;NOMAD_NAMESPACE=default;NOMAD_JOB_ID=web;NOMAD_GROUP_NAME=frontend;NOMAD_ALLOC_ID=0b6e3ea2-1c47-4d5a-9e0c-3c6f1b0b9d11",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IP=10.32.0.7",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// The recorded node lists of crates/kube (the API's shape), and an API error.
fn kube_nodes() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../kube/tests/data");
    [
        "one-node.json",
        "three-nodes.json",
        "node-c-deleting.json",
        "forbidden.json",
    ]
    .iter()
    .filter_map(|f| std::fs::read(format!("{dir}/{f}")).ok())
    .chain(std::iter::once(
        concat!(
            r#"{"type":"ADDED","object":{"kind":"Node","metadata":{"name":"node-d","resourceVersion":"7"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.4"}]}}}"#,
            "\n",
            r#"{"type":"DELETED","object":{"kind":"Node","metadata":{"name":"node-d","resourceVersion":"8"}}}"#,
            "\n",
            r#"{"type":"BOOKMARK","object":{"kind":"Node","metadata":{"resourceVersion":"9"}}}"#,
            "\n",
            r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#,
            "\n"
        )
        .as_bytes()
        .to_vec(),
    ))
    .collect()
}
