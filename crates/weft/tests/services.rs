//! End-to-end tests of weft's services (issue 11) on labs of network namespaces: real
//! routers gossiping definitions and tasks, real nftables in every host and container
//! namespace, busybox httpd tasks that each answer with their own name (and, on
//! /cgi-bin/peer, with the address they see the client at), and a real haproxy in front
//! of the hosts. Hosts h1..h4 run routers (h4 never runs a task); h5 runs no router: it
//! stands outside, on the underlay, as a client of the published port and haproxy's host.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use weft_testkit::services::{
    agreed_vip, assert_spread, check_round_robin, inspect, requests, tally, wait_answer,
    wait_healthy, ServiceView,
};
use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// The hosts that run a router.
const ROUTERS: [&str; 4] = ["h1", "h2", "h3", "h4"];
/// The host without a router: outside the overlay, on the underlay.
const OUTSIDE: &str = "h5";
/// How long gossip (definitions, tasks, health) may take to reach every host.
const CONVERGE: Duration = Duration::from_secs(20);
/// The published port of the walkthrough's service.
const PUBLISHED: u16 = 8000;

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// A task: a lab container on `host` with an httpd that answers with `name`.
struct Task {
    name: String,
    host: String,
    addr: String,
    httpd: u32,
}

/// A lab with `routers` running routers in a full mesh that know each other (and
/// whatever other hosts `total` adds, without a router).
fn lab_with_routers(total: usize, routers: &[&str]) -> Lab {
    require_root_and_tools(&["ip", "nft", "busybox", "ping", "getent", "kill"]);
    let lab = Lab::up(WEFT, total);
    lab.launch_mesh(routers, &[]);
    lab.wait_peers(routers, Duration::from_secs(30));
    lab
}

