//! End-to-end tests of weft's DNS on a lab of network namespaces: real routers gossiping
//! names over the mesh, real sockets on 127.0.0.11:53 in each container's namespace, the
//! system resolver (getent, ping) and dig inside the containers, and a real upstream
//! server (dnsmasq) that the test runs in the lab.

use std::time::{Duration, Instant};

use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// The name the upstream server answers, and its address (TEST-NET-1).
const UPSTREAM_NAME: &str = "upstream.example";
const UPSTREAM_ADDR: &str = "192.0.2.7";

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `dig +short` of `name` (type `ty`) inside `container`, through its resolv.conf
/// (127.0.0.11, weft); one line per answer.
fn dig(lab: &Lab, container: &str, name: &str, ty: &str) -> Vec<String> {
    let out = lab.exec(
        container,
        &["dig", "+short", "+time=1", "+tries=1", name, ty],
    );
    let t = text(&out);
    observe(format!("dig {name} {ty} in {container}: {t:?}"));
    t.lines().map(str::to_string).collect()
}

/// The status line of dig's answer (`NOERROR`, `NXDOMAIN`, ...).
fn dig_status(lab: &Lab, container: &str, name: &str) -> String {
    let out = lab.exec(container, &["dig", "+time=1", "+tries=1", name, "A"]);
    let t = text(&out);
    t.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string()
}

/// What the system resolver (glibc, with the search list) gives for `name` in `container`.
fn getent(lab: &Lab, container: &str, name: &str) -> Option<String> {
    let out = lab.exec(container, &["getent", "ahostsv4", name]);
    let t = text(&out);
    observe(format!("getent ahostsv4 {name} in {container}: {t:?}"));
    t.split_whitespace().next().map(str::to_string)
}

fn wait_resolves(lab: &Lab, container: &str, name: &str, want: &str) {
    wait_for(
        &format!("{container} to resolve {name} to {want}"),
        Duration::from_secs(10),
        || (getent(lab, container, name).as_deref() == Some(want)).then_some(()),
    );
}

fn ping(lab: &Lab, container: &str, name: &str) -> bool {
    let out = lab.exec(container, &["ping", "-c", "1", "-W", "2", name]);
    observe(format!(
        "ping {name} in {container}: {} {}",
        text(&out),
        String::from_utf8_lossy(&out.stderr).trim()
    ));
    out.status.success()
}

fn peers(lab: &Lab, host: &str) -> usize {
    let out = lab.weft(host, &["report"]);
    serde_json::from_slice::<weft_api::Report>(&out.stdout)
        .map(|r| r.router.peers.len())
        .unwrap_or(0)
}

/// Starts dnsmasq on h3's underlay address as the lab's upstream server, and points every
/// host's resolv.conf at it (before the routers start: they read it at start-up).
fn start_upstream(lab: &Lab) {
    let listen = lab.underlay_ip("h3").to_string();
    let record = format!("--address=/{UPSTREAM_NAME}/{UPSTREAM_ADDR}");
    lab.spawn(
        "h3",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--log-facility=-",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            &format!("--listen-address={listen}"),
            &record,
        ],
    );
    for h in lab.hosts() {
        let file = format!("/etc/netns/{}/resolv.conf", lab.netns(&h));
        std::fs::write(&file, format!("nameserver {listen}\n"))
            .unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
    }
    wait_for("dnsmasq to answer on h3", Duration::from_secs(10), || {
        let out = lab.exec(
            "h1",
            &["dig", "+short", "+time=1", "+tries=1", UPSTREAM_NAME],
        );
        observe(format!("dig {UPSTREAM_NAME} on h1: {:?}", text(&out)));
        (text(&out) == UPSTREAM_ADDR).then_some(())
    });
}

fn launch_three(lab: &Lab, extra: &[&str]) {
    lab.launch_full_mesh(extra);
    wait_for(
        "three routers to see each other",
        Duration::from_secs(15),
        || {
            ["h1", "h2", "h3"]
                .iter()
                .all(|h| peers(lab, h) == 3)
                .then_some(())
        },
    );
}

