//! MTU: what the underlay carries towards a peer, and what is left for the overlay.

use std::net::Ipv4Addr;

use crate::bridge::MIN_MTU;
use crate::error::{Error, Result};
use crate::link;
use crate::netns::Netns;
use crate::nl::Handle;

/// VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// Sleeve over IPv4, unencrypted: outer IPv4 (20) + UDP (8) + sleeve data header (40,
/// `sleeve::wire::DATA_HEADER_LEN`) + inner Ethernet (14). The sleeve may pass its own figure.
pub const SLEEVE_OVERHEAD_DEFAULT: u32 = 20 + 8 + 40 + 14;
/// Extra sleeve overhead when a password is set (the Poly1305 tag).
pub const SLEEVE_SEAL_OVERHEAD: u32 = 16;

/// The MTU of the path to `peer` from the current netns: the route's locked MTU if it
/// has one, else the MTU of the output interface.
pub fn underlay_mtu(peer: Ipv4Addr) -> Result<u32> {
    let mut h = Handle::current()?;
    underlay_mtu_with(&mut h, peer)
}

/// The same, looked up inside another namespace.
pub fn underlay_mtu_in(netns: &Netns, peer: Ipv4Addr) -> Result<u32> {
    let mut h = Handle::in_netns(netns)?;
    underlay_mtu_with(&mut h, peer)
}

fn underlay_mtu_with(h: &mut Handle, peer: Ipv4Addr) -> Result<u32> {
    let r = crate::route::lookup(h, peer)?;
    let links = link::list(h)?;
    let dev = links
        .iter()
        .find(|l| l.index == r.oif)
        .ok_or_else(|| Error::LinkNotFound {
            name: format!("#{}", r.oif),
            netns: h.what.clone(),
        })?;
    Ok(match r.mtu {
        Some(m) if m > 0 => m.min(dev.mtu),
        _ => dev.mtu,
    })
}

/// What is left for the overlay when `overhead` bytes of encapsulation ride on `underlay`.
pub fn overlay_mtu(underlay: u32, overhead: u32) -> Result<u32> {
    match underlay.checked_sub(overhead) {
        Some(m) if m >= MIN_MTU => Ok(m),
        _ => Err(Error::InvalidParameter {
            what: "underlay MTU",
            value: underlay.to_string(),
            reason: "too small to carry the encapsulation and a minimal IPv4 packet",
        }),
    }
}

/// The overlay MTU for fastdp towards `peer`.
pub fn fastdp_mtu(peer: Ipv4Addr) -> Result<u32> {
    overlay_mtu(underlay_mtu(peer)?, VXLAN_OVERHEAD_V4)
}

/// The overlay MTU for the sleeve towards `peer`, given its per-packet overhead.
pub fn sleeve_mtu(peer: Ipv4Addr, overhead: u32) -> Result<u32> {
    overlay_mtu(underlay_mtu(peer)?, overhead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_mtu_subtracts_overhead() {
        assert_eq!(overlay_mtu(1500, VXLAN_OVERHEAD_V4).unwrap(), 1450);
        assert_eq!(overlay_mtu(1500, SLEEVE_OVERHEAD_DEFAULT).unwrap(), 1418);
        assert_eq!(
            overlay_mtu(1500, SLEEVE_OVERHEAD_DEFAULT + SLEEVE_SEAL_OVERHEAD).unwrap(),
            1402
        );
        assert_eq!(overlay_mtu(9000, 50).unwrap(), 8950);
    }

    #[test]
    fn overlay_mtu_refuses_too_small() {
        assert!(overlay_mtu(100, 50).is_err());
        assert!(overlay_mtu(40, 50).is_err());
        assert_eq!(overlay_mtu(118, 50).unwrap(), 68);
    }
}
