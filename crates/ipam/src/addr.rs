//! IPv4 CIDR and range arithmetic, and parsing of the address forms users give to `attach`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 address as a number (ring positions are addresses).
pub type Addr = u32;

/// Why an address or address form could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The text is not `A.B.C.D/N`.
    #[error("'{input}' is not a CIDR like 10.32.0.0/12 (IPv4 address, slash, prefix length 0-32)")]
    BadCidr {
        /// The text as given.
        input: String,
    },
    /// A subnet was given with host bits set (`net:10.32.1.5/24`).
    #[error("'{input}' is not a subnet start: host bits are set; did you mean {suggest}?")]
    HostBitsSet {
        /// The text as given.
        input: String,
        /// The subnet with host bits cleared.
        suggest: String,
    },
    /// The form is not one of `net:default`, `net:CIDR`, `ip:CIDR`, `CIDR`.
    #[error("'{input}' is not an address form: use net:default, net:CIDR, ip:CIDR or CIDR")]
    BadForm {
        /// The text as given.
        input: String,
    },
}

/// An IPv4 CIDR: an address and a prefix length (host bits may be set for `ip:` claims).
/// Serialised as its text form, `10.32.0.1/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The address.
    pub addr: Addr,
    /// The prefix length, 0..=32.
    pub prefix: u8,
}

impl Cidr {
    /// A CIDR from an address and prefix; `None` if the prefix is above 32.
    pub fn new(addr: Addr, prefix: u8) -> Option<Cidr> {
        (prefix <= 32).then_some(Cidr { addr, prefix })
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The first address of the subnet (host bits cleared).
    pub fn network(&self) -> Addr {
        self.addr & self.mask()
    }

    /// This CIDR with its host bits cleared.
    pub fn subnet(&self) -> Cidr {
        Cidr {
            addr: self.network(),
            prefix: self.prefix,
        }
    }

    /// Number of addresses in the subnet.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// One past the last address of the subnet.
    pub fn end(&self) -> u64 {
        u64::from(self.network()) + self.size()
    }

    /// Whether `a` lies in the subnet.
    pub fn contains(&self, a: Addr) -> bool {
        a & self.mask() == self.network()
    }

    /// Whether the subnet `other` lies wholly inside this subnet.
    pub fn contains_subnet(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains_subnet(other) || other.contains_subnet(self)
    }

    /// Whether `a` may be given to a container: the subnet's network and broadcast
    /// addresses are kept back when the subnet is bigger than a /31.
    pub fn usable(&self, a: Addr) -> bool {
        if !self.contains(a) {
            return false;
        }
        if self.prefix >= 31 {
            return true;
        }
        u64::from(a) != u64::from(self.network()) && u64::from(a) != self.end() - 1
    }

    /// The usable addresses of the subnet as a half-open interval `[start, end)`.
    pub fn usable_interval(&self) -> (u64, u64) {
        if self.prefix >= 31 {
            (u64::from(self.network()), self.end())
        } else {
            (u64::from(self.network()) + 1, self.end() - 1)
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Cidr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Cidr, AddrError> {
        let bad = || AddrError::BadCidr {
            input: s.to_string(),
        };
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Cidr::new(u32::from(ip), prefix).ok_or_else(bad)
    }
}

/// Parse a subnet (host bits must be clear).
pub fn parse_subnet(s: &str) -> Result<Cidr, AddrError> {
    let c: Cidr = s.parse()?;
    if c.addr != c.network() {
        return Err(AddrError::HostBitsSet {
            input: s.to_string(),
            suggest: c.subnet().to_string(),
        });
    }
    Ok(c)
}

/// Format an address as dotted quad.
pub fn fmt_addr(a: Addr) -> String {
    Ipv4Addr::from(a).to_string()
}

/// One address form given to `attach`, `run`, `expose` or in `WEFT_CIDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddrSpec {
    /// `net:default` or nothing: an address from the default subnet.
    DefaultSubnet,
    /// `net:CIDR`: an address from this subnet.
    Subnet(Cidr),
    /// `ip:CIDR` or a bare `CIDR`: this exact address, with its subnet's prefix.
    Claim(Cidr),
}

impl FromStr for AddrSpec {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<AddrSpec, AddrError> {
        let t = s.trim();
        if t == "net:default" {
            Ok(AddrSpec::DefaultSubnet)
        } else if let Some(rest) = t.strip_prefix("net:") {
            parse_subnet(rest).map(AddrSpec::Subnet)
        } else if let Some(rest) = t.strip_prefix("ip:") {
            rest.parse().map(AddrSpec::Claim)
        } else if t.contains('/') && !t.contains(':') {
            t.parse().map(AddrSpec::Claim)
        } else {
            Err(AddrError::BadForm {
                input: s.to_string(),
            })
        }
    }
}

impl fmt::Display for AddrSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrSpec::DefaultSubnet => write!(f, "net:default"),
            AddrSpec::Subnet(c) => write!(f, "net:{c}"),
            AddrSpec::Claim(c) => write!(f, "ip:{c}"),
        }
    }
}