#[test]
fn containers_resolve_each_other_by_name_across_three_hosts() {
    require_root_and_tools(&["ip", "dig", "dnsmasq", "ping", "getent"]);
    let lab = Lab::up(WEFT, 3);
    start_upstream(&lab);
    launch_three(&lab, &[]);

    lab.container_ok("h1", "c1", &["ip:10.32.0.1/12"]);
    lab.container_ok("h2", "c2", &["ip:10.32.0.2/12"]);
    lab.container_ok("h3", "c3", &["ip:10.32.0.3/12"]);
    // A second container on h1: same-host traffic does not need the inter-host data path.
    lab.container_ok("h1", "c4", &["ip:10.32.0.4/12"]);

    // By NAME.weft.local and by short name (the search list), from every host.
    let all = [
        ("c1", "10.32.0.1"),
        ("c2", "10.32.0.2"),
        ("c3", "10.32.0.3"),
        ("c4", "10.32.0.4"),
    ];
    for (from, _) in &all {
        for (to, addr) in &all {
            if from != to {
                wait_resolves(&lab, from, &format!("{to}.weft.local"), addr);
                wait_resolves(&lab, from, to, addr);
            }
        }
    }

    // The CLI sees the same records.
    assert_eq!(lab.weft_ok("h1", &["dns-lookup", "c3"]).trim(), "10.32.0.3");
    let status = lab.weft_ok("h2", &["status", "dns"]);
    for (name, addr) in &all {
        assert!(
            status.contains(&format!("{name}.weft.local.")) && status.contains(addr),
            "weft status dns on h2 lacks {name}: {status}"
        );
    }
    assert_eq!(
        lab.weft_ok("h1", &["dns-args"]).trim(),
        "--dns=127.0.0.12 --dns-search=weft.local."
    );

    // Unknown names in the domain: NXDOMAIN; reverse lookups: the names.
    assert_eq!(dig_status(&lab, "c1", "nosuch.weft.local"), "NXDOMAIN");
    let out = lab.exec(
        "c1",
        &["dig", "+short", "+time=1", "+tries=1", "-x", "10.32.0.3"],
    );
    assert_eq!(text(&out), "c3.weft.local.");

    // Over TCP too (what a client does after a truncated UDP answer).
    let out = lab.exec(
        "c2",
        &[
            "dig",
            "+tcp",
            "+short",
            "+time=1",
            "+tries=1",
            "c1.weft.local",
        ],
    );
    assert_eq!(text(&out), "10.32.0.1", "dig +tcp c1.weft.local in c2");

    // Names outside the domain go to the host's upstream server (dnsmasq on h3).
    for c in ["c1", "c2", "c3"] {
        assert_eq!(dig(&lab, c, UPSTREAM_NAME, "A"), [UPSTREAM_ADDR], "{c}");
    }

    // Round-robin for a name that two containers (on two hosts) share.
    lab.weft_ok("h2", &["dns-add", "c2", "-h", "shared.weft.local"]);
    lab.weft_ok(
        "h3",
        &["dns-add", "10.32.0.3", "c3", "-h", "shared.weft.local"],
    );
    wait_for(
        "shared to have two addresses in c1",
        Duration::from_secs(10),
        || {
            let mut a = dig(&lab, "c1", "shared.weft.local", "A");
            a.sort();
            (a == ["10.32.0.2", "10.32.0.3"]).then_some(())
        },
    );
    let firsts: std::collections::BTreeSet<String> = (0..6)
        .filter_map(|_| dig(&lab, "c1", "shared.weft.local", "A").into_iter().next())
        .collect();
    assert_eq!(
        firsts.len(),
        2,
        "the first answer should rotate between both addresses: {firsts:?}"
    );

    // Pings by name: on one host through the bridge; across hosts through the data path.
    assert!(
        ping(&lab, "c1", "c4"),
        "c1 cannot ping c4 (same host) by name"
    );
    for (from, to) in [("c1", "c2"), ("c2", "c3"), ("c3", "c1")] {
        wait_for(
            &format!("{from} to ping {to}.weft.local"),
            Duration::from_secs(10),
            || ping(&lab, from, &format!("{to}.weft.local")).then_some(()),
        );
        assert!(
            ping(&lab, from, to),
            "{from} cannot ping {to} by short name"
        );
    }

    // A detached container's names are gone everywhere within 2 s.
    let netns = format!("/run/netns/{}", lab.netns("c2"));
    let t0 = Instant::now();
    lab.weft_ok("h2", &["detach", "--netns", &netns]);
    for c in ["c1", "c3"] {
        wait_for(
            &format!("c2 to stop resolving in {c}"),
            Duration::from_secs(2).saturating_sub(t0.elapsed()),
            || dig(&lab, c, "c2.weft.local", "A").is_empty().then_some(()),
        );
    }
    eprintln!(
        "detached c2 unresolvable on h1 and h3 after {:?}",
        t0.elapsed()
    );
    assert_eq!(dig_status(&lab, "c1", "c2.weft.local"), "NXDOMAIN");
    assert_eq!(dig(&lab, "c3", "shared.weft.local", "A"), ["10.32.0.3"]);

    // A router that dies (kill -9) takes its containers' names with it.
    let out = lab.exec(
        "h3",
        &["sh", "-c", "kill -9 \"$(cat \"$WEFT_RUN_DIR/weft.pid\")\""],
    );
    assert!(out.status.success(), "kill -9 of h3's router failed");
    wait_for(
        "c3 to stop resolving in c1",
        Duration::from_secs(15),
        || {
            dig(&lab, "c1", "c3.weft.local", "A")
                .is_empty()
                .then_some(())
        },
    );
}

