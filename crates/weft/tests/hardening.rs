//! End-to-end tests of issue 13's hardening on labs of network namespaces: the local API
//! that only root can drive, anti-spoofing on the bridge, and attach across kill -9.

use std::process::Output;
use std::time::Duration;

use weft_testkit::{require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// curl on `host` as the unprivileged user nobody (uid/gid 65534, no groups), printing
/// the body then the status code on the last line.
fn curl_as_nobody(lab: &Lab, host: &str, args: &[&str]) -> String {
    let mut cmd = vec![
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "curl",
        "-sS",
        "-m",
        "10",
        "-w",
        "\n%{http_code}",
    ];
    cmd.extend_from_slice(args);
    text(&lab.exec(host, &cmd))
}

/// `GET /report` on the read-only TCP API as nobody, with `Host: HOST_HEADER` (what a
/// browser sends for a page on that name).
fn report_as_nobody_for(lab: &Lab, api: &str, host_header: &str) -> String {
    let host = format!("Host: {host_header}");
    curl_as_nobody(lab, "h1", &["-H", &host, &format!("{api}/report")])
}

/// `POST URL` on h1 as nobody, with these headers and, if given, a body.
fn post_as_nobody(lab: &Lab, url: &str, headers: &[&str], body: Option<&str>) -> String {
    let mut args = vec!["-X", "POST"];
    for h in headers {
        args.extend(["-H", h]);
    }
    if let Some(b) = body {
        args.extend(["-d", b]);
    }
    args.push(url);
    curl_as_nobody(lab, "h1", &args)
}

fn status_code(out: &str) -> &str {
    out.trim_end().rsplit('\n').next().unwrap_or("")
}

#[test]
fn local_api_is_read_only_on_tcp_and_root_only_on_the_socket() {
    require_root_and_tools(&["ip", "curl", "setpriv"]);
    let lab = Lab::up(WEFT, 1);
    lab.weft_ok("h1", &["launch", "--name", "p1"]);
    let api = "http://127.0.0.1:6784";

    // Anyone may read status, report, metrics and version.
    for path in ["/status", "/report", "/metrics", "/version"] {
        let out = curl_as_nobody(&lab, "h1", &[&format!("{api}{path}")]);
        assert_eq!(status_code(&out), "200", "GET {path} as nobody: {out}");
    }
    let out = report_as_nobody_for(&lab, api, "localhost:6784");
    assert_eq!(status_code(&out), "200", "{out}");

    // An unprivileged user cannot change anything over TCP ...
    for (path, body) in [
        ("/stop", ""),
        ("/reset", ""),
        ("/connect", r#"{"peers":["10.9.9.9"],"replace":true}"#),
        ("/attach", r#"{"netns":"/proc/1/ns/net","addrs":[]}"#),
        ("/ipam/allocate", r#"{"owner":"x"}"#),
        ("/expose", "{}"),
    ] {
        let json = ["content-type: application/json"];
        let out = post_as_nobody(&lab, &format!("{api}{path}"), &json, Some(body));
        assert_eq!(status_code(&out), "405", "POST {path} as nobody: {out}");
        assert!(out.contains("unix socket"), "POST {path}: {out}");
    }
    // ... nor a browser's cross-site POST without a body.
    let cross_site = ["Origin: http://evil.example", "content-type: text/plain"];
    let out = post_as_nobody(&lab, &format!("{api}/stop"), &cross_site, None);
    assert_eq!(status_code(&out), "405", "cross-site POST /stop: {out}");
    // DNS rebinding: a page on another name pointed at 127.0.0.1 reads nothing.
    let out = report_as_nobody_for(&lab, api, "evil.example:6784");
    assert_eq!(status_code(&out), "403", "{out}");
    assert!(!out.contains("\"peers\""), "{out}");

    // The unix socket is root's only.
    let out = text(&lab.exec(
        "h1",
        &[
            "sh",
            "-c",
            "setpriv --reuid=65534 --regid=65534 --clear-groups \
             curl -sS -m 10 -X POST --unix-socket \"$WEFT_RUN_DIR/weft.sock\" http://weft/stop; echo rc=$?",
        ],
    ));
    assert!(!out.contains("rc=0"), "nobody reached the socket: {out}");
    let out = lab.weft("h1", &["status"]);
    assert!(out.status.success(), "the router stopped: {}", text(&out));
    let mode = text(&lab.exec(
        "h1",
        &["sh", "-c", "stat -c %a \"$WEFT_RUN_DIR/weft.sock\""],
    ));
    assert_eq!(mode.trim(), "600");

    // Through the socket, root still drives the router (the CLI uses it).
    lab.weft_ok("h1", &["stop"]);
    wait_for("the router to stop", Duration::from_secs(20), || {
        (!lab.weft("h1", &["status"]).status.success()).then_some(())
    });
}

fn pings(lab: &Lab, from: &str, args: &[&str]) -> bool {
    let mut cmd = vec!["ping", "-c", "2", "-i", "0.2", "-W", "1"];
    cmd.extend_from_slice(args);
    lab.exec(from, &cmd).status.success()
}

/// Two ARP packets from `container`'s ethwe claiming `source` (`flags`: `-U` for
/// unsolicited ones), whether or not anyone answers.
fn arping_from(lab: &Lab, container: &str, flags: &[&str], source: &str, target: &str) {
    let mut cmd = vec!["busybox", "arping"];
    cmd.extend_from_slice(flags);
    cmd.extend_from_slice(&["-c", "2", "-w", "2", "-I", "ethwe", "-s", source, target]);
    let _ = lab.exec(container, &cmd);
}

#[test]
fn a_container_sends_only_from_what_weft_gave_it() {
    require_root_and_tools(&["ip", "ping", "busybox"]);
    let lab = Lab::up(WEFT, 1);
    lab.weft_ok("h1", &["launch", "--name", "p1"]);
    lab.container_ok("h1", "a", &["10.32.1.2/24"]);
    lab.container_ok("h1", "a2", &["10.32.1.3/24"]);
    lab.container_ok("h1", "b", &["10.32.2.2/24"]);
    // Normal traffic inside a subnet.
    assert!(
        pings(&lab, "a", &["10.32.1.3"]),
        "a cannot reach a2 in its own subnet"
    );

    // a takes an address of b's subnet by hand: it reaches nothing with it.
    let out = lab.exec(
        "a",
        &["ip", "addr", "add", "10.32.2.250/24", "dev", "ethwe"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !pings(&lab, "a", &["-I", "10.32.2.250", "10.32.2.2"]),
        "a reached b from an address it gave itself"
    );
    // Nor can it make b believe, by ARP, that 10.32.2.250 is at a.
    arping_from(&lab, "a", &[], "10.32.2.250", "10.32.2.2");
    arping_from(&lab, "a", &["-U"], "10.32.2.250", "10.32.2.250");
    let neigh = text(&lab.exec("b", &["ip", "neigh", "show", "10.32.2.250"]));
    assert!(
        neigh.trim().is_empty(),
        "b learnt a spoofed ARP entry: {neigh}"
    );
    let out = lab.exec(
        "a",
        &["ip", "addr", "del", "10.32.2.250/24", "dev", "ethwe"],
    );
    assert!(out.status.success(), "{}", text(&out));

    // A forged source MAC gets nothing through; the real one works again after.
    let mac = text(&lab.exec("a", &["cat", "/sys/class/net/ethwe/address"]));
    let out = lab.exec(
        "a",
        &["ip", "link", "set", "ethwe", "address", "02:66:66:66:66:66"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let _ = lab.exec("a", &["ip", "neigh", "flush", "dev", "ethwe"]);
    assert!(
        !pings(&lab, "a", &["10.32.1.3"]),
        "a forged MAC got through"
    );
    let out = lab.exec("a", &["ip", "link", "set", "ethwe", "address", mac.trim()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        pings(&lab, "a", &["10.32.1.3"]),
        "a cannot reach a2 with its own MAC"
    );

    // The exposed host still talks to the subnet.
    lab.weft_ok("h1", &["expose", "net:10.32.1.0/24"]);
    assert!(
        pings(&lab, "h1", &["10.32.1.2"]),
        "the exposed host cannot reach a"
    );
    // A new container is guarded from its first frame, and a detached one leaves no rule.
    lab.container_ok("h1", "c", &["10.32.1.9/24"]);
    assert!(pings(&lab, "c", &["10.32.1.2"]), "c cannot reach a");
    let rules = text(&lab.exec(
        "h1",
        &["nft", "list", "set", "bridge", "weft", "port_addrs"],
    ));
    assert!(rules.contains("10.32.1.9"), "{rules}");
    let c_ns = lab.netns("c");
    lab.weft_ok("h1", &["detach", "--netns", &format!("/run/netns/{c_ns}")]);
    let rules = text(&lab.exec(
        "h1",
        &["nft", "list", "set", "bridge", "weft", "port_addrs"],
    ));
    assert!(!rules.contains("10.32.1.9"), "{rules}");
    assert!(rules.contains("10.32.1.2"), "{rules}");
}

fn report(lab: &Lab, host: &str) -> Option<weft_api::Report> {
    let out = lab.weft(host, &["report"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn launch_args(host: &str) -> Vec<&'static str> {
    let others: &[&'static str] = match host {
        "h1" => &["h2", "h3"],
        "h2" => &["h1", "h3"],
        _ => &["h1", "h2"],
    };
    let mut args = vec!["launch", "--nickname"];
    args.push(match host {
        "h1" => "h1",
        "h2" => "h2",
        _ => "h3",
    });
    args.extend_from_slice(others);
    args
}

/// The IPv4 addresses on `ethwe` in a namespace (empty when it has none or is gone).
fn kernel_addrs(ns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "ethwe"])
        .output()
        .expect("ip runs");
    weft_testkit::inet_addrs(&out.stdout)
}

#[test]
fn attach_is_atomic_across_kill_9_of_the_router() {
    require_root_and_tools(&["ip", "kill"]);
    const PER_HOST: usize = 10;
    const ROUNDS: usize = 4;
    let hosts = ["h1", "h2", "h3"];
    let lab = Lab::up(WEFT, 3);
    for h in hosts {
        lab.weft_ok(h, &launch_args(h));
    }
    wait_for("3 peers everywhere", Duration::from_secs(30), || {
        hosts
            .iter()
            .all(|h| report(&lab, h).is_some_and(|r| r.router.peers.len() == 3))
            .then_some(())
    });
    lab.weft_ok("h1", &["prime"]);

    // Every namespace made here, with the host it was attached on.
    let mut made: Vec<(String, String)> = Vec::new();
    for round in 0..ROUNDS {
        let victim = hosts[round % 3];
        let mut batch = Vec::new();
        for h in hosts {
            for i in 0..PER_HOST {
                let ns = lab.netns(&format!("k{round}{h}n{i}"));
                let out = std::process::Command::new("ip")
                    .args(["netns", "add", &ns])
                    .output()
                    .expect("ip runs");
                assert!(out.status.success(), "ip netns add {ns}: {}", text(&out));
                batch.push((h.to_string(), ns));
            }
        }
        let pid = text(&lab.exec(victim, &["sh", "-c", "cat \"$WEFT_RUN_DIR/weft.pid\""]));
        let pid = pid.trim().to_string();
        assert!(
            !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()),
            "pid {pid:?}"
        );
        let failures: Vec<String> = std::thread::scope(|s| {
            let mut handles = Vec::new();
            for (h, ns) in &batch {
                let lab = &lab;
                handles.push(s.spawn(move || {
                    let path = format!("/run/netns/{ns}");
                    let out = lab.weft(h, &["attach", "--netns", &path]);
                    (!out.status.success())
                        .then(|| String::from_utf8_lossy(&out.stderr).into_owned())
                }));
            }
            // kill -9 while the attaches are in flight.
            std::thread::sleep(Duration::from_millis(300 + 200 * round as u64));
            let out = lab.exec(victim, &["kill", "-9", &pid]);
            assert!(out.status.success(), "kill -9 {pid}: {}", text(&out));
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("attach thread"))
                .collect()
        });
        eprintln!(
            "round {round}: {} of {} attaches failed (router of {victim} killed)",
            failures.len(),
            batch.len()
        );
        made.extend(batch);
        wait_for(
            &format!("{victim}'s router to be gone"),
            Duration::from_secs(10),
            || (!lab.weft(victim, &["status"]).status.success()).then_some(()),
        );
        lab.weft_ok(victim, &launch_args(victim));

        // After the restart (and its reconciliation), every address in a container's
        // kernel is one `weft ps` lists for that container, and none is held twice.
        wait_for(
            &format!("round {round}: kernel addresses and `weft ps` to agree"),
            Duration::from_secs(90),
            || {
                let mut listed: Vec<(String, Vec<String>)> = Vec::new();
                for h in hosts {
                    listed.extend(lab.ps(h)?);
                }
                let mut seen = std::collections::BTreeSet::new();
                for (_, ns) in &made {
                    let mut kernel = kernel_addrs(ns);
                    kernel.sort();
                    let mut ps_addrs: Vec<String> = listed
                        .iter()
                        .filter(|(id, _)| id == ns)
                        .flat_map(|(_, a)| a.clone())
                        .collect();
                    ps_addrs.sort();
                    if kernel != ps_addrs {
                        eprintln!("{ns}: kernel {kernel:?}, weft ps {ps_addrs:?}");
                        return None;
                    }
                    for a in kernel {
                        let ip = a.split('/').next().unwrap_or_default().to_string();
                        assert!(seen.insert(ip), "address {a} held twice");
                    }
                }
                Some(())
            },
        );
        for f in &failures {
            // One clear line, the cause said once.
            let parts: Vec<&str> = f.trim().split(": ").collect();
            assert!(
                parts.windows(2).all(|w| w[0] != w[1]),
                "a failed attach repeats its cause: {f}"
            );
        }
    }
    // The attaches that worked outnumber nothing: the test did exercise the pipeline.
    let attached: usize = made
        .iter()
        .filter(|(_, ns)| !kernel_addrs(ns).is_empty())
        .count();
    assert!(attached > 0, "no attach succeeded at all");
    for (_, ns) in &made {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", ns])
            .output();
    }
}
