//! End-to-end tests of issue 13's crash safety beyond attach (hardening.rs has that one):
//! expose and hide across kill -9 of the router and of the CLI, the Docker plugin across
//! kill -9 of the router during parallel `docker run --net=weft`, and the sweep at start
//! that removes what no owner claims. After each, the kernel, `weft ps` and IPAM agree.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use weft_testkit::{observe, require_docker, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const EXPOSE: &str = "weft:expose";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What IPAM holds on a host, from its state file: (owner, address/prefix).
fn holdings(lab: &Lab, host: &str) -> Vec<(String, String)> {
    let out = lab.exec(host, &["sh", "-c", "cat \"$WEFT_STATE_DIR/ipam.state\""]);
    assert!(
        out.status.success(),
        "no IPAM state on {host}: {}",
        text(&out)
    );
    let st = weft_ipam::PersistedState::decode(&out.stdout).expect("IPAM state decodes");
    st.allocations
        .iter()
        .map(|a| {
            (
                a.owner.clone(),
                format!("{}/{}", std::net::Ipv4Addr::from(a.addr), a.prefix),
            )
        })
        .collect()
}

/// The IPv4 addresses on weft's bridge of a host.
fn bridge_addrs(lab: &Lab, host: &str) -> BTreeSet<String> {
    let out = lab.exec(host, &["ip", "-4", "-o", "addr", "show", "dev", "weft"]);
    weft_testkit::inet_addrs(&out.stdout).into_iter().collect()
}