/// The first address `weft lab container` (attach) printed, without its prefix length.
fn first_addr(attach_output: &str) -> String {
    attach_output
        .lines()
        .next()
        .and_then(|l| l.trim().split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// A client container on `host`; returns its address.
fn client(lab: &Lab, host: &str, name: &str) -> String {
    first_addr(&lab.container_ok(host, name, &[]))
}

/// Writes the web root of task `name`: index.html says its name, /cgi-bin/peer says
/// the client address the task sees (REMOTE_ADDR, set by busybox httpd for CGI).
fn web_root(lab: &Lab, name: &str) -> String {
    let root = lab.dir().join("www").join(name);
    let cgi = root.join("cgi-bin");
    std::fs::create_dir_all(&cgi).unwrap_or_else(|e| panic!("mkdir {}: {e}", cgi.display()));
    std::fs::write(root.join("index.html"), format!("{name}\n")).unwrap();
    let peer = cgi.join("peer");
    std::fs::write(
        &peer,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&peer, std::fs::Permissions::from_mode(0o755)).unwrap();
    root.display().to_string()
}

/// Starts busybox httpd on port 80 in container `name` and waits until it answers there.
fn serve(lab: &Lab, name: &str) -> u32 {
    let root = web_root(lab, name);
    let pid = lab.spawn(name, &["busybox", "httpd", "-f", "-p", "80", "-h", &root]);
    wait_answer(
        &format!("httpd in {name} to answer on 127.0.0.1:80"),
        Duration::from_secs(10),
        |cmd| lab.exec(name, cmd),
        "http://127.0.0.1/",
        &[name],
    );
    pid
}

/// The UDP port of the walkthrough's service: each task answers a datagram with its name.
const UDP_PORT: u16 = 5353;
/// A TCP port of the walkthrough's service whose connections stay open: each task answers
/// every line with its name.
const HOLD_PORT: u16 = 7000;
/// The tasks' responder on [`UDP_PORT`] and [`HOLD_PORT`].
const RESPONDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/responder.py");
/// The client that holds connections across a change.
const HOLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/hold.py");

/// Starts the responder in container `name` (UDP and long-lived TCP, answering `name`).
fn respond(lab: &Lab, name: &str) {
    let (udp, tcp) = (UDP_PORT.to_string(), HOLD_PORT.to_string());
    lab.spawn(name, &["python3", RESPONDER, name, &udp, &tcp]);
}

/// `count` UDP queries to `addr`:[`UDP_PORT`] from `from`, each from a new socket (a new
/// conntrack flow); the answers or `FAIL`.
fn udp_requests(lab: &Lab, from: &str, addr: &str, count: usize) -> Vec<String> {
    let code = [
        "import socket".to_string(),
        format!("for i in range({count}):"),
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)".to_string(),
        "    s.settimeout(2)".to_string(),
        format!("    s.sendto(b'q', ('{addr}', {UDP_PORT}))"),
        "    try:".to_string(),
        "        print(s.recv(64).decode())".to_string(),
        "    except OSError:".to_string(),
        "        print('FAIL')".to_string(),
        "    s.close()".to_string(),
    ]
    .join("\n");
    text(&lab.exec(from, &["python3", "-c", &code]))
        .lines()
        .map(str::to_string)
        .collect()
}

/// A task of `services` on `host`: `weft lab container HOST NAME --service S...`, an
/// httpd and a UDP responder in it.
fn start_task(lab: &Lab, host: &str, name: &str, services: &[&str]) -> Task {
    let mut args = Vec::new();
    for s in services {
        args.extend(["--service", s]);
    }
    let addr = first_addr(&lab.container_ok(host, name, &args));
    assert!(
        addr.parse::<std::net::Ipv4Addr>().is_ok(),
        "weft lab container {host} {name} printed no address"
    );
    let httpd = serve(lab, name);
    respond(lab, name);
    Task {
        name: name.to_string(),
        host: host.to_string(),
        addr,
        httpd,
    }
}

/// `weft detach --netns` of a task's container on its host: it stops being a task.
fn detach(lab: &Lab, t: &Task) {
    let path = format!("/run/netns/{}", lab.netns(&t.name));
    lab.weft_ok(&t.host, &["detach", "--netns", &path]);
}

fn addrs(tasks: &[&Task]) -> Vec<String> {
    let mut v: Vec<String> = tasks.iter().map(|t| t.addr.clone()).collect();
    v.sort();
    v
}

/// The address `ping NAME` resolves to in `container` (from ping's first line,
/// `PING NAME (ADDR) ...`; whether the VIP answers ICMP does not matter).
fn ping_resolves(lab: &Lab, container: &str, name: &str) -> Option<String> {
    let out = lab.exec(container, &["ping", "-c", "1", "-W", "1", name]);
    let t = text(&out);
    observe(format!(
        "ping {name} in {container}: {t:?} {:?}",
        stderr(&out)
    ));
    let first = t.lines().next()?;
    Some(first.split('(').nth(1)?.split(')').next()?.to_string())
}

/// Every address the system resolver gives for `name` in `container`, sorted.
fn resolve_all(lab: &Lab, container: &str, name: &str) -> Vec<String> {
    let out = lab.exec(container, &["getent", "ahostsv4", name]);
    let set: BTreeSet<String> = text(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    observe(format!("getent ahostsv4 {name} in {container}: {set:?}"));
    set.into_iter().collect()
}

/// `count` GETs of `url` from a lab host or container.
fn get_from(lab: &Lab, from: &str, url: &str, count: usize) -> Vec<String> {
    requests(|cmd| lab.exec(from, cmd), url, count)
}

fn vip_url(view: &ServiceView) -> String {
    format!(
        "http://{}/",
        view.vip.as_deref().expect("the service has a VIP")
    )
}

/// [`check_round_robin`] from a lab container to `tasks`.
fn round_robin(lab: &Lab, client: &str, url: &str, tasks: &[&Task]) {
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    check_round_robin(client, |cmd| lab.exec(client, cmd), url, &names, CONVERGE);
}

/// `weft service create whoami --port 80 --port 5353/udp --port 7000 --publish 8000:80` on h1.
fn create_whoami(lab: &Lab) {
    let publish = format!("{PUBLISHED}:80");
    let udp = format!("{UDP_PORT}/udp");
    let hold = HOLD_PORT.to_string();
    let args = [
        "service",
        "create",
        "whoami",
        "--port",
        "80",
        "--port",
        &udp,
        "--port",
        &hold,
        "--publish",
        &publish,
    ];
    lab.weft_ok("h1", &args);
}

#[test]
fn walkthrough_vip_dns_round_robin_and_a_published_port_on_every_host() {
    let lab = lab_with_routers(5, &ROUTERS);
    create_whoami(&lab);

    // One task, on h1: the VIP every host agrees on.
    let w1 = start_task(&lab, "h1", "w1", &["whoami"]);
    let views = wait_healthy(&lab, &ROUTERS, "whoami", &addrs(&[&w1]), CONVERGE);
    let vip = agreed_vip(&views);
    let url = vip_url(&views[0]);

    // A client container on every host, the 4th included.
    let clients: Vec<(String, String)> = ROUTERS
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let name = format!("c{}", i + 1);
            let addr = client(&lab, h, &name);
            (name, addr)
        })
        .collect();

    // Scaled to 3: one task on each of h1..h3; the VIP stays.
    let w2 = start_task(&lab, "h2", "w2", &["whoami"]);
    let w3 = start_task(&lab, "h3", "w3", &["whoami"]);
    let all = [&w1, &w2, &w3];
    let views = wait_healthy(&lab, &ROUTERS, "whoami", &addrs(&all), CONVERGE);
    assert_eq!(agreed_vip(&views), vip, "scaling 1 → 3 changed the VIP");

    // DNS: `ping whoami` resolves to the VIP; tasks.whoami lists the tasks.
    for (c, _) in &clients {
        wait_for(
            &format!("`ping whoami` in {c} to resolve to the VIP {vip}"),
            CONVERGE,
            || (ping_resolves(&lab, c, "whoami").as_deref() == Some(vip.as_str())).then_some(()),
        );
        wait_for(
            &format!("tasks.whoami in {c} to list the 3 tasks"),
            CONVERGE,
            || (resolve_all(&lab, c, "tasks.whoami") == addrs(&all)).then_some(()),
        );
    }

    // 30 requests to the VIP from a container on each host reach all 3 tasks, 5..=15 each.
    for (c, _) in &clients {
        round_robin(&lab, c, &url, &all);
    }
    // UDP too: each query from a new socket is a new flow, balanced like a connection.
    for (c, _) in &clients {
        wait_for(
            &format!("{c} to reach each task over UDP through {vip}:{UDP_PORT}"),
            CONVERGE,
            || {
                let t = tally(&udp_requests(&lab, c, &vip, 6));
                observe(format!("UDP from {c}: {t:?}"));
                (t.len() == 3 && ["w1", "w2", "w3"].iter().all(|n| t.contains_key(*n)))
                    .then_some(())
            },
        );
        let answers = udp_requests(&lab, c, &vip, 12);
        assert_spread(
            &format!("12 UDP queries to {vip}:{UDP_PORT} from {c}"),
            &answers,
            &["w1", "w2", "w3"],
            2,
            6,
        );
    }
    // By name too, from the 4th host's container.
    let by_name = get_from(&lab, "c4", "http://whoami/", 30);
    assert_spread(
        "30 requests to http://whoami/ from c4",
        &by_name,
        &["w1", "w2", "w3"],
        5,
        15,
    );

    // Inside the overlay the task sees the client container's own address.
    for (c, addr) in &clients {
        // httpd's socket is dual-stack: it writes an IPv4 peer as `[::ffff:A.B.C.D]`.
        let seen: Vec<String> = get_from(&lab, c, &format!("{url}cgi-bin/peer"), 6)
            .iter()
            .map(|a| {
                let a = a.trim_start_matches('[').trim_end_matches(']');
                a.trim_start_matches("::ffff:").to_string()
            })
            .collect();
        assert_eq!(
            seen,
            vec![addr.clone(); 6],
            "the tasks saw {c} ({addr}) as {seen:?}"
        );
    }

    // The published port answers on every host, on 127.0.0.1 and on the host's address,
    // from the host itself and from outside (h5), spread over the tasks.
    for h in ROUTERS {
        let ip = lab.underlay_ip(h);
        for (from, url) in [
            (h, format!("http://127.0.0.1:{PUBLISHED}/")),
            (h, format!("http://{ip}:{PUBLISHED}/")),
            (OUTSIDE, format!("http://{ip}:{PUBLISHED}/")),
        ] {
            let answers = get_from(&lab, from, &url, 9);
            assert_spread(
                &format!("9 requests to {url} from {from}"),
                &answers,
                &["w1", "w2", "w3"],
                1,
                9,
            );
        }
    }

    // Scaled back to 1 while c1 holds a connection to each task (round robin: one each):
    // the one to w1 goes on, on w1.
    let held = lab.dir().join("held");
    let go = lab.dir().join("go");
    let (held_s, go_s) = (held.display().to_string(), go.display().to_string());
    let port = HOLD_PORT.to_string();
    let pairs = std::thread::scope(|scope| {
        let client =
            scope.spawn(|| lab.exec("c1", &["python3", HOLD, &vip, &port, "3", &held_s, &go_s]));
        let first = wait_for("c1 to hold a connection to each task", CONVERGE, || {
            std::fs::read_to_string(&held).ok()
        });
        let mut names: Vec<&str> = first.lines().collect();
        names.sort();
        assert_eq!(
            names,
            ["w1", "w2", "w3"],
            "3 new connections from c1 went to {names:?}"
        );
        detach(&lab, &w2);
        detach(&lab, &w3);
        wait_healthy(&lab, &ROUTERS, "whoami", &addrs(&[&w1]), CONVERGE);
        std::fs::write(&go, "").unwrap();
        let out = client.join().expect("the holding client's thread");
        assert!(out.status.success(), "hold.py in c1: {}", stderr(&out));
        text(&out)
    });
    eprintln!("connections held across the scale-down (first, then second answer): {pairs:?}");
    assert!(
        pairs.lines().any(|l| l == "w1 w1"),
        "c1's connection to w1 did not survive the removal of w2 and w3: {pairs:?}"
    );
    let views = wait_healthy(&lab, &ROUTERS, "whoami", &addrs(&[&w1]), CONVERGE);
    assert_eq!(agreed_vip(&views), vip, "scaling 3 → 1 changed the VIP");
    wait_for("tasks.whoami in c2 to list w1 only", CONVERGE, || {
        (resolve_all(&lab, "c2", "tasks.whoami") == addrs(&[&w1])).then_some(())
    });
    assert_eq!(
        ping_resolves(&lab, "c2", "whoami").as_deref(),
        Some(vip.as_str())
    );
    for (c, _) in &clients {
        round_robin(&lab, c, &url, &[&w1]);
    }
}

