//! The data-path driver task: gossips this host's bridge and container MACs on the mesh,
//! sends and answers fastdp heartbeats, runs the sleeve, and keeps the VXLAN FDB and the
//! sleeve's tables equal to what `plan::plan` wants.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use weft_datapath::fastdp;
use weft_datapath::probe::ProbeSocket;
use weft_datapath::sleeve::{CipherKind, PeerConfig, PeerId, Sleeve, SleeveConfig};

use super::plan::{self, Health, Mode, PeerView, Plan};
use super::wire::{self, Probe, StateMsg};
use super::{lock, DatapathHandle, PathInfo, BRIDGE, SLEEVE_TAP};
use crate::mesh::MeshHandle;
use crate::state::Router;

/// Requests to the driver.
#[derive(Debug)]
pub(super) enum Cmd {
    /// Local containers changed: announce and refresh the firewall.
    LocalChanged,
    /// Stop; answer when the sleeve is gone.
    Stop(oneshot::Sender<()>),
}

/// How often the driver wakes up (heartbeats every other tick).
const TICK: Duration = Duration::from_millis(250);
/// How long a fastdp peer whose router went away keeps its VXLAN entries.
const DEPARTED_GRACE: Duration = Duration::from_secs(600);
/// How often the state is announced even without a change.
const REANNOUNCE: Duration = Duration::from_secs(5);

/// What a peer announced.
#[derive(Debug, Clone)]
struct Announced {
    run: String,
    seq: u64,
    bmac: [u8; 6],
    macs: Vec<[u8; 6]>,
    ciphers: Vec<CipherKind>,
}

struct Driver {
    router: Router,
    h: DatapathHandle,
    mesh: MeshHandle,
    me: String,
    id: u32,
    run: String,
    seq: u64,
    bmac: [u8; 6],
    password: Option<String>,
    underlay: u32,
    /// With a password, fastdp (unencrypted VXLAN) only to peers in these subnets.
    trusted: Vec<ipnet::Ipv4Net>,
    sleeve: Option<Sleeve>,
    probe: Option<AsyncFd<ProbeSocket>>,
    announced: BTreeMap<String, Announced>,
    health: BTreeMap<String, Health>,
    /// Fastdp peers whose router left the mesh, since when.
    departed: BTreeMap<String, Instant>,
    applied: Plan,
    keys: BTreeMap<String, Option<[u8; 32]>>,
    underlay_to: BTreeMap<Ipv4Addr, u32>,
    epoch: Instant,
    ticks: u64,
    fastdp_mtu: super::pmtu::FastdpMtu,
}

