//! The scripts [`SvcTable::sync`] sends, exactly: whole the first time, then only what
//! changed.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use super::*;
use crate::{FirewallError, Proto, Runner};

/// Records scripts; refuses them while `fail` is set, and the next `fail_next` ones.
#[derive(Default, Clone)]
struct Recorder {
    scripts: Rc<RefCell<Vec<String>>>,
    fail: Rc<RefCell<bool>>,
    fail_next: Rc<RefCell<usize>>,
}

impl Runner for Recorder {
    fn run(&mut self, script: &str) -> Result<(), FirewallError> {
        self.scripts.borrow_mut().push(script.to_string());
        let next = *self.fail_next.borrow();
        if next > 0 {
            self.fail_next.replace(next - 1);
            return Err(FirewallError::Rejected {
                stderr: "refused".into(),
            });
        }
        if *self.fail.borrow() {
            return Err(FirewallError::Rejected {
                stderr: "refused".into(),
            });
        }
        Ok(())
    }
}

impl Recorder {
    fn last(&self) -> String {
        self.scripts.borrow().last().cloned().unwrap_or_default()
    }
    fn count(&self) -> usize {
        self.scripts.borrow().len()
    }
}

fn a(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 1, last)
}

/// Service `name` with VIP `10.32.1.vip`, its tasks at `10.32.1.b` for each of `backends`.
fn rule(name: &str, vip: u8, ports: &[(Proto, u16)], backends: &[u8]) -> SvcRule {
    SvcRule {
        name: name.into(),
        vip: Some(a(vip)),
        ports: ports.to_vec(),
        published: vec![],
        backends: backends.iter().map(|&b| a(b)).collect(),
    }
}

fn web(backends: &[u8]) -> SvcRule {
    SvcRule {
        published: vec![(Proto::Tcp, 8000, 80)],
        ..rule("web", 100, &[(Proto::Tcp, 80)], backends)
    }
}

fn dns() -> SvcRule {
    rule("dns", 101, &[(Proto::Udp, 53)], &[7])
}

fn table(scope: SvcScope) -> (SvcTable<Recorder>, Recorder) {
    let r = Recorder::default();
    (SvcTable::new(r.clone(), scope), r)
}

/// A table that holds `rules` already (its first, whole, script sent).
fn synced(scope: SvcScope, rules: &[SvcRule]) -> (SvcTable<Recorder>, Recorder) {
    let (mut t, r) = table(scope);
    t.sync(rules).unwrap();
    (t, r)
}

fn api() -> SvcRule {
    rule("api", 102, &[(Proto::Tcp, 443)], &[9])
}

/// Lines of a script, for exact comparisons that print well.
fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn first_sync_programs_the_table_whole() {
    let (mut t, r) = table(SvcScope::Container);
    let stats = t.sync(&[web(&[3, 2]), dns()]).unwrap();
    assert!(stats.full);
    assert_eq!(stats.added, 2);
    assert_eq!(
        lines(&r.last()),
        [
            "table ip weft_svc",
            "delete table ip weft_svc",
            "table ip weft_svc {",
            "  map vips { type ipv4_addr . inet_proto . inet_service : verdict; }",
            "  set vips_noep { type ipv4_addr . inet_proto . inet_service; }",
            "  chain no_endpoint {",
            "    meta l4proto tcp reject with tcp reset",
            "    reject",
            "  }",
            "  chain filter_output {",
            "    type filter hook output priority -110; policy accept;",
            "    ct state new ip daddr . meta l4proto . th dport @vips_noep goto no_endpoint",
            "  }",
            "  chain nat_output {",
            "    type nat hook output priority -100; policy accept;",
            "    ip daddr . meta l4proto . th dport vmap @vips",
            "  }",
            "}",
            "add chain ip weft_svc ep/dns/udp/53/10.32.1.7",
            "add rule ip weft_svc ep/dns/udp/53/10.32.1.7 meta l4proto udp dnat to 10.32.1.7:53",
            "add chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "add rule ip weft_svc ep/web/tcp/80/10.32.1.2 meta l4proto tcp dnat to 10.32.1.2:80",
            "add chain ip weft_svc ep/web/tcp/80/10.32.1.3",
            "add rule ip weft_svc ep/web/tcp/80/10.32.1.3 meta l4proto tcp dnat to 10.32.1.3:80",
            "add map ip weft_svc rr/web/tcp/80 { typeof numgen inc mod 2 : verdict; elements = { 0 : goto ep/web/tcp/80/10.32.1.2, 1 : goto ep/web/tcp/80/10.32.1.3 }; }",
            "add chain ip weft_svc svc/dns/udp/53",
            "add rule ip weft_svc svc/dns/udp/53 goto ep/dns/udp/53/10.32.1.7",
            "add chain ip weft_svc svc/web/tcp/80",
            "add rule ip weft_svc svc/web/tcp/80 numgen inc mod 2 vmap @rr/web/tcp/80",
            "add element ip weft_svc vips { 10.32.1.101 . udp . 53 : goto svc/dns/udp/53, 10.32.1.100 . tcp . 80 : goto svc/web/tcp/80 }",
        ]
    );
}

