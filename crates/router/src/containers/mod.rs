//! The attach pipeline: addresses from IPAM, a veth into the container's namespace, names in
//! DNS, and a record of it all in the registry. Each step undoes the earlier ones when a
//! later one fails, so a failed attach leaves nothing behind.

pub(crate) mod guard;
pub mod reconcile;
pub mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::Ipv4Net;
use weft_api::{AttachRequest, AttachResponse, ContainerReport, DetachRequest, DetachResponse};
use weft_datapath::{AttachSpec, Netns};
use weft_ipam::AddrSpec;

use crate::api::ApiFailure;
use crate::state::Router;
use registry::{Entry, Registry};

/// Attaches a container; answers with every overlay address it now has.
pub async fn attach(router: &Router, req: AttachRequest) -> Result<AttachResponse, ApiFailure> {
    let req = resolve_docker(router, req).await?;
    let parts = router.parts()?;
    weft_datapath::link::validate_ifname(&req.ifname).map_err(bad)?;
    let specs = weft_ipam::parse_addr_specs(&req.addrs).map_err(bad)?;
    let netns = Arc::new(open_netns(&req.netns)?);
    let id = container_id(router, req.container.as_deref(), &req.netns, &netns).await;
    // Recorded before anything changes: a kill -9 from here on is undone at the next start.
    let _pending = parts
        .intents
        .begin(reconcile::Intent {
            op: reconcile::Op::Attach,
            id: id.clone(),
            netns: req.netns.clone(),
            ns_inode: netns.inode(),
            ifname: req.ifname.clone(),
            addrs: Vec::new(),
        })
        .map_err(internal)?;

    // Addresses first: nothing in the kernel changes unless all of them were granted.
    let mut granted: Vec<Ipv4Net> = Vec::new();
    for spec in &specs {
        match parts.ipam.allocate(&id, spec).await {
            Ok(net) if parts.ipam.range().contains(&net) => granted.push(net),
            Ok(net) => {
                release_all(&parts.ipam, &id, &granted).await;
                let _ = parts.ipam.release(&id, Some(net)).await;
                return Err(ApiFailure::bad_request(format!(
                    "address {net} is outside the range {}; choose one inside it",
                    parts.ipam.range()
                )));
            }
            Err(e) => {
                release_all(&parts.ipam, &id, &granted).await;
                return Err(e);
            }
        }
    }

    // Anti-spoofing: the port may send from these addresses (only) before it exists.
    let guard_of = |mac| guard::port_guard(netns.inode(), &req.ifname, mac, &granted);
    if let Err(e) = guard::allow(guard_of(None)).await {
        release_all(&parts.ipam, &id, &granted).await;
        return Err(internal(e));
    }

    // One kernel call per subnet: the container gets only its subnets' routes, so tenants
    // (subnets) stay apart as in Weave.
    let mut by_subnet: BTreeMap<Ipv4Net, Vec<Ipv4Net>> = BTreeMap::new();
    for net in &granted {
        by_subnet.entry(net.trunc()).or_default().push(*net);
    }
    let mut info = None;
    for (subnet, addrs) in by_subnet {
        let spec = AttachSpec {
            ifname: req.ifname.clone(),
            addrs,
            range: subnet,
            mtu: parts.datapath.mtu(),
            bridge: parts.datapath.bridge().to_string(),
            default_gateway: None,
        };
        let ns = netns.clone();
        let result = tokio::task::spawn_blocking(move || weft_datapath::attach(&ns, &spec))
            .await
            .map_err(internal)?;
        match result {
            Ok(i) => info = Some(i),
            Err(e) => {
                guard::revoke(guard_of(None), false).await;
                release_all(&parts.ipam, &id, &granted).await;
                return Err(ApiFailure::bad_request(format!(
                    "cannot attach {}: {e}",
                    req.netns
                )));
            }
        }
    }
    let Some(info) = info else {
        return Err(ApiFailure::bad_request("no address to attach"));
    };
    if let Err(e) = guard::allow(guard_of(Some(info.mac))).await {
        tracing::warn!(container = %id, "{e}");
    }
    parts.datapath.endpoint_added(&id, &netns, &info);

    let entry = {
        let mut reg = parts.registry.lock().await;
        let mut entry = reg.get(&id).cloned().unwrap_or(Entry {
            netns: req.netns.clone(),
            ns_inode: netns.inode(),
            ifname: req.ifname.clone(),
            mac: crate::datapath::wire::fmt_mac(&info.mac),
            addrs: Vec::new(),
            hostname: None,
        });
        for net in &granted {
            let s = net.to_string();
            if !entry.addrs.contains(&s) {
                entry.addrs.push(s);
            }
        }
        entry.mac = crate::datapath::wire::fmt_mac(&info.mac);
        if !req.without_dns {
            if let Some(h) = &req.hostname {
                entry.hostname = Some(h.clone());
            }
        }
        reg.put(&id, entry.clone()).map_err(internal)?;
        entry
    };

    if !req.without_dns {
        let all: Vec<Ipv4Net> = entry.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        if let Err(e) = parts
            .dns
            .container_attached(&id, entry.hostname.as_deref(), &all, &netns)
            .await
        {
            tracing::warn!(container = %id, "name not registered: {}", e.message);
        }
    }
    tracing::info!(container = %id, netns = %req.netns, addrs = ?entry.addrs, "attached");
    Ok(AttachResponse {
        container: id,
        addrs: entry.addrs,
    })
}

