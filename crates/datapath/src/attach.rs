//! Attach a container (a network namespace) to the bridge: a veth whose host side joins
//! the bridge and whose container side gets the overlay addresses; and detach it again.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::arp;
use crate::bridge::validate_mtu;
use crate::error::{Error, Result};
use crate::link::{self, LinkChange};
use crate::netns::Netns;
use crate::nl::Handle;
use crate::{addr, route};

/// Prefix of every host-side veth weft makes (`reset` removes links named so).
pub const VETH_PREFIX: &str = "vethwe";
/// How long attach waits for the new veth to pass frames before announcing.
const OPER_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Default interface name inside the container.
pub const DEFAULT_IFNAME: &str = "ethwe";

/// What to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSpec {
    /// Interface name inside the container (e.g. `ethwe`).
    pub ifname: String,
    /// Addresses to give it, each inside `range`.
    pub addrs: Vec<Ipv4Net>,
    /// The overlay range; the container gets a route to it via `ifname`.
    pub range: Ipv4Net,
    /// MTU of the veth pair (the overlay MTU).
    pub mtu: u32,
    /// Bridge in the current (host) netns.
    pub bridge: String,
    /// Default route via this gateway, only when asked.
    pub default_gateway: Option<Ipv4Addr>,
}

/// What `attach` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachInfo {
    /// MAC of the container-side interface (for FDB gossip).
    pub mac: [u8; 6],
    /// Name of the host-side veth on the bridge.
    pub host_veth: String,
    /// Addresses newly added by this call (the others were already there).
    pub added: Vec<Ipv4Net>,
    /// True if this call created the veth pair.
    pub created: bool,
}

/// What `detach` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachInfo {
    /// Addresses removed.
    pub removed: Vec<Ipv4Net>,
    /// True if the interface was deleted because no address was left on it.
    pub link_removed: bool,
}

/// The host-side veth name for `ifname` in `netns`: `vethwe` + 9 hex digits of a hash of
/// the namespace identity and the name, so it is stable, unique and at most 15 bytes.
pub fn host_veth_name(netns: &Netns, ifname: &str) -> String {
    host_veth_name_for(netns.inode(), ifname)
}