#[test]
fn host_scope_adds_published_ports_masquerade_and_marks() {
    let (_t, r) = synced(SvcScope::Host, &[web(&[2])]);
    let s = r.last();
    for line in [
        "  map published { type inet_proto . inet_service : verdict; }",
        "    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local meta l4proto . th dport vmap @published\n",
        "  set published_noep { type inet_proto . inet_service; }",
        "  chain filter_prerouting {\n    type filter hook prerouting priority -110; policy accept;\n    ct state new fib daddr type local meta l4proto . th dport @published_noep goto no_endpoint\n",
        "    ct state new ip daddr . meta l4proto . th dport @vips_noep goto no_endpoint\n    ct state new fib daddr type local meta l4proto . th dport @published_noep goto no_endpoint\n",
        "    ip daddr . meta l4proto . th dport vmap @vips\n    fib daddr type local meta l4proto . th dport vmap @published\n",
        "    meta mark & 0x200000 == 0 return\n    meta mark set meta mark ^ 0x200000\n    masquerade",
        "type filter hook prerouting priority -99; policy accept;\n    ct status dnat meta mark set meta mark | 0x100000",
        "iif != lo ip daddr 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0 drop",
        "add rule ip weft_svc pub/web/tcp/8000 meta mark set meta mark | 0x200000 goto svc/web/tcp/80\n",
        "add element ip weft_svc published { tcp . 8000 : goto pub/web/tcp/8000 }\n",
    ] {
        assert!(s.contains(line), "missing {line:?} in\n{s}");
    }
    assert_eq!(format!("{:#x}", crate::DNAT_MARK), "0x100000");
    // Chains exist before what jumps to them.
    let at = |x: &str| s.find(&format!("add chain ip weft_svc {x}\n")).unwrap();
    assert!(at("ep/web/tcp/80/10.32.1.2") < at("svc/web/tcp/80"));
    assert!(at("svc/web/tcp/80") < at("pub/web/tcp/8000"));
}

#[test]
fn container_scope_holds_no_published_ports() {
    let (mut t, r) = table(SvcScope::Container);
    let mut only_published = web(&[2]);
    only_published.vip = None;
    t.sync(&[web(&[2]), dns()]).unwrap();
    assert!(!r.last().contains("published"), "{}", r.last());
    assert!(!r.last().contains("pub/"), "{}", r.last());
    // A dnsrr service holds nothing in a container: its removal of the VIP is all.
    let stats = t.sync(&[only_published, dns()]).unwrap();
    assert_eq!(stats.changed, 1);
    assert_eq!(
        lines(&r.last()),
        [
            "delete element ip weft_svc vips { 10.32.1.100 . tcp . 80 }",
            "flush chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "flush chain ip weft_svc svc/web/tcp/80",
            "delete chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "delete chain ip weft_svc svc/web/tcp/80",
        ]
    );
}

