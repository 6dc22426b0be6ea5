//! Turns a [`Ruleset`] into one nft script. Each script first creates then deletes weft's
//! `inet` table and defines it anew, and empties and refills the `bridge` table's `forward`
//! chain (that table also holds the anti-spoofing sets, which only [`crate::guard`]
//! changes), all in one transaction: the kernel applies it whole or not
//! at all, and a re-apply never leaves stale rules behind (published ports included: a
//! mapping left out of the ruleset is gone once it is applied, and [`render_reset`]
//! removes them all with the tables).
//!
//! Published ports (IPv4) live in the `inet weft` table:
//! - `prerouting` and `output` (nat, priority -100, dstnat) send traffic for a published port on
//!   one of the host's own addresses (`fib daddr type local`) to the container;
//! - `postrouting` masquerades such connections when they come from the host's loopback
//!   (a container cannot answer 127.0.0.1) or from a container (its answer would bypass
//!   the host and so the un-DNAT) as they leave through the bridge;
//! - `mark_dnat` marks their packets with [`DNAT_MARK`] for the `bridge weft` table;
//! - `forward` accepts DNATed connections and replies before the isolation drops, so a
//!   published port of an isolated subnet stays reachable from outside.
//!
//! With `bridge-nf-call-iptables=1`, frames bridged between containers pass the `inet`
//! hooks too (with the bridge as both input and output device): the isolation rules of
//! `forward` then hold for them as they do for traffic the host routes between subnets.

use std::fmt::Write;

use crate::rules::{Published, Ruleset};

/// Name of weft's tables (one in the `inet` family, one in `bridge`).
pub const TABLE: &str = "weft";

/// The packet mark bit weft sets on packets of DNATed connections (published ports),
/// in both directions, right after the DNAT.
///
/// With br_netfilter, a packet DNATed to an address on the same bridge (a container
/// reaching a published port through the host's address, and the container's answer) is
/// bridged rather than routed, so it meets the `bridge weft` isolation rules, still with
/// its original container source (masquerading comes later). The bridge family cannot
/// read conntrack here (no `nf_conntrack_bridge`), so the `inet` table tells it with this
/// mark. Without br_netfilter nothing sets the mark and such packets are routed anyway.
/// The service table ([`crate::services`]) sets the same mark on connections it DNATs.
pub const DNAT_MARK: u32 = 0x0010_0000;

/// The script that removes weft's tables (a no-op when they do not exist).
pub fn render_reset() -> String {
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable bridge {TABLE}\ndelete table bridge {TABLE}\n"
    )
}

/// One DNAT rule: a published port on the host's own address(es) to the container.
fn dnat_rule(p: &Published) -> String {
    let daddr = match p.host_addr() {
        Some(ip) => format!("ip daddr {ip} "),
        None => "meta nfproto ipv4 ".to_string(),
    };
    format!(
        "{daddr}fib daddr type local {proto} dport {hp} dnat ip to {a}:{cp} comment \"weft: publish {p}\"",
        proto = p.proto,
        hp = p.host_port,
        a = p.addr,
        cp = p.port,
    )
}

/// The script that removes weft's rules but keeps the anti-spoofing guard (see
/// [`crate::guard`]): no NAT hook, no isolation, while containers stay held to their
/// addresses.
pub fn render_clear() -> String {
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    bridge_forward_header(&mut s);
    s
}

/// Declares the bridge table (its guard included) and empties its `forward` chain: the
/// bridge table is never deleted by an update, as the guard's sets live in it.
fn bridge_forward_header(s: &mut String) {
    crate::guard::render_base(s);
    let _ = writeln!(
        s,
        "add chain bridge {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain bridge {TABLE} forward");
}