/// haproxy's health check timing: a server is out after FALL failed checks INTER apart.
const HAPROXY_INTER_MS: u64 = 1000;
const HAPROXY_FALL: u64 = 2;

/// Writes haproxy's configuration: a frontend on 127.0.0.1:8080 of h5, round robin over
/// the published port of every router host, each checked.
fn haproxy_config(lab: &Lab) -> String {
    let mut cfg = String::from(
        "global\n    maxconn 512\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
         frontend web\n    bind 127.0.0.1:8080\n    default_backend hosts\n\
         backend hosts\n    balance roundrobin\n",
    );
    for h in ROUTERS {
        cfg.push_str(&format!(
            "    server {h} {}:{PUBLISHED} check inter {HAPROXY_INTER_MS} fall {HAPROXY_FALL} rise 2\n",
            lab.underlay_ip(h)
        ));
    }
    let path = lab.dir().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.display().to_string()
}

/// Requests through haproxy for `during`, each stamped with when it started relative to
/// `since`; returns (seconds, answer). On a loaded machine a request (a process started
/// in a namespace) can take a second, so it goes on past `during`, up to four times it,
/// until at least [`LATE_REQUESTS`] requests started after `grace`.
fn through_haproxy(lab: &Lab, since: Instant, during: Duration, grace: f64) -> Vec<(f64, String)> {
    let (end, cap) = (Instant::now() + during, Instant::now() + during * 4);
    let mut out: Vec<(f64, String)> = Vec::new();
    loop {
        let late = out.iter().filter(|(t, _)| *t >= grace).count();
        let now = Instant::now();
        if now >= cap || (now >= end && late >= LATE_REQUESTS) {
            break;
        }
        let t = since.elapsed().as_secs_f64();
        let a = get_from(lab, OUTSIDE, "http://127.0.0.1:8080/", 1);
        out.push((t, a.first().cloned().unwrap_or_else(|| "FAIL".into())));
    }
    out
}

