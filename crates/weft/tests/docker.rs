//! End-to-end tests of the Docker integration on labs whose hosts each run their own real
//! dockerd (`weft lab up --docker`): the network plugin (`docker run --net=weft`), the API
//! proxy (WEFT_CIDR), `weft run`, `weft attach CONTAINER`, published ports, and what
//! happens to containers across router restarts.

use std::time::Duration;

use weft_testkit::{observe, wait_for, Lab, DOCKER_CLIENT, ETH0_INET};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const SLEEP: &[&str] = &["busybox", "sleep", "3600"];

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The IPv4 address on `eth0` inside the container, as the container itself sees it.
fn inside_ip(lab: &Lab, host: &str, container: &str) -> String {
    let out = lab.docker_ok(
        host,
        &["exec", container, "ip", "-4", "-o", "addr", "show", "eth0"],
    );
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_string()
}

fn ping(lab: &Lab, host: &str, container: &str, target: &str) -> bool {
    let out = lab.docker(
        host,
        &["exec", container, "ping", "-c", "1", "-W", "2", target],
    );
    observe(format!(
        "ping {target} from {container} on {host}: {}",
        if out.status.success() {
            "ok"
        } else {
            "no answer"
        }
    ));
    out.status.success()
}

fn wait_ping(lab: &Lab, host: &str, container: &str, target: &str) {
    wait_for(
        &format!("{container} on {host} to ping {target}"),
        Duration::from_secs(10),
        || ping(lab, host, container, target).then_some(()),
    );
}

/// `docker run -d --net=NET --name NAME EXTRA... busybox sleep 3600` on `host`.
fn run_on(lab: &Lab, host: &str, net: &str, name: &str, extra: &[String]) -> String {
    let mut args: Vec<String> = ["run", "-d", "--net", net, "--name", name]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().cloned());
    args.extend(SLEEP.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.docker_ok(host, &args).trim().to_string()
}

/// `docker run -d --net NET --ip IP --name NAME busybox sleep 3600` on `host`, as it came out.
fn claim(lab: &Lab, host: &str, net: &str, ip: &str, name: &str) -> std::process::Output {
    let _ = lab.docker(host, &["rm", "-f", name]);
    let mut args = vec!["run", "-d", "--net", net, "--ip", ip, "--name", name];
    args.extend_from_slice(SLEEP);
    lab.docker(host, &args)
}

/// An HTTP GET with curl on a lab host (or inside nothing but the host's namespace).
fn http_get(lab: &Lab, host: &str, url: &str) -> Option<String> {
    let out = lab.exec(host, &["curl", "-s", "-m", "3", url]);
    out.status.success().then(|| text(&out))
}

