//! End to end: a host whose underlay drops incoming UDP 6783/6784 datagrams above a size
//! (nftables in that host's namespace, as a tunnel or a cloud path smaller than its
//! interface would). Large packets between a container there and one on another host
//! must still arrive: fastdp's size probes fail, the peer moves to the sleeve, whose
//! path-MTU search finds what fits and cuts frames to it. Checked with `ping -s 10000` and
//! an iperf3 TCP stream each way within 45 s, with fastdp open and with fastdp blocked,
//! and `weft status connections` showing the encryption and the discovered path MTU.

use std::time::{Duration, Instant};

use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// How long large packets may take to get through after the containers exist.
const WITHIN: Duration = Duration::from_secs(45);

/// The scenario of one test.
struct Case {
    /// Incoming UDP 6783/6784 datagrams (whole IP packets) above this many bytes are
    /// dropped on h2.
    threshold: u32,
    /// fastdp (UDP 6784) blocked on h2 altogether.
    block_fastdp: bool,
    /// Launch with a password (and the underlay trusted, so fastdp is allowed in clear).
    password: bool,
}

/// Drops incoming UDP datagrams to 6783/6784 longer than `threshold` arriving on `host`'s
/// underlay interface (eth0), before reassembly, and fragments longer than that too: a
/// datagram the sender's kernel fragmented is lost as on a path that drops big packets.
/// (Only eth0: bridged container frames pass the IP hooks too, with br_netfilter.)
fn drop_above(lab: &Lab, host: &str, threshold: u32) {
    let script = format!(
        "add table inet weftpmtu; \
         add chain inet weftpmtu pre {{ type filter hook prerouting priority -450 ; }} ; \
         add rule inet weftpmtu pre iifname eth0 meta length > {threshold} udp dport {{ 6783, 6784 }} drop; \
         add rule inet weftpmtu pre iifname eth0 meta length > {threshold} ip frag-off & 0x1fff != 0 drop"
    );
    lab.exec_ok(host, &["nft", &script]);
}

/// Whether this CPU has what AES-256-GCM is offered for (the router detects the same).
fn hardware_aes() -> bool {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpu
        .lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .unwrap_or_default()
        .to_string();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    has("aes") && (has("pclmulqdq") || has("pmull"))
}

/// Runs an iperf3 TCP stream from c1 to c2 (`reverse`: c2 to c1) for 3 s and panics with
/// its output if it fails.
fn iperf(lab: &Lab, reverse: bool) {
    let mut args = vec!["iperf3", "-c", "10.32.0.2", "-t", "3", "-i", "0"];
    if reverse {
        args.push("-R");
    }
    let out = lab.exec("c1", &args);
    assert!(
        out.status.success(),
        "iperf3 {}: {}{}",
        if reverse { "c2 to c1" } else { "c1 to c2" },
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .rfind(|l| l.contains("receiver"))
        .unwrap_or_default()
        .trim()
        .to_string();
    eprintln!("iperf3 reverse={reverse}: {rate}");
}

fn run(case: Case) {
    require_root_and_tools(&["ip", "nft", "ping", "iperf3"]);
    let lab = Lab::up(WEFT, 2);
    let mut extra: Vec<String> = Vec::new();
    if case.password {
        extra.extend(["--password".into(), "s3cret".into()]);
        let trusted = format!("{}/32,{}/32", lab.underlay_ip("h1"), lab.underlay_ip("h2"));
        extra.extend(["--trusted-subnets".into(), trusted]);
    }
    drop_above(&lab, "h2", case.threshold);
    if case.block_fastdp {
        lab.block_fastdp("h2");
    }
    for (h, other) in [("h1", "h2"), ("h2", "h1")] {
        let mut args: Vec<&str> = vec!["launch", "--nickname", h];
        args.extend(extra.iter().map(String::as_str));
        args.push(other);
        lab.weft_ok(h, &args);
    }
    lab.container_ok("h1", "c1", &["ip:10.32.0.1/12"]);
    lab.container_ok("h2", "c2", &["ip:10.32.0.2/12"]);
    let start = Instant::now();
    let deadline = start + WITHIN;
    let left = || deadline.saturating_duration_since(Instant::now());

    // Large pings both ways: fragments of the container's MTU, cut again by the sleeve.
    for (from, to) in [("c1", "10.32.0.2"), ("c2", "10.32.0.1")] {
        wait_for(&format!("{from}: ping -s 10000 {to}"), left(), || {
            let out = lab.exec(from, &["ping", "-c1", "-W2", "-s", "10000", to]);
            observe(String::from_utf8_lossy(&out.stdout).trim().to_string());
            out.status.success().then_some(())
        });
    }
    eprintln!(
        "threshold {}: ping -s 10000 through after {:?}",
        case.threshold,
        start.elapsed()
    );
    let server = lab.spawn("c2", &["iperf3", "-s"]);
    wait_for("iperf3 server in c2", Duration::from_secs(5), || {
        let out = lab.exec("c2", &["ss", "-ltn"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(":5201")
            .then_some(())
    });
    iperf(&lab, false);
    iperf(&lab, true);
    lab.kill(server);
    let took = start.elapsed();
    eprintln!("threshold {}: TCP through after {took:?}", case.threshold);
    assert!(took <= WITHIN, "large packets took {took:?}");

    // h1 sends to h2 through the small path: its sleeve found what fits (the search stops
    // within 8 bytes), and the status says so, with the encryption.
    let path = if case.password {
        "encrypted sleeve"
    } else {
        "sleeve"
    };
    let line = wait_for(
        &format!(
            "h1's status to show the {path} with pmtu <= {}",
            case.threshold
        ),
        Duration::from_secs(15),
        || {
            let s = lab.weft_ok("h1", &["status", "connections"]);
            observe(s.trim().to_string());
            let line = s.lines().find(|l| l.contains("(h2)"))?.to_string();
            let pmtu: u32 = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("pmtu="))?
                .parse()
                .ok()?;
            (line.contains(&format!(" {path} "))
                && pmtu <= case.threshold
                && pmtu + 16 > case.threshold)
                .then_some(line)
        },
    );
    eprintln!("h1: {line}");
    if case.password {
        let cipher = if hardware_aes() {
            "cipher=aes-256-gcm"
        } else {
            "cipher=chacha20-poly1305"
        };
        assert!(
            line.contains(cipher),
            "h1 to h2 sealed with {cipher}: {line}"
        );
    }
    // The other direction is not limited: h2's sleeve sends full-size datagrams.
    let s = lab.weft_ok("h2", &["status", "connections"]);
    let back = s.lines().find(|l| l.contains("(h1)")).unwrap_or_default();
    assert!(
        back.contains(&format!(" {path} ")) && back.contains("pmtu=1500"),
        "h2 to h1: {back}"
    );
}

#[test]
fn path_dropping_above_1200_with_fastdp_open() {
    run(Case {
        threshold: 1200,
        block_fastdp: false,
        password: false,
    });
}

#[test]
fn path_dropping_above_700_with_fastdp_open_and_a_password() {
    run(Case {
        threshold: 700,
        block_fastdp: false,
        password: true,
    });
}

#[test]
fn path_dropping_above_1000_with_fastdp_blocked() {
    run(Case {
        threshold: 1000,
        block_fastdp: true,
        password: false,
    });
}

#[test]
fn path_dropping_above_640_with_fastdp_blocked_and_a_password() {
    run(Case {
        threshold: 640,
        block_fastdp: true,
        password: true,
    });
}
