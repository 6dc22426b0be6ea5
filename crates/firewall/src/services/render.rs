//! The nft scripts of the service table: the whole table ([`render_full`]) and the
//! difference between two states of it ([`Diff`]).
//!
//! The table (kube-proxy's nftables layout):
//! - map `vips` (`ip daddr . meta l4proto . th dport` → verdict), looked up in nat
//!   `output`: VIP traffic this namespace sends;
//! - Host scope: map `published` (`meta l4proto . th dport` → verdict), looked up for
//!   packets to one of the host's own addresses (`fib daddr type local`) in nat
//!   `prerouting` and `output`; each element goes to a `pub/…` chain that sets
//!   [`MASQ_MARK`], which nat `postrouting` turns into a masquerade;
//! - a service chain per service and task port, `svc/NAME/PROTO/PORT`, that picks a task
//!   round robin (`numgen inc mod N vmap @rr/NAME/PROTO/PORT`, a map per service port;
//!   with one task, a `goto` straight to it);
//! - an endpoint chain per task, `ep/NAME/PROTO/PORT/ADDR`, that DNATs to it;
//! - a service without a task has none of these: its keys are in the sets `vips_noep` and
//!   `published_noep` instead, which filter chains (priority -110, before NAT) look up to
//!   refuse new connections at once (TCP reset, ICMP port unreachable otherwise).
//!
//! A change touches only the elements, maps and chains of the services that changed:
//! removing an endpoint refills its service's round-robin map, rewrites its service chain
//! (one rule) and deletes its endpoint chain; other services' objects stay as they are. Connections already set up keep their task, as
//! conntrack holds their translation.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::render::DNAT_MARK;

use super::model::{Norm, SvcScope};

/// Name of the service table (family `ip`), in the host's and in containers' namespaces.
pub const SVC_TABLE: &str = "weft_svc";

/// The packet mark bit that asks for masquerading a published-port connection as it
/// leaves (kube-proxy's 0x4000, moved next to [`crate::DNAT_MARK`]).
pub const MASQ_MARK: u32 = 0x0020_0000;

/// The Host-scope chain that sets [`crate::DNAT_MARK`] on DNATed connections.
pub const DNAT_MARK_CHAIN: &str = "mark_dnat";

/// The sysctl a Host table needs on for published ports on 127.0.0.1: `route_localnet` of
/// every interface of the namespace (kube-proxy's choice). On the weft bridge alone is
/// enough and narrower (`weft_datapath::sysctl::route_localnet_name` builds that path,
/// checking the name); either way the table's `localnet` chain keeps other hosts and
/// containers off the host's loopback.
pub const ROUTE_LOCALNET_ALL: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

/// The script that removes the service table (a no-op when it does not exist).
pub fn render_svc_reset() -> String {
    format!("table ip {SVC_TABLE}\ndelete table ip {SVC_TABLE}\n")
}

/// The VIP dispatch map.
const VIPS: &str = "vips";
/// The published-port dispatch map (Host scope).
const PUBLISHED: &str = "published";
/// VIP ports of services without a task (set): refused before NAT.
const VIPS_NOEP: &str = "vips_noep";
/// Published ports of services without a task (set, Host scope): refused before NAT.
const PUBLISHED_NOEP: &str = "published_noep";
/// The chain that refuses connections to a service without a task.
const NO_ENDPOINT: &str = "no_endpoint";

/// The order objects are created in: an object only refers to objects of a lower rank,
/// which must exist first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// `ep/…` chains.
    Endpoint,
    /// `rr/…` maps (round-robin index → endpoint chain).
    Pick,
    /// `svc/…` chains.
    Service,
    /// `pub/…` chains.
    Publish,
}

