//! What the router asks the service table to hold, independent of nftables' spelling, and
//! its normal form: what one table of a given scope holds for one service.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::rules::Proto;
use crate::FirewallError;

/// Where a service table lives, which decides what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SvcScope {
    /// The host's own namespace: VIP traffic the host sends (nat `output`), published
    /// ports on the host's addresses (nat `prerouting` and `output`), masqueraded as they
    /// leave so the task answers this host.
    Host,
    /// A client container's namespace: VIP traffic it sends (nat `output`) only.
    Container,
}

/// One service as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SvcRule {
    /// The service's name (unique among the rules of one sync).
    pub name: String,
    /// Its virtual address (`None`: mode dnsrr, published ports only).
    pub vip: Option<Ipv4Addr>,
    /// VIP ports: `VIP:port` goes to `task:port`.
    pub ports: Vec<(Proto, u16)>,
    /// Published ports `(proto, host port, target port)`: host port on any of the host's
    /// own addresses goes to `task:target port` (Host scope only).
    pub published: Vec<(Proto, u16, u16)>,
    /// The tasks' addresses in rotation.
    pub backends: Vec<Ipv4Addr>,
}

/// One service in normal form for one scope: sets instead of lists, what the scope does
/// not program left out. Two equal normal forms program the same objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Norm {
    /// The service's part of chain names (see [`chain_id`]).
    pub id: String,
    /// `(vip, proto, port)`: empty without a VIP.
    pub vip_ports: BTreeSet<(Ipv4Addr, Proto, u16)>,
    /// `(proto, host port, target port)`: empty in Container scope.
    pub published: BTreeSet<(Proto, u16, u16)>,
    /// Backends, sorted (their index is their `numgen` value).
    pub backends: BTreeSet<Ipv4Addr>,
}

impl Norm {
    /// The task ports traffic goes to: one service chain each.
    pub fn targets(&self) -> BTreeSet<(Proto, u16)> {
        let vip = self.vip_ports.iter().map(|&(_, p, port)| (p, port));
        let published = self.published.iter().map(|&(p, _, t)| (p, t));
        vip.chain(published).collect()
    }
}

/// The longest service name used as is in chain names.
const MAX_VERBATIM: usize = 63;

/// The service's part of chain names: the name itself when it is made of letters, digits,
/// `-` and `_` (a DNS label always is), otherwise a sanitised prefix, a `.` (never in a
/// verbatim id, so the two kinds cannot collide) and a 64-bit FNV-1a hash of the name.
pub(crate) fn chain_id(name: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !name.is_empty() && name.len() <= MAX_VERBATIM && name.chars().all(plain) {
        return name.to_string();
    }
    let prefix: String = name
        .chars()
        .take(24)
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{prefix}.{h:016x}")
}

