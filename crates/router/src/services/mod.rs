//! Services in the router (docs/services.md, "In the router"): the handle the API, the
//! attach pipeline and the Docker plugin call, and the task that drives the sans-IO
//! services core (`weft_services::ServicesCore`, mesh channel 4) with the mesh's app
//! driver, like DNS and IPAM.
//!
//! The core decides (definitions, tasks, health, the plan); this module carries out its
//! effects: the host's and every attached container's `ip weft_svc` table
//! (`program.rs`), services.json, VIPs given back to IPAM, DNS names (`names.rs`), the
//! host's ingress address in each service subnet (`datapath::ingress`), and the health
//! checks of this host's tasks (`health.rs`).

mod health;
mod names;
mod owner;
mod program;
mod spec;
mod task;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use tokio::sync::{mpsc, oneshot};
use weft_api::{ServiceCreateRequest, ServiceInfo};
use weft_datapath::Netns;
use weft_services::{ServiceError, ServicesCore};

use crate::datapath::DatapathHandle;
use crate::dns::DnsHandle;
use crate::ipam::{IpamHandle, IpamHandleError};
use crate::mesh::MeshHandle;
use crate::registry::Registry;

pub use owner::VipOwner;
use task::Cmd;

/// The services state file in the state dir.
pub const FILE: &str = "services.json";

/// The IPAM owner of a service's VIP.
pub fn vip_owner(name: &str) -> String {
    format!("weft:service:{name}")
}

/// Why a services request failed; each names its input.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// A port, publish, mode, health or duration form is not valid.
    #[error(transparent)]
    Form(#[from] weft_api::services::FormError),
    /// The core refused it (a name in use, an unknown service, a port another service
    /// publishes, a bound).
    #[error(transparent)]
    Core(#[from] ServiceError),
    /// `--subnet` is not a CIDR.
    #[error("--subnet {0:?} is not a CIDR; give one such as 10.32.5.0/24")]
    BadSubnet(String),
    /// `--subnet` is not inside the allocation range.
    #[error("--subnet {subnet} is outside weft's range {range}; give a subnet inside it")]
    SubnetOutsideRange {
        /// The subnet given.
        subnet: Ipv4Net,
        /// The range.
        range: Ipv4Net,
    },
    /// A published host port that something else on this host uses.
    #[error("host port {port}/{proto} is in use by {by}; publish another port")]
    PortInUse {
        /// Protocol.
        proto: weft_api::services::Proto,
        /// The host port.
        port: u16,
        /// Who uses it.
        by: String,
    },
    /// IPAM gave no VIP.
    #[error("no VIP for service {name}: {source}")]
    Vip {
        /// The service.
        name: String,
        /// IPAM's error.
        source: IpamHandleError,
    },
    /// A container joins a service whose subnet holds none of its addresses.
    #[error("container {container} has no address in subnet {subnet} of service {service}; attach it with net:{subnet}")]
    NotInSubnet {
        /// The container.
        container: String,
        /// The service.
        service: String,
        /// The service's subnet.
        subnet: Ipv4Net,
    },
    /// The services task is gone (the router is stopping).
    #[error("services are stopping with the router; try again once it is relaunched")]
    Stopped,
}

/// The services of this router: built once at start-up, cloned where needed.
#[derive(Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

struct Inner {
    cmds: mpsc::UnboundedSender<Cmd>,
    ipam: IpamHandle,
    datapath: DatapathHandle,
    /// The router's control port (a service cannot publish it).
    port: u16,
    /// Names whose VIP is being allocated (their IPAM owner is claimed meanwhile).
    creating: Mutex<BTreeSet<String>>,
    programmer: program::Programmer,
    /// Names whose create here lost to another peer's at the same time, and the winner.
    lost: task::Losses,
}

/// What the services need at start.
pub struct ServicesStart<'a> {
    /// This peer's name.
    pub me: &'a str,
    /// The state directory (services.json).
    pub state_dir: &'a Path,
    /// The router's control port.
    pub port: u16,
    /// The mesh (none: services stay on this host).
    pub mesh: Option<&'a MeshHandle>,
    /// Address management (VIPs, the ingress addresses).
    pub ipam: IpamHandle,
    /// The data path (the bridge, Docker's published ports, the firewall).
    pub datapath: DatapathHandle,
    /// DNS (service names).
    pub dns: DnsHandle,
    /// The containers of the last run, whose tables are programmed again.
    pub registry: &'a Registry,
}

