//! The mesh core of one peer, sans-IO: connections that finished their handshake,
//! topology gossip (digests, then deltas), heartbeats, targets with backoff, discovery,
//! and routed application payloads. Time is an input (milliseconds, any epoch); every
//! method queues [`Action`]s, taken with [`Mesh::take_actions`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use rand::{Rng, SeedableRng};

use crate::topology::Topology;
use crate::wire::{DigestItem, EdgeInfo, Hello, Message, PeerEntry, MAX_MESSAGE, MAX_PAYLOAD};

/// Identifies one connection; chosen by the driver, never reused.
pub type ConnId = u64;

/// Hops a unicast payload may take before it is dropped (guards against loops while
/// views disagree).
pub const MAX_TTL: u8 = 64;

/// Timers of the core, in milliseconds.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Heartbeat period on each connection.
    pub heartbeat: u64,
    /// Silence after which a connection is dead.
    pub dead_after: u64,
    /// Period of digest-hash exchange (anti-entropy) with each neighbour.
    pub sync: u64,
    /// First retry delay of a target.
    pub backoff_min: u64,
    /// Largest retry delay of a target.
    pub backoff_max: u64,
    /// How long an unreachable peer's entry is kept.
    pub gc_after: u64,
    /// How long a failed inbound connection stays in the status.
    pub failure_keep: u64,
    /// A dial without an answer from the driver for this long is given up.
    pub dial_timeout: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: 1_000,
            dead_after: 5_000,
            sync: 2_000,
            backoff_min: 1_000,
            backoff_max: 30_000,
            gc_after: 60_000,
            failure_keep: 120_000,
            dial_timeout: 30_000,
        }
    }
}

/// Who this peer is and how it behaves.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Unique name.
    pub name: String,
    /// Nickname.
    pub nickname: String,
    /// Random id of this run.
    pub uid: u64,
    /// Control port we listen on.
    pub listen_port: u16,
    /// Most connections kept (discovered targets are not dialled beyond it).
    pub conn_limit: usize,
    /// Dial addresses learned from gossip.
    pub discovery: bool,
    /// First version of our entry; the driver passes wall-clock milliseconds so that a
    /// restarted peer starts above its previous run.
    pub initial_version: u64,
    /// Timers.
    pub timing: Timing,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message on a connection.
    Send {
        /// Connection.
        conn: ConnId,
        /// Message.
        msg: Message,
    },
    /// Close a connection (any Refuse was queued before).
    Close {
        /// Connection.
        conn: ConnId,
        /// Why, for the log.
        reason: String,
    },
    /// Open a connection to a target (`HOST:PORT`) and report back with
    /// [`Mesh::connected`] or [`Mesh::connect_failed`].
    Dial {
        /// The target.
        target: String,
    },
    /// An application payload arrived for us.
    Deliver {
        /// Channel.
        channel: u16,
        /// Origin peer.
        from: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Peers, edges or routes changed.
    TopologyChanged,
}

/// Why a payload could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No route to the peer.
    #[error("peer {0} is not reachable")]
    Unreachable(String),
    /// Payload too large for one message.
    #[error("payload of {0} bytes is larger than {MAX_PAYLOAD}")]
    TooLarge(usize),
}

#[derive(Debug, Clone)]
struct Conn {
    peer: String,
    uid: u64,
    addr: SocketAddr,
    outbound: bool,
    target: Option<String>,
    last_recv: u64,
    last_sent: u64,
    last_sync: u64,
    last_digest: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TargetState {
    Waiting { next_at: u64 },
    Connecting { since: u64 },
}

#[derive(Debug, Clone)]
struct Target {
    explicit: bool,
    peer: Option<String>,
    state: TargetState,
    attempts: u32,
    last_error: String,
}

#[derive(Debug, Clone)]
struct Failure {
    addr: String,
    outbound: bool,
    reason: String,
    at: u64,
}

/// One connection as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnStatus {
    /// Remote address.
    pub address: String,
    /// Whether we dialled.
    pub outbound: bool,
    /// `established`, `connecting`, `failed`, `pending`.
    pub state: String,
    /// Remote peer name, when known.
    pub peer: Option<String>,
    /// Remote nickname, when known.
    pub nickname: Option<String>,
    /// Failure reason or other detail.
    pub info: String,
}

/// One target as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// `HOST:PORT`.
    pub address: String,
    /// Given by the user.
    pub explicit: bool,
    /// `connected`, `connecting`, `waiting`.
    pub state: String,
    /// Last error.
    pub last_error: String,
    /// Peer it leads to, once known.
    pub peer: Option<String>,
}

/// A directly connected peer (for the data path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Peer name.
    pub name: String,
    /// Its address on this connection.
    pub addr: SocketAddr,
    /// Whether we dialled.
    pub outbound: bool,
}

