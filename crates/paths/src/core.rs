//! The path core: one state machine per router that chooses, per peer, fastdp, the sleeve
//! or a relay, keeps the VXLAN FDB and the sleeve's tables as the choice wants them, and
//! gossips this router's MACs (see the crate docs for the rules).
//!
//! Peers live in integer slots. A change (a topology change, an announcement, a heartbeat
//! that flips the health) marks the slots it touches; only those are planned again and
//! only the differences leave as operations. An idle mesh costs one pass over the peers
//! per heartbeat period (sending the heartbeats), nothing per peer pair.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use weft_mesh::{MeshApp, Millis, TopologyView, Transmit};
use weft_types::CipherKind;

use crate::health::Health;
use crate::plan::{Mode, Op, Owned, PathEffect, SleeveKey};
use crate::wire::{self, StateMsg};

/// How often health, grace and re-announcements are checked.
pub const TICK_MS: Millis = 500;
/// How often fastdp heartbeats go out.
pub const PING_MS: Millis = 1_000;
/// How long a fastdp peer whose router went away keeps its VXLAN entries (the kernel on
/// its side still carries its containers).
pub const DEPARTED_GRACE_MS: Millis = 600_000;
/// How long after leaving fastdp a peer that becomes unreachable still counts as departed
/// from fastdp (its other connections may take this long to be seen gone).
pub const LEFT_FASTDP_MS: Millis = 10_000;
/// Token of a fastdp size probe (a heartbeat padded to the overlay MTU); ordinary
/// heartbeats carry 0 or 1 (whether the pinged side's answers arrive, at every size).
pub const TOKEN_PROBE: Millis = 1 << 32;
/// With [`TOKEN_PROBE`]: the size probe is the heartbeat too, its lowest bit the verdict
/// (sent to peers that announce [`wire::BEATS_VERSION`]: one frame per pair and period).
pub const TOKEN_BEAT: Millis = 1 << 33;

/// Whether a heartbeat token is a heartbeat (an ordinary one, or a size probe that is one).
pub fn is_heartbeat(token: Millis) -> bool {
    token & TOKEN_PROBE == 0 || token & TOKEN_BEAT != 0
}
/// How often the state is announced even without a change (repairs a lost broadcast; a
/// peer that appears or restarts gets it at once).
pub const REANNOUNCE_MS: Millis = 30_000;
/// A peer that asks for our state (its announcement says `reply`) gets an answer at most
/// once in this time; a reachable peer whose state we lack is asked again this often.
pub const REPLY_MIN_MS: Millis = 1_000;

/// How a router's path core is set up.
#[derive(Debug, Clone)]
pub struct PathConfig {
    /// This router's name.
    pub me: String,
    /// Mesh channel of the state gossip.
    pub channel: u16,
    /// Random id of this run (hex); sleeve keys derive from it.
    pub run: String,
    /// This router's bridge MAC.
    pub bmac: [u8; 6],
    /// fastdp is on (not --no-fastdp) and heartbeats can be sent.
    pub fastdp: bool,
    /// A password is set: the sleeve seals, fastdp only towards `trusted`.
    pub encrypted: bool,
    /// `--trusted-subnets`: with a password, fastdp (clear text) only to these.
    pub trusted: Vec<Ipv4Net>,
    /// The sleeve ciphers this host offers (announced; [`CipherKind::supported`]).
    pub ciphers: Vec<CipherKind>,
    /// The overlay MTU fastdp must carry: each heartbeat period also sends a size probe,
    /// a heartbeat padded to a packet of this size, and fastdp is used only while those
    /// answer too (0: no size probes).
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Announced {
    run: String,
    seq: u64,
    bmac: [u8; 6],
    macs: Vec<[u8; 6]>,
    ciphers: Vec<CipherKind>,
    beats: u32,
}

/// What the topology says of a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reach {
    port: u16,
    direct: Option<Ipv4Addr>,
    via: Option<String>,
    children: Vec<String>,
    relays_ours: bool,
}

