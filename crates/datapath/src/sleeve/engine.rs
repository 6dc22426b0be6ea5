//! The running sleeve: two threads (TAP→UDP and UDP→TAP) around the sans-IO parts, and
//! the control handle the router drives (peers, keys, MAC entries, routes, stats, stop).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::crypto::{Cipher, ReplayWindow};
use super::forwarding::{Egress, Forwarding};
use super::heartbeat::{RttEstimate, Schedule};
use super::reassembly::{Outcome, Reassembly};
use super::tap::{Offloads, Tap, VNET_HDR_LEN};
use super::udp::{RawAddr, RxBatch, TxBatch, UdpSock};
use super::wire::{self, Common, Data, Kind, BROADCAST, FLAG_SEALED, TAG_LEN, TOKEN_LEN};
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

/// A peer as the router describes it.
#[derive(Clone)]
pub struct PeerConfig {
    /// The peer's short id.
    pub id: PeerId,
    /// The peer's name (for stats and logs).
    pub name: String,
    /// Its sleeve address on the underlay; None when only reachable through a relay.
    pub addr: Option<SocketAddr>,
    /// 32-byte session key for this peer pair; None sends in the clear.
    pub key: Option<[u8; 32]>,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("key", &self.key.map(|_| "<32 bytes>"))
            .finish()
    }
}

/// Counters and liveness of one peer.
#[derive(Debug, Clone)]
pub struct PeerStats {
    /// The peer's id.
    pub id: PeerId,
    /// The peer's name.
    pub name: String,
    /// Its underlay address.
    pub addr: Option<SocketAddr>,
    /// Whether traffic with it is sealed.
    pub encrypted: bool,
    /// Frames sent to it (as next hop).
    pub tx_frames: u64,
    /// Frame bytes sent to it.
    pub tx_bytes: u64,
    /// Datagrams sent to it.
    pub tx_datagrams: u64,
    /// Frames from it written to our TAP.
    pub rx_frames: u64,
    /// Frame bytes from it written to our TAP.
    pub rx_bytes: u64,
    /// Authenticated datagrams received from it.
    pub rx_datagrams: u64,
    /// Datagrams claiming to be from it that failed authentication or were replays.
    pub rx_rejected: u64,
    /// Heartbeats sent to it.
    pub pings_sent: u64,
    /// Heartbeat answers received from it.
    pub pongs_received: u64,
    /// When we last received an authenticated datagram from it.
    pub last_heard: Option<Instant>,
    /// Smoothed heartbeat round-trip time.
    pub rtt: Option<Duration>,
    /// Last heartbeat round-trip time.
    pub last_rtt: Option<Duration>,
}