/// Traffic counters of the core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Gossip entries received that were new.
    pub entries_merged: u64,
    /// Gossip entries sent.
    pub entries_sent: u64,
    /// Digests sent.
    pub digests_sent: u64,
    /// Payloads delivered locally.
    pub delivered: u64,
    /// Payloads forwarded for others.
    pub forwarded: u64,
}

/// The mesh state machine of one peer.
#[derive(Debug)]
pub struct Mesh {
    cfg: MeshConfig,
    topo: Topology,
    conns: BTreeMap<ConnId, Conn>,
    targets: BTreeMap<String, Target>,
    failures: Vec<Failure>,
    actions: Vec<Action>,
    rng: rand::rngs::StdRng,
    unreachable_since: HashMap<String, u64>,
    refuted_uids: HashSet<u64>,
    conflict: Option<String>,
    last_reachable: Vec<String>,
    last_reach_gen: u64,
    counters: Counters,
}

impl Mesh {
    /// A peer alone in its mesh.
    pub fn new(cfg: MeshConfig) -> Mesh {
        let own = PeerEntry {
            name: cfg.name.clone(),
            nickname: cfg.nickname.clone(),
            uid: cfg.uid,
            version: cfg.initial_version.max(1),
            listen_port: cfg.listen_port,
            edges: Vec::new(),
        };
        let rng = rand::rngs::StdRng::seed_from_u64(cfg.uid);
        Mesh {
            topo: Topology::new(own),
            cfg,
            conns: BTreeMap::new(),
            targets: BTreeMap::new(),
            failures: Vec::new(),
            actions: Vec::new(),
            rng,
            unreachable_since: HashMap::new(),
            refuted_uids: HashSet::new(),
            conflict: None,
            last_reachable: Vec::new(),
            last_reach_gen: 0,
            counters: Counters::default(),
        }
    }

    /// Our name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// What the driver should do now.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The Hello we introduce ourselves with.
    pub fn hello(&self) -> Hello {
        Hello {
            name: self.cfg.name.clone(),
            nickname: self.cfg.nickname.clone(),
            uid: self.cfg.uid,
            listen_port: self.cfg.listen_port,
        }
    }