/// How many requests after haproxy's check interval make a verdict.
const LATE_REQUESTS: usize = 10;

/// Fails unless every request that started `grace` after the event succeeded (answered by
/// one of `tasks`); earlier failures are allowed (haproxy had not checked yet).
fn assert_served_after(what: &str, log: &[(f64, String)], grace: f64, tasks: &[&str]) {
    let late: Vec<&(f64, String)> = log.iter().filter(|(t, _)| *t >= grace).collect();
    assert!(
        late.len() >= LATE_REQUESTS,
        "{what}: only {} requests after {grace} s",
        late.len()
    );
    let failed: Vec<&&(f64, String)> = late
        .iter()
        .filter(|(_, a)| !tasks.contains(&a.as_str()))
        .collect();
    let early = log.len() - late.len();
    let early_failed = log
        .iter()
        .filter(|(t, a)| *t < grace && !tasks.contains(&a.as_str()))
        .count();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests after haproxy's check interval ({grace} s) failed: {failed:?} \
         (before it: {early_failed} of {early})",
        failed.len(),
        late.len()
    );
    eprintln!(
        "{what}: {} requests after {grace} s all served ({early_failed} of {early} before failed)",
        late.len()
    );
}

#[test]
fn haproxy_in_front_of_every_host_survives_a_killed_router_and_a_stopped_task() {
    require_root_and_tools(&["haproxy"]);
    let lab = lab_with_routers(5, &ROUTERS);
    create_whoami(&lab);
    let w1 = start_task(&lab, "h1", "w1", &["whoami"]);
    let w2 = start_task(&lab, "h2", "w2", &["whoami"]);
    let w3 = start_task(&lab, "h3", "w3", &["whoami"]);
    wait_healthy(&lab, &ROUTERS, "whoami", &addrs(&[&w1, &w2, &w3]), CONVERGE);

    let cfg = haproxy_config(&lab);
    lab.spawn(OUTSIDE, &["haproxy", "-db", "-f", &cfg]);
    let grace = (HAPROXY_INTER_MS * HAPROXY_FALL) as f64 / 1000.0;
    let url = "http://127.0.0.1:8080/";
    let reach_all = |what: &str, tasks: &[&str]| {
        wait_for(what, CONVERGE, || {
            let t = tally(&get_from(&lab, OUTSIDE, url, 12));
            observe(format!("through haproxy: {t:?}"));
            (t.len() == tasks.len() && tasks.iter().all(|n| t.contains_key(*n))).then_some(())
        });
    };
    reach_all("haproxy on h5 to reach every task", &["w1", "w2", "w3"]);

    // h1's router dies (kill -9): after haproxy's check interval nothing fails.
    let since = Instant::now();
    lab.kill_router("h1");
    let log = through_haproxy(&lab, since, Duration::from_secs(10), grace);
    assert_served_after("h1's router killed -9", &log, grace, &["w1", "w2", "w3"]);
    // The other hosts have taken h1's task out of rotation (the mesh lost h1).
    wait_healthy(&lab, &ROUTERS[1..], "whoami", &addrs(&[&w2, &w3]), CONVERGE);

    // h1 comes back; then one task (w2) stops: detached and its httpd gone.
    lab.weft_ok("h1", &["launch", "--nickname", "h1", "h2", "h3", "h4"]);
    lab.wait_peers(&ROUTERS, Duration::from_secs(30));
    wait_healthy(&lab, &ROUTERS, "whoami", &addrs(&[&w1, &w2, &w3]), CONVERGE);
    reach_all("haproxy to reach every task again", &["w1", "w2", "w3"]);
    let since = Instant::now();
    detach(&lab, &w2);
    lab.kill(w2.httpd);
    let log = through_haproxy(&lab, since, Duration::from_secs(8), grace);
    assert_served_after("task w2 stopped", &log, grace, &["w1", "w3"]);
}

