//! IPv4 neighbour (ARP) entries: list and program them.

use std::net::Ipv4Addr;

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::nl::Handle;

/// One ARP entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Link index.
    pub ifindex: u32,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// MAC, if resolved.
    pub mac: Option<[u8; 6]>,
    /// NUD state.
    pub state: NeighbourState,
}

/// Dumps the kernel's neighbour table of one family: ARP for `Inet`, the FDB for `Bridge`.
pub(crate) fn dump(
    h: &mut Handle,
    family: AddressFamily,
    what: &str,
) -> Result<Vec<NeighbourMessage>> {
    let mut req = NeighbourMessage::default();
    req.header.family = family;
    let msgs = h.list(RouteNetlinkMessage::GetNeighbour(req), what)?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => Some(n),
            _ => None,
        })
        .collect())
}

/// Lists the ARP entries (of one link when `ifindex` is given).
pub fn list(h: &mut Handle, ifindex: Option<u32>) -> Result<Vec<Neighbour>> {
    let mut out = Vec::new();
    for n in dump(h, AddressFamily::Inet, "neighbours")? {
        if n.header.family != AddressFamily::Inet || ifindex.is_some_and(|i| i != n.header.ifindex)
        {
            continue;
        }
        let mut ip = None;
        let mut mac = None;
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) => ip = Some(*x),
                NeighbourAttribute::LinkLayerAddress(l) => {
                    mac = <[u8; 6]>::try_from(l.as_slice()).ok()
                }
                _ => {}
            }
        }
        if let Some(ip) = ip {
            out.push(Neighbour {
                ifindex: n.header.ifindex,
                ip,
                mac,
                state: n.header.state,
            });
        }
    }
    Ok(out)
}

/// Sets a permanent ARP entry `ip` -> `mac` on link `ifindex`.
pub fn replace(h: &mut Handle, ifindex: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    let op = format!("set neighbour {ip} on link #{ifindex}");
    h.replace(RouteNetlinkMessage::NewNeighbour(m), op)
}

/// Deletes the ARP entry for `ip` on link `ifindex`; false if there was none.
pub fn delete(h: &mut Handle, ifindex: u32, ip: Ipv4Addr) -> Result<bool> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    let op = format!("delete neighbour {ip} on link #{ifindex}");
    h.change(RouteNetlinkMessage::DelNeighbour(m), 0, &[libc::ENOENT], op)
}
