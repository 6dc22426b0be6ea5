//! The `weft` bridge every container veth, the VXLAN device and the sleeve tap join.

use crate::error::{Error, Result};
use crate::link::{self, LinkChange};
use crate::nl::Handle;

/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "weft";

/// Smallest MTU an IPv4 link may have.
pub const MIN_MTU: u32 = 68;
/// Largest MTU weft accepts.
pub const MAX_MTU: u32 = 65535;

/// Refuses an MTU the kernel would refuse or IPv4 cannot use.
pub fn validate_mtu(mtu: u32) -> Result<()> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(Error::InvalidParameter {
            what: "MTU",
            value: mtu.to_string(),
            reason: "must be between 68 and 65535",
        });
    }
    Ok(())
}

/// A random locally administered unicast MAC (the bridge keeps it while ports come and go,
/// so neighbours of an exposed host do not go stale).
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: mac is valid writable memory of 6 bytes.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr() as *mut libc::c_void, 6, 0) };
    if n != 6 {
        // getrandom cannot fail for 6 bytes after boot; fall back to pid+time bits anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        mac.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// Makes sure the bridge exists (STP off, fixed MAC), has `mtu` and is up, in the
/// current netns. Returns true if it created it. A bridge created here is removed
/// again if a later step fails.
pub fn ensure_bridge(name: &str, mtu: u32) -> Result<bool> {
    link::validate_ifname(name)?;
    validate_mtu(mtu)?;
    let mut h = Handle::current()?;
    let (l, created) = match link::get(&mut h, name)? {
        Some(l) => (l.of_kind("bridge", &h.what)?, false),
        None => {
            link::create_bridge(&mut h, name, mtu, Some(random_mac()))?;
            (link::require(&mut h, name)?, true)
        }
    };
    let change = LinkChange {
        up: Some(true),
        mtu: (l.mtu != mtu).then_some(mtu),
        ..Default::default()
    };
    if let Err(e) = link::set(&mut h, l.index, &change) {
        if created {
            let _ = link::delete(&mut h, l.index);
        }
        return Err(e);
    }
    Ok(created)
}
