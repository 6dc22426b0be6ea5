//! The mesh core of one peer, sans-IO: connections that finished their handshake,
//! topology gossip (digests, then deltas), heartbeats, targets with backoff, discovery,
//! and routed application payloads. Time is an input (milliseconds, any epoch); every
//! method queues [`Action`]s, taken with [`Mesh::take_actions`].
//!
//! One file per concern: this one holds the types, connections, messages and timers;
//! `targets.rs` the targets with their backoff, discovery and failures; `gossip.rs` the
//! topology gossip; `status.rs` what the status and the data path read.

mod gossip;
mod status;
mod targets;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use rand::SeedableRng;

use crate::app::Transmit;
use crate::topology::Topology;
use crate::wire::{Hello, Message, PeerEntry, MAX_PAYLOAD};

pub use status::{ConnStatus, Neighbour, TargetStatus};
use targets::{Failure, Target, TargetState};

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

/// What the driver reports about one connection, for [`Mesh::handle_conn`] (the router's
/// connection tasks and the simulation report alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    /// The handshake finished; `target` is set when we dialled it for one.
    Up {
        /// Connection.
        conn: ConnId,
        /// The other end's underlay address.
        addr: SocketAddr,
        /// We dialled it.
        outbound: bool,
        /// The target we dialled it for.
        target: Option<String>,
        /// The peer's introduction.
        hello: Hello,
    },
    /// A dial or a handshake failed.
    Failed {
        /// Connection (0 where the driver gave the dial none).
        conn: ConnId,
        /// The target dialled, if any.
        target: Option<String>,
        /// The other end's address, when known.
        addr: Option<SocketAddr>,
        /// We dialled it.
        outbound: bool,
        /// Why, for the status.
        reason: String,
    },
    /// The connection ended.
    Closed {
        /// Connection.
        conn: ConnId,
        /// Why.
        reason: String,
    },
    /// A message arrived on it.
    Msg {
        /// Connection.
        conn: ConnId,
        /// The message.
        msg: Message,
    },
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
    /// The port the peer listens on (its hello).
    listen_port: u16,
    outbound: bool,
    target: Option<String>,
    last_recv: u64,
    last_sent: u64,
    last_sync: u64,
    last_digest: Option<u64>,
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

    pub(super) fn send(&mut self, now: u64, conn: ConnId, msg: Message) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_sent = now;
        }
        self.actions.push(Action::Send { conn, msg });
    }

    pub(super) fn conn_of(&self, peer: &str) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.peer == peer)
            .map(|(id, _)| *id)
    }

    /// Takes what the driver reports about a connection.
    pub fn handle_conn(&mut self, now: u64, ev: ConnEvent) {
        match ev {
            ConnEvent::Up {
                conn,
                addr,
                outbound,
                target,
                hello,
            } => self.connected(now, conn, addr, outbound, target.as_deref(), hello),
            ConnEvent::Failed {
                target,
                addr,
                outbound,
                reason,
                ..
            } => self.connect_failed(now, target.as_deref(), addr, outbound, &reason),
            ConnEvent::Closed { conn, reason } => self.closed(now, conn, &reason),
            ConnEvent::Msg { conn, msg } => self.received(now, conn, msg),
        }
    }

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
                listen_port: hello.listen_port,
                outbound,
                target: target.map(str::to_string),
                last_recv: now,
                last_sent: now,
                last_sync: now,
                last_digest: None,
            },
        );
        self.own_changed(now);
        self.learn_target_peers();
        // Tell the new neighbour what we hold; it pushes what we lack and asks for the rest.
        let items = self.digest_items();
        self.counters.digests_sent += 1;
        self.send(now, conn, Message::Digest { items });
        self.after_change(now);
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
                // On whole multiples of the period, for every connection at once: one
                // wake-up sends them all, and with clocks that agree (the router's starts
                // on the wall clock's second) a peer receives its neighbours' in a burst.
                if now / t.sync.max(1) > c.last_sync / t.sync.max(1) {
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

    /// Sends what a core asked to ([`Transmit`]).
    pub fn transmit(&mut self, now: u64, t: Transmit) -> Result<(), SendError> {
        match t {
            Transmit::To {
                channel,
                dst,
                payload,
            } => self.send_to(now, channel, &dst, payload),
            Transmit::Broadcast { channel, payload } => self.broadcast(now, channel, payload),
        }
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
}
