//! Network namespaces for tests and benches that build their own small networks (no
//! `weft lab`): every namespace has a unique name and is removed when its [`Namespaces`]
//! is dropped, also when the test panics. Nothing here touches the root namespace.
//!
//! ```no_run
//! use weft_testkit::netns::{in_netns, underlay, Namespaces};
//!
//! let mut nss = Namespaces::new(); // names wtk<pid>-<n>-...
//! let h1 = nss.host("h1"); // a namespace with a bridge `weft` that is up
//! let h2 = nss.host("h2");
//! underlay(&h1, "10.99.0.1/24", &h2, "10.99.0.2/24", "ul0");
//! let c1 = nss.container(&h1, "c1", "10.40.0.1/24");
//! let name = in_netns(&c1, || std::fs::read_to_string("/proc/sys/kernel/hostname"));
//! // Dropping `nss` deletes every namespace it made.
//! ```
//!
//! Namespaces left behind by a test process that died without unwinding (its pid is gone)
//! are removed the first time a process makes a [`Namespaces`].

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::Once;

/// Prefix of every namespace made here (`wtk<pid>-<counter>-<short name>`).
pub const NETNS_PREFIX: &str = "wtk";

static SWEEP: Once = Once::new();

/// The namespaces one test made; all deleted on drop (in reverse order).
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
    made: Vec<String>,
}

impl Default for Namespaces {
    fn default() -> Self {
        Self::new()
    }
}

impl Namespaces {
    /// A fresh, unique prefix (`wtk<pid>-<n>`). Panics with a clear message if not root.
    pub fn new() -> Namespaces {
        crate::require_root_and_tools(&["ip"]);
        SWEEP.call_once(sweep_dead);
        Namespaces {
            prefix: crate::unique_name(NETNS_PREFIX),
            made: Vec::new(),
        }
    }

    /// The prefix of this set's names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Makes namespace `<prefix>-<short>` with loopback up; returns its name.
    pub fn add(&mut self, short: &str) -> String {
        let name = format!("{}-{short}", self.prefix);
        run(&["ip", "netns", "add", &name]);
        self.made.push(name.clone());
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A host: a namespace with a bridge `weft` that is up.
    pub fn host(&mut self, short: &str) -> String {
        let h = self.add(short);
        bridge(&h, "weft");
        h
    }

    /// A container namespace with `eth0` = `cidr`, its veth peer `v<short>` on `host`'s
    /// bridge `weft`.
    pub fn container(&mut self, host: &str, short: &str, cidr: &str) -> String {
        self.container_on(host, "weft", short, cidr, None)
    }

    /// [`Namespaces::container`] on bridge `br`, with the veth's MTU set when `mtu` is given.
    pub fn container_on(
        &mut self,
        host: &str,
        br: &str,
        short: &str,
        cidr: &str,
        mtu: Option<&str>,
    ) -> String {
        let c = self.add(short);
        let hv = format!("v{short}");
        let mut args = vec!["ip", "-n", host, "link", "add", &hv];
        if let Some(m) = mtu {
            args.extend(["mtu", m]);
        }
        args.extend(["type", "veth", "peer", "name", "eth0"]);
        if let Some(m) = mtu {
            args.extend(["mtu", m]);
        }
        args.extend(["netns", &c]);
        run(&args);
        run(&["ip", "-n", host, "link", "set", &hv, "master", br, "up"]);
        run(&["ip", "-n", &c, "addr", "add", cidr, "dev", "eth0"]);
        run(&["ip", "-n", &c, "link", "set", "eth0", "up"]);
        c
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// Removes namespaces of earlier test processes that are gone (`wtk<pid>-...`, pid dead).
fn sweep_dead() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = crate::left_by_dead_process(&name, NETNS_PREFIX) {
            eprintln!(
                "removing network namespace {name} left by test process {pid}, which is gone"
            );
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

/// Makes bridge `br` in `ns` and sets it up.
pub fn bridge(ns: &str, br: &str) {
    run(&["ip", "-n", ns, "link", "add", br, "type", "bridge"]);
    run(&["ip", "-n", ns, "link", "set", br, "up"]);
}

/// Joins two namespaces with a veth pair named `dev` at both ends and gives each end an
/// address.
pub fn underlay(a: &str, a_cidr: &str, b: &str, b_cidr: &str, dev: &str) {
    veth_pair((a, dev, a_cidr), (b, dev, b_cidr));
}

/// Joins two namespaces with a veth pair: each side is (namespace, device, address), and
/// both ends are up.
pub fn veth_pair(a: (&str, &str, &str), b: (&str, &str, &str)) {
    run(&[
        "ip", "-n", a.0, "link", "add", a.1, "type", "veth", "peer", "name", b.1, "netns", b.0,
    ]);
    for (ns, dev, cidr) in [a, b] {
        run(&["ip", "-n", ns, "addr", "add", cidr, "dev", dev]);
        run(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
}

/// Runs `cmd`, which must succeed; returns its stdout. The test fails with `failed` and the
/// command's stderr if it does not, and with `missing` (what to install) if it cannot start.
pub fn command_ok(cmd: &mut Command, failed: &str, missing: &str) -> Vec<u8> {
    let out = cmd.output().expect(missing);
    assert!(
        out.status.success(),
        "{failed}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a command that must succeed (the test fails with its stderr if not); returns its
/// stdout.
pub fn run(args: &[&str]) -> String {
    let out = output(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command; whether it succeeded.
pub fn succeeds(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs a command, whatever its outcome (panics only if it cannot be started).
pub fn output(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// `ip -n NS ARGS...` (ARGS split on spaces), which must succeed; returns its stdout.
pub fn ip(ns: &str, args: &str) -> String {
    let mut argv = vec!["ip", "-n", ns];
    argv.extend(args.split_whitespace());
    run(&argv)
}

/// Runs `cmd` inside `ns`, whatever its outcome.
pub fn ns_output(ns: &str, cmd: &[&str]) -> Output {
    let mut argv = vec!["ip", "netns", "exec", ns];
    argv.extend_from_slice(cmd);
    output(&argv)
}

/// Runs `cmd` inside `ns`, which must succeed; returns its stdout.
pub fn ns_exec(ns: &str, cmd: &[&str]) -> String {
    let mut argv = vec!["ip", "netns", "exec", ns];
    argv.extend_from_slice(cmd);
    run(&argv)
}

/// Whether one ping from `ns` to `addr` is answered within a second.
pub fn pings(ns: &str, addr: &str) -> bool {
    succeeds(&["ip", "netns", "exec", ns, "ping", "-c1", "-W1", addr])
}

/// Moves the calling thread into `ns` (use it on a thread made for that; sockets and
/// devices it creates then, and threads it starts, stay in `ns`).
pub fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let f = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: a valid namespace descriptor; only this thread's network namespace changes.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread of its own inside `ns` and returns what it returns.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .unwrap_or_else(|_| panic!("thread in network namespace {ns} panicked"))
    })
}
