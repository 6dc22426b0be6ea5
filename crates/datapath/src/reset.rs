//! Reset: remove every link weft made in the current netns.

use crate::attach::VETH_PREFIX;
use crate::error::Result;
use crate::link;
use crate::nl::Handle;

/// Name of the sleeve's TAP device.
pub const SLEEVE_TAP: &str = "weft-sleeve";
/// Prefix of weft's VXLAN device names.
pub const VXLAN_PREFIX: &str = "vxlan-";

/// True if weft made a link with this name and kind.
pub fn is_weft_link(bridge: &str, name: &str, kind: Option<&str>) -> bool {
    match kind {
        Some("bridge") => name == bridge,
        Some("vxlan") => name.starts_with(VXLAN_PREFIX),
        Some("veth") => name.starts_with(VETH_PREFIX),
        Some("tun") => name == SLEEVE_TAP,
        _ => false,
    }
}

/// Deletes the bridge, the VXLAN devices (their FDB entries go with them), weft's host-side
/// veths (their container ends go with them) and the sleeve tap. Keeps going past a failure
/// and returns the first one; otherwise the names it deleted.
pub fn reset(bridge: &str) -> Result<Vec<String>> {
    link::validate_ifname(bridge)?;
    let mut h = Handle::current()?;
    let mut links: Vec<link::Link> = link::list(&mut h)?
        .into_iter()
        .filter(|l| is_weft_link(bridge, &l.name, l.kind.as_deref()))
        .collect();
    // Ports first, the bridge last.
    links.sort_by_key(|l| l.kind.as_deref() == Some("bridge"));
    let mut deleted = Vec::new();
    let mut first_err = None;
    for l in links {
        match link::delete(&mut h, l.index) {
            Ok(()) => deleted.push(l.name),
            Err(e) if e.errno() == Some(libc::ENODEV) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(deleted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_weft_links() {
        assert!(is_weft_link("weft", "weft", Some("bridge")));
        assert!(!is_weft_link("weft", "docker0", Some("bridge")));
        assert!(is_weft_link("weft", "vxlan-6784", Some("vxlan")));
        assert!(!is_weft_link("weft", "vxlan0", Some("vxlan")));
        assert!(is_weft_link("weft", "vethwe0123abcd", Some("veth")));
        assert!(!is_weft_link("weft", "veth12345", Some("veth")));
        assert!(!is_weft_link("weft", "vethwe0123abcd", Some("bridge")));
        assert!(is_weft_link("weft", "weft-sleeve", Some("tun")));
        assert!(!is_weft_link("weft", "eth0", None));
    }
}
