//! IPv4 routes: device routes (e.g. the overlay range via the container's interface),
//! default routes on request, and route lookups (for the underlay MTU).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::nl::Handle;

fn base(dst: Ipv4Net) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = dst.prefix_len();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Static;
    m.header.kind = RouteType::Unicast;
    if dst.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                dst.network(),
            )));
    }
    m
}

/// Builds the message for "`dst` dev `oif` scope link".
pub(crate) fn device_route_message(dst: Ipv4Net, oif: u32) -> RouteMessage {
    let mut m = base(dst.trunc());
    m.header.scope = RouteScope::Link;
    m.attributes.push(RouteAttribute::Oif(oif));
    m
}

/// Adds (or replaces) a route to `dst` out of link `oif`, no gateway.
pub fn add_device_route(h: &mut Handle, dst: Ipv4Net, oif: u32) -> Result<()> {
    let op = format!("add route {dst} dev #{oif}");
    h.replace(
        RouteNetlinkMessage::NewRoute(device_route_message(dst, oif)),
        op,
    )
}

/// Removes the route to `dst` out of link `oif`; returns false if it was not there.
pub fn del_device_route(h: &mut Handle, dst: Ipv4Net, oif: u32) -> Result<bool> {
    let mut m = device_route_message(dst, oif);
    m.header.protocol = RouteProtocol::Unspec;
    m.header.scope = RouteScope::NoWhere;
    let op = format!("remove route {dst} dev #{oif}");
    h.change(RouteNetlinkMessage::DelRoute(m), 0, &[libc::ESRCH], op)
}

/// Adds (or replaces) the default route via `gateway` out of link `oif`.
pub fn add_default_route(h: &mut Handle, gateway: Ipv4Addr, oif: u32) -> Result<()> {
    let mut m = base(Ipv4Net::default());
    m.header.scope = RouteScope::Universe;
    m.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    m.attributes.push(RouteAttribute::Oif(oif));
    let op = format!("add default route via {gateway} dev #{oif}");
    h.replace(RouteNetlinkMessage::NewRoute(m), op)
}

/// The answer of a route lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    /// Output interface index.
    pub oif: u32,
    /// Gateway, if the destination is not on-link.
    pub gateway: Option<Ipv4Addr>,
    /// Preferred source address.
    pub src: Option<Ipv4Addr>,
    /// MTU locked on the route (RTAX_MTU), if any.
    pub mtu: Option<u32>,
}

/// Asks the kernel how it would route a packet to `dst` (`ip route get`).
pub fn lookup(h: &mut Handle, dst: Ipv4Addr) -> Result<RouteLookup> {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = 32;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    let msgs = h
        .get(RouteNetlinkMessage::GetRoute(m))
        .map_err(|source| Error::NoRoute { peer: dst, source })?;
    for r in msgs {
        let RouteNetlinkMessage::NewRoute(r) = r else {
            continue;
        };
        let mut out = RouteLookup {
            oif: 0,
            gateway: None,
            src: None,
            mtu: None,
        };
        for a in &r.attributes {
            match a {
                RouteAttribute::Oif(i) => out.oif = *i,
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => out.gateway = Some(*g),
                RouteAttribute::PrefSource(RouteAddress::Inet(s)) => out.src = Some(*s),
                RouteAttribute::Metrics(ms) => {
                    for x in ms {
                        if let RouteMetric::Mtu(v) = x {
                            out.mtu = Some(*v);
                        }
                    }
                }
                _ => {}
            }
        }
        if out.oif != 0 {
            return Ok(out);
        }
    }
    Err(Error::NoRoute {
        peer: dst,
        source: std::io::Error::from_raw_os_error(libc::ENETUNREACH),
    })
}

/// Lists the IPv4 routes of the main table as (destination, output link index); read-only
/// (the launch check compares the allocation range against them).
pub fn list_main(h: &mut Handle) -> Result<Vec<(Ipv4Net, u32)>> {
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    let msgs = h.list(RouteNetlinkMessage::GetRoute(req), "routes")?;
    let mut out = Vec::new();
    for m in msgs {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            continue;
        };
        if r.header.address_family != AddressFamily::Inet
            || r.header.table != RouteHeader::RT_TABLE_MAIN
        {
            continue;
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let mut oif = 0;
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                RouteAttribute::Oif(i) => oif = *i,
                _ => {}
            }
        }
        if let Ok(net) = Ipv4Net::new(dst, r.header.destination_prefix_length) {
            out.push((net.trunc(), oif));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nl::encode;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE};

    /// `ip route replace 10.32.0.0/12 dev vx scope link proto static` (ifindex 3), captured
    /// with strace.
    const CAPTURED_ROUTE_REPLACE: [u8; 44] = [
        0x2c, 0x00, 0x00, 0x00, 0x18, 0x00, 0x05, 0x05, 0xf8, 0x5a, 0x03, 0x6b, 0x00, 0x00, 0x00,
        0x00, // nlmsghdr: len 44, RTM_NEWROUTE, REQUEST|ACK|CREATE|REPLACE
        0x02, 0x0c, 0x00, 0x00, 0xfe, 0x04, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, // rtmsg
        0x08, 0x00, 0x01, 0x00, 0x0a, 0x20, 0x00, 0x00, // RTA_DST
        0x08, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00, // RTA_OIF
    ];

    #[test]
    fn device_route_encodes_like_iproute2() {
        let m = device_route_message("10.32.0.0/12".parse().unwrap(), 3);
        let bytes = encode(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            0x6b035af8,
        );
        assert_eq!(bytes, CAPTURED_ROUTE_REPLACE);
    }
}
