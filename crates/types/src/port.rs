//! The transport protocol of a published port.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport protocol a port can be published for.
///
/// Serialized as `"tcp"`, `"udp"`, `"sctp"` (the router's `docker.json` holds this form);
/// Docker's plugin protocol sends IANA numbers instead, see [`Proto::from_iana`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (IANA 6).
    Tcp,
    /// UDP (IANA 17).
    Udp,
    /// SCTP (IANA 132).
    Sctp,
}

impl Proto {
    /// The protocol's name as nftables and Docker spell it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// The IANA protocol number (what Docker's plugin protocol carries).
    pub fn iana(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }

    /// The protocol with IANA number `n`, if weft publishes it.
    pub fn from_iana(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            132 => Some(Proto::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A protocol name other than `tcp`, `udp` or `sctp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProto(pub String);

impl fmt::Display for UnknownProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "protocol {:?} is not supported: use tcp, udp or sctp",
            self.0
        )
    }
}

impl std::error::Error for UnknownProto {}

impl FromStr for Proto {
    type Err = UnknownProto;

    fn from_str(s: &str) -> Result<Proto, UnknownProto> {
        [Proto::Tcp, Proto::Udp, Proto::Sctp]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProto(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips() {
        for p in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Proto>(&json).unwrap(), p);
            assert_eq!(Proto::from_iana(p.iana()), Some(p));
            assert_eq!(p.to_string().parse::<Proto>(), Ok(p));
        }
        assert_eq!(Proto::from_iana(1), None);
        assert!("TCP".parse::<Proto>().is_err());
        assert!(serde_json::from_str::<Proto>("\"icmp\"").is_err());
    }
}
