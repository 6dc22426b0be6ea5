//! fastdp: the kernel VXLAN device on the bridge, and its per-peer FDB programming.

use std::net::Ipv4Addr;

use crate::bridge::{ensure_bridge, validate_mtu};
use crate::error::{Error, Result};
use crate::fdb::{self, FdbEntry, FLOOD_MAC};
use crate::link::{self, LinkChange, VxlanSpec};
use crate::nl::Handle;

/// UDP port of fastdp.
pub const VXLAN_PORT: u16 = 6784;
/// Name of the VXLAN device.
pub const VXLAN_NAME: &str = "vxlan-6784";
/// VXLAN network identifier weft uses unless told otherwise.
pub const DEFAULT_VNI: u32 = 0xfeed;

/// What `setup` builds in the current (host) netns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastdpSpec {
    /// Bridge name (`weft`).
    pub bridge: String,
    /// MTU of bridge and VXLAN device (the overlay MTU).
    pub mtu: u32,
    /// VXLAN device settings.
    pub vxlan: VxlanSpec,
}

impl FastdpSpec {
    /// The defaults: bridge `weft`, `vxlan-6784`, VNI 0xfeed, port 6784.
    pub fn new(bridge: &str, mtu: u32, local: Option<Ipv4Addr>) -> FastdpSpec {
        FastdpSpec {
            bridge: bridge.to_string(),
            mtu,
            vxlan: VxlanSpec {
                name: VXLAN_NAME.to_string(),
                vni: DEFAULT_VNI,
                port: VXLAN_PORT,
                local,
                mtu,
            },
        }
    }
}

/// Creates (or re-creates, to drop stale settings and FDB entries) the VXLAN device,
/// ensures the bridge, attaches the device to it and brings both up. On failure
/// everything this call created is removed again.
pub fn setup(spec: &FastdpSpec) -> Result<()> {
    validate_mtu(spec.mtu)?;
    link::validate_ifname(&spec.vxlan.name)?;
    let bridge_created = ensure_bridge(&spec.bridge, spec.mtu)?;
    let result = (|| {
        let mut h = Handle::current()?;
        let br = link::require(&mut h, &spec.bridge)?;
        if let Some(old) = link::get(&mut h, &spec.vxlan.name)? {
            let old = old.of_kind("vxlan", &h.what)?;
            link::delete(&mut h, old.index)?;
        }
        link::create_vxlan(&mut h, &spec.vxlan)?;
        let vx = link::require(&mut h, &spec.vxlan.name)?;
        let change = LinkChange {
            up: Some(true),
            master: Some(br.index),
            ..Default::default()
        };
        if let Err(e) = link::set(&mut h, vx.index, &change) {
            let _ = link::delete(&mut h, vx.index);
            return Err(e);
        }
        Ok(())
    })();
    if result.is_err() && bridge_created {
        if let Ok(mut h) = Handle::current() {
            let _ = link::delete_by_name(&mut h, &spec.bridge);
        }
    }
    result
}

/// Removes the VXLAN device (and with it every FDB entry); the bridge stays.
pub fn teardown(vxlan: &str) -> Result<bool> {
    let mut h = Handle::current()?;
    link::delete_by_name(&mut h, vxlan)
}

fn vxlan_index(h: &mut Handle, vxlan: &str) -> Result<u32> {
    Ok(link::require(h, vxlan)?.index)
}

/// Floods broadcast and unknown unicast to `remote` too (idempotent).
pub fn add_peer(vxlan: &str, remote: Ipv4Addr) -> Result<()> {
    let mut h = Handle::current()?;
    let idx = vxlan_index(&mut h, vxlan)?;
    fdb::add_flood(&mut h, idx, remote)
}

/// Stops sending anything to `remote`: removes its flood entry and every MAC entry
/// pointing at it. Returns how many entries went.
pub fn remove_peer(vxlan: &str, remote: Ipv4Addr) -> Result<usize> {
    let mut h = Handle::current()?;
    let idx = vxlan_index(&mut h, vxlan)?;
    let mut n = 0;
    for e in fdb::list(&mut h, idx)? {
        if e.dst == Some(remote) && fdb::delete(&mut h, idx, e.mac, Some(remote))? {
            n += 1;
        }
    }
    Ok(n)
}

/// Sends frames for `mac` straight to `remote` (a container MAC learned from gossip).
pub fn set_mac(vxlan: &str, mac: [u8; 6], remote: Ipv4Addr) -> Result<()> {
    if mac == FLOOD_MAC || mac[0] & 1 == 1 {
        return Err(Error::InvalidParameter {
            what: "MAC",
            value: format!("{mac:02x?}"),
            reason: "a unicast FDB entry needs a unicast, non-zero MAC",
        });
    }
    let mut h = Handle::current()?;
    let idx = vxlan_index(&mut h, vxlan)?;
    fdb::set_unicast(&mut h, idx, mac, remote)
}

/// Forgets where `mac` is (frames to it are flooded again); false if it was not known.
pub fn remove_mac(vxlan: &str, mac: [u8; 6]) -> Result<bool> {
    let mut h = Handle::current()?;
    let idx = vxlan_index(&mut h, vxlan)?;
    fdb::delete(&mut h, idx, mac, None)
}

/// The FDB entries of the VXLAN device.
pub fn entries(vxlan: &str) -> Result<Vec<FdbEntry>> {
    let mut h = Handle::current()?;
    let idx = vxlan_index(&mut h, vxlan)?;
    fdb::list(&mut h, idx)
}