#[test]
fn adding_a_service_sends_only_its_objects() {
    let (mut t, r) = synced(SvcScope::Host, &[web(&[2, 3]), dns()]);
    let stats = t.sync(&[web(&[2, 3]), dns(), api()]).unwrap();
    assert_eq!((stats.full, stats.added, stats.changed), (false, 1, 0));
    assert_eq!(stats.script_bytes, r.last().len());
    assert_eq!(
        lines(&r.last()),
        [
            "add chain ip weft_svc ep/api/tcp/443/10.32.1.9",
            "add rule ip weft_svc ep/api/tcp/443/10.32.1.9 meta l4proto tcp dnat to 10.32.1.9:443",
            "add chain ip weft_svc svc/api/tcp/443",
            "add rule ip weft_svc svc/api/tcp/443 goto ep/api/tcp/443/10.32.1.9",
            "add element ip weft_svc vips { 10.32.1.102 . tcp . 443 : goto svc/api/tcp/443 }",
        ]
    );
}

#[test]
fn adding_and_removing_an_endpoint_rewrites_one_service_chain() {
    let (mut t, r) = synced(SvcScope::Host, &[web(&[2, 3]), dns()]);
    let stats = t.sync(&[web(&[2, 3, 4]), dns()]).unwrap();
    assert_eq!((stats.added, stats.changed, stats.removed), (0, 1, 0));
    assert_eq!(
        lines(&r.last()),
        [
            "add chain ip weft_svc ep/web/tcp/80/10.32.1.4",
            "add rule ip weft_svc ep/web/tcp/80/10.32.1.4 meta l4proto tcp dnat to 10.32.1.4:80",
            "flush map ip weft_svc rr/web/tcp/80",
            "add element ip weft_svc rr/web/tcp/80 { 0 : goto ep/web/tcp/80/10.32.1.2, 1 : goto ep/web/tcp/80/10.32.1.3, 2 : goto ep/web/tcp/80/10.32.1.4 }",
            "flush chain ip weft_svc svc/web/tcp/80",
            "add rule ip weft_svc svc/web/tcp/80 numgen inc mod 3 vmap @rr/web/tcp/80",
        ]
    );
    t.sync(&[web(&[2, 4]), dns()]).unwrap();
    assert_eq!(
        lines(&r.last()),
        [
            "flush map ip weft_svc rr/web/tcp/80",
            "add element ip weft_svc rr/web/tcp/80 { 0 : goto ep/web/tcp/80/10.32.1.2, 1 : goto ep/web/tcp/80/10.32.1.4 }",
            "flush chain ip weft_svc svc/web/tcp/80",
            "add rule ip weft_svc svc/web/tcp/80 numgen inc mod 2 vmap @rr/web/tcp/80",
            "flush chain ip weft_svc ep/web/tcp/80/10.32.1.3",
            "delete chain ip weft_svc ep/web/tcp/80/10.32.1.3",
        ]
    );
    // The last one goes: the service's keys move to the no-endpoint sets, its chains go.
    t.sync(&[web(&[]), dns()]).unwrap();
    assert_eq!(
        lines(&r.last()),
        [
            "delete element ip weft_svc published { tcp . 8000 }",
            "delete element ip weft_svc vips { 10.32.1.100 . tcp . 80 }",
            "add element ip weft_svc published_noep { tcp . 8000 }",
            "add element ip weft_svc vips_noep { 10.32.1.100 . tcp . 80 }",
            "flush chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "flush chain ip weft_svc ep/web/tcp/80/10.32.1.4",
            "flush chain ip weft_svc pub/web/tcp/8000",
            "flush chain ip weft_svc svc/web/tcp/80",
            "delete map ip weft_svc rr/web/tcp/80",
            "delete chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "delete chain ip weft_svc ep/web/tcp/80/10.32.1.4",
            "delete chain ip weft_svc pub/web/tcp/8000",
            "delete chain ip weft_svc svc/web/tcp/80",
        ]
    );
    t.sync(&[web(&[5]), dns()]).unwrap();
    let s = r.last();
    assert!(s.starts_with("delete element ip weft_svc published_noep { tcp . 8000 }\ndelete element ip weft_svc vips_noep { 10.32.1.100 . tcp . 80 }\n"), "{s}");
}

