//! The service table on the real kernel, in namespaces this test makes: a client
//! container's VIP spread round robin over three tasks that see its own address, an
//! established connection kept while the endpoints change, published ports of a host
//! (from another host, from the host itself on its address and on 127.0.0.1, from a
//! container of another, isolated subnet) reaching a task through the bridge, masqueraded;
//! TCP and UDP; nothing left after `delete()`; with `route_localnet` on, the host's
//! loopback kept from other hosts.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use common::*;
use weft_firewall::{CommandRunner, Firewall, Proto, Ruleset, SvcRule, SvcScope, SvcTable};

/// The service's VIP, in the tasks' subnet.
const VIP: &str = "10.32.2.100";

/// Three tasks `t1..t3` (10.32.2.11-13) answering their name on TCP and UDP port 80.
struct Tasks {
    names: Vec<String>,
    addrs: Vec<Ipv4Addr>,
    _servers: Vec<Server>,
}

fn tasks(nss: &mut Namespaces, host: &str) -> Tasks {
    let mut t = Tasks {
        names: Vec::new(),
        addrs: Vec::new(),
        _servers: Vec::new(),
    };
    for i in 1..=3u8 {
        let name = format!("t{i}");
        let addr = Ipv4Addr::new(10, 32, 2, 10 + i);
        let ns = container(nss, host, &name, &format!("{addr}/24"));
        t._servers.push(Server::tcp_named(&ns, 80, &name));
        t._servers.push(Server::udp_named(&ns, 80, &name));
        t.names.push(name);
        t.addrs.push(addr);
    }
    t
}

fn web(backends: &[Ipv4Addr]) -> SvcRule {
    SvcRule {
        name: "web".into(),
        vip: Some(VIP.parse().unwrap()),
        ports: vec![(Proto::Tcp, 80), (Proto::Udp, 80)],
        published: vec![(Proto::Tcp, 8000, 80), (Proto::Udp, 8000, 80)],
        backends: backends.to_vec(),
    }
}

/// How many of `n` answers (`NAME PEER`) each task gave, checking every one came from
/// `peer`; an unanswered request fails the test.
fn spread(
    n: usize,
    peer: &str,
    mut ask: impl FnMut() -> Option<String>,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let a = ask().unwrap_or_else(|| panic!("request {i} of {n} got no answer"));
        let (name, saw) = a
            .split_once(' ')
            .unwrap_or_else(|| panic!("odd answer {a:?}"));
        assert_eq!(saw, peer, "the task saw {saw}, not the client's {peer}");
        *seen.entry(name.to_string()).or_insert(0) += 1;
    }
    seen
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn tables(ns: &str) -> String {
    ns_exec(ns, &["nft", "list", "tables"])
}

/// A host with the three tasks and a client container (10.32.2.2) whose Container-scope
/// table has been synced once with all three.
fn client_with_table(nss: &mut Namespaces) -> (Tasks, String, SvcTable<CommandRunner>) {
    let host = host_with_bridge(nss);
    let t = tasks(nss, &host);
    let client = container(nss, &host, "cli", "10.32.2.2/24");
    let mut table = SvcTable::new(runner(&client), SvcScope::Container);
    let stats = table.sync(&[web(&t.addrs)]).unwrap();
    assert!(stats.full, "a new table's first sync is whole");
    (t, client, table)
}