/// The chains, maps and elements one service owns.
#[derive(Debug, Default)]
struct Objects {
    /// Chain or map name → (rank, rules of a chain or elements of a map).
    named: BTreeMap<String, (Rank, Vec<String>)>,
    /// (dispatch map or set, key) → the chain the element jumps to (`None`: a set element).
    elems: BTreeMap<(&'static str, String), Option<String>>,
}

fn objects(n: &Norm) -> Objects {
    let mut o = Objects::default();
    if n.backends.is_empty() {
        // kube-proxy's way: a set looked up by filter chains before NAT (a reject from a
        // nat chain does not reliably reach a local client).
        for &(vip, proto, port) in &n.vip_ports {
            o.elems
                .insert((VIPS_NOEP, format!("{vip} . {proto} . {port}")), None);
        }
        for &(proto, host, _) in &n.published {
            o.elems
                .insert((PUBLISHED_NOEP, format!("{proto} . {host}")), None);
        }
        return o;
    }
    let id = &n.id;
    let svc = |proto, port| format!("svc/{id}/{proto}/{port}");
    for (proto, port) in n.targets() {
        let eps: Vec<String> = n
            .backends
            .iter()
            .map(|b| {
                let ep = format!("ep/{id}/{proto}/{port}/{b}");
                let rule = format!("meta l4proto {proto} dnat to {b}:{port}");
                o.named.insert(ep.clone(), (Rank::Endpoint, vec![rule]));
                ep
            })
            .collect();
        let pick = match eps.as_slice() {
            [one] => format!("goto {one}"),
            many => {
                // A named map rather than an anonymous one: the kernel finds a set made
                // in the same transaction by name quickly, by id only by walking the
                // whole transaction (quadratic over a table's first programming).
                let rr = format!("rr/{id}/{proto}/{port}");
                let arms = many
                    .iter()
                    .enumerate()
                    .map(|(i, ep)| format!("{i} : goto {ep}"))
                    .collect();
                o.named.insert(rr.clone(), (Rank::Pick, arms));
                format!("numgen inc mod {} vmap @{rr}", many.len())
            }
        };
        o.named
            .insert(svc(proto, port), (Rank::Service, vec![pick]));
    }
    for &(vip, proto, port) in &n.vip_ports {
        o.elems.insert(
            (VIPS, format!("{vip} . {proto} . {port}")),
            Some(svc(proto, port)),
        );
    }
    for &(proto, host, target) in &n.published {
        let chain = format!("pub/{id}/{proto}/{host}");
        let rule = format!(
            "meta mark set meta mark | {MASQ_MARK:#x} goto {}",
            svc(proto, target)
        );
        o.named.insert(chain.clone(), (Rank::Publish, vec![rule]));
        o.elems
            .insert((PUBLISHED, format!("{proto} . {host}")), Some(chain));
    }
    o
}

/// One element as `add element` spells it.
fn element(key: &str, chain: &Option<String>) -> String {
    match chain {
        Some(c) => format!("{key} : goto {c}"),
        None => key.to_string(),
    }
}

/// The base of the table: maps, sets and the hooked chains that look them up.
fn skeleton(s: &mut String, scope: SvcScope) {
    let _ = writeln!(s, "table ip {SVC_TABLE} {{");
    let vip_key = "ipv4_addr . inet_proto . inet_service";
    let port_key = "inet_proto . inet_service";
    let _ = writeln!(s, "  map {VIPS} {{ type {vip_key} : verdict; }}");
    let _ = writeln!(s, "  set {VIPS_NOEP} {{ type {vip_key}; }}");
    let vips = format!("ip daddr . meta l4proto . th dport vmap @{VIPS}");
    let vips_noep =
        format!("ct state new ip daddr . meta l4proto . th dport @{VIPS_NOEP} goto {NO_ENDPOINT}");
    let local = "fib daddr type local meta l4proto . th dport";
    let published = format!("{local} vmap @{PUBLISHED}");
    let published_noep = format!("ct state new {local} @{PUBLISHED_NOEP} goto {NO_ENDPOINT}");
    let chain = |s: &mut String, name: &str, hook: Option<&str>, rules: &[&str]| {
        let _ = writeln!(s, "  chain {name} {{");
        if let Some(hook) = hook {
            let _ = writeln!(s, "    type {hook}; policy accept;");
        }
        for r in rules {
            let _ = writeln!(s, "    {r}");
        }
        let _ = writeln!(s, "  }}");
    };
    chain(
        s,
        NO_ENDPOINT,
        None,
        &["meta l4proto tcp reject with tcp reset", "reject"],
    );
    // Before NAT (-100), like kube-proxy's filter chains.
    let (filter_pre, filter_out) = (
        Some("filter hook prerouting priority -110"),
        Some("filter hook output priority -110"),
    );
    let (nat_pre, nat_out) = (
        Some("nat hook prerouting priority dstnat"),
        Some("nat hook output priority -100"),
    );
    match scope {
        SvcScope::Container => {
            chain(s, "filter_output", filter_out, &[&vips_noep]);
            chain(s, "nat_output", nat_out, &[&vips]);
        }
        SvcScope::Host => {
            let _ = writeln!(s, "  map {PUBLISHED} {{ type {port_key} : verdict; }}");
            let _ = writeln!(s, "  set {PUBLISHED_NOEP} {{ type {port_key}; }}");
            chain(s, "filter_prerouting", filter_pre, &[&published_noep]);
            chain(
                s,
                "filter_output",
                filter_out,
                &[&vips_noep, &published_noep],
            );
            chain(s, "nat_prerouting", nat_pre, &[&published]);
            chain(s, "nat_output", nat_out, &[&vips, &published]);
            let m = format!("{MASQ_MARK:#x}");
            chain(
                s,
                "nat_postrouting",
                Some("nat hook postrouting priority srcnat"),
                &[
                    &format!("meta mark & {m} == 0 return"),
                    &format!("meta mark set meta mark ^ {m}"),
                    "masquerade comment \"weft: published ports of services\"",
                ],
            );
            // Right after the DNAT, like `inet weft`'s own mark_dnat: a connection
            // DNATed to a task on the bridge may be bridged (br_netfilter), and the
            // bridge table's isolation lets it pass only with this mark.
            chain(
                s,
                DNAT_MARK_CHAIN,
                Some("filter hook prerouting priority -99"),
                &[&format!(
                    "ct status dnat meta mark set meta mark | {DNAT_MARK:#x} comment \"weft: services, for the bridge table\""
                )],
            );
            // route_localnet lets 127.0.0.0/8 through the bridge for published ports;
            // nothing else may reach the host's loopback from outside (CVE-2020-8558).
            chain(
                s,
                "localnet",
                Some("filter hook input priority filter"),
                &["iif != lo ip daddr 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0 drop comment \"weft: loopback only from loopback\""],
            );
        }
    }
    let _ = writeln!(s, "}}");
}

/// The script that replaces the table with one holding exactly `services`.
pub(crate) fn render_full<'a>(scope: SvcScope, services: impl Iterator<Item = &'a Norm>) -> String {
    let mut s = render_svc_reset();
    skeleton(&mut s, scope);
    let mut named: Vec<(Rank, String, Vec<String>)> = Vec::new();
    let mut elems: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for n in services {
        let o = objects(n);
        named.extend(o.named.into_iter().map(|(name, (r, body))| (r, name, body)));
        for ((map, key), chain) in o.elems {
            elems.entry(map).or_default().push(element(&key, &chain));
        }
    }
    named.sort_by_key(|c| c.0);
    for (rank, name, body) in &named {
        fill_named(&mut s, Fill::New, *rank, name, body);
    }
    for (map, es) in elems {
        let _ = writeln!(
            s,
            "add element ip {SVC_TABLE} {map} {{ {} }}",
            es.join(", ")
        );
    }
    s
}

