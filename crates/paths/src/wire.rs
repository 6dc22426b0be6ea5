//! What path cores tell each other on the mesh's DATAPATH channel: each router's state
//! (versioned JSON; decoding never panics), and the ids and MAC forms it uses.

use serde::{Deserialize, Serialize};
use weft_types::CipherKind;

/// Version of the state message.
pub const STATE_VERSION: u32 = 1;
/// The fastdp heartbeat forms this code understands (`beats` in the state): 1, a size
/// probe whose token carries the verdict is the heartbeat too (one frame per period).
pub const BEATS_VERSION: u32 = 1;

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
    /// The sleeve ciphers the sender offers (names of [`CipherKind`], best first); absent
    /// in announcements of older routers, which offer ChaCha20-Poly1305 only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ciphers: Vec<String>,
    /// Sent to one peer whose state the sender does not hold (it lost it while the peer
    /// was out of its view for a moment): answer with yours even if this one is not new.
    /// Absent (false) in broadcasts and in announcements of older routers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reply: bool,
    /// The fastdp heartbeat forms the sender understands ([`BEATS_VERSION`]); absent (0)
    /// in announcements of older routers, which get a heartbeat and a size probe apart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub beats: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
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
            && m.ciphers.len() <= MAX_CIPHERS
            && m.ciphers.iter().all(|c| c.len() <= 32))
        .then_some(m)
    }

    /// The ciphers offered that this code knows; ChaCha20-Poly1305 alone when none is
    /// (an older router, or only names of newer ciphers).
    pub fn offers(&self) -> Vec<CipherKind> {
        let mut out: Vec<CipherKind> = self
            .ciphers
            .iter()
            .filter_map(|c| CipherKind::parse(c))
            .collect();
        if out.is_empty() {
            out.push(CipherKind::ChaCha20Poly1305);
        }
        out
    }
}

/// Most cipher names one announcement may carry.
pub const MAX_CIPHERS: usize = 8;

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
            ciphers: vec!["aes-256-gcm".into(), "chacha20-poly1305".into()],
            reply: true,
            beats: BEATS_VERSION,
        };
        assert_eq!(StateMsg::decode(&m.encode()), Some(m.clone()));
        assert_eq!(
            StateMsg::decode(&m.encode()).unwrap().offers(),
            vec![CipherKind::Aes256Gcm, CipherKind::ChaCha20Poly1305]
        );
        let mut many = m.clone();
        many.ciphers = vec!["x".into(); MAX_CIPHERS + 1];
        assert_eq!(StateMsg::decode(&many.encode()), None);
        many.ciphers = vec!["x".repeat(33)];
        assert_eq!(StateMsg::decode(&many.encode()), None);
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
        }
    }

    /// Bytes as a router of the previous release sent them (no cipher offers): they still
    /// decode, and the sender offers ChaCha20-Poly1305 only.
    #[test]
    fn captured_announcements_decode() {
        let old = br#"{"v":1,"id":7,"run":"00ff","seq":3,"bmac":"02:00:00:00:00:01","macs":["02:00:00:00:00:02"]}"#;
        let m = StateMsg::decode(old).expect("an old announcement decodes");
        assert_eq!(m.offers(), vec![CipherKind::ChaCha20Poly1305]);
        let new = br#"{"v":1,"id":7,"run":"00ff","seq":3,"bmac":"02:00:00:00:00:01","macs":[],"ciphers":["aes-256-gcm","chacha20-poly1305"]}"#;
        let m = StateMsg::decode(new).expect("a new announcement decodes");
        assert_eq!(m.encode(), new.to_vec(), "the encoding is stable");
        assert_eq!(
            m.offers(),
            vec![CipherKind::Aes256Gcm, CipherKind::ChaCha20Poly1305]
        );
        let unknown = br#"{"v":1,"id":7,"run":"00ff","seq":3,"bmac":"02:00:00:00:00:01","macs":[],"ciphers":["rot13"]}"#;
        let m = StateMsg::decode(unknown).expect("unknown names decode");
        assert_eq!(m.offers(), vec![CipherKind::ChaCha20Poly1305]);
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
