//! The fuzz targets: one plain `fn(&[u8])` per decoder of outside bytes. Each must return
//! (never panic) and allocate only what the input's own size justifies, whatever the bytes.

use std::sync::{Arc, OnceLock, RwLock};

use weft_mesh::{Hello, Role, Session};

/// A fuzz target: its name (also its corpus folder) and its function.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name, as in `corpus/NAME` and `fuzz/fuzz_targets/NAME.rs`.
    pub name: &'static str,
    /// What it decodes.
    pub about: &'static str,
    /// The target itself.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "mesh_message",
        about: "mesh messages (Message::decode) on an established connection",
        run: mesh_message,
    },
    Target {
        name: "mesh_session",
        about: "a control connection's byte stream: prologue, Noise handshake frames, framing",
        run: mesh_session,
    },
    Target {
        name: "sleeve_datagram",
        about: "sleeve UDP datagrams: headers, payload checks and chunk reassembly",
        run: sleeve_datagram,
    },
    Target {
        name: "dns_query",
        about: "DNS queries from containers (Answerer::answer, UDP and TCP)",
        run: dns_query,
    },
    Target {
        name: "dns_gossip",
        about: "DNS record gossip between routers",
        run: dns_gossip,
    },
    Target {
        name: "services_gossip",
        about:
            "services gossip between routers (definitions, tasks, digests), then a core fed with it",
        run: services_gossip,
    },
    Target {
        name: "ipam_message",
        about: "IPAM messages between routers, and the persisted ring",
        run: ipam_message,
    },
    Target {
        name: "datapath_announcement",
        about: "data-path state gossip and fastdp heartbeat frames",
        run: datapath_announcement,
    },
    Target {
        name: "docker_plugin",
        about: "Docker network/IPAM plugin request bodies",
        run: docker_plugin,
    },
    Target {
        name: "docker_create",
        about: "container-create bodies through the Docker API proxy",
        run: docker_create,
    },
    Target {
        name: "cni_stdin",
        about: "CNI network configurations on stdin (with prevResult, runtimeConfig) and CNI_ARGS",
        run: cni_stdin,
    },
    Target {
        name: "api_body",
        about: "request bodies of the router's HTTP API",
        run: api_body,
    },
    Target {
        name: "kube_nodes",
        about: "the Kubernetes API's node lists and watch events, and the peers core fed with them",
        run: kube_nodes,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Mesh messages.
pub fn mesh_message(data: &[u8]) {
    if let Ok(m) = weft_mesh::Message::decode(data) {
        // What decodes must encode again to something that decodes the same.
        let again = weft_mesh::Message::decode(&m.encode());
        assert_eq!(again.as_ref(), Ok(&m), "mesh message does not round-trip");
    }
}

fn hello(name: &str) -> Hello {
    Hello {
        name: name.into(),
        nickname: name.into(),
        uid: 1,
        listen_port: 6783,
    }
}

/// A control connection: the first byte picks the role and whether a password is set,
/// the rest arrives in pieces whose sizes come from the input too.
pub fn mesh_session(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Responder
    } else {
        Role::Initiator
    };
    let password = (mode & 2 != 0).then_some("fuzz");
    let mut s = Session::new(role, password, hello("fuzz-local"));
    let _ = s.take_output();
    while !rest.is_empty() {
        let n = (usize::from(rest[0]) * 7 + 1).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let failed = s.receive(piece).is_err();
        let _ = s.take_output();
        if failed {
            return;
        }
    }
}

/// Sleeve datagrams, as a sequence: each is a 2-byte big-endian length and its bytes.
pub fn sleeve_datagram(data: &[u8]) {
    use weft_datapath::sleeve::reassembly::Reassembly;
    use weft_datapath::sleeve::wire;
    let mut reassembly = Reassembly::default();
    for datagram in length_prefixed(data) {
        let Ok(p) = wire::parse(datagram) else {
            continue;
        };
        let payload = &datagram[p.header_len.min(datagram.len())..];
        if wire::check_payload(&p, payload.len()).is_err() {
            continue;
        }
        match p.data {
            Some(d) => {
                let _ = reassembly.push(&d, payload);
                let _ = reassembly.message().len();
            }
            None => {
                let _ = wire::token(payload);
            }
        }
    }
}

