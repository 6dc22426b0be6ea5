//! Foundation end to end: a lab of real network namespaces, a router on each host, the
//! commands users run first (launch, status, stop), bad input, and `weft lab down`
//! leaving nothing behind — also after a router was killed with SIGKILL.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command failed with exactly one `weft: ...` line on stderr; returns it.
fn one_line_error(what: &str, out: &Output) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "{what} should fail, but succeeded; stdout: {}",
        stdout(out)
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one line on stderr, got: {err}"
    );
    assert!(lines[0].starts_with("weft: "), "{what}: {err}");
    lines[0].to_string()
}

/// `weft ARGS` outside any lab.
fn weft(args: &[&str]) -> Output {
    Command::new(WEFT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the weft binary runs")
}

fn labs_dir() -> PathBuf {
    std::env::var_os("WEFT_LAB_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/weft-lab"))
}

/// Everything of lab `name` still on the machine: namespaces, /etc/netns entries, its dir.
fn leftovers(name: &str) -> Vec<String> {
    let prefix = format!("{name}-");
    let mut left = Vec::new();
    for dir in ["/run/netns", "/etc/netns"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) {
                    left.push(format!("{dir}/{n}"));
                }
            }
        }
    }
    let dir = labs_dir().join(name);
    if dir.exists() {
        left.push(dir.display().to_string());
    }
    left
}

/// Whether a process runs (a zombie waiting for its parent counts as gone).
fn alive(pid: u32) -> bool {
    let zombie = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => return false,
    };
    // A killed multithreaded process shows its leader as a zombie while other threads are
    // still exiting, and those still hold its files (the pid-file lock among them).
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    !zombie || threads > 1
}

/// `kill -9 PID` (which must succeed), then waits until the process is gone.
fn kill_9(pid: u32) {
    let kill = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    wait_gone(pid);
}

fn wait_gone(pid: u32) {
    wait_for(
        &format!("process {pid} to exit"),
        Duration::from_secs(20),
        || {
            observe(format!("process {pid} alive: {}", alive(pid)));
            (!alive(pid)).then_some(())
        },
    );
}

