//! Expose: the host gets an address on the bridge (and so a route into the overlay);
//! hide takes it away. Masquerading is the firewall crate's job.

use ipnet::Ipv4Net;

use crate::error::Result;
use crate::link::{self, LinkChange};
use crate::netns::Netns;
use crate::nl::Handle;
use crate::{addr, arp};

/// Adds `addr` to `bridge` in the current netns (idempotent; true if newly added) and
/// announces it with a gratuitous ARP so containers learn the bridge's MAC for it.
pub fn expose(bridge: &str, addr: Ipv4Net) -> Result<bool> {
    let mut h = Handle::current()?;
    let br = link::require(&mut h, bridge)?;
    keep_secondaries(bridge)?;
    if !br.up {
        link::set(
            &mut h,
            br.index,
            &LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )?;
    }
    let added = addr::add(&mut h, br.index, addr)?;
    if let Some(mac) = br.mac6() {
        if let Err(e) = arp::announce(&Netns::current()?, br.index, mac, &[addr.addr()]) {
            if added {
                let _ = addr::del(&mut h, br.index, addr);
            }
            return Err(e);
        }
    }
    Ok(added)
}

/// Removes `addr` from `bridge`; true if it was there.
pub fn hide(bridge: &str, addr: Ipv4Net) -> Result<bool> {
    let mut h = Handle::current()?;
    let br = link::require(&mut h, bridge)?;
    // Also here: a bridge exposed by an older weft may not have it yet.
    keep_secondaries(bridge)?;
    addr::del(&mut h, br.index, addr)
}

/// Removing the bridge's first address of a subnet must not remove the others with it.
fn keep_secondaries(bridge: &str) -> Result<()> {
    crate::sysctl::enable_promote_secondaries(bridge).map_err(|e| crate::Error::Io {
        op: format!("turn on promote_secondaries of {bridge}"),
        source: std::io::Error::other(e.to_string()),
    })
}

/// The addresses the host has on `bridge`.
pub fn exposed(bridge: &str) -> Result<Vec<Ipv4Net>> {
    let mut h = Handle::current()?;
    let br = link::require(&mut h, bridge)?;
    Ok(addr::list(&mut h, Some(br.index))?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}
