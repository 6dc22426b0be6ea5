//! Turns a [`Ruleset`] into one nft script. Each script first creates then deletes weft's
//! tables and defines them anew, all in one transaction: the kernel applies it whole or not
//! at all, and a re-apply never leaves stale rules behind.

use std::fmt::Write;

use crate::rules::Ruleset;

/// Name of weft's tables (one in the `inet` family, one in `bridge`).
pub const TABLE: &str = "weft";

/// The script that removes weft's tables (a no-op when they do not exist).
pub fn render_reset() -> String {
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable bridge {TABLE}\ndelete table bridge {TABLE}\n"
    )
}

/// The script that makes weft's tables hold exactly `rules`.
pub fn render(rules: &Ruleset) -> String {
    let mut s = render_reset();
    let _ = writeln!(s, "table inet {TABLE} {{");
    let _ = writeln!(s, "  chain postrouting {{");
    let _ = writeln!(
        s,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    if let Some(m) = &rules.masquerade {
        let (r, b) = (m.range, &m.bridge);
        // Containers reaching the outside world leave with the host's address.
        let _ = writeln!(
            s,
            "    ip saddr {r} ip daddr != {r} oifname != \"{b}\" masquerade comment \"weft: containers to outside\""
        );
        // Outside (or the host's non-overlay addresses) reaching containers arrive with the
        // host's overlay address, so containers can answer along the overlay.
        let _ = writeln!(
            s,
            "    ip saddr != {r} ip daddr {r} oifname \"{b}\" masquerade comment \"weft: outside to containers\""
        );
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");

    let _ = writeln!(s, "table bridge {TABLE} {{");
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(
        s,
        "    type filter hook forward priority filter; policy accept;"
    );
    if let Some(range) = rules.range {
        for e in &rules.exposed {
            let _ = writeln!(s, "    ip saddr {} accept", e.addr());
            let _ = writeln!(s, "    ip daddr {} accept", e.addr());
        }
        for subnet in &rules.isolated_subnets {
            // Frames between two subnets of the range are dropped, whatever addresses a
            // container gives itself: subnets are tenants.
            let _ = writeln!(
                s,
                "    ip saddr {subnet} ip daddr {range} ip daddr != {subnet} drop comment \"weft: isolate {subnet}\""
            );
        }
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Masquerade;

    #[test]
    fn empty_ruleset_still_replaces_tables() {
        let s = render(&Ruleset::default());
        assert!(s.starts_with("table inet weft\ndelete table inet weft\n"));
        assert!(s.contains("type nat hook postrouting"));
        assert!(!s.contains("masquerade"));
        assert!(!s.contains("drop"));
    }

    #[test]
    fn masquerade_and_isolation_rules() {
        let range = "10.32.0.0/12".parse().unwrap();
        let mut rules = Ruleset {
            masquerade: Some(Masquerade {
                range,
                bridge: "weft".into(),
            }),
            range: Some(range),
            ..Default::default()
        };
        rules
            .isolated_subnets
            .insert("10.32.1.0/24".parse().unwrap());
        rules.exposed.insert("10.32.0.1/24".parse().unwrap());
        let s = render(&rules);
        assert!(s.contains(
            "ip saddr 10.32.0.0/12 ip daddr != 10.32.0.0/12 oifname != \"weft\" masquerade"
        ));
        assert!(
            s.contains("ip saddr 10.32.1.0/24 ip daddr 10.32.0.0/12 ip daddr != 10.32.1.0/24 drop")
        );
        assert!(s.contains("ip saddr 10.32.0.1 accept"));
        // Exposed host addresses are accepted before isolation drops.
        assert!(s.find("10.32.0.1 accept").unwrap() < s.find("drop").unwrap());
    }
}