/// The pid of the router on a host, from its pid file in the host's WEFT_RUN_DIR.
fn router_pid(lab: &Lab, host: &str) -> u32 {
    let out = lab.exec(host, &["sh", "-c", "cat \"$WEFT_RUN_DIR/weft.pid\""]);
    stdout(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no router pid on {host}: {}", stderr(&out)))
}

/// The router's unique name from `weft report`.
fn router_name(lab: &Lab, host: &str) -> String {
    let report: serde_json::Value =
        serde_json::from_str(&lab.weft_ok(host, &["report"])).expect("report is JSON");
    report["Router"]["Name"]
        .as_str()
        .expect("report has Router.Name")
        .to_string()
}

fn others(lab: &Lab, host: &str) -> Vec<String> {
    lab.hosts().into_iter().filter(|h| h != host).collect()
}

#[test]
fn three_hosts_launch_status_stop_and_down_leaves_nothing() {
    require_root_and_tools(&["ip", "ping"]);
    let lab = Lab::up(WEFT, 3);
    let name = lab.name().to_string();
    for host in ["h1", "h2", "h3", "ul"] {
        assert!(
            PathBuf::from("/run/netns").join(lab.netns(host)).exists(),
            "namespace {} is missing",
            lab.netns(host)
        );
    }
    // Hosts reach each other over the underlay, by name.
    let ping = lab.exec("h1", &["ping", "-c1", "-W5", "h3"]);
    assert!(
        ping.status.success(),
        "h1 cannot ping h3: {}{}",
        stdout(&ping),
        stderr(&ping)
    );
    assert!(stdout(&ping).contains(&lab.underlay_ip("h3").to_string()));

    // A router on each host, naming only the others.
    let mut names = Vec::new();
    for host in lab.hosts() {
        let peers = others(&lab, &host);
        let mut args = vec!["launch"];
        args.extend(peers.iter().map(String::as_str));
        lab.weft_ok(&host, &args);
        let status = lab.weft_ok(&host, &["status"]);
        let name = router_name(&lab, &host);
        assert!(
            status.contains(&format!("           Name: {name}({host})\n")),
            "status on {host} does not show the router's name {name}({host}):\n{status}"
        );
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "every router has its own name: {names:?}");

    // A second launch says so in one line.
    let again = lab.weft("h1", &["launch", "h2"]);
    let line = one_line_error("a second weft launch", &again);
    assert!(line.contains("already running"), "{line}");

    // Bad flags: one line, non-zero, the router keeps running.
    one_line_error(
        "weft launch --bogus",
        &lab.weft("h2", &["launch", "--bogus"]),
    );
    one_line_error("weft status bogus", &lab.weft("h2", &["status", "bogus"]));
    let bad_port = one_line_error(
        "weft launch --port 0",
        &lab.weft("h2", &["launch", "--port", "0"]),
    );
    assert!(bad_port.contains("--port"), "{bad_port}");
    // Every value is parsed at launch: a bad entry is refused, never dropped.
    for (flag, value) in [
        ("--trusted-subnets", "10.0.0.0/8,bogus"),
        ("--ipalloc-range", "fd00::/64"),
        ("--ipalloc-init", "consensus=0"),
        ("--dns-domain", "a..b."),
    ] {
        let line = one_line_error(
            &format!("weft launch {flag} {value}"),
            &lab.weft("h2", &["launch", flag, value]),
        );
        assert!(line.contains(flag), "{line}");
    }
    lab.weft_ok("h2", &["status"]);

    // Stop answers on every host; afterwards status says the router is not there.
    for host in lab.hosts() {
        let pid = router_pid(&lab, &host);
        lab.weft_ok(&host, &["stop"]);
        // `stop` returns once the router let go of its pid file; the exit follows.
        wait_gone(pid);
        one_line_error("weft status with no router", &lab.weft(&host, &["status"]));
        one_line_error("weft stop with no router", &lab.weft(&host, &["stop"]));
    }

    // Routers running again; `weft lab down` stops them and removes everything.
    let mut pids = Vec::new();
    for host in lab.hosts() {
        lab.weft_ok(&host, &["launch"]);
        pids.push(router_pid(&lab, &host));
    }
    let down = weft(&["lab", "down", "--name", &name]);
    assert!(down.status.success(), "lab down failed: {}", stderr(&down));
    // The three routers at least (a launch's exiting parent may be counted too).
    let stopped = stdout(&down)
        .split("stopped ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(
        stopped.is_some_and(|n| n >= 3),
        "lab down does not report the routers it stopped: {}",
        stdout(&down)
    );
    for pid in pids {
        assert!(!alive(pid), "router {pid} survived weft lab down");
    }
    assert_eq!(
        leftovers(&name),
        Vec::<String>::new(),
        "left behind by lab down"
    );

    // Down again: nothing to do, and that is fine.
    let again = weft(&["lab", "down", "--name", &name]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing to remove"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn lab_with_a_router_killed_by_sigkill_comes_down_cleanly() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 2);
    let name = lab.name().to_string();
    lab.weft_ok("h1", &["launch", "h2"]);
    lab.weft_ok("h2", &["launch", "h1"]);
    let h1 = router_pid(&lab, "h1");
    let h2 = router_pid(&lab, "h2");

    kill_9(h1);

    // A crashed router does not block a new one (its pid file lock died with it).
    lab.weft_ok("h1", &["launch", "h2"]);
    let h1_again = router_pid(&lab, "h1");
    assert_ne!(h1, h1_again);
    // ...and kill it again, so the lab goes down with a router that died mid-run.
    kill_9(h1_again);

    let down = weft(&["lab", "down", "--name", &name]);
    assert!(down.status.success(), "lab down failed: {}", stderr(&down));
    assert!(!alive(h2), "router {h2} survived weft lab down");
    assert_eq!(
        leftovers(&name),
        Vec::<String>::new(),
        "left behind by lab down"
    );
}

#[test]
fn lab_commands_reject_bad_input_in_one_line_and_create_nothing() {
    require_root_and_tools(&["ip"]);
    let scratch = format!("t{}-x1", std::process::id());

    let e = one_line_error(
        "lab up with a bad name",
        &weft(&["lab", "up", "--name", "Bad_Name"]),
    );
    assert!(e.contains("invalid lab name"), "{e}");
    let e = one_line_error(
        "lab up with a reserved word",
        &weft(&["lab", "up", "--name", "x-c-y"]),
    );
    assert!(e.contains("invalid lab name"), "{e}");
    let e = one_line_error(
        "lab up --hosts 0",
        &weft(&["lab", "up", "--hosts", "0", "--name", &scratch]),
    );
    assert!(e.contains("--hosts"), "{e}");
    one_line_error(
        "lab up --hosts abc",
        &weft(&["lab", "up", "--hosts", "abc", "--name", &scratch]),
    );
    let e = one_line_error(
        "lab up --docker --hosts 0",
        &weft(&["lab", "up", "--docker", "--hosts", "0", "--name", &scratch]),
    );
    assert!(e.contains("--hosts"), "{e}");
    assert_eq!(leftovers(&scratch), Vec::<String>::new());
    one_line_error("an unknown lab command", &weft(&["lab", "frobnicate"]));
    let e = one_line_error(
        "exec in a lab that does not exist",
        &weft(&["lab", "exec", "--name", &scratch, "h1", "--", "true"]),
    );
    assert!(e.contains("weft lab up"), "{e}");

    let lab = Lab::up(WEFT, 1);
    let e = one_line_error(
        "a second lab up of the same name",
        &weft(&["lab", "up", "--name", lab.name()]),
    );
    assert!(e.contains("already exists"), "{e}");
    // The refused `up` did not touch the lab.
    assert!(lab.exec("h1", &["true"]).status.success());
    let e = one_line_error("exec on a host the lab lacks", &lab.exec("h7", &["true"]));
    assert!(e.contains("has no host or container h7"), "{e}");

    // A container needs the host's router to attach it; without one nothing is left.
    let out = lab.container("h1", "c1", &[]);
    one_line_error("a container without a router", &out);
    assert!(!PathBuf::from("/run/netns").join(lab.netns("c1")).exists());
    assert!(!PathBuf::from("/etc/netns").join(lab.netns("c1")).exists());
    let e = one_line_error(
        "a container named like a host",
        &lab.container("h1", "h2", &[]),
    );
    assert!(e.contains("invalid container name"), "{e}");
}

#[test]
fn exec_runs_in_the_host_with_its_environment_and_passes_io_and_exit_code() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 2);
    let out = lab.exec(
        "h2",
        &[
            "sh",
            "-c",
            "echo $WEFT_LAB $WEFT_LAB_HOST; echo $WEFT_STATE_DIR $WEFT_RUN_DIR $WEFT_DOCKER_PLUGIN_DIR; \
             hostname; command -v weft; ip -4 -o addr show dev eth0; exit 7",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code passes through: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let dir = labs_dir().join(lab.name()).join("h2");
    assert_eq!(lines[0], format!("{} h2", lab.name()));
    assert_eq!(
        lines[1],
        format!(
            "{} {} {}",
            dir.join("state").display(),
            dir.join("run").display(),
            dir.join("plugins").display()
        )
    );
    assert_eq!(lines[2], "h2", "the host's hostname");
    let weft_dir = PathBuf::from(WEFT).canonicalize().unwrap();
    assert_eq!(
        PathBuf::from(lines[3]).canonicalize().unwrap(),
        weft_dir,
        "`weft` inside a lab host is this binary"
    );
    assert!(lines[4].contains("172.29.0.2/24"), "{text}");

    // stdin passes through.
    let mut child = Command::new(WEFT)
        .args(["lab", "exec", "--name", lab.name(), "h1", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"through\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "through\n");

    // A spawned foreground router is tracked by its pid and killed by it.
    let pid = lab.spawn("h1", &["weft", "launch", "--foreground", "h2"]);
    let status = wait_for(
        "the foreground router on h1 to answer",
        Duration::from_secs(20),
        || {
            let out = lab.weft("h1", &["status"]);
            observe(stderr(&out));
            out.status.success().then(|| stdout(&out))
        },
    );
    assert!(status.contains("(h1)"), "{status}");
    assert_eq!(
        router_pid(&lab, "h1"),
        pid,
        "the spawned pid is the router itself"
    );
    lab.kill(pid);
    assert!(!alive(pid));
    one_line_error(
        "status after the router was killed",
        &lab.weft("h1", &["status"]),
    );
}