/// What one peer puts into the tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Contribution {
    mode: Option<Mode>,
    vxlan_macs: Vec<([u8; 6], Ipv4Addr)>,
    flood: Option<Ipv4Addr>,
    sleeve: Option<(Option<SocketAddr>, SleeveKey)>,
    route: Option<u32>,
    sleeve_macs: Vec<[u8; 6]>,
    /// A direct sleeve peer on fastdp: the sleeve sends it no heartbeats of its own.
    quiet: bool,
}

#[derive(Debug)]
struct Peer {
    name: String,
    id: u32,
    reach: Option<Reach>,
    announced: Option<Announced>,
    health: Health,
    /// Answers to size probes (kept by the pinging side of the pair only).
    fits: Health,
    /// Left the mesh while on fastdp, at this time.
    departed: Option<Millis>,
    /// What a departed peer keeps in the tables (its VXLAN entries).
    kept: Contribution,
    /// When it last went off fastdp and what it had there: a router that stops is first
    /// seen losing our connection (relayed through peers that have not noticed yet), then
    /// unreachable.
    left_fastdp: Option<(Millis, Contribution)>,
    /// When our state last went to this peer alone.
    sent_to: Option<Millis>,
    /// When we last answered its request for our state (`reply`).
    answered: Option<Millis>,
    applied: Contribution,
    dirty: bool,
}

/// The path-choice core of one router.
#[derive(Debug)]
pub struct PathCore {
    cfg: PathConfig,
    id: u32,
    slots: Vec<Option<Peer>>,
    free: Vec<usize>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<u32, usize>,
    dirty: Vec<usize>,
    /// Broadcast routes must be recomputed.
    trees_dirty: bool,
    own_children: Vec<String>,
    vxlan_macs: Owned<[u8; 6], Ipv4Addr>,
    sleeve_macs: Owned<[u8; 6], u32>,
    flood: Owned<Ipv4Addr, ()>,
    broadcast: HashMap<u32, Vec<u32>>,
    seq: u64,
    local_macs: Vec<[u8; 6]>,
    next_tick: Millis,
    next_ping: Millis,
    next_announce: Millis,
    now: Millis,
    transmits: VecDeque<Transmit>,
    effects: VecDeque<PathEffect>,
}

impl PathCore {
    /// A core that knows no peer yet; it announces itself at once.
    pub fn new(cfg: PathConfig) -> PathCore {
        let mut c = PathCore {
            id: wire::short_id(&cfg.me),
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            dirty: Vec::new(),
            trees_dirty: true,
            own_children: Vec::new(),
            vxlan_macs: Owned::default(),
            sleeve_macs: Owned::default(),
            flood: Owned::default(),
            broadcast: HashMap::new(),
            seq: 1,
            local_macs: Vec::new(),
            next_tick: 0,
            next_ping: 0,
            next_announce: 0,
            now: 0,
            transmits: VecDeque::new(),
            effects: VecDeque::new(),
        };
        c.broadcast_state();
        c
    }

    /// This router's sleeve short id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The containers' MACs on this host changed: announce them.
    pub fn set_local_macs(&mut self, now: Millis, mut macs: Vec<[u8; 6]>) {
        self.now = self.now.max(now);
        macs.sort();
        macs.dedup();
        self.local_macs = macs;
        self.seq += 1;
        self.broadcast_state();
    }

    /// The bridge MAC a heartbeat from peer `sender` is answered to (None: not a peer we
    /// know the state of).
    pub fn answer_to(&self, sender: u32) -> Option<[u8; 6]> {
        let s = *self.by_id.get(&sender)?;
        self.peer(s)?.announced.as_ref().map(|a| a.bmac)
    }

    /// A fastdp heartbeat from peer `sender` arrived with `token` (the driver answers it,
    /// a size probe with an answer of the same size); a verdict of 1 (a token of 1, or
    /// [`TOKEN_BEAT`] with its lowest bit set) says our answers arrive, at the overlay MTU
    /// too, so the round trip works.
    pub fn pinged(&mut self, now: Millis, sender: u32, token: Millis) {
        let ok = token == 1 || (token & TOKEN_BEAT != 0 && token & 1 == 1);
        if ok && sender < self.id {
            self.pong(now, sender, 0);
        }
    }

