//! Kernel settings under /proc/sys/net (per network namespace: a write acts on the
//! namespace of the calling thread, the host's when the router calls it).

use std::io;
use std::path::PathBuf;

/// The IPv4 forwarding switch of the calling thread's namespace.
pub const IPV4_FORWARD: &str = "net/ipv4/ip_forward";

/// Why a kernel setting could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The name would leave /proc/sys/net.
    #[error("sysctl name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Reading failed.
    #[error("cannot read {path}: {source}; is /proc mounted?")]
    Read {
        /// The file tried.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing failed.
    #[error("cannot write {value:?} to {path}: {source}; weft needs root (CAP_NET_ADMIN)")]
    Write {
        /// The file tried.
        path: PathBuf,
        /// The value.
        value: String,
        /// The OS error.
        source: io::Error,
    },
}

fn path_of(name: &str) -> Result<PathBuf, SysctlError> {
    let bad = |reason| SysctlError::InvalidName {
        name: name.to_string(),
        reason,
    };
    let rest = name
        .strip_prefix("net/")
        .ok_or_else(|| bad("only settings under net/ are per namespace"))?;
    if rest
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(bad("empty, . or .. path component"));
    }
    Ok(PathBuf::from("/proc/sys").join(name))
}

/// Reads a setting (`net/ipv4/ip_forward`), trimmed.
pub fn read(name: &str) -> Result<String, SysctlError> {
    let path = path_of(name)?;
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| SysctlError::Read { path, source })
}

/// Writes a setting.
pub fn write(name: &str, value: &str) -> Result<(), SysctlError> {
    let path = path_of(name)?;
    std::fs::write(&path, value).map_err(|source| SysctlError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// Turns IPv4 forwarding on; returns whether it was off (so the caller can undo it).
pub fn enable_ipv4_forwarding() -> Result<bool, SysctlError> {
    if read(IPV4_FORWARD)? == "1" {
        return Ok(false);
    }
    write(IPV4_FORWARD, "1")?;
    Ok(true)
}

/// Turns IPv4 forwarding off (undoing [`enable_ipv4_forwarding`]).
pub fn disable_ipv4_forwarding() -> Result<(), SysctlError> {
    write(IPV4_FORWARD, "0")
}

/// The `route_localnet` switch of interface `ifname`: lets packets with a 127.0.0.0/8
/// source or destination be routed through it (needed for published ports reached on
/// the host's 127.0.0.1, DNATed out of the bridge).
pub fn route_localnet_name(ifname: &str) -> Result<String, SysctlError> {
    if ifname.contains('/') {
        return Err(SysctlError::InvalidName {
            name: ifname.to_string(),
            reason: "an interface name has no '/'",
        });
    }
    Ok(format!("net/ipv4/conf/{ifname}/route_localnet"))
}

/// Turns `route_localnet` on for `ifname`; returns whether it was off (so the caller can
/// undo it with [`disable_route_localnet`]).
pub fn enable_route_localnet(ifname: &str) -> Result<bool, SysctlError> {
    let name = route_localnet_name(ifname)?;
    if read(&name)? == "1" {
        return Ok(false);
    }
    write(&name, "1")?;
    Ok(true)
}

/// Turns `route_localnet` off for `ifname` (undoing [`enable_route_localnet`]).
pub fn disable_route_localnet(ifname: &str) -> Result<(), SysctlError> {
    write(&route_localnet_name(ifname)?, "0")
}

/// Turns `promote_secondaries` on for `ifname`: when its first address in a subnet goes,
/// the kernel otherwise removes every other address of that subnet with it (hiding one
/// exposed address would take the others away).
pub fn enable_promote_secondaries(ifname: &str) -> Result<(), SysctlError> {
    if ifname.contains('/') {
        return Err(SysctlError::InvalidName {
            name: ifname.to_string(),
            reason: "an interface name has no '/'",
        });
    }
    write(&format!("net/ipv4/conf/{ifname}/promote_secondaries"), "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_under_proc_sys_net() {
        assert_eq!(
            path_of("net/ipv4/ip_forward").ok(),
            Some(PathBuf::from("/proc/sys/net/ipv4/ip_forward"))
        );
        for bad in ["kernel/hostname", "net/../kernel/x", "net//x", "net/ipv4/."] {
            assert!(path_of(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn route_localnet_names() {
        assert_eq!(
            route_localnet_name("weft").ok().as_deref(),
            Some("net/ipv4/conf/weft/route_localnet")
        );
        assert!(route_localnet_name("a/b").is_err());
        assert!(route_localnet_name("..").and_then(|n| path_of(&n)).is_err());
    }

    #[test]
    fn reading_forwarding_gives_zero_or_one() {
        let v = read(IPV4_FORWARD).unwrap_or_else(|e| panic!("{e}"));
        assert!(v == "0" || v == "1", "ip_forward = {v:?}");
    }
}
