//! Path MTU of fastdp per peer: padded heartbeat frames (`MTU_PING`) sent into the VXLAN
//! device cross the underlay as one UDP 6784 datagram of the size under test; the peer
//! answers small (`MTU_PONG`). The search itself is the sleeve's sans-IO
//! [`Pmtu`]; here only the frames and the per-peer bookkeeping.
//!
//! fastdp is used for a peer only while its path carries the whole overlay MTU (the
//! ceiling): the kernel's VXLAN cannot split a frame, so a smaller path moves the peer to
//! the sleeve, which sizes its datagrams to that path (docs/datapath.md, "Path MTU").

use std::collections::BTreeMap;

use weft_datapath::mtu::VXLAN_OVERHEAD_V4;
use weft_datapath::sleeve::pmtu::{Pmtu, PmtuConfig};

use super::wire::{self, Probe};

/// Outer bytes around an inner Ethernet frame: IPv4 + UDP + VXLAN headers.
const OUTER: u32 = 20 + 8 + 8;

/// The fastdp path-MTU searches, one per peer name.
#[derive(Debug)]
pub(super) struct FastdpMtu {
    /// Underlay datagram size a full overlay packet needs (overlay MTU + 50).
    need: u32,
    peers: BTreeMap<String, Pmtu>,
}

impl FastdpMtu {
    /// Searches for paths that must carry `overlay_mtu`-byte packets.
    pub(super) fn new(overlay_mtu: u32) -> FastdpMtu {
        FastdpMtu {
            need: overlay_mtu + VXLAN_OVERHEAD_V4,
            peers: BTreeMap::new(),
        }
    }

    /// Advances the searches of `peers` (name, bridge MAC) and forgets others; `send` gets
    /// each probe frame due now.
    pub(super) fn tick(
        &mut self,
        now: u64,
        me: u32,
        peers: &[(String, [u8; 6])],
        mut send: impl FnMut(&[u8]),
    ) {
        self.peers.retain(|n, _| peers.iter().any(|(p, _)| p == n));
        for (name, bmac) in peers {
            let need = self.need;
            let m = self
                .peers
                .entry(name.clone())
                .or_insert_with(|| Pmtu::new(PmtuConfig::new(need)));
            if let Some(size) = m.poll(now) {
                send(&frame(*bmac, me, wire::MTU_PING, size));
            }
        }
    }

    /// Handles an MTU probe or answer from `peer`; returns the answer to send, if any.
    pub(super) fn on_probe(
        &mut self,
        peer: &str,
        bmac: [u8; 6],
        me: u32,
        p: &Probe,
        now: u64,
    ) -> Option<Vec<u8>> {
        match p.kind {
            wire::MTU_PING => Some(frame(bmac, me, wire::MTU_PONG, p.token as u32)),
            _ => {
                if let (Some(m), Ok(size)) = (self.peers.get_mut(peer), u32::try_from(p.token)) {
                    m.on_ack(size, now);
                }
                None
            }
        }
    }

    /// Whether fastdp to `peer` carries the whole overlay MTU, as far as is known (a peer
    /// not probed yet counts as carrying it: its heartbeats decide first).
    pub(super) fn carries(&self, peer: &str) -> bool {
        self.peers.get(peer).is_none_or(|m| m.carries(self.need))
    }

    /// The path MTU towards `peer` as discovered (None while searching).
    pub(super) fn discovered(&self, peer: &str) -> Option<u32> {
        self.peers.get(peer).and_then(Pmtu::discovered)
    }
}

/// A heartbeat frame of `kind` to `dst`, padded so that its VXLAN datagram is `size`
/// bytes on the underlay; the token carries `size`.
fn frame(dst: [u8; 6], me: u32, kind: u8, size: u32) -> Vec<u8> {
    let p = Probe {
        dst,
        src: wire::probe_mac(me),
        kind,
        sender: me,
        token: u64::from(size),
    };
    let mut f = p.encode().to_vec();
    if kind == wire::MTU_PING {
        f.resize(
            (size.saturating_sub(OUTER) as usize).max(wire::PROBE_LEN),
            0,
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_padded_to_the_size_under_test_and_answers_are_small() {
        let mut f = FastdpMtu::new(1450);
        let mut sent = Vec::new();
        let peers = vec![("b".to_string(), [2, 0, 0, 0, 0, 2])];
        f.tick(0, 1, &peers, |fr| sent.push(fr.to_vec()));
        assert_eq!(sent.len(), 1);
        // 1450 + 50 on the underlay: a 1464-byte Ethernet frame inside.
        assert_eq!(sent[0].len(), 1500 - 36);
        let probe = Probe::decode(&sent[0]).expect("decodes");
        assert_eq!((probe.kind, probe.token), (wire::MTU_PING, 1500));
        let answer = f
            .on_probe("a", [2, 0, 0, 0, 0, 1], 2, &probe, 0)
            .expect("answers");
        assert_eq!(answer.len(), wire::PROBE_LEN);
        let pong = Probe::decode(&answer).expect("decodes");
        assert_eq!((pong.kind, pong.token), (wire::MTU_PONG, 1500));
        assert!(f.carries("b"));
        assert_eq!(f.on_probe("b", [0; 6], 1, &pong, 1), None);
        f.tick(2, 1, &peers, |_| panic!("settled, nothing to send"));
        assert_eq!(f.discovered("b"), Some(1500));
    }

    #[test]
    fn a_path_that_drops_big_datagrams_is_not_fit_for_fastdp() {
        let mut f = FastdpMtu::new(1450);
        let peers = vec![("b".to_string(), [2, 0, 0, 0, 0, 2])];
        let mut t = 0;
        for _ in 0..200 {
            let mut acks = Vec::new();
            f.tick(t, 1, &peers, |fr| {
                let p = Probe::decode(fr).unwrap();
                if p.token <= 1000 {
                    acks.push(Probe {
                        kind: wire::MTU_PONG,
                        ..p
                    });
                }
            });
            for a in acks {
                f.on_probe("b", [0; 6], 1, &a, t);
            }
            t += 100_000_000;
        }
        assert!(!f.carries("b"));
        let d = f.discovered("b").expect("settled");
        assert!(d <= 1000 && d > 990, "{d}");
        f.tick(t, 1, &[], |_| {});
        assert!(f.carries("b"), "forgotten peers are not held against");
    }
}
