//! The fastdp heartbeat frame (raw Ethernet); the state gossip and the MAC and id forms
//! are the path core's (`weft_paths::wire`), re-exported here.

pub use weft_paths::wire::{fmt_mac, parse_mac, short_id, StateMsg, STATE_VERSION};

/// The heartbeat frame's magic (after the Ethernet header).
pub const PROBE_MAGIC: &[u8; 4] = b"WFT1";
/// Heartbeat kinds.
pub const PING: u8 = 1;
/// Answer to a ping.
pub const PONG: u8 = 2;
/// Length of a heartbeat frame (padded to the Ethernet minimum).
pub const PROBE_LEN: usize = 60;
/// Length of the Ethernet header before a frame's payload.
pub const ETH_HEADER: usize = 14;

/// A fastdp heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Destination MAC (the receiver's bridge).
    pub dst: [u8; 6],
    /// Source MAC (the sender's probe MAC).
    pub src: [u8; 6],
    /// [`PING`] or [`PONG`].
    pub kind: u8,
    /// Sender's short id.
    pub sender: u32,
    /// Echoed by the pong.
    pub token: u64,
}

impl Probe {
    /// The whole Ethernet frame.
    pub fn encode(&self) -> [u8; PROBE_LEN] {
        let mut f = [0u8; PROBE_LEN];
        f[..6].copy_from_slice(&self.dst);
        f[6..12].copy_from_slice(&self.src);
        f[12..14].copy_from_slice(&weft_datapath::probe::ETHERTYPE.to_be_bytes());
        f[14..18].copy_from_slice(PROBE_MAGIC);
        f[18] = self.kind;
        f[19..23].copy_from_slice(&self.sender.to_be_bytes());
        f[23..31].copy_from_slice(&self.token.to_be_bytes());
        f
    }

    /// The frame padded so that `size` bytes follow the Ethernet header (a size probe:
    /// it crosses VXLAN as a packet of the overlay of that size would); never shorter
    /// than [`PROBE_LEN`].
    pub fn encode_sized(&self, size: u32) -> Vec<u8> {
        let len = (ETH_HEADER + size as usize).max(PROBE_LEN);
        let mut f = vec![0u8; len];
        f[..PROBE_LEN].copy_from_slice(&self.encode());
        f
    }

    /// Parses a received frame; `None` if it is not a heartbeat.
    pub fn decode(f: &[u8]) -> Option<Probe> {
        if f.len() < 31 || f.get(12..14)? != weft_datapath::probe::ETHERTYPE.to_be_bytes() {
            return None;
        }
        if f.get(14..18)? != PROBE_MAGIC {
            return None;
        }
        let kind = *f.get(18)?;
        if kind != PING && kind != PONG {
            return None;
        }
        Some(Probe {
            dst: f.get(..6)?.try_into().ok()?,
            src: f.get(6..12)?.try_into().ok()?,
            kind,
            sender: u32::from_be_bytes(f.get(19..23)?.try_into().ok()?),
            token: u64::from_be_bytes(f.get(23..31)?.try_into().ok()?),
        })
    }
}

/// The source MAC of this peer's heartbeats: locally administered, unicast, from its id
/// (never a container's or a bridge's MAC, so the bridges' learning of it is harmless).
pub fn probe_mac(id: u32) -> [u8; 6] {
    let b = id.to_be_bytes();
    [0x0e, 0x57, b[0], b[1], b[2], b[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_no_probe() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = Probe::decode(&bytes);
        }
    }

    #[test]
    fn probe_roundtrip() {
        let p = Probe {
            dst: [2, 0, 0, 0, 0, 1],
            src: probe_mac(9),
            kind: PONG,
            sender: 9,
            token: 12345,
        };
        assert_eq!(Probe::decode(&p.encode()), Some(p));
        let big = p.encode_sized(1450);
        assert_eq!(big.len(), 1464);
        assert_eq!(Probe::decode(&big), Some(p), "a size probe is a heartbeat");
        assert_eq!(p.encode_sized(0).len(), PROBE_LEN);
        let mut f = p.encode();
        f[18] = 3;
        assert_eq!(Probe::decode(&f), None);
        assert_eq!(Probe::decode(&f[..20]), None);
    }
}
