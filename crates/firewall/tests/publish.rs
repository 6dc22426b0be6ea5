//! Published ports on the real kernel: a container's port reached through the host's own
//! addresses, from another host, from the host itself (127.0.0.1 included) and from a
//! container of another, isolated subnet; gone once the mapping is.

mod common;

use common::*;
use weft_firewall::{Firewall, Proto, Published};

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
        .apply(&host_rules(&[web(Proto::Tcp), web(Proto::Udp)]))
        .unwrap();

    // From another host the client's address is kept. From the host itself, on its
    // underlay address and on loopback, it is masqueraded to the host's bridge address (a
    // container cannot answer 127.0.0.1). A container of another subnet cannot reach the
    // container directly, but can reach its published port through the host (a published
    // port is public).
    assert_answers(&[
        (
            "other host -> host:8080 must reach the container's :80",
            tcp_get,
            &other,
            "192.168.77.1:8080",
            Some("hello 192.168.77.2"),
        ),
        (
            "UDP too",
            udp_get,
            &other,
            "192.168.77.1:8080",
            Some("hello 192.168.77.2"),
        ),
        (
            "host -> its underlay address:8080",
            tcp_get,
            &host,
            "192.168.77.1:8080",
            Some("hello 192.168.77.1"),
        ),
        (
            "host -> 127.0.0.1:8080 must reach the container",
            tcp_get,
            &host,
            "127.0.0.1:8080",
            Some("hello 10.32.0.1"),
        ),
        (
            "host -> 127.0.0.1:8080, UDP",
            udp_get,
            &host,
            "127.0.0.1:8080",
            Some("hello 10.32.0.1"),
        ),
        (
            "isolation between 10.32.3/24 and 10.32.2/24 must hold",
            tcp_get,
            &neighbour,
            "10.32.2.2:80",
            None,
        ),
        (
            "another subnet's container -> host:8080",
            tcp_get,
            &neighbour,
            "192.168.77.1:8080",
            Some("hello 10.32.0.1"),
        ),
    ]);

    // The same rules without the mapping: the port is closed again everywhere.
    firewall(&host).apply(&host_rules(&[])).unwrap();
    assert_answers(&[
        (
            "mapping removed",
            tcp_get,
            &other,
            "192.168.77.1:8080",
            None,
        ),
        (
            "UDP mapping removed",
            udp_get,
            &other,
            "192.168.77.1:8080",
            None,
        ),
        ("mapping removed", tcp_get, &host, "127.0.0.1:8080", None),
        ("mapping removed", tcp_get, &host, "192.168.77.1:8080", None),
    ]);

    // Back, then a reset takes it away with weft's tables.
    firewall(&host)
        .apply(&host_rules(&[web(Proto::Tcp)]))
        .unwrap();
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
    firewall(&host).apply(&host_rules(&[p])).unwrap();
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
    firewall(&host)
        .apply(&host_rules(&[web(Proto::Tcp)]))
        .unwrap();
    let before = ns_exec(&host, &["nft", "list", "ruleset"]);
    let clash = Published {
        addr: "10.32.2.3".parse().unwrap(),
        ..web(Proto::Tcp)
    };
    let err = firewall(&host)
        .apply(&host_rules(&[web(Proto::Tcp), clash]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already published"), "{err}");
    assert_eq!(before, ns_exec(&host, &["nft", "list", "ruleset"]));
}