#[test]
fn plugin_network_connects_containers_across_three_hosts() {
    let lab = Lab::docker_mesh(WEFT, 3);
    let hosts = lab.hosts();

    // One container per host on the network weft; names through weft's DNS.
    let mut ips = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let name = format!("c{}", i + 1);
        run_on(&lab, h, "weft", &name, &lab.dns_args(h));
        let reported = lab.docker_ip(h, &name, "weft");
        let seen = inside_ip(&lab, h, &name);
        observe(format!(
            "{name} on {h}: docker inspect {reported}, eth0 {seen}"
        ));
        assert_eq!(
            reported, seen,
            "docker inspect must report the overlay address"
        );
        let ip: std::net::Ipv4Addr = reported.parse().expect("an IPv4 address");
        assert!(
            "10.32.0.0/12"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&ip),
            "{ip} is not in weft's range"
        );
        ips.push(reported);
    }
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        ips.len(),
        "addresses must be unique: {ips:?}"
    );

    for (i, h) in hosts.iter().enumerate() {
        let me = format!("c{}", i + 1);
        let j = (i + 1) % hosts.len();
        let other = format!("c{}", j + 1);
        assert!(
            ping(&lab, h, &me, &ips[j]),
            "{me} cannot ping {other} by address"
        );
        // Names registered on another host take a moment to arrive.
        wait_ping(&lab, h, &me, &other);
        wait_ping(&lab, h, &me, &format!("{other}.weft.local"));
    }

    // A stopped container's name goes from every host, and comes back when it starts.
    lab.docker_ok(&hosts[2], &["stop", "-t", "0", "c3"]);
    wait_for("c3's name to go on h1", Duration::from_secs(5), || {
        (!lab.weft(&hosts[0], &["dns-lookup", "c3"]).status.success()).then_some(())
    });
    lab.docker_ok(&hosts[2], &["start", "c3"]);
    ips[2] = lab.docker_ip(&hosts[2], "c3", "weft");
    wait_ping(&lab, &hosts[0], "c1", "c3");

    // `weft ps` lists the container by its short id, with its address.
    let id = lab.docker_ok(&hosts[0], &["inspect", "-f", "{{.Id}}", "c1"]);
    let ps = lab.weft_ok(&hosts[0], &["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id[..12]) && l.contains(&ips[0])),
        "weft ps does not show c1 ({}): {ps}",
        ips[0]
    );

    // A published port answers on the host's address from another host, from the host
    // itself, and on 127.0.0.1.
    lab.docker_ok(
        &hosts[0],
        &[
            "run",
            "-d",
            "--net=weft",
            "--name",
            "web",
            "-p",
            "8080:80",
            "busybox",
            "sh",
            "-c",
            "echo hello-from-web > /index.html && exec httpd -f -p 80 -h /",
        ],
    );
    let h1 = lab.underlay_ip(&hosts[0]);
    for (from, url) in [
        (&hosts[1], format!("http://{h1}:8080/")),
        (&hosts[0], format!("http://{h1}:8080/")),
        (&hosts[0], "http://127.0.0.1:8080/".to_string()),
    ] {
        let got = wait_for(
            &format!("{url} to answer on {from}"),
            Duration::from_secs(10),
            || http_get(&lab, from, &url),
        );
        assert_eq!(got, "hello-from-web", "{url} from {from}");
    }
    lab.docker_ok(&hosts[0], &["rm", "-f", "web"]);
    let out = lab.exec(
        &hosts[1],
        &["curl", "-s", "-m", "2", &format!("http://{h1}:8080/")],
    );
    assert!(
        !out.status.success(),
        "the port is still published after the container went"
    );

    // A tenant network: one subnet, addresses claimed with --ip, isolated from weft's.
    for h in &hosts[..2] {
        lab.docker_ok(
            h,
            &[
                "network",
                "create",
                "-d",
                "weft",
                "--ipam-driver",
                "weft",
                "--subnet",
                "10.32.5.0/24",
                "tenant",
            ],
        );
    }
    run_on(
        &lab,
        &hosts[0],
        "tenant",
        "t1",
        &["--ip".into(), "10.32.5.10".into()],
    );
    run_on(&lab, &hosts[1], "tenant", "t2", &[]);
    assert_eq!(lab.docker_ip(&hosts[0], "t1", "tenant"), "10.32.5.10");
    let t2 = lab.docker_ip(&hosts[1], "t2", "tenant");
    assert!(t2.starts_with("10.32.5."), "t2 got {t2}");
    wait_ping(&lab, &hosts[0], "t1", &t2);
    assert!(
        !ping(&lab, &hosts[0], "t1", &ips[1]),
        "a tenant container reached the default subnet"
    );

    // An address held on one host is refused on another, and free again once its
    // container is removed.
    let out = claim(&lab, &hosts[1], "tenant", "10.32.5.10", "t3");
    assert!(!out.status.success(), "10.32.5.10 was given twice");
    let _ = lab.docker(&hosts[1], &["rm", "-f", "t3"]);
    lab.docker_ok(&hosts[0], &["rm", "-f", "t1"]);
    wait_for(
        "10.32.5.10 to be free on another host",
        Duration::from_secs(10),
        || {
            let out = claim(&lab, &hosts[1], "tenant", "10.32.5.10", "t4");
            out.status.success().then_some(())
        },
    );
}

