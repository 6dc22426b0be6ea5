//! IPv4 addresses on links: add, delete, list.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::nl::Handle;

/// Builds an RTM_NEWADDR/RTM_DELADDR body for `net` on link `index`.
pub(crate) fn message(index: u32, net: Ipv4Net) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = net.prefix_len();
    m.header.index = index;
    m.attributes
        .push(AddressAttribute::Local(IpAddr::V4(net.addr())));
    if net.prefix_len() < 31 {
        m.attributes
            .push(AddressAttribute::Broadcast(net.broadcast()));
    }
    m.attributes
        .push(AddressAttribute::Address(IpAddr::V4(net.addr())));
    m
}

/// Adds `net` to link `index`; returns false if it was already there.
pub fn add(h: &mut Handle, index: u32, net: Ipv4Net) -> Result<bool> {
    h.change(
        RouteNetlinkMessage::NewAddress(message(index, net)),
        NLM_F_CREATE | NLM_F_EXCL,
        &[libc::EEXIST],
        format!("add address {net} to link #{index}"),
    )
}

/// Removes `net` from link `index`; returns false if it was not there.
pub fn del(h: &mut Handle, index: u32, net: Ipv4Net) -> Result<bool> {
    h.change(
        RouteNetlinkMessage::DelAddress(message(index, net)),
        0,
        &[libc::EADDRNOTAVAIL],
        format!("remove address {net} from link #{index}"),
    )
}

/// Lists the IPv4 addresses of link `index` (all links when `None`), as (index, address).
pub fn list(h: &mut Handle, index: Option<u32>) -> Result<Vec<(u32, Ipv4Net)>> {
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    let msgs = h.list(RouteNetlinkMessage::GetAddress(req), "addresses")?;
    let mut out = Vec::new();
    for m in msgs {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        if a.header.family != AddressFamily::Inet || index.is_some_and(|i| i != a.header.index) {
            continue;
        }
        let ip = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = ip {
            if let Ok(net) = Ipv4Net::new(ip, a.header.prefix_len) {
                out.push((a.header.index, net));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nl::encode;
    use netlink_packet_core::NLM_F_ACK;

    /// `ip addr add 10.32.0.9/12 brd 10.47.255.255 dev vx` (ifindex 3), captured with strace.
    const CAPTURED_ADDR_ADD: [u8; 48] = [
        0x30, 0x00, 0x00, 0x00, 0x14, 0x00, 0x05, 0x06, 0xf8, 0x5a, 0x03, 0x6b, 0x00, 0x00, 0x00,
        0x00, // nlmsghdr: len 48, RTM_NEWADDR, REQUEST|ACK|CREATE|EXCL
        0x02, 0x0c, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, // ifaddrmsg: inet /12 index 3
        0x08, 0x00, 0x02, 0x00, 0x0a, 0x20, 0x00, 0x09, // IFA_LOCAL
        0x08, 0x00, 0x04, 0x00, 0x0a, 0x2f, 0xff, 0xff, // IFA_BROADCAST
        0x08, 0x00, 0x01, 0x00, 0x0a, 0x20, 0x00, 0x09, // IFA_ADDRESS
    ];

    #[test]
    fn address_add_encodes_like_iproute2() {
        let m = message(3, "10.32.0.9/12".parse().unwrap());
        let bytes = encode(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            0x6b035af8,
        );
        assert_eq!(bytes, CAPTURED_ADDR_ADD);
    }
}
