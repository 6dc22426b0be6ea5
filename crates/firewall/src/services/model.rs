//! What the router asks the service table to hold, independent of nftables' spelling.

use std::net::Ipv4Addr;

use crate::rules::Proto;

/// Where a service table lives, which decides what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SvcScope {
    /// The host's own namespace: VIP traffic the host sends (nat `output`), published
    /// ports on the host's addresses (nat `prerouting` and `output`), masqueraded as they
    /// leave so the task answers this host.
    Host,
    /// A client container's namespace: VIP traffic it sends (nat `output`) only.
    Container,
}

/// One service as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SvcRule {
    /// The service's name (unique among the rules of one sync).
    pub name: String,
    /// Its virtual address (`None`: mode dnsrr, published ports only).
    pub vip: Option<Ipv4Addr>,
    /// VIP ports: `VIP:port` goes to `task:port`.
    pub ports: Vec<(Proto, u16)>,
    /// Published ports `(proto, host port, target port)`: host port on any of the host's
    /// own addresses goes to `task:target port` (Host scope only).
    pub published: Vec<(Proto, u16, u16)>,
    /// The tasks' addresses in rotation.
    pub backends: Vec<Ipv4Addr>,
}
