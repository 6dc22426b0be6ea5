//! IPv4 addresses on links: add, delete, list.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::nl::Handle;

/// Builds an RTM_NEWADDR/RTM_DELADDR body for `net` on link `index`.
pub(crate) fn message(index: u32, net: Ipv4Net) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = net.prefix_len();
    m.header.index = index;
    m.attributes
        .push(AddressAttribute::Local(IpAddr::V4(net.addr())));
    m.attributes
        .push(AddressAttribute::Address(IpAddr::V4(net.addr())));
    if net.prefix_len() < 31 {
        m.attributes
            .push(AddressAttribute::Broadcast(net.broadcast()));
    }
    m
}

/// Adds `net` to link `index`; returns false if it was already there.
pub fn add(h: &mut Handle, index: u32, net: Ipv4Net) -> Result<bool> {
    match h.ack(
        RouteNetlinkMessage::NewAddress(message(index, net)),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(source) => Err(Error::Kernel {
            op: format!("add address {net} to link #{index} in {}", h.what),
            source,
        }),
    }
}

/// Removes `net` from link `index`; returns false if it was not there.
pub fn del(h: &mut Handle, index: u32, net: Ipv4Net) -> Result<bool> {
    match h.ack(RouteNetlinkMessage::DelAddress(message(index, net)), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
        Err(source) => Err(Error::Kernel {
            op: format!("remove address {net} from link #{index} in {}", h.what),
            source,
        }),
    }
}

/// Lists the IPv4 addresses of link `index` (all links when `None`), as (index, address).
pub fn list(h: &mut Handle, index: Option<u32>) -> Result<Vec<(u32, Ipv4Net)>> {
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    let msgs = h
        .dump(RouteNetlinkMessage::GetAddress(req))
        .map_err(|source| Error::Kernel {
            op: format!("list addresses in {}", h.what),
            source,
        })?;
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
