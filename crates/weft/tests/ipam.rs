//! End-to-end tests of address management on a lab of network namespaces: real routers
//! gossiping the ring over the mesh, real attaches, kill -9 and restarts, rmpeer.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use weft_api::Report;
use weft_testkit::{require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// Containers attached in parallel on each host.
const PER_HOST: usize = 50;

fn report(lab: &Lab, host: &str) -> Option<Report> {
    lab.report(host)
}

fn wait_peers(lab: &Lab, hosts: &[&str], peers: usize, within: Duration) {
    wait_for(
        &format!("{hosts:?} to each see {peers} peers"),
        within,
        || {
            hosts
                .iter()
                .all(|h| report(lab, h).is_some_and(|r| r.router.peers.len() == peers))
                .then_some(())
        },
    );
}

fn launch(lab: &Lab, host: &str, others: &[&str]) {
    let mut args = vec!["launch", "--nickname", host];
    args.extend_from_slice(others);
    lab.weft_ok(host, &args);
}

/// Makes a container and returns the addresses attach printed.
fn container(lab: &Lab, host: &str, name: &str, addrs: &[&str]) -> Vec<Ipv4Net> {
    let out = lab.container(host, name, addrs);
    assert!(
        out.status.success(),
        "container {name} {addrs:?} on {host} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_addrs(&String::from_utf8_lossy(&out.stdout))
}

fn parse_addrs(text: &str) -> Vec<Ipv4Net> {
    text.split_whitespace()
        .filter_map(|w| w.parse::<Ipv4Net>().ok())
        .collect()
}

/// `weft ps` on a host: container id → addresses.
fn ps(lab: &Lab, host: &str) -> Vec<(String, Vec<Ipv4Net>)> {
    lab.weft_ok(host, &["ps"])
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let id = w.next()?.to_string();
            let _mac = w.next()?;
            Some((id, w.filter_map(|a| a.parse().ok()).collect()))
        })
        .collect()
}

fn pings(lab: &Lab, from: &str, to: Ipv4Addr) -> bool {
    lab.exec(from, &["ping", "-c", "1", "-W", "1", &to.to_string()])
        .status
        .success()
}

