//! The mesh driver: owns the control-port listener, dials targets, runs one task per
//! connection (Noise session over TCP), and feeds the sans-IO [`weft_mesh::Mesh`] core
//! with events and timers, carrying out its actions.
//!
//! Other router modules use [`MeshHandle`]: `transmit` for application payloads,
//! `subscribe` for the payloads of a channel, `watch` for topology snapshots, `disconnect`
//! to drop a peer that broke a core's bounds.

pub mod app_driver;
mod conn;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use weft_mesh::{
    Action, ConnEvent, ConnId, ConnStatus, Mesh, MeshConfig, Message, Neighbour, PeerEntry,
    SendError, TargetStatus, Timing, TopologyView, Transmit,
};

use crate::metrics::Metrics;

/// How often the core's timers run.
const TICK_MS: u64 = 250;
const TICK: Duration = Duration::from_millis(TICK_MS);
/// A connection with nothing else to say sends a heartbeat after this long (ms). The
/// digest hash goes every 2 s anyway, so an idle connection carries one message per 2 s
/// each way; dead after 5 s of silence still.
const HEARTBEAT_MS: u64 = 2_000;
/// Longest a dial (resolve + connect) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A payload another peer sent to this one on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Channel it was sent on.
    pub channel: u16,
    /// Origin peer name.
    pub from: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The mesh as the rest of the router sees it; replaced after every change. The topology
/// parts are rebuilt only when the topology changed (shared otherwise), so an idle mesh
/// costs no copy of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshSnapshot {
    /// Reachable peers (this one included), sorted by name.
    pub peers: Arc<Vec<PeerEntry>>,
    /// This router's connections, dials and recent failures.
    pub connections: Vec<ConnStatus>,
    /// Addresses dialled.
    pub targets: Vec<TargetStatus>,
    /// Directly connected peers with their underlay addresses.
    pub neighbours: Arc<Vec<Neighbour>>,
    /// Next hop toward each reachable peer.
    pub routes: Arc<Vec<(String, String)>>,
    /// The topology as the cores on the mesh take it (a new `Arc` per topology change).
    pub view: Arc<TopologyView>,
}

enum Cmd {
    Connect {
        targets: Vec<String>,
        replace: bool,
    },
    Forget {
        targets: Vec<String>,
        reply: oneshot::Sender<Vec<String>>,
    },
    Transmit {
        transmit: Transmit,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    Disconnect(weft_mesh::Disconnect),
}

/// Handle to the running mesh, cheap to clone.
#[derive(Clone)]
pub struct MeshHandle {
    cmd: mpsc::UnboundedSender<Cmd>,
    snapshot: watch::Receiver<Arc<MeshSnapshot>>,
    subscribers: Arc<Mutex<HashMap<u16, mpsc::UnboundedSender<Delivery>>>>,
    default_port: u16,
    metrics: Arc<Metrics>,
}

/// Why a mesh request failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A target is not `HOST[:PORT]`.
    #[error("invalid peer {peer:?}: {why}")]
    BadTarget {
        /// The input.
        peer: String,
        /// What is wrong.
        why: String,
    },
    /// The driver stopped.
    #[error("the mesh is not running")]
    Stopped,
    /// The core refused to send.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// `HOST[:PORT]` in the form targets are kept in (`host:port`, IPv6 in brackets).
pub fn normalize_target(peer: &str, default_port: u16) -> Result<String, MeshError> {
    let addr =
        crate::config::PeerAddr::parse(peer, default_port).map_err(|why| MeshError::BadTarget {
            peer: peer.to_string(),
            why,
        })?;
    Ok(addr.to_string())
}

impl MeshHandle {
    /// The router's counters, for the modules that run on the mesh.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<MeshSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// A receiver that sees every new snapshot (topology changes).
    pub fn watch(&self) -> watch::Receiver<Arc<MeshSnapshot>> {
        self.snapshot.clone()
    }

