//! The running sleeve: the control handle the router drives (peers, keys, MAC entries,
//! routes, stats, stop) and the state the two data threads (`tx`, `rx`) share.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::crypto::Cipher;
use super::forwarding::Forwarding;
use super::peer::{Peer, PeerConfig, PeerStats};
use super::pmtu::PmtuConfig;
use super::rx::RxLoop;
use super::tap::{Offloads, Tap};
use super::tx::TxLoop;
use super::udp::UdpSock;
use super::wire::BROADCAST;
use super::{Mac, PeerId, SleeveError, DEFAULT_PORT};

/// How to start a sleeve.
#[derive(Debug, Clone)]
pub struct SleeveConfig {
    /// Our short peer id.
    pub local_id: PeerId,
    /// UDP address to listen on (default 0.0.0.0:6783).
    pub listen: SocketAddr,
    /// Name of the TAP device to create.
    pub tap_name: String,
    /// Bridge to attach the TAP to (None: leave it unattached).
    pub bridge: Option<String>,
    /// MTU for the TAP (None: kernel default 1500).
    pub tap_mtu: Option<u32>,
    /// MTU of the underlay path; datagrams are sized to fit it.
    pub underlay_mtu: u32,
    /// Interval between heartbeats to each direct peer.
    pub heartbeat_interval: Duration,
    /// Refuse peers without a key and any unsealed datagram (a password is set).
    pub require_encryption: bool,
}

impl SleeveConfig {
    /// Defaults: port 6783 on all IPv4 addresses, underlay MTU 1500, heartbeat every second.
    pub fn new(local_id: PeerId, tap_name: &str) -> SleeveConfig {
        SleeveConfig {
            local_id,
            listen: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_PORT),
            tap_name: tap_name.to_string(),
            bridge: None,
            tap_mtu: None,
            underlay_mtu: 1500,
            heartbeat_interval: Duration::from_secs(1),
            require_encryption: false,
        }
    }
}

/// Counters of the whole sleeve.
#[derive(Debug, Clone)]
pub struct SleeveStats {
    /// Per-peer counters, sorted by id.
    pub peers: Vec<PeerStats>,
    /// Datagrams that did not decode.
    pub rx_malformed: u64,
    /// Datagrams from peer ids we do not know.
    pub rx_unknown_peer: u64,
    /// Datagrams that failed authentication, were replays, or were unsealed when they must not be.
    pub rx_rejected: u64,
    /// Of those, authentic datagrams refused as replays or as too old for the window.
    pub rx_replayed: u64,
    /// Frames whose destination had no usable path.
    pub tx_unreachable: u64,
    /// Frames the TAP refused.
    pub tap_write_errors: u64,
    /// Datagrams the UDP socket refused.
    pub udp_send_errors: u64,
    /// sendmmsg calls (batching shows as datagrams per call).
    pub udp_send_calls: u64,
    /// Datagrams sent.
    pub udp_datagrams_sent: u64,
    /// Offloads the TAP accepted.
    pub offloads: Offloads,
}

pub(super) struct Tables {
    pub(super) fwd: Forwarding,
    pub(super) peers: HashMap<PeerId, Arc<Peer>>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) rx_malformed: AtomicU64,
    pub(super) rx_unknown_peer: AtomicU64,
    pub(super) rx_rejected: AtomicU64,
    pub(super) rx_replayed: AtomicU64,
    pub(super) tx_unreachable: AtomicU64,
    pub(super) tap_write_errors: AtomicU64,
    pub(super) udp_send_errors: AtomicU64,
    pub(super) udp_send_calls: AtomicU64,
    pub(super) udp_datagrams_sent: AtomicU64,
}

/// What the control handle and the data threads share.
pub(super) struct Shared {
    pub(super) local: PeerId,
    pub(super) epoch: Instant,
    pub(super) tables: RwLock<Tables>,
    pub(super) tap: Tap,
    pub(super) sock: UdpSock,
    pub(super) stop: AtomicBool,
    pub(super) stop_fd: OwnedFd,
    pub(super) kick_fd: OwnedFd,
    /// IP header length on the underlay (20 or 40).
    pub(super) ip_header: usize,
    /// The underlay MTU we were told (the ceiling of every path-MTU search).
    pub(super) underlay_mtu: u32,
    pub(super) heartbeat_nanos: u64,
    pub(super) require_encryption: bool,
    pub(super) counters: Counters,
}