#[test]
fn addresses_are_unique_survive_restarts_keep_subnets_and_rmpeer_frees_space() {
    require_root_and_tools(&["ip", "ping"]);
    let lab = Lab::up(WEFT, 3);
    launch(&lab, "h1", &["h2", "h3"]);
    launch(&lab, "h2", &["h1", "h3"]);
    launch(&lab, "h3", &["h1", "h2"]);
    wait_peers(&lab, &["h1", "h2", "h3"], 3, Duration::from_secs(15));

    // Before first use IPAM says what it waits for; `weft prime` creates the ring.
    let st = lab.weft_ok("h1", &["status", "ipam"]);
    assert!(st.starts_with("Status: "), "{st}");
    lab.weft_ok("h2", &["prime"]);

    // 50 containers attached at once on each host: 150 distinct addresses.
    let started = Instant::now();
    let mut all: Vec<(String, String, Ipv4Net)> = Vec::new();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for host in ["h1", "h2", "h3"] {
            for i in 0..PER_HOST {
                let lab = &lab;
                handles.push(s.spawn(move || {
                    let name = format!("{host}c{i}");
                    let a = container(lab, host, &name, &[]);
                    (host.to_string(), name, a)
                }));
            }
        }
        for h in handles {
            let (host, name, addrs) = match h.join() {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e),
            };
            assert_eq!(addrs.len(), 1, "{name} on {host} got {addrs:?}");
            all.push((host, name, addrs[0]));
        }
    });
    eprintln!(
        "{} parallel attaches on 3 hosts took {:?}",
        all.len(),
        started.elapsed()
    );
    let range: Ipv4Net = "10.32.0.0/12".parse().unwrap();
    let distinct: BTreeSet<Ipv4Addr> = all.iter().map(|(_, _, a)| a.addr()).collect();
    assert_eq!(distinct.len(), 3 * PER_HOST, "duplicate addresses: {all:?}");
    for (_, name, a) in &all {
        assert!(range.contains(a) && a.prefix_len() == 12, "{name} got {a}");
    }
    let st = lab.weft_ok("h1", &["status", "ipam"]);
    assert!(st.contains("Status: ready"), "{st}");
    assert_eq!(
        st.lines().filter(|l| l.contains("IPs (")).count(),
        3,
        "{st}"
    );

    // kill -9 and restart of every router: every container keeps its address, and new
    // allocations do not reuse any of them.
    let before: Vec<_> = ["h1", "h2", "h3"].iter().map(|h| ps(&lab, h)).collect();
    for h in ["h1", "h2", "h3"] {
        lab.kill_router(h);
    }
    launch(&lab, "h1", &["h2", "h3"]);
    launch(&lab, "h2", &["h1", "h3"]);
    launch(&lab, "h3", &["h1", "h2"]);
    wait_peers(&lab, &["h1", "h2", "h3"], 3, Duration::from_secs(15));
    let after: Vec<_> = ["h1", "h2", "h3"].iter().map(|h| ps(&lab, h)).collect();
    assert_eq!(
        before, after,
        "containers' addresses changed over a restart"
    );
    for (i, host) in ["h1", "h2", "h3"].iter().enumerate() {
        let a = container(&lab, host, &format!("new{i}"), &[]);
        assert!(
            !distinct.contains(&a[0].addr()),
            "{host} gave {} again after a restart",
            a[0]
        );
    }

    // Subnets: same subnet talks across hosts, different subnets do not.
    let s1a = container(&lab, "h1", "s1a", &["net:10.32.1.0/24"])[0];
    let s1b = container(&lab, "h2", "s1b", &["net:10.32.1.0/24"])[0];
    let s0 = container(&lab, "h2", "s0", &["net:10.32.0.0/24"])[0];
    let net1: Ipv4Net = "10.32.1.0/24".parse().unwrap();
    let net0: Ipv4Net = "10.32.0.0/24".parse().unwrap();
    assert!(net1.contains(&s1a) && s1a.prefix_len() == 24, "{s1a}");
    assert!(net1.contains(&s1b) && s1b.prefix_len() == 24, "{s1b}");
    assert!(net0.contains(&s0) && s0.prefix_len() == 24, "{s0}");
    let both = container(
        &lab,
        "h3",
        "both",
        &["net:10.32.1.0/24", "net:10.32.0.0/24"],
    );
    assert_eq!(both.len(), 2, "{both:?}");
    wait_for(
        "s1a (h1) to reach s1b (h2) in 10.32.1.0/24",
        Duration::from_secs(15),
        || pings(&lab, "s1a", s1b.addr()).then_some(()),
    );
    assert!(
        !pings(&lab, "s1a", s0.addr()),
        "s1a in 10.32.1.0/24 reached s0 in 10.32.0.0/24"
    );
    assert!(
        !pings(&lab, "s0", s1b.addr()),
        "s0 in 10.32.0.0/24 reached s1b in 10.32.1.0/24 on its own host"
    );

    // rmpeer: refused for a live peer; after h3 is killed, its space is taken over and used.
    let h2_name = report(&lab, "h2").expect("h2 report").router.name;
    let h3_name = report(&lab, "h3").expect("h3 report").router.name;
    let out = lab.weft("h1", &["rmpeer", &h2_name]);
    assert!(!out.status.success(), "rmpeer of a live peer succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reachable"), "{err}");
    // An address h3 gave out lies in h3's space.
    let h3_addr = all
        .iter()
        .find(|(h, _, _)| h == "h3")
        .map(|(_, _, a)| *a)
        .expect("an h3 container");
    lab.kill_router("h3");
    wait_peers(&lab, &["h1", "h2"], 2, Duration::from_secs(15));
    let st = wait_for("h1 to show h3 unreachable", Duration::from_secs(10), || {
        let s = lab.weft_ok("h1", &["status", "ipam"]);
        s.contains("unreachable!").then_some(s)
    });
    assert!(st.contains("(h3"), "{st}");
    let out = lab.weft_ok("h1", &["rmpeer", &h3_name]);
    assert!(out.contains(&format!("taken over from {h3_name}")), "{out}");
    let st = lab.weft_ok("h1", &["status", "ipam"]);
    assert!(!st.contains("unreachable!"), "{st}");
    // The dead host's container address can be given out again, here by a claim on h1.
    let claim = format!("ip:{h3_addr}");
    let got = container(&lab, "h1", "reuse", &[&claim]);
    assert_eq!(got, vec![h3_addr]);
    // And h2 gets space in that area through a space request to h1.
    let around = Ipv4Net::new(h3_addr.addr(), 24).unwrap().trunc();
    let net = format!("net:{around}");
    let got = container(&lab, "h2", "near", &[&net]);
    assert!(around.contains(&got[0]), "{got:?}");
}

