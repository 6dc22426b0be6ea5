//! Address management in the router: one task owns the sans-IO [`weft_ipam::Allocator`] and
//! feeds it mesh payloads, topology changes, ticks and persist acknowledgements; the attach
//! pipeline and the HTTP API talk to it through [`IpamHandle`].
//!
//! Actions run in the order the core returns them. A `Persist` is written atomically on a
//! blocking thread and acknowledged with `Persisted` when it is on disk; the core holds every
//! send and reply that depends on it until then, so nothing is answered before it is durable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tokio::sync::{mpsc, oneshot};
use weft_ipam::{
    AddrSpec, Allocator, Cidr, Event, InitMode, IpamApp, IpamConfig, IpamEffect, IpamError,
    PersistedState, Reply, RequestId, Status,
};

use crate::mesh::app_driver::AppDriver;
use crate::mesh::MeshHandle;

/// The file in the state directory that holds the ring and this peer's allocations.
pub const STATE_FILE: &str = "ipam.state";
/// How long before a failed persist is tried again.
const PERSIST_RETRY: Duration = Duration::from_secs(1);

/// A request to the core, before it gets its id.
#[derive(Debug, Clone)]
pub enum Request {
    /// An address in a subnet (the default subnet when `None`).
    Allocate {
        /// Container id.
        owner: String,
        /// Subnet.
        subnet: Option<Cidr>,
    },
    /// Exactly this address.
    Claim {
        /// Container id.
        owner: String,
        /// Address with its subnet's prefix.
        addr: Cidr,
    },
    /// Give back one address, or all of `owner`'s.
    Release {
        /// Container id.
        owner: String,
        /// The address.
        addr: Option<weft_ipam::Addr>,
    },
    /// The addresses `owner` holds.
    Lookup {
        /// Container id.
        owner: String,
    },
    /// Every allocation of this peer, with its owner.
    Holdings,
    /// Create the ring now.
    Prime,
    /// Take over a dead peer's space.
    RmPeer {
        /// The peer's name.
        name: String,
    },
    /// Hand this peer's space to others (`weft reset`).
    Shutdown,
    /// Forget everything (`weft reset --force`, or a handover that failed): stop writing
    /// and remove the state file. Handled by the driver, not the core.
    Discard,
}

impl Request {
    fn into_event(self, id: RequestId) -> Event {
        match self {
            Request::Allocate { owner, subnet } => Event::Allocate { id, owner, subnet },
            Request::Claim { owner, addr } => Event::Claim { id, owner, addr },
            Request::Release { owner, addr } => Event::Release { id, owner, addr },
            Request::Lookup { owner } => Event::Lookup { id, owner },
            Request::Holdings => Event::Holdings { id },
            Request::Prime => Event::Prime { id },
            Request::RmPeer { name } => Event::RmPeer { id, name },
            Request::Shutdown => Event::Shutdown { id },
            // Never reaches the core (the driver answers it).
            Request::Discard => Event::Lookup {
                id,
                owner: String::new(),
            },
        }
    }
}

/// Why an IPAM request failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamHandleError {
    /// The core refused the request (its error says which input and why).
    #[error(transparent)]
    Core(#[from] IpamError),
    /// The IPAM task is gone (the router is stopping).
    #[error(
        "address management is not running (the router is stopping); try again after `weft launch`"
    )]
    Stopped,
    /// The core answered with a reply of another kind.
    #[error("address management answered unexpectedly: {reply}")]
    Unexpected {
        /// The reply, as debug text.
        reply: String,
    },
    /// An address the core handed out is not a valid IPv4 CIDR.
    #[error("{cidr}: {why}")]
    BadCidr {
        /// The CIDR, as debug text.
        cidr: String,
        /// What is wrong with it.
        why: String,
    },
    /// The state file could not be removed after a handover.
    #[error("cannot remove {}: {source}", path.display())]
    RemoveState {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

type ReplyTx = oneshot::Sender<Result<Reply, IpamError>>;

/// Handle the attach pipeline and the API use to get and give back addresses.
#[derive(Clone)]
pub struct IpamHandle {
    range: Ipv4Net,
    default_subnet: Ipv4Net,
    state_file: PathBuf,
    requests: mpsc::UnboundedSender<(Request, ReplyTx)>,
    status: Arc<Mutex<Option<Status>>>,
    nicknames: Arc<Mutex<BTreeMap<String, String>>>,
}

impl std::fmt::Debug for IpamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpamHandle")
            .field("range", &self.range)
            .field("default_subnet", &self.default_subnet)
            .finish()
    }
}