#[test]
fn names_come_back_after_a_restart_and_dns_add_without_container() {
    require_root_and_tools(&["ip", "dig"]);
    let lab = Lab::up(WEFT, 2);
    lab.weft_ok("h1", &["launch", "h2"]);
    lab.weft_ok("h2", &["launch", "h1"]);
    wait_for(
        "two routers to see each other",
        Duration::from_secs(15),
        || (peers(&lab, "h1") == 2 && peers(&lab, "h2") == 2).then_some(()),
    );
    lab.container_ok("h1", "a1", &["ip:10.32.1.1/12"]);
    lab.container_ok("h2", "b1", &["ip:10.32.1.2/12"]);
    lab.weft_ok("h1", &["dns-add", "10.32.9.9", "-h", "ext.weft.local"]);
    wait_resolves(&lab, "b1", "a1", "10.32.1.1");
    wait_resolves(&lab, "b1", "ext", "10.32.9.9");

    // Bad input: one clear line, nothing changed.
    let out = lab.weft("h1", &["dns-add", "nosuchcontainer"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuchcontainer"), "{err}");
    let out = lab.weft("h1", &["dns-add", "10.32.9.8", "-h", "bad..name"]);
    assert!(!out.status.success(), "a bad name was accepted");

    // Restart h1's router: its listeners in a1 and its names (also dns-add's) come back.
    lab.weft_ok("h1", &["stop"]);
    wait_for("a1 to go from b1's view", Duration::from_secs(10), || {
        dig(&lab, "b1", "a1.weft.local", "A")
            .is_empty()
            .then_some(())
    });
    lab.weft_ok("h1", &["launch", "h2"]);
    wait_resolves(&lab, "b1", "a1.weft.local", "10.32.1.1");
    wait_resolves(&lab, "a1", "b1", "10.32.1.2");
    wait_resolves(&lab, "b1", "ext.weft.local", "10.32.9.9");

    // dns-remove of the container's name: gone on the other host too.
    lab.weft_ok("h1", &["dns-remove", "a1"]);
    wait_for("a1 to go after dns-remove", Duration::from_secs(2), || {
        dig(&lab, "b1", "a1.weft.local", "A")
            .is_empty()
            .then_some(())
    });
    let out = lab.weft("h1", &["dns-lookup", "a1"]);
    assert!(!out.status.success(), "dns-lookup found a removed name");
}

#[test]
fn no_dns_turns_it_off() {
    require_root_and_tools(&["ip", "dig"]);
    let lab = Lab::up(WEFT, 1);
    lab.weft_ok("h1", &["launch", "--no-dns"]);
    lab.container_ok("h1", "n1", &["ip:10.32.2.1/12"]);
    for args in [
        vec!["status", "dns"],
        vec!["dns-lookup", "n1"],
        vec!["dns-args"],
        vec!["dns-add", "10.32.2.9", "-h", "x.weft.local"],
    ] {
        let out = lab.weft("h1", &args);
        assert!(!out.status.success(), "weft {args:?} worked with --no-dns");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--no-dns"), "weft {args:?}: {err}");
    }
    // Nothing listens in the container.
    let out = lab.exec("n1", &["dig", "+time=1", "+tries=1", "n1.weft.local"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no servers could be reached")
            || !out.status.success(),
        "something answered DNS in a container of a --no-dns router: {}",
        text(&out)
    );
    let report = lab.weft_ok("h1", &["report"]);
    let r: weft_api::Report = serde_json::from_str(&report).expect("report is JSON");
    assert!(r.dns.is_none());
}