#[test]
fn http_api_allocates_claims_releases_and_looks_up() {
    require_root_and_tools(&["ip", "curl"]);
    let lab = Lab::up(WEFT, 1);
    lab.weft_ok(
        "h1",
        &["launch", "--ipalloc-init", "seed=p1", "--name", "p1"],
    );
    let post = |path: &str, body: &str| -> (bool, String) {
        // Changes go through the unix socket only (the TCP port is read-only).
        let out = lab.exec(
            "h1",
            &[
                "sh",
                "-c",
                "curl -sS -w '\n%{http_code}' -H 'content-type: application/json' \
                 --unix-socket \"$WEFT_RUN_DIR/weft.sock\" -d \"$1\" \"http://weft$2\"",
                "post",
                body,
                path,
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let ok = text.trim_end().ends_with("200");
        (ok, text)
    };
    let get = |path: &str| -> String {
        let out = lab.exec(
            "h1",
            &[
                "sh",
                "-c",
                "curl -sS --unix-socket \"$WEFT_RUN_DIR/weft.sock\" \"http://weft$1\"",
                "get",
                path,
            ],
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (ok, t) = post("/ipam/allocate", r#"{"owner":"a"}"#);
    assert!(ok && t.contains("/12"), "{t}");
    let (ok, t) = post(
        "/ipam/allocate",
        r#"{"owner":"b","addr":"net:10.33.0.0/16"}"#,
    );
    assert!(ok && t.contains("10.33.") && t.contains("/16"), "{t}");
    let (ok, t) = post("/ipam/claim", r#"{"owner":"c","addr":"10.40.0.9/12"}"#);
    assert!(ok && t.contains("10.40.0.9/12"), "{t}");
    // A second claim of the same address names the holder.
    let (ok, t) = post("/ipam/claim", r#"{"owner":"d","addr":"10.40.0.9/12"}"#);
    assert!(!ok && t.contains("held by c") && t.ends_with("409"), "{t}");
    // Outside the range: one clear line.
    let (ok, t) = post(
        "/ipam/allocate",
        r#"{"owner":"e","addr":"net:192.168.0.0/24"}"#,
    );
    assert!(!ok && t.contains("not inside the allocation range"), "{t}");
    let t = get("/ipam/lookup?owner=c");
    assert!(t.contains("10.40.0.9/12"), "{t}");
    let (ok, t) = post("/ipam/release", r#"{"owner":"c"}"#);
    assert!(ok && t.contains("10.40.0.9"), "{t}");
    let (ok, t) = post("/ipam/claim", r#"{"owner":"d","addr":"10.40.0.9/12"}"#);
    assert!(ok, "{t}");
    let t = get("/ipam/status");
    assert!(t.contains("\"line\":\"ready\""), "{t}");
    // rmpeer of ourselves is refused.
    let (ok, t) = post("/ipam/rmpeer", r#"{"names":["p1"]}"#);
    assert!(!ok && t.contains("weft reset"), "{t}");
}

#[test]
fn launch_refuses_a_default_range_that_overlaps_a_host_route() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 1);
    // A route inside the default range, in the lab host's own namespace (via the underlay).
    lab.exec_ok(
        "h1",
        &["ip", "route", "add", "10.40.0.0/16", "via", "172.29.0.254"],
    );
    let out = lab.weft("h1", &["launch"]);
    assert!(
        !out.status.success(),
        "launch over an overlapping route worked"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host route 10.40.0.0/16 dev ")
            && err.contains("--ipalloc-range 10.48.0.0/12"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Nothing was left behind: no bridge, no router.
    assert!(!lab
        .exec("h1", &["ip", "link", "show", "weft"])
        .status
        .success());
    assert!(!lab.weft("h1", &["status"]).status.success());
    // A range chosen by hand only warns.
    lab.weft_ok("h1", &["launch", "--ipalloc-range", "10.32.0.0/12"]);
    lab.weft_ok("h1", &["stop"]);
    lab.weft_ok("h1", &["launch", "--ipalloc-range", "10.48.0.0/12"]);
}
