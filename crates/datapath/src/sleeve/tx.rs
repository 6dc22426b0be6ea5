//! TAP → UDP: the thread that reads frames from the TAP, picks the next hops, seals and
//! sends chunk trains, and sends heartbeats and path-MTU probes.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::crypto::cipher_flag;
use super::engine::{drain, Shared};
use super::forwarding::Egress;
use super::heartbeat::Schedule;
use super::peer::Peer;
use super::tap::VNET_HDR_LEN;
use super::udp::TxBatch;
use super::wire::{self, Common, Data, Kind, BROADCAST, FLAG_SEALED, TAG_LEN, TOKEN_LEN};
use super::PeerId;

/// How often the path-MTU searches are advanced (probe timeouts are 400 ms).
const PROBE_TICK_NANOS: u64 = 100_000_000;

pub(super) fn poll2(a: RawFd, b: RawFd, c: RawFd, timeout_ms: i32) -> [bool; 3] {
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

/// The flags and the overhead of sealing for `peer`.
fn seal_flags(peer: &Peer) -> (u8, usize) {
    match &peer.cipher {
        Some(c) => (FLAG_SEALED | cipher_flag(c.kind()), TAG_LEN),
        None => (0, 0),
    }
}

/// Queues one message (or chunk train) to `peer`, in chunks that fit its path MTU.
#[allow(clippy::too_many_arguments)]
pub(super) fn push_data(
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
    let (flags, tag) = seal_flags(peer);
    let pmtu = peer.pmtu_now.load(Relaxed) as usize;
    let chunk = wire::chunk_payload(pmtu, shared.ip_header, tag > 0);
    // A path smaller than the interface: send datagram by datagram. A GSO train crosses
    // virtual links (veth, bridges) as one packet, which such a path may drop whole.
    let gso = pmtu >= shared.underlay_mtu as usize;
    let n = payload.len().div_ceil(chunk).max(1) as u64;
    let first = peer.tx_counter.fetch_add(n, Relaxed);
    let hl = wire::DATA_HEADER_LEN;
    for (i, piece) in payload.chunks(chunk).enumerate() {
        let c = first + i as u64;
        batch.push(&shared.sock, to, hl + piece.len() + tag, gso, |out| {
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

/// Queues a heartbeat, probe or probe answer: a common header and `payload`, padded with
/// zeros to `len` payload bytes (probes), never merged into a GSO train.
pub(super) fn push_control(
    shared: &Shared,
    batch: &mut TxBatch,
    peer: &Peer,
    kind: Kind,
    payload: &[u8],
    len: usize,
) {
    let Some((_, to)) = &peer.addr else { return };
    let (flags, tag) = seal_flags(peer);
    let c = peer.tx_counter.fetch_add(1, Relaxed);
    let hl = wire::COMMON_LEN;
    let len = len.max(payload.len());
    batch.push(&shared.sock, to, hl + len + tag, false, |out| {
        Common {
            kind,
            flags,
            sender: shared.local,
            counter: c,
        }
        .write(out);
        out[hl..hl + payload.len()].copy_from_slice(payload);
        out[hl + payload.len()..hl + len].fill(0);
        match &peer.cipher {
            Some(ci) => ci.seal(shared.local, peer.id, c, out, hl, len).unwrap_or(0),
            None => hl + len,
        }
    });
    peer.tx_datagrams.fetch_add(1, Relaxed);
}

/// Queues a heartbeat (ping or pong) carrying `token`.
pub(super) fn push_heartbeat(
    shared: &Shared,
    batch: &mut TxBatch,
    peer: &Peer,
    kind: Kind,
    token: u64,
) {
    push_control(shared, batch, peer, kind, &token.to_be_bytes(), TOKEN_LEN);
}

/// Queues a path-MTU probe: one datagram of `size` bytes on the underlay (IP included).
fn push_probe(shared: &Shared, batch: &mut TxBatch, peer: &Peer, size: u32) {
    let (_, tag) = seal_flags(peer);
    let payload = (size as usize).saturating_sub(shared.ip_header + 8 + wire::COMMON_LEN + tag);
    push_control(
        shared,
        batch,
        peer,
        Kind::Probe,
        &u64::from(size).to_be_bytes(),
        payload.max(TOKEN_LEN),
    );
}

pub(super) fn account_batch(shared: &Shared, batch: &mut TxBatch) {
    let c = std::mem::take(&mut batch.counters);
    let k = &shared.counters;
    k.udp_send_calls.fetch_add(c.syscalls, Relaxed);
    k.udp_datagrams_sent.fetch_add(c.datagrams, Relaxed);
    k.udp_send_errors.fetch_add(c.errors, Relaxed);
}

/// TAP → UDP: reads frames, decides where they go, sends chunk trains; sends heartbeats.
pub(super) struct TxLoop {
    shared: Arc<Shared>,
    batch: TxBatch,
    buf: Vec<u8>,
    frame_id: u32,
    schedule: Schedule,
    probe_due: u64,
    hops: Vec<Arc<Peer>>,
}

impl TxLoop {
    pub(super) fn new(shared: Arc<Shared>) -> TxLoop {
        let schedule = Schedule::new(shared.heartbeat_nanos);
        TxLoop {
            shared,
            batch: TxBatch::default(),
            buf: vec![0; wire::MAX_MESSAGE],
            frame_id: 0,
            schedule,
            probe_due: 0,
            hops: Vec::with_capacity(16),
        }
    }

    pub(super) fn run(mut self) {
        let sh = self.shared.clone();
        loop {
            let now = sh.now();
            let wait = self
                .schedule
                .wait(now)
                .min(self.probe_due.saturating_sub(now));
            let wait_ms = wait.div_ceil(1_000_000).min(1000) as i32;
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
                self.probe_due = 0;
            }
            let now = sh.now();
            if self.schedule.due(now) {
                self.heartbeats(now);
            }
            if now >= self.probe_due {
                // Without a peer to probe, only a kick (a peer added or resumed) or the
                // next heartbeat round looks again: an idle sleeve whose peers are all
                // on fastdp does not wake ten times a second.
                self.probe_due = if self.probes(now) {
                    now + PROBE_TICK_NANOS
                } else {
                    now + sh.heartbeat_nanos
                };
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
                if p.addr.is_some() && !p.quiet.load(Relaxed) {
                    push_heartbeat(&sh, &mut self.batch, p, Kind::Ping, now);
                    p.pings_sent.fetch_add(1, Relaxed);
                }
            }
        }
        sh.write_tables().fwd.expire(now);
    }

    /// Path-MTU probes; whether any direct peer is not quiet (else no probe is due until a
    /// peer is added or resumed).
    fn probes(&mut self, now: u64) -> bool {
        let sh = self.shared.clone();
        let t = sh.read_tables();
        let mut active = false;
        for p in t.peers.values() {
            if p.addr.is_none() || p.quiet.load(Relaxed) {
                continue;
            }
            active = true;
            // Heartbeats stopped while it was quiet: count from its resumption too, so the
            // first probe round after it does not take it for down.
            let pong = p.last_pong.load(Relaxed).max(p.resumed.load(Relaxed));
            if pong == 0 || (now + 1).saturating_sub(pong) > 3 * sh.heartbeat_nanos {
                // Down (or not up yet): losses say nothing about its MTU. Start afresh
                // once heartbeats are answered again.
                p.with_pmtu(|m| m.reset());
                continue;
            }
            if let Some(size) = p.with_pmtu(|m| m.poll(now)) {
                push_probe(&sh, &mut self.batch, p, size);
            }
        }
        active
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