/// The script that makes weft's tables hold exactly `rules` (and keeps the guard's sets).
pub fn render(rules: &Ruleset) -> String {
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    let _ = writeln!(s, "table inet {TABLE} {{");
    if !rules.published.is_empty() {
        // nft names priority -100 `dstnat` only on the prerouting hook.
        for (chain, prio) in [("prerouting", "dstnat"), ("output", "-100")] {
            let _ = writeln!(s, "  chain {chain} {{");
            let _ = writeln!(
                s,
                "    type nat hook {chain} priority {prio}; policy accept;"
            );
            for p in &rules.published {
                let _ = writeln!(s, "    {}", dnat_rule(p));
            }
            let _ = writeln!(s, "  }}");
        }
        let _ = writeln!(s, "  chain mark_dnat {{");
        let _ = writeln!(
            s,
            "    type filter hook prerouting priority -99; policy accept;"
        );
        let _ = writeln!(
            s,
            "    ct status dnat meta mark set meta mark | {DNAT_MARK:#x} comment \"weft: published ports, for the bridge table\""
        );
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "  chain postrouting {{");
    let _ = writeln!(
        s,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    if !rules.published.is_empty() {
        let oif = match &rules.bridge {
            Some(b) => format!("oifname \"{b}\""),
            None => "oifname != \"lo\"".to_string(),
        };
        // A container cannot answer 127.0.0.1: it gets the host's bridge address instead.
        let _ = writeln!(
            s,
            "    ip saddr 127.0.0.0/8 ct status dnat {oif} masquerade comment \"weft: published ports from loopback\""
        );
        if let Some(r) = rules.range {
            // Hairpin: a container reaching a published port through the host would get
            // the answer straight from the other container, not un-DNATed by the host.
            let _ = writeln!(
                s,
                "    ip saddr {r} ip daddr {r} ct status dnat masquerade comment \"weft: published ports from containers\""
            );
        }
    }
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
    let isolating = rules.range.is_some() && !rules.isolated_subnets.is_empty();
    if isolating || !rules.published.is_empty() {
        let _ = writeln!(s, "  chain forward {{");
        let _ = writeln!(
            s,
            "    type filter hook forward priority filter; policy accept;"
        );
        let _ = writeln!(s, "    ct state established,related accept");
        // A published port is public: its connections pass whichever subnet they reach.
        let _ = writeln!(
            s,
            "    ct status dnat accept comment \"weft: published ports\""
        );
        isolation(&mut s, rules);
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "}}");

    bridge_forward_header(&mut s);
    let _ = writeln!(s, "table bridge {TABLE} {{");
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(
        s,
        "    type filter hook forward priority filter; policy accept;"
    );
    // See DNAT_MARK: a container reaching a published port through the host, and the
    // answer, are bridged (not routed) under br_netfilter, before masquerading. Always
    // there, as the service table (`ip weft_svc`) sets the mark for its own published
    // ports; only the host's nat chains set it (a mark does not cross namespaces).
    let _ = writeln!(
        s,
        "    meta mark & {DNAT_MARK:#x} == {DNAT_MARK:#x} accept comment \"weft: published ports\""
    );
    isolation(&mut s, rules);
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

/// Accepts for exposed host addresses, then drops between subnets of the range.
fn isolation(s: &mut String, rules: &Ruleset) {
    let Some(range) = rules.range else { return };
    for e in &rules.exposed {
        let _ = writeln!(s, "    ip saddr {} accept", e.addr());
        let _ = writeln!(s, "    ip daddr {} accept", e.addr());
    }
    for subnet in &rules.isolated_subnets {
        // Packets between two subnets of the range are dropped, whatever addresses a
        // container gives itself: subnets are tenants.
        let _ = writeln!(
            s,
            "    ip saddr {subnet} ip daddr {range} ip daddr != {subnet} drop comment \"weft: isolate {subnet}\""
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Masquerade, Published};

    #[test]
    fn empty_ruleset_still_replaces_tables() {
        let s = render(&Ruleset::default());
        assert!(s.starts_with("table inet weft\ndelete table inet weft\n"));
        assert!(s.contains("type nat hook postrouting"));
        assert!(!s.contains("masquerade"));
        assert!(!s.contains("weft: isolate"));
        // The bridge table keeps the anti-spoofing sets: emptied chains, never deleted.
        assert!(!s.contains("delete table bridge"), "{s}");
        assert!(s.contains("flush chain bridge weft forward"), "{s}");
        assert!(s.contains("set port_addrs"), "{s}");
        assert!(!s.contains("flush set"), "{s}");
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

    fn published_ruleset() -> Ruleset {
        let range = "10.32.0.0/12".parse().unwrap();
        let mut rules = Ruleset {
            range: Some(range),
            bridge: Some("weft".into()),
            ..Default::default()
        };
        rules
            .isolated_subnets
            .insert("10.32.1.0/24".parse().unwrap());
        rules.published.insert(Published {
            proto: crate::Proto::Tcp,
            host_ip: None,
            host_port: 8080,
            addr: "10.32.1.2".parse().unwrap(),
            port: 80,
        });
        rules.published.insert(Published {
            proto: crate::Proto::Udp,
            host_ip: Some("192.168.1.1".parse().unwrap()),
            host_port: 5353,
            addr: "10.32.1.2".parse().unwrap(),
            port: 53,
        });
        rules
    }

    #[test]
    fn published_ports_are_dnated_from_outside_and_from_the_host() {
        let s = render(&published_ruleset());
        let any = "meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.32.1.2:80 comment \"weft: publish *:8080->10.32.1.2:80/tcp\"";
        let one = "ip daddr 192.168.1.1 fib daddr type local udp dport 5353 dnat ip to 10.32.1.2:53 comment \"weft: publish 192.168.1.1:5353->10.32.1.2:53/udp\"";
        for chain in ["prerouting", "output"] {
            let start = s.find(&format!("chain {chain} {{")).unwrap();
            let body = &s[start..start + s[start..].find("  }").unwrap()];
            assert!(body.contains("type nat hook"), "{body}");
            assert!(
                body.contains("priority dstnat") || body.contains("priority -100"),
                "{body}"
            );
            assert!(body.contains(any), "{body}");
            assert!(body.contains(one), "{body}");
        }
        assert!(s.contains("ip saddr 127.0.0.0/8 ct status dnat oifname \"weft\" masquerade"));
        assert!(s.contains("ip saddr 10.32.0.0/12 ip daddr 10.32.0.0/12 ct status dnat masquerade"));
    }

    #[test]
    fn forward_accepts_published_before_isolation() {
        let s = render(&published_ruleset());
        let inet = &s[s.find("table inet weft {").unwrap()..s.find("table bridge weft {").unwrap()];
        let fwd = &inet[inet.find("chain forward").unwrap()..];
        let est = fwd.find("ct state established,related accept").unwrap();
        let dnat = fwd.find("ct status dnat accept").unwrap();
        let drop = fwd.find("drop").unwrap();
        assert!(est < drop && dnat < drop, "{fwd}");
    }

    #[test]
    fn no_published_ports_no_dnat_chains() {
        let mut rules = published_ruleset();
        rules.published.clear();
        let s = render(&rules);
        assert!(!s.contains("dnat ip to"), "{s}");
        assert!(!s.contains("chain prerouting"), "{s}");
        // Isolation alone still gets its routed counterpart in inet.
        assert_eq!(s.matches("drop comment \"weft: isolate").count(), 2, "{s}");
    }

    #[test]
    fn rendering_is_deterministic() {
        let a = published_ruleset();
        let mut b = Ruleset {
            range: a.range,
            bridge: a.bridge.clone(),
            isolated_subnets: a.isolated_subnets.clone(),
            ..Default::default()
        };
        for p in a.published.iter().rev() {
            b.published.insert(*p);
        }
        assert_eq!(render(&a), render(&b));
    }

    #[test]
    fn bridge_accepts_dnat_marked_packets_even_without_published_ports() {
        // The service table (ip weft_svc) sets the mark for its own published ports.
        let s = render(&Ruleset::default());
        let bridge = &s[s.find("table bridge weft {\n  chain forward").unwrap()..];
        assert!(
            bridge.contains("meta mark & 0x100000 == 0x100000 accept"),
            "{bridge}"
        );
    }

    #[test]
    fn loopback_masquerade_without_a_bridge_spares_lo() {
        let mut rules = published_ruleset();
        rules.bridge = None;
        assert!(render(&rules)
            .contains("ip saddr 127.0.0.0/8 ct status dnat oifname != \"lo\" masquerade"));
    }
}
