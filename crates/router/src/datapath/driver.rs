//! The data-path driver task: carries out the path core's decisions
//! ([`weft_paths::PathCore`], run by the mesh's [`AppDriver`]) against the kernel (VXLAN
//! FDB, bridge learning) and the sleeve, sends the fastdp heartbeats it asks for and
//! answers peers' heartbeats, derives sleeve keys from the password, and keeps the paths
//! shown in the status. It decides nothing itself.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use weft_datapath::fastdp;
use weft_datapath::probe::ProbeSocket;
use weft_datapath::sleeve::{CipherKind, PeerConfig, PeerId, Sleeve, SleeveConfig};
use weft_paths::{Mode, Op, PathConfig, PathCore, PathEffect, SleeveKey};

use super::wire::{self, Probe};
use super::{lock, DatapathHandle, PathInfo, BRIDGE, SLEEVE_TAP};
use crate::config::Config;
use crate::mesh::app_driver::AppDriver;
use crate::mesh::MeshHandle;
use crate::shutdown::Shutdown;

/// Requests to the driver.
#[derive(Debug)]
pub(super) enum Cmd {
    /// Local containers changed: announce and refresh the firewall.
    LocalChanged,
    /// Stop; answer when the sleeve is gone.
    Stop(oneshot::Sender<()>),
}

struct Driver {
    stop: Shutdown,
    h: DatapathHandle,
    id: u32,
    bmac: [u8; 6],
    password: Option<String>,
    underlay: u32,
    sleeve: Option<Sleeve>,
    probe: Option<AsyncFd<ProbeSocket>>,
    app: AppDriver<PathCore>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    underlay_to: BTreeMap<Ipv4Addr, u32>,
    /// The cipher each sealed sleeve peer was given, by name (for the status).
    ciphers: BTreeMap<String, CipherKind>,
}