    /// Traffic counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn send(&mut self, now: u64, conn: ConnId, msg: Message) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_sent = now;
        }
        self.actions.push(Action::Send { conn, msg });
    }

    fn send_entries(&mut self, now: u64, conn: ConnId, entries: Vec<PeerEntry>) {
        // Split so that every message fits in a frame.
        let mut batch = Vec::new();
        let mut size = 5;
        for e in entries {
            let s = Message::entry_size(&e);
            if !batch.is_empty() && size + s > MAX_MESSAGE {
                self.counters.entries_sent += batch.len() as u64;
                self.send(
                    now,
                    conn,
                    Message::Gossip {
                        entries: std::mem::take(&mut batch),
                    },
                );
                size = 5;
            }
            size += s;
            batch.push(e);
        }
        if !batch.is_empty() {
            self.counters.entries_sent += batch.len() as u64;
            self.send(now, conn, Message::Gossip { entries: batch });
        }
    }

    fn conn_of(&self, peer: &str) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.peer == peer)
            .map(|(id, _)| *id)
    }

    fn backoff(&mut self, attempts: u32) -> u64 {
        let t = &self.cfg.timing;
        let exp = attempts.saturating_sub(1).min(20);
        let base = t.backoff_min.saturating_mul(1u64 << exp).min(t.backoff_max);
        // ±25% jitter so that peers that failed together do not retry together.
        let j = self.rng.random_range(0..=base / 2);
        base - base / 4 + j
    }

    // ---- connections ----

    /// A connection finished its handshake; `target` is set when we dialled it for one.
    pub fn connected(
        &mut self,
        now: u64,
        conn: ConnId,
        addr: SocketAddr,
        outbound: bool,
        target: Option<&str>,
        hello: Hello,
    ) {
        if self.conns.contains_key(&conn) {
            return;
        }
        if hello.uid == self.cfg.uid && hello.name == self.cfg.name {
            // We dialled our own address: keep the target, but only retry it slowly.
            self.actions.push(Action::Close {
                conn,
                reason: "connected to ourselves".into(),
            });
            if let Some(t) = target.and_then(|t| self.targets.get_mut(t)) {
                t.attempts = 20;
            }
            if let Some(t) = target {
                self.target_failed(now, t, "this address is this peer itself".into());
            }
            return;
        }
        let refuse = if hello.name == self.cfg.name {
            Some(format!(
                "peer name {} is used by both peers (cloned state dir?): give one a different --name, or remove its $WEFT_STATE_DIR/peer-name and relaunch",
                hello.name
            ))
        } else if !outbound && self.conns.len() >= self.cfg.conn_limit {
            Some(format!(
                "connection limit of {} reached on peer {}",
                self.cfg.conn_limit, self.cfg.name
            ))
        } else if let Some((_, old)) = self
            .conns
            .iter()
            .find(|(_, c)| c.peer == hello.name && c.uid != hello.uid)
        {
            Some(format!(
                "a peer named {} is already connected from {} (two peers with one name, or a restart not noticed yet)",
                hello.name, old.addr
            ))
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.actions.push(Action::Send {
                conn,
                msg: Message::Refuse {
                    reason: reason.clone(),
                },
            });
            self.actions.push(Action::Close {
                conn,
                reason: reason.clone(),
            });
            self.record_failure(now, target, addr, outbound, Some(&hello.name), reason);
            return;
        }
        if let Some(t) = target.and_then(|t| self.targets.get_mut(t)) {
            t.peer = Some(hello.name.clone());
            t.attempts = 0;
            t.last_error.clear();
            t.state = TargetState::Waiting { next_at: now };
        }
        if let Some(old) = self.conn_of(&hello.name) {
            // Both ends dialled at once: keep the connection dialled by the smaller name,
            // a rule both ends apply alike.
            let dialer_of_new = if outbound {
                &self.cfg.name
            } else {
                &hello.name
            };
            let smaller = self.cfg.name.clone().min(hello.name.clone());
            if *dialer_of_new != smaller {
                self.actions.push(Action::Close {
                    conn,
                    reason: "duplicate connection".into(),
                });
                return;
            }
            self.conns.remove(&old);
            self.actions.push(Action::Close {
                conn: old,
                reason: "duplicate connection".into(),
            });
        }
        self.conns.insert(
            conn,
            Conn {
                peer: hello.name.clone(),
                uid: hello.uid,
                addr,
                outbound,
                target: target.map(str::to_string),
                last_recv: now,
                last_sent: now,
                last_sync: now,
                last_digest: None,
            },
        );
        self.own_changed(now);
        // Tell the new neighbour what we hold; it pushes what we lack and asks for the rest.
        let items = self.digest_items();
        self.counters.digests_sent += 1;
        self.send(now, conn, Message::Digest { items });
        self.after_change(now);
    }

    /// A dial or handshake failed before the connection was up.
    pub fn connect_failed(
        &mut self,
        now: u64,
        target: Option<&str>,
        addr: Option<SocketAddr>,
        outbound: bool,
        reason: &str,
    ) {
        let addr_s = addr.map(|a| a.to_string()).unwrap_or_default();
        if let Some(name) = target {
            self.target_failed(now, name, reason.to_string());
        } else {
            self.push_failure(now, addr_s, outbound, reason.to_string());
        }
    }

    fn record_failure(
        &mut self,
        now: u64,
        target: Option<&str>,
        addr: SocketAddr,
        outbound: bool,
        peer: Option<&str>,
        reason: String,
    ) {
        let reason = match peer {
            Some(p) => format!("peer {p}: {reason}"),
            None => reason,
        };
        match target {
            Some(t) if self.targets.contains_key(t) => self.target_failed(now, t, reason),
            _ => self.push_failure(now, addr.to_string(), outbound, reason),
        }
    }

    fn push_failure(&mut self, now: u64, addr: String, outbound: bool, reason: String) {
        // One row per remote host: inbound retries come from ever new ports.
        let host = |a: &str| {
            a.rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default()
        };
        let h = host(&addr);
        self.failures.retain(|f| host(&f.addr) != h);
        self.failures.push(Failure {
            addr,
            outbound,
            reason,
            at: now,
        });
        if self.failures.len() > 32 {
            self.failures.remove(0);
        }
    }

    fn target_failed(&mut self, now: u64, name: &str, reason: String) {
        let Some(attempts) = self.targets.get(name).map(|t| t.attempts + 1) else {
            return;
        };
        let delay = self.backoff(attempts);
        if let Some(t) = self.targets.get_mut(name) {
            t.attempts = attempts;
            t.last_error = reason;
            t.state = TargetState::Waiting {
                next_at: now + delay,
            };
        }
    }

    /// A connection ended (socket closed, error, or a Close we asked for).
    pub fn closed(&mut self, now: u64, conn: ConnId, reason: &str) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(t) = c.target.as_deref() {
            let delay = self.backoff(1);
            if let Some(t) = self.targets.get_mut(t) {
                t.last_error = format!("connection to {} closed: {reason}", c.peer);
                t.attempts = 1;
                t.state = TargetState::Waiting {
                    next_at: now + delay,
                };
            }
        }
        self.own_changed(now);
        self.after_change(now);
    }

    // ---- messages ----

    /// A message arrived on an established connection.
    pub fn received(&mut self, now: u64, conn: ConnId, msg: Message) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_recv = now;
        let from = c.peer.clone();
        match msg {
            Message::Hello(_) | Message::Heartbeat => {}
            Message::Refuse { reason } => {
                let c = self.conns.get(&conn).cloned();
                self.actions.push(Action::Close {
                    conn,
                    reason: format!("refused by peer {from}: {reason}"),
                });
                self.closed(now, conn, &reason);
                if let Some(c) = c {
                    self.record_failure(
                        now,
                        c.target.as_deref(),
                        c.addr,
                        c.outbound,
                        None,
                        format!("refused by peer {from}: {reason}"),
                    );
                }
            }
            Message::Gossip { entries } => self.on_gossip(now, conn, entries),
            Message::DigestHash { hash, count } => {
                let c = self.conns.get(&conn).map(|c| c.last_digest);
                if self.topo.digest() != (hash, count) && c != Some(Some(hash)) {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.last_digest = Some(hash);
                    }
                    let items = self.digest_items();
                    self.counters.digests_sent += 1;
                    self.send(now, conn, Message::Digest { items });
                }
            }
            Message::Digest { items } => self.on_digest(now, conn, items),
            Message::Request { names } => {
                let entries: Vec<PeerEntry> = names
                    .iter()
                    .filter_map(|n| self.topo.get(n).cloned())
                    .collect();
                self.send_entries(now, conn, entries);
            }
            Message::Unicast {
                channel,
                src,
                dst,
                ttl,
                payload,
            } => {
                if dst == self.cfg.name {
                    self.counters.delivered += 1;
                    self.actions.push(Action::Deliver {
                        channel,
                        from: src,
                        payload,
                    });
                } else if ttl > 0 {
                    if let Some(next) = self.topo.next_hop(&dst).and_then(|h| self.conn_of(&h)) {
                        self.counters.forwarded += 1;
                        self.send(
                            now,
                            next,
                            Message::Unicast {
                                channel,
                                src,
                                dst,
                                ttl: ttl - 1,
                                payload,
                            },
                        );
                    }
                }
            }
            Message::Broadcast {
                channel,
                src,
                payload,
            } => {
                if src != self.cfg.name {
                    let kids = self.topo.broadcast_children(&src).unwrap_or_default();
                    for k in kids.into_iter().filter(|k| *k != from) {
                        if let Some(cid) = self.conn_of(&k) {
                            self.counters.forwarded += 1;
                            self.send(
                                now,
                                cid,
                                Message::Broadcast {
                                    channel,
                                    src: src.clone(),
                                    payload: payload.clone(),
                                },
                            );
                        }
                    }
                    self.counters.delivered += 1;
                    self.actions.push(Action::Deliver {
                        channel,
                        from: src,
                        payload,
                    });
                }
            }
        }
    }

    fn digest_items(&mut self) -> Vec<DigestItem> {
        self.topo
            .reachable_entries()
            .into_iter()
            .map(|e| DigestItem {
                name: e.name,
                version: e.version,
            })
            .collect()
    }

    fn on_digest(&mut self, now: u64, conn: ConnId, items: Vec<DigestItem>) {
        let theirs: HashMap<&str, u64> =
            items.iter().map(|i| (i.name.as_str(), i.version)).collect();
        let push: Vec<PeerEntry> = self
            .topo
            .reachable_entries()
            .into_iter()
            .filter(|e| theirs.get(e.name.as_str()).is_none_or(|v| *v < e.version))
            .collect();
        let want: Vec<String> = items
            .iter()
            .filter(|i| self.topo.get(&i.name).is_none_or(|e| e.version < i.version))
            .map(|i| i.name.clone())
            .collect();
        self.send_entries(now, conn, push);
        if !want.is_empty() {
            self.send(now, conn, Message::Request { names: want });
        }
    }

    fn on_gossip(&mut self, now: u64, conn: ConnId, entries: Vec<PeerEntry>) {
        let from = self
            .conns
            .get(&conn)
            .map(|c| c.peer.clone())
            .unwrap_or_default();
        let mut changed = Vec::new();
        for e in entries {
            if e.name == self.cfg.name {
                self.maybe_refute(now, &e);
                continue;
            }
            if self.topo.merge(e.clone()) {
                self.counters.entries_merged += 1;
                changed.push(e);
            }
        }
        if changed.is_empty() {
            return;
        }
        // Forward each new entry along the broadcast tree rooted at its owner; if the owner
        // is not reachable in our view yet, to every neighbour but the sender.
        let mut out: BTreeMap<ConnId, Vec<PeerEntry>> = BTreeMap::new();
        for e in changed {
            let next: Vec<ConnId> = match self.topo.broadcast_children(&e.name) {
                Some(kids) => kids
                    .iter()
                    .filter(|k| **k != from)
                    .filter_map(|k| self.conn_of(k))
                    .collect(),
                None => self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.peer != from)
                    .map(|(id, _)| *id)
                    .collect(),
            };
            for c in next {
                out.entry(c).or_default().push(e.clone());
            }
        }
        for (c, es) in out {
            self.send_entries(now, c, es);
        }
        self.after_change(now);
    }

    fn maybe_refute(&mut self, now: u64, e: &PeerEntry) {
        let own = self.topo.own().clone();
        if e.version < own.version || (e.uid == own.uid && e.version == own.version) {
            return;
        }
        if e.uid != own.uid && !self.refuted_uids.insert(e.uid) {
            // A second round against the same other run: another live peer has our name.
            self.conflict = Some(format!(
                "another peer named {} (nickname {}) is in the mesh: give one a different --name",
                e.name, e.nickname
            ));
            return;
        }
        // An entry of an earlier run of ours: announce a newer one.
        let mut own = own;
        own.version = e.version + 1;
        self.topo.set_own(own.clone());
        self.announce_own(now);
    }

    fn own_changed(&mut self, now: u64) {
        let mut own = self.topo.own().clone();
        let mut edges: Vec<EdgeInfo> = self
            .conns
            .values()
            .map(|c| EdgeInfo {
                name: c.peer.clone(),
                addr: c.addr.to_string(),
                outbound: c.outbound,
            })
            .collect();
        edges.sort();
        edges.dedup_by(|a, b| a.name == b.name);
        if edges == own.edges {
            return;
        }
        own.edges = edges;
        own.version += 1;
        self.topo.set_own(own);
        self.announce_own(now);
    }

    fn announce_own(&mut self, now: u64) {
        let own = self.topo.own().clone();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.counters.entries_sent += 1;
            self.send(
                now,
                id,
                Message::Gossip {
                    entries: vec![own.clone()],
                },
            );
        }
    }

    /// After any change: notify, update discovery and the unreachable timers.
    fn after_change(&mut self, now: u64) {
        self.actions.push(Action::TopologyChanged);
        // The generation is cheap to compare; only when it moved can the set differ.
        let gen = self.topo.reach_gen();
        if gen == self.last_reach_gen {
            return;
        }
        self.last_reach_gen = gen;
        if self.topo.reachable() != self.last_reachable.as_slice() {
            // Copy into the old strings' buffers: this runs on every peer at every join.
            let now_reachable = self.topo.reachable();
            self.last_reachable.truncate(now_reachable.len());
            let k = self.last_reachable.len();
            for (d, s) in self.last_reachable.iter_mut().zip(now_reachable) {
                d.clone_from(s);
            }
            self.last_reachable.extend_from_slice(&now_reachable[k..]);
            let topo = &self.topo;
            for name in topo.unreachable_names() {
                if !self.unreachable_since.contains_key(name) {
                    self.unreachable_since.insert(name.to_string(), now);
                }
            }
            self.unreachable_since.retain(|n, _| !topo.was_reachable(n));
            self.discover(now);
        }
    }

    fn discover(&mut self, now: u64) {
        if !self.cfg.discovery {
            return;
        }
        let reachable: HashSet<String> = self.topo.reachable().iter().cloned().collect();
        // Forget discovered targets of peers that left (unless a dial is in flight).
        let connected: HashSet<String> = self.conns.values().map(|c| c.peer.clone()).collect();
        self.targets.retain(|_, t| {
            t.explicit
                || matches!(t.state, TargetState::Connecting { .. })
                || t.peer
                    .as_ref()
                    .is_some_and(|p| reachable.contains(p) || connected.contains(p))
        });
        let known: HashSet<String> = self
            .targets
            .values()
            .filter_map(|t| t.peer.clone())
            .collect();
        let mut new = Vec::new();
        for e in self.topo.reachable_entries() {
            if e.name == self.cfg.name || connected.contains(&e.name) || known.contains(&e.name) {
                continue;
            }
            if let Some(addr) = self.address_of(&e) {
                new.push((addr, e.name.clone()));
            }
        }
        for (addr, peer) in new {
            self.targets.entry(addr).or_insert(Target {
                explicit: false,
                peer: Some(peer),
                state: TargetState::Waiting { next_at: now },
                attempts: 0,
                last_error: String::new(),
            });
        }
    }

    /// A dialable address of a peer, from what its neighbours report.
    fn address_of(&self, e: &PeerEntry) -> Option<String> {
        let mut fallback = None;
        for other in self.topo.all() {
            for edge in other.edges.iter().filter(|x| x.name == e.name) {
                if edge.outbound {
                    // The neighbour dialled it: that is its listening address.
                    return Some(edge.addr.clone());
                }
                if let Ok(sa) = edge.addr.parse::<SocketAddr>() {
                    fallback = Some(SocketAddr::new(sa.ip(), e.listen_port).to_string());
                }
            }
        }
        fallback
    }

    // ---- timers ----

    /// Time passed: heartbeats, dead connections, anti-entropy, dials, garbage collection.
    pub fn tick(&mut self, now: u64) {
        let t = self.cfg.timing.clone();
        let mut dead = Vec::new();
        let mut beat = Vec::new();
        let mut sync = Vec::new();
        for (id, c) in &self.conns {
            if now.saturating_sub(c.last_recv) > t.dead_after {
                dead.push(*id);
            } else {
                if now.saturating_sub(c.last_sent) >= t.heartbeat {
                    beat.push(*id);
                }
                if now.saturating_sub(c.last_sync) >= t.sync {
                    sync.push(*id);
                }
            }
        }
        for id in dead {
            let reason = format!(
                "no message for {} s (peer dead or unreachable)",
                t.dead_after / 1000
            );
            self.actions.push(Action::Close {
                conn: id,
                reason: reason.clone(),
            });
            self.closed(now, id, &reason);
        }
        let (hash, count) = self.topo.digest();
        for id in sync {
            if let Some(c) = self.conns.get_mut(&id) {
                c.last_sync = now;
                c.last_digest = None;
            }
            self.send(now, id, Message::DigestHash { hash, count });
        }
        for id in beat {
            if self
                .conns
                .get(&id)
                .is_some_and(|c| c.last_sent + t.heartbeat <= now)
            {
                self.send(now, id, Message::Heartbeat);
            }
        }
        // Garbage-collect peers unreachable for long.
        let old: Vec<String> = self
            .unreachable_since
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) > t.gc_after)
            .map(|(n, _)| n.clone())
            .collect();
        for n in old {
            self.unreachable_since.remove(&n);
            self.topo.remove(&n);
        }
        self.failures
            .retain(|f| now.saturating_sub(f.at) <= t.failure_keep);
        self.dial_due(now);
    }

    fn dial_due(&mut self, now: u64) {
        let connected: HashSet<String> = self.conns.values().map(|c| c.peer.clone()).collect();
        let mut busy = self.conns.len()
            + self
                .targets
                .values()
                .filter(|t| matches!(t.state, TargetState::Connecting { .. }))
                .count();
        let timeout = self.cfg.timing.dial_timeout;
        let mut due = Vec::new();
        for (name, t) in &mut self.targets {
            if let TargetState::Connecting { since } = t.state {
                if now.saturating_sub(since) > timeout {
                    t.state = TargetState::Waiting { next_at: now };
                }
            }
            let TargetState::Waiting { next_at } = t.state else {
                continue;
            };
            if next_at > now || t.peer.as_ref().is_some_and(|p| connected.contains(p)) {
                continue;
            }
            if !t.explicit && busy >= self.cfg.conn_limit {
                continue;
            }
            busy += 1;
            t.state = TargetState::Connecting { since: now };
            due.push(name.clone());
        }
        for target in due {
            self.actions.push(Action::Dial { target });
        }
    }

    // ---- user requests ----

    /// `weft connect`: adds explicit targets (`HOST:PORT`), or replaces them.
    pub fn add_targets(&mut self, now: u64, targets: &[String], replace: bool) {
        if replace {
            self.targets.retain(|_, t| !t.explicit);
        }
        for a in targets {
            let t = self.targets.entry(a.clone()).or_insert(Target {
                explicit: true,
                peer: None,
                state: TargetState::Waiting { next_at: now },
                attempts: 0,
                last_error: String::new(),
            });
            t.explicit = true;
        }
        self.dial_due(now);
    }

    /// `weft forget`: stops dialling these targets (connections stay). Returns the ones
    /// that were not targets.
    pub fn forget_targets(&mut self, targets: &[String]) -> Vec<String> {
        let mut unknown = Vec::new();
        for a in targets {
            if self.targets.remove(a).is_none() {
                unknown.push(a.clone());
            }
        }
        unknown
    }

    /// Sends a payload to one peer, routed through next hops.
    pub fn send_to(
        &mut self,
        now: u64,
        channel: u16,
        dst: &str,
        payload: Vec<u8>,
    ) -> Result<(), SendError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(SendError::TooLarge(payload.len()));
        }
        if dst == self.cfg.name {
            self.actions.push(Action::Deliver {
                channel,
                from: dst.to_string(),
                payload,
            });
            return Ok(());
        }
        let next = self
            .topo
            .next_hop(dst)
            .and_then(|h| self.conn_of(&h))
            .ok_or_else(|| SendError::Unreachable(dst.to_string()))?;
        self.send(
            now,
            next,
            Message::Unicast {
                channel,
                src: self.cfg.name.clone(),
                dst: dst.to_string(),
                ttl: MAX_TTL,
                payload,
            },
        );
        Ok(())
    }

    /// Sends a payload to every other reachable peer along our broadcast tree.
    pub fn broadcast(&mut self, now: u64, channel: u16, payload: Vec<u8>) -> Result<(), SendError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(SendError::TooLarge(payload.len()));
        }
        let name = self.cfg.name.clone();
        let kids = self.topo.broadcast_children(&name).unwrap_or_default();
        for k in kids {
            if let Some(cid) = self.conn_of(&k) {
                self.send(
                    now,
                    cid,
                    Message::Broadcast {
                        channel,
                        src: name.clone(),
                        payload: payload.clone(),
                    },
                );
            }
        }
        Ok(())
    }

    // ---- views ----

    /// Reachable peers (us included) with their entries, sorted by name.
    pub fn peers(&mut self) -> Vec<PeerEntry> {
        self.topo.reachable_entries()
    }

    /// Whether both ends report the edge a–b.
    pub fn edge_established(&self, a: &str, b: &str) -> bool {
        let has = |x: &str, y: &str| {
            self.topo
                .get(x)
                .is_some_and(|e| e.edges.iter().any(|c| c.name == y))
        };
        has(a, b) && has(b, a)
    }

    /// What this peer believes: reachable peers and the established edges among them
    /// (each edge once, smaller name first).
    pub fn view(&mut self) -> (Vec<String>, Vec<(String, String)>) {
        let peers = self.topo.reachable().to_vec();
        (peers, self.topo.edges())
    }

    /// Next hop toward each reachable peer.
    pub fn routes(&mut self) -> Vec<(String, String)> {
        self.topo.routes()
    }

    /// Our children in the broadcast tree rooted at `origin`.
    pub fn broadcast_children(&mut self, origin: &str) -> Option<Vec<String>> {
        self.topo.broadcast_children(origin)
    }

    /// The topology as the cores on the mesh take it ([`crate::app::TopologyView`]).
    pub fn topology_view(&mut self) -> crate::app::TopologyView {
        let direct: Vec<(String, SocketAddr)> = self
            .conns
            .values()
            .map(|c| (c.peer.clone(), c.addr))
            .collect();
        crate::app::TopologyView::build(&mut self.topo, &self.cfg.name, &direct)
    }

    /// Directly connected peers.
    pub fn neighbours(&self) -> Vec<Neighbour> {
        self.conns
            .values()
            .map(|c| Neighbour {
                name: c.peer.clone(),
                addr: c.addr,
                outbound: c.outbound,
            })
            .collect()
    }

    /// A name conflict seen in gossip, if any.
    pub fn conflict(&self) -> Option<&str> {
        self.conflict.as_deref()
    }

    /// Connections for the status: established ones, dials, and recent failures.
    pub fn connection_status(&self, now: u64) -> Vec<ConnStatus> {
        let mut out = Vec::new();
        for c in self.conns.values() {
            out.push(ConnStatus {
                address: c.addr.to_string(),
                outbound: c.outbound,
                state: "established".into(),
                peer: Some(c.peer.clone()),
                nickname: self.topo.get(&c.peer).map(|e| e.nickname.clone()),
                info: String::new(),
            });
        }
        let connected: HashSet<&str> = self.conns.values().map(|c| c.peer.as_str()).collect();
        for (addr, t) in &self.targets {
            if t.peer.as_deref().is_some_and(|p| connected.contains(p)) {
                continue;
            }
            let (state, info) = match t.state {
                TargetState::Connecting { .. } => ("connecting", t.last_error.clone()),
                TargetState::Waiting { next_at } if !t.last_error.is_empty() => (
                    "failed",
                    format!(
                        "{}, retry in {} s",
                        t.last_error,
                        next_at.saturating_sub(now).div_ceil(1000)
                    ),
                ),
                TargetState::Waiting { .. } => ("pending", String::new()),
            };
            out.push(ConnStatus {
                address: addr.clone(),
                outbound: true,
                state: state.into(),
                peer: t.peer.clone(),
                nickname: None,
                info,
            });
        }
        for f in &self.failures {
            out.push(ConnStatus {
                address: f.addr.clone(),
                outbound: f.outbound,
                state: "failed".into(),
                peer: None,
                nickname: None,
                info: f.reason.clone(),
            });
        }
        if let Some(c) = &self.conflict {
            out.push(ConnStatus {
                address: String::new(),
                outbound: false,
                state: "failed".into(),
                peer: None,
                nickname: None,
                info: c.clone(),
            });
        }
        out
    }

    /// Targets for the status.
    pub fn target_status(&self) -> Vec<TargetStatus> {
        let connected: HashSet<&str> = self.conns.values().map(|c| c.peer.as_str()).collect();
        self.targets
            .iter()
            .map(|(addr, t)| TargetStatus {
                address: addr.clone(),
                explicit: t.explicit,
                state: if t.peer.as_deref().is_some_and(|p| connected.contains(p)) {
                    "connected"
                } else if matches!(t.state, TargetState::Connecting { .. }) {
                    "connecting"
                } else {
                    "waiting"
                }
                .into(),
                last_error: t.last_error.clone(),
                peer: t.peer.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(name: &str, uid: u64) -> Mesh {
        Mesh::new(MeshConfig {
            name: name.into(),
            nickname: name.into(),
            uid,
            listen_port: 6783,
            conn_limit: 10,
            discovery: true,
            initial_version: 1,
            timing: Timing::default(),
        })
    }

    fn hello(name: &str, uid: u64) -> Hello {
        Hello {
            name: name.into(),
            nickname: name.into(),
            uid,
            listen_port: 6783,
        }
    }

    const ADDR: &str = "10.0.0.2:6783";

    #[test]
    fn same_name_is_refused_with_a_reason_and_backoff_grows() {
        let mut m = mesh("a", 1);
        m.add_targets(0, &[ADDR.to_string()], false);
        assert_eq!(
            m.take_actions(),
            vec![Action::Dial {
                target: ADDR.into()
            }]
        );
        let mut delays = Vec::new();
        let mut now = 0;
        for _ in 0..5 {
            m.connected(
                now,
                7,
                ADDR.parse().unwrap(),
                true,
                Some(ADDR),
                hello("a", 2),
            );
            let acts = m.take_actions();
            assert!(
                matches!(&acts[0], Action::Send { msg: Message::Refuse { reason }, .. } if reason.contains("used by both peers")),
                "{acts:?}"
            );
            assert!(matches!(acts[1], Action::Close { .. }));
            let st = m.connection_status(now);
            assert_eq!(st[0].state, "failed");
            assert!(st[0].info.contains("used by both peers"), "{st:?}");
            // Find when it dials again.
            let start = now;
            loop {
                now += 100;
                m.tick(now);
                if m.take_actions()
                    .iter()
                    .any(|a| matches!(a, Action::Dial { .. }))
                {
                    break;
                }
            }
            delays.push(now - start);
        }
        assert!(delays[4] > delays[0] * 4, "backoff grows: {delays:?}");
        assert!(m.peers().len() == 1);
    }

    #[test]
    fn dialling_ourselves_is_not_a_name_clash() {
        let mut m = mesh("a", 1);
        m.add_targets(0, &[ADDR.to_string()], false);
        m.take_actions();
        m.connected(0, 1, ADDR.parse().unwrap(), true, Some(ADDR), hello("a", 1));
        let acts = m.take_actions();
        assert!(
            matches!(acts.as_slice(), [Action::Close { .. }]),
            "{acts:?}"
        );
        assert!(m.target_status()[0].last_error.contains("itself"));
    }

    #[test]
    fn simultaneous_dials_keep_one_connection_on_both_sides() {
        let (mut a, mut b) = (mesh("a", 1), mesh("b", 2));
        let sa: SocketAddr = "10.0.0.1:6783".parse().unwrap();
        let sb: SocketAddr = "10.0.0.2:6783".parse().unwrap();
        // Connection 1: a dialled b. Connection 2: b dialled a.
        a.connected(0, 1, sb, true, None, hello("b", 2));
        b.connected(0, 1, sa, false, None, hello("a", 1));
        a.connected(0, 2, sb, false, None, hello("b", 2));
        b.connected(0, 2, sa, true, None, hello("a", 1));
        let closed = |acts: Vec<Action>| -> Vec<ConnId> {
            acts.into_iter()
                .filter_map(|x| match x {
                    Action::Close { conn, .. } => Some(conn),
                    _ => None,
                })
                .collect()
        };
        // Both keep the one dialled by the smaller name (a): connection 1.
        assert_eq!(closed(a.take_actions()), vec![2]);
        assert_eq!(closed(b.take_actions()), vec![2]);
        assert_eq!(a.neighbours().len(), 1);
        assert_eq!(b.neighbours().len(), 1);
    }

    #[test]
    fn silence_closes_a_connection() {
        let mut a = mesh("a", 1);
        a.connected(0, 1, ADDR.parse().unwrap(), true, None, hello("b", 2));
        a.take_actions();
        // Anything sent keeps the connection alive; with nothing else to say, a heartbeat.
        a.tick(1_000);
        assert!(a.take_actions().iter().any(|x| matches!(
            x,
            Action::Send {
                msg: Message::Heartbeat,
                ..
            }
        )));
        a.tick(5_100);
        assert!(a
            .take_actions()
            .iter()
            .any(|x| matches!(x, Action::Close { .. })));
        assert!(a.neighbours().is_empty());
    }
}