impl PeerStats {
    /// Whether we heard from the peer within `timeout` before `now` (the path is alive).
    pub fn alive(&self, now: Instant, timeout: Duration) -> bool {
        self.last_heard
            .is_some_and(|t| now.saturating_duration_since(t) <= timeout)
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

struct Peer {
    id: PeerId,
    name: String,
    addr: Option<(SocketAddr, RawAddr)>,
    key: Option<[u8; 32]>,
    cipher: Option<Cipher>,
    tx_counter: AtomicU64,
    replay: Mutex<ReplayWindow>,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_datagrams: AtomicU64,
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    rx_datagrams: AtomicU64,
    rx_rejected: AtomicU64,
    pings_sent: AtomicU64,
    pongs_received: AtomicU64,
    /// Engine clock nanoseconds + 1 of the last authenticated datagram (0 = never).
    last_heard: AtomicU64,
    rtt: Mutex<RttEstimate>,
}

struct Tables {
    fwd: Forwarding,
    peers: HashMap<PeerId, Arc<Peer>>,
}

#[derive(Default)]
struct Counters {
    rx_malformed: AtomicU64,
    rx_unknown_peer: AtomicU64,
    rx_rejected: AtomicU64,
    tx_unreachable: AtomicU64,
    tap_write_errors: AtomicU64,
    udp_send_errors: AtomicU64,
    udp_send_calls: AtomicU64,
    udp_datagrams_sent: AtomicU64,
}

struct Shared {
    local: PeerId,
    epoch: Instant,
    tables: RwLock<Tables>,
    tap: Tap,
    sock: UdpSock,
    stop: AtomicBool,
    stop_fd: OwnedFd,
    kick_fd: OwnedFd,
    chunk_plain: usize,
    chunk_sealed: usize,
    heartbeat_nanos: u64,
    require_encryption: bool,
    counters: Counters,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    fn read_tables(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write_tables(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
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

fn signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

fn drain(fd: RawFd) {
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
        let mtu = config.underlay_mtu as usize;
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
            chunk_plain: wire::chunk_payload(mtu, ip, false),
            chunk_sealed: wire::chunk_payload(mtu, ip, true),
            heartbeat_nanos: config.heartbeat_interval.as_nanos().max(1_000_000) as u64,
            require_encryption: config.require_encryption,
            counters: Counters::default(),
        });
        let mut sleeve = Sleeve {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        let name = config.tap_name.clone();
        let s1 = shared.clone();
        let t1 = std::thread::Builder::new()
            .name(format!("sleeve-tx-{name}"))
            .spawn(move || {
                favour_this_thread();
                TxLoop::new(s1).run()
            })
            .map_err(SleeveError::Thread)?;
        sleeve.threads.push(t1);
        let s2 = shared;
        let t2 = std::thread::Builder::new()
            .name(format!("sleeve-rx-{name}"))
            .spawn(move || {
                favour_this_thread();
                RxLoop::new(s2).run()
            })
            .map_err(SleeveError::Thread)?;
        sleeve.threads.push(t2);
        Ok(sleeve)
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
                Cipher::new(k)
                    .map_err(|_| refuse("the session key was refused by the cipher".into()))?,
            ),
            None => None,
        };
        let mut t = self.shared.write_tables();
        let old = t.peers.get(&peer.id).cloned();
        let same_key = old.as_ref().is_some_and(|o| o.key == peer.key);
        let p = Peer {
            id: peer.id,
            name: peer.name.clone(),
            addr: peer.addr.map(|a| (a, RawAddr::new(a))),
            key: peer.key,
            cipher,
            tx_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::default()),
            tx_frames: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            tx_datagrams: AtomicU64::new(0),
            rx_frames: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            rx_datagrams: AtomicU64::new(0),
            rx_rejected: AtomicU64::new(0),
            pings_sent: AtomicU64::new(0),
            pongs_received: AtomicU64::new(0),
            last_heard: AtomicU64::new(0),
            rtt: Mutex::new(RttEstimate::default()),
        };
        if let Some(o) = &old {
            // Keep the counters; with the same key also the nonce sequence and replay state
            // (restarting them would reuse nonces).
            for (n, o) in [
                (&p.tx_frames, &o.tx_frames),
                (&p.tx_bytes, &o.tx_bytes),
                (&p.tx_datagrams, &o.tx_datagrams),
                (&p.rx_frames, &o.rx_frames),
                (&p.rx_bytes, &o.rx_bytes),
                (&p.rx_datagrams, &o.rx_datagrams),
                (&p.rx_rejected, &o.rx_rejected),
                (&p.pings_sent, &o.pings_sent),
                (&p.pongs_received, &o.pongs_received),
                (&p.last_heard, &o.last_heard),
            ] {
                n.store(o.load(Relaxed), Relaxed);
            }
            if same_key {
                // Leave a gap so datagrams in flight on the old entry never share a nonce.
                p.tx_counter
                    .store(o.tx_counter.load(Relaxed) + (1 << 20), Relaxed);
                let w = o.replay.lock().unwrap_or_else(|e| e.into_inner()).clone();
                *p.replay.lock().unwrap_or_else(|e| e.into_inner()) = w;
                *p.rtt.lock().unwrap_or_else(|e| e.into_inner()) =
                    *o.rtt.lock().unwrap_or_else(|e| e.into_inner());
            } else {
                p.last_heard.store(0, Relaxed);
            }
        }
        t.fwd.set_peer(peer.id, peer.addr.is_some());
        t.peers.insert(peer.id, Arc::new(p));
        drop(t);
        // Heartbeat the new peer at once so the router learns quickly whether the path works.
        signal(&self.shared.kick_fd);
        Ok(())
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

    fn peer_stats_of(&self, p: &Peer) -> PeerStats {
        let heard = p.last_heard.load(Relaxed);
        let rtt = *p.rtt.lock().unwrap_or_else(|e| e.into_inner());
        PeerStats {
            id: p.id,
            name: p.name.clone(),
            addr: p.addr.map(|(a, _)| a),
            encrypted: p.cipher.is_some(),
            tx_frames: p.tx_frames.load(Relaxed),
            tx_bytes: p.tx_bytes.load(Relaxed),
            tx_datagrams: p.tx_datagrams.load(Relaxed),
            rx_frames: p.rx_frames.load(Relaxed),
            rx_bytes: p.rx_bytes.load(Relaxed),
            rx_datagrams: p.rx_datagrams.load(Relaxed),
            rx_rejected: p.rx_rejected.load(Relaxed),
            pings_sent: p.pings_sent.load(Relaxed),
            pongs_received: p.pongs_received.load(Relaxed),
            last_heard: (heard > 0).then(|| self.shared.epoch + Duration::from_nanos(heard - 1)),
            rtt: rtt.srtt.map(Duration::from_nanos),
            last_rtt: rtt.last.map(Duration::from_nanos),
        }
    }

    /// Counters and liveness of one peer.
    pub fn peer_stats(&self, id: PeerId) -> Option<PeerStats> {
        let p = self.shared.read_tables().peers.get(&id).cloned()?;
        Some(self.peer_stats_of(&p))
    }

    /// Counters of the whole sleeve and of every peer.
    pub fn stats(&self) -> SleeveStats {
        let mut peers: Vec<Arc<Peer>> = self.shared.read_tables().peers.values().cloned().collect();
        peers.sort_by_key(|p| p.id);
        let c = &self.shared.counters;
        SleeveStats {
            peers: peers.iter().map(|p| self.peer_stats_of(p)).collect(),
            rx_malformed: c.rx_malformed.load(Relaxed),
            rx_unknown_peer: c.rx_unknown_peer.load(Relaxed),
            rx_rejected: c.rx_rejected.load(Relaxed),
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
fn favour_this_thread() {
    // SAFETY: gettid and setpriority on the calling thread only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10);
    }
}

fn poll2(a: RawFd, b: RawFd, c: RawFd, timeout_ms: i32) -> [bool; 3] {
    let mut p = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: c,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let n = if c < 0 { 2 } else { 3 };
    // SAFETY: `n` valid pollfds.
    unsafe { libc::poll(p.as_mut_ptr(), n, timeout_ms) };
    [p[0].revents != 0, p[1].revents != 0, p[2].revents != 0]
}

/// Queues one message (or chunk train) to `peer`.
#[allow(clippy::too_many_arguments)]
fn push_data(
    shared: &Shared,
    batch: &mut TxBatch,
    peer: &Peer,
    origin: PeerId,
    dst: PeerId,
    frame_id: u32,
    total_len: u32,
    offset: u32,
    ttl: u8,
    payload: &[u8],
) {
    let Some((_, to)) = &peer.addr else { return };
    let chunk = if peer.cipher.is_some() {
        shared.chunk_sealed
    } else {
        shared.chunk_plain
    };
    let n = payload.len().div_ceil(chunk).max(1) as u64;
    let first = peer.tx_counter.fetch_add(n, Relaxed);
    let flags = if peer.cipher.is_some() {
        FLAG_SEALED
    } else {
        0
    };
    let hl = wire::DATA_HEADER_LEN;
    for (i, piece) in payload.chunks(chunk).enumerate() {
        let c = first + i as u64;
        batch.push(&shared.sock, to, hl + piece.len() + TAG_LEN, |out| {
            Common {
                kind: Kind::Data,
                flags,
                sender: shared.local,
                counter: c,
            }
            .write(out);
            Data {
                origin,
                dst,
                frame_id,
                total_len,
                offset: offset + (i * chunk) as u32,
                ttl,
            }
            .write(out);
            out[hl..hl + piece.len()].copy_from_slice(piece);
            match &peer.cipher {
                Some(ci) => ci
                    .seal(shared.local, peer.id, c, out, hl, piece.len())
                    .unwrap_or(0),
                None => hl + piece.len(),
            }
        });
    }
    peer.tx_datagrams.fetch_add(n, Relaxed);
}

fn push_heartbeat(shared: &Shared, batch: &mut TxBatch, peer: &Peer, kind: Kind, token: u64) {
    let Some((_, to)) = &peer.addr else { return };
    let c = peer.tx_counter.fetch_add(1, Relaxed);
    let hl = wire::COMMON_LEN;
    batch.push(&shared.sock, to, hl + TOKEN_LEN + TAG_LEN, |out| {
        Common {
            kind,
            flags: if peer.cipher.is_some() {
                FLAG_SEALED
            } else {
                0
            },
            sender: shared.local,
            counter: c,
        }
        .write(out);
        out[hl..hl + TOKEN_LEN].copy_from_slice(&token.to_be_bytes());
        match &peer.cipher {
            Some(ci) => ci
                .seal(shared.local, peer.id, c, out, hl, TOKEN_LEN)
                .unwrap_or(0),
            None => hl + TOKEN_LEN,
        }
    });
    peer.tx_datagrams.fetch_add(1, Relaxed);
}

fn account_batch(shared: &Shared, batch: &mut TxBatch) {
    let c = std::mem::take(&mut batch.counters);
    let k = &shared.counters;
    k.udp_send_calls.fetch_add(c.syscalls, Relaxed);
    k.udp_datagrams_sent.fetch_add(c.datagrams, Relaxed);
    k.udp_send_errors.fetch_add(c.errors, Relaxed);
}

/// TAP → UDP: reads frames, decides where they go, sends chunk trains; sends heartbeats.
struct TxLoop {
    shared: Arc<Shared>,
    batch: TxBatch,
    buf: Vec<u8>,
    frame_id: u32,
    schedule: Schedule,
    hops: Vec<Arc<Peer>>,
}

impl TxLoop {
    fn new(shared: Arc<Shared>) -> TxLoop {
        let schedule = Schedule::new(shared.heartbeat_nanos);
        TxLoop {
            shared,
            batch: TxBatch::default(),
            buf: vec![0; wire::MAX_MESSAGE],
            frame_id: 0,
            schedule,
            hops: Vec::with_capacity(16),
        }
    }

    fn run(mut self) {
        let sh = self.shared.clone();
        loop {
            let now = sh.now();
            let wait_ms = self.schedule.wait(now).div_ceil(1_000_000).min(1000) as i32;
            let [tap_ready, stop, kick] = poll2(
                sh.tap.raw_fd(),
                sh.stop_fd.as_raw_fd(),
                sh.kick_fd.as_raw_fd(),
                wait_ms,
            );
            if stop || sh.stop.load(Relaxed) {
                break;
            }
            if kick {
                drain(sh.kick_fd.as_raw_fd());
                self.schedule.kick();
            }
            let now = sh.now();
            if self.schedule.due(now) {
                self.heartbeats(now);
            }
            if tap_ready {
                self.read_tap(now);
            }
            self.batch.flush(&sh.sock);
            account_batch(&sh, &mut self.batch);
        }
    }

    fn heartbeats(&mut self, now: u64) {
        let sh = self.shared.clone();
        {
            let t = sh.read_tables();
            for p in t.peers.values() {
                if p.addr.is_some() {
                    push_heartbeat(&sh, &mut self.batch, p, Kind::Ping, now);
                    p.pings_sent.fetch_add(1, Relaxed);
                }
            }
        }
        sh.write_tables().fwd.expire(now);
    }

    fn read_tap(&mut self, now: u64) {
        let sh = self.shared.clone();
        // A bounded number per round so heartbeats and stop are not starved.
        for _ in 0..64 {
            let n = match sh.tap.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let Some((dst, src)) = wire::frame_macs(&self.buf[..n], VNET_HDR_LEN) else {
                continue;
            };
            self.frame_id = self.frame_id.wrapping_add(1);
            let mut moved = false;
            let mut dst_peer = BROADCAST;
            {
                let t = sh.read_tables();
                if t.fwd.knows_mac(&src) && src[0] & 1 == 0 {
                    moved = true;
                }
                self.hops.clear();
                match t.fwd.egress(&dst, now) {
                    Egress::Unicast { dst, hop } => {
                        dst_peer = dst;
                        if let Some(p) = t.peers.get(&hop) {
                            self.hops.push(p.clone());
                        }
                    }
                    Egress::Flood => {
                        for h in t.fwd.flood_hops(sh.local, None) {
                            if let Some(p) = t.peers.get(&h) {
                                self.hops.push(p.clone());
                            }
                        }
                    }
                    Egress::Unreachable(_) => {
                        sh.counters.tx_unreachable.fetch_add(1, Relaxed);
                    }
                }
            }
            if moved {
                // The source MAC is local now (a container moved here): forget the remote entry.
                sh.write_tables().fwd.remove_mac(&src);
            }
            let msg = &self.buf[..n];
            for p in &self.hops {
                push_data(
                    &sh,
                    &mut self.batch,
                    p,
                    sh.local,
                    dst_peer,
                    self.frame_id,
                    n as u32,
                    0,
                    wire::INITIAL_TTL,
                    msg,
                );
                p.tx_frames.fetch_add(1, Relaxed);
                p.tx_bytes.fetch_add((n - VNET_HDR_LEN) as u64, Relaxed);
            }
        }
    }
}

/// UDP → TAP: receives datagram trains, authenticates, reassembles, writes frames to the
/// TAP, answers heartbeats and relays chunks for other peers.
struct RxLoop {
    shared: Arc<Shared>,
    rx: RxBatch,
    batch: TxBatch,
    reasm: HashMap<PeerId, Reassembly>,
    hops: Vec<Arc<Peer>>,
}

impl RxLoop {
    fn new(shared: Arc<Shared>) -> RxLoop {
        RxLoop {
            shared,
            rx: RxBatch::default(),
            batch: TxBatch::default(),
            reasm: HashMap::new(),
            hops: Vec::with_capacity(16),
        }
    }

    fn run(mut self) {
        let sh = self.shared.clone();
        loop {
            let [ready, stop, _] = poll2(sh.sock.raw_fd(), sh.stop_fd.as_raw_fd(), -1, 1000);
            if stop || sh.stop.load(Relaxed) {
                break;
            }
            if !ready {
                continue;
            }
            for _ in 0..16 {
                let n = match self.rx.recv(&sh.sock) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let now = sh.now();
                let mut cache: Option<Arc<Peer>> = None;
                for i in 0..n {
                    let (buf, seg) = self.rx.get_mut(i);
                    let mut off = 0;
                    while off < buf.len() {
                        let end = (off + seg).min(buf.len());
                        handle_datagram(
                            &sh,
                            &mut buf[off..end],
                            now,
                            &mut cache,
                            &mut self.batch,
                            &mut self.reasm,
                            &mut self.hops,
                        );
                        off = end;
                    }
                }
                self.batch.flush(&sh.sock);
                account_batch(&sh, &mut self.batch);
            }
        }
    }
}

fn handle_datagram(
    sh: &Shared,
    dg: &mut [u8],
    now: u64,
    cache: &mut Option<Arc<Peer>>,
    batch: &mut TxBatch,
    reasm: &mut HashMap<PeerId, Reassembly>,
    hops: &mut Vec<Arc<Peer>>,
) {
    let k = &sh.counters;
    let Ok(parsed) = wire::parse(dg) else {
        k.rx_malformed.fetch_add(1, Relaxed);
        return;
    };
    let sender = parsed.common.sender;
    let peer = match cache {
        Some(p) if p.id == sender => p.clone(),
        _ => match sh.read_tables().peers.get(&sender) {
            Some(p) => {
                *cache = Some(p.clone());
                p.clone()
            }
            None => {
                k.rx_unknown_peer.fetch_add(1, Relaxed);
                return;
            }
        },
    };
    let hl = parsed.header_len;
    let counter = parsed.common.counter;
    let plen = match (&peer.cipher, parsed.common.sealed()) {
        (Some(c), true) => {
            let mut w = peer.replay.lock().unwrap_or_else(|e| e.into_inner());
            if !w.check(counter) {
                drop(w);
                peer.rx_rejected.fetch_add(1, Relaxed);
                k.rx_rejected.fetch_add(1, Relaxed);
                return;
            }
            match c.open(sender, sh.local, counter, dg, hl) {
                Ok(n) => {
                    w.accept(counter);
                    n
                }
                Err(_) => {
                    drop(w);
                    peer.rx_rejected.fetch_add(1, Relaxed);
                    k.rx_rejected.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
        (None, false) if !sh.require_encryption => dg.len() - hl,
        _ => {
            // Sealed when we have no key, or clear when we expect sealing.
            peer.rx_rejected.fetch_add(1, Relaxed);
            k.rx_rejected.fetch_add(1, Relaxed);
            return;
        }
    };
    if wire::check_payload(&parsed, plen).is_err() {
        k.rx_malformed.fetch_add(1, Relaxed);
        return;
    }
    peer.last_heard.store(now + 1, Relaxed);
    peer.rx_datagrams.fetch_add(1, Relaxed);
    let payload = &dg[hl..hl + plen];
    match parsed.common.kind {
        Kind::Ping => {
            if let Ok(tok) = wire::token(payload) {
                push_heartbeat(sh, batch, &peer, Kind::Pong, tok);
            }
        }
        Kind::Pong => {
            if let Ok(tok) = wire::token(payload) {
                if tok <= now {
                    peer.rtt
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .sample(now - tok);
                    peer.pongs_received.fetch_add(1, Relaxed);
                }
            }
        }
        Kind::Data => {
            let Some(d) = parsed.data else { return };
            if d.origin == sh.local {
                return;
            }
            let deliver = d.dst == sh.local || d.dst == BROADCAST;
            // Pass on: broadcasts along the origin's broadcast route, unicast to the next hop.
            hops.clear();
            if d.ttl > 1 {
                let t = sh.read_tables();
                if d.dst == BROADCAST {
                    for h in t.fwd.flood_hops(d.origin, Some(sender)) {
                        if let Some(p) = t.peers.get(&h) {
                            hops.push(p.clone());
                        }
                    }
                } else if d.dst != sh.local {
                    match t.fwd.next_hop(d.dst) {
                        Some(h) if h != sender => {
                            if let Some(p) = t.peers.get(&h) {
                                hops.push(p.clone());
                            }
                        }
                        _ => {
                            k.tx_unreachable.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
            for p in hops.iter() {
                push_data(
                    sh,
                    batch,
                    p,
                    d.origin,
                    d.dst,
                    d.frame_id,
                    d.total_len,
                    d.offset,
                    d.ttl - 1,
                    payload,
                );
                if d.offset == 0 {
                    p.tx_frames.fetch_add(1, Relaxed);
                }
                p.tx_bytes.fetch_add(plen as u64, Relaxed);
            }
            if !deliver {
                return;
            }
            let msg: &[u8] = if d.offset == 0 && d.total_len as usize == plen {
                payload
            } else {
                let r = reasm.entry(d.origin).or_default();
                match r.push(&d, payload) {
                    Outcome::Complete => r.message(),
                    Outcome::Pending | Outcome::Dropped => return,
                }
            };
            if msg.len() <= VNET_HDR_LEN + 14 {
                k.rx_malformed.fetch_add(1, Relaxed);
                return;
            }
            if sh.tap.write(msg).is_err() {
                k.tap_write_errors.fetch_add(1, Relaxed);
                return;
            }
            peer.rx_frames.fetch_add(1, Relaxed);
            peer.rx_bytes
                .fetch_add((msg.len() - VNET_HDR_LEN) as u64, Relaxed);
            if let Some((_, src)) = wire::frame_macs(msg, VNET_HDR_LEN) {
                let learn = sh.read_tables().fwd.needs_learn(&src, d.origin, now);
                if learn {
                    sh.write_tables().fwd.learn(src, d.origin, now);
                }
            }
        }
    }
}