#[test]
fn container_vip_round_robin_keeps_the_client_address_and_established_connections() {
    let mut nss = Namespaces::new();
    let (t, client, mut table) = client_with_table(&mut nss);

    let to = format!("{VIP}:80");
    let all = counts(&[("t1", 10), ("t2", 10), ("t3", 10)]);
    assert_eq!(
        spread(30, "10.32.2.2", || tcp_get(&client, &to)),
        all,
        "TCP"
    );
    assert_eq!(
        spread(30, "10.32.2.2", || udp_get(&client, &to)),
        all,
        "UDP"
    );
    // A published port means nothing inside a container.
    assert_eq!(tcp_get(&client, "10.32.2.2:8000"), None);

    // A connection held open across a change of the endpoints keeps its task.
    let sock: SocketAddr = to.parse().unwrap();
    let held = in_netns(&client, || {
        TcpStream::connect_timeout(&sock, CLIENT_TIMEOUT)
    })
    .expect("connect to the VIP");
    held.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let mut r = BufReader::new(held.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    let task = greeting.split(' ').next().unwrap().to_string();
    let i = t.names.iter().position(|n| *n == task).unwrap();
    let rest: Vec<Ipv4Addr> = (0..3)
        .filter(|j| *j != (i + 1) % 3)
        .map(|j| t.addrs[j])
        .collect();
    let stats = table.sync(&[web(&rest)]).unwrap();
    assert!(!stats.full);
    assert_eq!(stats.changed, 1);
    (&held).write_all(b"still there?\n").unwrap();
    let mut echo = String::new();
    r.read_line(&mut echo).unwrap();
    assert_eq!(
        echo,
        format!("{task} still there?\n"),
        "the held connection moved"
    );

    // New connections go to the two tasks left, evenly.
    let left = spread(20, "10.32.2.2", || tcp_get(&client, &to));
    let expect: BTreeMap<String, usize> = (0..3)
        .filter(|j| *j != (i + 1) % 3)
        .map(|j| (t.names[j].clone(), 10))
        .collect();
    assert_eq!(left, expect);
    drop(held);

    // No task: refused at once (a reset), not left to time out.
    table.sync(&[web(&[])]).unwrap();
    let refused = in_netns(&client, || {
        TcpStream::connect_timeout(&sock, CLIENT_TIMEOUT)
    });
    let e = refused.expect_err("no task, yet connected");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

    table.delete().unwrap();
    table.delete().unwrap();
    assert!(!tables(&client).contains("weft_svc"), "{}", tables(&client));
}

#[test]
fn published_ports_reach_a_task_through_the_bridge_masqueraded() {
    let mut nss = Namespaces::new();
    let host = host_with_bridge(&mut nss);
    let t = tasks(&mut nss, &host);
    let other = other_host(&mut nss, &host);
    let neighbour = container(&mut nss, &host, "nbr", "10.32.3.2/24");
    // What the router sets so that 127.0.0.1 can be DNATed out of the bridge.
    ns_exec(
        &host,
        &["sysctl", "-qw", "net.ipv4.conf.weft.route_localnet=1"],
    );
    // weft's own table isolates the two subnets, with no published port of its own: the
    // service table's mark is what lets a bridged DNAT through.
    let mut isolation = Ruleset {
        range: Some("10.32.0.0/12".parse().unwrap()),
        bridge: Some("weft".into()),
        ..Default::default()
    };
    isolation
        .isolated_subnets
        .insert("10.32.2.0/24".parse().unwrap());
    isolation
        .isolated_subnets
        .insert("10.32.3.0/24".parse().unwrap());
    isolation.exposed.insert("10.32.0.1/12".parse().unwrap());
    firewall(&host).apply(&isolation).unwrap();
    assert_eq!(
        tcp_get(&neighbour, "10.32.2.11:80"),
        None,
        "isolation must hold"
    );

    let mut table = SvcTable::new(runner(&host), SvcScope::Host);
    table.sync(&[web(&t.addrs)]).unwrap();
    // Every published connection leaves through the bridge with the host's address there.
    let me = "10.32.0.1";
    let all = counts(&[("t1", 2), ("t2", 2), ("t3", 2)]);
    for (from, to) in [
        (&other, "192.168.77.1:8000"),
        (&host, "192.168.77.1:8000"),
        (&host, "127.0.0.1:8000"),
        (&neighbour, "192.168.77.1:8000"),
    ] {
        assert_eq!(
            spread(6, me, || tcp_get(from, to)),
            all,
            "TCP {from} -> {to}"
        );
        assert_eq!(
            spread(6, me, || udp_get(from, to)),
            all,
            "UDP {from} -> {to}"
        );
    }
    // The host's own VIP traffic is not masqueraded (it has an address on the subnet).
    let to = format!("{VIP}:80");
    assert_eq!(spread(3, me, || tcp_get(&host, &to)).len(), 3);
    // One task left: everything goes there.
    table.sync(&[web(&t.addrs[1..2])]).unwrap();
    assert_eq!(
        spread(4, me, || tcp_get(&other, "192.168.77.1:8000")),
        counts(&[("t2", 4)])
    );

    // No task: refused at once, from outside and from the host itself.
    table.sync(&[web(&[])]).unwrap();
    for (from, to) in [(&other, "192.168.77.1:8000"), (&host, "127.0.0.1:8000")] {
        let to: SocketAddr = to.parse().unwrap();
        let e = in_netns(from, || TcpStream::connect_timeout(&to, CLIENT_TIMEOUT))
            .expect_err("no task, yet connected");
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{from} -> {to}: {e}"
        );
    }

    table.delete().unwrap();
    assert!(!tables(&host).contains("weft_svc"), "{}", tables(&host));
    assert_eq!(
        tcp_get(&other, "192.168.77.1:8000"),
        None,
        "still published after delete"
    );
    // The next sync programs it whole again.
    assert!(table.sync(&[web(&t.addrs)]).unwrap().full);
    assert!(tcp_get(&other, "192.168.77.1:8000").is_some());
    table.delete().unwrap();
}

