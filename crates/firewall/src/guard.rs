//! Anti-spoofing on the bridge: a container's port may send only from the IPv4 addresses and
//! the MAC weft gave it (ARP included); anything else from it (IPv6, VLAN tags, forged
//! sources) is dropped, so a tenant that adds another subnet's address by hand reaches
//! nothing.
//!
//! The rules live in the `bridge weft` table and never change; what changes is the content
//! of four sets keyed by the port (the host-side veth), updated element by element on
//! attach and detach, so one container's change never re-renders the others':
//! - `guarded_ports`: ports under guard; frames from other ports (the VXLAN device, the
//!   sleeve's TAP, ports weft did not make) pass untouched;
//! - `port_addrs` (`port . IPv4`): the addresses a port may send from;
//! - `port_macs` (`port . MAC`) and `mac_known` (`port`): the MAC it may send from, once
//!   known (the port is guarded, with its addresses, before the container's interface
//!   exists, so its first gratuitous ARP passes; the MAC is added right after).
//!
//! The hook is the bridge's prerouting, so the rules hold for frames to other containers,
//! to other hosts and to the host itself alike.

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::render::TABLE;

/// Set of guarded ports.
pub const GUARDED: &str = "guarded_ports";
/// Set of (port, IPv4 address) pairs allowed.
pub const ADDRS: &str = "port_addrs";
/// Set of (port, MAC) pairs allowed.
pub const MACS: &str = "port_macs";
/// Set of ports whose MAC is known.
pub const MAC_KNOWN: &str = "mac_known";
/// The chain that enforces the sets.
pub const CHAIN: &str = "guard";

/// What one container port may send from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortGuard {
    /// The bridge port (the host-side veth), e.g. `vethwe0123abcde`.
    pub port: String,
    /// The container interface's MAC, once known.
    pub mac: Option<[u8; 6]>,
    /// The IPv4 addresses weft gave it.
    pub addrs: Vec<Ipv4Addr>,
}

/// Declares the sets and the guard chain (idempotent: existing set elements are kept) and
/// rewrites the chain's rules. Part of every script that touches the bridge table.
pub fn render_base(s: &mut String) {
    let _ = writeln!(s, "table bridge {TABLE} {{");
    let _ = writeln!(s, "  set {GUARDED} {{ type ifname; }}");
    let _ = writeln!(s, "  set {ADDRS} {{ type ifname . ipv4_addr; }}");
    let _ = writeln!(s, "  set {MACS} {{ type ifname . ether_addr; }}");
    let _ = writeln!(s, "  set {MAC_KNOWN} {{ type ifname; }}");
    let _ = writeln!(
        s,
        "  chain {CHAIN} {{ type filter hook prerouting priority -200; policy accept; }}"
    );
    let _ = writeln!(s, "}}");
    let _ = writeln!(s, "flush chain bridge {TABLE} {CHAIN}");
    let rules = [
        format!("iifname != @{GUARDED} accept"),
        format!(
            "iifname @{MAC_KNOWN} iifname . ether saddr != @{MACS} drop comment \"weft: anti-spoofing: source MAC\""
        ),
        format!(
            "meta protocol arp iifname @{MAC_KNOWN} iifname . arp saddr ether != @{MACS} drop comment \"weft: anti-spoofing: ARP sender MAC\""
        ),
        format!("meta protocol ip iifname . ip saddr @{ADDRS} accept"),
        format!("meta protocol arp iifname . arp saddr ip @{ADDRS} accept"),
        "drop comment \"weft: anti-spoofing: source address not given by weft\"".to_string(),
    ];
    for r in rules {
        let _ = writeln!(s, "add rule bridge {TABLE} {CHAIN} {r}");
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The elements of one port, as `(set, element)` pairs.
fn elements(g: &PortGuard) -> Vec<(&'static str, String)> {
    let p = &g.port;
    let mut out = vec![(GUARDED, format!("\"{p}\""))];
    for a in &g.addrs {
        out.push((ADDRS, format!("\"{p}\" . {a}")));
    }
    if let Some(m) = &g.mac {
        out.push((MACS, format!("\"{p}\" . {}", fmt_mac(m))));
        out.push((MAC_KNOWN, format!("\"{p}\"")));
    }
    out
}

/// The script that allows `g` (adding to what the port already may).
pub fn render_allow(g: &PortGuard) -> String {
    let mut s = String::new();
    render_base(&mut s);
    for (set, e) in elements(g) {
        let _ = writeln!(s, "add element bridge {TABLE} {set} {{ {e} }}");
    }
    s
}

/// The script that takes back `g`'s addresses, and with `unguard` the port itself and its
/// MAC (once the port is gone). Adding first makes each delete idempotent.
pub fn render_revoke(g: &PortGuard, unguard: bool) -> String {
    let mut s = String::new();
    render_base(&mut s);
    let revoked = elements(g)
        .into_iter()
        .filter(|(set, _)| unguard || *set == ADDRS);
    for (set, e) in revoked {
        let _ = writeln!(s, "add element bridge {TABLE} {set} {{ {e} }}");
        let _ = writeln!(s, "delete element bridge {TABLE} {set} {{ {e} }}");
    }
    s
}

/// The script that makes the sets hold exactly `all` (at start-up).
pub fn render_sync(all: &[PortGuard]) -> String {
    let mut s = String::new();
    render_base(&mut s);
    for set in [GUARDED, ADDRS, MACS, MAC_KNOWN] {
        let _ = writeln!(s, "flush set bridge {TABLE} {set}");
    }
    for g in all {
        for (set, e) in elements(g) {
            let _ = writeln!(s, "add element bridge {TABLE} {set} {{ {e} }}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> PortGuard {
        PortGuard {
            port: "vethwe000000001".into(),
            mac: Some([2, 0, 0, 0, 0, 1]),
            addrs: vec![Ipv4Addr::new(10, 32, 1, 2)],
        }
    }

    #[test]
    fn allow_adds_port_address_and_mac() {
        let s = render_allow(&g());
        assert!(s.contains("add element bridge weft guarded_ports { \"vethwe000000001\" }"));
        assert!(s.contains("port_addrs { \"vethwe000000001\" . 10.32.1.2 }"));
        assert!(s.contains("port_macs { \"vethwe000000001\" . 02:00:00:00:00:01 }"));
        assert!(!s.contains("flush set"), "{s}");
    }

    #[test]
    fn guard_drops_by_default_after_the_allowed_sources() {
        let mut s = String::new();
        render_base(&mut s);
        let accept = s.find("ip saddr @port_addrs accept").unwrap();
        let mac = s.find("ether saddr != @port_macs drop").unwrap();
        let last = s.rfind("add rule").unwrap();
        assert!(mac < accept && accept < last, "{s}");
        assert!(s[last..].contains(" drop comment"), "{s}");
        assert!(s.contains("priority -200"));
    }

    #[test]
    fn revoke_is_idempotent_and_sync_replaces_all() {
        let s = render_revoke(&g(), true);
        assert_eq!(
            s.matches("add element").count(),
            s.matches("delete element").count()
        );
        assert!(
            s.contains("delete element bridge weft guarded_ports"),
            "{s}"
        );
        let s = render_revoke(&g(), false);
        assert!(s.contains("delete element bridge weft port_addrs"), "{s}");
        assert!(
            !s.contains("delete element bridge weft guarded_ports"),
            "{s}"
        );
        let s = render_sync(&[g()]);
        let flush = s.find("flush set bridge weft port_addrs").unwrap();
        assert!(flush < s.find("add element").unwrap());
    }
}