    /// A fastdp heartbeat answer from peer `sender` arrived, echoing `token`
    /// ([`TOKEN_PROBE`]: the answer to a size probe; with [`TOKEN_BEAT`] to a heartbeat too).
    pub fn pong(&mut self, now: Millis, sender: u32, token: Millis) {
        self.now = self.now.max(now);
        let Some(&s) = self.by_id.get(&sender) else {
            return;
        };
        let Some(p) = self.slots[s].as_mut() else {
            return;
        };
        if p.reach.is_none() && p.departed.is_none() {
            return;
        }
        if token & TOKEN_PROBE != 0 {
            p.fits.pong(now);
        }
        if is_heartbeat(token) {
            p.health.pong(now);
        }
        self.check_health(s);
        self.replan();
    }

    /// The path in use to a peer.
    pub fn mode_of(&self, peer: &str) -> Option<&Mode> {
        let s = *self.by_name.get(peer)?;
        self.peer(s)?.applied.mode.as_ref()
    }

    /// Number of peers the core holds (reachable, departed or announced).
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the core holds no peer.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    fn peer(&self, s: usize) -> Option<&Peer> {
        self.slots.get(s).and_then(|p| p.as_ref())
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&s) = self.by_name.get(name) {
            return s;
        }
        let p = Peer {
            name: name.to_string(),
            id: wire::short_id(name),
            reach: None,
            announced: None,
            health: Health::default(),
            fits: Health::default(),
            departed: None,
            kept: Contribution::default(),
            left_fastdp: None,
            sent_to: None,
            answered: None,
            applied: Contribution::default(),
            dirty: false,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(p);
                s
            }
            None => {
                self.slots.push(Some(p));
                self.slots.len() - 1
            }
        };
        self.by_name.insert(name.to_string(), s);
        self.by_id.insert(wire::short_id(name), s);
        s
    }

    fn mark(&mut self, s: usize) {
        if let Some(p) = self.slots[s].as_mut() {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(s);
            }
        }
    }

    fn state_msg(&self, reply: bool) -> Vec<u8> {
        StateMsg {
            v: wire::STATE_VERSION,
            id: self.id,
            run: self.cfg.run.clone(),
            seq: self.seq,
            bmac: wire::fmt_mac(&self.cfg.bmac),
            macs: self.local_macs.iter().map(wire::fmt_mac).collect(),
            ciphers: self
                .cfg
                .ciphers
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            reply,
            beats: wire::BEATS_VERSION,
        }
        .encode()
    }

    /// Our state to all.
    fn broadcast_state(&mut self) {
        let payload = self.state_msg(false);
        self.next_announce = self.now + REANNOUNCE_MS;
        self.transmits.push_back(Transmit::Broadcast {
            channel: self.cfg.channel,
            payload,
        });
    }

    /// Our state to the peer in slot `s`; with `reply` when we do not hold its state (it
    /// then answers with its own even if it has sent it before).
    fn send_state(&mut self, s: usize, reply: bool) {
        let now = self.now;
        let Some(p) = self.slots[s].as_mut() else {
            return;
        };
        p.sent_to = Some(now);
        let dst = p.name.clone();
        let payload = self.state_msg(reply);
        self.transmits.push_back(Transmit::To {
            channel: self.cfg.channel,
            dst,
            payload,
        });
    }

    fn fastdp_ok(&self, p: &Peer) -> bool {
        let Some(ip) = p.reach.as_ref().and_then(|r| r.direct) else {
            return false;
        };
        // The pinging side (the smaller id) also needs its size probes answered; the other
        // side's health follows the pinger's tokens, which say both.
        let fits = self.cfg.mtu == 0 || self.id > p.id || p.fits.ok(self.now);
        self.cfg.fastdp
            && p.health.ok(self.now)
            && fits
            && (!self.cfg.encrypted || self.cfg.trusted.iter().any(|n| n.contains(&ip)))
    }

    /// Marks the peer if its health no longer matches its path.
    fn check_health(&mut self, s: usize) {
        let Some(p) = self.peer(s) else { return };
        if p.reach.as_ref().is_some_and(|r| r.direct.is_some()) {
            let on = p.applied.mode.as_ref().is_some_and(Mode::is_fastdp);
            if self.fastdp_ok(p) != on {
                self.mark(s);
            }
        }
    }

    fn key_of(&self, p: &Peer) -> Option<SleeveKey> {
        if !self.cfg.encrypted {
            return Some(SleeveKey::Clear);
        }
        let a = p.announced.as_ref()?;
        let theirs = &a.run;
        let (lo, hi) = if *theirs < self.cfg.run {
            (theirs.clone(), self.cfg.run.clone())
        } else {
            (self.cfg.run.clone(), theirs.clone())
        };
        // Symmetric: both sides choose the same cipher from the two offers.
        let cipher = CipherKind::negotiate(&self.cfg.ciphers, &a.ciphers);
        Some(SleeveKey::Derive { lo, hi, cipher })
    }

    /// What peer `s` should put into the tables now.
    fn contribution(&self, s: usize) -> Contribution {
        let Some(p) = self.peer(s) else {
            return Contribution::default();
        };
        let Some(r) = &p.reach else {
            // Departed on fastdp: its VXLAN entries stay for the grace period.
            if p.departed.is_some() {
                return p.kept.clone();
            }
            return Contribution::default();
        };
        let mode = match (r.direct, &r.via) {
            (Some(ip), _) if self.fastdp_ok(p) => Mode::Fastdp(ip),
            (Some(ip), _) => Mode::Sleeve(SocketAddr::new(IpAddr::V4(ip), r.port)),
            (None, Some(hop)) => {
                let hop_direct = self
                    .by_name
                    .get(hop)
                    .and_then(|&h| self.peer(h))
                    .and_then(|h| h.reach.as_ref())
                    .is_some_and(|h| h.direct.is_some());
                if !hop_direct {
                    return Contribution::default();
                }
                Mode::Relay(hop.clone())
            }
            (None, None) => return Contribution::default(),
        };
        let mut c = Contribution::default();
        let (bmac, macs) = match &p.announced {
            Some(a) => (Some(a.bmac), a.macs.as_slice()),
            None => (None, &[][..]),
        };
        let key = self.key_of(p);
        match &mode {
            Mode::Fastdp(ip) => {
                c.vxlan_macs.extend(macs.iter().map(|m| (*m, *ip)));
                if !r.relays_ours {
                    c.flood = Some(*ip);
                }
                let addr = SocketAddr::new(IpAddr::V4(*ip), r.port);
                c.sleeve = key.map(|k| (Some(addr), k));
            }
            Mode::Sleeve(addr) => {
                c.sleeve = key.map(|k| (Some(*addr), k));
                c.sleeve_macs.extend_from_slice(macs);
            }
            Mode::Relay(hop) => {
                c.sleeve = key.map(|k| (None, k));
                c.route = Some(wire::short_id(hop));
                c.sleeve_macs.extend_from_slice(macs);
            }
        }
        // Heartbeats (and the exposed host) go to the bridge MAC of every direct peer.
        if let (Some(ip), Some(b)) = (r.direct, bmac) {
            c.vxlan_macs.push((b, ip));
            if !mode.is_fastdp() {
                c.sleeve_macs.push(b);
            }
        }
        if c.sleeve.is_none() {
            // The sleeve does not know the peer yet (its run, for the key): nothing of it.
            c.route = None;
            c.sleeve_macs.clear();
        }
        // fastdp heartbeats decide the path: the sleeve need not measure one not in use.
        c.quiet = mode.is_fastdp() && c.sleeve.is_some();
        c.mode = Some(mode);
        c
    }

    /// Plans the marked peers again and emits the differences.
    fn replan(&mut self) {
        if self.dirty.is_empty() && !self.trees_dirty {
            return;
        }
        let mut vx = Vec::new();
        let mut peers_up = Vec::new();
        let mut rest = Vec::new();
        let mut gone = Vec::new();
        let mut after = Vec::new();
        let dirty = std::mem::take(&mut self.dirty);
        for &s in &dirty {
            let new = self.contribution(s);
            let Some(p) = self.slots[s].as_mut() else {
                continue;
            };
            p.dirty = false;
            if new == p.applied {
                continue;
            }
            let old = std::mem::replace(&mut p.applied, new.clone());
            match (&old.mode, &new.mode) {
                (_, Some(Mode::Fastdp(_))) => p.left_fastdp = None,
                (Some(Mode::Fastdp(_)), _) => p.left_fastdp = Some((self.now, vxlan_part(&old))),
                _ => {}
            }
            let (name, id) = (p.name.clone(), p.id);
            let relearn: Vec<[u8; 6]> = p
                .announced
                .as_ref()
                .map(|a| a.macs.iter().copied().chain([a.bmac]).collect())
                .unwrap_or_default();
            // VXLAN.
            for (mac, _) in &old.vxlan_macs {
                if !new.vxlan_macs.iter().any(|(m, _)| m == mac) {
                    if let Some(now) = self.vxlan_macs.remove(*mac, s) {
                        vx.push(Op::VxlanMac { mac: *mac, ip: now });
                    }
                }
            }
            for (mac, ip) in &new.vxlan_macs {
                if let Some(ip) = self.vxlan_macs.insert(*mac, s, *ip) {
                    vx.push(Op::VxlanMac {
                        mac: *mac,
                        ip: Some(ip),
                    });
                }
            }
            if old.flood != new.flood {
                if let Some(ip) = old.flood {
                    if self.flood.remove(ip, s).is_some() {
                        vx.push(Op::VxlanFlood { ip, on: false });
                    }
                }
                if let Some(ip) = new.flood {
                    if self.flood.insert(ip, s, ()).is_some() {
                        vx.push(Op::VxlanFlood { ip, on: true });
                    }
                }
            }
            // Sleeve.
            let sleeve_direct =
                |c: &Contribution| c.sleeve.as_ref().is_some_and(|(a, _)| a.is_some());
            if sleeve_direct(&old) != sleeve_direct(&new)
                || old.mode.as_ref().map(Mode::is_fastdp) != new.mode.as_ref().map(Mode::is_fastdp)
            {
                self.trees_dirty = true;
            }
            let mut added = false;
            match (&old.sleeve, &new.sleeve) {
                (_, Some((addr, key))) if old.sleeve != new.sleeve => {
                    added = true;
                    peers_up.push(Op::SleevePeer {
                        id,
                        name: name.clone(),
                        addr: *addr,
                        key: key.clone(),
                    })
                }
                (Some(_), None) => gone.push(Op::SleevePeerGone { id }),
                _ => {}
            }
            if new.sleeve.is_some() && (old.quiet != new.quiet || (added && new.quiet)) {
                rest.push(Op::SleeveQuiet {
                    id,
                    quiet: new.quiet,
                });
            }
            let dropped = old.sleeve.is_some() && new.sleeve.is_none();
            if old.route != new.route && new.sleeve.is_some() {
                rest.push(Op::SleeveRoute {
                    dst: id,
                    via: new.route,
                });
            }
            for mac in &old.sleeve_macs {
                if !new.sleeve_macs.contains(mac) {
                    if let Some(now) = self.sleeve_macs.remove(*mac, s) {
                        // A gone peer's entries go with it in the sleeve.
                        if !dropped || now.is_some() {
                            rest.push(Op::SleeveMac { mac: *mac, id: now });
                        }
                    }
                }
            }
            for mac in &new.sleeve_macs {
                if let Some(v) = self.sleeve_macs.insert(*mac, s, id) {
                    rest.push(Op::SleeveMac {
                        mac: *mac,
                        id: Some(v),
                    });
                }
            }
            // Status and relearning.
            {
                let kind = |m: &Option<Mode>| m.as_ref().map(Mode::is_fastdp);
                if let Some(to) = &new.mode {
                    if old.mode.is_none() || kind(&old.mode) != kind(&new.mode) {
                        after.push(PathEffect::Switched {
                            peer: name.clone(),
                            from: old.mode.clone(),
                            to: to.clone(),
                            macs: relearn,
                        });
                    }
                }
                let direct = self
                    .peer(s)
                    .and_then(|p| p.reach.as_ref())
                    .and_then(|r| r.direct);
                after.push(PathEffect::Path {
                    peer: name,
                    mode: new.mode.clone(),
                    direct,
                });
            }
        }
        let trees = if self.trees_dirty {
            self.trees_dirty = false;
            self.broadcast_ops()
        } else {
            Vec::new()
        };
        let ops = vx
            .into_iter()
            .chain(peers_up)
            .chain(rest)
            .chain(trees)
            .chain(gone);
        self.effects.extend(ops.map(PathEffect::Apply));
        self.effects.extend(after);
        self.forget_gone(&dirty);
    }

    /// The broadcast routes as they should be, as operations on what is in place.
    fn broadcast_ops(&mut self) -> Vec<Op> {
        let direct_in_sleeve = |core: &PathCore, n: &str| -> Option<u32> {
            let p = core.peer(*core.by_name.get(n)?)?;
            p.applied
                .sleeve
                .as_ref()
                .is_some_and(|(a, _)| a.is_some())
                .then_some(p.id)
        };
        let mut want: HashMap<u32, Vec<u32>> = HashMap::new();
        // Our own broadcasts: through the sleeve to every child no flood entry reaches.
        let own = self
            .own_children
            .iter()
            .filter(|c| {
                self.by_name
                    .get(*c)
                    .and_then(|&s| self.peer(s))
                    .is_some_and(|p| {
                        !p.applied.mode.as_ref().is_some_and(Mode::is_fastdp)
                            || p.reach.as_ref().is_some_and(|r| r.relays_ours)
                    })
            })
            .filter_map(|c| direct_in_sleeve(self, c))
            .collect();
        want.insert(self.id, own);
        // Others' broadcasts: passed on to our children in their tree.
        for p in self.slots.iter().flatten() {
            if let Some(r) = &p.reach {
                let kids = r
                    .children
                    .iter()
                    .filter_map(|c| direct_in_sleeve(self, c))
                    .collect();
                want.insert(p.id, kids);
            }
        }
        let mut ops = Vec::new();
        for origin in self.broadcast.keys() {
            if !want.contains_key(origin) {
                ops.push(Op::Broadcast {
                    origin: *origin,
                    hops: None,
                });
            }
        }
        for (origin, hops) in &want {
            if self.broadcast.get(origin) != Some(hops) {
                ops.push(Op::Broadcast {
                    origin: *origin,
                    hops: Some(hops.clone()),
                });
            }
        }
        ops.sort_by_key(|o| match o {
            Op::Broadcast { origin, .. } => *origin,
            _ => 0,
        });
        self.broadcast = want;
        ops
    }

    /// Frees the slots of peers that are neither reachable nor departed and put nothing
    /// into the tables.
    fn forget_gone(&mut self, touched: &[usize]) {
        for &s in touched {
            let gone = self.peer(s).is_some_and(|p| {
                p.reach.is_none()
                    && p.departed.is_none()
                    && p.applied == Contribution::default()
                    && !p.dirty
                    && p.announced.is_none()
            });
            if gone {
                if let Some(p) = self.slots[s].take() {
                    self.by_name.remove(&p.name);
                    if self.by_id.get(&p.id) == Some(&s) {
                        self.by_id.remove(&p.id);
                    }
                    self.free.push(s);
                }
            }
        }
    }

    fn on_state(&mut self, from: &str, payload: &[u8]) {
        if from == self.cfg.me {
            return;
        }
        let Some(m) = StateMsg::decode(payload) else {
            return;
        };
        if m.id != wire::short_id(from) {
            return;
        }
        let Some(bmac) = wire::parse_mac(&m.bmac) else {
            return;
        };
        let s = self.slot(from);
        let now = self.now;
        let Some(p) = self.slots[s].as_mut() else {
            return;
        };
        // The peer lost our state (it asks for it): answer even if this is not new, at
        // most once per REPLY_MIN_MS.
        let asked = m.reply
            && p.reach.is_some()
            && p.answered
                .is_none_or(|t| now.saturating_sub(t) >= REPLY_MIN_MS);
        if asked {
            p.answered = Some(now);
        }
        let new_run = match &p.announced {
            Some(old) if old.run == m.run && old.seq >= m.seq => {
                if asked {
                    self.send_state(s, false);
                }
                return;
            }
            Some(old) => old.run != m.run,
            None => true,
        };
        let mut macs: Vec<[u8; 6]> = m.macs.iter().filter_map(|s| wire::parse_mac(s)).collect();
        macs.sort();
        macs.dedup();
        let a = Announced {
            ciphers: m.offers(),
            beats: m.beats,
            run: m.run,
            seq: m.seq,
            bmac,
            macs,
        };
        let same_tables = p.announced.as_ref().is_some_and(|o| {
            o.bmac == a.bmac && o.macs == a.macs && o.run == a.run && o.ciphers == a.ciphers
        });
        p.announced = Some(a);
        let reachable = p.reach.is_some();
        if !same_tables {
            self.mark(s);
        }
        if (new_run && reachable) || asked {
            // A new run of a peer (or one that lost our state): it needs our state too.
            self.send_state(s, false);
        }
        self.replan();
    }

    fn tick(&mut self) {
        let now = self.now;
        for s in 0..self.slots.len() {
            let Some(p) = self.peer(s) else { continue };
            if let Some(t) = p.departed {
                if now.saturating_sub(t) >= DEPARTED_GRACE_MS {
                    if let Some(p) = self.slots[s].as_mut() {
                        p.departed = None;
                        p.kept = Contribution::default();
                        p.announced = None;
                    }
                    self.mark(s);
                }
                continue;
            }
            // Reachable without its state (our request or its answer was lost): ask again.
            let ask = p.reach.is_some()
                && p.announced.is_none()
                && p.sent_to
                    .is_none_or(|t| now.saturating_sub(t) >= 2 * REPLY_MIN_MS);
            self.check_health(s);
            if ask {
                self.send_state(s, true);
            }
        }
        self.replan();
        if self.cfg.fastdp && now >= self.next_ping {
            // On whole multiples of the period: with clocks that agree on the second (the
            // driver's does), every router pings at the same moment and each receives the
            // heartbeats and answers of the whole mesh in one burst, one wake-up.
            self.next_ping = (now / PING_MS + 1) * PING_MS;
            // One side of each pair pings (the smaller id), the other answers; with an
            // overlay MTU, a size probe goes along.
            let size = self.cfg.mtu;
            let pings: Vec<PathEffect> = self
                .slots
                .iter()
                .flatten()
                .filter(|p| self.id < p.id)
                .filter(|p| {
                    matches!(
                        p.applied.mode,
                        Some(Mode::Fastdp(_)) | Some(Mode::Sleeve(_))
                    )
                })
                .filter_map(|p| {
                    let ok = p.health.alive(now) && (size == 0 || p.fits.alive(now));
                    p.announced.as_ref().map(|a| (a.bmac, ok, a.beats >= 1))
                })
                .filter(|(b, _, _)| self.vxlan_macs.get(b).is_some())
                .flat_map(|(dst, ok, one_frame)| {
                    let ok = u64::from(ok);
                    // A peer that knows the form gets one frame: the size probe that is
                    // the heartbeat too; an older one both apart.
                    let (ping, probe) = match (size, one_frame) {
                        (0, _) => ((ok, 0), None),
                        (_, true) => ((TOKEN_PROBE | TOKEN_BEAT | ok, size), None),
                        (_, false) => ((ok, 0), Some((TOKEN_PROBE, size))),
                    };
                    std::iter::once(ping)
                        .chain(probe)
                        .map(move |(token, size)| PathEffect::Ping { dst, token, size })
                })
                .collect();
            self.effects.extend(pings);
        }
        if now >= self.next_announce {
            self.broadcast_state();
        }
    }
}