/// The ports of weft's bridge named like weft's veths.
fn bridge_veths(lab: &Lab, host: &str) -> BTreeSet<String> {
    let out = lab.exec(host, &["ip", "-o", "link", "show", "master", "weft"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("vethwe"))
        .collect()
}

/// The router's log of a host (shown when a check fails).
fn router_log(lab: &Lab, host: &str) -> String {
    text(&lab.exec(host, &["sh", "-c", "cat \"$WEFT_RUN_DIR/weft.log\""]))
}

fn launch(lab: &Lab, host: &str) {
    lab.weft_ok(host, &["launch", "--nickname", host]);
}

/// The host's exposed addresses agree everywhere: on the bridge, in `weft ps` and in
/// IPAM; returns them, or `None` (with what differs, for the timeout message).
fn exposed_agree(lab: &Lab, host: &str) -> Option<BTreeSet<String>> {
    let listed: BTreeSet<String> = lab
        .ps(host)?
        .into_iter()
        .filter(|(id, _)| id == EXPOSE)
        .flat_map(|(_, a)| a)
        .collect();
    let kernel = bridge_addrs(lab, host);
    let ipam: BTreeSet<String> = holdings(lab, host)
        .into_iter()
        .filter(|(o, _)| o == EXPOSE)
        .map(|(_, a)| a)
        .collect();
    observe(format!(
        "bridge {kernel:?}, weft ps {listed:?}, IPAM {ipam:?}"
    ));
    (kernel == listed && listed == ipam).then_some(kernel)
}

#[test]
fn expose_and_hide_are_atomic_across_kill_9_of_the_router_and_the_cli() {
    require_root_and_tools(&["ip", "kill"]);
    const PER_ROUND: usize = 12;
    let lab = Lab::up(WEFT, 1);
    launch(&lab, "h1");
    lab.weft_ok("h1", &["prime"]);
    // Exposed, acknowledged and not hidden since: must survive every crash.
    let mut acked: BTreeSet<String> = BTreeSet::new();
    for round in 0..3u64 {
        let exposes: Vec<String> = (1..=PER_ROUND)
            .map(|i| format!("10.32.{}.{i}/12", round + 1))
            .collect();
        let hides: Vec<String> = acked.iter().take(PER_ROUND / 2).cloned().collect();
        let results: Vec<(bool, String, bool)> = std::thread::scope(|s| {
            let mut handles = Vec::new();
            for (hide, a) in hides
                .iter()
                .map(|a| (true, a))
                .chain(exposes.iter().map(|a| (false, a)))
            {
                let lab = &lab;
                handles.push(s.spawn(move || {
                    let word = format!("ip:{a}");
                    let out = lab.weft("h1", &[if hide { "hide" } else { "expose" }, &word]);
                    (hide, a.clone(), out.status.success())
                }));
            }
            // kill -9 while they are in flight.
            std::thread::sleep(Duration::from_millis(150 + 150 * round));
            lab.kill_router("h1");
            handles
                .into_iter()
                .map(|h| h.join().expect("expose thread"))
                .collect()
        });
        for (hide, a, ok) in &results {
            match (hide, ok) {
                (false, true) => {
                    acked.insert(a.clone());
                }
                // A hide that failed may have been carried through at the restart.
                (true, _) => {
                    acked.remove(a);
                }
                _ => {}
            }
        }
        let failed = results.iter().filter(|r| !r.2).count();
        eprintln!("round {round}: {failed} of {} failed", results.len());
        launch(&lab, "h1");
        let now = wait_for(
            &format!("round {round}: bridge, `weft ps` and IPAM to agree on the exposed addresses"),
            Duration::from_secs(60),
            || exposed_agree(&lab, "h1"),
        );
        for a in &acked {
            assert!(
                now.contains(a),
                "acknowledged expose {a} lost: {now:?}\n{}",
                router_log(&lab, "h1")
            );
        }
        for (hide, a, ok) in &results {
            if *hide && *ok {
                assert!(
                    !now.contains(a),
                    "acknowledged hide of {a} undone: {now:?}\n{}",
                    router_log(&lab, "h1")
                );
            }
        }
        // What failed went one way or the other; from now on the kernel's word holds.
        acked = now;
    }

    // kill -9 of the CLI: the router carries each operation through by itself.
    let mut pids = Vec::new();
    for i in 1..=6 {
        let word = format!("ip:10.32.9.{i}/12");
        pids.push(lab.spawn("h1", &[WEFT, "expose", &word]));
    }
    for pid in pids {
        lab.kill(pid);
    }
    wait_for(
        "bridge, `weft ps` and IPAM to agree after the CLI was killed",
        Duration::from_secs(30),
        || exposed_agree(&lab, "h1"),
    );
    lab.weft_ok("h1", &["hide"]);
    let left = exposed_agree(&lab, "h1").expect("agree after hide");
    assert!(left.is_empty(), "hide left {left:?}");
}

#[test]
fn start_up_sweeps_what_no_owner_claims() {
    require_root_and_tools(&["ip", "curl"]);
    let lab = Lab::up(WEFT, 1);
    launch(&lab, "h1");
    lab.weft_ok("h1", &["prime"]);
    for c in ["c1", "c2", "c3"] {
        let out = lab.container("h1", c, &[]);
        assert!(out.status.success(), "container {c}: {}", text(&out));
    }
    let before = lab.ps("h1").expect("weft ps");
    let id = |c: &str| lab.netns(c);
    let addr_of = |c: &str| -> String {
        before
            .iter()
            .find(|(i, _)| *i == id(c))
            .and_then(|(_, a)| a.first().cloned())
            .unwrap_or_else(|| panic!("{c} not in weft ps: {before:?}"))
    };
    let c1_addr = addr_of("c1");
    assert_eq!(bridge_veths(&lab, "h1").len(), 3);
    // An address taken through the raw IPAM API has an owner too: it stays.
    let out = lab.exec(
        "h1",
        &[
            "sh",
            "-c",
            "curl -sS --unix-socket \"$WEFT_RUN_DIR/weft.sock\" -H 'Content-Type: application/json' -d '{\"owner\":\"api-client\",\"addr\":\"ip:10.32.100.1/12\"}' http://weft/ipam/allocate",
        ],
    );
    assert!(text(&out).contains("10.32.100.1/12"), "{}", text(&out));
    lab.weft_ok("h1", &["stop"]);

    // While the router is down: c2's namespace goes (and its veth with it) ...
    let out = std::process::Command::new("ip")
        .args(["netns", "del", &id("c2")])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "{}", text(&out));
    // ... c3's entry is lost (as if its attach had never been recorded) ...
    let dir = String::from_utf8_lossy(
        &lab.exec("h1", &["sh", "-c", "printf %s \"$WEFT_STATE_DIR\""])
            .stdout,
    )
    .into_owned();
    let reg_path = std::path::Path::new(&dir).join("containers.json");
    let mut reg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&reg_path).expect("containers.json")).unwrap();
    let removed = reg
        .as_object_mut()
        .and_then(|o| {
            o.values_mut()
                .find_map(|v| v.as_object_mut()?.remove(&id("c3")))
                .or_else(|| o.remove(&id("c3")))
        })
        .is_some();
    assert!(removed, "c3 not found in {}", reg_path.display());
    std::fs::write(&reg_path, serde_json::to_vec(&reg).unwrap()).unwrap();
    // ... and someone leaves a veth named like weft's and an address on the bridge.
    for cmd in [
        "ip link add vethwe0stray01 type veth peer name strayp0",
        "ip link set vethwe0stray01 master weft",
        "ip addr add 10.32.200.1/12 dev weft",
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        let out = lab.exec("h1", &args);
        assert!(out.status.success(), "{cmd}: {}", text(&out));
    }

    launch(&lab, "h1");
    wait_for(
        "the sweep at start to leave only c1",
        Duration::from_secs(30),
        || {
            let listed = lab.ps("h1")?;
            let veths = bridge_veths(&lab, "h1");
            let addrs = bridge_addrs(&lab, "h1");
            let ipam = holdings(&lab, "h1");
            observe(format!(
                "ps {listed:?}, veths {veths:?}, bridge {addrs:?}, IPAM {ipam:?}"
            ));
            let only_c1 = listed.len() == 1 && listed[0] == (id("c1"), vec![c1_addr.clone()]);
            (only_c1
                && veths.len() == 1
                && addrs.is_empty()
                && ipam
                    == vec![
                        (id("c1"), c1_addr.clone()),
                        ("api-client".to_string(), "10.32.100.1/12".to_string()),
                    ])
            .then_some(())
        },
    );
    // c3 lost its interface with the host side of its veth.
    let inside = lab.exec("c3", &["ip", "-o", "link", "show", "ethwe"]);
    assert!(!inside.status.success(), "c3 still has ethwe");
}

