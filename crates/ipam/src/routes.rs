//! Checking the allocation range against the host's routes before launch (pure logic: the
//! router reads the routes through netlink and passes them in).

use crate::addr::Cidr;

/// A route on the host, as the router read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    /// Destination.
    pub dst: Cidr,
    /// Device name.
    pub dev: String,
}

/// The range collides with a host route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--ipalloc-range {range} overlaps the host route {route} dev {dev}; containers would be unreachable from this host. Choose a range that does not overlap, e.g. --ipalloc-range {suggest}")]
pub struct RangeOverlapsRoute {
    /// The allocation range.
    pub range: Cidr,
    /// The route it overlaps.
    pub route: Cidr,
    /// The route's device.
    pub dev: String,
    /// A private range of the same size that overlaps no route ("none found" if none).
    pub suggest: String,
}

/// Check `range` against `routes` (default routes, 0.0.0.0/0, are ignored: everything
/// overlaps them). Returns the first overlap as an error.
pub fn check_range(range: &Cidr, routes: &[HostRoute]) -> Result<(), RangeOverlapsRoute> {
    let hit = routes
        .iter()
        .find(|r| r.dst.prefix > 0 && r.dst.subnet().overlaps(range));
    match hit {
        None => Ok(()),
        Some(r) => Err(RangeOverlapsRoute {
            range: *range,
            route: r.dst.subnet(),
            dev: r.dev.clone(),
            suggest: suggest_range(range.prefix, routes)
                .map(|c| c.to_string())
                .unwrap_or_else(|| "(none free in 10/8, 172.16/12, 192.168/16)".into()),
        }),
    }
}

/// A private range of prefix `prefix` that overlaps no route, searched in 10.32/12 onwards,
/// then the rest of 10/8, 172.16/12 and 192.168/16.
pub fn suggest_range(prefix: u8, routes: &[HostRoute]) -> Option<Cidr> {
    let pools: [(&str, u8); 3] = [("10.0.0.0", 8), ("172.16.0.0", 12), ("192.168.0.0", 16)];
    for (base, bp) in pools {
        if prefix < bp {
            continue;
        }
        let pool = Cidr::new(u32::from(base.parse::<std::net::Ipv4Addr>().ok()?), bp)?;
        let step = 1u64 << (32 - u32::from(prefix));
        let mut a = u64::from(pool.network());
        // Prefer Weave's default neighbourhood first.
        if bp == 8 && prefix >= 12 {
            a = u64::from(u32::from(std::net::Ipv4Addr::new(10, 32, 0, 0)));
        }
        let start = a;
        loop {
            let c = Cidr::new(a as u32, prefix)?;
            if !routes
                .iter()
                .any(|r| r.dst.prefix > 0 && r.dst.subnet().overlaps(&c))
            {
                return Some(c);
            }
            a += step;
            if a >= pool.end() {
                a = u64::from(pool.network());
            }
            if a == start {
                break;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str, dev: &str) -> HostRoute {
        HostRoute {
            dst: s.parse().unwrap(),
            dev: dev.into(),
        }
    }

    #[test]
    fn overlap_is_refused_with_route_and_suggestion() {
        let range: Cidr = "10.32.0.0/12".parse().unwrap();
        let routes = vec![r("0.0.0.0/0", "eth0"), r("10.40.1.0/24", "eth1")];
        let e = check_range(&range, &routes).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("10.40.1.0/24 dev eth1"), "{msg}");
        assert!(msg.contains("--ipalloc-range 10.48.0.0/12"), "{msg}");
        assert!(check_range(
            &range,
            &[r("0.0.0.0/0", "eth0"), r("192.168.1.0/24", "eth0")]
        )
        .is_ok());
        let wide = vec![r("10.0.0.0/8", "x")];
        assert_eq!(
            suggest_range(12, &wide),
            Some("172.16.0.0/12".parse().unwrap())
        );
    }
}