/// Splits `data` into pieces each preceded by a 2-byte big-endian length (the last piece
/// takes what is left).
pub fn length_prefixed(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.len() < 2 {
            return None;
        }
        let n = usize::from(u16::from_be_bytes([data[0], data[1]])).min(data.len() - 2);
        let piece = &data[2..2 + n];
        data = &data[2 + n..];
        Some(piece)
    })
}

fn answerer() -> &'static weft_dns::Answerer {
    static A: OnceLock<weft_dns::Answerer> = OnceLock::new();
    A.get_or_init(|| {
        let mut records = weft_dns::Records::new(60_000);
        for (i, name) in ["web", "db", "a.b.c"].iter().enumerate() {
            let key = weft_dns::EntryKey::new(
                "peer1",
                &format!("c{i}"),
                &format!("{name}.weft.local."),
                std::net::Ipv4Addr::new(10, 32, 0, i as u8 + 1),
            );
            if let Ok(key) = key {
                let state = weft_dns::EntryState {
                    version: 1,
                    tombstone: false,
                };
                records.merge(weft_dns::Entry { key, state }, 0);
            }
        }
        weft_dns::Answerer::new(
            Arc::new(RwLock::new(records)),
            weft_dns::AnswerConfig::default(),
        )
        .expect("the default DNS configuration is valid")
    })
}

/// DNS queries, over UDP and TCP.
pub fn dns_query(data: &[u8]) {
    let a = answerer();
    let _ = a.answer(data, weft_dns::Transport::Udp);
    let _ = a.answer(data, weft_dns::Transport::Tcp);
    let _ = weft_dns::answer::servfail(data);
}

/// DNS gossip messages.
pub fn dns_gossip(data: &[u8]) {
    let _ = weft_dns::wire::Message::decode(data);
}

/// Services gossip: decoded (what decodes must encode to the same bytes), then handed to
/// a core that has the sender as a reachable peer, which must not panic either.
pub fn services_gossip(data: &[u8]) {
    use weft_mesh::MeshApp;
    use weft_services::wire::Message;
    if let Ok(m) = Message::decode(data, "fuzz") {
        assert_eq!(m.encode(), data, "services message does not round-trip");
    }
    let mut core = services_core("me", "fuzz");
    core.handle_message(0, weft_services::CHANNEL, "fuzz", data);
    while core.poll_transmit().is_some() || core.poll_effect().is_some() {}
    let _ = core.poll_disconnect();
}

/// A services core `me` that sees `peer` reachable.
pub fn services_core(me: &str, peer: &str) -> weft_services::ServicesCore {
    use weft_mesh::{MeshApp, Reachable, TopologyView};
    let mut core = weft_services::ServicesCore::new(me, None, 0);
    let mut peers = [me, peer].map(|name| Reachable {
        name: name.into(),
        ..Reachable::default()
    });
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    core.handle_topology(
        0,
        &TopologyView {
            me: me.into(),
            peers: peers.to_vec(),
        },
    );
    core
}

/// IPAM messages and the persisted ring.
pub fn ipam_message(data: &[u8]) {
    if let Ok(m) = weft_ipam::Message::decode(data) {
        let _ = m.encode();
    }
    let _ = weft_ipam::PersistedState::decode(data);
}

/// The router's data-path wire module, compiled here as it is: the fuzz crate then does
/// not depend on the whole router (a release build of it takes long on small machines).
#[path = "../../router/src/datapath/wire.rs"]
#[allow(dead_code)]
pub mod datapath_wire;

/// The data path's state gossip (JSON) and fastdp heartbeats (Ethernet frames).
pub fn datapath_announcement(data: &[u8]) {
    use datapath_wire as wire;
    if let Some(m) = wire::StateMsg::decode(data) {
        for mac in &m.macs {
            let _ = wire::parse_mac(mac);
        }
        let _ = wire::parse_mac(&m.bmac);
        let _ = m.offers();
    }
    let _ = wire::Probe::decode(data);
}

/// Docker plugin request bodies.
pub fn docker_plugin(data: &[u8]) {
    weft_docker::plugin::fuzz::decode_bodies(data);
}

fn proxy_config() -> weft_docker::proxy::ProxyConfig {
    weft_docker::proxy::ProxyConfig {
        default_network: "weft".into(),
        default_subnet: "10.32.0.0/12".parse().expect("a valid subnet"),
        range: "10.32.0.0/12".parse().expect("a valid range"),
        dns_server: Some(std::net::Ipv4Addr::new(172, 17, 0, 1)),
        dns_domain: Some("weft.local".into()),
        driver: "weft".into(),
    }
}