#[test]
fn a_table_removed_behind_its_back_is_rebuilt_on_the_next_sync() {
    let mut nss = Namespaces::new();
    let (t, client, mut table) = client_with_table(&mut nss);
    ns_exec(&client, &["nft", "delete", "table", "ip", "weft_svc"]);
    // The difference is refused (its chains are gone): the same sync programs it whole.
    assert!(table.sync(&[web(&t.addrs[..2])]).unwrap().full);
    let to = format!("{VIP}:80");
    assert_eq!(spread(4, "10.32.2.2", || tcp_get(&client, &to)).len(), 2);
    // One task (a goto, no round-robin map), then three again (the map comes back).
    table.sync(&[web(&t.addrs[2..])]).unwrap();
    assert_eq!(
        spread(2, "10.32.2.2", || tcp_get(&client, &to)),
        counts(&[("t3", 2)])
    );
    table.sync(&[web(&t.addrs)]).unwrap();
    let all = counts(&[("t1", 1), ("t2", 1), ("t3", 1)]);
    assert_eq!(spread(3, "10.32.2.2", || tcp_get(&client, &to)), all);
}

#[test]
fn with_route_localnet_on_only_loopback_reaches_the_hosts_loopback() {
    let mut nss = Namespaces::new();
    let host = host_with_bridge(&mut nss);
    let other = other_host(&mut nss, &host);
    // kube-proxy's setting (for every interface), in this test's host namespace only.
    ns_exec(
        &host,
        &["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
    );
    // The other host sends 127.0.0.53 to this host, as an attacker on the link could.
    ns_exec(
        &other,
        &["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
    );
    ip(&other, "route del 127.0.0.0/8 dev lo table local");
    ip(&other, "route add 127.0.0.53/32 via 192.168.77.1 dev eth0");
    let _local_only = Server::tcp(&host, 9999);
    assert_eq!(
        tcp_get(&other, "127.0.0.53:9999").as_deref(),
        Some("hello 192.168.77.2"),
        "without the service table, route_localnet exposes the host's loopback (the premise of this test)"
    );
    let mut table = SvcTable::new(runner(&host), SvcScope::Host);
    table.sync(&[]).unwrap();
    assert_eq!(
        tcp_get(&other, "127.0.0.53:9999"),
        None,
        "the Host table must keep other hosts off the host's loopback"
    );
    assert_eq!(
        tcp_get(&host, "127.0.0.53:9999").as_deref(),
        Some("hello 127.0.0.1"),
        "the host itself still reaches its loopback"
    );
    table.delete().unwrap();
}
