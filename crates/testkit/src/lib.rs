//! Helpers for end-to-end tests: labs with unique names that always come down.
//!
//! An end-to-end test builds a real multi-host network with `weft lab` (network namespaces,
//! veths, a bridge: the real kernel) and drives the real `weft` binary on its hosts:
//!
//! ```no_run
//! use std::time::Duration;
//! use weft_testkit::{require_root_and_tools, wait_for, Lab};
//!
//! require_root_and_tools(&["ip"]);
//! # let weft = "target/debug/weft";
//! // In a test of crates/weft: `let weft = env!("CARGO_BIN_EXE_weft");`
//! let lab = Lab::up(weft, 3); // namespaces t<pid>-<n>-h1..h3 and t<pid>-<n>-ul
//! lab.weft_ok("h1", &["launch", "h2", "h3"]);
//! let status = wait_for("h1's router to answer", Duration::from_secs(10), || {
//!     let out = lab.weft("h1", &["status"]);
//!     out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
//! });
//! assert!(status.contains("Name:"));
//! // Dropping `lab` kills what the test spawned and runs `weft lab down`, also on panic.
//! ```
//!
//! A test that needs Docker calls [`require_docker`] and brings the lab up with
//! [`Lab::up_docker`]: every host then has its own dockerd, reached with [`Lab::docker`].
//!
//! Rules this crate keeps for every test: lab names are unique per process and test
//! (`t<pid>-<counter>`), so tests run in parallel; every process started with
//! [`Lab::spawn`] is stopped by its pid; labs left by a test binary that died (its pid is
//! gone) are removed the next time a test brings a lab up.
//!
//! Tests and benches that build their own namespaces without `weft lab` use [`netns`];
//! tests of services read `weft service inspect` and tally HTTP answers with [`services`].

pub mod netns;
pub mod services;

use std::fmt::Display;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Prefix of lab names made by tests (`t<pid>-<counter>`).
pub const LAB_PREFIX: &str = "t";

static COUNTER: AtomicUsize = AtomicUsize::new(1);
static SWEEP: Once = Once::new();

/// A lab brought up for one test; it is taken down when dropped.
#[derive(Debug)]
pub struct Lab {
    name: String,
    hosts: usize,
    weft: PathBuf,
    children: Mutex<Vec<Spawned>>,
    logs: PathBuf,
}

/// A background process started by [`Lab::spawn`].
#[derive(Debug)]
struct Spawned {
    child: Child,
    what: String,
    log: PathBuf,
}

impl Lab {
    /// Brings up a lab with a unique name (`t<pid>-<counter>`) and `hosts` hosts.
    /// Panics with weft's message if that fails (after removing whatever was made).
    pub fn up(weft_bin: &str, hosts: usize) -> Lab {
        Self::up_with(weft_bin, hosts, false)
    }

    /// Like [`Lab::up`], with a dockerd on every host (`weft lab up --docker`): each host's
    /// `DOCKER_HOST` is its own dockerd, which has the image `busybox:latest`. Call
    /// [`require_docker`] first, so a machine without Docker fails with a clear message.
    pub fn up_docker(weft_bin: &str, hosts: usize) -> Lab {
        Self::up_with(weft_bin, hosts, true)
    }

    /// A Docker lab whose routers run and whose Docker has the network `weft` on every
    /// host ([`require_docker`], [`Lab::up_docker`], [`Lab::launch_with_docker_network`]).
    pub fn docker_mesh(weft_bin: &str, hosts: usize) -> Lab {
        require_docker();
        let lab = Self::up_docker(weft_bin, hosts);
        lab.launch_with_docker_network();
        lab
    }