/// Detaches some or all addresses of a container.
pub async fn detach(router: &Router, mut req: DetachRequest) -> Result<DetachResponse, ApiFailure> {
    let parts = router.parts()?;
    if let (true, Some(c)) = (req.netns.is_empty(), req.container.clone()) {
        let known = parts.registry.lock().await.get(&c).is_some();
        if !known {
            req.container = Some(docker_container(router, &c).await?.id);
        }
    }
    let specs: Vec<AddrSpec> = if req.addrs.is_empty() {
        Vec::new()
    } else {
        weft_ipam::parse_addr_specs(&req.addrs).map_err(bad)?
    };
    let netns = if req.netns.is_empty() {
        None
    } else {
        Some(open_netns(&req.netns)?)
    };
    let mut reg = parts.registry.lock().await;
    let id = match (&req.container, &netns) {
        (Some(c), _) if reg.get(c).is_some() => c.clone(),
        (_, Some(ns)) => match reg.find_by_inode(ns.inode()) {
            Some(id) => id.to_string(),
            None => {
                return Err(ApiFailure::bad_request(format!(
                    "{} is not attached to weft",
                    req.netns
                )))
            }
        },
        _ => {
            return Err(ApiFailure::bad_request(format!(
                "container {} is not attached to weft",
                req.container.as_deref().unwrap_or("?")
            )))
        }
    };
    let Some(entry) = reg.get(&id).cloned() else {
        return Err(ApiFailure::bad_request(format!(
            "container {id} is not attached"
        )));
    };
    let held: Vec<Ipv4Net> = entry.addrs.iter().filter_map(|a| a.parse().ok()).collect();
    let remove: Vec<Ipv4Net> = if specs.is_empty() {
        held.clone()
    } else {
        held.iter()
            .copied()
            .filter(|a| specs.iter().any(|s| spec_matches(s, a, router)))
            .collect()
    };
    if remove.is_empty() {
        return Err(ApiFailure::bad_request(format!(
            "container {id} has none of the addresses {:?}",
            req.addrs
        )));
    }

    // A kill -9 from here on is carried through at the next start.
    let _pending = parts
        .intents
        .begin(reconcile::Intent {
            op: reconcile::Op::Detach,
            id: id.clone(),
            netns: entry.netns.clone(),
            ns_inode: entry.ns_inode,
            ifname: entry.ifname.clone(),
            addrs: remove.iter().map(|a| a.to_string()).collect(),
        })
        .map_err(internal)?;

    // The namespace may be gone already (container exited): then only bookkeeping is left.
    let ns = match netns {
        Some(ns) => Some(ns),
        None => Netns::open_path(std::path::Path::new(&entry.netns)).ok(),
    };
    let mut link_removed = remove.len() == held.len();
    if let Some(ns) = ns {
        let ifname = entry.ifname.clone();
        let addrs = remove.clone();
        let result =
            tokio::task::spawn_blocking(move || weft_datapath::detach(&ns, &ifname, &addrs))
                .await
                .map_err(internal)?;
        match result {
            Ok(info) => link_removed = info.link_removed,
            Err(e) => tracing::warn!(container = %id, "detach in the kernel: {e}"),
        }
    }
    let mac = crate::datapath::wire::parse_mac(&entry.mac);
    let revoked = guard::port_guard(entry.ns_inode, &entry.ifname, mac, &remove);
    guard::revoke(revoked, link_removed).await;
    for a in &remove {
        if let Err(e) = parts.ipam.release(&id, Some(*a)).await {
            tracing::warn!(container = %id, addr = %a, "release: {}", e.message);
        }
    }
    parts.dns.container_detached(&id, &remove).await;
    if link_removed {
        parts.datapath.endpoint_removed(&id, &entry.mac);
        reg.remove(&id).map_err(internal)?;
    } else {
        let mut e = entry.clone();
        e.addrs
            .retain(|a| !remove.iter().any(|r| r.to_string() == *a));
        reg.put(&id, e).map_err(internal)?;
    }
    tracing::info!(container = %id, removed = ?remove, "detached");
    Ok(DetachResponse {
        removed: remove.iter().map(|a| a.to_string()).collect(),
    })
}