impl Shared {
    pub(super) fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    pub(super) fn read_tables(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn write_tables(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running sleeve. Dropping it stops the threads and removes the TAP device.
pub struct Sleeve {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Sleeve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleeve")
            .field("local", &self.shared.local)
            .field("tap", &self.shared.tap.name())
            .field("udp", &self.shared.sock.local_addr())
            .finish()
    }
}

fn eventfd() -> Result<OwnedFd, SleeveError> {
    // SAFETY: eventfd(2); checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(SleeveError::Thread(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

pub(super) fn drain(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reading 8 bytes from an eventfd into a u64.
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

impl Sleeve {
    /// Creates the TAP (in the caller's network namespace), attaches it to the bridge,
    /// binds the UDP socket and starts the two data threads. Rolls back on failure.
    pub fn start(config: SleeveConfig) -> Result<Sleeve, SleeveError> {
        if config.underlay_mtu < 576 || config.underlay_mtu > 65535 {
            return Err(SleeveError::Config(format!(
                "underlay MTU {} is outside 576..65535",
                config.underlay_mtu
            )));
        }
        if config.local_id == BROADCAST {
            return Err(SleeveError::Config(format!(
                "peer id {} is reserved for broadcast",
                BROADCAST
            )));
        }
        // Order: socket first (the most likely to fail: port in use), then the TAP; both
        // are closed (TAP removed) by drop if a later step fails.
        let sock = UdpSock::bind(config.listen)?;
        let tap = Tap::open(&config.tap_name)?;
        if let Some(mtu) = config.tap_mtu {
            tap.set_mtu(mtu)?;
        }
        if let Some(br) = &config.bridge {
            tap.attach_to_bridge(br)?;
        }
        tap.set_up()?;
        let ip = if sock.is_v6() { 40 } else { 20 };
        let shared = Arc::new(Shared {
            local: config.local_id,
            epoch: Instant::now(),
            tables: RwLock::new(Tables {
                fwd: Forwarding::new(config.local_id),
                peers: HashMap::new(),
            }),
            tap,
            sock,
            stop: AtomicBool::new(false),
            stop_fd: eventfd()?,
            kick_fd: eventfd()?,
            ip_header: ip,
            underlay_mtu: config.underlay_mtu,
            heartbeat_nanos: config.heartbeat_interval.as_nanos().max(1_000_000) as u64,
            require_encryption: config.require_encryption,
            counters: Counters::default(),
        });
        let mut sleeve = Sleeve {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        let name = &config.tap_name;
        let s1 = shared.clone();
        sleeve.spawn(format!("sleeve-tx-{name}"), move || TxLoop::new(s1).run())?;
        sleeve.spawn(format!("sleeve-rx-{name}"), move || {
            RxLoop::new(shared).run()
        })?;
        Ok(sleeve)
    }

    /// Runs one of the sleeve's loops on a thread of its own, favoured by the scheduler.
    fn spawn(
        &mut self,
        name: String,
        run: impl FnOnce() + Send + 'static,
    ) -> Result<(), SleeveError> {
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                favour_this_thread();
                run()
            })
            .map_err(SleeveError::Thread)?;
        self.threads.push(thread);
        Ok(())
    }

    /// The UDP address the sleeve listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.sock.local_addr()
    }

    /// The TAP device's name.
    pub fn tap_name(&self) -> &str {
        self.shared.tap.name()
    }

    /// Our peer id.
    pub fn local_id(&self) -> PeerId {
        self.shared.local
    }

    /// Adds a peer or updates it (address, key). A changed key resets the nonce counter
    /// and replay window; the router must hand a fresh key per session.
    pub fn add_peer(&self, peer: PeerConfig) -> Result<(), SleeveError> {
        let refuse = |reason: String| SleeveError::Peer {
            peer: peer.id,
            reason,
        };
        if peer.id == self.shared.local || peer.id == BROADCAST {
            return Err(refuse(format!(
                "id {} is our own id or reserved; pick another short id",
                peer.id
            )));
        }
        if self.shared.require_encryption && peer.key.is_none() {
            return Err(refuse(
                "encryption is required (a password is set) but no session key was given".into(),
            ));
        }
        if let Some(a) = peer.addr {
            if a.is_ipv4() != self.shared.sock.local_addr().is_ipv4() || a.port() == 0 {
                return Err(refuse(format!(
                    "address {a} does not match the sleeve socket {} (family) or has port 0",
                    self.shared.sock.local_addr()
                )));
            }
        }
        let cipher = match &peer.key {
            Some(k) => Some(
                Cipher::new(peer.cipher, k)
                    .map_err(|_| refuse("the session key was refused by the cipher".into()))?,
            ),
            None => None,
        };
        let mut t = self.shared.write_tables();
        let old = t.peers.get(&peer.id).cloned();
        let mut pmtu = PmtuConfig::new(self.shared.underlay_mtu);
        // What every IPv6 link carries; IPv4's 576 is the default.
        if self.shared.ip_header == 40 {
            pmtu.floor = pmtu.floor.max(1280).min(pmtu.ceiling);
        }
        let p = Peer::new(&peer, cipher, pmtu, old.as_deref());
        t.fwd.set_peer(peer.id, peer.addr.is_some());
        t.peers.insert(peer.id, Arc::new(p));
        drop(t);
        // Heartbeat the new peer at once so the router learns quickly whether the path works.
        signal(&self.shared.kick_fd);
        Ok(())
    }

    /// Stops (`quiet`) or resumes the heartbeats and path-MTU probes to a direct peer: the
    /// owner uses another path to it and decides on that path's own heartbeats. Resumed,
    /// the peer is heartbeaten at once and its path MTU searched afresh.
    pub fn set_quiet(&self, id: PeerId, quiet: bool) {
        let t = self.shared.read_tables();
        let Some(p) = t.peers.get(&id) else { return };
        let resumed = p.quiet.swap(quiet, Relaxed) && !quiet;
        if resumed {
            p.resumed.store(self.shared.now() + 1, Relaxed);
        }
        drop(t);
        if resumed {
            signal(&self.shared.kick_fd);
        }
    }

    /// Removes a peer, its MAC entries and routes through it. Returns whether it existed.
    pub fn remove_peer(&self, id: PeerId) -> bool {
        let mut t = self.shared.write_tables();
        t.fwd.remove_peer(id);
        t.peers.remove(&id).is_some()
    }

    /// Programs `mac` as sitting behind `peer` (from gossip). Learned entries from
    /// traffic override it when the MAC shows up elsewhere.
    pub fn set_mac(&self, mac: Mac, peer: PeerId) {
        self.shared.write_tables().fwd.set_mac(mac, peer);
    }

    /// Removes a MAC entry. Returns whether there was one.
    pub fn remove_mac(&self, mac: &Mac) -> bool {
        self.shared.write_tables().fwd.remove_mac(mac)
    }

    /// The peer `mac` sits behind, if known.
    pub fn lookup_mac(&self, mac: &Mac) -> Option<PeerId> {
        let now = self.shared.now();
        self.shared.read_tables().fwd.lookup(mac, now)
    }

    /// Sets the relay next hop for traffic to `dst` (None: send directly).
    pub fn set_route(&self, dst: PeerId, via: Option<PeerId>) {
        self.shared.write_tables().fwd.set_route(dst, via);
    }

    /// Sets the peers that broadcasts originating at `origin` are passed on to (None: the
    /// default — our own go to every direct peer, others' are not passed on).
    pub fn set_broadcast_route(&self, origin: PeerId, next_hops: Option<Vec<PeerId>>) {
        self.shared
            .write_tables()
            .fwd
            .set_broadcast_route(origin, next_hops);
    }

    /// Counters and liveness of one peer.
    pub fn peer_stats(&self, id: PeerId) -> Option<PeerStats> {
        let p = self.shared.read_tables().peers.get(&id).cloned()?;
        Some(p.stats(self.shared.epoch))
    }

    /// Counters of the whole sleeve and of every peer.
    pub fn stats(&self) -> SleeveStats {
        let mut peers: Vec<Arc<Peer>> = self.shared.read_tables().peers.values().cloned().collect();
        peers.sort_by_key(|p| p.id);
        let c = &self.shared.counters;
        SleeveStats {
            peers: peers.iter().map(|p| p.stats(self.shared.epoch)).collect(),
            rx_malformed: c.rx_malformed.load(Relaxed),
            rx_unknown_peer: c.rx_unknown_peer.load(Relaxed),
            rx_rejected: c.rx_rejected.load(Relaxed),
            rx_replayed: c.rx_replayed.load(Relaxed),
            tx_unreachable: c.tx_unreachable.load(Relaxed),
            tap_write_errors: c.tap_write_errors.load(Relaxed),
            udp_send_errors: c.udp_send_errors.load(Relaxed),
            udp_send_calls: c.udp_send_calls.load(Relaxed),
            udp_datagrams_sent: c.udp_datagrams_sent.load(Relaxed),
            offloads: self.shared.tap.offloads(),
        }
    }

    /// Stops the threads and removes the TAP device.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Relaxed);
        signal(&self.shared.stop_fd);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Sleeve {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Raises this data thread's scheduling weight (nice -10) so that, on a busy host, frames
/// do not wait behind batch work for a CPU slot; the kernel's own VXLAN path runs in
/// softirq and never waits like that. Best effort: without CAP_SYS_NICE nothing changes.
pub(super) fn favour_this_thread() {
    // SAFETY: gettid and setpriority on the calling thread only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10);
    }
}