impl Services {
    /// Loads services.json, starts the core's task, the programmer and the health checks,
    /// and takes over the namespaces of the registry's containers.
    pub fn start(s: ServicesStart<'_>) -> anyhow::Result<Services> {
        let path = s.state_dir.join(FILE);
        let saved = task::load(&path)?;
        let core = ServicesCore::new(s.me, saved, 0);
        let programmer = program::Programmer::start();
        let (tx, rx) = mpsc::unbounded_channel();
        let (checks_tx, checks_rx) = tokio::sync::watch::channel(Vec::new());
        let ingress = crate::datapath::ingress::Keeper::start(s.datapath.clone(), s.ipam.clone());
        let lost = task::Losses::default();
        let ctx = task::Ctx {
            lost: lost.clone(),
            path,
            ipam: s.ipam.clone(),
            dns: s.dns,
            programmer: programmer.clone(),
            checks: checks_tx,
            ingress,
        };
        let driver =
            crate::mesh::app_driver::AppDriver::new(core, s.mesh, crate::channels::SERVICES);
        tokio::spawn(task::run(driver, rx, ctx));
        tokio::spawn(health::run(checks_rx, tx.clone()));
        let services = Services {
            inner: Arc::new(Inner {
                cmds: tx,
                ipam: s.ipam,
                datapath: s.datapath,
                port: s.port,
                creating: Mutex::new(BTreeSet::new()),
                programmer,
                lost,
            }),
        };
        for (id, entry) in s.registry.iter() {
            match Netns::open_path(Path::new(&entry.netns)) {
                Ok(ns) if ns.inode() == entry.ns_inode => {
                    services.inner.programmer.attach(id, Arc::new(ns), None);
                }
                _ => {}
            }
        }
        Ok(services)
    }

