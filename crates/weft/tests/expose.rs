//! End-to-end test of `weft expose` as a way out: a container whose default route is the
//! exposed host's overlay address reaches another host's underlay address, masqueraded
//! by weft's nftables rule unless `--without-masquerade`; IPv4 forwarding is turned on by
//! expose and back off by hide and reset only when weft turned it on.

use std::time::Duration;

use weft_testkit::{require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const PORT: &str = "7000";

/// A TCP server that answers every connection with the address it came from.
const ECHO_PEER: &str = "import socket\n\
s = socket.socket()\n\
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 7000))\n\
s.listen()\n\
while True:\n    c, a = s.accept()\n    c.sendall(a[0].encode())\n    c.close()\n";

fn forwarding(lab: &Lab, host: &str) -> String {
    let out = lab.exec(host, &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert!(out.status.success(), "cannot read ip_forward on {host}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn set_forwarding(lab: &Lab, host: &str, v: &str) {
    let out = lab.exec(
        host,
        &["sysctl", "-qw", &format!("net.ipv4.ip_forward={v}")],
    );
    assert!(out.status.success(), "cannot set ip_forward on {host}");
}

/// Connects from `from` to the echo server at `ip`: the address the server saw, or None
/// when no connection was made within 2 s.
fn seen_by_server(lab: &Lab, from: &str, ip: &str) -> Option<String> {
    let code = format!(
        "import socket\ns = socket.create_connection(('{ip}', {PORT}), timeout=2)\nprint(s.recv(64).decode())"
    );
    let out = lab.exec(from, &["python3", "-c", &code]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn ruleset(lab: &Lab, host: &str) -> String {
    String::from_utf8_lossy(&lab.exec(host, &["nft", "list", "ruleset"]).stdout).into_owned()
}

/// Whether the host's nftables ruleset has a masquerade rule.
fn masquerades(lab: &Lab, host: &str) -> bool {
    ruleset(lab, host).contains("masquerade")
}

#[test]
fn exposed_host_is_the_containers_way_out_masqueraded_unless_told_not_to() {
    require_root_and_tools(&["ip", "nft", "ss", "sysctl", "python3"]);
    let lab = Lab::up(WEFT, 2);
    let h1 = lab.underlay_ip("h1").to_string();
    let h2 = lab.underlay_ip("h2").to_string();
    // The lab's namespaces may inherit forwarding from the machine: start from off.
    set_forwarding(&lab, "h1", "0");
    // h1 alone: h2 is any host outside the overlay.
    lab.weft_ok("h1", &["launch", "--nickname", "h1"]);
    let out = lab.container("h1", "c1", &["ip:10.32.0.1/12"]);
    assert!(
        out.status.success(),
        "container c1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.spawn("h2", &["python3", "-c", ECHO_PEER]);
    wait_for("the echo server on h2", Duration::from_secs(10), || {
        let out = lab.exec("h2", &["ss", "-ltnH", "sport", "=", ":7000"]);
        (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
    });
    assert_eq!(
        seen_by_server(&lab, "h1", &h2).as_deref(),
        Some(h1.as_str())
    );

    // Exposed with masquerade: forwarding on, the container's way out is the host.
    lab.weft_ok("h1", &["expose", "ip:10.32.0.100/12"]);
    assert_eq!(
        forwarding(&lab, "h1"),
        "1",
        "expose did not turn on forwarding"
    );
    let out = lab.exec(
        "c1",
        &["ip", "route", "add", "default", "via", "10.32.0.100"],
    );
    assert!(out.status.success(), "default route in c1");
    let seen = wait_for("c1 to reach h2 through h1", Duration::from_secs(10), || {
        seen_by_server(&lab, "c1", &h2)
    });
    assert_eq!(
        seen, h1,
        "h2 saw c1's connection from {seen}, not masqueraded"
    );

    // Hidden: no rule, no forwarding, no way out.
    lab.weft_ok("h1", &["hide"]);
    assert_eq!(forwarding(&lab, "h1"), "0", "hide left forwarding on");
    assert!(!masquerades(&lab, "h1"), "rule after hide");
    assert_eq!(
        seen_by_server(&lab, "c1", &h2),
        None,
        "c1 got out after hide"
    );

    // Without masquerade the connection leaves with the container's address: h2 cannot
    // answer until it routes the overlay range back through h1.
    lab.weft_ok(
        "h1",
        &["expose", "--without-masquerade", "ip:10.32.0.100/12"],
    );
    assert_eq!(forwarding(&lab, "h1"), "1");
    assert!(
        !masquerades(&lab, "h1"),
        "masquerade rule despite --without-masquerade"
    );
    assert_eq!(
        seen_by_server(&lab, "c1", &h2),
        None,
        "h2 answered an unmasqueraded container without a route back"
    );
    let out = lab.exec("h2", &["ip", "route", "add", "10.32.0.0/12", "via", &h1]);
    assert!(out.status.success(), "route back on h2");
    let seen = wait_for(
        "c1 to reach h2 unmasqueraded",
        Duration::from_secs(10),
        || seen_by_server(&lab, "c1", &h2),
    );
    assert_eq!(seen, "10.32.0.1", "h2 saw {seen}, not the container");
    lab.weft_ok("h1", &["hide"]);
    assert_eq!(forwarding(&lab, "h1"), "0");

    // Forwarding that was on before weft stays on.
    set_forwarding(&lab, "h1", "1");
    lab.weft_ok("h1", &["expose", "ip:10.32.0.100/12"]);
    lab.weft_ok("h1", &["hide"]);
    assert_eq!(
        forwarding(&lab, "h1"),
        "1",
        "hide turned off forwarding weft found on"
    );
    set_forwarding(&lab, "h1", "0");

    // Stop keeps the host exposed; reset without a router undoes it all.
    lab.weft_ok("h1", &["expose", "ip:10.32.0.100/12"]);
    lab.weft_ok("h1", &["stop"]);
    assert_eq!(forwarding(&lab, "h1"), "1", "stop turned forwarding off");
    lab.weft_ok("h1", &["reset"]);
    assert!(
        !ruleset(&lab, "h1").contains("weft"),
        "nftables after reset without a router: {}",
        ruleset(&lab, "h1")
    );
    assert_eq!(
        forwarding(&lab, "h1"),
        "0",
        "reset without a router left forwarding on"
    );

    // Reset by the running router undoes it all too.
    lab.weft_ok("h1", &["launch", "--nickname", "h1"]);
    lab.weft_ok("h1", &["expose", "ip:10.32.0.100/12"]);
    assert!(masquerades(&lab, "h1"));
    assert_eq!(forwarding(&lab, "h1"), "1");
    lab.weft_ok("h1", &["reset"]);
    assert!(
        !ruleset(&lab, "h1").contains("weft"),
        "nftables after reset: {}",
        ruleset(&lab, "h1")
    );
    assert_eq!(forwarding(&lab, "h1"), "0", "reset left forwarding on");
}