/// The attached containers: those attached by weft and those on Docker's weft networks.
pub async fn list(router: &Router) -> Result<Vec<ContainerReport>, ApiFailure> {
    let parts = router.parts()?;
    let mut out = parts.registry.lock().await.report();
    if let Some(d) = router.docker() {
        let s = d.backend.state().lock().await;
        for (ep, e) in &s.endpoints {
            let id = e
                .container
                .clone()
                .unwrap_or_else(|| format!("endpoint:{ep}"));
            match out.iter_mut().find(|c| c.id == id) {
                Some(c) => c.addrs.extend(e.addr.iter().map(|a| a.to_string())),
                None => out.push(ContainerReport {
                    id,
                    netns: String::new(),
                    ifname: String::new(),
                    mac: e.mac.clone(),
                    addrs: e.addr.iter().map(|a| a.to_string()).collect(),
                    hostname: None,
                }),
            }
        }
    }
    Ok(out)
}

/// The running Docker container `name_or_id`, or an error that says why not.
async fn docker_container(
    router: &Router,
    name_or_id: &str,
) -> Result<weft_docker::engine::Container, ApiFailure> {
    let Some(d) = router.docker() else {
        return Err(ApiFailure::bad_request(format!(
            "{name_or_id:?} would be a Docker container, but this router found no Docker at launch; \
             use --netns PATH or --pid PID, or set DOCKER_HOST and launch again"
        )));
    };
    match d.engine.inspect_container(name_or_id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(ApiFailure::bad_request(format!(
            "no Docker container {name_or_id:?}; see `docker ps`"
        ))),
        Err(e) => Err(ApiFailure::bad_request(format!(
            "cannot inspect Docker container {name_or_id:?}: {e}"
        ))),
    }
}

/// An attach by Docker container name or id becomes one by its namespace, with its full
/// id as weft's id and its name as the DNS name (unless another was given).
async fn resolve_docker(
    router: &Router,
    mut req: AttachRequest,
) -> Result<AttachRequest, ApiFailure> {
    let Some(name) = req.container.clone().filter(|_| req.netns.is_empty()) else {
        return Ok(req);
    };
    let c = docker_container(router, &name).await?;
    if !c.state.running || c.state.pid <= 0 {
        return Err(ApiFailure::bad_request(format!(
            "Docker container {name:?} is not running; start it first"
        )));
    }
    req.netns = format!("/proc/{}/ns/net", c.state.pid);
    req.container = Some(c.id.clone());
    if req.hostname.is_none() {
        let n = c.name.trim_start_matches('/');
        if !n.is_empty() {
            req.hostname = Some(n.to_string());
        }
    }
    Ok(req)
}

