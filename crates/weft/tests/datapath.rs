//! End-to-end tests of the data path on labs of network namespaces: real routers, the
//! kernel's bridge and VXLAN device, the sleeve's TAP and UDP sockets, real nftables.

use std::time::{Duration, Instant};

use weft_api::Report;
use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn report(lab: &Lab, host: &str) -> Option<Report> {
    lab.report(host)
}

/// The path `host` uses on its established connection to the peer nicknamed `nick`.
fn path_to(lab: &Lab, host: &str, nick: &str) -> Option<(String, Option<u32>)> {
    let r = report(lab, host)?;
    observe(format!("{host}: {:?}", r.router.connections));
    r.router
        .connections
        .iter()
        .find(|c| c.state == "established" && c.peer.ends_with(&format!("({nick})")))
        .map(|c| (c.path.clone(), c.mtu))
}

fn wait_path(lab: &Lab, host: &str, nick: &str, path: &str, within: Duration) -> Duration {
    let start = Instant::now();
    wait_for(&format!("{host} to reach {nick} by {path}"), within, || {
        path_to(lab, host, nick)
            .filter(|(p, _)| p == path)
            .map(|_| ())
    });
    start.elapsed()
}

fn launch(lab: &Lab, host: &str, peers: &[&str]) {
    let mut args = vec!["launch", "--nickname", host];
    args.extend_from_slice(peers);
    lab.weft_ok(host, &args);
}

fn container(lab: &Lab, host: &str, name: &str, addr: &str) {
    lab.container_ok(host, name, &[addr]);
    // Answer pings to broadcast and multicast addresses (for the flooding checks).
    let out = lab.exec(
        name,
        &["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"],
    );
    assert!(out.status.success(), "sysctl in {name}");
}

/// `ip -o link show ethwe` in a container: its weft interface, on one line.
fn ethwe_link(lab: &Lab, container: &str) -> String {
    let link = lab.exec(container, &["ip", "-o", "link", "show", "ethwe"]);
    String::from_utf8_lossy(&link.stdout).into_owned()
}

fn ping_ok(lab: &Lab, from: &str, ip: &str) -> bool {
    lab.exec(from, &["ping", "-c1", "-W1", ip]).status.success()
}

/// Whether `ip` answers `from` now: one of three pings, each given 2 s (a path that
/// works may still lose one ping, or answer late, on a loaded machine).
fn reaches(lab: &Lab, from: &str, ip: &str) -> bool {
    lab.exec(from, &["ping", "-c3", "-i0.2", "-W2", ip])
        .status
        .success()
}

fn wait_ping(lab: &Lab, from: &str, ip: &str) {
    wait_for(
        &format!("{from} to ping {ip}"),
        Duration::from_secs(10),
        || {
            let out = lab.exec(from, &["ping", "-c1", "-W1", ip]);
            observe(String::from_utf8_lossy(&out.stdout).trim().to_string());
            out.status.success().then_some(())
        },
    );
}

/// Pings a broadcast/multicast address for 2 s and returns, per answering address, how
/// many distinct requests it answered; panics if any request was answered twice by the
/// same address (a frame delivered twice).
fn answers(lab: &Lab, from: &str, args: &[&str]) -> std::collections::BTreeMap<String, usize> {
    let mut cmd = vec!["ping", "-i0.3", "-w2"];
    cmd.extend_from_slice(args);
    let out = String::from_utf8_lossy(&lab.exec(from, &cmd).stdout).into_owned();
    let mut seen = std::collections::BTreeSet::new();
    let mut per = std::collections::BTreeMap::new();
    for l in out.lines() {
        let (Some(ip), Some(seq)) = (
            l.split("from ").nth(1).and_then(|r| r.split(':').next()),
            l.split("icmp_seq=")
                .nth(1)
                .and_then(|r| r.split(' ').next()),
        ) else {
            continue;
        };
        assert!(
            seen.insert((ip.to_string(), seq.to_string())),
            "{ip} answered request {seq} twice (duplicate delivery) from {from}: {out}"
        );
        *per.entry(ip.to_string()).or_insert(0) += 1;
    }
    per
}

fn answered_by(per: &std::collections::BTreeMap<String, usize>, ip: &str) -> usize {
    per.get(ip).copied().unwrap_or(0)
}