    fn up_with(weft_bin: &str, hosts: usize, docker: bool) -> Lab {
        SWEEP.call_once(|| sweep_dead_labs(weft_bin));
        let name = unique_name(LAB_PREFIX);
        let logs = std::env::temp_dir().join(format!("weft-testkit-{name}"));
        let lab = Lab {
            name,
            hosts,
            weft: PathBuf::from(weft_bin),
            children: Mutex::new(Vec::new()),
            logs,
        };
        let count = hosts.to_string();
        let mut args = vec!["lab", "up", "--hosts", &count, "--name", &lab.name];
        if docker {
            args.push("--docker");
        }
        let out = lab.weft_cmd(&args);
        if !out.status.success() {
            // `lab up` rolls back by itself; dropping `lab` runs `lab down` to be sure.
            panic!(
                "weft lab up --hosts {hosts} --name {}{} failed ({}): {}",
                lab.name,
                if docker { " --docker" } else { "" },
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        lab
    }

    /// The lab's name (prefix of its namespaces).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Short names of the hosts: `["h1", "h2", ...]`.
    pub fn hosts(&self) -> Vec<String> {
        (1..=self.hosts).map(|i| format!("h{i}")).collect()
    }

    /// The network namespace of a host (`h1` → `LAB-h1`) or a container (`c1` → `LAB-c-c1`).
    /// A name that already starts with `LAB-` is returned as it is.
    pub fn netns(&self, host: &str) -> String {
        if host.starts_with(&format!("{}-", self.name)) {
            host.to_string()
        } else if host_index(host).is_some() || host == "ul" {
            format!("{}-{host}", self.name)
        } else {
            format!("{}-c-{host}", self.name)
        }
    }

    /// The underlay address of a host (`hI` → 172.29.0.I). Panics for anything else.
    pub fn underlay_ip(&self, host: &str) -> Ipv4Addr {
        let short = host
            .strip_prefix(&format!("{}-", self.name))
            .unwrap_or(host);
        match host_index(short).and_then(|i| u8::try_from(i).ok()) {
            Some(i) if (i as usize) <= self.hosts => Ipv4Addr::new(172, 29, 0, i),
            _ => panic!("{host} is not a host of lab {}", self.name),
        }
    }

    /// Runs `cmd` on a host (or in a container) through `weft lab exec`; stdin is empty.
    pub fn exec(&self, host: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["lab", "exec", "--name", &self.name, host, "--"];
        args.extend_from_slice(cmd);
        self.weft_cmd(&args)
    }

    /// Runs `cmd` on a host (or in a container), asserts it succeeded (showing its stderr if
    /// not) and returns its stdout.
    pub fn exec_ok(&self, host: &str, cmd: &[&str]) -> String {
        self.stdout_of_success(cmd[0], host, &cmd[1..], self.exec(host, cmd))
    }

    /// Blocks fastdp (VXLAN, UDP 6784) in and out of `host` with a table of its own in that
    /// host's namespace, so its peers fall back to the sleeve; the namespace goes with the lab.
    pub fn block_fastdp(&self, host: &str) {
        let script = "add table inet weftblk; \
             add chain inet weftblk out { type filter hook output priority -10 ; }; \
             add rule inet weftblk out udp dport 6784 drop; \
             add chain inet weftblk in { type filter hook input priority -10 ; }; \
             add rule inet weftblk in udp dport 6784 drop";
        self.exec_ok(host, &["nft", script]);
    }

    /// Runs the Docker client (`/usr/bin/docker`, the 20.10 client) on a host of a lab made
    /// with [`Lab::up_docker`]; `weft lab exec` points its `DOCKER_HOST` at that host's
    /// dockerd.
    pub fn docker(&self, host: &str, args: &[&str]) -> Output {
        let mut cmd = vec![DOCKER_CLIENT];
        cmd.extend_from_slice(args);
        self.exec(host, &cmd)
    }

    /// Launches every host's router naming all the others by underlay address, then waits
    /// until each host's Docker has the network `weft` (the router creates it in the
    /// background once IPAM is ready). For labs made with [`Lab::up_docker`].
    pub fn launch_with_docker_network(&self) {
        let hosts = self.hosts();
        for h in &hosts {
            let mut args = vec!["launch".to_string()];
            for o in hosts.iter().filter(|o| *o != h) {
                args.push(self.underlay_ip(o).to_string());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.weft_ok(h, &args);
        }
        for h in &hosts {
            wait_for(
                &format!("Docker on {h} to have the network weft"),
                Duration::from_secs(30),
                || {
                    let out =
                        self.docker(h, &["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
                    let list = String::from_utf8_lossy(&out.stdout).into_owned();
                    observe(format!("networks on {h}: {list:?}"));
                    list.lines().any(|l| l.trim() == "weft weft").then_some(())
                },
            );
        }
    }

    /// The overlay address Docker reports for `container` on network `net` of a host
    /// (`NetworkSettings.Networks.<net>.IPAddress`, what Nomad's `address_mode = "driver"`
    /// reads).
    pub fn docker_ip(&self, host: &str, container: &str, net: &str) -> String {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
        self.docker_ok(host, &["inspect", "-f", &f, container])
            .trim()
            .to_string()
    }

    /// `weft dns-args` of a host, split into `docker run` flags.
    pub fn dns_args(&self, host: &str) -> Vec<String> {
        self.weft_ok(host, &["dns-args"])
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Runs `docker ARGS` on a host, asserts it succeeded (showing its stderr if not) and
    /// returns its stdout.
    pub fn docker_ok(&self, host: &str, args: &[&str]) -> String {
        self.stdout_of_success("docker", host, args, self.docker(host, args))
    }

    /// The directory of the lab (`$WEFT_LAB_DIR/NAME`, by default /run/weft-lab/NAME).
    pub fn dir(&self) -> PathBuf {
        let base = std::env::var_os("WEFT_LAB_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/weft-lab"));
        base.join(&self.name)
    }

    /// Runs `weft ARGS` on a host.
    pub fn weft(&self, host: &str, args: &[&str]) -> Output {
        let weft = self.weft.to_string_lossy().into_owned();
        let mut cmd = vec![weft.as_str()];
        cmd.extend_from_slice(args);
        self.exec(host, &cmd)
    }

    /// Runs `weft ARGS` on a host, asserts it succeeded (showing its stderr if not) and
    /// returns its stdout.
    pub fn weft_ok(&self, host: &str, args: &[&str]) -> String {
        self.stdout_of_success("weft", host, args, self.weft(host, args))
    }

    /// Launches a router on every host with `--nickname HOST`, `extra`, and every other host
    /// as a peer: a full mesh.
    pub fn launch_full_mesh(&self, extra: &[&str]) {
        let hosts = self.hosts();
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        self.launch_mesh(&hosts, extra);
    }

    /// Like [`Lab::launch_full_mesh`] on the hosts `hosts` only (the others run no router).
    pub fn launch_mesh(&self, hosts: &[&str], extra: &[&str]) {
        for h in hosts {
            let mut args = vec!["launch", "--nickname", h];
            args.extend_from_slice(extra);
            args.extend(hosts.iter().filter(|o| *o != h));
            self.weft_ok(h, &args);
        }
    }

    /// Waits up to `timeout` until each of `hosts` knows all of them as peers.
    pub fn wait_peers(&self, hosts: &[&str], timeout: Duration) {
        let what = format!("{} to know each other as peers", hosts.join(", "));
        wait_for(&what, timeout, || {
            let counts: Vec<usize> = hosts
                .iter()
                .map(|h| self.report(h).map_or(0, |r| r.router.peers.len()))
                .collect();
            observe(format!("peers known: {counts:?}"));
            counts.iter().all(|n| *n == hosts.len()).then_some(())
        });
    }

    /// The stdout of `PROG ARGS` run on a host; fails the test with its stderr if it failed.
    fn stdout_of_success(&self, prog: &str, host: &str, args: &[&str], out: Output) -> String {
        assert!(
            out.status.success(),
            "`{prog} {}` on {host} of lab {} failed ({}): {}",
            args.join(" "),
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `weft report` of a host, parsed; `None` while its router does not answer.
    pub fn report(&self, host: &str) -> Option<weft_api::Report> {
        let out = self.weft(host, &["report"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `weft ps` of a host, a line each: (id, addresses as CIDRs), the host's own
    /// `weft:expose` line included; `None` while its router does not answer.
    pub fn ps(&self, host: &str) -> Option<Vec<(String, Vec<String>)>> {
        let out = self.weft(host, &["ps"]);
        if !out.status.success() {
            return None;
        }
        Some(ps_lines(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits up to `timeout` until `host` knows every lab host as a peer and holds an
    /// established connection on `path` (`fastdp`, `sleeve`) to each of the others.
    pub fn wait_paths(&self, host: &str, path: &str, timeout: Duration) {
        let others = self.hosts - 1;
        let what = format!("{host} on {path} to the {others} other hosts");
        wait_for(&what, timeout, || {
            let r = self.report(host)?;
            observe(format!("{:?}", r.router.connections));
            let conns = &r.router.connections;
            let on_path = conns
                .iter()
                .filter(|c| c.state == "established" && c.path == path)
                .count();
            (on_path == others && r.router.peers.len() == others + 1).then_some(())
        });
    }

    /// The pid of the router on a host, from its pid file (fails the test if there is none).
    pub fn router_pid(&self, host: &str) -> String {
        let out = self.exec(host, &["sh", "-c", "cat \"$WEFT_RUN_DIR/weft.pid\""]);
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()),
            "no router pid on {host}: {pid:?}"
        );
        pid
    }

    /// Kills the router of a host with SIGKILL (by the pid in its pid file) and waits
    /// until its API no longer answers.
    pub fn kill_router(&self, host: &str) {
        let pid = self.router_pid(host);
        let out = self.exec(host, &["kill", "-9", &pid]);
        assert!(
            out.status.success(),
            "kill -9 {pid} on {host} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        wait_for(
            &format!("{host}'s router to be gone"),
            Duration::from_secs(10),
            || (!self.weft(host, &["status"]).status.success()).then_some(()),
        );
    }

    /// Starts `cmd` on a host in the background and returns its pid (that of `cmd` itself:
    /// `weft lab exec` becomes the command). Its output goes to a log that is shown if the
    /// test fails. It is killed by pid when the lab is dropped.
    pub fn spawn(&self, host: &str, cmd: &[&str]) -> u32 {
        if let Err(e) = std::fs::create_dir_all(&self.logs) {
            panic!("cannot create {}: {e}", self.logs.display());
        }
        let mut children = self.children();
        let log = self.logs.join(format!(
            "{}-{host}-{}.log",
            children.len() + 1,
            basename(cmd)
        ));
        let file = match std::fs::File::create(&log) {
            Ok(f) => f,
            Err(e) => panic!("cannot create {}: {e}", log.display()),
        };
        let stderr = match file.try_clone() {
            Ok(f) => f,
            Err(e) => panic!("cannot duplicate the log file {}: {e}", log.display()),
        };
        let mut args = vec!["lab", "exec", "--name", &self.name, host, "--"];
        args.extend_from_slice(cmd);
        let child = match Command::new(&self.weft)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("cannot start `{}` on {host}: {e}", cmd.join(" ")),
        };
        let pid = child.id();
        children.push(Spawned {
            child,
            what: format!("{} on {host}", cmd.join(" ")),
            log,
        });
        pid
    }

    /// Kills a process started with [`Lab::spawn`] (SIGKILL, by its pid) and reaps it.
    /// Panics if `pid` was not spawned by this lab.
    pub fn kill(&self, pid: u32) {
        let mut children = self.children();
        let Some(i) = children.iter().position(|s| s.child.id() == pid) else {
            panic!(
                "pid {pid} was not started by Lab::spawn of lab {}",
                self.name
            );
        };
        let mut s = children.remove(i);
        let _ = s.child.kill();
        let _ = s.child.wait();
    }

    /// Makes a container on a host with `weft lab container HOST NAME ADDR...`.
    pub fn container(&self, host: &str, name: &str, addrs: &[&str]) -> Output {
        let mut args = vec!["lab", "container", "--name", &self.name, host, name];
        args.extend_from_slice(addrs);
        self.weft_cmd(&args)
    }

    /// Like [`Lab::container`], failing the test with weft's error if it fails.
    pub fn container_ok(&self, host: &str, name: &str, addrs: &[&str]) -> String {
        let out = self.container(host, name, addrs);
        self.stdout_of_success("weft lab container", host, &[name], out)
    }

    /// Runs the weft binary outside the lab (for `weft lab ...`).
    fn weft_cmd(&self, args: &[&str]) -> Output {
        match Command::new(&self.weft)
            .args(args)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => out,
            Err(e) => panic!("cannot run {} {}: {e}", self.weft.display(), args.join(" ")),
        }
    }

    fn children(&self) -> std::sync::MutexGuard<'_, Vec<Spawned>> {
        // A test that panicked while holding the lock leaves valid data behind.
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        let spawned: Vec<Spawned> = std::mem::take(&mut *self.children());
        for mut s in spawned {
            let _ = s.child.kill();
            let _ = s.child.wait();
            if failing {
                show_log(&s.what, &s.log);
            }
        }
        let _ = std::fs::remove_dir_all(&self.logs);
        let out = Command::new(&self.weft)
            .args(["lab", "down", "--name", &self.name])
            .stdin(Stdio::null())
            .output();
        let problem = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "`weft lab down --name {}` failed ({}): {}",
                self.name,
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!(
                "cannot run weft lab down --name {}: {e}",
                self.name
            )),
        };
        if let Some(p) = problem {
            if failing {
                eprintln!("{p}");
            } else {
                panic!("{p}");
            }
        }
    }
}

/// Prints the last lines of a spawned process's log (the test harness shows it on failure).
fn show_log(what: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(30)..];
    eprintln!("--- output of {what} (last {} lines) ---", tail.len());
    for l in tail {
        eprintln!("{l}");
    }
}

fn basename(cmd: &[&str]) -> String {
    let first = cmd.first().copied().unwrap_or("cmd");
    let base = first.rsplit('/').next().unwrap_or(first);
    base.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `I` of `hI`.
fn host_index(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('h')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `<prefix><pid>-<n>` (then anything), unique in this process and among live ones.
pub(crate) fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// The pid in a name made by [`unique_name`] with `prefix`, if that process is gone.
pub(crate) fn left_by_dead_process(name: &str, prefix: &str) -> Option<u32> {
    let (pid, rest) = name.strip_prefix(prefix)?.split_once('-')?;
    let n = rest.split('-').next()?;
    n.parse::<u64>().ok()?;
    let pid: u32 = pid.parse().ok()?;
    (pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

/// Removes labs of earlier test runs whose process is gone (`t<pid>-<n>`, pid dead).
fn sweep_dead_labs(weft_bin: &str) {
    let Ok(out) = Command::new(weft_bin)
        .args(["lab", "list"])
        .stdin(Stdio::null())
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    for lab in text.lines().filter_map(|l| l.split_whitespace().next()) {
        if let Some(pid) = left_by_dead_process(lab, LAB_PREFIX) {
            eprintln!("removing lab {lab} left by test process {pid}, which is gone");
            let _ = Command::new(weft_bin)
                .args(["lab", "down", "--name", lab])
                .stdin(Stdio::null())
                .output();
        }
    }
}

thread_local! {
    static LAST_OBSERVATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The command that lists the IPv4 addresses on `eth0` of the namespace it runs in, a line
/// each (read them with [`inet_addrs`]).
pub const ETH0_INET: [&str; 6] = ["ip", "-4", "-o", "addr", "show", "eth0"];

/// The `A.B.C.D/LEN` addresses in the output of `ip -o -4 addr show ...`.
pub fn inet_addrs(ip_output: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(ip_output)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.position(|x| x == "inet")?;
            w.next().map(str::to_string)
        })
        .collect()
}

/// The lines of `weft ps` (`ID MAC ADDR...`) as (id, addresses); a word is an address
/// when it starts with a digit and has a prefix length.
fn ps_lines(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let id = words.next().unwrap_or_default().to_string();
            let addrs = words
                .filter(|w| w.contains('/') && w.starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_string)
                .collect();
            (id, addrs)
        })
        .collect()
}

/// Every `.rs` file under `dir`, for tests that read a crate's own code (layering rules).
pub fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Records what a [`wait_for`] probe saw last; a timeout shows it.
pub fn observe(what: impl Display) {
    LAST_OBSERVATION.with(|o| *o.borrow_mut() = Some(what.to_string()));
}

/// Polls `f` until it returns Some or `timeout` passes; panics naming `what` and the last
/// observation (whatever `f` passed to [`observe`] last).
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    LAST_OBSERVATION.with(|o| *o.borrow_mut() = None);
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout {
            let last = LAST_OBSERVATION
                .with(|o| o.borrow_mut().take())
                .unwrap_or_else(|| {
                    "nothing recorded (call weft_testkit::observe in the probe)".into()
                });
            panic!(
                "timed out after {:.1} s ({attempts} attempts) waiting for {what}; last observation: {last}",
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Fails the test with a clear message if not root or a required tool (ip, nft...) is
/// missing, instead of skipping silently.
pub fn require_root_and_tools(tools: &[&str]) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u32>().ok());
    if euid != Some(0) {
        panic!(
            "this end-to-end test needs root (it builds network namespaces); run it as root, e.g. with scripts/test"
        );
    }
    let missing = missing_tools(tools);
    if !missing.is_empty() {
        panic!(
            "this end-to-end test needs {} which {} not installed; scripts/test installs every tool the tests need",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
    }
}

/// The Docker client the lab uses (Debian's docker.io, API 1.41).
pub const DOCKER_CLIENT: &str = "/usr/bin/docker";

/// [`require_root_and_tools`] for a test with [`Lab::up_docker`]: fails with a clear
/// message (naming what is missing; scripts/test installs docker.io and busybox-static)
/// instead of skipping the test.
pub fn require_docker() {
    require_root_and_tools(&[
        "ip",
        "dockerd",
        "containerd",
        "runc",
        DOCKER_CLIENT,
        "busybox",
    ]);
}

/// The tools of `tools` found neither in PATH nor in the sbin directories.
fn missing_tools<'a>(tools: &[&'a str]) -> Vec<&'a str> {
    tools.iter().copied().filter(|t| !tool_exists(t)).collect()
}

fn tool_exists(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join(tool).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Lab {
        Lab {
            name: "t1-2".into(),
            hosts: 3,
            weft: PathBuf::from("/nonexistent/weft"),
            children: Mutex::new(Vec::new()),
            logs: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn names_and_addresses() {
        let lab = lab();
        assert_eq!(lab.hosts(), ["h1", "h2", "h3"]);
        assert_eq!(lab.netns("h2"), "t1-2-h2");
        assert_eq!(lab.netns("t1-2-h2"), "t1-2-h2");
        assert_eq!(lab.netns("c1"), "t1-2-c-c1");
        assert_eq!(lab.netns("ul"), "t1-2-ul");
        assert_eq!(lab.underlay_ip("h3"), Ipv4Addr::new(172, 29, 0, 3));
        assert_eq!(lab.underlay_ip("t1-2-h1"), Ipv4Addr::new(172, 29, 0, 1));
        // Not dropped: it would run `weft lab down` with a binary that does not exist.
        std::mem::forget(lab);
    }

    #[test]
    #[should_panic(expected = "h4 is not a host of lab t1-2")]
    fn underlay_ip_of_a_missing_host_panics() {
        let lab = lab();
        let lab = std::mem::ManuallyDrop::new(lab);
        lab.underlay_ip("h4");
    }

    #[test]
    fn wait_for_returns_the_value() {
        let mut n = 0;
        let v = wait_for("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(v, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible; last observation: saw 42")]
    fn wait_for_names_what_and_the_last_observation() {
        wait_for::<()>("the impossible", Duration::from_millis(50), || {
            observe("saw 42");
            None
        });
    }

    #[test]
    fn missing_tools_are_named() {
        assert_eq!(
            missing_tools(&["sh", "no-such-tool-xyz"]),
            ["no-such-tool-xyz"]
        );
        assert!(missing_tools(&["/bin/sh"]).is_empty());
    }
}