/// Parse a list of address forms (whitespace separated); an empty list means the default subnet.
pub fn parse_addr_specs<S: AsRef<str>>(items: &[S]) -> Result<Vec<AddrSpec>, AddrError> {
    let mut out = Vec::new();
    for item in items {
        for word in item.as_ref().split_whitespace() {
            out.push(word.parse()?);
        }
    }
    if out.is_empty() {
        out.push(AddrSpec::DefaultSubnet);
    }
    Ok(out)
}

/// `a` minus the intervals in `minus` (all half-open, `a` sorted and disjoint).
pub fn subtract(a: &[(u64, u64)], minus: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, e) in a {
        let mut pieces = vec![(s, e)];
        for &(ms, me) in minus {
            pieces = pieces
                .into_iter()
                .flat_map(|(ps, pe)| {
                    let mut v = Vec::new();
                    if ms >= pe || me <= ps {
                        v.push((ps, pe));
                    } else {
                        if ps < ms {
                            v.push((ps, ms));
                        }
                        if me < pe {
                            v.push((me, pe));
                        }
                    }
                    v
                })
                .collect();
        }
        out.extend(pieces);
    }
    out
}

/// Intersect two half-open intervals.
pub(crate) fn intersect(a: (u64, u64), b: (u64, u64)) -> Option<(u64, u64)> {
    let s = a.0.max(b.0);
    let e = a.1.min(b.1);
    (s < e).then_some((s, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let c: Cidr = "10.32.0.0/12".parse().unwrap();
        assert_eq!(c.size(), 1 << 20);
        assert_eq!(
            "net:default".parse::<AddrSpec>().unwrap(),
            AddrSpec::DefaultSubnet
        );
        assert_eq!(
            "net:10.32.1.0/24".parse::<AddrSpec>().unwrap(),
            AddrSpec::Subnet("10.32.1.0/24".parse().unwrap())
        );
        assert_eq!(
            "10.32.1.5/24".parse::<AddrSpec>().unwrap(),
            AddrSpec::Claim("10.32.1.5/24".parse().unwrap())
        );
        assert_eq!(
            "ip:10.32.1.5/24".parse::<AddrSpec>().unwrap(),
            "10.32.1.5/24".parse::<AddrSpec>().unwrap()
        );
        let e = "net:10.32.1.5/24".parse::<AddrSpec>().unwrap_err();
        assert!(e.to_string().contains("10.32.1.0/24"), "{e}");
        assert!(matches!(
            "ip:10.32.1.5".parse::<AddrSpec>(),
            Err(AddrError::BadCidr { .. })
        ));
        assert!(matches!(
            "foo".parse::<AddrSpec>(),
            Err(AddrError::BadForm { .. })
        ));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(
            parse_addr_specs::<&str>(&[]).unwrap(),
            vec![AddrSpec::DefaultSubnet]
        );
    }

    #[test]
    fn usable_excludes_network_and_broadcast() {
        let c: Cidr = "10.32.1.0/24".parse().unwrap();
        assert!(!c.usable(c.network()));
        assert!(!c.usable(c.network() + 255));
        assert!(c.usable(c.network() + 1));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.end(), 1 << 32);
        assert!(all.usable(u32::MAX - 1));
        assert!(!all.usable(u32::MAX));
    }
}
