//! The state the router wants the firewall in, independent of how nftables spells it.

use std::collections::BTreeSet;

use ipnet::Ipv4Net;

/// Masquerading for an exposed host: traffic between the overlay and the outside world.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Masquerade {
    /// The overlay range (all container addresses).
    pub range: Ipv4Net,
    /// The overlay bridge.
    pub bridge: String,
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
}
