//! A peer of the sleeve: how the router describes it, its live state (cipher, counters,
//! replay window, RTT, path MTU) and the snapshot of its counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::crypto::{Cipher, CipherKind, ReplayWindow};
use super::heartbeat::RttEstimate;
use super::pmtu::{Pmtu, PmtuConfig};
use super::udp::RawAddr;
use super::PeerId;

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
    /// The AEAD negotiated for this pair (used only with a key).
    pub cipher: CipherKind,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("key", &self.key.map(|_| "<32 bytes>"))
            .field("cipher", &self.cipher)
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
    /// The AEAD sealing it, when encrypted.
    pub cipher: Option<CipherKind>,
    /// Largest underlay datagram the path to it carries: the discovered path MTU once the
    /// search settled, else what is used meanwhile.
    pub pmtu: u32,
    /// Whether the path-MTU search has settled.
    pub pmtu_settled: bool,
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
    /// Of those, authentic datagrams refused as replays or as too old for the window.
    pub rx_replayed: u64,
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

/// A peer's live state, shared by the two data threads.
pub(super) struct Peer {
    pub(super) id: PeerId,
    pub(super) name: String,
    pub(super) addr: Option<(SocketAddr, RawAddr)>,
    pub(super) key: Option<[u8; 32]>,
    pub(super) cipher: Option<Cipher>,
    pub(super) tx_counter: AtomicU64,
    pub(super) replay: Mutex<ReplayWindow>,
    pub(super) pmtu: Mutex<Pmtu>,
    /// What `pmtu` says to use now, for the send path without a lock.
    pub(super) pmtu_now: AtomicU64,
    pub(super) tx_frames: AtomicU64,
    pub(super) tx_bytes: AtomicU64,
    pub(super) tx_datagrams: AtomicU64,
    pub(super) rx_frames: AtomicU64,
    pub(super) rx_bytes: AtomicU64,
    pub(super) rx_datagrams: AtomicU64,
    pub(super) rx_rejected: AtomicU64,
    pub(super) rx_replayed: AtomicU64,
    pub(super) pings_sent: AtomicU64,
    pub(super) pongs_received: AtomicU64,
    /// Engine clock nanoseconds + 1 of the last authenticated datagram (0 = never).
    pub(super) last_heard: AtomicU64,
    /// Engine clock nanoseconds + 1 of the last heartbeat answer (0 = never).
    pub(super) last_pong: AtomicU64,
    pub(super) rtt: Mutex<RttEstimate>,
    /// No heartbeats or path-MTU probes of ours (the owner uses another path to it).
    pub(super) quiet: AtomicBool,
    /// Engine clock nanoseconds + 1 of when it was last resumed from quiet (0 = never):
    /// its heartbeats stopped while quiet, so until they are answered again its path MTU
    /// is kept rather than searched from the floor.
    pub(super) resumed: AtomicU64,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Peer {
    /// A peer from its configuration; `old` is the entry it replaces, whose counters it
    /// keeps (and, with the same key and cipher, its nonce sequence and replay window).
    pub(super) fn new(
        cfg: &PeerConfig,
        cipher: Option<Cipher>,
        pmtu: PmtuConfig,
        old: Option<&Peer>,
    ) -> Peer {
        let p = Peer {
            id: cfg.id,
            name: cfg.name.clone(),
            addr: cfg.addr.map(|a| (a, RawAddr::new(a))),
            key: cfg.key,
            cipher,
            tx_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::default()),
            pmtu_now: AtomicU64::new(u64::from(pmtu.ceiling)),
            pmtu: Mutex::new(Pmtu::new(pmtu)),
            tx_frames: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            tx_datagrams: AtomicU64::new(0),
            rx_frames: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            rx_datagrams: AtomicU64::new(0),
            rx_rejected: AtomicU64::new(0),
            rx_replayed: AtomicU64::new(0),
            pings_sent: AtomicU64::new(0),
            pongs_received: AtomicU64::new(0),
            last_heard: AtomicU64::new(0),
            last_pong: AtomicU64::new(0),
            rtt: Mutex::new(RttEstimate::default()),
            quiet: AtomicBool::new(false),
            resumed: AtomicU64::new(0),
        };
        let Some(o) = old else { return p };
        for (n, o) in [
            (&p.tx_frames, &o.tx_frames),
            (&p.tx_bytes, &o.tx_bytes),
            (&p.tx_datagrams, &o.tx_datagrams),
            (&p.rx_frames, &o.rx_frames),
            (&p.rx_bytes, &o.rx_bytes),
            (&p.rx_datagrams, &o.rx_datagrams),
            (&p.rx_rejected, &o.rx_rejected),
            (&p.rx_replayed, &o.rx_replayed),
            (&p.pings_sent, &o.pings_sent),
            (&p.pongs_received, &o.pongs_received),
            (&p.last_heard, &o.last_heard),
            (&p.last_pong, &o.last_pong),
        ] {
            n.store(o.load(Relaxed), Relaxed);
        }
        p.quiet.store(o.quiet.load(Relaxed), Relaxed);
        p.resumed.store(o.resumed.load(Relaxed), Relaxed);
        let same_cipher =
            o.cipher.as_ref().map(Cipher::kind) == p.cipher.as_ref().map(Cipher::kind);
        if o.key == p.key && same_cipher {
            // Leave a gap so datagrams in flight on the old entry never share a nonce;
            // restarting the sequence or the window would reuse nonces or admit replays.
            p.tx_counter
                .store(o.tx_counter.load(Relaxed) + (1 << 20), Relaxed);
            *locked(&p.replay) = locked(&o.replay).clone();
            *locked(&p.rtt) = *locked(&o.rtt);
        } else {
            p.last_heard.store(0, Relaxed);
        }
        if o.addr.map(|(a, _)| a) == cfg.addr {
            // Same path: keep what was learnt about its MTU.
            *locked(&p.pmtu) = locked(&o.pmtu).clone();
            p.pmtu_now.store(o.pmtu_now.load(Relaxed), Relaxed);
        }
        p
    }

