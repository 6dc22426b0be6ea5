//! The state the router wants the firewall in, independent of how nftables spells it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::FirewallError;

/// Masquerading for an exposed host: traffic between the overlay and the outside world.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Masquerade {
    /// The overlay range (all container addresses).
    pub range: Ipv4Net,
    /// The overlay bridge.
    pub bridge: String,
}

pub use weft_types::Proto;

/// A port of the host forwarded to a container (Docker's `-p [HOST_IP:]HOST_PORT:PORT`).
///
/// Traffic to `host_port` on one of the host's own addresses (`host_ip`, or any local
/// address when `None` or `0.0.0.0`), from outside or from the host itself (127.0.0.1
/// included), is sent to `addr:port` on the overlay. The host must be able to route to
/// `addr` (an exposed address on the bridge gives it the route), and for 127.0.0.1 the
/// bridge needs `net.ipv4.conf.<bridge>.route_localnet=1`, see [`Ruleset::bridge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Published {
    /// TCP, UDP or SCTP.
    pub proto: Proto,
    /// The host address the port is published on; `None` (or `0.0.0.0`) means all.
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the host.
    pub host_port: u16,
    /// The container's overlay address.
    pub addr: Ipv4Addr,
    /// The port in the container.
    pub port: u16,
}

impl Published {
    /// The host address this mapping is limited to (`None`: every local address).
    pub fn host_addr(&self) -> Option<Ipv4Addr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

impl fmt::Display for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_addr() {
            Some(ip) => write!(f, "{ip}:")?,
            None => f.write_str("*:")?,
        }
        write!(
            f,
            "{}->{}:{}/{}",
            self.host_port, self.addr, self.port, self.proto
        )
    }
}

/// Everything weft wants from nftables on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Masquerade container traffic leaving through this host (`weft expose`).
    pub masquerade: Option<Masquerade>,
    /// The overlay range, when isolation applies.
    pub range: Option<Ipv4Net>,
    /// Subnets in use whose members must not reach other subnets of the range.
    pub isolated_subnets: BTreeSet<Ipv4Net>,
    /// Host addresses on the overlay (from `weft expose`): they may talk to any subnet.
    pub exposed: BTreeSet<Ipv4Net>,
    /// Ports of the host forwarded to containers (IPv4).
    pub published: BTreeSet<Published>,
    /// The overlay bridge. With published ports, connections to them from the host's
    /// loopback (and, when `range` is set, from containers) are masqueraded as they
    /// leave through it. Loopback sources only get there when the router has set
    /// `net.ipv4.conf.<bridge>.route_localnet=1` (see
    /// `weft_datapath::sysctl::enable_route_localnet`); without a bridge the rule
    /// matches every interface but `lo`.
    pub bridge: Option<String>,
}

impl Ruleset {
    /// Checks what nftables would not: published ports are non-zero and no two mappings
    /// claim the same host port for the same protocol on overlapping addresses.
    pub fn validate(&self) -> Result<(), FirewallError> {
        let invalid = |p: &Published, reason: String| FirewallError::InvalidPublished {
            mapping: p.to_string(),
            reason,
        };
        let mut seen: Vec<&Published> = Vec::new();
        for p in &self.published {
            if p.host_port == 0 || p.port == 0 {
                return Err(invalid(
                    p,
                    "port 0 cannot be published; give both ports between 1 and 65535".into(),
                ));
            }
            if let Some(q) = seen.iter().find(|q| {
                q.proto == p.proto
                    && q.host_port == p.host_port
                    && (q.host_addr().is_none()
                        || p.host_addr().is_none()
                        || q.host_addr() == p.host_addr())
            }) {
                return Err(invalid(
                    p,
                    format!(
                        "host port {}/{} is already published as {q}; pick another host port",
                        p.host_port, p.proto
                    ),
                ));
            }
            seen.push(p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(host_ip: Option<[u8; 4]>, host_port: u16, proto: Proto) -> Published {
        Published {
            proto,
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            addr: Ipv4Addr::new(10, 32, 0, 2),
            port: 80,
        }
    }

    fn with(ps: &[Published]) -> Ruleset {
        Ruleset {
            published: ps.iter().copied().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn distinct_mappings_are_valid() {
        let r = with(&[
            p(None, 8080, Proto::Tcp),
            p(None, 8080, Proto::Udp),
            p(Some([192, 168, 1, 1]), 8081, Proto::Tcp),
            p(Some([192, 168, 1, 2]), 8081, Proto::Tcp),
        ]);
        assert!(r.validate().is_ok());
    }

    #[test]
    fn overlapping_host_ports_are_refused() {
        for pair in [
            [
                p(None, 8080, Proto::Tcp),
                p(Some([192, 168, 1, 1]), 8080, Proto::Tcp),
            ],
            [
                p(Some([0, 0, 0, 0]), 8080, Proto::Tcp),
                p(None, 8080, Proto::Tcp),
            ],
            [
                p(Some([192, 168, 1, 1]), 8080, Proto::Sctp),
                Published {
                    addr: Ipv4Addr::new(10, 32, 0, 3),
                    ..p(Some([192, 168, 1, 1]), 8080, Proto::Sctp)
                },
            ],
        ] {
            let err = with(&pair).validate().unwrap_err().to_string();
            assert!(err.contains("already published"), "{err}");
            assert!(err.contains("8080"), "{err}");
        }
    }

    #[test]
    fn port_zero_is_refused() {
        let mut z = p(None, 0, Proto::Udp);
        assert!(with(&[z]).validate().is_err());
        z.host_port = 53;
        z.port = 0;
        let err = with(&[z]).validate().unwrap_err().to_string();
        assert!(err.contains("*:53->10.32.0.2:0/udp"), "{err}");
    }
}