/// The VXLAN part of a fastdp peer's tables (what a departed peer keeps).
fn vxlan_part(c: &Contribution) -> Contribution {
    Contribution {
        mode: c.mode.clone(),
        vxlan_macs: c.vxlan_macs.clone(),
        flood: c.flood,
        ..Contribution::default()
    }
}

impl MeshApp for PathCore {
    type Effect = PathEffect;

    fn handle_message(&mut self, now: Millis, channel: u16, from: &str, payload: &[u8]) {
        self.now = self.now.max(now);
        if channel == self.cfg.channel {
            self.on_state(from, payload);
        }
    }

    fn handle_topology(&mut self, now: Millis, topology: &TopologyView) {
        self.now = self.now.max(now);
        let mut seen = vec![false; self.slots.len()];
        let mut direct_changed = false;
        for r in &topology.peers {
            if r.name == self.cfg.me {
                if self.own_children != r.children {
                    self.own_children = r.children.clone();
                    self.trees_dirty = true;
                }
                continue;
            }
            let reach = Reach {
                port: r.listen_port,
                direct: match r.direct.map(|a| a.ip()) {
                    Some(IpAddr::V4(ip)) => Some(ip),
                    _ => None,
                },
                via: if r.direct.is_none() {
                    r.next_hop.clone()
                } else {
                    None
                },
                children: r.children.clone(),
                relays_ours: r.relays_ours,
            };
            let s = self.slot(&r.name);
            if seen.len() <= s {
                seen.resize(s + 1, false);
            }
            seen[s] = true;
            let Some(p) = self.slots[s].as_mut() else {
                continue;
            };
            if p.reach.as_ref() == Some(&reach) {
                continue;
            }
            let was = p.reach.take();
            direct_changed |= was.as_ref().map(|w| w.direct) != Some(reach.direct);
            if was.as_ref().map(|w| &w.children) != Some(&reach.children)
                || was.as_ref().map(|w| w.relays_ours) != Some(reach.relays_ours)
            {
                self.trees_dirty = true;
            }
            let newly = was.is_none();
            if newly && p.departed.take().is_some() {
                // Back within the grace: assume fastdp still works until heartbeats say
                // otherwise.
                p.kept = Contribution::default();
                p.health = Health::default();
                p.health.pong(self.now);
                p.fits = Health::default();
                p.fits.pong(self.now);
            }
            p.reach = Some(reach);
            // Back after a moment out of the view, it may not know it left ours (its view
            // never changed): without its state we ask it for its state.
            let reply = p.announced.is_none();
            self.mark(s);
            if newly {
                self.trees_dirty = true;
                self.send_state(s, reply);
            }
        }
        for (s, seen) in seen.iter().enumerate() {
            let Some(p) = self.slots[s].as_mut() else {
                continue;
            };
            if *seen || p.departed.is_some() {
                continue;
            }
            if p.reach.is_none() {
                // Announced, but never reachable in this view: forget it.
                if p.announced.take().is_some() {
                    self.mark(s);
                }
                continue;
            }
            p.reach = None;
            p.health = Health::default();
            p.fits = Health::default();
            direct_changed = true;
            self.trees_dirty = true;
            let recent = p
                .left_fastdp
                .take()
                .filter(|(t, _)| self.now.saturating_sub(*t) <= LEFT_FASTDP_MS);
            if p.applied.mode.as_ref().is_some_and(Mode::is_fastdp) {
                p.departed = Some(self.now);
                p.kept = vxlan_part(&p.applied);
            } else if let Some((_, kept)) = recent {
                p.departed = Some(self.now);
                p.kept = kept;
            } else {
                p.announced = None;
            }
            self.mark(s);
        }
        // Relayed peers depend on whether their next hop is direct.
        if direct_changed {
            let relayed: Vec<usize> = (0..self.slots.len())
                .filter(|&s| {
                    self.peer(s)
                        .and_then(|p| p.reach.as_ref())
                        .is_some_and(|r| r.direct.is_none())
                })
                .collect();
            for s in relayed {
                self.mark(s);
            }
        }
        self.replan();
    }

    fn handle_timeout(&mut self, now: Millis) {
        self.now = self.now.max(now);
        if self.now >= self.next_tick {
            // On the grid of TICK_MS (see the pings in `tick`).
            self.next_tick = (self.now / TICK_MS + 1) * TICK_MS;
            self.tick();
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_effect(&mut self) -> Option<PathEffect> {
        self.effects.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        Some(self.next_tick)
    }
}
