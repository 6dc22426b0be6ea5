//! The embedded DNS in the router: the record store and its gossip over the mesh, and the
//! listeners inside containers' namespaces (docs/dns.md).
//!
//! The sans-IO gossip core (`weft_dns::DnsGossip`, a mesh application) is owned by one
//! task that runs it with the mesh's app driver, like IPAM and the path core: payloads,
//! topology changes and its timer go in, its sends leave in the order it made them, and
//! the peers it refuses are dropped. Adds and removals reach it through a queue; the
//! servers read the record store it writes.

mod listen;
mod saved;

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use tokio::sync::{mpsc, oneshot};
use weft_datapath::Netns;
use weft_dns::{
    AnswerConfig, Answerer, DnsError, DnsGossip, ForwardConfig, Forwarder, GossipConfig,
    RemoveFilter, SharedRecords,
};

use crate::mesh::app_driver::AppDriver;
use crate::mesh::MeshHandle;
use crate::registry::Registry;

/// Container id of names added with `weft dns-add IP... -h FQDN` (no container).
pub const EXTERN: &str = "weft:extern";

/// Where the router reads its upstream servers.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Handle the attach pipeline and the API use to register, drop and look up names.
/// `Default` is DNS turned off (`--no-dns`).
#[derive(Clone, Default)]
pub struct DnsHandle {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for DnsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsHandle")
            .field("on", &self.inner.is_some())
            .finish()
    }
}

struct Inner {
    server: Arc<weft_dns::DnsHandle>,
    /// This router's peer name: the origin of its own entries.
    me: String,
    /// The store the gossip core writes.
    records: SharedRecords,
    changes: mpsc::UnboundedSender<(Change, oneshot::Sender<Result<usize, DnsError>>)>,
    /// Serving tasks and current addresses per attached container.
    containers: Mutex<HashMap<String, Attached>>,
    saved_path: PathBuf,
    /// Serialises writes of the saved file (the latest state wins).
    save_lock: tokio::sync::Mutex<()>,
}

/// A change of this router's own names, for the gossip task.
enum Change {
    /// `hostname` → each address, for `container`.
    Add {
        container: String,
        hostname: String,
        addrs: Vec<Ipv4Addr>,
    },
    /// The entries each filter selects.
    Remove(Vec<RemoveFilter>),
}

impl Change {
    /// Hands the change to the core; how many entries it was given or removed.
    fn apply(self, core: &mut DnsGossip, now: weft_mesh::Millis) -> Result<usize, DnsError> {
        match self {
            Change::Add {
                container,
                hostname,
                addrs,
            } => {
                for a in &addrs {
                    core.add(now, &container, &hostname, *a)?;
                }
                Ok(addrs.len())
            }
            Change::Remove(filters) => filters.iter().map(|f| core.remove(now, f)).sum(),
        }
    }
}

struct Attached {
    addrs: BTreeSet<Ipv4Addr>,
    _served: listen::Served,
}

/// Why a DNS request failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsHandleError {
    /// The router was launched with `--no-dns`.
    #[error("DNS is off in this router (it was launched with --no-dns); relaunch it without --no-dns to use weft's DNS")]
    Off,
    /// No DNS socket could be opened in a container's namespace.
    #[error("cannot serve DNS in container {container}: {why}")]
    Serve {
        /// The container.
        container: String,
        /// Why not.
        why: String,
    },
    /// The DNS task stopped (the router is shutting down).
    #[error("DNS is stopping with the router; try again once it is relaunched")]
    Stopped,
    /// The record store refused a name, an id or a removal.
    #[error(transparent)]
    Record(#[from] weft_dns::DnsError),
}

/// What `POST /dns/remove` selects; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct Removal {
    /// Container id.
    pub container: Option<String>,
    /// Fully qualified name.
    pub hostname: Option<String>,
    /// Addresses; none = any.
    pub addrs: Vec<Ipv4Addr>,
}

impl DnsHandle {
    /// Starts DNS (unless `--no-dns`): store, answerer, forwarder from resolv.conf, gossip
    /// over `mesh`, and the listeners of the containers in the registry whose namespace
    /// still exists, with their names.
    pub async fn start(
        config: &crate::config::Config,
        me: &str,
        mesh: Option<MeshHandle>,
        registry: &Registry,
    ) -> anyhow::Result<DnsHandle> {
        if config.no_dns {
            tracing::info!("DNS is off (--no-dns)");
            return Ok(DnsHandle::default());
        }
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let channel = crate::channels::DNS;
        let gossip = DnsGossip::new(me, channel, GossipConfig::default(), wall_ms)?;
        let records = gossip.records();
        let range = config.range();
        let answerer = Answerer::new(
            records.clone(),
            AnswerConfig {
                domain: config.dns_domain.clone(),
                ttl: weft_dns::DEFAULT_TTL,
                reverse_ranges: vec![range],
            },
        )
        .map_err(|e| anyhow::anyhow!("--dns-domain: {e}"))?;
        let upstreams = match weft_dns::forward::read_resolv_conf(
            std::path::Path::new(RESOLV_CONF),
            &weft_dns::LISTEN_ADDRS,
        ) {
            Ok(u) => u.servers,
            Err(e) => {
                tracing::warn!("no upstream DNS servers: {e}");
                Vec::new()
            }
        };
        tracing::info!(domain = %config.dns_domain, upstream = ?upstreams, "DNS starting");
        let server = weft_dns::DnsHandle::new(
            answerer,
            Forwarder::new(upstreams, ForwardConfig::default()),
        );
        if mesh.is_none() {
            tracing::warn!("DNS runs without the mesh: names stay on this host");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(AppDriver::new(gossip, mesh.as_ref(), channel), rx));
        let inner = Arc::new(Inner {
            server,
            me: me.to_string(),
            records,
            changes: tx,
            containers: Mutex::new(HashMap::new()),
            saved_path: saved::path(&config.paths.state_dir),
            save_lock: tokio::sync::Mutex::new(()),
        });
        let handle = DnsHandle { inner: Some(inner) };
        handle.restore(registry).await?;
        Ok(handle)
    }

