//! Veth pairs for runtimes that move the container side themselves (Docker's network
//! plugin protocol): weft makes the pair in the host's namespace with the host side on the
//! bridge; the runtime moves the other side into the container, renames and addresses it.

use std::net::Ipv4Addr;

use crate::arp;
use crate::attach::VETH_PREFIX;
use crate::error::{Error, Result};
use crate::link::{self, LinkChange};
use crate::netns::Netns;
use crate::nl::Handle;

/// Prefix of the container side while it is still in the host's namespace.
pub const PEER_PREFIX: &str = "vethwp";

/// Host-side and container-side names for an endpoint id (Docker's are 64 hex digits):
/// the prefixes plus its first 9 characters, so they fit in 15 bytes and `reset` finds
/// the host side by its prefix.
pub fn veth_names(endpoint_id: &str) -> (String, String) {
    let short: String = endpoint_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(9)
        .collect();
    (
        format!("{VETH_PREFIX}{short}"),
        format!("{PEER_PREFIX}{short}"),
    )
}

/// Creates the pair `host`/`peer` in the current namespace: `host` up on `bridge`, `peer`
/// with `mac`, both with `mtu`. A pair left over from an earlier try is replaced. A failure
/// part way removes the pair again.
pub fn create(bridge: &str, host: &str, peer: &str, mac: [u8; 6], mtu: u32) -> Result<()> {
    let mut h = Handle::current()?;
    let br = link::require_bridge(&mut h, bridge)?;
    let _ = link::delete_by_name(&mut h, host)?;
    link::create_veth(&mut h, host, peer, None, mtu)?;
    let steps = |h: &mut Handle| -> Result<()> {
        let p = link::require(h, peer)?;
        link::set(
            h,
            p.index,
            &LinkChange {
                mac: Some(mac),
                ..Default::default()
            },
        )?;
        let hv = link::require(h, host)?;
        link::set(
            h,
            hv.index,
            &LinkChange {
                up: Some(true),
                master: Some(br.index),
                ..Default::default()
            },
        )
    };
    steps(&mut h).inspect_err(|_| {
        let _ = link::delete_by_name(&mut h, host);
    })
}

/// Removes the pair by its host side (the container side goes with it); false if absent.
pub fn remove(host: &str) -> Result<bool> {
    let mut h = Handle::current()?;
    link::delete_by_name(&mut h, host)
}

/// Sends gratuitous ARPs for `ips` from the interface with `mac` inside `netns`, once the
/// runtime has moved it there (so peers and switches learn where the addresses live now).
pub fn announce(netns: &Netns, mac: [u8; 6], ips: &[Ipv4Addr]) -> Result<()> {
    let mut h = Handle::in_netns(netns)?;
    let Some(l) = link::list(&mut h)?
        .into_iter()
        .find(|l| l.mac6() == Some(mac))
    else {
        return Err(Error::InvalidParameter {
            what: "mac",
            value: format!("{mac:02x?}"),
            reason: "no interface with this MAC in the container",
        });
    };
    arp::announce(netns, l.index, mac, ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_keep_the_prefixes() {
        let id = "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
        let (h, p) = veth_names(id);
        assert_eq!(h, "vethwe3f1b2c4d5");
        assert_eq!(p, "vethwp3f1b2c4d5");
        assert!(h.len() <= 15 && p.len() <= 15);
        let (h, _) = veth_names("a/b;c");
        assert_eq!(h, "vethweabc");
    }
}
