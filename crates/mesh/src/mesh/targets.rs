//! Targets (addresses to dial) with their backoff, discovery of targets from gossip, and
//! recent connection failures.

use std::collections::HashSet;
use std::net::SocketAddr;

use rand::Rng;

use super::{Action, Mesh};
use crate::wire::PeerEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TargetState {
    Waiting { next_at: u64 },
    Connecting { since: u64 },
}

#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) explicit: bool,
    pub(super) peer: Option<String>,
    pub(super) state: TargetState,
    pub(super) attempts: u32,
    pub(super) last_error: String,
    /// The address its last dial went to (a host name resolved by the driver).
    pub(super) tried: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) addr: String,
    pub(super) outbound: bool,
    pub(super) reason: String,
    pub(super) at: u64,
}

impl Mesh {
    pub(super) fn backoff(&mut self, attempts: u32) -> u64 {
        let t = &self.cfg.timing;
        let exp = attempts.saturating_sub(1).min(20);
        let base = t.backoff_min.saturating_mul(1u64 << exp).min(t.backoff_max);
        // ±25% jitter so that peers that failed together do not retry together.
        let j = self.rng.random_range(0..=base / 2);
        base - base / 4 + j
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
            if let Some(t) = self.targets.get_mut(name) {
                t.tried = addr.or(t.tried);
            }
            self.learn_target_peers();
        } else {
            self.push_failure(now, addr_s, outbound, reason.to_string());
        }
    }

    pub(super) fn record_failure(
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

    pub(super) fn push_failure(&mut self, now: u64, addr: String, outbound: bool, reason: String) {
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

    pub(super) fn target_failed(&mut self, now: u64, name: &str, reason: String) {
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

    /// A target whose dials failed before its peer was up does not know which peer it
    /// leads to; once that peer is connected some other way (it dialled us, or gossip led
    /// us to it), the address the target's dial went to tells: the peer's listening
    /// address. Then the target counts as connected (no "failed" row, no more dials).
    pub(super) fn learn_target_peers(&mut self) {
        if !self
            .targets
            .values()
            .any(|t| t.peer.is_none() && t.tried.is_some())
        {
            return;
        }
        let listening: Vec<(SocketAddr, String)> = self
            .conns
            .values()
            .map(|c| {
                let port = if c.outbound {
                    c.addr.port()
                } else {
                    c.listen_port
                };
                (SocketAddr::new(c.addr.ip(), port), c.peer.clone())
            })
            .collect();
        for t in self.targets.values_mut() {
            if t.peer.is_some() {
                continue;
            }
            let Some(tried) = t.tried else { continue };
            if let Some((_, p)) = listening.iter().find(|(a, _)| *a == tried) {
                t.peer = Some(p.clone());
                t.attempts = 0;
                t.last_error.clear();
            }
        }
    }

    pub(super) fn discover(&mut self, now: u64) {
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
                tried: None,
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

    pub(super) fn dial_due(&mut self, now: u64) {
        let connected: HashSet<String> = self.conns.values().map(|c| c.peer.clone()).collect();
        let mut busy = self.conns.len()
            + self
                .targets
                .values()
                .filter(|t| matches!(t.state, TargetState::Connecting { .. }))
                .count();
        let timeout = self.cfg.timing.dial_timeout;
        for t in self.targets.values_mut() {
            if let TargetState::Connecting { since } = t.state {
                if now.saturating_sub(since) > timeout {
                    t.state = TargetState::Waiting { next_at: now };
                }
            }
        }
        // Two dials of ours to one peer at once (a target by host name whose peer we do
        // not know yet, and the same peer's address learned from gossip) can finish their
        // handshakes in one order here and in the other at the peer; each end then keeps
        // the newer by its own order, and both connections close. So a discovered target
        // waits while a target of unknown peer is being dialled, and the other way round.
        let connecting = |t: &Target| matches!(t.state, TargetState::Connecting { .. });
        let mut unknown_busy = self
            .targets
            .values()
            .any(|t| t.peer.is_none() && connecting(t));
        let mut discovered_busy = self.targets.values().any(|t| !t.explicit && connecting(t));
        let mut due = Vec::new();
        for (name, t) in &mut self.targets {
            let TargetState::Waiting { next_at } = t.state else {
                continue;
            };
            if next_at > now || t.peer.as_ref().is_some_and(|p| connected.contains(p)) {
                continue;
            }
            if !t.explicit && busy >= self.cfg.conn_limit {
                continue;
            }
            let unknown = t.peer.is_none();
            if (unknown && discovered_busy) || (!t.explicit && unknown_busy) {
                continue;
            }
            unknown_busy |= unknown;
            discovered_busy |= !t.explicit;
            busy += 1;
            t.state = TargetState::Connecting { since: now };
            due.push(name.clone());
        }
        for target in due {
            self.actions.push(Action::Dial { target });
        }
    }

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
                tried: None,
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
}