    /// Payloads that arrive on `channel` (one subscriber per channel; a new one replaces
    /// the old).
    pub fn subscribe(&self, channel: u16) -> mpsc::UnboundedReceiver<Delivery> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut s) = self.subscribers.lock() {
            s.insert(channel, tx);
        }
        rx
    }

    /// Sends what a core asked to: a payload to one peer (routed through the mesh) or to
    /// every other reachable peer.
    pub async fn transmit(&self, transmit: Transmit) -> Result<(), MeshError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Transmit { transmit, reply })
            .map_err(|_| MeshError::Stopped)?;
        Ok(rx.await.map_err(|_| MeshError::Stopped)??)
    }

    /// Drops a peer that broke a bound of a core's protocol: its connection to us, if
    /// direct, is refused and closed with the reason.
    pub fn disconnect(&self, d: weft_mesh::Disconnect) -> Result<(), MeshError> {
        self.cmd
            .send(Cmd::Disconnect(d))
            .map_err(|_| MeshError::Stopped)
    }

    /// `weft connect`: adds (or with `replace`, replaces) explicit targets.
    pub fn connect(&self, peers: &[String], replace: bool) -> Result<(), MeshError> {
        let targets = peers
            .iter()
            .map(|p| normalize_target(p, self.default_port))
            .collect::<Result<Vec<_>, _>>()?;
        self.cmd
            .send(Cmd::Connect { targets, replace })
            .map_err(|_| MeshError::Stopped)
    }

    /// `weft forget`: stops dialling targets; returns those that were not targets.
    pub async fn forget(&self, peers: &[String]) -> Result<Vec<String>, MeshError> {
        let targets = peers
            .iter()
            .map(|p| normalize_target(p, self.default_port))
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Forget { targets, reply })
            .map_err(|_| MeshError::Stopped)?;
        rx.await.map_err(|_| MeshError::Stopped)
    }
}

/// Settings of the driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Peer name.
    pub name: String,
    /// Nickname.
    pub nickname: String,
    /// Control port.
    pub port: u16,
    /// Mesh password.
    pub password: Option<String>,
    /// Connection limit.
    pub conn_limit: u32,
    /// Dial gossiped addresses.
    pub discovery: bool,
    /// Initial explicit targets, parsed at launch.
    pub peers: Vec<crate::config::PeerAddr>,
}

/// Binds the control port and starts the driver; it stops when `stop` resolves.
pub async fn start(
    cfg: DriverConfig,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<MeshHandle> {
    let listener = TcpListener::bind(("0.0.0.0", cfg.port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on control port {} ({e}); another router or program uses it: \
             stop it or launch with --port",
                cfg.port
            )
        })?;
    let targets: Vec<String> = cfg.peers.iter().map(|p| p.to_string()).collect();
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let mesh = Mesh::new(MeshConfig {
        name: cfg.name.clone(),
        nickname: cfg.nickname.clone(),
        uid: rand::random(),
        listen_port: cfg.port,
        conn_limit: cfg.conn_limit as usize,
        discovery: cfg.discovery,
        initial_version: wall_ms,
        timing: Timing {
            heartbeat: HEARTBEAT_MS,
            ..Timing::default()
        },
    });
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (snap_tx, snap_rx) = watch::channel(Arc::new(MeshSnapshot::default()));
    let handle = MeshHandle {
        cmd: cmd_tx,
        snapshot: snap_rx,
        subscribers: Arc::new(Mutex::new(HashMap::new())),
        default_port: cfg.port,
        metrics: metrics.clone(),
    };
    // Bounded: a peer that floods us is slowed down by TCP, not buffered here.
    let (ev_tx, ev_rx) = mpsc::channel(conn::EVENT_QUEUE);
    let driver = Driver {
        mesh,
        // On the wall clock's grid of 10 s (a multiple of the digest period and the
        // tick), as the cores' clocks are on its second (see `aligned_epoch`).
        start: app_driver::aligned_epoch(10_000),
        conns: HashMap::new(),
        next_conn: 1,
        events: ev_tx,
        password: cfg.password.clone(),
        metrics,
        snapshot: snap_tx,
        subscribers: handle.subscribers.clone(),
    };
    tokio::spawn(driver.run(listener, cmd_rx, ev_rx, targets, stop));
    tracing::info!(port = cfg.port, "mesh listening");
    Ok(handle)
}

struct Driver {
    mesh: Mesh,
    start: Instant,
    conns: HashMap<ConnId, mpsc::Sender<Message>>,
    next_conn: ConnId,
    events: mpsc::Sender<ConnEvent>,
    password: Option<String>,
    metrics: Arc<Metrics>,
    snapshot: watch::Sender<Arc<MeshSnapshot>>,
    subscribers: Arc<Mutex<HashMap<u16, mpsc::UnboundedSender<Delivery>>>>,
}

