//! What data-path drivers tell each other: the state gossip on the mesh's DATAPATH channel
//! (versioned JSON; decoding never panics) and the fastdp heartbeat frame (raw Ethernet).

use serde::{Deserialize, Serialize};

/// Version of the state message.
pub const STATE_VERSION: u32 = 1;

/// One router's data-path state, broadcast on change and periodically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMsg {
    /// Format version ([`STATE_VERSION`]).
    pub v: u32,
    /// Sleeve short id.
    pub id: u32,
    /// Random id of this run of the router (hex); keys of the sleeve derive from it.
    pub run: String,
    /// Increases with every change within a run.
    pub seq: u64,
    /// MAC of the sender's bridge (fastdp heartbeats and the exposed host go to it).
    pub bmac: String,
    /// MACs of the sender's containers.
    pub macs: Vec<String>,
    /// Sleeve ciphers the sender supports, best first (`aes-256-gcm`, `chacha20-poly1305`);
    /// absent from older routers, which speak ChaCha20-Poly1305 only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ciphers: Vec<String>,
}

impl StateMsg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a message; `None` for anything malformed or of another version.
    pub fn decode(b: &[u8]) -> Option<StateMsg> {
        let m: StateMsg = serde_json::from_slice(b).ok()?;
        (m.v == STATE_VERSION
            && m.run.len() <= 64
            && m.macs.len() <= 65536
            && m.ciphers.len() <= 16)
            .then_some(m)
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The heartbeat frame's magic (after the Ethernet header).
pub const PROBE_MAGIC: &[u8; 4] = b"WFT1";
/// Heartbeat kinds.
pub const PING: u8 = 1;
/// Answer to a ping.
pub const PONG: u8 = 2;
/// Path-MTU probe: padded to the size under test, the token is the outer datagram size.
pub const MTU_PING: u8 = 3;
/// Answer to an MTU probe (small, echoing the token).
pub const MTU_PONG: u8 = 4;
/// Length of a heartbeat frame (padded to the Ethernet minimum).
pub const PROBE_LEN: usize = 60;

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

    /// Parses a received frame; `None` if it is not a heartbeat.
    pub fn decode(f: &[u8]) -> Option<Probe> {
        if f.len() < 31 || f.get(12..14)? != weft_datapath::probe::ETHERTYPE.to_be_bytes() {
            return None;
        }
        if f.get(14..18)? != PROBE_MAGIC {
            return None;
        }
        let kind = *f.get(18)?;
        if !(PING..=MTU_PONG).contains(&kind) {
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

/// The sleeve short id of a peer: a hash of its unique name (FNV-1a), never the
/// broadcast id.
pub fn short_id(name: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    if h == u32::MAX {
        h - 1
    } else {
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrip_and_garbage() {
        let m = StateMsg {
            v: STATE_VERSION,
            id: 7,
            run: "00ff".into(),
            seq: 3,
            bmac: "02:00:00:00:00:01".into(),
            macs: vec!["02:00:00:00:00:02".into()],
            ciphers: vec!["aes-256-gcm".into()],
        };
        // An older router's message (no ciphers) still decodes.
        let old = br#"{"v":1,"id":1,"run":"aa","seq":1,"bmac":"02:00:00:00:00:01","macs":[]}"#;
        assert_eq!(StateMsg::decode(old).map(|m| m.ciphers), Some(vec![]));
        assert_eq!(StateMsg::decode(&m.encode()), Some(m.clone()));
        let mut other = m.clone();
        other.v = 2;
        assert_eq!(StateMsg::decode(&other.encode()), None);
        // Random bytes never panic.
        let mut x: u32 = 1;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = StateMsg::decode(&bytes);
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
        let mut f = p.encode();
        f[18] = MTU_PONG + 1;
        assert_eq!(Probe::decode(&f), None);
        assert_eq!(Probe::decode(&f[..20]), None);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:0a:00:00:00:ff"), Some([2, 10, 0, 0, 0, 255]));
        assert_eq!(parse_mac("02:0a:00:00:00"), None);
        assert_eq!(parse_mac("02:0a:00:00:00:ff:01"), None);
        assert_eq!(parse_mac("zz:0a:00:00:00:ff"), None);
        assert_eq!(fmt_mac(&[2, 10, 0, 0, 0, 255]), "02:0a:00:00:00:ff");
        assert_ne!(short_id("a"), short_id("b"));
    }
}
