//! Smoke test of services end to end on a lab of 3 hosts: real routers gossiping the
//! definition and the tasks, real nftables tables in the hosts' and the containers'
//! namespaces, real busybox httpd tasks (each serving its own name), the system resolver
//! and curl in a client container, a published port on every host. The full
//! acceptance tests (haproxy, health, Docker, restart) are in services.rs.

use std::collections::BTreeMap;
use std::time::Duration;

use weft_testkit::{observe, require_root_and_tools, services, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An HTTP GET of `url` in `ns` (host or container), with curl (busybox-static's wget
/// crashes on this Debian): the body, or None.
fn get(lab: &Lab, ns: &str, url: &str) -> Option<String> {
    let out = lab.exec(ns, &["curl", "-sf", "-m", "2", url]);
    observe(format!(
        "GET {url} in {ns}: {} {}",
        text(&out),
        String::from_utf8_lossy(&out.stderr).trim()
    ));
    out.status.success().then(|| text(&out))
}

/// The addresses the system resolver gives for `name` in `container`, sorted.
fn resolve(lab: &Lab, container: &str, name: &str) -> Vec<String> {
    let out = lab.exec(container, &["getent", "ahostsv4", name]);
    let mut addrs: Vec<String> = text(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    addrs.sort();
    addrs.dedup();
    observe(format!("getent ahostsv4 {name} in {container}: {addrs:?}"));
    addrs
}

/// Whether `table` exists in `ns`'s nftables.
fn has_table(lab: &Lab, ns: &str) -> bool {
    lab.exec(ns, &["nft", "list", "table", "ip", "weft_svc"])
        .status
        .success()
}

/// What IPAM on `host` holds for `owner` (through the router's unix socket).
fn ipam_holds(lab: &Lab, host: &str, owner: &str) -> String {
    let url = format!("http://weft/ipam/lookup?owner={owner}");
    let cmd = format!("curl -s --unix-socket \"$WEFT_RUN_DIR/weft.sock\" '{url}'");
    text(&lab.exec(host, &["sh", "-c", &cmd]))
}

/// The number of healthy and all tasks `host` reports for `service`.
fn tasks_seen(lab: &Lab, host: &str, service: &str) -> (usize, usize) {
    let r = lab.report(host).unwrap_or_default();
    let s = r.services.iter().find(|s| s.name == service);
    let seen = s.map_or((0, 0), |s| {
        (s.tasks.iter().filter(|t| t.healthy).count(), s.tasks.len())
    });
    observe(format!("{host} sees tasks of {service}: {seen:?}"));
    seen
}

#[test]
fn a_service_spreads_over_tasks_on_three_hosts_and_publishes_a_port_on_each() {
    require_root_and_tools(&["ip", "nft", "busybox", "getent", "curl"]);
    let lab = Lab::up(WEFT, 3);
    lab.launch_full_mesh(&[]);
    let long = Duration::from_secs(30);

    let vip = services::create(
        &lab,
        "h1",
        "whoami",
        &["--port", "80", "--publish", "8000:80"],
    );
    assert!(vip.parse::<std::net::Ipv4Addr>().is_ok(), "VIP {vip:?}");
    for h in lab.hosts() {
        wait_for(&format!("{h} to know whoami"), long, || {
            lab.weft(&h, &["service", "inspect", "whoami"])
                .status
                .success()
                .then_some(())
        });
    }

    // Bad input: one line, nothing changed.
    let dup = lab.weft("h2", &["service", "create", "whoami"]);
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let taken = lab.weft(
        "h3",
        &["service", "create", "other", "--publish", "8000:81"],
    );
    assert!(!taken.status.success());
    let err = String::from_utf8_lossy(&taken.stderr);
    assert!(err.contains("8000") && err.contains("whoami"), "{err}");
    let unknown = lab.container("h1", "stray", &["--service", "nosuch"]);
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("nosuch"), "{err}");

    // A task on every host, each serving its own name.
    let www = tempfile::tempdir().expect("a temp dir");
    let mut tasks = BTreeMap::new();
    for (i, h) in lab.hosts().iter().enumerate() {
        let name = format!("task{}", i + 1);
        let out = lab.container_ok(h, &name, &["--service", "whoami"]);
        let addr = out.lines().next().unwrap_or_default();
        let addr = addr.split('/').next().unwrap_or_default().to_string();
        let dir = www.path().join(&name);
        std::fs::create_dir_all(&dir).expect("a web root");
        std::fs::write(dir.join("index.html"), format!("{name}\n")).expect("index.html");
        let root = dir.to_string_lossy().into_owned();
        lab.spawn(&name, &["busybox", "httpd", "-f", "-p", "80", "-h", &root]);
        tasks.insert(addr, name);
    }
    for h in lab.hosts() {
        wait_for(&format!("{h} to see 3 healthy tasks"), long, || {
            (tasks_seen(&lab, &h, "whoami") == (3, 3)).then_some(())
        });
    }
    let table = lab.weft_ok("h2", &["service", "ls"]);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("whoami")
            && l.contains(&vip)
            && l.contains("80/tcp")
            && l.contains("8000:80/tcp")
            && l.ends_with("3/3")),
        "{table}"
    );

    // A client on h2 resolves the service and its tasks.
    lab.container_ok("h2", "client", &[]);
    wait_for("client to resolve whoami to the VIP", long, || {
        (resolve(&lab, "client", "whoami") == vec![vip.clone()]).then_some(())
    });
    let mut want: Vec<String> = tasks.keys().cloned().collect();
    want.sort();
    wait_for("tasks.whoami to list the 3 tasks", long, || {
        (resolve(&lab, "client", "tasks.whoami") == want).then_some(())
    });

    // 30 requests by name spread over the 3 tasks.
    wait_for("whoami to answer the client", long, || {
        get(&lab, "client", "http://whoami/")
    });
    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        let body = get(&lab, "client", "http://whoami/").expect("whoami answers");
        *hits.entry(body).or_default() += 1;
    }
    assert_eq!(hits.len(), 3, "every task answers: {hits:?}");
    assert!(
        hits.values().all(|n| (5..=15).contains(n)),
        "spread: {hits:?}"
    );

    // The published port answers on every host's 127.0.0.1, and on a host's address
    // from another host.
    for h in lab.hosts() {
        let body = wait_for(&format!("127.0.0.1:8000 on {h}"), long, || {
            get(&lab, &h, "http://127.0.0.1:8000/")
        });
        assert!(tasks.values().any(|t| *t == body), "{h}: {body}");
    }
    let h1 = lab.underlay_ip("h1");
    let body = wait_for("h1's address:8000 from h3", long, || {
        get(&lab, "h3", &format!("http://{h1}:8000/"))
    });
    assert!(tasks.values().any(|t| *t == body), "{body}");

    // Removed from another host than the one that made it: everything goes everywhere.
    lab.weft_ok("h3", &["service", "rm", "whoami"]);
    for h in lab.hosts() {
        wait_for(&format!("{h} to forget whoami"), long, || {
            let ls = lab.weft_ok(&h, &["service", "ls"]);
            observe(&ls);
            (ls.lines().count() == 1).then_some(())
        });
        wait_for(&format!("{h}'s service table to go"), long, || {
            (!has_table(&lab, &h)).then_some(())
        });
    }
    wait_for("the client's service table to go", long, || {
        (!has_table(&lab, "client")).then_some(())
    });
    wait_for("whoami to stop resolving", long, || {
        resolve(&lab, "client", "whoami").is_empty().then_some(())
    });
    wait_for("h1 to release the VIP", long, || {
        let held = ipam_holds(&lab, "h1", "weft:service:whoami");
        observe(&held);
        (!held.contains(&vip)).then_some(())
    });
    wait_for("h1 to give back its service address", long, || {
        let held = ipam_holds(&lab, "h1", "weft:service-ingress");
        observe(&held);
        (!held.contains('.')).then_some(())
    });
}
