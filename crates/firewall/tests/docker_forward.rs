//! weft next to Docker's iptables rules, on the real kernel: Docker's `FORWARD` policy
//! `DROP` (emulated the way dockerd sets it up) cuts weft's containers off until
//! `DockerForward::ensure`; weft's isolation of subnets still holds; `remove` puts
//! `DOCKER-USER` back as it was.

mod common;

use common::*;
use weft_firewall::{DockerForward, Firewall, Proto, Ruleset};

/// What dockerd does to the `filter` table that matters here.
fn emulate_docker(ns: &str) {
    ns_exec(ns, &["iptables", "-P", "FORWARD", "DROP"]);
    ns_exec(ns, &["iptables", "-N", "DOCKER-USER"]);
    // Something a user put there: it must survive weft's rules coming and going.
    ns_exec(
        ns,
        &[
            "iptables",
            "-A",
            "DOCKER-USER",
            "-s",
            "198.51.100.0/24",
            "-j",
            "DROP",
        ],
    );
    ns_exec(ns, &["iptables", "-A", "FORWARD", "-j", "DOCKER-USER"]);
}

fn docker_user(ns: &str) -> String {
    ns_exec(ns, &["iptables", "-S", "DOCKER-USER"])
}

#[test]
fn docker_forward_drop_is_lifted_for_the_bridge_only() {
    let mut nss = Namespaces::new();
    let host = host_with_bridge(&mut nss);
    let a = container(&mut nss, &host, "a", "10.32.2.2/24");
    let b = container(&mut nss, &host, "b", "10.32.2.3/24");
    let c = container(&mut nss, &host, "c", "10.32.3.2/24");
    let other = other_host(&mut nss, &host);
    // c and a talk through the host (routed, not bridged): isolation must hold there too.
    ip(&c, "route add 10.32.2.2/32 via 10.32.0.1 dev eth0");
    ip(&a, "route add 10.32.3.2/32 via 10.32.0.1 dev eth0");
    assert!(pings(&a, "10.32.2.3"), "without Docker a reaches b");
    assert!(
        pings(&c, "10.32.2.2"),
        "without rules c reaches a through the host"
    );

    let rules = host_rules(&[published(Proto::Tcp, 8080, 80)]);
    firewall(&host).apply(&rules).unwrap();
    let _web = Server::tcp(&a, 80);
    assert!(tcp_get(&other, "192.168.77.1:8080").is_some());
    assert!(!pings(&c, "10.32.2.2"), "c must not reach a, routed or not");

    emulate_docker(&host);
    let before = docker_user(&host);
    assert!(
        !pings(&a, "10.32.2.3"),
        "Docker's FORWARD drop stops bridged frames"
    );
    assert_eq!(
        tcp_get(&other, "192.168.77.1:8080"),
        None,
        "and published ports"
    );

    let mut fw = DockerForward::new(runner(&host));
    assert!(fw.ensure("weft").unwrap(), "DOCKER-USER exists");
    assert!(fw.ensure("weft").unwrap());
    let with = docker_user(&host);
    assert_eq!(
        with.matches("--comment weft -j ACCEPT").count(),
        2,
        "{with}"
    );
    assert!(pings(&a, "10.32.2.3"), "after ensure a reaches b");
    assert!(pings(&b, "10.32.2.2"), "and b reaches a");
    assert_eq!(
        tcp_get(&other, "192.168.77.1:8080").as_deref(),
        Some("hello 192.168.77.2"),
        "after ensure the published port works"
    );
    assert!(
        !pings(&c, "10.32.2.2"),
        "isolation holds despite -o weft -j ACCEPT (routed)"
    );
    ip(&c, "route del 10.32.2.2/32 via 10.32.0.1 dev eth0");
    ip(&a, "route del 10.32.3.2/32 via 10.32.0.1 dev eth0");
    assert!(!pings(&c, "10.32.2.2"), "isolation holds (bridged)");

    assert_eq!(fw.remove("weft").unwrap(), 2);
    assert!(
        !pings(&a, "10.32.2.3"),
        "after remove Docker's drop is back"
    );
    assert_eq!(docker_user(&host), before, "DOCKER-USER as it was");
    assert_eq!(fw.remove("weft").unwrap(), 0);
}

#[test]
fn without_docker_nothing_is_touched() {
    let mut nss = Namespaces::new();
    let host = nss.add("host");
    let before = ns_exec(&host, &["nft", "list", "ruleset"]);
    let mut fw = DockerForward::new(runner(&host));
    assert!(!fw.ensure("weft").unwrap(), "no DOCKER-USER chain here");
    assert_eq!(fw.remove("weft").unwrap(), 0);
    assert_eq!(before, ns_exec(&host, &["nft", "list", "ruleset"]));
}

#[test]
fn weft_reset_path_removes_everything() {
    let mut nss = Namespaces::new();
    let host = host_with_bridge(&mut nss);
    emulate_docker(&host);
    let before = docker_user(&host);
    let mut rules = Ruleset::default();
    rules.published.insert(published(Proto::Udp, 5353, 53));
    firewall(&host).apply(&rules).unwrap();
    DockerForward::new(runner(&host)).ensure("weft").unwrap();
    // What the router's reset does.
    firewall(&host).reset().unwrap();
    DockerForward::new(runner(&host)).remove("weft").unwrap();
    let listed = ns_exec(&host, &["nft", "list", "ruleset"]);
    assert!(!listed.contains("table inet weft"), "{listed}");
    assert!(!listed.contains("dnat"), "{listed}");
    assert_eq!(docker_user(&host), before);
}