/// nftables in `host` that drops UDP to port 6784 to and from `other` (its underlay address).
fn block_fastdp(lab: &Lab, host: &str, other: &str) {
    let ip = lab.underlay_ip(other).to_string();
    let script = format!(
        "add table inet testblk; \
         add chain inet testblk out {{ type filter hook output priority -10 ; }} ; \
         add rule inet testblk out ip daddr {ip} udp dport 6784 drop; \
         add chain inet testblk in {{ type filter hook input priority -10 ; }} ; \
         add rule inet testblk in ip saddr {ip} udp dport 6784 drop"
    );
    let out = lab.exec(host, &["nft", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unblock(lab: &Lab, host: &str) {
    let out = lab.exec(host, &["nft", "delete table inet testblk"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What weft left in a host: its links, FDB entries with a remote, nftables tables.
fn leftovers(lab: &Lab, host: &str) -> Vec<String> {
    let mut left = Vec::new();
    let links = String::from_utf8_lossy(&lab.exec(host, &["ip", "-o", "link"]).stdout).into_owned();
    for l in links.lines() {
        if l.contains(": weft")
            || l.contains("vxlan-6784")
            || l.contains("vethwe")
            || l.contains("weft-sleeve")
        {
            left.push(l.to_string());
        }
    }
    let fdb =
        String::from_utf8_lossy(&lab.exec(host, &["bridge", "fdb", "show"]).stdout).into_owned();
    left.extend(
        fdb.lines()
            .filter(|l| l.contains(" dst "))
            .map(String::from),
    );
    let tables =
        String::from_utf8_lossy(&lab.exec(host, &["nft", "list", "tables"]).stdout).into_owned();
    left.extend(
        tables
            .lines()
            .filter(|l| l.contains("weft"))
            .map(String::from),
    );
    let addrs = String::from_utf8_lossy(&lab.exec(host, &["ip", "-o", "addr"]).stdout).into_owned();
    left.extend(
        addrs
            .lines()
            .filter(|l| l.contains("10.32."))
            .map(String::from),
    );
    left
}

#[test]
fn three_hosts_fastdp_flooding_and_failover_to_sleeve_and_back() {
    require_root_and_tools(&["ip", "nft", "ping", "iperf3"]);
    let lab = Lab::up(WEFT, 3);
    launch(&lab, "h1", &["h2", "h3"]);
    launch(&lab, "h2", &["h1", "h3"]);
    launch(&lab, "h3", &["h1", "h2"]);
    for (h, others) in [
        ("h1", ["h2", "h3"]),
        ("h2", ["h1", "h3"]),
        ("h3", ["h1", "h2"]),
    ] {
        for o in others {
            wait_path(&lab, h, o, "fastdp", Duration::from_secs(15));
        }
    }
    let (_, mtu) = path_to(&lab, "h1", "h2").unwrap_or_default();
    assert_eq!(mtu, Some(1450), "fastdp MTU on a 1500 underlay");

    container(&lab, "h1", "c1", "ip:10.32.0.1/12");
    container(&lab, "h2", "c2", "ip:10.32.0.2/12");
    container(&lab, "h3", "c3", "ip:10.32.0.3/12");
    let link = ethwe_link(&lab, "c1");
    assert!(
        link.contains("mtu 1450 "),
        "container MTU = underlay - VXLAN overhead: {link}"
    );
    let addr = |c: &str| format!("10.32.0.{}", &c[1..]);
    for from in ["c1", "c2", "c3"] {
        for to in ["c1", "c2", "c3"] {
            if from != to {
                wait_ping(&lab, from, &addr(to));
            }
        }
    }

    // Broadcast and multicast reach the containers on every host, each exactly once.
    for args in [
        vec!["-b", "10.47.255.255"],
        vec!["-I", "ethwe", "224.0.0.1"],
    ] {
        let out = answers(&lab, "c1", &args);
        for ip in ["10.32.0.2", "10.32.0.3"] {
            assert!(answered_by(&out, ip) >= 5, "{args:?}: {out:?}");
        }
    }

    // TCP across hosts, held open while fastdp between h1 and h2 breaks and heals.
    let _server = lab.spawn("c2", &["iperf3", "-s", "-1"]);
    wait_for("iperf3 server in c2", Duration::from_secs(5), || {
        let out = lab.exec("c2", &["ss", "-ltn"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(":5201")
            .then_some(())
    });
    std::thread::scope(|s| {
        let client = s.spawn(|| {
            lab.exec(
                "c1",
                &[
                    "iperf3",
                    "-c",
                    "10.32.0.2",
                    "-t",
                    "16",
                    "-b",
                    "50M",
                    "-i",
                    "0",
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        block_fastdp(&lab, "h1", "h2");
        block_fastdp(&lab, "h2", "h1");
        let took = wait_path(&lab, "h1", "h2", "sleeve", Duration::from_secs(5));
        wait_path(&lab, "h2", "h1", "sleeve", Duration::from_secs(5));
        eprintln!("h1-h2 moved to the sleeve in {took:?}");
        // The other pairs stay on fastdp.
        assert_eq!(
            path_to(&lab, "h1", "h3").map(|p| p.0).as_deref(),
            Some("fastdp")
        );
        let (_, mtu) = path_to(&lab, "h1", "h2").unwrap_or_default();
        assert_eq!(mtu, Some(1418), "sleeve MTU on a 1500 underlay");
        wait_ping(&lab, "c1", "10.32.0.2");
        wait_ping(&lab, "c2", "10.32.0.1");
        let out = answers(&lab, "c1", &["-b", "10.47.255.255"]);
        assert!(
            answered_by(&out, "10.32.0.2") >= 5,
            "broadcast over the sleeve: {out:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
        unblock(&lab, "h1");
        unblock(&lab, "h2");
        let took = wait_path(&lab, "h1", "h2", "fastdp", Duration::from_secs(10));
        eprintln!("h1-h2 back on fastdp in {took:?}");
        let out = client.join().expect("iperf3 client thread");
        assert!(
            out.status.success(),
            "the TCP stream broke during the path changes: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    assert!(ping_ok(&lab, "c1", "10.32.0.2"));
}

#[test]
fn line_topology_relays_through_the_middle_host() {
    require_root_and_tools(&["ip", "nft", "ping"]);
    let lab = Lab::up(WEFT, 3);
    let init = ["--ipalloc-init", "consensus=3"];
    launch(&lab, "h1", &[init[0], init[1], "h2", "h3"]);
    launch(&lab, "h2", &[init[0], init[1], "h1", "h3"]);
    launch(&lab, "h3", &[init[0], init[1], "h1", "h2"]);
    wait_path(&lab, "h1", "h3", "fastdp", Duration::from_secs(15));
    container(&lab, "h1", "c1", "ip:10.32.0.1/12");
    container(&lab, "h2", "c2", "ip:10.32.0.2/12");
    container(&lab, "h3", "c3", "ip:10.32.0.3/12");
    // Now h1 and h3 lose each other on the underlay entirely: the mesh drops their
    // connection and routes through h2; the data path relays through h2's sleeve.
    for (h, other) in [("h1", "h3"), ("h3", "h1")] {
        let ip = lab.underlay_ip(other).to_string();
        let script = format!(
            "add table inet testblk; \
             add chain inet testblk out {{ type filter hook output priority -10 ; }} ; \
             add rule inet testblk out ip daddr {ip} drop; \
             add chain inet testblk in {{ type filter hook input priority -10 ; }} ; \
             add rule inet testblk in ip saddr {ip} drop"
        );
        assert!(lab.exec(h, &["nft", &script]).status.success());
    }
    wait_for(
        "h1 to lose its connection to h3",
        Duration::from_secs(20),
        || path_to(&lab, "h1", "h3").is_none().then_some(()),
    );
    wait_ping(&lab, "c1", "10.32.0.3");
    wait_ping(&lab, "c3", "10.32.0.1");
    wait_ping(&lab, "c1", "10.32.0.2");
    // Broadcasts reach both other hosts, each request once (the middle one passes them on).
    for (from, others) in [
        ("c1", ["10.32.0.2", "10.32.0.3"]),
        ("c3", ["10.32.0.1", "10.32.0.2"]),
    ] {
        let out = answers(&lab, from, &["-b", "10.47.255.255"]);
        for ip in others {
            assert!(answered_by(&out, ip) >= 5, "from {from}: {out:?}");
        }
    }
    let r = report(&lab, "h1").expect("h1 report");
    assert!(
        !r.router
            .connections
            .iter()
            .any(|c| c.state == "established" && c.peer.ends_with("(h3)")),
        "h1 has no direct connection to h3"
    );
}

#[test]
fn expose_hide_stop_and_reset_leave_nothing() {
    require_root_and_tools(&["ip", "nft", "ping", "bridge"]);
    let lab = Lab::up(WEFT, 2);
    launch(&lab, "h1", &["h2"]);
    launch(&lab, "h2", &["h1"]);
    wait_path(&lab, "h1", "h2", "fastdp", Duration::from_secs(15));
    container(&lab, "h1", "c1", "ip:10.32.0.1/12");
    container(&lab, "h2", "c2", "ip:10.32.0.2/12");
    wait_ping(&lab, "c1", "10.32.0.2");

    // Expose: the host reaches local and remote containers, and they reach it.
    let out = lab.weft_ok("h1", &["expose", "ip:10.32.0.100/12"]);
    assert_eq!(out.trim(), "10.32.0.100/12");
    wait_ping(&lab, "h1", "10.32.0.1");
    wait_ping(&lab, "h1", "10.32.0.2");
    wait_ping(&lab, "c2", "10.32.0.100");
    wait_ping(&lab, "c1", "10.32.0.100");
    let rules = lab.exec("h1", &["nft", "list", "table", "inet", "weft"]);
    assert!(
        String::from_utf8_lossy(&rules.stdout).contains("masquerade"),
        "masquerade rules after expose"
    );
    let out = lab.weft_ok("h1", &["hide"]);
    assert_eq!(out.trim(), "10.32.0.100/12");
    assert!(
        !ping_ok(&lab, "h1", "10.32.0.2"),
        "hidden host still reaches c2"
    );

    // Stop leaves fastdp in the kernel: the containers keep talking; a relaunch resumes.
    lab.weft_ok("h2", &["stop"]);
    assert!(
        reaches(&lab, "c1", "10.32.0.2"),
        "fastdp broke when h2's router stopped"
    );
    // The moment h1 could drop h2's entries is when it sees h2's router go: wait for that
    // (not for a time), then they must still talk.
    wait_for(
        "h1 to see h2's router gone",
        Duration::from_secs(20),
        || path_to(&lab, "h1", "h2").is_none().then_some(()),
    );
    assert!(
        reaches(&lab, "c1", "10.32.0.2") && reaches(&lab, "c2", "10.32.0.1"),
        "fastdp broke once h1 saw h2's router go"
    );
    launch(&lab, "h2", &["h1"]);
    wait_path(&lab, "h1", "h2", "fastdp", Duration::from_secs(15));
    wait_ping(&lab, "c1", "10.32.0.2");

    // Reset with the router running, and without one.
    lab.weft_ok("h1", &["expose", "ip:10.32.0.100/12"]);
    lab.weft_ok("h1", &["reset"]);
    let left = leftovers(&lab, "h1");
    assert!(left.is_empty(), "h1 after reset: {left:#?}");
    let inside = lab.exec("c1", &["ip", "-o", "link", "show", "ethwe"]);
    assert!(!inside.status.success(), "c1 still has ethwe after reset");
    lab.weft_ok("h2", &["stop"]);
    assert!(
        !leftovers(&lab, "h2").is_empty(),
        "stop removed the data path"
    );
    lab.weft_ok("h2", &["reset"]);
    let left = leftovers(&lab, "h2");
    assert!(
        left.is_empty(),
        "h2 after reset without a router: {left:#?}"
    );
}

#[test]
fn password_keeps_traffic_on_the_encrypted_sleeve() {
    require_root_and_tools(&["ip", "ping"]);
    let lab = Lab::up(WEFT, 2);
    let pw = ["--password", "s3cret", "--mtu", "1300"];
    launch(&lab, "h1", &[pw[0], pw[1], pw[2], pw[3], "h2"]);
    launch(&lab, "h2", &[pw[0], pw[1], pw[2], pw[3], "h1"]);
    // Without IPsec in this kernel, VXLAN would be clear text: the sealed sleeve carries it.
    wait_path(&lab, "h1", "h2", "sleeve", Duration::from_secs(15));
    let (_, mtu) = path_to(&lab, "h1", "h2").unwrap_or_default();
    assert_eq!(mtu, Some(1300), "--mtu 1300 (a sealed sleeve fits 1402)");
    container(&lab, "h1", "c1", "ip:10.32.0.1/12");
    let link = ethwe_link(&lab, "c1");
    assert!(
        link.contains("mtu 1300 "),
        "container MTU from --mtu: {link}"
    );
    container(&lab, "h2", "c2", "ip:10.32.0.2/12");
    wait_ping(&lab, "c1", "10.32.0.2");
    wait_ping(&lab, "c2", "10.32.0.1");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        path_to(&lab, "h1", "h2").map(|p| p.0).as_deref(),
        Some("sleeve"),
        "fastdp must not be used with a password outside --trusted-subnets"
    );
}