/// What IPAM needs to start.
#[derive(Debug, Clone)]
pub struct IpamStart {
    /// This peer's name.
    pub name: String,
    /// `--ipalloc-range`.
    pub range: Ipv4Net,
    /// `--ipalloc-default-subnet`.
    pub default_subnet: Option<Ipv4Net>,
    /// `--ipalloc-init`, parsed at launch.
    pub init: InitMode,
    /// The state directory.
    pub state_dir: PathBuf,
}

impl IpamHandle {
    /// Restores IPAM from the state directory (or starts fresh) and runs its task on the
    /// current runtime until the router stops.
    pub fn start(
        s: IpamStart,
        mesh: Option<MeshHandle>,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let range = s.range.trunc();
        let default_subnet = s.default_subnet.unwrap_or(range);
        let mut config = IpamConfig::new(net_to_cidr(range), s.init.clone());
        config.default_subnet = Some(net_to_cidr(default_subnet));
        let state_file = s.state_dir.join(STATE_FILE);
        let restored = match std::fs::read(&state_file) {
            Ok(bytes) => Some(PersistedState::decode(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the IPAM state {}: {e}; if it is damaged, move it away (this peer then forgets its addresses)",
                    state_file.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("cannot read {}: {e}", state_file.display()),
        };
        let restored_from_disk = restored.is_some();
        let core =
            Allocator::new(s.name.clone(), config, restored).map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(range = %range, default_subnet = %default_subnet, restored = restored_from_disk, "IPAM starting");

        let (tx, rx) = mpsc::unbounded_channel();
        let handle = IpamHandle {
            range,
            default_subnet,
            state_file: state_file.clone(),
            requests: tx,
            status: Arc::new(Mutex::new(Some(core.status()))),
            nicknames: Arc::new(Mutex::new(BTreeMap::new())),
        };
        let app = AppDriver::new(
            IpamApp::new(core, crate::channels::IPAM),
            mesh.as_ref(),
            crate::channels::IPAM,
        );
        let driver = Driver {
            app,
            state_file,
            mesh,
            status: handle.status.clone(),
            nicknames: handle.nicknames.clone(),
            waiting: BTreeMap::new(),
            next_id: 1,
            persist_inflight: false,
            persist_failed: None,
            shutdowns: BTreeSet::new(),
            left: false,
        };
        tokio::spawn(driver.run(rx, stopped));
        Ok(handle)
    }

    /// The subnet used when a container asks for none.
    pub fn default_subnet(&self) -> Ipv4Net {
        self.default_subnet
    }

    /// The allocation range.
    pub fn range(&self) -> Ipv4Net {
        self.range
    }

    /// Sends one request to the core and waits for its answer.
    pub async fn request(&self, req: Request) -> Result<Reply, IpamHandleError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send((req, tx)).map_err(|_| stopped())?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(IpamHandleError::Core(e)),
            Err(_) => Err(stopped()),
        }
    }

    /// An address for `owner` as `spec` asks.
    pub async fn allocate(&self, owner: &str, spec: &AddrSpec) -> Result<Ipv4Net, IpamHandleError> {
        let owner = owner.to_string();
        let req = match spec {
            AddrSpec::DefaultSubnet => Request::Allocate {
                owner,
                subnet: None,
            },
            AddrSpec::Subnet(c) => Request::Allocate {
                owner,
                subnet: Some(*c),
            },
            AddrSpec::Claim(c) => Request::Claim { owner, addr: *c },
        };
        match self.request(req).await? {
            Reply::Allocated(c) | Reply::Claimed(c) => cidr_to_net(&c),
            other => Err(unexpected(&other)),
        }
    }