impl Driver {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        listener: TcpListener,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut events: mpsc::Receiver<ConnEvent>,
        targets: Vec<String>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let now = self.now();
        self.mesh.add_targets(now, &targets, false);
        self.apply();
        self.publish(true);
        // Ticks on the grid of the clock (so the digests of every connection leave
        // together, and at the same moment as other routers'); a late tick does not shift
        // the grid.
        let since = self.start.elapsed().as_millis() as u64;
        let first = self.start + Duration::from_millis((since / TICK_MS + 1) * TICK_MS);
        let mut tick = tokio::time::interval_at(first.into(), TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_publish = Instant::now();
        tokio::pin!(stop);
        loop {
            // Messages (heartbeats, gossip, payloads) are most events: they refresh the
            // snapshot only when they changed the topology.
            let mut changed = false;
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {
                    let now = self.now();
                    self.mesh.tick(now);
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => self.accepted(stream, addr),
                    Err(e) => tracing::warn!("accept on the control port failed: {e}"),
                },
                Some(ev) = events.recv() => {
                    changed = !matches!(ev, ConnEvent::Msg { .. });
                    self.on_event(ev);
                }
                Some(cmd) = cmds.recv() => {
                    changed = !matches!(cmd, Cmd::Transmit { .. });
                    self.on_cmd(cmd);
                }
            }
            let (topology, conns) = self.apply();
            if topology || changed || conns || last_publish.elapsed() >= Duration::from_secs(1) {
                self.publish(topology || changed);
                last_publish = Instant::now();
            }
        }
        // Dropping the senders closes every connection task.
        self.conns.clear();
        tracing::info!("mesh stopped");
    }

    fn on_event(&mut self, ev: ConnEvent) {
        match &ev {
            ConnEvent::Up {
                addr,
                outbound,
                hello,
                ..
            } => {
                tracing::info!(peer = %hello.name, nickname = %hello.nickname, %addr, outbound, "connection up");
            }
            ConnEvent::Failed {
                conn,
                target,
                addr,
                outbound,
                reason,
            } => {
                let who = target
                    .clone()
                    .or(addr.map(|a| a.to_string()))
                    .unwrap_or_default();
                self.conns.remove(conn);
                tracing::warn!(
                    "connection {} {who} failed: {reason}",
                    if *outbound { "to" } else { "from" }
                );
            }
            ConnEvent::Closed { conn, reason } => {
                tracing::info!(conn, "connection closed: {reason}");
                self.conns.remove(conn);
            }
            ConnEvent::Msg { .. } => {
                self.metrics
                    .mesh_messages_received
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = self.now();
        self.mesh.handle_conn(now, ev);
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        let now = self.now();
        match cmd {
            Cmd::Connect { targets, replace } => {
                tracing::info!(?targets, replace, "connect requested");
                self.mesh.add_targets(now, &targets, replace);
            }
            Cmd::Forget { targets, reply } => {
                tracing::info!(?targets, "forget requested");
                let _ = reply.send(self.mesh.forget_targets(&targets));
            }
            Cmd::Transmit { transmit, reply } => {
                let _ = reply.send(self.mesh.transmit(now, transmit));
            }
            Cmd::Disconnect(d) => {
                if !self.mesh.disconnect_peer(now, &d.peer, &d.reason) {
                    tracing::info!(peer = %d.peer, "not connected to the peer to drop (it is reached through others)");
                }
            }
        }
    }

    /// Carries out the core's actions; whether the topology changed, and whether a
    /// connection was dialled or closed.
    fn apply(&mut self) -> (bool, bool) {
        let mut changed = false;
        let mut conns = false;
        loop {
            let actions = self.mesh.take_actions();
            if actions.is_empty() {
                return (changed, conns);
            }
            for a in actions {
                match a {
                    Action::Send { conn, msg } => {
                        if let Some(tx) = self.conns.get(&conn) {
                            self.metrics
                                .mesh_messages_sent
                                .fetch_add(1, Ordering::Relaxed);
                            if matches!(msg, Message::Gossip { .. }) {
                                self.metrics
                                    .mesh_gossip_sent
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            if let Err(why) = conn::queue(tx, msg) {
                                // Dropping the sender ends the connection's task.
                                tracing::warn!(conn, "disconnecting a peer: {why}");
                                self.conns.remove(&conn);
                            }
                        }
                    }
                    Action::Close { conn, reason } => {
                        conns = true;
                        tracing::info!(conn, "closing connection: {reason}");
                        // The task sends what is queued, then closes.
                        self.conns.remove(&conn);
                    }
                    Action::Dial { target } => {
                        conns = true;
                        self.dial(target);
                    }
                    Action::Deliver {
                        channel,
                        from,
                        payload,
                    } => {
                        let tx = self
                            .subscribers
                            .lock()
                            .ok()
                            .and_then(|s| s.get(&channel).cloned());
                        match tx {
                            Some(tx) => {
                                let _ = tx.send(Delivery {
                                    channel,
                                    from,
                                    payload,
                                });
                            }
                            None => {
                                tracing::debug!(channel, %from, "payload for a channel nobody listens on")
                            }
                        }
                    }
                    Action::TopologyChanged => changed = true,
                }
            }
        }
    }

    /// Publishes a new snapshot if anything in it changed; the topology parts are rebuilt
    /// only with `topology` (else shared with the current snapshot).
    fn publish(&mut self, topology: bool) {
        let now = self.now();
        let cur = self.snapshot.borrow().clone();
        let mut snap = MeshSnapshot {
            peers: cur.peers.clone(),
            connections: self.mesh.connection_status(now),
            targets: self.mesh.target_status(),
            neighbours: cur.neighbours.clone(),
            routes: cur.routes.clone(),
            view: cur.view.clone(),
        };
        if topology {
            let peers = self.mesh.peers();
            let mut neighbours = self.mesh.neighbours();
            neighbours.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
            let routes = self.mesh.routes();
            if *cur.peers != peers || *cur.neighbours != neighbours || *cur.routes != routes {
                snap.peers = Arc::new(peers);
                snap.neighbours = Arc::new(neighbours);
                snap.routes = Arc::new(routes);
                let view = self.mesh.topology_view();
                if *cur.view != view {
                    snap.view = Arc::new(view);
                }
            }
        }
        // Watchers wake only for a real change: a delivered message is an event too, and
        // waking the data path for each one made routers answer each other's
        // announcements in an endless storm.
        self.snapshot.send_if_modified(|cur| {
            if **cur == snap {
                false
            } else {
                *cur = Arc::new(snap);
                true
            }
        });
    }

    /// A new connection: its send queue, and what its task needs for the handshake.
    fn new_conn(&mut self) -> (conn::SessionParams, mpsc::Receiver<Message>) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let (tx, rx) = mpsc::channel(conn::OUT_QUEUE);
        self.conns.insert(conn, tx);
        let session = conn::SessionParams {
            conn,
            password: self.password.clone(),
            hello: self.mesh.hello(),
            metrics: self.metrics.clone(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        };
        (session, rx)
    }

    fn dial(&mut self, target: String) {
        let (session, rx) = self.new_conn();
        let conn = session.conn;
        let events = self.events.clone();
        tokio::spawn(async move {
            let dialled = tokio::time::timeout(DIAL_TIMEOUT, async {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target)
                    .await
                    .map_err(|e| (format!("cannot resolve {target}: {e}"), None))?
                    .collect();
                let mut last = (format!("{target} resolves to no address"), None);
                for a in addrs {
                    match tokio::net::TcpStream::connect(a).await {
                        Ok(s) => return Ok((s, a)),
                        Err(e) => last = (format!("cannot connect to {a}: {e}"), Some(a)),
                    }
                }
                Err(last)
            })
            .await
            .unwrap_or_else(|_| Err((format!("connecting to {target} timed out"), None)));
            match dialled {
                Ok((stream, addr)) => {
                    conn::run(stream, addr, true, Some(target), session, events, rx).await
                }
                Err((reason, addr)) => {
                    // The address tried tells the core which peer a host name leads to
                    // once that peer is connected some other way.
                    let _ = events
                        .send(ConnEvent::Failed {
                            conn,
                            target: Some(target),
                            addr,
                            outbound: true,
                            reason,
                        })
                        .await;
                }
            }
        });
    }

    /// Runs a connection someone opened to us.
    fn accepted(&mut self, stream: tokio::net::TcpStream, addr: SocketAddr) {
        let (session, rx) = self.new_conn();
        let events = self.events.clone();
        tokio::spawn(conn::run(stream, addr, false, None, session, events, rx));
    }
}