#[test]
fn a_second_task_brings_a_round_robin_map_and_the_last_but_one_takes_it() {
    let (mut t, r) = synced(SvcScope::Container, &[dns()]);
    let mut two = dns();
    two.backends.push(a(8));
    t.sync(&[two]).unwrap();
    assert_eq!(
        lines(&r.last()),
        [
            "add chain ip weft_svc ep/dns/udp/53/10.32.1.8",
            "add rule ip weft_svc ep/dns/udp/53/10.32.1.8 meta l4proto udp dnat to 10.32.1.8:53",
            "add map ip weft_svc rr/dns/udp/53 { typeof numgen inc mod 2 : verdict; elements = { 0 : goto ep/dns/udp/53/10.32.1.7, 1 : goto ep/dns/udp/53/10.32.1.8 }; }",
            "flush chain ip weft_svc svc/dns/udp/53",
            "add rule ip weft_svc svc/dns/udp/53 numgen inc mod 2 vmap @rr/dns/udp/53",
        ]
    );
    let mut other = dns();
    other.backends = vec![a(8)];
    t.sync(&[other]).unwrap();
    assert_eq!(
        lines(&r.last()),
        [
            "flush chain ip weft_svc svc/dns/udp/53",
            "add rule ip weft_svc svc/dns/udp/53 goto ep/dns/udp/53/10.32.1.8",
            "flush chain ip weft_svc ep/dns/udp/53/10.32.1.7",
            "delete map ip weft_svc rr/dns/udp/53",
            "delete chain ip weft_svc ep/dns/udp/53/10.32.1.7",
        ]
    );
}

#[test]
fn removing_a_service_touches_no_other() {
    let (mut t, r) = synced(SvcScope::Host, &[web(&[2, 3]), dns()]);
    let stats = t.sync(&[dns()]).unwrap();
    assert_eq!((stats.added, stats.changed, stats.removed), (0, 0, 1));
    assert_eq!(
        lines(&r.last()),
        [
            "delete element ip weft_svc published { tcp . 8000 }",
            "delete element ip weft_svc vips { 10.32.1.100 . tcp . 80 }",
            "flush chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "flush chain ip weft_svc ep/web/tcp/80/10.32.1.3",
            "flush chain ip weft_svc pub/web/tcp/8000",
            "flush chain ip weft_svc svc/web/tcp/80",
            "delete map ip weft_svc rr/web/tcp/80",
            "delete chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "delete chain ip weft_svc ep/web/tcp/80/10.32.1.3",
            "delete chain ip weft_svc pub/web/tcp/8000",
            "delete chain ip weft_svc svc/web/tcp/80",
        ]
    );
}

#[test]
fn changing_ports_replaces_only_that_service_port() {
    let (mut t, r) = synced(SvcScope::Host, &[web(&[2]), dns()]);
    let mut w = web(&[2]);
    w.ports = vec![(Proto::Tcp, 81)];
    w.published = vec![(Proto::Tcp, 8000, 81)];
    t.sync(&[w, dns()]).unwrap();
    assert_eq!(
        lines(&r.last()),
        [
            "delete element ip weft_svc vips { 10.32.1.100 . tcp . 80 }",
            "add chain ip weft_svc ep/web/tcp/81/10.32.1.2",
            "add rule ip weft_svc ep/web/tcp/81/10.32.1.2 meta l4proto tcp dnat to 10.32.1.2:81",
            "add chain ip weft_svc svc/web/tcp/81",
            "add rule ip weft_svc svc/web/tcp/81 goto ep/web/tcp/81/10.32.1.2",
            "flush chain ip weft_svc pub/web/tcp/8000",
            "add rule ip weft_svc pub/web/tcp/8000 meta mark set meta mark | 0x200000 goto svc/web/tcp/81",
            "add element ip weft_svc vips { 10.32.1.100 . tcp . 81 : goto svc/web/tcp/81 }",
            "flush chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "flush chain ip weft_svc svc/web/tcp/80",
            "delete chain ip weft_svc ep/web/tcp/80/10.32.1.2",
            "delete chain ip weft_svc svc/web/tcp/80",
        ]
    );
    // A published port moving from one service to another, in one sync: the element is
    // deleted before it is added again.
    let mut d = dns();
    d.published = vec![(Proto::Tcp, 8000, 53)];
    let mut w = web(&[2]);
    w.published.clear();
    t.sync(&[w, d]).unwrap();
    let s = r.last();
    let del = s
        .find("delete element ip weft_svc published { tcp . 8000 }")
        .unwrap();
    let add = s
        .find("add element ip weft_svc published { tcp . 8000 : goto pub/dns/tcp/8000 }")
        .unwrap();
    assert!(del < add, "{s}");
}

