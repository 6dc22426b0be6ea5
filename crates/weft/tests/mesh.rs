//! End-to-end tests of the mesh on a lab of network namespaces: real routers, real TCP,
//! real Noise handshakes.

use std::time::{Duration, Instant};

use weft_api::Report;
use weft_testkit::{require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn report(lab: &Lab, host: &str) -> Option<Report> {
    lab.report(host)
}

/// (peers seen, established connections of this router).
fn counts(lab: &Lab, host: &str) -> (usize, usize) {
    match report(lab, host) {
        Some(r) => (
            r.router.peers.len(),
            r.router
                .connections
                .iter()
                .filter(|c| c.state == "established")
                .count(),
        ),
        None => (0, 0),
    }
}

/// Waits until every host sees `peers` peers and `conns` established connections.
fn wait_mesh(lab: &Lab, hosts: &[&str], peers: usize, conns: usize, within: Duration) {
    let what = format!("{hosts:?} to each see {peers} peers and {conns} established connections");
    wait_for(&what, within, || {
        hosts
            .iter()
            .all(|h| counts(lab, h) == (peers, conns))
            .then_some(())
    });
}

fn status(lab: &Lab, host: &str, section: &str) -> String {
    lab.weft_ok(host, &["status", section])
}

fn router_pid(lab: &Lab, host: &str) -> String {
    lab.router_pid(host)
}

#[test]
fn mesh_forms_joins_forgets_and_heals_after_kill() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 4);

    // Launched in an order where the first one's peer is not up yet; each names one other.
    lab.weft_ok("h3", &["launch", "--nickname", "h3", "h1"]);
    lab.weft_ok("h1", &["launch", "--nickname", "h1", "h2"]);
    lab.weft_ok("h2", &["launch", "--nickname", "h2", "h3"]);
    wait_mesh(&lab, &["h1", "h2", "h3"], 3, 2, Duration::from_secs(5));
    let overview = lab.weft_ok("h1", &["status"]);
    assert!(overview.contains("           Name: "), "{overview}");
    assert!(
        overview.contains("    Connections: 2 (2 established)"),
        "{overview}"
    );
    assert!(
        overview.contains("          Peers: 3 (with 6 established connections)"),
        "{overview}"
    );
    let conns = status(&lab, "h1", "connections");
    assert!(conns.contains("established"), "{conns}");
    assert!(conns.contains("(h2)") && conns.contains("(h3)"), "{conns}");
    let peers = status(&lab, "h2", "peers");
    for nick in ["(h1)", "(h2)", "(h3)"] {
        assert!(peers.contains(nick), "{peers}");
    }

    // A fourth host joins by `weft connect`.
    lab.weft_ok("h4", &["launch", "--nickname", "h4"]);
    lab.weft_ok("h4", &["connect", "h1"]);
    wait_mesh(
        &lab,
        &["h1", "h2", "h3", "h4"],
        4,
        3,
        Duration::from_secs(10),
    );
    assert!(status(&lab, "h4", "targets").contains("h1:6783"));

    // `forget` stops the retries of a target that cannot be reached.
    let nowhere = "172.29.0.250";
    lab.weft_ok("h1", &["connect", nowhere]);
    wait_for(
        "h1 to try the unreachable target",
        Duration::from_secs(10),
        || {
            status(&lab, "h1", "connections")
                .contains(nowhere)
                .then_some(())
        },
    );
    lab.weft_ok("h1", &["forget", nowhere]);
    assert!(!status(&lab, "h1", "targets").contains(nowhere));
    assert!(!status(&lab, "h1", "connections").contains(nowhere));
    let again = lab.weft("h1", &["forget", nowhere]);
    assert!(!again.status.success(), "forgetting twice is an error");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not a target"));

    // kill -9 of one router: the others see it within 10 s; a restart heals.
    let pid = router_pid(&lab, "h2");
    let out = lab.exec("h2", &["kill", "-9", &pid]);
    assert!(out.status.success(), "kill -9 {pid} failed");
    let killed = Instant::now();
    wait_mesh(&lab, &["h1", "h3", "h4"], 3, 2, Duration::from_secs(10));
    eprintln!("kill -9 seen by all in {:?}", killed.elapsed());
    lab.weft_ok("h2", &["launch", "--nickname", "h2", "h3"]);
    wait_mesh(
        &lab,
        &["h1", "h2", "h3", "h4"],
        4,
        3,
        Duration::from_secs(15),
    );

    // Cable cut: h4 loses its underlay; the others notice by heartbeats within 10 s.
    let out = lab.exec("h4", &["sh", "-c", "ip link set \"$(ip -o route get 172.29.0.1 | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')\" down"]);
    assert!(
        out.status.success(),
        "cannot cut h4's link: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cut = Instant::now();
    wait_mesh(&lab, &["h1", "h2", "h3"], 3, 2, Duration::from_secs(10));
    eprintln!("cable cut seen by all in {:?}", cut.elapsed());
}

#[test]
fn wrong_or_missing_password_is_refused_on_both_sides() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 3);
    lab.weft_ok("h1", &["launch", "--password", "right"]);
    lab.weft_ok("h2", &["launch", "--password", "wrong", "h1"]);
    lab.weft_ok("h3", &["launch", "h1"]);
    for host in ["h1", "h2"] {
        let text = wait_for(
            &format!("{host} to show the wrong password"),
            Duration::from_secs(10),
            || {
                let s = status(&lab, host, "connections");
                s.contains("wrong password").then_some(s)
            },
        );
        assert!(text.contains("failed"), "{text}");
    }
    let text = wait_for(
        "h3 to show the missing password",
        Duration::from_secs(10),
        || {
            let s = status(&lab, "h3", "connections");
            s.contains("has a password set, we have none").then_some(s)
        },
    );
    assert!(text.contains("failed"), "{text}");
    wait_for(
        "h1 to show h3 has no password",
        Duration::from_secs(10),
        || {
            status(&lab, "h1", "connections")
                .contains("has no password set")
                .then_some(())
        },
    );
    for h in ["h1", "h2", "h3"] {
        assert_eq!(counts(&lab, h), (1, 0), "{h} joined nobody");
    }
    // The same password on h3 lets it in.
    lab.weft_ok("h3", &["stop"]);
    lab.weft_ok("h3", &["launch", "--password", "right", "h1"]);
    wait_mesh(&lab, &["h1", "h3"], 2, 1, Duration::from_secs(10));
}

#[test]
fn two_peers_with_one_name_are_refused_without_flapping() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 2);
    let name = "02:00:00:00:00:01";
    lab.weft_ok("h1", &["launch", "--name", name]);
    lab.weft_ok("h2", &["launch", "--name", name, "h1"]);
    for host in ["h1", "h2"] {
        wait_for(
            &format!("{host} to report the name clash"),
            Duration::from_secs(10),
            || {
                status(&lab, host, "connections")
                    .contains("used by both peers")
                    .then_some(())
            },
        );
    }
    // Backoff, not a tight loop: few attempts in a few seconds, never established.
    std::thread::sleep(Duration::from_secs(4));
    for host in ["h1", "h2"] {
        assert_eq!(counts(&lab, host), (1, 0), "{host}");
    }
    let conns = status(&lab, "h2", "connections");
    assert!(conns.contains("retry in"), "{conns}");
}
