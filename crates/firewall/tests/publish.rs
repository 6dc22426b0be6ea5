//! Published ports on the real kernel: a container's port reached through the host's own
//! addresses, from another host, from the host itself (127.0.0.1 included) and from a
//! container of another, isolated subnet; gone once the mapping is.

mod common;

use common::*;
use weft_firewall::{Firewall, Proto, Published, Ruleset};

/// The host's rules: two isolated subnets, the host's bridge address, and `published`.
fn rules(published: &[Published]) -> Ruleset {
    let mut r = Ruleset {
        range: Some("10.32.0.0/12".parse().unwrap()),
        bridge: Some("weft".into()),
        ..Default::default()
    };
    r.isolated_subnets.insert("10.32.2.0/24".parse().unwrap());
    r.isolated_subnets.insert("10.32.3.0/24".parse().unwrap());
    r.exposed.insert("10.32.0.1/12".parse().unwrap());
    r.published.extend(published.iter().copied());
    r
}

fn web(proto: Proto) -> Published {
    published(proto, 8080, 80)
}

#[test]
fn published_port_reaches_the_container_until_removed() {
    let mut nss = Namespaces::new();
    let host = host_with_bridge(&mut nss);
    let ctr = container(&mut nss, &host, "ctr", "10.32.2.2/24");
    let neighbour = container(&mut nss, &host, "nbr", "10.32.3.2/24");
    let other = other_host(&mut nss, &host);
    // What the router sets so that 127.0.0.1 can be DNATed out of the bridge.
    ns_exec(
        &host,
        &["sysctl", "-qw", "net.ipv4.conf.weft.route_localnet=1"],
    );
    let _tcp = Server::tcp(&ctr, 80);
    let _udp = Server::udp(&ctr, 80);

    assert_eq!(
        tcp_get(&other, "192.168.77.1:8080"),
        None,
        "nothing published yet"
    );

    firewall(&host)
        .apply(&rules(&[web(Proto::Tcp), web(Proto::Udp)]))
        .unwrap();

    // From another host: the client's address is kept.
    assert_eq!(
        tcp_get(&other, "192.168.77.1:8080").as_deref(),
        Some("hello 192.168.77.2"),
        "other host -> host:8080 must reach the container's :80"
    );
    assert_eq!(
        udp_get(&other, "192.168.77.1:8080").as_deref(),
        Some("hello 192.168.77.2"),
        "UDP too"
    );
    // From the host itself, on its underlay address and on loopback (masqueraded to the
    // host's bridge address, as a container cannot answer 127.0.0.1).
    assert_eq!(
        tcp_get(&host, "192.168.77.1:8080").as_deref(),
        Some("hello 192.168.77.1")
    );
    assert_eq!(
        tcp_get(&host, "127.0.0.1:8080").as_deref(),
        Some("hello 10.32.0.1"),
        "host -> 127.0.0.1:8080 must reach the container"
    );
    assert_eq!(
        udp_get(&host, "127.0.0.1:8080").as_deref(),
        Some("hello 10.32.0.1")
    );
    // A container of another subnet cannot reach the container directly, but can reach
    // its published port through the host (a published port is public).
    assert_eq!(
        tcp_get(&neighbour, "10.32.2.2:80"),
        None,
        "isolation between 10.32.3/24 and 10.32.2/24 must hold"
    );
    assert_eq!(
        tcp_get(&neighbour, "192.168.77.1:8080").as_deref(),
        Some("hello 10.32.0.1")
    );

    // The same rules without the mapping: the port is closed again everywhere.
    firewall(&host).apply(&rules(&[])).unwrap();
    assert_eq!(
        tcp_get(&other, "192.168.77.1:8080"),
        None,
        "mapping removed"
    );
    assert_eq!(
        udp_get(&other, "192.168.77.1:8080"),
        None,
        "UDP mapping removed"
    );
    assert_eq!(tcp_get(&host, "127.0.0.1:8080"), None, "mapping removed");
    assert_eq!(tcp_get(&host, "192.168.77.1:8080"), None, "mapping removed");

    // Back, then a reset takes it away with weft's tables.
    firewall(&host).apply(&rules(&[web(Proto::Tcp)])).unwrap();
    assert!(tcp_get(&other, "192.168.77.1:8080").is_some());
    firewall(&host).reset().unwrap();
    assert_eq!(
        tcp_get(&other, "192.168.77.1:8080"),
        None,
        "reset removes it"
    );
    let listed = ns_exec(&host, &["nft", "list", "ruleset"]);
    assert!(!listed.contains("weft"), "left after reset: {listed}");
}

#[test]
fn published_on_one_host_address_only() {
    let mut nss = Namespaces::new();
    let host = host_with_bridge(&mut nss);
    let ctr = container(&mut nss, &host, "ctr", "10.32.2.2/24");
    let other = other_host(&mut nss, &host);
    // A second address on the host's uplink.
    ip(&host, "addr add 192.168.77.3/24 dev uplink");
    let _tcp = Server::tcp(&ctr, 80);
    let p = Published {
        host_ip: Some("192.168.77.3".parse().unwrap()),
        ..web(Proto::Tcp)
    };
    firewall(&host).apply(&rules(&[p])).unwrap();
    assert_eq!(
        tcp_get(&other, "192.168.77.3:8080").as_deref(),
        Some("hello 192.168.77.2")
    );
    assert_eq!(
        tcp_get(&other, "192.168.77.1:8080"),
        None,
        "published on 192.168.77.3 only"
    );
}

#[test]
fn conflicting_mappings_are_refused_and_change_nothing() {
    let mut nss = Namespaces::new();
    let host = host_with_bridge(&mut nss);
    firewall(&host).apply(&rules(&[web(Proto::Tcp)])).unwrap();
    let before = ns_exec(&host, &["nft", "list", "ruleset"]);
    let clash = Published {
        addr: "10.32.2.3".parse().unwrap(),
        ..web(Proto::Tcp)
    };
    let err = firewall(&host)
        .apply(&rules(&[web(Proto::Tcp), clash]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already published"), "{err}");
    assert_eq!(before, ns_exec(&host, &["nft", "list", "ruleset"]));
}