    /// Queries served as (source, result, count), for /metrics.
    pub fn query_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.inner
            .as_ref()
            .map(|i| i.server.stats.counts())
            .unwrap_or_default()
    }

    /// Whether DNS is on.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// The `dns` section of the report; `None` when DNS is off.
    pub fn report(&self) -> Option<weft_api::DnsReport> {
        self.inner.as_ref().map(|i| i.server.report())
    }

    /// The configured domain (`weft.local.`), when DNS is on.
    pub fn domain(&self) -> Option<String> {
        self.inner
            .as_ref()
            .map(|i| i.server.answerer().domain().to_string())
    }

    /// The table of service names the answerer consults (the services task writes it);
    /// `None` when DNS is off.
    pub fn service_names(&self) -> Option<weft_dns::SharedServiceNames> {
        self.inner
            .as_ref()
            .map(|i| i.server.answerer().service_names().clone())
    }

    /// Addresses of `name` known to weft (`weft dns-lookup`); a short name is tried under
    /// the domain too.
    pub fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsHandleError> {
        Ok(self.on()?.server.answerer().lookup(name))
    }

    /// A container was attached: serve DNS inside its namespace (also without a
    /// hostname, so it can resolve the others) and register `hostname` for `addrs`.
    pub async fn container_attached(
        &self,
        container: &str,
        hostname: Option<&str>,
        addrs: &[Ipv4Net],
        netns: &Netns,
    ) -> Result<(), DnsHandleError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let listening = lock(&inner.containers).contains_key(container);
        if !listening {
            // Binding enters the namespace on a short-lived thread and waits for it.
            let bind = || listen::bind_in(netns);
            let bound = match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(bind),
                _ => bind(),
            }
            .map_err(|why| DnsHandleError::Serve {
                container: container.to_string(),
                why,
            });
            let bound = match bound {
                Ok(b) => b,
                // Another attach of the same container got there first.
                Err(_) if lock(&inner.containers).contains_key(container) => listen::Bound {
                    sockets: Vec::new(),
                    failed: Vec::new(),
                },
                Err(e) => return Err(e),
            };
            for f in &bound.failed {
                tracing::warn!(%container, "DNS listener: {f}");
            }
            if bound.sockets.is_empty() && !lock(&inner.containers).contains_key(container) {
                return Err(DnsHandleError::Serve {
                    container: container.to_string(),
                    why: bound.failed.join("; "),
                });
            }
            if !bound.sockets.is_empty() {
                let served = listen::Served::start(bound, &inner.server, container);
                lock(&inner.containers)
                    .entry(container.to_string())
                    .or_insert(Attached {
                        addrs: BTreeSet::new(),
                        _served: served,
                    });
            }
        }
        if let Some(a) = lock(&inner.containers).get_mut(container) {
            a.addrs.extend(addrs.iter().map(|n| n.addr()));
        }
        if let Some(h) = hostname {
            let fqdn = self.qualify(h);
            let ips: Vec<Ipv4Addr> = addrs.iter().map(|n| n.addr()).collect();
            self.add(container, &fqdn, &ips).await?;
        }
        Ok(())
    }

    /// A container was detached (some or all of its addresses): drop its names for them,
    /// and stop its listeners once it has no address left.
    pub async fn container_detached(&self, container: &str, addrs: &[Ipv4Net]) {
        let Some(inner) = &self.inner else {
            return;
        };
        let removal = Removal {
            container: Some(container.to_string()),
            hostname: None,
            addrs: addrs.iter().map(|n| n.addr()).collect(),
        };
        if let Err(e) = self.remove(&removal).await {
            tracing::warn!(%container, "removing DNS names: {e}");
        }
        let mut containers = lock(&inner.containers);
        let gone = match containers.get_mut(container) {
            Some(a) => {
                for n in addrs {
                    a.addrs.remove(&n.addr());
                }
                a.addrs.is_empty()
            }
            None => false,
        };
        if gone {
            // Dropping the entry aborts its serving tasks, which closes the sockets.
            containers.remove(container);
        }
    }

    /// Registers `hostname` → each of `addrs` for `container` (again is harmless); returns
    /// how many addresses it was given.
    pub async fn add(
        &self,
        container: &str,
        hostname: &str,
        addrs: &[Ipv4Addr],
    ) -> Result<usize, DnsHandleError> {
        let change = Change::Add {
            container: container.to_string(),
            hostname: hostname.to_string(),
            addrs: addrs.to_vec(),
        };
        let added = self.change(change).await?;
        self.save().await;
        Ok(added)
    }

    /// Removes this router's entries that match; returns how many.
    pub async fn remove(&self, removal: &Removal) -> Result<usize, DnsHandleError> {
        self.on()?;
        let hostname = removal.hostname.as_deref().map(|h| self.qualify(h));
        let filters: Vec<RemoveFilter> = if removal.addrs.is_empty() {
            vec![RemoveFilter {
                container: removal.container.clone(),
                hostname: hostname.clone(),
                addr: None,
            }]
        } else {
            removal
                .addrs
                .iter()
                .map(|a| RemoveFilter {
                    container: removal.container.clone(),
                    hostname: hostname.clone(),
                    addr: Some(*a),
                })
                .collect()
        };
        let removed = self.change(Change::Remove(filters)).await?;
        if removed > 0 {
            self.save().await;
        }
        Ok(removed)
    }

    /// `h` as a fully qualified name: a name without a dot is put under the domain
    /// (`c1` → `c1.weft.local.`), as Docker gives container names without one.
    pub fn qualify(&self, h: &str) -> String {
        let h = h.trim();
        match self.domain() {
            Some(d) if !h.trim_end_matches('.').contains('.') && !h.is_empty() => {
                format!("{}.{d}", h.trim_end_matches('.'))
            }
            _ => h.to_string(),
        }
    }

    fn on(&self) -> Result<&Arc<Inner>, DnsHandleError> {
        self.inner.as_ref().ok_or(DnsHandleError::Off)
    }

    /// Hands a change of our own names to the gossip task and waits for it.
    async fn change(&self, change: Change) -> Result<usize, DnsHandleError> {
        let inner = self.on()?;
        let (reply, rx) = oneshot::channel();
        inner
            .changes
            .send((change, reply))
            .map_err(|_| DnsHandleError::Stopped)?;
        Ok(rx.await.map_err(|_| DnsHandleError::Stopped)??)
    }

    /// Writes our own entries to the state dir; a failure is logged (names still work).
    async fn save(&self) {
        let Some(inner) = &self.inner else { return };
        let _guard = inner.save_lock.lock().await;
        let own = weft_dns::read_records(&inner.records).origin_live(&inner.me);
        let entries: Vec<saved::Saved> = own
            .into_iter()
            .map(|(container, hostname, addr)| saved::Saved {
                container,
                hostname,
                addr,
            })
            .collect();
        let path = inner.saved_path.clone();
        let result = tokio::task::spawn_blocking(move || saved::store(&path, entries)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{e:#}"),
            Err(e) => tracing::warn!("saving DNS names: {e}"),
        }
    }

    /// After a restart: listeners and names for the containers of the registry whose
    /// namespace is still the one they were attached in, and the saved names of those
    /// containers and of `dns-add` without a container.
    async fn restore(&self, registry: &Registry) -> anyhow::Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let saved = saved::load(&inner.saved_path)?;
        let mut alive = BTreeSet::new();
        for (id, entry) in registry.iter() {
            let ns = match Netns::open_path(std::path::Path::new(&entry.netns)) {
                Ok(ns) if ns.inode() == entry.ns_inode => ns,
                _ => {
                    tracing::info!(container = %id, netns = %entry.netns, "namespace gone: no DNS for it");
                    continue;
                }
            };
            let addrs: Vec<Ipv4Net> = entry.addrs.iter().filter_map(|a| a.parse().ok()).collect();
            match self
                .container_attached(id, entry.hostname.as_deref(), &addrs, &ns)
                .await
            {
                Ok(()) => {
                    alive.insert(id.clone());
                }
                Err(e) => tracing::warn!(container = %id, "DNS not restored: {e}"),
            }
        }
        for s in saved {
            if s.container == EXTERN || alive.contains(&s.container) {
                if let Err(e) = self.add(&s.container, &s.hostname, &[s.addr]).await {
                    tracing::warn!(name = %s.hostname, "saved DNS name not restored: {e}");
                }
            }
        }
        // Entries of containers that did not come back are no longer ours.
        self.save().await;
        Ok(())
    }
}

/// Runs the gossip core on the mesh and hands it our own changes, until the DNS goes.
async fn run(
    mut app: AppDriver<DnsGossip>,
    mut changes: mpsc::UnboundedReceiver<(Change, oneshot::Sender<Result<usize, DnsError>>)>,
) {
    app.topology_now();
    loop {
        // The core has no effects (`Infallible`): what it does is in the shared store.
        let _: Vec<std::convert::Infallible> = app.flush();
        tokio::select! {
            c = changes.recv() => {
                let Some((change, reply)) = c else { break };
                let now = app.now();
                let _ = reply.send(change.apply(&mut app.core, now));
            }
            _ = app.next() => {}
        }
    }
    tracing::debug!("DNS gossip task stopped");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