#[test]
fn docker_plugin_is_atomic_across_kill_9_of_the_router() {
    require_docker();
    const PER_ROUND: usize = 8;
    let lab = Lab::up_docker(WEFT, 1);
    launch(&lab, "h1");
    wait_for(
        "Docker on h1 to have the network weft",
        Duration::from_secs(60),
        || {
            let out = lab.docker("h1", &["network", "ls", "--format", "{{.Name}}"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == "weft")
                .then_some(())
        },
    );
    for round in 0..2u64 {
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for i in 0..PER_ROUND {
                let lab = &lab;
                handles.push(s.spawn(move || {
                    let name = format!("k{round}n{i}");
                    lab.docker(
                        "h1",
                        &[
                            "run",
                            "-d",
                            "--net=weft",
                            "--name",
                            &name,
                            "busybox",
                            "sleep",
                            "3600",
                        ],
                    )
                }));
            }
            std::thread::sleep(Duration::from_millis(300 + 300 * round));
            lab.kill_router("h1");
            // dockerd retries a plugin it cannot reach for a while: back before that ends.
            launch(&lab, "h1");
            for h in handles {
                let out = h.join().expect("docker run thread");
                eprintln!(
                    "round {round}: docker run {}",
                    if out.status.success() { "ok" } else { "failed" }
                );
            }
        });
        wait_for(
            &format!("round {round}: Docker, the kernel, `weft ps` and IPAM to agree"),
            Duration::from_secs(90),
            || docker_agrees(&lab, "h1"),
        );
    }
    // Not vacuous: containers did get onto weft.
    let running = lab.docker_ok("h1", &["ps", "-q", "--filter", "network=weft"]);
    assert!(
        !running.trim().is_empty(),
        "no container got onto weft at all"
    );
}

/// Every running container on weft is listed by `weft ps` with the address Docker gives
/// it, nothing else is, no address twice; the bridge has one veth per entry and IPAM
/// holds exactly the listed addresses.
fn docker_agrees(lab: &Lab, host: &str) -> Option<()> {
    let running = lab.docker(
        host,
        &["ps", "-q", "--no-trunc", "--filter", "network=weft"],
    );
    let running: Vec<String> = String::from_utf8_lossy(&running.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let listed = lab.ps(host)?;
    let containers: Vec<&(String, Vec<String>)> =
        listed.iter().filter(|(id, _)| id != EXPOSE).collect();
    let mut wanted = Vec::new();
    for id in &running {
        let f = "{{(index .NetworkSettings.Networks \"weft\").IPAddress}}";
        let ip = lab
            .docker_ok(host, &["inspect", "-f", f, id])
            .trim()
            .to_string();
        wanted.push((id[..12].to_string(), ip));
    }
    let all_addrs: Vec<String> = listed.iter().flat_map(|(_, a)| a.clone()).collect();
    let distinct: BTreeSet<&String> = all_addrs.iter().collect();
    let ipam: BTreeSet<String> = holdings(lab, host).into_iter().map(|(_, a)| a).collect();
    let listed_set: BTreeSet<String> = all_addrs.iter().cloned().collect();
    let veths = bridge_veths(lab, host);
    observe(format!(
        "running {wanted:?}, weft ps {listed:?}, IPAM {ipam:?}, veths {veths:?}"
    ));
    let each_listed = wanted.iter().all(|(id, ip)| {
        containers
            .iter()
            .any(|(c, a)| c == id && a.iter().any(|x| x.split('/').next() == Some(ip)))
    });
    let nothing_else = containers.len() == wanted.len();
    (each_listed
        && nothing_else
        && distinct.len() == all_addrs.len()
        && ipam == listed_set
        && veths.len() == containers.len())
    .then_some(())
}