    /// Runs `f` on the path-MTU search and publishes the size to use.
    pub(super) fn with_pmtu<T>(&self, f: impl FnOnce(&mut Pmtu) -> T) -> T {
        let mut m = locked(&self.pmtu);
        let r = f(&mut m);
        self.pmtu_now.store(u64::from(m.current()), Relaxed);
        r
    }

    /// Folds in a heartbeat round trip.
    pub(super) fn rtt_sample(&self, nanos: u64) {
        locked(&self.rtt).sample(nanos);
    }

    /// The counters as of now; `epoch` is the engine clock's zero.
    pub(super) fn stats(&self, epoch: Instant) -> PeerStats {
        let heard = self.last_heard.load(Relaxed);
        let rtt = *locked(&self.rtt);
        let pmtu = locked(&self.pmtu);
        PeerStats {
            id: self.id,
            name: self.name.clone(),
            addr: self.addr.map(|(a, _)| a),
            encrypted: self.cipher.is_some(),
            cipher: self.cipher.as_ref().map(Cipher::kind),
            pmtu: pmtu.current(),
            pmtu_settled: pmtu.discovered().is_some(),
            tx_frames: self.tx_frames.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            tx_datagrams: self.tx_datagrams.load(Relaxed),
            rx_frames: self.rx_frames.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            rx_datagrams: self.rx_datagrams.load(Relaxed),
            rx_rejected: self.rx_rejected.load(Relaxed),
            rx_replayed: self.rx_replayed.load(Relaxed),
            pings_sent: self.pings_sent.load(Relaxed),
            pongs_received: self.pongs_received.load(Relaxed),
            last_heard: (heard > 0).then(|| epoch + Duration::from_nanos(heard - 1)),
            rtt: rtt.srtt.map(Duration::from_nanos),
            last_rtt: rtt.last.map(Duration::from_nanos),
        }
    }
}