/// Checks `wanted` and brings it to normal form for `scope`, by name. Refused (one error,
/// nothing programmed): an empty or repeated name, port 0, two services (or two mappings
/// of one) claiming one VIP port or one published host port.
pub(crate) fn normalise(
    wanted: &[SvcRule],
    scope: SvcScope,
) -> Result<BTreeMap<String, Norm>, FirewallError> {
    let invalid = |name: &str, reason: String| FirewallError::InvalidService {
        name: name.to_string(),
        reason,
    };
    let mut out = BTreeMap::new();
    let mut vip_owner: BTreeMap<(Ipv4Addr, Proto, u16), &str> = BTreeMap::new();
    let mut host_owner: BTreeMap<(Proto, u16), (&str, u16)> = BTreeMap::new();
    for r in wanted {
        let name = r.name.as_str();
        if name.is_empty() {
            return Err(invalid(
                name,
                "the name is empty; give every service a name".into(),
            ));
        }
        if out.contains_key(name) {
            return Err(invalid(
                name,
                "the name is given twice; merge the two rules".into(),
            ));
        }
        let zero = r.ports.iter().any(|&(_, p)| p == 0)
            || r.published.iter().any(|&(_, h, t)| h == 0 || t == 0);
        if zero {
            return Err(invalid(
                name,
                "port 0 cannot be served; use ports 1 to 65535".into(),
            ));
        }
        let mut norm = Norm {
            id: chain_id(name),
            vip_ports: BTreeSet::new(),
            published: BTreeSet::new(),
            backends: r.backends.iter().copied().collect(),
        };
        if let Some(vip) = r.vip {
            for &(proto, port) in &r.ports {
                let key = (vip, proto, port);
                match vip_owner.get(&key) {
                    Some(other) if *other != name => {
                        return Err(invalid(
                            name,
                            format!("{vip}:{port}/{proto} is already served by service {other}; give each service its own VIP"),
                        ))
                    }
                    _ => {}
                }
                vip_owner.insert(key, name);
                norm.vip_ports.insert(key);
            }
        }
        if scope == SvcScope::Host {
            for &(proto, host, target) in &r.published {
                match host_owner.get(&(proto, host)) {
                    Some(&(other, t)) if other != name || t != target => {
                        return Err(invalid(
                            name,
                            format!("host port {host}/{proto} is already published by service {other}; pick another host port"),
                        ))
                    }
                    _ => {}
                }
                host_owner.insert((proto, host), (name, target));
                norm.published.insert((proto, host, target));
            }
        }
        out.insert(name.to_string(), norm);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, vip: [u8; 4]) -> SvcRule {
        SvcRule {
            name: name.into(),
            vip: Some(vip.into()),
            ports: vec![(Proto::Tcp, 80)],
            published: vec![(Proto::Tcp, 8000, 80)],
            backends: vec![[10, 32, 1, 3].into(), [10, 32, 1, 2].into()],
        }
    }

    #[test]
    fn chain_ids_keep_dns_labels_and_hash_the_rest() {
        assert_eq!(chain_id("web-1"), "web-1");
        let odd = chain_id("we b/x");
        assert!(odd.starts_with("we_b_x."), "{odd}");
        assert_ne!(chain_id("we b/x"), chain_id("we_b_x"));
        let long = "a".repeat(200);
        assert!(chain_id(&long).len() < 48);
        assert_ne!(chain_id(&long), chain_id(&"a".repeat(201)));
    }

    #[test]
    fn scope_decides_what_is_kept() {
        let host = normalise(&[rule("web", [10, 32, 1, 100])], SvcScope::Host).unwrap();
        let ctr = normalise(&[rule("web", [10, 32, 1, 100])], SvcScope::Container).unwrap();
        assert_eq!(host["web"].published.len(), 1);
        assert!(ctr["web"].published.is_empty());
        let b: Vec<_> = ctr["web"].backends.iter().map(|a| a.to_string()).collect();
        assert_eq!(b, ["10.32.1.2", "10.32.1.3"]);
    }

    #[test]
    fn conflicts_are_refused_with_the_other_service_named() {
        let a = rule("a", [10, 32, 1, 100]);
        let mut b = rule("b", [10, 32, 1, 100]);
        b.published.clear();
        let e = normalise(&[a.clone(), b], SvcScope::Container)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already served by service a"), "{e}");
        let mut c = rule("c", [10, 32, 1, 101]);
        c.ports.clear();
        let e = normalise(&[a.clone(), c.clone()], SvcScope::Host)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("host port 8000/tcp is already published by service a"),
            "{e}"
        );
        // A Container table does not hold published ports: no conflict there.
        assert!(normalise(&[a.clone(), c], SvcScope::Container).is_ok());
        let e = normalise(&[a.clone(), a.clone()], SvcScope::Host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
        let mut z = rule("z", [10, 32, 1, 102]);
        z.ports.push((Proto::Udp, 0));
        assert!(normalise(&[z], SvcScope::Host).is_err());
    }
}