/// Starts the sleeve and the heartbeat socket and spawns the driver.
pub(super) async fn spawn(
    config: &Config,
    me: &str,
    mesh: MeshHandle,
    stop: Shutdown,
    h: DatapathHandle,
    underlay: u32,
    rx: mpsc::UnboundedReceiver<Cmd>,
) -> anyhow::Result<()> {
    let me = me.to_string();
    let id = wire::short_id(&me);
    let config = config.clone();
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
            // The router does not use the sleeve's own liveness (the path core decides by
            // fastdp heartbeats), so the sleeve's RTT is measured every 2 s only: an idle
            // full mesh stays cheap.
            sc.heartbeat_interval = Duration::from_secs(2);
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
    let run: String = run.iter().map(|b| format!("{b:02x}")).collect();
    let trusted = config.trusted_subnets.clone();
    let mut core = PathCore::new(PathConfig {
        me,
        channel: crate::channels::DATAPATH,
        run,
        bmac,
        fastdp: probe.is_some(),
        encrypted: password.is_some(),
        trusted,
        // AES-256-GCM only where this CPU has AES instructions (detected at run time).
        ciphers: CipherKind::supported(),
        // fastdp must carry packets of the overlay MTU: size probes of that size.
        mtu: if fastdp_on { mtu } else { 0 },
    });
    core.set_local_macs(0, h.local_macs());
    let metrics = mesh.metrics().clone();
    let app = AppDriver::new(core, Some(&mesh), crate::channels::DATAPATH);
    let d = Driver {
        stop,
        h,
        id,
        bmac,
        password,
        underlay,
        sleeve: Some(sleeve),
        probe,
        app,
        metrics,
        underlay_to: BTreeMap::new(),
        ciphers: BTreeMap::new(),
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
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut stop_reply = None;
        let stopped = self.stop.stopped();
        tokio::pin!(stopped);
        super::expose::apply_firewall(&self.h).await;
        self.app.topology_now();
        self.execute();
        // Size probes are as large as the overlay MTU allows.
        let mut buf = vec![0u8; self.h.mtu() as usize + wire::ETH_HEADER + 64];
        loop {
            let mut got: Vec<(Probe, usize)> = Vec::new();
            tokio::select! {
                _ = &mut stopped => break,
                cmd = rx.recv() => match cmd {
                    Some(Cmd::LocalChanged) => {
                        let now = self.app.now();
                        self.app.core.set_local_macs(now, self.h.local_macs());
                        super::expose::apply_firewall(&self.h).await;
                    }
                    Some(Cmd::Stop(tx)) => {
                        stop_reply = Some(tx);
                        break;
                    }
                    None => break,
                },
                up = self.app.next() => {
                    if !up {
                        break;
                    }
                    let stats = self.sleeve.as_ref().map(Sleeve::stats);
                    self.refresh_pmtu(stats.as_ref());
                    self.metrics.sleeve_sampled(stats);
                }
                guard = readable(&self.probe) => {
                    if let Some(mut guard) = guard {
                        loop {
                            match guard.get_inner().recv(&mut buf) {
                                Ok(n) => {
                                    if let Some(p) = buf.get(..n).and_then(Probe::decode) {
                                        got.push((p, n));
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
            for (p, len) in got {
                self.on_probe(p, len);
            }
            self.execute();
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

    /// A heartbeat from a peer (`len` bytes long): answer a ping with an answer of the
    /// same size (a size probe must get through both ways), report a pong to the core.
    fn on_probe(&mut self, p: Probe, len: usize) {
        if p.dst != self.bmac || p.sender == self.id {
            return;
        }
        match p.kind {
            wire::PING => {
                let Some(dst) = self.app.core.answer_to(p.sender) else {
                    return;
                };
                let pong = Probe {
                    dst,
                    src: wire::probe_mac(self.id),
                    kind: wire::PONG,
                    sender: self.id,
                    token: p.token,
                };
                let size = len.saturating_sub(wire::ETH_HEADER) as u32;
                if let Some(s) = &self.probe {
                    let _ = s.get_ref().send(&pong.encode_sized(size));
                }
                let now = self.app.now();
                self.app.core.pinged(now, p.sender, p.token);
            }
            _ => {
                let now = self.app.now();
                if weft_paths::is_heartbeat(p.token) {
                    if let Some(bmac) = self.app.core.answer_to(p.sender) {
                        self.metrics
                            .fastdp_heartbeat_answered(&wire::fmt_mac(&bmac));
                    }
                }
                self.app.core.pong(now, p.sender, p.token);
            }
        }
    }

    /// Carries out what the core asked for.
    fn execute(&mut self) {
        let effects = self.app.flush();
        if effects.is_empty() {
            return;
        }
        let kernel = effects.iter().any(|e| {
            matches!(
                e,
                PathEffect::Apply(_) | PathEffect::Switched { .. } | PathEffect::Path { .. }
            )
        });
        if kernel {
            tokio::task::block_in_place(|| {
                for e in effects {
                    self.effect(e);
                }
            });
        } else {
            for e in effects {
                self.effect(e);
            }
        }
    }

    fn effect(&mut self, e: PathEffect) {
        match e {
            PathEffect::Apply(op) => self.apply(op),
            PathEffect::Ping { dst, token, size } => {
                if let Some(p) = &self.probe {
                    let f = Probe {
                        dst,
                        src: wire::probe_mac(self.id),
                        kind: wire::PING,
                        sender: self.id,
                        token,
                    };
                    let _ = p.get_ref().send(&f.encode_sized(size));
                    if weft_paths::is_heartbeat(token) {
                        self.metrics.fastdp_heartbeat_sent(&wire::fmt_mac(&dst));
                    }
                }
            }
            PathEffect::Switched {
                peer,
                from,
                to,
                macs,
            } => {
                match from {
                    Some(w) => tracing::info!(%peer, from = ?w, to = ?to, "data path changed"),
                    None => tracing::info!(%peer, path = ?to, "data path chosen"),
                }
                // The bridge must relearn where these MACs are.
                for port in [fastdp::VXLAN_NAME, SLEEVE_TAP] {
                    if let Err(e) = weft_datapath::port::forget_learned(port, &macs) {
                        tracing::debug!("{e}");
                    }
                }
            }
            PathEffect::Path { peer, mode, direct } => self.publish_path(peer, mode, direct),
        }
    }

    /// One change to the VXLAN FDB or the sleeve.
    fn apply(&mut self, op: Op) {
        let vx = fastdp::VXLAN_NAME;
        let fastdp_on = self.h.fastdp();
        let r: Result<(), String> = match op {
            Op::VxlanMac { mac, ip } if fastdp_on => match ip {
                Some(ip) => fastdp::set_mac(vx, mac, ip).map_err(|e| e.to_string()),
                None => fastdp::remove_mac(vx, mac)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            },
            Op::VxlanFlood { ip, on } if fastdp_on => {
                if on {
                    fastdp::add_peer(vx, ip).map_err(|e| e.to_string())
                } else {
                    remove_flood(vx, ip).map(|_| ()).map_err(|e| e.to_string())
                }
            }
            Op::VxlanMac { .. } | Op::VxlanFlood { .. } => Ok(()),
            op => {
                let Some(s) = &self.sleeve else { return };
                match op {
                    Op::SleevePeer {
                        id,
                        name,
                        addr,
                        key,
                    } => {
                        let (key, cipher) = match key {
                            SleeveKey::Clear => (None, CipherKind::ChaCha20Poly1305),
                            SleeveKey::Derive { lo, hi, cipher } => {
                                (self.derive_key(&lo, &hi), cipher)
                            }
                        };
                        if key.is_some() {
                            self.ciphers.insert(name.clone(), cipher);
                        } else {
                            self.ciphers.remove(&name);
                        }
                        s.add_peer(PeerConfig {
                            id: PeerId(id),
                            name,
                            addr,
                            key,
                            cipher,
                        })
                        .map_err(|e| e.to_string())
                    }
                    Op::SleevePeerGone { id } => {
                        s.remove_peer(PeerId(id));
                        Ok(())
                    }
                    Op::SleeveQuiet { id, quiet } => {
                        s.set_quiet(PeerId(id), quiet);
                        Ok(())
                    }
                    Op::SleeveRoute { dst, via } => {
                        s.set_route(PeerId(dst), via.map(PeerId));
                        Ok(())
                    }
                    Op::SleeveMac { mac, id } => {
                        match id {
                            Some(id) => s.set_mac(mac, PeerId(id)),
                            None => {
                                s.remove_mac(&mac);
                            }
                        }
                        Ok(())
                    }
                    Op::Broadcast { origin, hops } => {
                        s.set_broadcast_route(
                            PeerId(origin),
                            hops.map(|h| h.into_iter().map(PeerId).collect()),
                        );
                        Ok(())
                    }
                    Op::VxlanMac { .. } | Op::VxlanFlood { .. } => Ok(()),
                }
            }
        };
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    }

    /// The sleeve key of a pair of runs: HMAC-SHA256(password, "weft-sleeve-1 LO HI").
    fn derive_key(&self, lo: &str, hi: &str) -> Option<[u8; 32]> {
        let pw = self.password.as_ref()?;
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pw.as_bytes());
        let tag = ring::hmac::sign(&k, format!("weft-sleeve-1 {lo} {hi}").as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Some(out)
    }

    /// The sleeve's per-peer overhead on this router (the tag too with a password).
    fn sleeve_overhead(&self) -> u32 {
        weft_datapath::mtu::SLEEVE_OVERHEAD_DEFAULT
            + if self.password.is_some() {
                weft_datapath::mtu::SLEEVE_SEAL_OVERHEAD
            } else {
                0
            }
    }

    /// The sleeve's path-MTU search goes on after a peer got its path: the status takes
    /// the latest value of every direct sleeve peer from the sleeve's counters.
    fn refresh_pmtu(&mut self, stats: Option<&weft_datapath::sleeve::SleeveStats>) {
        let Some(stats) = stats else { return };
        let overhead = self.sleeve_overhead();
        let mtu = self.h.mtu();
        let mut paths = lock(&self.h.inner.paths);
        for p in &stats.peers {
            if let Some(info) = paths.get_mut(&p.name).filter(|i| i.path == "sleeve") {
                info.pmtu = Some(p.pmtu);
                info.mtu = p.pmtu.saturating_sub(overhead).min(mtu);
            }
        }
    }

    /// The path of a peer, its encryption and what fits one packet on it, for the status.
    fn publish_path(&mut self, peer: String, mode: Option<Mode>, direct: Option<Ipv4Addr>) {
        let cipher = self.ciphers.get(&peer).copied();
        let info = match (mode, direct) {
            (None, _) => None,
            (Some(Mode::Relay(via)), _) => Some(PathInfo {
                path: format!("sleeve via {via}"),
                cipher,
                mtu: self.h.mtu(),
                pmtu: None,
            }),
            (Some(Mode::Fastdp(_)), Some(_)) => Some(PathInfo {
                path: "fastdp".to_string(),
                cipher: None,
                mtu: self.h.mtu(),
                // fastdp is used only while heartbeats padded to the overlay MTU answer:
                // its datagrams of that size arrive.
                pmtu: Some(self.h.mtu() + weft_datapath::mtu::VXLAN_OVERHEAD_V4),
            }),
            (Some(_), Some(ip)) => {
                let under = *self.underlay_to.entry(ip).or_insert_with(|| {
                    weft_datapath::mtu::underlay_mtu(ip).unwrap_or(self.underlay)
                });
                let pmtu = self
                    .sleeve
                    .as_ref()
                    .and_then(|s| s.peer_stats(PeerId(wire::short_id(&peer))))
                    .map_or(under, |p| p.pmtu);
                Some(PathInfo {
                    path: "sleeve".to_string(),
                    cipher,
                    mtu: pmtu
                        .saturating_sub(self.sleeve_overhead())
                        .min(self.h.mtu()),
                    pmtu: Some(pmtu),
                })
            }
            // A departed fastdp peer (no connection any more): its entries stay, no path.
            (Some(_), None) => None,
        };
        let mut paths = lock(&self.h.inner.paths);
        match info {
            Some(i) => {
                paths.insert(peer, i);
            }
            None => {
                paths.remove(&peer);
            }
        }
        self.metrics
            .paths_published(paths.iter().map(|(k, v)| (k.as_str(), v.path.as_str())));
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