    /// Runs `f` on the core in its task and answers with its result.
    async fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ServicesCore, weft_mesh::Millis) -> T + Send + 'static,
    ) -> Result<T, ServicesError> {
        let (tx, rx) = oneshot::channel();
        let job: task::Job = Box::new(move |core, now| {
            let value = f(core, now);
            Box::new(move || {
                let _ = tx.send(value);
            })
        });
        self.inner
            .cmds
            .send(Cmd::Job(job))
            .map_err(|_| ServicesError::Stopped)?;
        rx.await.map_err(|_| ServicesError::Stopped)
    }

    /// `weft service create`: checks the request, allocates the VIP (mode vip) and has
    /// the core create the service; a refusal gives the VIP back.
    pub async fn create(&self, req: ServiceCreateRequest) -> Result<ServiceInfo, ServicesError> {
        let mut spec = spec::parse(
            &req,
            self.inner.ipam.range(),
            self.inner.ipam.default_subnet(),
        )?;
        self.check_host_ports(&spec).await?;
        let name = spec.name.clone();
        let check = spec.clone();
        // Refused before a VIP is taken (the core checks again when it creates).
        self.ask(move |core, _| core.precheck(&check)).await??;
        if spec.mode == weft_services::EndpointMode::Vip {
            let owner = vip_owner(&name);
            // IPAM gives one owner one address per subnet: a second create of the name
            // at once would get (and on refusal give back) the first one's VIP.
            if !lock(&self.inner.creating).insert(name.clone()) {
                return Err(ServiceError::Exists(name).into());
            }
            let vip = self
                .inner
                .ipam
                .allocate(
                    &owner,
                    &weft_ipam::AddrSpec::Subnet(crate::ipam::net_to_cidr(spec.subnet)),
                )
                .await;
            let vip = match vip {
                Ok(v) => v,
                Err(source) => {
                    lock(&self.inner.creating).remove(&name);
                    return Err(ServicesError::Vip { name, source });
                }
            };
            spec.vip = Some(vip.addr());
        }
        let vip = spec.vip;
        let created = self.ask(move |core, now| core.create(now, spec)).await;
        lock(&self.inner.creating).remove(&name);
        let result = match created {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ServicesError::Core(e)),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let used = self
                .ask(move |core, _| core.definitions().any(|d| d.spec.vip == vip))
                .await
                .unwrap_or(true);
            if let (Some(v), false) = (vip, used) {
                let _ = self
                    .inner
                    .ipam
                    .release(&vip_owner(&name), Some(Ipv4Net::from(v)))
                    .await;
            }
            return Err(e);
        }
        tracing::info!(service = %name, vip = ?vip, "service created");
        self.inner.lost.forget(&name);
        self.inspect(&name).await
    }

    /// Refuses published host ports this host already uses: weft's own, and Docker's
    /// `-p` mappings on weft networks (other services are the core's to refuse).
    async fn check_host_ports(
        &self,
        spec: &weft_services::ServiceSpec,
    ) -> Result<(), ServicesError> {
        let docker = self.inner.datapath.published();
        for p in &spec.published {
            let by = if p.host_port == self.inner.port
                || weft_api::services::WEFT_PORTS.contains(&p.host_port)
            {
                Some("weft itself (control, sleeve, VXLAN or the status API)".to_string())
            } else {
                docker
                    .iter()
                    .find(|d| d.proto == p.proto && d.host_port == p.host_port)
                    .map(|d| format!("a Docker -p mapping to {}:{}", d.addr, d.port))
                    .or_else(|| {
                        weft_datapath::listening::in_use(p.proto, p.host_port).then(|| {
                            "a program on this host that listens on it (for a Docker -p \
                             mapping on Docker's own bridge: docker-proxy)"
                                .to_string()
                        })
                    })
            };
            if let Some(by) = by {
                return Err(ServicesError::PortInUse {
                    proto: p.proto,
                    port: p.host_port,
                    by,
                });
            }
        }
        Ok(())
    }

    /// `weft service rm`: the core removes it (a tombstone, gossiped); the VIP goes back
    /// to IPAM on the host that allocated it.
    pub async fn remove(&self, name: &str) -> Result<ServiceInfo, ServicesError> {
        let info = self.inspect(name).await?;
        let n = name.to_string();
        self.ask(move |core, now| core.remove(now, &n)).await??;
        tracing::info!(service = %name, "service removed");
        Ok(info)
    }

    /// Every service, sorted by name.
    pub async fn list(&self) -> Result<Vec<ServiceInfo>, ServicesError> {
        let mut list: Vec<ServiceInfo> = self
            .ask(|core, _| {
                let defs: Vec<_> = core.definitions().cloned().collect();
                defs.iter()
                    .map(|d| spec::info(d, core.tasks(&d.spec.name)))
                    .collect()
            })
            .await?;
        for info in &mut list {
            self.inner.lost.tell(info);
        }
        Ok(list)
    }

    /// One service.
    pub async fn inspect(&self, name: &str) -> Result<ServiceInfo, ServicesError> {
        let n = name.to_string();
        let mut info = self
            .ask(move |core, _| match core.definition(&n).cloned() {
                Some(d) => Ok(spec::info(&d, core.tasks(&n))),
                None => Err(ServiceError::Unknown(n)),
            })
            .await?
            .map_err(ServicesError::Core)?;
        self.inner.lost.tell(&mut info);
        Ok(info)
    }

    /// Checks, before a container is attached, that every service named exists and that
    /// one of `subnets` (those the container's addresses come from) is each one's subnet.
    pub async fn check(
        &self,
        container: &str,
        services: &[String],
        subnets: &[Ipv4Net],
    ) -> Result<(), ServicesError> {
        if services.is_empty() {
            return Ok(());
        }
        let wanted = services.to_vec();
        let found = self
            .ask(move |core, _| {
                wanted
                    .iter()
                    .map(|n| match core.definition(n) {
                        Some(d) => Ok((n.clone(), d.spec.subnet)),
                        None => Err(ServiceError::Unknown(n.clone())),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await??;
        for (service, subnet) in found {
            if !subnets.iter().any(|s| subnet.contains(&s.network())) {
                return Err(ServicesError::NotInSubnet {
                    container: container.to_string(),
                    service,
                    subnet,
                });
            }
        }
        Ok(())
    }

    /// `container`'s addresses join `services` as tasks (each in its service's subnet).
    pub async fn join(
        &self,
        container: &str,
        addrs: &[Ipv4Addr],
        services: &[String],
    ) -> Result<(), ServicesError> {
        if services.is_empty() {
            return Ok(());
        }
        let (c, a, s) = (container.to_string(), addrs.to_vec(), services.to_vec());
        self.ask(move |core, now| spec::join(core, now, &c, &a, &s))
            .await??;
        tracing::info!(%container, ?services, "joined services");
        Ok(())
    }

    /// A container is attached in `netns`: its table gets every service's VIP rules
    /// (answers once they are programmed).
    pub async fn container_attached(&self, container: &str, netns: Arc<Netns>) {
        let (tx, rx) = oneshot::channel();
        self.inner.programmer.attach(container, netns, Some(tx));
        let _ = rx.await;
    }

    /// `weft reset`: deletes the service table of every attached container and of the host;
    /// nothing is programmed after (the router stops).
    pub async fn clear_tables(&self) {
        let (tx, rx) = oneshot::channel();
        self.inner.programmer.clear(Some(tx));
        let _ = rx.await;
    }

    /// Some addresses of a container went: their tasks leave.
    pub async fn addresses_removed(&self, container: &str, addrs: &[Ipv4Addr]) {
        let (c, a) = (container.to_string(), addrs.to_vec());
        let _ = self
            .ask(move |core, now| {
                let services: Vec<String> = core
                    .local_tasks()
                    .into_iter()
                    .filter(|t| t.container == c && a.contains(&t.addr))
                    .map(|t| (t.service, t.addr))
                    .map(|(s, addr)| {
                        core.remove_task(now, &s, addr);
                        s
                    })
                    .collect();
                services
            })
            .await;
    }

    /// A container is gone (detached whole, or stopped): its tasks leave and its table is
    /// deleted if its namespace is still there.
    pub async fn container_detached(&self, container: &str) {
        let c = container.to_string();
        let _ = self
            .ask(move |core, now| core.remove_container(now, &c))
            .await;
        let (tx, rx) = oneshot::channel();
        self.inner.programmer.detach(container, Some(tx));
        let _ = rx.await;
    }

    /// After a restart: tasks of containers that are no longer attached leave (`alive`:
    /// the registry's containers with their addresses).
    pub async fn forget_gone(&self, alive: Vec<(String, Vec<Ipv4Addr>)>) {
        let gone = self
            .ask(move |core, now| {
                let mut gone = Vec::new();
                for t in core.local_tasks() {
                    let here = alive
                        .iter()
                        .any(|(id, addrs)| *id == t.container && addrs.contains(&t.addr));
                    if !here {
                        core.remove_task(now, &t.service, t.addr);
                        gone.push((t.service, t.addr));
                    }
                }
                gone
            })
            .await;
        if let Ok(g) = gone {
            if !g.is_empty() {
                tracing::info!(tasks = ?g, "tasks of containers gone while the router was down removed");
            }
        }
    }

    /// What the VIP owner claims: the VIPs of the services this host created, and every
    /// address of a service whose VIP is being allocated.
    async fn claims(&self) -> Vec<crate::owners::Claim> {
        let me_creating: Vec<String> = lock(&self.inner.creating).iter().cloned().collect();
        let mut claims: Vec<crate::owners::Claim> = me_creating
            .iter()
            .map(|n| crate::owners::Claim::all(&vip_owner(n)))
            .collect();
        if let Ok(v) = self
            .ask(|core, _| {
                let me = core.me().to_string();
                core.definitions()
                    .filter(|d| d.origin == me)
                    .filter_map(|d| d.spec.vip.map(|v| (d.spec.name.clone(), v)))
                    .collect::<Vec<_>>()
            })
            .await
        {
            claims.extend(
                v.iter()
                    .map(|(n, vip)| crate::owners::Claim::addr(&vip_owner(n), *vip)),
            );
        }
        claims
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