/// [`host_veth_name`] for the namespace with inode `ns_inode` (which may be gone).
pub fn host_veth_name_for(ns_inode: u64, ifname: &str) -> String {
    // FNV-1a 64: tiny, stable across Rust versions (unlike DefaultHasher).
    let mut h: u64 = 0xcbf29ce484222325;
    let bytes = ns_inode.to_le_bytes().into_iter().chain(ifname.bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{VETH_PREFIX}{:09x}", h & 0xf_ffff_ffff)
}

/// Checks everything about a spec that can be checked without the kernel.
pub fn validate(spec: &AttachSpec) -> Result<()> {
    link::validate_ifname(&spec.ifname)?;
    link::validate_ifname(&spec.bridge)?;
    validate_mtu(spec.mtu)?;
    if spec.addrs.is_empty() {
        return Err(Error::InvalidParameter {
            what: "addresses",
            value: "[]".into(),
            reason: "attach needs at least one address",
        });
    }
    for a in &spec.addrs {
        if !spec.range.contains(a) {
            return Err(Error::AddressOutsideRange {
                addr: *a,
                range: spec.range,
            });
        }
    }
    Ok(())
}

/// Attaches `netns` to the bridge of the current netns (see `AttachSpec`), then announces
/// every address with a gratuitous ARP from inside the container. Re-attaching adds the
/// missing addresses to the existing interface. A failure part way undoes this call's changes.
pub fn attach(netns: &Netns, spec: &AttachSpec) -> Result<AttachInfo> {
    validate(spec)?;
    let mut host = Handle::current()?;
    let br = link::require_bridge(&mut host, &spec.bridge)?;
    let mut ctr = Handle::in_netns(netns)?;
    let host_veth = host_veth_name(netns, &spec.ifname);
    let created = match link::get(&mut ctr, &spec.ifname)? {
        Some(l) => {
            l.of_kind("veth", netns.describe())?;
            false
        }
        None => {
            link::create_veth(&mut host, &host_veth, &spec.ifname, Some(netns), spec.mtu)?;
            true
        }
    };
    let mut added = Vec::new();
    match attach_steps(
        netns, spec, &mut host, &mut ctr, br.index, &host_veth, &mut added,
    ) {
        Ok(mac) => Ok(AttachInfo {
            mac,
            host_veth,
            added,
            created,
        }),
        Err(e) => {
            if created {
                let _ = link::delete_by_name(&mut host, &host_veth);
            } else if let Ok(Some(l)) = link::get(&mut ctr, &spec.ifname) {
                for a in &added {
                    let _ = addr::del(&mut ctr, l.index, *a);
                }
            }
            Err(e)
        }
    }
}

fn attach_steps(
    netns: &Netns,
    spec: &AttachSpec,
    host: &mut Handle,
    ctr: &mut Handle,
    bridge_index: u32,
    host_veth: &str,
    added: &mut Vec<Ipv4Net>,
) -> Result<[u8; 6]> {
    // The host side exists only when this netns is attached through weft's veth; an
    // interface of the right kind made by someone else is used as it is.
    if let Some(hv) = link::get(host, host_veth)? {
        let change = LinkChange {
            up: Some(true),
            master: (hv.master != Some(bridge_index)).then_some(bridge_index),
            ..Default::default()
        };
        link::set(host, hv.index, &change)?;
    }
    let c = link::require(ctr, &spec.ifname)?;
    link::set(
        ctr,
        c.index,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )?;
    for a in &spec.addrs {
        if addr::add(ctr, c.index, *a)? {
            added.push(*a);
        }
    }
    // The kernel already routes an address's own prefix; add the whole range otherwise.
    if !spec.addrs.iter().any(|a| a.trunc() == spec.range.trunc()) {
        route::add_device_route(ctr, spec.range, c.index)?;
    }
    if let Some(gw) = spec.default_gateway {
        route::add_default_route(ctr, gw, c.index)?;
    }
    let mac = c.mac6().ok_or_else(|| Error::Decode {
        op: format!("read MAC of {} in {}", spec.ifname, netns.describe()),
        reason: format!("{} bytes, not 6", c.mac.len()),
    })?;
    // Announce only once both ends pass frames (see `link::wait_oper_up`); if that does
    // not happen in time, announce anyway: the addresses are set and the veth works.
    let ready = link::wait_oper_up(ctr, &spec.ifname, OPER_UP_WAIT)?
        && link::wait_oper_up(host, host_veth, OPER_UP_WAIT)?;
    if !ready {
        tracing::warn!(ifname = %spec.ifname, netns = %netns.describe(), "link not operationally up yet; sending gratuitous ARP anyway");
    }
    let ips: Vec<Ipv4Addr> = spec.addrs.iter().map(|a| a.addr()).collect();
    arp::announce(netns, c.index, mac, &ips)?;
    Ok(mac)
}

/// Removes `addrs` from `ifname` in `netns` (all of its addresses when `addrs` is empty);
/// deletes the interface and its host-side veth when no address is left.
pub fn detach(netns: &Netns, ifname: &str, addrs: &[Ipv4Net]) -> Result<DetachInfo> {
    link::validate_ifname(ifname)?;
    let mut ctr = Handle::in_netns(netns)?;
    let c = link::require(&mut ctr, ifname)?;
    let mut removed = Vec::new();
    let targets: Vec<Ipv4Net> = if addrs.is_empty() {
        addr::list(&mut ctr, Some(c.index))?
            .into_iter()
            .map(|(_, a)| a)
            .collect()
    } else {
        addrs.to_vec()
    };
    for a in targets {
        if addr::del(&mut ctr, c.index, a)? {
            removed.push(a);
        }
    }
    let left = addr::list(&mut ctr, Some(c.index))?;
    let link_removed = left.is_empty();
    if link_removed {
        link::delete(&mut ctr, c.index)?;
    }
    Ok(DetachInfo {
        removed,
        link_removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AttachSpec {
        AttachSpec {
            ifname: "ethwe".into(),
            addrs: vec!["10.32.0.5/12".parse().unwrap()],
            range: "10.32.0.0/12".parse().unwrap(),
            mtu: 1410,
            bridge: "weft".into(),
            default_gateway: None,
        }
    }

    #[test]
    fn validate_accepts_good_spec() {
        validate(&spec()).unwrap();
    }

    #[test]
    fn validate_refuses_address_outside_range() {
        let mut s = spec();
        s.addrs = vec!["10.48.0.1/12".parse().unwrap()];
        assert!(matches!(
            validate(&s),
            Err(Error::AddressOutsideRange { .. })
        ));
        // Inside the range but with a wider prefix than the range is outside too.
        s.addrs = vec!["10.32.0.1/8".parse().unwrap()];
        assert!(matches!(
            validate(&s),
            Err(Error::AddressOutsideRange { .. })
        ));
    }

    #[test]
    fn validate_refuses_bad_names_and_mtu() {
        let mut s = spec();
        s.ifname = "averyveryverylongname".into();
        assert!(matches!(validate(&s), Err(Error::InvalidIfname { .. })));
        let mut s = spec();
        s.mtu = 10;
        assert!(matches!(validate(&s), Err(Error::InvalidParameter { .. })));
        let mut s = spec();
        s.addrs.clear();
        assert!(matches!(validate(&s), Err(Error::InvalidParameter { .. })));
    }

    #[test]
    fn host_veth_name_is_short_stable_and_distinct() {
        let ns = Netns::current().unwrap();
        let a = host_veth_name(&ns, "ethwe");
        assert_eq!(a, host_veth_name(&ns, "ethwe"));
        assert_ne!(a, host_veth_name(&ns, "ethwe1"));
        assert!(a.len() <= 15 && a.starts_with(VETH_PREFIX), "{a}");
        link::validate_ifname(&a).unwrap();
    }
}