/// A CNI plugin's stdin: the network configuration, what an ADD would ask for and its
/// result in every version; the same bytes as CNI_ARGS.
pub fn cni_stdin(data: &[u8]) {
    if let Ok(conf) = weft_cni::NetConf::parse(data) {
        let env = weft_cni::Env {
            command: weft_cni::Command::Add,
            container_id: "fuzz".into(),
            netns: Some("/run/netns/fuzz".into()),
            ifname: "eth0".into(),
            args: weft_cni::Args::default(),
        };
        let plan = weft_cni::AddPlan::new(&env, &conf);
        let _ = weft_cni::dns_name(&env);
        let granted = weft_cni::Granted {
            addrs: plan.ips.clone(),
            sandbox: plan.netns.clone(),
            ..weft_cni::Granted::default()
        };
        let result = granted.result().appended_to(conf.prev_result.clone());
        let _ = result.render(conf.cni_version).to_string();
    }
    let _ = weft_cni::conf::version_of(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(args) = weft_cni::Args::parse(text) {
            let env = weft_cni::Env {
                command: weft_cni::Command::Add,
                container_id: text.chars().take(64).collect(),
                netns: None,
                ifname: "eth0".into(),
                args,
            };
            let _ = weft_cni::dns_name(&env);
        }
    }
}

/// Container-create bodies through the Docker proxy: decide, place, rewrite.
pub fn docker_create(data: &[u8]) {
    use weft_docker::proxy::rewrite;
    if let rewrite::Decision::Attach {
        mut body, specs, ..
    } = rewrite::decide(data)
    {
        let config = proxy_config();
        if let Ok(placements) = rewrite::place(&specs, &[], &config) {
            if let Some(first) = placements.first() {
                rewrite::rewrite_create(
                    &mut body,
                    first.target.name(),
                    None,
                    Some("fuzz"),
                    &config,
                );
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rewrite::query_name(Some(text));
        let _ = rewrite::is_create_path(text);
        let _ = weft_docker::proxy::cidr::parse_weft_cidr(Some(text));
    }
}

/// Request bodies of the router's HTTP API (JSON into the request types).
pub fn api_body(data: &[u8]) {
    let _ = serde_json::from_slice::<weft_api::AttachRequest>(data);
    let _ = serde_json::from_slice::<weft_api::DetachRequest>(data);
    let _ = serde_json::from_slice::<weft_api::ConnectRequest>(data);
    let _ = serde_json::from_slice::<weft_api::ForgetRequest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let items: Vec<&str> = text.split(',').collect();
        let _ = weft_ipam::parse_addr_specs(&items);
    }
}

/// Node lists and watch events from the Kubernetes API: parsed, the list then handed to the peers core twice (as if
/// the mesh and the ring held every listed node, then none), which must not panic either.
pub fn kube_nodes(data: &[u8]) {
    // The same bytes as a watch stream: every line an event applied to an empty list.
    let mut watched = weft_kube::NodeList::default();
    for line in data.split(|b| *b == b'\n') {
        if let Ok((event, version)) = weft_kube::NodeEvent::parse(line) {
            watched.apply(event, version);
        }
    }
    let Ok(list) = weft_kube::NodeList::parse(data) else {
        return;
    };
    let node = list
        .nodes
        .first()
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let mut core = weft_kube::Core::new(
        weft_kube::CoreConfig {
            node,
            port: 6783,
            reclaim_after: 0,
            fixed_targets: Default::default(),
        },
        Default::default(),
    );
    let all: std::collections::BTreeSet<String> = list
        .nodes
        .iter()
        .map(|n| weft_kube::peer_name_for_node(&n.name))
        .collect();
    let full = weft_kube::MeshView {
        reachable: all.clone(),
        space_owners: Some(all.clone()),
    };
    let _ = core.nodes(0, &list, &full);
    let empty = weft_kube::NodeList::default();
    let gone = weft_kube::MeshView {
        reachable: Default::default(),
        space_owners: Some(all),
    };
    let d = core.nodes(1, &empty, &gone);
    for p in d.reclaim {
        core.reclaimed(2, &p, weft_kube::ReclaimOutcome::Done);
    }
}
