//! Bridge-port settings the router needs when fastdp and the sleeve share one bridge:
//! isolation of the two overlay ports from each other, and forgetting MACs the bridge
//! learned on a port when a peer moves from one path to the other.

use netlink_packet_route::link::{
    InfoBridgePort, InfoPortData, InfoPortKind, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::NeighbourFlags;
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{kernel, Result};
use crate::link;
use crate::nl::Handle;

/// Sets or clears `isolated` on bridge port `name`: isolated ports exchange no frames with
/// each other, only with non-isolated ports (containers, the host). The VXLAN device and
/// the sleeve TAP are both isolated so the bridge never forwards overlay traffic from one
/// path onto the other (that would loop and duplicate broadcasts); relaying is the
/// sleeve's job.
pub fn set_isolated(name: &str, on: bool) -> Result<()> {
    let mut h = Handle::current()?;
    let l = link::require(&mut h, name)?;
    let mut m = LinkMessage::default();
    m.header.index = l.index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(on)])),
    ]));
    h.ack(RouteNetlinkMessage::NewLink(m), 0)
        .map_err(kernel(format!(
            "set bridge port {name} isolated={on} in {}",
            h.what
        )))
}

/// Deletes the entries the bridge learned for `macs` on port `name` (so the next frame to
/// them is flooded and the bridge learns where they are now). Returns how many went.
pub fn forget_learned(name: &str, macs: &[[u8; 6]]) -> Result<usize> {
    let mut h = Handle::current()?;
    let Some(l) = link::get(&mut h, name)? else {
        return Ok(0);
    };
    let mut n = 0;
    for mac in macs {
        let mut msg = crate::fdb::message(l.index, *mac, None);
        msg.header.flags = NeighbourFlags::Controller;
        let op = format!("forget learned MAC {mac:02x?} on {name}");
        let gone = [libc::ENOENT, libc::ENODEV];
        if h.change(RouteNetlinkMessage::DelNeighbour(msg), 0, &gone, op)? {
            n += 1;
        }
    }
    Ok(n)
}
