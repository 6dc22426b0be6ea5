//! The `WEFT_CIDR` (or `WEAVE_CIDR`) value of a container: where the proxy attaches it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// One address form of `WEFT_CIDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrSpec {
    /// `net:default` (or an unset/empty `WEFT_CIDR`): an address in weft's default subnet.
    DefaultSubnet,
    /// `net:CIDR`: any free address in that subnet.
    Subnet(Ipv4Net),
    /// `ip:A[/len]` or a bare `A[/len]`: exactly that address; without `/len` the subnet is
    /// the default one or the weft network that holds `A`.
    Ip {
        /// The address.
        addr: Ipv4Addr,
        /// Prefix length, if given.
        prefix: Option<u8>,
    },
}

/// What `WEFT_CIDR` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrSetting {
    /// `none`: leave the container's networking alone.
    None,
    /// Attach to these, the first one at create time (never empty).
    Attach(Vec<AddrSpec>),
}

/// A `WEFT_CIDR` value that cannot be used; the text says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct CidrError {
    /// Why the value is wrong.
    pub why: String,
}

fn bad(why: impl Into<String>) -> CidrError {
    CidrError { why: why.into() }
}

/// Parses a space-separated `WEFT_CIDR` value. Unset or blank means the default subnet.
pub fn parse_weft_cidr(value: Option<&str>) -> Result<CidrSetting, CidrError> {
    let words: Vec<&str> = value.unwrap_or_default().split_whitespace().collect();
    if words.is_empty() {
        return Ok(CidrSetting::Attach(vec![AddrSpec::DefaultSubnet]));
    }
    if words.contains(&"none") {
        if words.len() == 1 {
            return Ok(CidrSetting::None);
        }
        return Err(bad("`none` cannot be combined with addresses"));
    }
    let specs = words
        .iter()
        .map(|w| parse_one(w))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CidrSetting::Attach(specs))
}

fn parse_one(word: &str) -> Result<AddrSpec, CidrError> {
    if let Some(rest) = word.strip_prefix("net:") {
        if rest == "default" {
            return Ok(AddrSpec::DefaultSubnet);
        }
        if !rest.contains('/') {
            return Err(bad(format!(
                "{word}: a subnet needs a prefix length (net:a.b.c.d/len)"
            )));
        }
        let net: Ipv4Net = rest
            .parse()
            .map_err(|_| bad(format!("{word}: {rest} is not an IPv4 subnet")))?;
        if net.trunc() != net {
            return Err(bad(format!(
                "{word}: {rest} is not the start of a subnet (did you mean net:{} or ip:{rest}?)",
                net.trunc()
            )));
        }
        return Ok(AddrSpec::Subnet(net));
    }
    let (form, rest) = match word.strip_prefix("ip:") {
        Some(rest) => ("ip:", rest),
        None if word.contains(':') => {
            return Err(bad(format!("{word}: unknown form")));
        }
        None => ("", word),
    };
    let (addr, prefix) = match rest.split_once('/') {
        Some((a, p)) => {
            let prefix: u8 = p
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| bad(format!("{word}: {p} is not a prefix length (0-32)")))?;
            (a, Some(prefix))
        }
        None => (rest, None),
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| bad(format!("{word}: {addr} is not an IPv4 address")))?;
    if let Some(p) = prefix {
        if p == 0 {
            return Err(bad(format!(
                "{form}{rest}: a /0 subnet cannot hold containers"
            )));
        }
        if p <= 30 {
            let net = Ipv4Net::new(addr, p).map_err(|_| bad(format!("{word}: bad prefix")))?;
            if addr == net.network() || addr == net.broadcast() {
                return Err(bad(format!(
                    "{word}: {addr} is the network or broadcast address of {}",
                    net.trunc()
                )));
            }
        }
    }
    Ok(AddrSpec::Ip { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn forms() {
        use AddrSpec::*;
        assert_eq!(
            parse_weft_cidr(None).unwrap(),
            CidrSetting::Attach(vec![DefaultSubnet])
        );
        assert_eq!(
            parse_weft_cidr(Some("  ")).unwrap(),
            CidrSetting::Attach(vec![DefaultSubnet])
        );
        assert_eq!(parse_weft_cidr(Some("none")).unwrap(), CidrSetting::None);
        assert_eq!(parse_weft_cidr(Some(" none ")).unwrap(), CidrSetting::None);
        assert_eq!(
            parse_weft_cidr(Some(
                "net:default net:10.32.1.0/24  ip:10.32.2.7/24\t10.40.0.9/16 ip:10.32.0.5 10.32.0.6"
            ))
            .unwrap(),
            CidrSetting::Attach(vec![
                DefaultSubnet,
                Subnet(net("10.32.1.0/24")),
                Ip {
                    addr: "10.32.2.7".parse().unwrap(),
                    prefix: Some(24)
                },
                Ip {
                    addr: "10.40.0.9".parse().unwrap(),
                    prefix: Some(16)
                },
                Ip {
                    addr: "10.32.0.5".parse().unwrap(),
                    prefix: None
                },
                Ip {
                    addr: "10.32.0.6".parse().unwrap(),
                    prefix: None
                },
            ])
        );
        // /31 and /32 have no network or broadcast address to refuse.
        assert!(parse_weft_cidr(Some("ip:10.32.0.0/31")).is_ok());
        assert!(parse_weft_cidr(Some("10.32.0.0/32")).is_ok());
    }

    #[test]
    fn bad_values_say_why() {
        for (value, why) in [
            ("none net:default", "cannot be combined"),
            ("net:10.32.1.0", "needs a prefix length"),
            (
                "net:10.32.1.5/24",
                "did you mean net:10.32.1.0/24 or ip:10.32.1.5/24",
            ),
            ("net:10.32.1.0/33", "not an IPv4 subnet"),
            ("net:fd00::/64", "not an IPv4 subnet"),
            ("net:", "needs a prefix length"),
            ("ip:10.32.1.300/24", "not an IPv4 address"),
            ("ip:10.32.1.3/x", "x is not a prefix length"),
            ("ip:10.32.1.3/40", "not a prefix length"),
            ("ip:10.32.1.0/24", "network or broadcast"),
            ("10.32.1.255/24", "network or broadcast"),
            ("ip:10.0.0.1/0", "/0 subnet"),
            ("subnet:10.32.0.0/24", "unknown form"),
            ("hello", "not an IPv4 address"),
            ("ip:", "not an IPv4 address"),
            ("ip:/24", "not an IPv4 address"),
        ] {
            let e = parse_weft_cidr(Some(value)).unwrap_err().to_string();
            assert!(e.contains(why), "{value}: {e}");
        }
    }

    #[test]
    fn never_panics_on_junk() {
        for junk in [
            "ip:1.2.3.4/",
            "/",
            ":",
            "net:/",
            "ip:1.2.3.4//24",
            "\u{0}",
            "ip:ü",
            "10.0.0.1/-1",
            "net:default:",
            "NONE",
        ] {
            let _ = parse_weft_cidr(Some(junk));
        }
    }
}