#[test]
fn an_unchanged_sync_runs_nothing() {
    let (mut t, r) = synced(SvcScope::Host, &[web(&[2, 3]), dns()]);
    // Order of rules and of backends does not matter.
    let stats = t.sync(&[dns(), web(&[3, 2])]).unwrap();
    assert_eq!(stats, SyncStats::default());
    assert_eq!(r.count(), 1);
}

#[test]
fn a_refused_difference_is_followed_by_the_whole_table() {
    let (mut t, r) = synced(SvcScope::Host, &[web(&[2])]);
    // Both the difference and the whole table refused: an error, and nothing known.
    *r.fail.borrow_mut() = true;
    assert!(t.sync(&[web(&[2, 3])]).is_err());
    assert_eq!(r.count(), 3);
    assert!(r
        .last()
        .starts_with("table ip weft_svc\ndelete table ip weft_svc\n"));
    // So the next sync is whole, without trying a difference first.
    *r.fail.borrow_mut() = false;
    let stats = t.sync(&[web(&[2, 3])]).unwrap();
    assert!(stats.full);
    assert_eq!(stats.added, 1);
    assert_eq!(r.count(), 4);
    assert!(r
        .last()
        .starts_with("table ip weft_svc\ndelete table ip weft_svc\n"));
    // delete() forgets too.
    t.delete().unwrap();
    assert_eq!(r.last(), render_svc_reset());
    assert!(t.sync(&[web(&[2, 3])]).unwrap().full);
}

#[test]
fn a_difference_refused_alone_is_replaced_by_the_whole_table_in_the_same_sync() {
    let (mut t, r) = synced(SvcScope::Host, &[web(&[2])]);
    r.fail_next.replace(1);
    let stats = t.sync(&[web(&[2, 3])]).unwrap();
    assert!(stats.full);
    assert_eq!(r.count(), 3);
    assert!(!t.sync(&[web(&[3])]).unwrap().full);
}

#[test]
fn invalid_rules_change_nothing() {
    let (mut t, r) = synced(SvcScope::Host, &[web(&[2])]);
    let mut other = dns();
    other.vip = web(&[]).vip;
    other.ports = vec![(Proto::Tcp, 80)];
    let e = t.sync(&[web(&[2]), other]).unwrap_err().to_string();
    assert!(e.contains("already served by service"), "{e}");
    assert_eq!(r.count(), 1);
    // And the table still knows what is programmed: the next change is incremental.
    assert!(!t.sync(&[web(&[2]), dns()]).unwrap().full);
}

#[test]
fn odd_names_get_safe_chain_names() {
    let (mut t, r) = table(SvcScope::Container);
    let mut odd = dns();
    odd.name = "my service; flush ruleset".into();
    t.sync(&[odd]).unwrap();
    let s = r.last();
    assert!(!s.contains("flush ruleset"), "{s}");
    assert!(
        s.contains("add chain ip weft_svc svc/my_service__flush_rulese."),
        "{s}"
    );
}

#[test]
fn reset_deletes_only_the_service_table() {
    assert_eq!(
        render_svc_reset(),
        "table ip weft_svc\ndelete table ip weft_svc\n"
    );
}
