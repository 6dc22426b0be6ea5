//! Path MTU end to end: a host whose underlay drops incoming weft datagrams (UDP 6783 and
//! 6784) above a size (nftables in its namespace, as a tunnel or a cloud path smaller
//! than the interface would) still gets big pings and a TCP stream through, both ways,
//! within 45 s, with fastdp open and with fastdp blocked; `weft status connections` shows
//! the discovered path MTU. Real routers, kernel, TAP and nftables in lab namespaces.

use std::time::{Duration, Instant};

use weft_api::Report;
use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn nft(lab: &Lab, host: &str, script: &str) {
    let out = lab.exec(host, &["nft", script]);
    assert!(
        out.status.success(),
        "nft on {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `host` drops every incoming weft datagram longer than `limit` bytes (IP included).
fn drop_above(lab: &Lab, host: &str, limit: u32) {
    nft(
        lab,
        host,
        &format!(
            "add table inet pmtutest; \
             add chain inet pmtutest in {{ type filter hook input priority -10 ; }} ; \
             add rule inet pmtutest in udp dport {{ 6783, 6784 }} meta length > {limit} drop"
        ),
    );
}

/// `host` drops all fastdp (UDP 6784) both ways.
fn block_fastdp(lab: &Lab, host: &str) {
    nft(
        lab,
        host,
        "add table inet fdptest; \
         add chain inet fdptest out { type filter hook output priority -10 ; } ; \
         add rule inet fdptest out udp dport 6784 drop; \
         add chain inet fdptest in { type filter hook input priority -10 ; } ; \
         add rule inet fdptest in udp dport 6784 drop",
    );
}

fn report(lab: &Lab, host: &str) -> Option<Report> {
    let out = lab.weft(host, &["report"]);
    serde_json::from_slice(&out.stdout).ok()
}

fn established_path(lab: &Lab, host: &str, nick: &str) -> Option<String> {
    let r = report(lab, host)?;
    observe(format!("{host}: {:?}", r.router.connections));
    r.router
        .connections
        .iter()
        .find(|c| c.state == "established" && c.peer.ends_with(&format!("({nick})")))
        .map(|c| c.path.clone())
}

fn iperf_ok(lab: &Lab, reverse: bool) -> bool {
    let mut cmd = vec![
        "iperf3",
        "-c",
        "10.32.0.1",
        "-t",
        "2",
        "-i",
        "0",
        "--connect-timeout",
        "3000",
    ];
    if reverse {
        cmd.push("-R");
    }
    let out = lab.exec("c2", &cmd);
    observe(format!(
        "iperf3 {cmd:?}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ));
    out.status.success()
}

fn scenario(limit: u32, fastdp: bool) {
    require_root_and_tools(&["ip", "nft", "ping", "iperf3"]);
    let lab = Lab::up(WEFT, 2);
    lab.weft_ok("h1", &["launch", "--nickname", "h1", "h2"]);
    lab.weft_ok("h2", &["launch", "--nickname", "h2", "h1"]);
    let first = if fastdp { "fastdp" } else { "sleeve" };
    if !fastdp {
        block_fastdp(&lab, "h1");
        block_fastdp(&lab, "h2");
    }
    for (h, o) in [("h1", "h2"), ("h2", "h1")] {
        wait_for(
            &format!("{h} on {first} to {o}"),
            Duration::from_secs(20),
            || (established_path(&lab, h, o).as_deref() == Some(first)).then_some(()),
        );
    }
    for (h, c, ip) in [
        ("h1", "c1", "ip:10.32.0.1/12"),
        ("h2", "c2", "ip:10.32.0.2/12"),
    ] {
        let out = lab.container(h, c, &[ip]);
        assert!(out.status.success(), "container {c}: {out:?}");
    }
    let _server = lab.spawn("c1", &["iperf3", "-s"]);
    wait_for("iperf3 server in c1", Duration::from_secs(5), || {
        let out = lab.exec("c1", &["ss", "-ltn"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(":5201")
            .then_some(())
    });

    // From here, h2 receives no weft datagram above `limit` bytes.
    drop_above(&lab, "h2", limit);
    let start = Instant::now();
    let budget = Duration::from_secs(45);
    let left = || budget.saturating_sub(start.elapsed());
    for (from, to) in [("c2", "10.32.0.1"), ("c1", "10.32.0.2")] {
        wait_for(&format!("ping -s 10000 {from} -> {to}"), left(), || {
            let out = lab.exec(from, &["ping", "-c1", "-W2", "-s", "10000", to]);
            observe(String::from_utf8_lossy(&out.stdout).trim().to_string());
            out.status.success().then_some(())
        });
        eprintln!("ping -s 10000 {from} -> {to} after {:?}", start.elapsed());
    }
    // A TCP stream each way: c1 -> c2 crosses the small path into h2.
    wait_for("iperf3 c1 -> c2", left(), || {
        iperf_ok(&lab, true).then_some(())
    });
    wait_for("iperf3 c2 -> c1", left(), || {
        iperf_ok(&lab, false).then_some(())
    });
    let took = start.elapsed();
    eprintln!("limit {limit}, fastdp {fastdp}: big pings and TCP both ways in {took:?}");
    assert!(took <= budget, "took {took:?}");

    // h1 reaches h2 by the sleeve (fastdp cannot carry the overlay MTU there), and its
    // status shows the path MTU it found: at most the limit, within the search's 8 bytes.
    let text = wait_for(
        "h1's status to show the path MTU",
        Duration::from_secs(20),
        || {
            let out = lab.weft("h1", &["status", "connections"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            observe(&text);
            let line = text.lines().find(|l| l.contains("(h2)"))?.to_string();
            let pmtu: u32 = line
                .split("pmtu=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            (line.contains(" sleeve ") && pmtu <= limit && pmtu + 8 > limit).then_some(line)
        },
    );
    eprintln!("h1: {text}");
}

#[test]
fn big_packets_cross_a_1200_byte_path_with_fastdp_open() {
    scenario(1200, true);
}

#[test]
fn big_packets_cross_a_700_byte_path_with_fastdp_open() {
    scenario(700, true);
}

#[test]
fn big_packets_cross_a_1000_byte_path_with_fastdp_blocked() {
    scenario(1000, false);
}

#[test]
fn big_packets_cross_a_640_byte_path_with_fastdp_blocked() {
    scenario(640, false);
}
