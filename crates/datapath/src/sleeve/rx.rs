//! UDP → TAP: the thread that receives datagram trains, authenticates them, reassembles
//! and writes frames into the TAP, answers heartbeats and probes, and relays chunks.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::crypto::cipher_flag;
use super::engine::Shared;
use super::peer::Peer;
use super::reassembly::{Outcome, Reassembly};
use super::tap::VNET_HDR_LEN;
use super::tx::{account_batch, poll2, push_control, push_data, push_heartbeat};
use super::udp::{RxBatch, TxBatch};
use super::wire::{self, Kind, BROADCAST, FLAG_AES, PROBE_ACK_LEN, TOKEN_LEN};
use super::PeerId;

/// UDP → TAP: receives datagram trains, authenticates, reassembles, writes frames to the
/// TAP, answers heartbeats and relays chunks for other peers.
pub(super) struct RxLoop {
    shared: Arc<Shared>,
    rx: RxBatch,
    batch: TxBatch,
    reasm: HashMap<PeerId, Reassembly>,
    hops: Vec<Arc<Peer>>,
}

impl RxLoop {
    pub(super) fn new(shared: Arc<Shared>) -> RxLoop {
        RxLoop {
            shared,
            rx: RxBatch::default(),
            batch: TxBatch::default(),
            reasm: HashMap::new(),
            hops: Vec::with_capacity(16),
        }
    }

    pub(super) fn run(mut self) {
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
    let reject = || {
        peer.rx_rejected.fetch_add(1, Relaxed);
        k.rx_rejected.fetch_add(1, Relaxed);
    };
    let plen = match (&peer.cipher, parsed.common.sealed()) {
        (Some(c), true) => {
            if parsed.common.flags & FLAG_AES != cipher_flag(c.kind()) {
                // Sealed with the other cipher: the pair disagrees (a stale announcement).
                reject();
                return;
            }
            let mut w = peer.replay.lock().unwrap_or_else(|e| e.into_inner());
            if !w.check(counter) {
                drop(w);
                reject();
                // Authentic but seen before or too old: a replay (counted apart).
                if c.open(sender, sh.local, counter, dg, hl).is_ok() {
                    peer.rx_replayed.fetch_add(1, Relaxed);
                    k.rx_replayed.fetch_add(1, Relaxed);
                }
                return;
            }
            match c.open(sender, sh.local, counter, dg, hl) {
                Ok(n) => {
                    w.accept(counter);
                    n
                }
                Err(_) => {
                    drop(w);
                    reject();
                    return;
                }
            }
        }
        (None, false) if !sh.require_encryption => dg.len() - hl,
        _ => {
            // Sealed when we have no key, or clear when we expect sealing.
            reject();
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
                    peer.rtt_sample(now - tok);
                    peer.pongs_received.fetch_add(1, Relaxed);
                    // A quiet spell (no heartbeats of ours) is not a loss: count from
                    // the resumption.
                    let last = peer
                        .last_pong
                        .swap(now + 1, Relaxed)
                        .max(peer.resumed.load(Relaxed));
                    if last > 0 && (now + 1).saturating_sub(last) > 3 * sh.heartbeat_nanos {
                        // Heartbeats were lost and came back: the path may have changed
                        // (rerouted), so its MTU may have too.
                        peer.with_pmtu(|m| m.suspect(now));
                    }
                }
            }
        }
        Kind::Probe => {
            if let Ok(tok) = wire::token(&payload[..TOKEN_LEN]) {
                let size = (dg.len() + sh.ip_header + 8) as u32;
                let mut ack = [0u8; PROBE_ACK_LEN];
                ack[..TOKEN_LEN].copy_from_slice(&tok.to_be_bytes());
                ack[TOKEN_LEN..].copy_from_slice(&size.to_be_bytes());
                push_control(sh, batch, &peer, Kind::ProbeAck, &ack, PROBE_ACK_LEN);
            }
        }
        Kind::ProbeAck => {
            if let Ok((tok, _)) = wire::probe_ack(payload) {
                if let Ok(size) = u32::try_from(tok) {
                    peer.with_pmtu(|m| m.on_ack(size, now));
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
