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

use axum::http::StatusCode;
use ipnet::Ipv4Net;
use tokio::sync::{mpsc, oneshot};
use weft_ipam::{
    Action, AddrSpec, Allocator, Cidr, Event, InitMode, IpamConfig, IpamError, PersistedState,
    Reply, RequestId, Status,
};

use crate::api::ApiFailure;
use crate::mesh::MeshHandle;

/// The default allocation range (`--ipalloc-range`).
pub const DEFAULT_RANGE: &str = "10.32.0.0/12";
/// The file in the state directory that holds the ring and this peer's allocations.
pub const STATE_FILE: &str = "ipam.state";
/// How often the core's timers run.
const TICK: Duration = Duration::from_millis(200);
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
    /// `--ipalloc-init` as given (`None`: consensus among this peer and the peers named at
    /// launch).
    pub init: Option<String>,
    /// How many peers were named at launch (for plain `consensus`).
    pub launch_peers: usize,
    /// The state directory.
    pub state_dir: PathBuf,
}

/// `--ipalloc-init` as the core takes it.
pub fn parse_init(init: Option<&str>, launch_peers: usize) -> anyhow::Result<InitMode> {
    let default_n = u32::try_from(launch_peers + 1).unwrap_or(u32::MAX);
    let mode = match init.map(str::trim) {
        None | Some("consensus") => InitMode::Consensus(default_n),
        Some("observer") => InitMode::Observer,
        Some(s) => match s.split_once('=') {
            Some(("consensus", n)) => {
                InitMode::Consensus(n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--ipalloc-init {s}: consensus=N needs a positive number of peers"
                    )
                })?)
            }
            Some(("seed", names)) => {
                let names: Vec<String> = names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect();
                if names.is_empty() {
                    anyhow::bail!("--ipalloc-init {s}: seed= needs at least one peer name");
                }
                InitMode::Seed(names)
            }
            _ => anyhow::bail!(
                "--ipalloc-init {s}: expected consensus, consensus=N, seed=NAME,.. or observer"
            ),
        },
    };
    Ok(mode)
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
        let init = parse_init(s.init.as_deref(), s.launch_peers)?;
        let mut config = IpamConfig::new(net_to_cidr(range), init);
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
        let driver = Driver {
            core,
            state_file,
            mesh,
            status: handle.status.clone(),
            nicknames: handle.nicknames.clone(),
            waiting: BTreeMap::new(),
            next_id: 1,
            start: Instant::now(),
            persist_inflight: false,
            persist_failed: None,
            last_reachable: BTreeSet::new(),
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
    pub async fn request(&self, req: Request) -> Result<Reply, ApiFailure> {
        let (tx, rx) = oneshot::channel();
        self.requests.send((req, tx)).map_err(|_| stopped())?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(failure(&e)),
            Err(_) => Err(stopped()),
        }
    }

    /// An address for `owner` as `spec` asks.
    pub async fn allocate(&self, owner: &str, spec: &AddrSpec) -> Result<Ipv4Net, ApiFailure> {
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
    pub async fn release(&self, owner: &str, addr: Option<Ipv4Net>) -> Result<(), ApiFailure> {
        self.release_addrs(owner, addr).await.map(|_| ())
    }

    /// Gives back `addr` of `owner` (all when `None`); answers with what was released.
    pub async fn release_addrs(
        &self,
        owner: &str,
        addr: Option<Ipv4Net>,
    ) -> Result<Vec<Ipv4Net>, ApiFailure> {
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
    pub async fn lookup(&self, owner: &str) -> Result<Vec<Ipv4Net>, ApiFailure> {
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

    /// `weft reset`: hands this peer's space to reachable peers (waits until they confirmed
    /// or the core gives up), then deletes the state file so a new launch starts fresh.
    pub async fn shutdown(&self) -> Result<(), ApiFailure> {
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
            Err(e) => Err(ApiFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("cannot remove {}: {e}", self.state_file.display()),
            }),
        }
    }

    /// `weft reset --force` (or after a failed handover): this peer's addresses and ring
    /// are forgotten; nothing is written any more and the state file is removed, so the
    /// next launch starts afresh (run `weft rmpeer NAME` on another peer for its space).
    pub async fn discard(&self) -> Result<(), ApiFailure> {
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

/// The task that owns the core.
struct Driver {
    core: Allocator,
    state_file: PathBuf,
    mesh: Option<MeshHandle>,
    status: Arc<Mutex<Option<Status>>>,
    nicknames: Arc<Mutex<BTreeMap<String, String>>>,
    waiting: BTreeMap<RequestId, ReplyTx>,
    next_id: RequestId,
    start: Instant,
    persist_inflight: bool,
    /// A persist that failed: (state, token), tried again after a pause.
    persist_failed: Option<(PersistedState, u64)>,
    last_reachable: BTreeSet<String>,
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
        // Sends go through one queue so they leave in the order the core emitted them.
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Outgoing>();
        if let Some(mesh) = self.mesh.clone() {
            tokio::spawn(send_loop(mesh, out_rx));
        }
        let (persisted_tx, mut persisted_rx) = mpsc::unbounded_channel::<(u64, Option<String>)>();
        let mut deliveries = self
            .mesh
            .as_ref()
            .map(|m| m.subscribe(crate::channels::IPAM));
        let mut topology = self.mesh.as_ref().map(|m| m.watch());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = tokio::time::interval(PERSIST_RETRY);
        tokio::pin!(stopped);

        self.peers_changed(&out_tx, &persisted_tx);
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
                    self.feed(req.into_event(id), &out_tx, &persisted_tx);
                }
                Some(d) = recv_opt(&mut deliveries) => {
                    tracing::trace!(from = %d.from, msg = %describe(&d.payload), "IPAM received");
                    self.feed(Event::Received { from: d.from, payload: d.payload }, &out_tx, &persisted_tx);
                }
                changed = changed_opt(&mut topology) => {
                    if changed {
                        self.peers_changed(&out_tx, &persisted_tx);
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
                        None => self.feed(Event::Persisted { token }, &out_tx, &persisted_tx),
                        Some(e) => {
                            tracing::error!(file = %self.state_file.display(), "cannot persist IPAM state: {e}; retrying (requests wait)");
                            let state = self.core.persisted_state();
                            self.persist_failed = Some((state, token));
                        }
                    }
                }
                _ = retry.tick() => {
                    if !self.persist_inflight {
                        if let Some((_, token)) = self.persist_failed.take() {
                            // Write the newest state under the token the core waits for.
                            let state = self.core.persisted_state();
                            self.persist(state, token, &persisted_tx);
                        }
                    }
                }
                _ = tick.tick() => self.feed(Event::Tick, &out_tx, &persisted_tx),
            }
        }
        tracing::debug!("IPAM task stopped");
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn peers_changed(
        &mut self,
        out: &mpsc::UnboundedSender<Outgoing>,
        persisted: &mpsc::UnboundedSender<(u64, Option<String>)>,
    ) {
        let Some(mesh) = &self.mesh else { return };
        let snap = mesh.snapshot();
        if let Ok(mut nicks) = self.nicknames.lock() {
            for p in &snap.peers {
                nicks.insert(p.name.clone(), p.nickname.clone());
            }
        }
        let reachable: BTreeSet<String> = snap.peers.iter().map(|p| p.name.clone()).collect();
        if reachable == self.last_reachable {
            return;
        }
        self.last_reachable = reachable.clone();
        self.feed(Event::PeersChanged { reachable }, out, persisted);
    }

    fn feed(
        &mut self,
        event: Event,
        out: &mpsc::UnboundedSender<Outgoing>,
        persisted: &mpsc::UnboundedSender<(u64, Option<String>)>,
    ) {
        let now = self.now();
        let actions = self.core.handle(now, event);
        for a in actions {
            match a {
                Action::Send { to, payload } => {
                    let _ = out.send(Outgoing::To(to, payload));
                }
                Action::Broadcast { payload } => {
                    let _ = out.send(Outgoing::All(payload));
                }
                Action::Persist { state, token } => self.persist(state, token, persisted),
                Action::Reply { id, result } => {
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
            *s = Some(self.core.status());
        }
        crate::metrics::ipam_sampled(&self.core);
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

enum Outgoing {
    To(String, Vec<u8>),
    All(Vec<u8>),
}

/// A message's kind, for trace logs.
fn describe(payload: &[u8]) -> String {
    match weft_ipam::Message::decode(payload) {
        Ok(m) => {
            let s = format!("{m:?}");
            s.chars().take(60).collect()
        }
        Err(e) => format!("undecodable: {e}"),
    }
}

async fn send_loop(mesh: MeshHandle, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(o) = rx.recv().await {
        if tracing::enabled!(tracing::Level::TRACE) {
            match &o {
                Outgoing::To(dst, p) => tracing::trace!(to = %dst, msg = %describe(p), "IPAM send"),
                Outgoing::All(p) => tracing::trace!(msg = %describe(p), "IPAM broadcast"),
            }
        }
        let r = match o {
            Outgoing::To(dst, payload) => mesh.send_to(crate::channels::IPAM, &dst, payload).await,
            Outgoing::All(payload) => mesh.broadcast(crate::channels::IPAM, payload).await,
        };
        // The core retries what matters; a peer that went away is normal.
        if let Err(e) = r {
            tracing::debug!("IPAM send: {e}");
        }
    }
}

async fn recv_opt(
    rx: &mut Option<mpsc::UnboundedReceiver<crate::mesh::Delivery>>,
) -> Option<crate::mesh::Delivery> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn changed_opt(
    rx: &mut Option<tokio::sync::watch::Receiver<Arc<crate::mesh::MeshSnapshot>>>,
) -> bool {
    match rx {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn stopped() -> ApiFailure {
    ApiFailure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "address management is not running (the router is stopping); try again after `weft launch`".into(),
    }
}

fn unexpected(r: &Reply) -> ApiFailure {
    ApiFailure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("address management answered unexpectedly: {r:?}"),
    }
}

/// The HTTP form of a core error: the status says whose fault it is, the text what to do.
pub fn failure(e: &IpamError) -> ApiFailure {
    let status = match e {
        IpamError::BadConfig(_)
        | IpamError::OutsideRange { .. }
        | IpamError::NotUsable { .. }
        | IpamError::RmPeerSelf { .. }
        | IpamError::UnknownPeer { .. } => StatusCode::BAD_REQUEST,
        IpamError::AddressInUse { .. } | IpamError::PeerReachable { .. } => StatusCode::CONFLICT,
        IpamError::SubnetFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiFailure {
        status,
        message: e.to_string(),
    }
}

/// The `ipnet` form of an IPAM CIDR.
pub fn cidr_to_net(c: &Cidr) -> Result<Ipv4Net, ApiFailure> {
    Ipv4Net::new(std::net::Ipv4Addr::from(c.addr), c.prefix)
        .map_err(|e| ApiFailure::bad_request(format!("{c:?}: {e}")))
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
                init: Some("seed=solo".into()),
                launch_peers: 0,
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
        assert!(e.message.contains("held by c2"), "{}", e.message);
    }

    #[tokio::test]
    async fn reset_without_peers_fails_and_discard_forgets_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = start(dir.path());
        ipam.allocate("c1", &AddrSpec::DefaultSubnet).await.unwrap();
        let e = ipam.shutdown().await.unwrap_err();
        assert!(e.message.contains("no reachable peer"), "{}", e.message);
        ipam.discard().await.unwrap();
        assert!(!dir.path().join(STATE_FILE).exists());
        // Nothing is written any more.
        let _ = ipam.allocate("c2", &AddrSpec::DefaultSubnet).await;
        assert!(!dir.path().join(STATE_FILE).exists());
    }

    #[test]
    fn init_forms() {
        assert_eq!(parse_init(None, 2).unwrap(), InitMode::Consensus(3));
        assert_eq!(
            parse_init(Some("consensus=5"), 2).unwrap(),
            InitMode::Consensus(5)
        );
        assert_eq!(
            parse_init(Some("seed=a,b"), 0).unwrap(),
            InitMode::Seed(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_init(Some("observer"), 0).unwrap(), InitMode::Observer);
        assert!(parse_init(Some("seed="), 0).is_err());
        assert!(parse_init(Some("consensus=0"), 0).is_err());
        assert!(parse_init(Some("bogus"), 0).is_err());
    }
}