/// Whether a named object is made anew or emptied and filled again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    New,
    Again,
}

/// Writes a chain with its rules, or a round-robin map with its elements (`body`).
fn fill_named(s: &mut String, fill: Fill, rank: Rank, name: &str, body: &[String]) {
    let listed = body.join(", ");
    match (rank == Rank::Pick, fill) {
        (true, Fill::New) => {
            let _ = writeln!(
                s,
                "add map ip {SVC_TABLE} {name} {{ typeof numgen inc mod 2 : verdict; elements = {{ {listed} }}; }}"
            );
        }
        (true, Fill::Again) => {
            let _ = writeln!(s, "flush map ip {SVC_TABLE} {name}");
            let _ = writeln!(s, "add element ip {SVC_TABLE} {name} {{ {listed} }}");
        }
        (false, fill) => {
            let verb = if fill == Fill::New { "add" } else { "flush" };
            let _ = writeln!(s, "{verb} chain ip {SVC_TABLE} {name}");
            add_rules(s, name, body);
        }
    }
}

fn add_rules(s: &mut String, name: &str, rules: &[String]) {
    for r in rules {
        let _ = writeln!(s, "add rule ip {SVC_TABLE} {name} {r}");
    }
}

/// The commands that take the table from one state to another, gathered service by
/// service and put in an order the kernel accepts: elements that go away, chains and
/// maps that appear or change (lower ranks first), elements that appear, then what goes
/// away: chains emptied first (rules of other dying chains may still jump to them), then
/// maps, then chains deleted.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    del_elems: String,
    named: Vec<(Rank, String)>,
    add_elems: String,
    flush_gone: String,
    delete_maps: String,
    delete_chains: String,
}

impl Diff {
    /// Adds the commands that turn `old`'s objects into `new`'s (`None`: no service).
    pub fn service(&mut self, old: Option<&Norm>, new: Option<&Norm>) {
        let o = old.map(objects).unwrap_or_default();
        let n = new.map(objects).unwrap_or_default();
        for ((map, key), chain) in &o.elems {
            if n.elems.get(&(*map, key.clone())) != Some(chain) {
                let _ = writeln!(
                    self.del_elems,
                    "delete element ip {SVC_TABLE} {map} {{ {key} }}"
                );
            }
        }
        for ((map, key), chain) in &n.elems {
            if o.elems.get(&(*map, key.clone())) != Some(chain) {
                let _ = writeln!(
                    self.add_elems,
                    "add element ip {SVC_TABLE} {map} {{ {} }}",
                    element(key, chain)
                );
            }
        }
        for (name, (rank, body)) in &n.named {
            let mut s = String::new();
            match o.named.get(name) {
                None => fill_named(&mut s, Fill::New, *rank, name, body),
                Some((_, before)) if before == body => continue,
                Some(_) => fill_named(&mut s, Fill::Again, *rank, name, body),
            }
            self.named.push((*rank, s));
        }
        for (name, (rank, _)) in o.named.iter().filter(|(c, _)| !n.named.contains_key(*c)) {
            if *rank == Rank::Pick {
                let _ = writeln!(self.delete_maps, "delete map ip {SVC_TABLE} {name}");
            } else {
                let _ = writeln!(self.flush_gone, "flush chain ip {SVC_TABLE} {name}");
                let _ = writeln!(self.delete_chains, "delete chain ip {SVC_TABLE} {name}");
            }
        }
    }

    /// The script (empty when nothing changes).
    pub fn script(mut self) -> String {
        self.named.sort_by_key(|c| c.0);
        let mut s = self.del_elems;
        for (_, c) in &self.named {
            s.push_str(c);
        }
        for part in [
            self.add_elems,
            self.flush_gone,
            self.delete_maps,
            self.delete_chains,
        ] {
            s.push_str(&part);
        }
        s
    }
}