    /// Gives back `addr` of `owner` (all of its addresses when `None`).
    pub async fn release(&self, owner: &str, addr: Option<Ipv4Net>) -> Result<(), IpamHandleError> {
        self.release_addrs(owner, addr).await.map(|_| ())
    }

    /// Gives back `addr` of `owner` (all when `None`); answers with what was released.
    pub async fn release_addrs(
        &self,
        owner: &str,
        addr: Option<Ipv4Net>,
    ) -> Result<Vec<Ipv4Net>, IpamHandleError> {
        let req = Request::Release {
            owner: owner.to_string(),
            addr: addr.map(|a| u32::from(a.addr())),
        };
        match self.request(req).await? {
            Reply::Released(v) => v.iter().map(cidr_to_net).collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// The addresses `owner` holds.
    pub async fn lookup(&self, owner: &str) -> Result<Vec<Ipv4Net>, IpamHandleError> {
        match self
            .request(Request::Lookup {
                owner: owner.to_string(),
            })
            .await?
        {
            Reply::Addresses(v) => v.iter().map(cidr_to_net).collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// Every allocation of this peer with its owner (for the owner audit).
    pub async fn holdings(&self) -> Result<Vec<(String, Ipv4Net)>, IpamHandleError> {
        match self.request(Request::Holdings).await? {
            Reply::Holdings(v) => v
                .iter()
                .map(|(o, c)| Ok((o.clone(), cidr_to_net(c)?)))
                .collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// `weft reset`: hands this peer's space to reachable peers (waits until they confirmed
    /// or the core gives up), then deletes the state file so a new launch starts fresh.
    pub async fn shutdown(&self) -> Result<(), IpamHandleError> {
        let r = self.request(Request::Shutdown).await;
        match r {
            Ok(Reply::HandedOver(to)) => {
                tracing::info!(?to, "IPAM space handed over");
            }
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(e),
        }
        match std::fs::remove_file(&self.state_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(IpamHandleError::RemoveState {
                path: self.state_file.clone(),
                source,
            }),
        }
    }

    /// `weft reset --force` (or after a failed handover): this peer's addresses and ring
    /// are forgotten; nothing is written any more and the state file is removed, so the
    /// next launch starts afresh (run `weft rmpeer NAME` on another peer for its space).
    pub async fn discard(&self) -> Result<(), IpamHandleError> {
        self.request(Request::Discard).await.map(|_| ())
    }

    /// The latest status (refreshed after every event the core handled).
    pub fn status(&self) -> Option<Status> {
        self.status.lock().ok().and_then(|s| s.clone())
    }

    /// The nickname of a peer, as last seen in the mesh.
    pub fn nickname(&self, name: &str) -> String {
        self.nicknames
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
            .unwrap_or_default()
    }

    /// The `weft report` section.
    pub fn report(&self) -> Option<weft_api::IpamReport> {
        let st = self.status()?;
        Some(weft_api::IpamReport {
            status: st.line.clone(),
            range: st.range.to_string(),
            default_subnet: st.default_subnet.to_string(),
            entries: st
                .peers
                .iter()
                .map(|p| weft_api::IpamEntry {
                    peer: p.name.clone(),
                    nickname: self.nickname(&p.name),
                    size: p.owned,
                    free: p.free,
                    reachable: p.reachable,
                })
                .collect(),
        })
    }
}

/// The task that owns the core (run by the mesh's application driver).
struct Driver {
    app: AppDriver<IpamApp>,
    state_file: PathBuf,
    mesh: Option<MeshHandle>,
    status: Arc<Mutex<Option<Status>>>,
    nicknames: Arc<Mutex<BTreeMap<String, String>>>,
    waiting: BTreeMap<RequestId, ReplyTx>,
    next_id: RequestId,
    persist_inflight: bool,
    /// A persist that failed: (state, token), tried again after a pause.
    persist_failed: Option<(PersistedState, u64)>,
    /// Ids of `Shutdown` requests (`weft reset`).
    shutdowns: BTreeSet<RequestId>,
    /// This peer handed its space over: nothing is written any more and the state file
    /// is removed, so a later launch starts afresh.
    left: bool,
}

impl Driver {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<(Request, ReplyTx)>,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (persisted_tx, mut persisted_rx) = mpsc::unbounded_channel::<(u64, Option<String>)>();
        let mut retry = tokio::time::interval(PERSIST_RETRY);
        let mut topology = self.mesh.as_ref().map(|m| m.watch());
        tokio::pin!(stopped);

        self.nicknames();
        self.app.topology_now();
        self.effects(&persisted_tx);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                req = requests.recv() => {
                    let Some((req, reply)) = req else { break };
                    if matches!(req, Request::Discard) {
                        self.left = true;
                        if !self.persist_inflight {
                            self.remove_state();
                        }
                        let _ = reply.send(Ok(Reply::HandedOver(Vec::new())));
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    if matches!(req, Request::Shutdown) {
                        self.shutdowns.insert(id);
                    }
                    self.waiting.insert(id, reply);
                    let now = self.app.now();
                    self.app.core.request(now, req.into_event(id));
                }
                _ = self.app.next() => {}
                changed = changed_opt(&mut topology) => {
                    if changed {
                        self.nicknames();
                    } else {
                        topology = None;
                    }
                }
                Some((token, err)) = persisted_rx.recv() => {
                    self.persist_inflight = false;
                    if self.left {
                        self.remove_state();
                    }
                    match err {
                        None => {
                            let now = self.app.now();
                            self.app.core.request(now, Event::Persisted { token });
                        }
                        Some(e) => {
                            tracing::error!(file = %self.state_file.display(), "cannot persist IPAM state: {e}; retrying (requests wait)");
                            let state = self.app.core.allocator().persisted_state();
                            self.persist_failed = Some((state, token));
                        }
                    }
                }
                _ = retry.tick() => {
                    if !self.persist_inflight {
                        if let Some((_, token)) = self.persist_failed.take() {
                            // Write the newest state under the token the core waits for.
                            let state = self.app.core.allocator().persisted_state();
                            self.persist(state, token, &persisted_tx);
                        }
                    }
                }
            }
            self.effects(&persisted_tx);
        }
        tracing::debug!("IPAM task stopped");
    }

    /// Peers' nicknames, for the status.
    fn nicknames(&mut self) {
        let Some(mesh) = &self.mesh else { return };
        let snap = mesh.snapshot();
        if let Ok(mut nicks) = self.nicknames.lock() {
            for p in snap.peers.iter() {
                nicks.insert(p.name.clone(), p.nickname.clone());
            }
        }
    }

    /// Carries out the core's effects in order: writes and replies.
    fn effects(&mut self, persisted: &mpsc::UnboundedSender<(u64, Option<String>)>) {
        for e in self.app.flush() {
            match e {
                IpamEffect::Persist { state, token } => self.persist(state, token, persisted),
                IpamEffect::Reply { id, result } => {
                    if self.shutdowns.remove(&id) && result.is_ok() {
                        self.left = true;
                        if !self.persist_inflight {
                            self.remove_state();
                        }
                    }
                    if let Some(tx) = self.waiting.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        if let Ok(mut s) = self.status.lock() {
            *s = Some(self.app.core.allocator().status());
        }
        crate::metrics::ipam_sampled(self.app.core.allocator());
    }

    fn persist(
        &mut self,
        state: PersistedState,
        token: u64,
        done: &mpsc::UnboundedSender<(u64, Option<String>)>,
    ) {
        if self.left {
            // Nothing to keep: acknowledge without writing.
            let _ = done.send((token, None));
            return;
        }
        self.persist_inflight = true;
        let path = self.state_file.clone();
        let done = done.clone();
        let bytes = state.encode();
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let r = write_state(&path, &bytes).err();
            tracing::trace!(
                token,
                bytes = bytes.len(),
                ms = t.elapsed().as_millis() as u64,
                "IPAM persisted"
            );
            let _ = done.send((token, r));
        });
    }
}

impl Driver {
    fn remove_state(&self) {
        match std::fs::remove_file(&self.state_file) {
            Ok(()) => tracing::info!(file = %self.state_file.display(), "IPAM state removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %self.state_file.display(), "cannot remove: {e}"),
        }
    }
}

fn write_state(path: &Path, bytes: &[u8]) -> Result<(), String> {
    crate::identity::write_atomic(path, bytes).map_err(|e| e.to_string())
}

async fn changed_opt(
    rx: &mut Option<tokio::sync::watch::Receiver<Arc<crate::mesh::MeshSnapshot>>>,
) -> bool {
    match rx {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn stopped() -> IpamHandleError {
    IpamHandleError::Stopped
}

fn unexpected(r: &Reply) -> IpamHandleError {
    IpamHandleError::Unexpected {
        reply: format!("{r:?}"),
    }
}

/// The `ipnet` form of an IPAM CIDR.
pub fn cidr_to_net(c: &Cidr) -> Result<Ipv4Net, IpamHandleError> {
    Ipv4Net::new(std::net::Ipv4Addr::from(c.addr), c.prefix).map_err(|e| IpamHandleError::BadCidr {
        cidr: format!("{c:?}"),
        why: e.to_string(),
    })
}

/// The IPAM form of an `ipnet` CIDR.
pub fn net_to_cidr(n: Ipv4Net) -> Cidr {
    Cidr {
        addr: u32::from(n.addr()),
        prefix: n.prefix_len(),
    }
}

/// The launch check: refuses a range that overlaps a route on this host (routes on the
/// weft bridge itself are ours and ignored). When the user chose the range by hand, an
/// overlap is only a warning (they may mean it), as in Weave.
pub fn check_host_routes(range: Ipv4Net, chosen: bool, bridge: &str) -> anyhow::Result<()> {
    let routes = host_routes(bridge)?;
    match weft_ipam::check_range(&net_to_cidr(range), &routes) {
        Ok(()) => Ok(()),
        Err(e) if chosen => {
            tracing::warn!("{e}");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// This host's IPv4 routes (main table), without those on `bridge`.
fn host_routes(bridge: &str) -> anyhow::Result<Vec<weft_ipam::HostRoute>> {
    let mut h = weft_datapath::nl::Handle::current()?;
    let routes = weft_datapath::route::list_main(&mut h)?;
    Ok(routes
        .into_iter()
        .map(|(dst, oif)| weft_ipam::HostRoute {
            dst: net_to_cidr(dst),
            dev: ifname(oif),
        })
        .filter(|r| r.dev != bridge)
        .collect())
}

fn ifname(index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("#{index}");
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into buf.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(dir: &Path) -> IpamHandle {
        IpamHandle::start(
            IpamStart {
                name: "solo".into(),
                range: "10.32.0.0/12".parse().unwrap(),
                default_subnet: None,
                init: InitMode::Seed(vec!["solo".into()]),
                state_dir: dir.to_path_buf(),
            },
            None,
            std::future::pending(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn allocations_are_on_disk_before_the_answer_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = start(dir.path());
        let a = ipam.allocate("c1", &AddrSpec::DefaultSubnet).await.unwrap();
        let on_disk =
            PersistedState::decode(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert!(on_disk.allocations.iter().any(|p| p.owner == "c1"));
        let claim: AddrSpec = "ip:10.32.0.9/12".parse().unwrap();
        let e = ipam.allocate("c2", &claim).await;
        assert!(e.is_ok() || a.addr().to_string() == "10.32.0.9");
        // A second driver on the same directory (a restart) keeps both addresses.
        let again = start(dir.path());
        assert_eq!(again.lookup("c1").await.unwrap(), vec![a]);
        let e = again.allocate("c3", &claim).await.unwrap_err();
        assert!(e.to_string().contains("held by c2"), "{e}");
    }

    #[tokio::test]
    async fn reset_without_peers_fails_and_discard_forgets_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = start(dir.path());
        ipam.allocate("c1", &AddrSpec::DefaultSubnet).await.unwrap();
        let e = ipam.shutdown().await.unwrap_err();
        assert!(e.to_string().contains("no reachable peer"), "{e}");
        ipam.discard().await.unwrap();
        assert!(!dir.path().join(STATE_FILE).exists());
        // Nothing is written any more.
        let _ = ipam.allocate("c2", &AddrSpec::DefaultSubnet).await;
        assert!(!dir.path().join(STATE_FILE).exists());
    }
}