/// Whether `addr` is what `spec` names (for detach).
fn spec_matches(spec: &AddrSpec, addr: &Ipv4Net, router: &Router) -> bool {
    let to_net = |c: &weft_ipam::Cidr| crate::ipam::cidr_to_net(c).ok();
    match spec {
        AddrSpec::Claim(c) => to_net(c).is_some_and(|n| n.addr() == addr.addr()),
        AddrSpec::Subnet(c) => to_net(c).is_some_and(|n| n.contains(&addr.addr())),
        AddrSpec::DefaultSubnet => router
            .parts()
            .ok()
            .is_some_and(|p| p.ipam.default_subnet().contains(&addr.addr())),
    }
}

async fn container_id(router: &Router, given: Option<&str>, path: &str, netns: &Netns) -> String {
    if let Some(id) = given {
        return id.to_string();
    }
    if let Ok(parts) = router.parts() {
        if let Some(id) = parts.registry.lock().await.find_by_inode(netns.inode()) {
            return id.to_string();
        }
    }
    match path.strip_prefix("/run/netns/") {
        Some(name) if !name.contains('/') && !name.is_empty() => name.to_string(),
        _ => format!("ns-{:x}", netns.inode()),
    }
}

fn open_netns(path: &str) -> Result<Netns, ApiFailure> {
    if path.is_empty() {
        return Err(ApiFailure::bad_request(
            "no container given: name a container, --netns PATH or --pid PID",
        ));
    }
    Netns::open_path(std::path::Path::new(path)).map_err(bad)
}

async fn release_all(ipam: &crate::ipam::IpamHandle, id: &str, addrs: &[Ipv4Net]) {
    for a in addrs {
        let _ = ipam.release(id, Some(*a)).await;
    }
}

fn bad(e: impl std::fmt::Display) -> ApiFailure {
    ApiFailure::bad_request(e.to_string())
}

fn internal(e: impl std::fmt::Display) -> ApiFailure {
    ApiFailure {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        message: e.to_string(),
    }
}

/// The pieces the pipeline uses, all started.
pub struct Parts {
    /// Address management.
    pub ipam: crate::ipam::IpamHandle,
    /// Kernel data path.
    pub datapath: crate::datapath::DatapathHandle,
    /// Names.
    pub dns: crate::dns::DnsHandle,
    /// Attached containers.
    pub registry: tokio::sync::Mutex<Registry>,
    /// Attaches and detaches in flight (see [`reconcile`]).
    pub intents: Arc<reconcile::Intents>,
}

/// Starts the data path, IPAM and DNS for the pipeline, and loads the registry.
pub async fn start(router: &Router) -> anyhow::Result<Parts> {
    let config = router.config();
    let range: Ipv4Net = config
        .ipalloc_range
        .as_deref()
        .unwrap_or(crate::ipam::DEFAULT_RANGE)
        .parse()
        .map_err(|e| anyhow::anyhow!("--ipalloc-range: {e}"))?;
    let default_subnet = match config.ipalloc_default_subnet.as_deref() {
        Some(s) => Some(
            s.parse::<Ipv4Net>()
                .map_err(|e| anyhow::anyhow!("--ipalloc-default-subnet: {e}"))?,
        ),
        None => None,
    };
    // Before the bridge exists, so a refused launch changes nothing on the host.
    crate::ipam::check_host_routes(
        range.trunc(),
        config.ipalloc_range.is_some(),
        crate::datapath::BRIDGE,
    )?;
    let datapath = crate::datapath::DatapathHandle::start(router).await?;
    let stop = router.clone();
    let ipam = crate::ipam::IpamHandle::start(
        crate::ipam::IpamStart {
            name: router.name().to_string(),
            range: range.trunc(),
            default_subnet,
            init: config.ipalloc_init.clone(),
            launch_peers: config.peers.len(),
            state_dir: config.paths.state_dir.clone(),
        },
        router.mesh().cloned(),
        async move { stop.stopped().await },
    )?;
    let registry = Registry::load(&config.paths.state_dir)?;
    guard::sync(&registry).await.map_err(anyhow::Error::msg)?;
    Ok(Parts {
        ipam,
        datapath,
        dns: crate::dns::DnsHandle::start(config, router.name(), router.mesh().cloned()).await?,
        registry: tokio::sync::Mutex::new(registry),
        intents: reconcile::Intents::load(&config.paths.state_dir)?,
    })
}