#[test]
fn a_task_whose_health_check_fails_leaves_rotation_and_comes_back() {
    const INTERVAL: Duration = Duration::from_secs(1);
    let hosts = ["h1", "h2", "h3"];
    let lab = lab_with_routers(3, &hosts);
    lab.weft_ok(
        "h1",
        &[
            "service",
            "create",
            "hc",
            "--port",
            "80",
            "--health",
            "http:/",
            "--health-interval",
            "1s",
        ],
    );
    let w1 = start_task(&lab, "h1", "w1", &["hc"]);
    let w2 = start_task(&lab, "h2", "w2", &["hc"]);
    client(&lab, "h3", "c3");
    let views = wait_healthy(&lab, &hosts, "hc", &addrs(&[&w1, &w2]), CONVERGE);
    let url = vip_url(&views[0]);
    round_robin(&lab, "c3", &url, &[&w1, &w2][..]);

    // w2's httpd stops; its container stays attached. Its own host sees it fail and every
    // host takes it out of rotation within 2 intervals (+1 s for the gossip).
    lab.kill(w2.httpd);
    let stopped = Instant::now();
    let limit = INTERVAL * 2 + Duration::from_secs(1);
    wait_healthy(&lab, &hosts, "hc", &addrs(&[&w1]), limit * 3);
    let took = stopped.elapsed();
    eprintln!(
        "w2 out of rotation on every host after {:.2} s",
        took.as_secs_f64()
    );
    assert!(
        took <= limit,
        "w2 left rotation after {:.2} s, more than 2 intervals of {} s (+1 s of gossip)",
        took.as_secs_f64(),
        INTERVAL.as_secs()
    );
    let answers = get_from(&lab, "c3", &url, 20);
    assert_spread("20 requests with w2 unhealthy", &answers, &["w1"], 20, 20);
    let entry = inspect(&lab, "h3", "hc").expect("hc on h3");
    assert!(
        entry.tasks.iter().any(|t| t.addr == w2.addr && !t.healthy),
        "an unhealthy task stays listed, out of rotation: {:?}",
        entry.tasks
    );

    // Healthy again: back in rotation.
    serve(&lab, "w2");
    wait_healthy(&lab, &hosts, "hc", &addrs(&[&w1, &w2]), CONVERGE);
    round_robin(&lab, "c3", &url, &[&w1, &w2][..]);
}