#[test]
fn proxy_attaches_per_weft_cidr_and_passes_streams() {
    let lab = Lab::docker_mesh(WEFT, 2);
    let hosts = lab.hosts();
    let (h1, h2) = (&hosts[0], &hosts[1]);

    // `weft env` / `weft config` point the client at the proxy.
    let env = lab.weft_ok(h1, &["env"]);
    let proxy = env
        .lines()
        .find_map(|l| l.strip_prefix("export DOCKER_HOST="))
        .map(|v| v.trim_matches('\'').to_string())
        .expect("weft env exports DOCKER_HOST");
    assert!(
        proxy.starts_with("unix://") && proxy.ends_with("/docker.sock"),
        "{env}"
    );
    assert!(env.contains("ORIG_DOCKER_HOST="), "{env}");
    let config = lab.weft_ok(h1, &["config"]);
    assert_eq!(config.trim(), format!("-H={proxy}"));
    let restore = lab.weft_ok(h1, &["env", "--restore"]);
    assert!(restore.contains("DOCKER_HOST"), "{restore}");

    let via = |host: &str, args: &[&str]| -> std::process::Output {
        let env = lab.weft_ok(host, &["env"]);
        let sock = env
            .lines()
            .find_map(|l| l.strip_prefix("export DOCKER_HOST="))
            .map(|v| v.trim_matches('\'').to_string())
            .unwrap_or_default();
        let mut cmd = vec![DOCKER_CLIENT, "-H", &sock];
        cmd.extend_from_slice(args);
        lab.exec(host, &cmd)
    };
    let via_ok = |host: &str, args: &[&str]| -> String {
        let out = via(host, args);
        assert!(
            out.status.success(),
            "docker {} through the proxy on {host} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        text(&out)
    };

    // The process starts with its weft interface already up.
    let run = ["run", "--rm", "-e", "WEFT_CIDR=net:10.32.1.0/24", "busybox"];
    let first = via_ok(h1, &[&run[..], &ETH0_INET].concat());
    assert!(
        first.contains("inet 10.32.1."),
        "no weft address at start: {first}"
    );

    via_ok(
        h1,
        &[
            "run",
            "-d",
            "-e",
            "WEFT_CIDR=net:10.32.1.0/24",
            "--name",
            "p1",
            "busybox",
            "sleep",
            "3600",
        ],
    );
    via_ok(
        h2,
        &[
            "run",
            "-d",
            "-e",
            "WEFT_CIDR=net:10.32.1.0/24",
            "--name",
            "p2",
            "busybox",
            "sleep",
            "3600",
        ],
    );
    via_ok(
        h2,
        &["run", "-d", "--name", "d2", "busybox", "sleep", "3600"],
    );
    let net = "weft-10.32.1.0-24";
    let p1 = lab.docker_ip(h1, "p1", net);
    let p2 = lab.docker_ip(h2, "p2", net);
    let d2 = lab.docker_ip(h2, "d2", "weft");
    observe(format!("p1 {p1}, p2 {p2}, d2 {d2}"));
    assert!(
        p1.starts_with("10.32.1.") && p2.starts_with("10.32.1."),
        "{p1} {p2}"
    );
    assert_eq!(inside_ip(&lab, h1, "p1"), p1);
    // Names resolve (the proxy set --dns), the subnet connects, the default one does not.
    wait_ping(&lab, h1, "p1", "p2");
    wait_ping(&lab, h2, "p2", "p1.weft.local");
    assert!(
        !ping(&lab, h1, "p1", &d2),
        "p1 reached the default subnet's d2"
    );

    // Several addresses at once: one interface per subnet, all up at start.
    let both = via_ok(
        h1,
        &[
            "run",
            "--rm",
            "-e",
            "WEFT_CIDR=net:10.32.1.0/24 ip:10.32.4.4/24",
            "busybox",
            "ip",
            "-4",
            "-o",
            "addr",
        ],
    );
    assert!(
        both.contains("inet 10.32.1.") && both.contains("inet 10.32.4.4/24"),
        "{both}"
    );

    // `docker run -i` and `-ti` through the proxy are interactive.
    let out = lab.exec(
        h1,
        &[
            "sh", "-c",
            &format!("echo 'echo answer-$((6*7)); exit 3' | {DOCKER_CLIENT} -H {proxy} run -i --rm busybox sh"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit code through the hijacked stream: {out:?}"
    );
    assert_eq!(text(&out), "answer-42");
    let out = lab.exec(
        h1,
        &[
            "script",
            "-qec",
            &format!("{DOCKER_CLIENT} -H {proxy} run -ti --rm busybox sh -c 'tty && echo tty-ok'"),
            "/dev/null",
        ],
    );
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("/dev/pts/") && t.contains("tty-ok"),
        "no tty: {t}"
    );
    // Streams pass through: exec and logs.
    assert_eq!(via_ok(h1, &["exec", "p1", "hostname"]), "p1");
    via_ok(
        h1,
        &[
            "run",
            "-d",
            "--name",
            "talker",
            "busybox",
            "sh",
            "-c",
            "echo line-one; sleep 3600",
        ],
    );
    let logs = wait_for("talker's log", Duration::from_secs(10), || {
        let l = via_ok(h1, &["logs", "talker"]);
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(logs, "line-one");

    // WEFT_CIDR=none leaves the container alone; bad input is refused and makes nothing.
    via_ok(
        h1,
        &[
            "run",
            "-d",
            "-e",
            "WEFT_CIDR=none",
            "--name",
            "plain",
            "busybox",
            "sleep",
            "3600",
        ],
    );
    let nets = lab.docker_ok(
        h1,
        &[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            "plain",
        ],
    );
    assert_eq!(nets.trim(), "bridge");
    let out = via(
        h1,
        &[
            "run",
            "-d",
            "-e",
            "WEFT_CIDR=net:banana",
            "--name",
            "bad",
            "busybox",
            "true",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WEFT_CIDR") && err.contains("net:"), "{err}");
    assert!(
        !lab.docker(h1, &["inspect", "bad"]).status.success(),
        "a refused container was created"
    );

    // `weft run` creates, attaches and starts in one step and prints the id.
    let id = lab.weft_ok(
        h1,
        &[
            "run",
            "ip:10.32.2.7/24",
            "--name",
            "r1",
            "busybox",
            "sleep",
            "3600",
        ],
    );
    let id = id.trim();
    assert_eq!(id.len(), 64, "weft run printed {id:?}");
    assert_eq!(lab.docker_ip(h1, "r1", "weft-10.32.2.0-24"), "10.32.2.7");

    // `weft attach CONTAINER` on a plain container; `weft ps`; a removed container is
    // detached and its name and address freed.
    lab.docker_ok(
        h2,
        &["run", "-d", "--name", "b1", "busybox", "sleep", "3600"],
    );
    let got = lab.weft_ok(h2, &["attach", "ip:10.32.3.3/24", "b1"]);
    assert_eq!(got.trim(), "10.32.3.3/24");
    let inside = lab.docker_ok(
        h2,
        &["exec", "b1", "ip", "-4", "-o", "addr", "show", "ethwe"],
    );
    assert!(inside.contains("10.32.3.3/24"), "{inside}");
    let ps = lab.weft_ok(h2, &["ps", "b1"]);
    assert!(ps.contains("10.32.3.3/24"), "weft ps b1: {ps}");
    let found = wait_for(
        "b1's name on the other host",
        Duration::from_secs(5),
        || {
            let out = lab.weft(h1, &["dns-lookup", "b1"]);
            out.status.success().then(|| text(&out))
        },
    );
    assert_eq!(found, "10.32.3.3");
    // Detach by name takes the address away; attach again gives it back.
    let removed = lab.weft_ok(h2, &["detach", "b1"]);
    assert_eq!(removed.trim(), "10.32.3.3/24");
    let out = lab.docker(h2, &["exec", "b1", "ip", "link", "show", "ethwe"]);
    assert!(!out.status.success(), "ethwe is still in b1 after detach");
    assert_eq!(
        lab.weft_ok(h2, &["attach", "ip:10.32.3.3/24", "b1"]).trim(),
        "10.32.3.3/24"
    );
    lab.docker_ok(h2, &["rm", "-f", "b1"]);
    wait_for("b1 to leave weft ps", Duration::from_secs(10), || {
        (!lab.weft_ok(h2, &["ps"]).contains("10.32.3.3")).then_some(())
    });
    wait_for(
        "b1's name to go on the other host",
        Duration::from_secs(5),
        || (!lab.weft(h1, &["dns-lookup", "b1"]).status.success()).then_some(()),
    );
    lab.docker_ok(
        h2,
        &["run", "-d", "--name", "b2", "busybox", "sleep", "3600"],
    );
    assert_eq!(
        lab.weft_ok(h2, &["attach", "ip:10.32.3.3/24", "b2"]).trim(),
        "10.32.3.3/24"
    );
}

#[test]
fn router_restart_keeps_containers_and_releases_what_went_meanwhile() {
    let lab = Lab::docker_mesh(WEFT, 2);
    let hosts = lab.hosts();
    let (h1, h2) = (&hosts[0], &hosts[1]);
    let peer = lab.underlay_ip(h2).to_string();

    run_on(&lab, h1, "weft", "k1", &[]);
    run_on(&lab, h2, "weft", "k2", &[]);
    run_on(
        &lab,
        h1,
        "weft",
        "gone",
        &["--ip".into(), "10.32.9.9".into()],
    );
    let k2 = lab.docker_ip(h2, "k2", "weft");
    wait_ping(&lab, h1, "k1", &k2);

    // The router stops: containers stay connected through the kernel's fastdp (once the
    // pair is on it: a ping may have gone through the sleeve, which stops with the router).
    lab.wait_paths(h1, "fastdp", Duration::from_secs(45));
    lab.weft_ok(h1, &["stop"]);
    assert!(
        ping(&lab, h1, "k1", &k2),
        "k1 lost k2 when the router stopped"
    );

    // A container removed while the router is down: dockerd cannot reach the plugin
    // (it gives up after its own retries), so the address is still held in weft...
    let out = lab.docker(h1, &["rm", "-f", "gone"]);
    assert!(out.status.success(), "docker rm -f: {out:?}");

    // ...until the router comes back and reconciles.
    lab.weft_ok(h1, &["launch", &peer]);
    assert!(ping(&lab, h1, "k1", &k2), "k1 lost k2 after the restart");
    wait_for(
        "10.32.9.9 to be free after the restart",
        Duration::from_secs(15),
        || {
            let out = claim(&lab, h1, "weft", "10.32.9.9", "again");
            out.status.success().then_some(())
        },
    );
    // The plugin serves without a new activation: new containers, stops and removals work.
    run_on(&lab, h1, "weft", "k3", &[]);
    wait_ping(&lab, h1, "k3", &k2);
    let k1 = lab.docker_ip(h1, "k1", "weft");
    lab.docker_ok(h1, &["stop", "k1"]);
    wait_for("k1's address to be free", Duration::from_secs(10), || {
        let out = claim(&lab, h1, "weft", &k1, "k1b");
        out.status.success().then_some(())
    });

    // `weft reset` takes weft's networks off Docker (once their containers are gone).
    lab.docker_ok(h2, &["rm", "-f", "k2"]);
    lab.weft_ok(h2, &["reset"]);
    let nets = lab.docker_ok(h2, &["network", "ls", "--format", "{{.Driver}}"]);
    assert!(
        !nets.lines().any(|d| d == "weft"),
        "weft networks left after reset: {nets}"
    );
}
