//! The attach pipeline: addresses from IPAM, a veth into the container's namespace, names in
//! DNS, and a record of it all in the registry. Each step undoes the earlier ones when a
//! later one fails, so a failed attach leaves nothing behind.

pub(crate) mod guard;
pub mod owner;
pub mod reconcile;

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::Ipv4Net;
use weft_api::{AttachRequest, AttachResponse, ContainerReport, DetachRequest, DetachResponse};
use weft_datapath::{AttachSpec, Netns};
use weft_docker::engine::Engine;
use weft_ipam::AddrSpec;

use crate::datapath::DatapathHandle;
use crate::dns::DnsHandle;
use crate::intents::{Intent, Op, Pending};
use crate::ipam::{IpamHandle, IpamHandleError};
use crate::registry::{Entry, Registry};

/// Why an attach, a detach or a listing failed; each names its input.
#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    /// An interface name the kernel would refuse.
    #[error(transparent)]
    Ifname(weft_datapath::Error),
    /// An address form is not `net:default`, `net:CIDR`, `ip:CIDR` or `CIDR`.
    #[error(transparent)]
    Spec(#[from] weft_ipam::AddrError),
    /// Neither a container nor a namespace was named.
    #[error("no container given: name a container, --netns PATH or --pid PID")]
    NoContainer,
    /// The namespace path cannot be opened.
    #[error(transparent)]
    Netns(weft_datapath::Error),
    /// IPAM did not give (or take back) an address.
    #[error(transparent)]
    Ipam(#[from] IpamHandleError),
    /// IPAM gave an address outside the range (a claim of one outside it).
    #[error("address {addr} is outside the range {range}; choose one inside it")]
    OutsideRange {
        /// The address.
        addr: Ipv4Net,
        /// The allocation range.
        range: Ipv4Net,
    },
    /// The kernel refused the veth, addresses or routes.
    #[error("cannot attach {netns}: {source}")]
    Attach {
        /// The namespace path.
        netns: String,
        /// The kernel's error.
        source: weft_datapath::Error,
    },
    /// Nothing was granted to attach.
    #[error("no address to attach")]
    NoAddress,
    /// The container (or namespace) is not in the registry.
    #[error("{0} is not attached to weft")]
    NotAttached(String),
    /// None of the addresses named for detach are the container's.
    #[error("container {container} has none of the addresses {addrs:?}")]
    NoneOfThese {
        /// The container.
        container: String,
        /// The address forms given.
        addrs: Vec<String>,
    },
    /// A Docker container was named but this router has no Docker.
    #[error("{0:?} would be a Docker container, but this router found no Docker at launch; use --netns PATH or --pid PID, or set DOCKER_HOST and launch again")]
    NoDocker(String),
    /// Docker has no such container.
    #[error("no Docker container {0:?}; see `docker ps`")]
    NoSuchDockerContainer(String),
    /// Docker could not be asked about the container.
    #[error("cannot inspect Docker container {name:?}: {source}")]
    DockerInspect {
        /// The name or id given.
        name: String,
        /// Docker's error.
        source: weft_docker::engine::EngineError,
    },
    /// The Docker container is not running (it has no namespace).
    #[error("Docker container {0:?} is not running; start it first")]
    DockerNotRunning(String),
    /// The registry file could not be written (its error names the file).
    #[error("{0}")]
    Registry(anyhow::Error),
    /// A service named with `--service` cannot take the container.
    #[error(transparent)]
    Services(#[from] crate::services::ServicesError),
    /// The blocking task that changes the kernel did not finish.
    #[error("the kernel task for {netns} did not finish: {why}")]
    Task {
        /// The namespace it worked on.
        netns: String,
        /// Why (a panic or cancellation).
        why: String,
    },
}

/// The attach pipeline's handles, built once at start-up.
pub struct Containers {
    /// Address management.
    pub ipam: IpamHandle,
    /// Kernel data path.
    pub datapath: DatapathHandle,
    /// Names.
    pub dns: DnsHandle,
    /// Services: tasks join them, and every container's table holds their VIPs.
    pub services: crate::services::Services,
    /// Attached containers.
    pub registry: tokio::sync::Mutex<Registry>,
    /// This host's dockerd, when it answered at launch (attach by container name).
    pub docker: Option<Arc<Engine>>,
    /// Operations in flight (see [`crate::intents`] and [`reconcile`]).
    pub intents: Arc<crate::intents::Intents>,
    /// Open once start-up reconciliation is done; requests that change state wait for it.
    pub ready: crate::intents::Gate,
}

/// Records `intent` before anything changes: a kill -9 from then on is undone or carried
/// through at the next start, and the record goes when the returned guard is dropped.
fn intend(c: &Containers, intent: Intent) -> Result<Pending, ContainersError> {
    c.intents
        .begin(intent)
        .map_err(|e| ContainersError::Registry(anyhow::anyhow!(e)))
}

/// Attaches a container; answers with every overlay address it now has.
pub async fn attach(c: &Containers, req: AttachRequest) -> Result<AttachResponse, ContainersError> {
    attach_with_gateway(c, req, None).await
}

/// [`attach`], and a default route through `gateway` for the subnet that holds it (CNI
/// containers route through the host's exposed address, so published ports answer).
pub async fn attach_with_gateway(
    c: &Containers,
    req: AttachRequest,
    gateway: Option<std::net::Ipv4Addr>,
) -> Result<AttachResponse, ContainersError> {
    let req = resolve_docker(c, req).await?;
    weft_datapath::link::validate_ifname(&req.ifname).map_err(ContainersError::Ifname)?;
    let specs = weft_ipam::parse_addr_specs(&req.addrs)?;
    let netns = Arc::new(open_netns(&req.netns)?);
    let id = container_id(c, req.container.as_deref(), &req.netns, &netns).await;
    // Services named must exist and be in a subnet the container gets, before anything
    // changes.
    c.services
        .check(&id, &req.services, &requested_subnets(c, &specs))
        .await?;
    // Recorded before anything changes: a kill -9 from here on is undone at the next start.
    let ns = (req.netns.as_str(), netns.inode());
    let _pending = intend(
        c,
        Intent::container(Op::Attach, &id, ns, &req.ifname, vec![]),
    )?;

    // Addresses first: nothing in the kernel changes unless all of them were granted.
    let mut granted: Vec<Ipv4Net> = Vec::new();
    for spec in &specs {
        match c.ipam.allocate(&id, spec).await {
            Ok(net) if c.ipam.range().contains(&net) => granted.push(net),
            Ok(net) => {
                release_all(&c.ipam, &id, &granted).await;
                let _ = c.ipam.release(&id, Some(net)).await;
                return Err(ContainersError::OutsideRange {
                    addr: net,
                    range: c.ipam.range(),
                });
            }
            Err(e) => {
                release_all(&c.ipam, &id, &granted).await;
                return Err(e.into());
            }
        }
    }

    // One kernel call per subnet: the container gets only its subnets' routes, so tenants
    // (subnets) stay apart as in Weave.
    let mut by_subnet: BTreeMap<Ipv4Net, Vec<Ipv4Net>> = BTreeMap::new();
    // Anti-spoofing: the port may send from these addresses (only) before it exists.
    let guard_of = |mac| guard::port_guard(netns.inode(), &req.ifname, mac, &granted);
    if let Err(e) = guard::allow(guard_of(None)).await {
        release_all(&c.ipam, &id, &granted).await;
        return Err(ContainersError::Registry(anyhow::anyhow!(e)));
    }
    for net in &granted {
        by_subnet.entry(net.trunc()).or_default().push(*net);
    }
    let mut info = None;
    for (subnet, addrs) in by_subnet {
        let spec = AttachSpec {
            ifname: req.ifname.clone(),
            addrs,
            range: subnet,
            mtu: c.datapath.mtu(),
            bridge: c.datapath.bridge().to_string(),
            default_gateway: gateway.filter(|g| subnet.contains(g)),
        };
        let ns = netns.clone();
        let result = tokio::task::spawn_blocking(move || weft_datapath::attach(&ns, &spec))
            .await
            .map_err(|e| task(&req.netns, e))?;
        match result {
            Ok(i) => info = Some(i),
            Err(source) => {
                guard::revoke(guard_of(None), false).await;
                release_all(&c.ipam, &id, &granted).await;
                return Err(ContainersError::Attach {
                    netns: req.netns.clone(),
                    source,
                });
            }
        }
    }
    let Some(info) = info else {
        return Err(ContainersError::NoAddress);
    };
    if let Err(e) = guard::allow(guard_of(Some(info.mac))).await {
        tracing::warn!(container = %id, "{e}");
    }
    c.datapath.endpoint_added(&id, &netns, &info);

    let (entry, had) = {
        let mut reg = c.registry.lock().await;
        let had: Vec<String> = reg.get(&id).map(|e| e.addrs.clone()).unwrap_or_default();
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
        reg.put(&id, entry.clone())
            .map_err(ContainersError::Registry)?;
        (entry, had)
    };

    if !req.without_dns {
        let all: Vec<Ipv4Net> = entry.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        if let Err(e) = c
            .dns
            .container_attached(&id, entry.hostname.as_deref(), &all, &netns)
            .await
        {
            tracing::warn!(container = %id, "name not registered: {e}");
        }
    }
    // Its table holds every service's VIP; then it joins the services it serves.
    c.services.container_attached(&id, netns.clone()).await;
    let ips: Vec<std::net::Ipv4Addr> = granted.iter().map(|n| n.addr()).collect();
    if let Err(e) = c.services.join(&id, &ips, &req.services).await {
        // Checked above, so rare (a service removed meanwhile, a bound): what this attach
        // added goes again.
        tracing::warn!(container = %id, "not joined to {:?}: {e}", req.services);
        let added: Vec<String> = entry
            .addrs
            .iter()
            .filter(|a| !had.contains(a))
            .cloned()
            .collect();
        if !added.is_empty() {
            let undo = DetachRequest {
                netns: String::new(),
                addrs: added,
                container: Some(id.clone()),
            };
            if let Err(u) = Box::pin(detach(c, undo)).await {
                tracing::warn!(container = %id, "attach not undone: {u}");
            }
        }
        return Err(e.into());
    }
    tracing::info!(container = %id, netns = %req.netns, addrs = ?entry.addrs, "attached");
    Ok(AttachResponse {
        container: id,
        addrs: entry.addrs,
    })
}

/// Detaches some or all addresses of a container.
pub async fn detach(
    c: &Containers,
    mut req: DetachRequest,
) -> Result<DetachResponse, ContainersError> {
    if let (true, Some(name)) = (req.netns.is_empty(), req.container.clone()) {
        let known = c.registry.lock().await.get(&name).is_some();
        if !known {
            req.container = Some(docker_container(c, &name).await?.id);
        }
    }
    let specs: Vec<AddrSpec> = if req.addrs.is_empty() {
        Vec::new()
    } else {
        weft_ipam::parse_addr_specs(&req.addrs)?
    };
    let netns = if req.netns.is_empty() {
        None
    } else {
        Some(open_netns(&req.netns)?)
    };
    let mut reg = c.registry.lock().await;
    let id = match (&req.container, &netns) {
        (Some(name), _) if reg.get(name).is_some() => name.clone(),
        (_, Some(ns)) => match reg.find_by_inode(ns.inode()) {
            Some(id) => id.to_string(),
            None => return Err(ContainersError::NotAttached(req.netns.clone())),
        },
        _ => {
            return Err(ContainersError::NotAttached(format!(
                "container {}",
                req.container.as_deref().unwrap_or("?")
            )))
        }
    };
    let Some(entry) = reg.get(&id).cloned() else {
        return Err(ContainersError::NotAttached(format!("container {id}")));
    };
    let held: Vec<Ipv4Net> = entry.addrs.iter().filter_map(|a| a.parse().ok()).collect();
    let remove: Vec<Ipv4Net> = if specs.is_empty() {
        held.clone()
    } else {
        held.iter()
            .copied()
            .filter(|a| specs.iter().any(|s| spec_matches(s, a, &c.ipam)))
            .collect()
    };
    if remove.is_empty() {
        return Err(ContainersError::NoneOfThese {
            container: id,
            addrs: req.addrs.clone(),
        });
    }

    // A kill -9 from here on is carried through at the next start.
    let addrs = remove.iter().map(|a| a.to_string()).collect();
    let ns = (entry.netns.as_str(), entry.ns_inode);
    let _pending = intend(
        c,
        Intent::container(Op::Detach, &id, ns, &entry.ifname, addrs),
    )?;

    // The namespace may be gone already (container exited): then only bookkeeping is left.
    let ns = match netns {
        Some(ns) => Some(ns),
        // Only the namespace it was attached in (a /proc/PID path may name another now).
        None => Netns::open_path(std::path::Path::new(&entry.netns))
            .ok()
            .filter(|ns| ns.inode() == entry.ns_inode),
    };
    let mut link_removed = remove.len() == held.len();
    if let Some(ns) = ns {
        let ifname = entry.ifname.clone();
        let addrs = remove.clone();
        let result =
            tokio::task::spawn_blocking(move || weft_datapath::detach(&ns, &ifname, &addrs))
                .await
                .map_err(|e| task(&req.netns, e))?;
        match result {
            Ok(info) => link_removed = info.link_removed,
            Err(e) => tracing::warn!(container = %id, "detach in the kernel: {e}"),
        }
    }
    let mac = crate::datapath::wire::parse_mac(&entry.mac);
    let revoked = guard::port_guard(entry.ns_inode, &entry.ifname, mac, &remove);
    guard::revoke(revoked, link_removed).await;
    for a in &remove {
        if let Err(e) = c.ipam.release(&id, Some(*a)).await {
            tracing::warn!(container = %id, addr = %a, "release: {e}");
        }
    }
    c.dns.container_detached(&id, &remove).await;
    let ips: Vec<std::net::Ipv4Addr> = remove.iter().map(|n| n.addr()).collect();
    c.services.addresses_removed(&id, &ips).await;
    if link_removed {
        c.services.container_detached(&id).await;
        c.datapath.endpoint_removed(&id, &entry.mac);
        reg.remove(&id).map_err(ContainersError::Registry)?;
    } else {
        let mut e = entry.clone();
        e.addrs
            .retain(|a| !remove.iter().any(|r| r.to_string() == *a));
        reg.put(&id, e).map_err(ContainersError::Registry)?;
    }
    tracing::info!(container = %id, removed = ?remove, "detached");
    Ok(DetachResponse {
        removed: remove.iter().map(|a| a.to_string()).collect(),
    })
}

/// The containers attached by weft (the API adds those on Docker's weft networks).
pub async fn list(c: &Containers) -> Vec<ContainerReport> {
    c.registry.lock().await.report()
}

/// The running Docker container `name_or_id`, or an error that says why not.
async fn docker_container(
    c: &Containers,
    name_or_id: &str,
) -> Result<weft_docker::engine::Container, ContainersError> {
    let Some(engine) = &c.docker else {
        return Err(ContainersError::NoDocker(name_or_id.to_string()));
    };
    match engine.inspect_container(name_or_id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(ContainersError::NoSuchDockerContainer(
            name_or_id.to_string(),
        )),
        Err(source) => Err(ContainersError::DockerInspect {
            name: name_or_id.to_string(),
            source,
        }),
    }
}

/// An attach by Docker container name or id becomes one by its namespace, with its full
/// id as weft's id and its name as the DNS name (unless another was given).
async fn resolve_docker(
    containers: &Containers,
    mut req: AttachRequest,
) -> Result<AttachRequest, ContainersError> {
    let Some(name) = req.container.clone().filter(|_| req.netns.is_empty()) else {
        return Ok(req);
    };
    let c = docker_container(containers, &name).await?;
    if !c.state.running || c.state.pid <= 0 {
        return Err(ContainersError::DockerNotRunning(name));
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

/// The subnets the addresses `specs` ask for come from (the default subnet when none).
fn requested_subnets(c: &Containers, specs: &[AddrSpec]) -> Vec<Ipv4Net> {
    if specs.is_empty() {
        return vec![c.ipam.default_subnet()];
    }
    specs
        .iter()
        .filter_map(|s| match s {
            AddrSpec::DefaultSubnet => Some(c.ipam.default_subnet()),
            AddrSpec::Subnet(n) | AddrSpec::Claim(n) => {
                crate::ipam::cidr_to_net(n).ok().map(|n| n.trunc())
            }
        })
        .collect()
}

/// Whether `addr` is what `spec` names (for detach).
fn spec_matches(spec: &AddrSpec, addr: &Ipv4Net, ipam: &IpamHandle) -> bool {
    let to_net = |c: &weft_ipam::Cidr| crate::ipam::cidr_to_net(c).ok();
    match spec {
        AddrSpec::Claim(c) => to_net(c).is_some_and(|n| n.addr() == addr.addr()),
        AddrSpec::Subnet(c) => to_net(c).is_some_and(|n| n.contains(&addr.addr())),
        AddrSpec::DefaultSubnet => ipam.default_subnet().contains(&addr.addr()),
    }
}

async fn container_id(c: &Containers, given: Option<&str>, path: &str, netns: &Netns) -> String {
    if let Some(id) = given {
        return id.to_string();
    }
    if let Some(id) = c.registry.lock().await.find_by_inode(netns.inode()) {
        return id.to_string();
    }
    match path.strip_prefix("/run/netns/") {
        Some(name) if !name.contains('/') && !name.is_empty() => name.to_string(),
        _ => format!("ns-{:x}", netns.inode()),
    }
}

fn open_netns(path: &str) -> Result<Netns, ContainersError> {
    if path.is_empty() {
        return Err(ContainersError::NoContainer);
    }
    Netns::open_path(std::path::Path::new(path)).map_err(ContainersError::Netns)
}

async fn release_all(ipam: &crate::ipam::IpamHandle, id: &str, addrs: &[Ipv4Net]) {
    for a in addrs {
        let _ = ipam.release(id, Some(*a)).await;
    }
}

fn task(netns: &str, e: tokio::task::JoinError) -> ContainersError {
    ContainersError::Task {
        netns: netns.to_string(),
        why: e.to_string(),
    }
}