/// Whether the host's namespace has the table `ip weft_svc`.
fn has_svc_table(lab: &Lab, host: &str) -> bool {
    let out = lab.exec(host, &["nft", "list", "tables"]);
    assert!(
        out.status.success(),
        "nft list tables on {host}: {}",
        stderr(&out)
    );
    text(&out).lines().any(|l| l.trim() == "table ip weft_svc")
}

#[test]
fn restarting_every_router_keeps_vips_and_definitions_and_reset_removes_the_table() {
    let hosts = ["h1", "h2", "h3"];
    let lab = lab_with_routers(3, &hosts);
    create_whoami(&lab);
    lab.weft_ok(
        "h2",
        &[
            "service", "create", "other", "--port", "8080/tcp", "--port", "53/udp",
        ],
    );
    let w1 = start_task(&lab, "h1", "w1", &["whoami", "other"]);
    let w2 = start_task(&lab, "h2", "w2", &["whoami"]);
    client(&lab, "h3", "c3");
    let before = wait_healthy(&lab, &hosts, "whoami", &addrs(&[&w1, &w2]), CONVERGE);
    let other = wait_healthy(&lab, &hosts, "other", &addrs(&[&w1]), CONVERGE);
    let url = vip_url(&before[0]);
    round_robin(&lab, "c3", &url, &[&w1, &w2][..]);
    for h in hosts.iter().chain(&["w1", "w2", "c3"]) {
        assert!(has_svc_table(&lab, h), "{h} has no table ip weft_svc");
    }

    for h in hosts {
        lab.weft_ok(h, &["stop"]);
    }
    lab.launch_mesh(&hosts, &[]);
    lab.wait_peers(&hosts, Duration::from_secs(30));

    let after = wait_healthy(&lab, &hosts, "whoami", &addrs(&[&w1, &w2]), CONVERGE);
    let other_after = wait_healthy(&lab, &hosts, "other", &addrs(&[&w1]), CONVERGE);
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(
            after[i].definition(),
            before[i].definition(),
            "whoami on {h} changed across the restart"
        );
        assert_eq!(
            other_after[i].definition(),
            other[i].definition(),
            "other on {h} changed across the restart"
        );
    }
    round_robin(&lab, "c3", &url, &[&w1, &w2][..]);
    let answers = get_from(&lab, "h3", "http://127.0.0.1:8000/", 6);
    assert_spread(
        "the published port after the restart",
        &answers,
        &["w1", "w2"],
        1,
        5,
    );

    // `weft reset` leaves no table of weft's services, on the hosts nor in the
    // containers that outlive it.
    for h in hosts {
        lab.weft_ok(h, &["reset", "--force"]);
        assert!(
            !has_svc_table(&lab, h),
            "weft reset left table ip weft_svc on {h}"
        );
    }
    for c in ["w1", "w2", "c3"] {
        assert!(
            !has_svc_table(&lab, c),
            "weft reset left table ip weft_svc in container {c}"
        );
    }
}