/// Starts the sleeve and the heartbeat socket and spawns the driver.
pub(super) async fn spawn(
    router: &Router,
    h: DatapathHandle,
    underlay: u32,
    rx: mpsc::UnboundedReceiver<Cmd>,
) -> anyhow::Result<()> {
    let Some(mesh) = router.mesh().cloned() else {
        anyhow::bail!("the data path needs the mesh, which is not running");
    };
    let me = router.name().to_string();
    let id = wire::short_id(&me);
    let config = router.config().clone();
    let password = config.password.clone();
    let mtu = h.mtu();
    let fastdp_on = h.fastdp();
    let (sleeve, probe, bmac) = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(Sleeve, Option<ProbeSocket>, [u8; 6])> {
            let bmac = {
                let mut nl = weft_datapath::nl::Handle::current()?;
                weft_datapath::link::require(&mut nl, BRIDGE)?
                    .mac6()
                    .ok_or_else(|| anyhow::anyhow!("bridge {BRIDGE} has no Ethernet address"))?
            };
            let mut sc = SleeveConfig::new(PeerId(id), SLEEVE_TAP);
            sc.listen = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), config.port);
            sc.bridge = Some(BRIDGE.to_string());
            sc.tap_mtu = Some(mtu);
            sc.underlay_mtu = underlay.clamp(576, 65535);
            sc.heartbeat_interval = Duration::from_millis(500);
            sc.require_encryption = config.password.is_some();
            let sleeve = Sleeve::start(sc)?;
            if std::env::var("WEFT_SLEEVE_REALTIME").as_deref() == Ok("1") {
                realtime_sleeve_threads();
            }
            weft_datapath::port::set_isolated(SLEEVE_TAP, true)?;
            let probe = if fastdp_on {
                Some(ProbeSocket::open(BRIDGE, fastdp::VXLAN_NAME)?)
            } else {
                None
            };
            Ok((sleeve, probe, bmac))
        },
    )
    .await??;
    let probe = match probe {
        // SAFETY: the socket is owned by the AsyncFd for as long as it is registered.
        Some(p) => Some(unsafe { AsyncFd::register(p) }.map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let run: [u8; 16] = rand::random();
    let d = Driver {
        router: router.clone(),
        h,
        mesh,
        me,
        id,
        run: run.iter().map(|b| format!("{b:02x}")).collect(),
        seq: 1,
        bmac,
        trusted: config
            .trusted_subnets
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
        password,
        underlay,
        sleeve: Some(sleeve),
        probe,
        announced: BTreeMap::new(),
        health: BTreeMap::new(),
        departed: BTreeMap::new(),
        applied: Plan::default(),
        keys: BTreeMap::new(),
        underlay_to: BTreeMap::new(),
        epoch: Instant::now(),
        ticks: 0,
        fastdp_mtu: super::pmtu::FastdpMtu::new(mtu),
    };
    tokio::spawn(d.run(rx));
    Ok(())
}

async fn readable(
    p: &Option<AsyncFd<ProbeSocket>>,
) -> Option<tokio::io::unix::AsyncFdReadyGuard<'_, ProbeSocket>> {
    match p {
        Some(p) => p.readable().await.ok(),
        None => std::future::pending().await,
    }
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut deliveries = self.mesh.subscribe(crate::channels::DATAPATH);
        let mut topo = self.mesh.watch();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_announce: Option<Instant> = None;
        let mut announce = true;
        let mut stop_reply = None;
        let stopped = self.router.clone();
        let stopped = stopped.stopped();
        tokio::pin!(stopped);
        super::expose::apply_firewall(&self.h).await;
        let mut buf = [0u8; 2048];
        loop {
            let mut got: Vec<Probe> = Vec::new();
            tokio::select! {
                _ = &mut stopped => break,
                cmd = rx.recv() => match cmd {
                    Some(Cmd::LocalChanged) => {
                        self.seq += 1;
                        announce = true;
                        super::expose::apply_firewall(&self.h).await;
                    }
                    Some(Cmd::Stop(tx)) => {
                        stop_reply = Some(tx);
                        break;
                    }
                    None => break,
                },
                d = deliveries.recv() => match d {
                    Some(d) => self.on_state(&d.from, &d.payload),
                    None => break,
                },
                r = topo.changed() => {
                    if r.is_err() {
                        break;
                    }
                    announce = true;
                }
                _ = tick.tick() => {
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(2) {
                        self.send_pings();
                    }
                    self.probe_fastdp_mtu();
                }
                guard = readable(&self.probe) => {
                    if let Some(mut guard) = guard {
                        loop {
                            match guard.get_inner().recv(&mut buf) {
                                Ok(n) => {
                                    if let Some(p) = buf.get(..n).and_then(Probe::decode) {
                                        got.push(p);
                                    }
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    guard.clear_ready();
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
            for p in got {
                self.on_probe(p);
            }
            self.replan();
            if announce || last_announce.is_none_or(|t| t.elapsed() >= REANNOUNCE) {
                announce = false;
                last_announce = Some(Instant::now());
                let msg = self.state_msg().encode();
                if let Err(e) = self.mesh.broadcast(crate::channels::DATAPATH, msg).await {
                    tracing::debug!("data-path state not announced: {e}");
                }
            }
        }
        if let Some(s) = self.sleeve.take() {
            let _ = tokio::task::spawn_blocking(move || s.stop()).await;
        }
        lock(&self.h.inner.paths).clear();
        tracing::info!("data path driver stopped (fastdp state stays in the kernel)");
        if let Some(tx) = stop_reply {
            let _ = tx.send(());
        }
    }

    fn state_msg(&self) -> StateMsg {
        let mut macs: Vec<String> = self.h.local_macs().iter().map(wire::fmt_mac).collect();
        macs.sort();
        macs.dedup();
        StateMsg {
            v: wire::STATE_VERSION,
            id: self.id,
            run: self.run.clone(),
            seq: self.seq,
            bmac: wire::fmt_mac(&self.bmac),
            macs,
            ciphers: CipherKind::supported()
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
        }
    }

    fn on_state(&mut self, from: &str, payload: &[u8]) {
        if from == self.me {
            return;
        }
        let Some(m) = StateMsg::decode(payload) else {
            tracing::debug!(%from, "malformed data-path state ignored");
            return;
        };
        if m.id != wire::short_id(from) {
            tracing::warn!(%from, id = m.id, "peer announces a sleeve id that is not its name's; ignored");
            return;
        }
        let Some(bmac) = wire::parse_mac(&m.bmac) else {
            return;
        };
        if let Some(old) = self.announced.get(from) {
            if old.run == m.run && old.seq >= m.seq {
                return;
            }
        }
        let macs = m.macs.iter().filter_map(|s| wire::parse_mac(s)).collect();
        let ciphers = m
            .ciphers
            .iter()
            .filter_map(|c| CipherKind::parse(c))
            .collect();
        self.announced.insert(
            from.to_string(),
            Announced {
                run: m.run,
                seq: m.seq,
                bmac,
                macs,
                ciphers,
            },
        );
    }

    /// Advances fastdp's path-MTU searches. Probes go only to peers whose fastdp
    /// heartbeats answer: a path that is down says nothing about its MTU, and one that
    /// comes back starts a fresh search.
    fn probe_fastdp_mtu(&mut self) {
        let Some(sock) = &self.probe else { return };
        let (now, ms) = (self.epoch.elapsed().as_nanos() as u64, self.now_ms());
        let peers: Vec<(String, [u8; 6])> = (self.applied.modes.iter())
            .filter(|(n, m)| {
                !matches!(m, Mode::Relay(_)) && self.health.get(*n).is_some_and(|h| h.ok(ms))
            })
            .filter_map(|(n, _)| Some((n.clone(), self.announced.get(n)?.bmac)))
            .filter(|(_, b)| self.applied.vxlan_macs.contains_key(b))
            .collect();
        let send = |f: &[u8]| drop(sock.get_ref().send(f));
        self.fastdp_mtu.tick(now, self.id, &peers, send);
    }

    /// The sleeve cipher for a pair: AES-256-GCM if both hosts have AES instructions.
    fn cipher_for(&self, name: &str) -> CipherKind {
        let theirs = self.announced.get(name).map(|a| a.ciphers.as_slice());
        CipherKind::negotiate(&CipherKind::supported(), theirs.unwrap_or_default())
    }

    fn send_pings(&mut self) {
        let Some(p) = &self.probe else { return };
        let now = self.now_ms();
        for (name, mode) in &self.applied.modes {
            if matches!(mode, Mode::Relay(_)) {
                continue;
            }
            let Some(a) = self.announced.get(name) else {
                continue;
            };
            if !self.applied.vxlan_macs.contains_key(&a.bmac) {
                continue;
            }
            let f = Probe {
                dst: a.bmac,
                src: wire::probe_mac(self.id),
                kind: wire::PING,
                sender: self.id,
                token: now,
            };
            let _ = p.get_ref().send(&f.encode());
        }
    }

    fn on_probe(&mut self, p: Probe) {
        if p.dst != self.bmac || p.sender == self.id {
            return;
        }
        let Some((name, a)) = self
            .announced
            .iter()
            .find(|(n, _)| wire::short_id(n) == p.sender)
        else {
            return;
        };
        if matches!(p.kind, wire::MTU_PING | wire::MTU_PONG) {
            let (name, bmac, now) = (name.clone(), a.bmac, self.epoch.elapsed().as_nanos() as u64);
            let answer = self.fastdp_mtu.on_probe(&name, bmac, self.id, &p, now);
            if let (Some(f), Some(s)) = (answer, &self.probe) {
                let _ = s.get_ref().send(&f);
            }
            return;
        }
        match p.kind {
            wire::PING => {
                let pong = Probe {
                    dst: a.bmac,
                    src: wire::probe_mac(self.id),
                    kind: wire::PONG,
                    sender: self.id,
                    token: p.token,
                };
                if let Some(s) = &self.probe {
                    let _ = s.get_ref().send(&pong.encode());
                }
            }
            _ => {
                let name = name.clone();
                let now = self.now_ms();
                self.health.entry(name).or_default().pong(now);
            }
        }
    }

    fn views(
        &self,
    ) -> (
        BTreeMap<String, BTreeSet<String>>,
        BTreeMap<String, PeerView>,
    ) {
        let snap = self.mesh.snapshot();
        let now = self.now_ms();
        let lists: BTreeMap<&str, BTreeSet<&str>> = snap
            .peers
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.edges.iter().map(|e| e.name.as_str()).collect(),
                )
            })
            .collect();
        let mut adj: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, bs) in &lists {
            for b in bs {
                if lists.get(b).is_some_and(|l| l.contains(a)) {
                    adj.entry(a.to_string()).or_default().insert(b.to_string());
                }
            }
        }
        let direct: BTreeMap<&str, Ipv4Addr> = snap
            .neighbours
            .iter()
            .filter_map(|n| match n.addr.ip() {
                std::net::IpAddr::V4(ip) => Some((n.name.as_str(), ip)),
                _ => None,
            })
            .collect();
        let routes: BTreeMap<&str, &str> = snap
            .routes
            .iter()
            .map(|(d, h)| (d.as_str(), h.as_str()))
            .collect();
        let mut views = BTreeMap::new();
        for p in &snap.peers {
            if p.name == self.me {
                continue;
            }
            let d = direct.get(p.name.as_str()).copied();
            views.insert(
                p.name.clone(),
                PeerView {
                    id: wire::short_id(&p.name),
                    port: p.listen_port,
                    direct: d,
                    via: if d.is_none() {
                        routes.get(p.name.as_str()).map(|h| h.to_string())
                    } else {
                        None
                    },
                    announced: self
                        .announced
                        .get(&p.name)
                        .map(|a| (plan::pack_mac(&a.bmac), a.macs.clone())),
                    fastdp_ok: self.probe.is_some()
                        && self.health.get(&p.name).is_some_and(|h| h.ok(now))
                        && self.fastdp_mtu.carries(&p.name)
                        && d.is_some_and(|ip| self.may_skip_encryption(ip)),
                },
            );
        }
        (adj, views)
    }

    /// Whether unencrypted fastdp may carry traffic to `ip`: no password is set, or the
    /// peer is in a trusted subnet (the kernel here has no IPsec, so VXLAN is clear text).
    fn may_skip_encryption(&self, ip: Ipv4Addr) -> bool {
        self.password.is_none() || self.trusted.iter().any(|n| n.contains(&ip))
    }

    fn key_for(&self, name: &str) -> Option<Option<[u8; 32]>> {
        let Some(pw) = &self.password else {
            return Some(None);
        };
        let theirs = &self.announced.get(name)?.run;
        let (lo, hi) = if *theirs < self.run {
            (theirs.as_str(), self.run.as_str())
        } else {
            (self.run.as_str(), theirs.as_str())
        };
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pw.as_bytes());
        let tag = ring::hmac::sign(&k, format!("weft-sleeve-1 {lo} {hi}").as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Some(Some(out))
    }

    fn replan(&mut self) {
        let (adj, views) = self.views();
        let now = Instant::now();
        // A peer on fastdp whose router went away (stopped, restarting) keeps its VXLAN
        // entries for a while: the kernel on its side still carries its containers.
        for (name, mode) in &self.applied.modes {
            if matches!(mode, Mode::Fastdp(_)) && !views.contains_key(name) {
                self.departed.entry(name.clone()).or_insert(now);
            }
        }
        let back: Vec<String> = self
            .departed
            .keys()
            .filter(|n| views.contains_key(*n))
            .cloned()
            .collect();
        for n in back {
            self.departed.remove(&n);
            // Assume fastdp still works until its heartbeats say otherwise.
            let mut h = Health::default();
            h.pong(self.now_ms());
            self.health.insert(n, h);
        }
        self.departed
            .retain(|_, t| now.saturating_duration_since(*t) < DEPARTED_GRACE);
        // Forget what we know of peers that are gone.
        let keep = |n: &String| views.contains_key(n) || self.departed.contains_key(n);
        self.announced.retain(|n, _| keep(n));
        self.health.retain(|n, _| views.contains_key(n));
        let mut new = plan::plan(&self.me, self.id, &adj, &views, !self.h.fastdp());
        for name in self.departed.keys() {
            if let Some(Mode::Fastdp(ip)) = self.applied.modes.get(name) {
                new.modes.insert(name.clone(), Mode::Fastdp(*ip));
                if self.applied.vxlan_flood.contains(ip) {
                    new.vxlan_flood.insert(*ip);
                }
                for (mac, at) in &self.applied.vxlan_macs {
                    if at == ip {
                        new.vxlan_macs.entry(*mac).or_insert(*ip);
                    }
                }
            }
        }
        if new != self.applied {
            let old = std::mem::take(&mut self.applied);
            let applied = tokio::task::block_in_place(|| self.apply(&old, new));
            self.applied = applied;
        }
        // Every round: discovered path MTUs change without a change of plan.
        self.publish_paths(&views);
    }

    /// Brings kernel and sleeve from `old` to `new`; returns what is now in place.
    fn apply(&mut self, old: &Plan, mut new: Plan) -> Plan {
        if self.h.fastdp() {
            let vx = fastdp::VXLAN_NAME;
            for (mac, ip) in &old.vxlan_macs {
                if !new.vxlan_macs.contains_key(mac) {
                    if let Err(e) = fastdp::remove_mac(vx, *mac) {
                        tracing::warn!("{e}");
                    }
                } else if new.vxlan_macs.get(mac) != Some(ip) {
                    // replaced below
                }
            }
            for (mac, ip) in &new.vxlan_macs {
                if old.vxlan_macs.get(mac) != Some(ip) {
                    if let Err(e) = fastdp::set_mac(vx, *mac, *ip) {
                        tracing::warn!("{e}");
                    }
                }
            }
            for ip in old.vxlan_flood.difference(&new.vxlan_flood) {
                if let Err(e) = remove_flood(vx, *ip) {
                    tracing::warn!("{e}");
                }
            }
            for ip in new.vxlan_flood.difference(&old.vxlan_flood) {
                if let Err(e) = fastdp::add_peer(vx, *ip) {
                    tracing::warn!("{e}");
                }
            }
        }
        let mut old = old.clone();
        if let Some(s) = &self.sleeve {
            // Peers: gone ones first (the sleeve drops their entries, so forget them too).
            for (name, (id, _)) in &old.sleeve_peers {
                if !new.sleeve_peers.contains_key(name) {
                    s.remove_peer(PeerId(*id));
                    self.keys.remove(name);
                    old.sleeve_macs.retain(|_, p| p != id);
                    old.sleeve_routes.retain(|d, v| d != id && v != id);
                    old.broadcast.remove(id);
                }
            }
            let mut skipped = Vec::new();
            for (name, (id, addr)) in &new.sleeve_peers {
                let Some(key) = self.key_for(name) else {
                    // Encrypted and the peer's run is not known yet: wait for its state.
                    skipped.push(name.clone());
                    continue;
                };
                let same = old.sleeve_peers.get(name) == Some(&(*id, *addr))
                    && self.keys.get(name) == Some(&key);
                if same {
                    continue;
                }
                let pc = PeerConfig {
                    id: PeerId(*id),
                    name: name.clone(),
                    addr: *addr,
                    key,
                    cipher: self.cipher_for(name),
                };
                match s.add_peer(pc) {
                    Ok(()) => {
                        self.keys.insert(name.clone(), key);
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        skipped.push(name.clone());
                    }
                }
            }
            for n in skipped {
                new.sleeve_peers.remove(&n);
            }
            for (dst, via) in &old.sleeve_routes {
                if new.sleeve_routes.get(dst) != Some(via) && !new.sleeve_routes.contains_key(dst) {
                    s.set_route(PeerId(*dst), None);
                }
            }
            for (dst, via) in &new.sleeve_routes {
                if old.sleeve_routes.get(dst) != Some(via) {
                    s.set_route(PeerId(*dst), Some(PeerId(*via)));
                }
            }
            for mac in old.sleeve_macs.keys() {
                if !new.sleeve_macs.contains_key(mac) {
                    s.remove_mac(mac);
                }
            }
            for (mac, id) in &new.sleeve_macs {
                if old.sleeve_macs.get(mac) != Some(id) {
                    s.set_mac(*mac, PeerId(*id));
                }
            }
            for origin in old.broadcast.keys() {
                if !new.broadcast.contains_key(origin) {
                    s.set_broadcast_route(PeerId(*origin), None);
                }
            }
            for (origin, hops) in &new.broadcast {
                if old.broadcast.get(origin) != Some(hops) {
                    s.set_broadcast_route(
                        PeerId(*origin),
                        Some(hops.iter().map(|h| PeerId(*h)).collect()),
                    );
                }
            }
        }
        // Peers that changed path: the bridge must relearn where their MACs are.
        for (name, mode) in &new.modes {
            let was = old.modes.get(name);
            let kind = |m: Option<&Mode>| matches!(m, Some(Mode::Fastdp(_)));
            if was.is_some() && kind(was) == kind(Some(mode)) {
                continue;
            }
            if let Some(w) = was {
                tracing::info!(peer = %name, from = ?w, to = ?mode, "data path changed");
            } else {
                tracing::info!(peer = %name, path = ?mode, "data path chosen");
            }
            if let Some(a) = self.announced.get(name) {
                let mut macs = a.macs.clone();
                macs.push(a.bmac);
                for port in [fastdp::VXLAN_NAME, SLEEVE_TAP] {
                    if let Err(e) = weft_datapath::port::forget_learned(port, &macs) {
                        tracing::debug!("{e}");
                    }
                }
            }
        }
        new
    }

    fn publish_paths(&mut self, views: &BTreeMap<String, PeerView>) {
        let mut out = BTreeMap::new();
        let sealed = self.password.is_some();
        for (name, mode) in &self.applied.modes {
            let sleeve = self.applied.sleeve_peers.get(name);
            let stats = sleeve.and_then(|(id, _)| self.sleeve.as_ref()?.peer_stats(PeerId(*id)));
            let cipher = stats.as_ref().and_then(|s| s.cipher).map(|c| c.to_string());
            let encryption = |fastdp| match (fastdp, cipher.is_some()) {
                (true, _) => "fastdp",
                (false, true) => "encrypted sleeve",
                (false, false) => "sleeve",
            };
            let Some(ip) = views.get(name).and_then(|v| v.direct) else {
                if let Mode::Relay(via) = mode {
                    out.insert(
                        name.clone(),
                        PathInfo {
                            path: format!("sleeve via {via}"),
                            mtu: self.h.mtu(),
                            encryption: encryption(false).to_string(),
                            cipher: cipher.clone(),
                            pmtu: None,
                        },
                    );
                }
                continue;
            };
            let under = *self
                .underlay_to
                .entry(ip)
                .or_insert_with(|| weft_datapath::mtu::underlay_mtu(ip).unwrap_or(self.underlay));
            let fastdp = matches!(mode, Mode::Fastdp(_));
            let (path, overhead, pmtu) = if fastdp {
                let p = self.fastdp_mtu.discovered(name);
                ("fastdp", weft_datapath::mtu::VXLAN_OVERHEAD_V4, p)
            } else {
                let seal = if sealed {
                    weft_datapath::mtu::SLEEVE_SEAL_OVERHEAD
                } else {
                    0
                };
                let p = stats.as_ref().filter(|s| s.pmtu_settled).map(|s| s.pmtu);
                (
                    "sleeve",
                    weft_datapath::mtu::SLEEVE_OVERHEAD_DEFAULT + seal,
                    p,
                )
            };
            // What fits one packet: the discovered path MTU (else the interface's) minus
            // the encapsulation. The sleeve splits bigger frames, so they still arrive.
            let fits = pmtu.unwrap_or(under).min(under).saturating_sub(overhead);
            out.insert(
                name.clone(),
                PathInfo {
                    path: path.to_string(),
                    mtu: fits.min(self.h.mtu()),
                    encryption: encryption(fastdp).to_string(),
                    cipher: if fastdp { None } else { cipher },
                    pmtu,
                },
            );
        }
        *lock(&self.h.inner.paths) = out;
    }
}

/// Gives the sleeve's two data threads the lowest real-time priority (SCHED_FIFO 1): they
/// sleep in poll until frames arrive, and on a busy host a normal thread waits for a core
/// for milliseconds per hop (measured here: median ping RTT 13 ms, 1 Gbit/s under load;
/// 0.5 ms, 3 Gbit/s with this). Opt-in with `WEFT_SLEEVE_REALTIME=1`: a real-time thread
/// moving traffic at full speed would take a core away from the host's own workloads.
fn realtime_sleeve_threads() {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for e in dir.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("sleeve-") {
            continue;
        }
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else {
            continue;
        };
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: sched_setscheduler on a thread id of this process with a valid param.
        let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
        if rc != 0 {
            tracing::debug!(
                tid,
                "sleeve thread keeps normal scheduling: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Removes the flood entry towards `remote` (and only it).
fn remove_flood(vxlan: &str, remote: Ipv4Addr) -> weft_datapath::Result<bool> {
    let mut h = weft_datapath::nl::Handle::current()?;
    let idx = weft_datapath::link::require(&mut h, vxlan)?.index;
    weft_datapath::fdb::delete(&mut h, idx, weft_datapath::fdb::FLOOD_MAC, Some(remote))
}