/// What a rejected command must not change on the host: services, attachments, rules.
fn snapshot(lab: &Lab) -> (String, String, String) {
    let ls = lab.weft_ok("h1", &["service", "ls"]);
    let ps = lab.weft_ok("h1", &["ps"]);
    let nft = text(&lab.exec("h1", &["nft", "list", "table", "ip", "weft_svc"]));
    (ls, ps, nft)
}

/// Runs `args` (a weft command on h1, or `weft lab container` when it starts with
/// "lab-container"), which must fail with one line naming `needle` and change nothing.
fn refused(lab: &Lab, args: &[&str], needle: &str) {
    let before = snapshot(lab);
    let out = match args {
        ["lab-container", host, name, rest @ ..] => lab.container(host, name, rest),
        _ => lab.weft("h1", args),
    };
    let err = stderr(&out);
    let cmd = args.join(" ");
    assert!(
        !out.status.success(),
        "`{cmd}` was accepted: {}",
        text(&out)
    );
    assert_eq!(
        err.lines().count(),
        1,
        "`{cmd}` must fail with one line, not: {err}"
    );
    assert!(
        err.contains(needle),
        "`{cmd}` failed without naming {needle:?}: {err}"
    );
    assert_eq!(
        snapshot(lab),
        before,
        "`{cmd}` failed but changed something"
    );
    eprintln!("{cmd}: {err}");
}

#[test]
fn bad_service_input_gets_one_line_and_changes_nothing() {
    let lab = lab_with_routers(1, &["h1"]);
    lab.weft_ok(
        "h1",
        &[
            "service",
            "create",
            "web",
            "--port",
            "80",
            "--publish",
            "8080:80",
        ],
    );
    let c1 = client(&lab, "h1", "c1");
    let c1_path = format!("/run/netns/{}", lab.netns("c1"));

    let create = |name: &'static str, flags: &[&'static str]| {
        let mut a = vec!["service", "create", name];
        a.extend_from_slice(flags);
        a
    };
    refused(&lab, &create("web", &["--port", "81"]), "web");
    refused(&lab, &create("p0", &["--port", "0"]), "0");
    refused(&lab, &create("p1", &["--port", "65536"]), "65536");
    refused(&lab, &create("p2", &["--publish", "65536:80"]), "65536");
    refused(&lab, &create("p3", &["--publish", "0:80"]), "0");
    refused(
        &lab,
        &create("s1", &["--port", "80", "--subnet", "192.168.0.0/24"]),
        "192.168.0.0/24",
    );
    refused(&lab, &create("x1", &["--publish", "6783:80"]), "6783");
    refused(&lab, &create("x2", &["--publish", "6784:80/udp"]), "6784");
    refused(&lab, &create("x3", &["--publish", "8080:81"]), "8080");
    // A port a program on the host listens on (as docker-proxy does for a `-p` mapping
    // on Docker's own bridge).
    let listener = lab.spawn("h1", &["busybox", "httpd", "-f", "-p", "9100", "-h", "/"]);
    wait_for("httpd to listen on h1's port 9100", CONVERGE, || {
        // 0x238C is 9100; 0A is LISTEN (busybox httpd takes IPv6's any address).
        ["tcp", "tcp6"]
            .iter()
            .filter_map(|t| std::fs::read_to_string(format!("/proc/{listener}/net/{t}")).ok())
            .any(|table| {
                table.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(":238C") && f[3] == "0A"
                })
            })
            .then_some(())
    });
    refused(&lab, &create("x4", &["--publish", "9100:80"]), "9100");
    lab.kill(listener);
    refused(
        &lab,
        &["attach", "--service", "nosuch", "--netns", &c1_path],
        "nosuch",
    );
    refused(
        &lab,
        &["lab-container", "h1", "t1", "--service", "nosuch"],
        "nosuch",
    );
    assert!(
        lab.exec("t1", &["true"]).status.code() != Some(0),
        "the refused container t1 was left behind"
    );
    // c1 still has its one address and nothing more.
    let ps = lab.weft_ok("h1", &["ps"]);
    assert!(ps.contains(&c1), "c1 ({c1}) is still attached: {ps}");
}
