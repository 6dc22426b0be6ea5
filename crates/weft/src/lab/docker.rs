//! `weft lab up --docker`: one dockerd per lab host, inside the host's network namespace,
//! with its own data root, exec root, socket, bridge (`docker0`, 172.30.I.1/24), cgroup
//! parent and plugin directory, and a `busybox:latest` image imported without a registry.
//! Also what `lab down` needs to find and stop all of it again (also after a crash).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use super::files::{self, DockerFiles};
use super::names::{self, DOCKER_BRIDGE, DOCKER_PREFIX_LEN};
use super::netns;

/// The Docker client used for the lab: the 20.10 client of Debian's docker.io (a newer
/// client, as in /usr/local/bin on some machines, asks dockerd 20.10 for a too new API).
pub const DOCKER_CLIENT: &str = "/usr/bin/docker";
/// The busybox whose binary becomes the image (it must be statically linked).
pub const BUSYBOX: &str = "/bin/busybox";
/// The image every host's dockerd gets.
pub const IMAGE: &str = "busybox:latest";
/// Applets the image must have (the rest of `busybox --list` comes along too).
pub const REQUIRED_APPLETS: &[&str] = &[
    "sh", "nslookup", "wget", "nc", "httpd", "ping", "ip", "hostname", "cat", "sleep", "ifconfig",
    "route", "echo", "ls", "true",
];

/// How long one dockerd may take to answer `/_ping`.
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long dockerds get to exit after SIGTERM in `lab down`.
const DOCKERD_TERM_WAIT: Duration = Duration::from_secs(15);
/// How long killed container processes get to disappear.
const CONTAINER_KILL_WAIT: Duration = Duration::from_secs(5);
/// Longest unix socket path (sun_path holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Runs inside `ip netns exec HOST` (a private mount namespace): remounts the cgroup v1
/// hierarchies that `ip netns exec` hid by remounting /sys; gives dockerd a private /run
/// (so nothing is created on the machine's /run, and the machine's /run/containerd is out
/// of sight: dockerd 20.10 would use a system containerd found there instead of starting
/// its own), with the host's directory bound back at its path (through an open descriptor,
/// as the tmpfs hides the path); binds the host's plugin directory on
/// /run/docker/plugins; then becomes dockerd. Arguments: $1 dockerd, $2 plugin dir, $3 data
/// root, $4 exec root, $5 socket, $6 pid file, $7 config file, $8 bridge, $9 cgroup parent,
/// $10 the host's directory.
const DOCKERD_SCRIPT: &str = r#"set -e
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
  mkdir -p /sys/fs/cgroup/$c
  mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
done
mkdir -p /sys/fs/cgroup/systemd
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
exec 3<"${10}"
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p "${10}" /run/docker/plugins
mount --no-canonicalize --bind /proc/$$/fd/3 "${10}"
exec 3<&-
mount --bind "$2" /run/docker/plugins
exec "$1" --config-file "$7" --data-root "$3" --exec-root "$4" -H "unix://$5" \
  --pidfile "$6" -b "$8" --cgroup-parent "/$9" --shutdown-timeout 2
"#;

/// The programs a Docker lab needs, found before anything is made.
#[derive(Debug, Clone)]
pub struct Tools {
    dockerd: PathBuf,
    docker: PathBuf,
    busybox: PathBuf,
}

/// Finds dockerd, the 20.10 client and a static busybox; one clear error if one is missing.
pub fn preflight() -> Result<Tools> {
    let dockerd = find_in_path("dockerd").ok_or_else(|| {
        anyhow!("lab up --docker: dockerd is not installed; install it with `apt-get install docker.io`")
    })?;
    let docker = PathBuf::from(DOCKER_CLIENT);
    if !docker.is_file() {
        bail!(
            "lab up --docker: the Docker client {DOCKER_CLIENT} is not installed; install it with `apt-get install docker.io`"
        );
    }
    for tool in ["containerd", "runc"] {
        if find_in_path(tool).is_none() {
            bail!("lab up --docker: {tool} (which dockerd runs) is not installed; install it with `apt-get install docker.io`");
        }
    }
    let busybox = PathBuf::from(BUSYBOX);
    let bytes = std::fs::read(&busybox).map_err(|e| {
        anyhow!("lab up --docker: cannot read {BUSYBOX} ({e}); install it with `apt-get install busybox-static`")
    })?;
    match elf_is_static(&bytes) {
        Some(true) => {}
        Some(false) => bail!(
            "lab up --docker: {BUSYBOX} is dynamically linked, so it cannot run alone in an image; install `busybox-static`"
        ),
        None => bail!(
            "lab up --docker: {BUSYBOX} is not an ELF program; install it with `apt-get install busybox-static`"
        ),
    }
    if find_in_path("tar").is_none() {
        bail!("lab up --docker: tar is not installed; install it with `apt-get install tar`");
    }
    Ok(Tools {
        dockerd,
        docker,
        busybox,
    })
}

/// Whether an ELF image has no program interpreter (statically linked). None: not ELF.
pub fn elf_is_static(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..4)? != b"\x7fELF" {
        return None;
    }
    let class64 = *bytes.get(4)? == 2;
    let little = *bytes.get(5)? == 1;
    // An unsigned field of `n` bytes at offset `o`, in the image's byte order.
    let uint_at = |o: usize, n: usize| -> Option<u64> {
        let field = bytes.get(o..o.checked_add(n)?)?;
        let fold = |v: u64, b: &u8| (v << 8) | u64::from(*b);
        Some(if little {
            field.iter().rev().fold(0, fold)
        } else {
            field.iter().fold(0, fold)
        })
    };
    let u16_at = |o| uint_at(o, 2);
    let u32_at = |o| uint_at(o, 4);
    let u64_at = |o| uint_at(o, 8);
    let (phoff, phentsize, phnum) = if class64 {
        (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u32_at(0x1c)?, u16_at(0x2a)?, u16_at(0x2c)?)
    };
    for i in 0..phnum {
        let at = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if u32_at(at)? == u64::from(PT_INTERP) {
            return Some(false);
        }
    }
    Some(true)
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    search_path()
        .into_iter()
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The caller's PATH, then the usual system directories.
fn search_path() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// A dockerd being started.
struct Starting {
    host: String,
    files: DockerFiles,
    child: Child,
    since: Instant,
}

/// Starts one dockerd per host (all at once), waits until each answers, and imports the
/// busybox image into each. The hosts must exist. On error the caller removes the lab.
pub fn start(
    lab: &str,
    hosts: u32,
    tools: &Tools,
    interrupted: &dyn Fn() -> Result<()>,
) -> Result<()> {
    files::write_atomic(
        &files::docker_marker(lab),
        "this lab runs one dockerd per host (weft lab up --docker)\n",
    )?;
    let image = build_image(lab, tools)?;

    let mut starting = Vec::new();
    for i in 1..=hosts {
        interrupted()?;
        starting.push(spawn_dockerd(lab, i, tools)?);
    }
    for s in &mut starting {
        wait_ready(lab, s, interrupted)?;
    }

    // Imports run in parallel too: one `docker import` per host.
    let importing = Instant::now();
    let mut imports = Vec::new();
    for s in &starting {
        let child = Command::new(&tools.docker)
            .args(["import", "--change", r#"CMD ["sh"]"#])
            .arg(&image)
            .arg(IMAGE)
            .env("DOCKER_HOST", docker_host(&s.files))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", tools.docker.display()))?;
        imports.push((s.host.clone(), child));
    }
    for (host, child) in imports {
        let out = child
            .wait_with_output()
            .with_context(|| format!("cannot run docker import on {host}"))?;
        if !out.status.success() {
            bail!(
                "host {host}: `docker import {} {IMAGE}` failed: {}",
                image.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        eprintln!(
            "lab {lab}: host {host}: image {IMAGE} imported after {:.1} s",
            importing.elapsed().as_secs_f64()
        );
    }
    interrupted()
}

/// `unix://SOCKET` of a host's dockerd.
pub fn docker_host(files: &DockerFiles) -> String {
    format!("unix://{}", files.sock.display())
}

/// Builds the busybox rootfs once per lab and tars it to `LAB/busybox.tar`.
fn build_image(lab: &str, tools: &Tools) -> Result<PathBuf> {
    let dir = files::lab_dir(lab);
    let rootfs = dir.join("busybox-rootfs");
    let tar = dir.join("busybox.tar");
    for d in ["bin", "etc", "root", "proc", "sys", "dev"] {
        files::create_dir(&rootfs.join(d), 0o755)?;
    }
    files::create_dir(&rootfs.join("tmp"), 0o1777)?;
    let bin = rootfs.join("bin");
    std::fs::copy(&tools.busybox, bin.join("busybox"))
        .with_context(|| format!("cannot copy {}", tools.busybox.display()))?;
    let listed = Command::new(&tools.busybox)
        .arg("--list")
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut applets: BTreeSet<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .collect();
    applets.extend(REQUIRED_APPLETS);
    for a in applets {
        std::os::unix::fs::symlink("busybox", bin.join(a))
            .with_context(|| format!("cannot make the applet link {}", bin.join(a).display()))?;
    }
    files::write_atomic(
        &rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    files::write_atomic(&rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    netns::checked_output(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
        "tar",
        "cannot build the busybox image with tar",
    )?;
    files::remove_tree(&rootfs)?;
    Ok(tar)
}

/// Makes host I's bridge and files and starts its dockerd (detached, in its own session,
/// so an interrupt of the terminal does not reach it).
fn spawn_dockerd(lab: &str, i: u32, tools: &Tools) -> Result<Starting> {
    let host = names::host_name(i);
    let ns = names::host_ns(lab, i);
    let dirs = files::host_dirs(lab, &host);
    let f = files::docker_files(lab, &host);
    let containerd_sock = f.exec.join("containerd/containerd.sock.ttrpc");
    for p in [&f.sock, &containerd_sock] {
        if p.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the socket path {} is longer than {MAX_SOCKET_PATH} bytes; set WEFT_LAB_DIR to a shorter directory",
                p.display()
            );
        }
    }
    let bridge_ip = names::docker_bridge_ip(i);
    let cgroup = names::docker_cgroup_parent(lab, i);
    eprintln!(
        "lab {lab}: host {host}: dockerd with bridge {DOCKER_BRIDGE} {bridge_ip}/{DOCKER_PREFIX_LEN}, socket {}",
        f.sock.display()
    );
    netns::ip_batch(
        &ns,
        &[
            format!("link add {DOCKER_BRIDGE} type bridge"),
            format!("addr add {bridge_ip}/{DOCKER_PREFIX_LEN} dev {DOCKER_BRIDGE}"),
            format!("link set {DOCKER_BRIDGE} up"),
        ],
    )?;
    files::create_dir(&f.data, 0o710)?;
    files::create_dir(&f.exec, 0o700)?;
    files::write_atomic(&f.config, "{}\n")?;
    let log = std::fs::File::create(&f.log)
        .with_context(|| format!("cannot create {}", f.log.display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("cannot duplicate {}", f.log.display()))?;

    let path =
        std::env::join_paths(search_path()).context("PATH has a directory with ':' in its name")?;
    let mut cmd = Command::new(netns::ip_binary()?);
    cmd.args(["netns", "exec", &ns, "sh", "-c", DOCKERD_SCRIPT, "sh"])
        .arg(&tools.dockerd)
        .arg(&dirs.plugins)
        .arg(&f.data)
        .arg(&f.exec)
        .arg(&f.sock)
        .arg(&f.pidfile)
        .arg(&f.config)
        .arg(DOCKER_BRIDGE)
        .arg(&cgroup)
        .arg(&dirs.base)
        .env_clear()
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid is a plain system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start dockerd on {host}"))?;
    // `ip netns exec` and `sh` both exec, so this pid becomes dockerd's. Written at once,
    // so that `lab down` finds it even if `lab up` dies now.
    files::write_atomic(&f.pid, &format!("{}\n", child.id()))?;
    Ok(Starting {
        host,
        files: f,
        child,
        since: Instant::now(),
    })
}

/// Waits until a dockerd answers `/_ping`; fails early if it exits, with its log's tail.
fn wait_ready(lab: &str, s: &mut Starting, interrupted: &dyn Fn() -> Result<()>) -> Result<()> {
    loop {
        interrupted()?;
        let last = match ping(&s.files.sock) {
            Ok(()) => {
                eprintln!(
                    "lab {lab}: host {}: dockerd ready after {:.1} s",
                    s.host,
                    s.since.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Err(e) => e,
        };
        if let Ok(Some(status)) = s.child.try_wait() {
            bail!(
                "host {}: dockerd exited ({status}) before it was ready; the end of {}:\n{}",
                s.host,
                s.files.log.display(),
                log_tail(&s.files.log, 15)
            );
        }
        if s.since.elapsed() > READY_WAIT {
            bail!(
                "host {}: dockerd did not answer on {} within {} s (last: {last}); the end of {}:\n{}",
                s.host,
                s.files.sock.display(),
                READY_WAIT.as_secs(),
                s.files.log.display(),
                log_tail(&s.files.log, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /_ping` on a Docker socket; Ok when it answers 200.
pub fn ping(sock: &Path) -> std::result::Result<(), String> {
    let mut stream = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    let timeout = Some(Duration::from_secs(2));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let _ = stream.take(4096).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or("").trim().to_string();
    if status.starts_with("HTTP/1.") && status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else if status.is_empty() {
        Err("an empty answer".to_string())
    } else {
        Err(format!("answer {status:?}"))
    }
}

/// The last `n` lines of a log file (or why it cannot be read).
fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

/// One process as `lab down` sees it.
#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// argv, NUL-separated.
    pub cmdline: Vec<u8>,
    /// The cgroup paths of /proc/PID/cgroup.
    pub cgroups: Vec<String>,
}

/// Every process of the machine (those that exit meanwhile are skipped).
pub fn scan_processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = parse_ppid(&stat)?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| Some(l.splitn(3, ':').nth(2)?.to_string()))
                .collect();
            Some(ProcInfo {
                pid,
                ppid,
                cmdline,
                cgroups,
            })
        })
        .collect()
}

/// The parent pid from /proc/PID/stat (the field after the state, after the last ')').
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a cgroup path is inside one of lab `lab`'s Docker cgroup parents.
pub fn in_lab_cgroup(lab: &str, path: &str) -> bool {
    path.split('/')
        .any(|c| names::docker_cgroup_owner(lab, c).is_some())
}

/// Whether a command line names a path under `dir`.
pub fn names_dir(cmdline: &[u8], dir: &Path) -> bool {
    let mut needle = dir.as_os_str().as_bytes().to_vec();
    needle.push(b'/');
    cmdline
        .windows(needle.len())
        .any(|w| w == needle.as_slice())
}

/// The processes of a lab beyond those in its namespaces: `seeds` (found by namespace),
/// processes whose command line names the lab directory (dockerd, containerd, shims),
/// processes in the lab's Docker cgroups (containers), and every descendant of these.
/// Never `me` or an ancestor of `me`.
pub fn lab_processes(
    procs: &[ProcInfo],
    lab: &str,
    lab_dir: &Path,
    seeds: &BTreeSet<u32>,
    me: u32,
) -> BTreeSet<u32> {
    let parent: BTreeMap<u32, u32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let mut keep_out = BTreeSet::new();
    let mut cur = me;
    while cur > 1 && keep_out.insert(cur) {
        cur = parent.get(&cur).copied().unwrap_or(0);
    }
    let mut found: BTreeSet<u32> = procs
        .iter()
        .filter(|p| {
            seeds.contains(&p.pid)
                || names_dir(&p.cmdline, lab_dir)
                || p.cgroups.iter().any(|c| in_lab_cgroup(lab, c))
        })
        .map(|p| p.pid)
        .collect();
    loop {
        let more: Vec<u32> = procs
            .iter()
            .filter(|p| found.contains(&p.ppid) && !found.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        if more.is_empty() {
            break;
        }
        found.extend(more);
    }
    found.retain(|p| !keep_out.contains(p));
    found
}

/// The first part of `lab down` for a Docker lab: kills the containers' processes (a lab's
/// containers are disposable, and dockerd would wait 10 s for each that ignores SIGTERM),
/// then stops each dockerd (SIGTERM, a bounded wait, SIGKILL) so that it shuts down its
/// containerd. Returns the pids signalled and errors.
pub fn stop(lab: &str, say: &dyn Fn(String)) -> (BTreeSet<u32>, Vec<String>) {
    let me = std::process::id();
    let dir = files::lab_dir(lab);
    let mut signalled = BTreeSet::new();
    let mut errors = Vec::new();

    let containers = || -> BTreeSet<u32> {
        scan_processes()
            .into_iter()
            .filter(|p| p.pid != me && p.cgroups.iter().any(|c| in_lab_cgroup(lab, c)))
            .map(|p| p.pid)
            .collect()
    };
    let first = containers();
    if !first.is_empty() {
        say(format!(
            "killing {} container process(es): {}",
            first.len(),
            join(&first)
        ));
        let left = signal_until_gone(&first, Signal::SIGKILL, CONTAINER_KILL_WAIT, &containers);
        signalled.extend(first);
        if !left.is_empty() {
            errors.push(format!(
                "container processes {} did not exit after SIGKILL",
                join(&left)
            ));
        }
    }

    let dockerds = || -> BTreeSet<u32> { dockerd_pids(lab, &dir, me) };
    let first = dockerds();
    if first.is_empty() {
        return (signalled, errors);
    }
    say(format!("stopping dockerd {}", join(&first)));
    let left = signal_until_gone(&first, Signal::SIGTERM, DOCKERD_TERM_WAIT, &dockerds);
    signalled.extend(&first);
    if !left.is_empty() {
        say(format!(
            "dockerd {} did not exit within {} s; SIGKILL",
            join(&left),
            DOCKERD_TERM_WAIT.as_secs()
        ));
        let stubborn = signal_until_gone(&left, Signal::SIGKILL, CONTAINER_KILL_WAIT, &dockerds);
        if !stubborn.is_empty() {
            errors.push(format!(
                "dockerd {} did not exit after SIGKILL",
                join(&stubborn)
            ));
        }
    }
    (signalled, errors)
}

/// The lab's dockerds: the pids recorded by `lab up`, if that process still names the lab
/// directory (a pid may have been reused), and any `dockerd` whose command line names it.
fn dockerd_pids(lab: &str, dir: &Path, me: u32) -> BTreeSet<u32> {
    let mut recorded = BTreeSet::new();
    for host in files::sorted_names(dir).unwrap_or_default() {
        if names::host_index(&host).is_none() {
            continue;
        }
        let pid_file = files::docker_files(lab, &host).pid;
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            recorded.insert(pid);
        }
    }
    scan_processes()
        .into_iter()
        .filter(|p| p.pid != me && names_dir(&p.cmdline, dir))
        .filter(|p| {
            let argv0 = p.cmdline.split(|b| *b == 0).next().unwrap_or_default();
            let base = argv0.rsplit(|b| *b == b'/').next().unwrap_or_default();
            recorded.contains(&p.pid) || base == b"dockerd"
        })
        .map(|p| p.pid)
        .collect()
}

/// Sends `signal` to `pids` (and to any newcomer `alive` reports) until `alive` is empty
/// or `wait` passes; returns those still alive.
fn signal_until_gone(
    pids: &BTreeSet<u32>,
    signal: Signal,
    wait: Duration,
    alive: &dyn Fn() -> BTreeSet<u32>,
) -> BTreeSet<u32> {
    for pid in pids {
        send(*pid, signal);
    }
    let deadline = Instant::now() + wait;
    loop {
        let left = alive();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        for pid in left.difference(pids) {
            send(*pid, signal);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        // The process may have exited since it was listed; that is fine.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal);
    }
}

fn join(pids: &BTreeSet<u32>) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of /proc/self/mountinfo: the mount's root, its mount point, its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The root of the mount within its filesystem.
    pub root: String,
    /// Where it is mounted.
    pub point: PathBuf,
    /// The filesystem type.
    pub fstype: String,
}

/// Parses /proc/self/mountinfo (lines that do not parse are skipped).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut f = left.split(' ');
            let root = unescape(f.nth(3)?);
            let point = PathBuf::from(unescape(f.next()?));
            let fstype = right.split(' ').next()?.to_string();
            Some(Mount {
                root,
                point,
                fstype,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Vec<Mount> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// Unmounts (lazily, deepest first) whatever is mounted at or under `dir` in this mount
/// namespace. dockerd's own mounts live in its private mount namespace and go with it; this
/// catches any that reached ours. Returns the mount points unmounted and errors.
pub fn unmount_under(dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let mut points: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|m| m.point)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for p in points {
        match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => done.push(p),
            // Already gone with a parent (or stacked twice): nothing to do.
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => errors.push(format!("cannot unmount {}: {e}", p.display())),
        }
    }
    (done, errors)
}

/// Removes the lab's Docker cgroups (`weft-lab-LAB-hN` and below) from every cgroup v1
/// hierarchy mounted here. Returns how many directories went, and errors.
pub fn remove_cgroups(lab: &str) -> (usize, Vec<String>) {
    let mut removed = 0;
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for m in mounts() {
        if m.fstype != "cgroup" || m.root != "/" || !seen.insert(m.point.clone()) {
            continue;
        }
        for name in files::sorted_names(&m.point).unwrap_or_default() {
            if names::docker_cgroup_owner(lab, &name).is_some() {
                rmdir_tree(&m.point.join(&name), &mut removed, &mut errors);
            }
        }
    }
    (removed, errors)
}

/// Removes a cgroup directory and its children (cgroupfs only allows rmdir, deepest first).
fn rmdir_tree(dir: &Path, removed: &mut usize, errors: &mut Vec<String>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path(), removed, errors);
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => *removed += 1,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("cannot remove cgroup {}: {e}", dir.display())),
    }
}

/// Hosts of the lab whose dockerd answers `/_ping`.
pub fn running_hosts(lab: &str) -> Vec<String> {
    let mut hosts: Vec<(u32, String)> = files::sorted_names(&files::lab_dir(lab))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|h| Some((names::host_index(&h)?, h)))
        .filter(|(_, h)| ping(&files::docker_files(lab, h).sock).is_ok())
        .collect();
    hosts.sort();
    hosts.into_iter().map(|(_, h)| h).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_is_static_and_sh_is_not() {
        if let Ok(b) = std::fs::read(BUSYBOX) {
            assert_eq!(
                elf_is_static(&b),
                Some(true),
                "{BUSYBOX} should be busybox-static"
            );
        }
        let sh = std::fs::read("/bin/sh").unwrap();
        assert_eq!(elf_is_static(&sh), Some(false));
        assert_eq!(elf_is_static(b"#!/bin/sh\n"), None);
        assert_eq!(elf_is_static(b""), None);
    }

    #[test]
    fn elf_parser_survives_garbage() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300 {
            let mut b: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            if b.len() >= 4 {
                b[..4].copy_from_slice(b"\x7fELF");
            }
            let _ = elf_is_static(&b);
        }
    }

    #[test]
    fn ppid_from_stat() {
        assert_eq!(parse_ppid("123 (a) b) S 45 123 123 0"), Some(45));
        assert_eq!(parse_ppid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn mountinfo_lines() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    50 1 0:44 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    broken line\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[1].fstype, "cgroup");
        assert_eq!(unescape("a\\134b\\"), "a\\b\\");
    }

    fn proc(pid: u32, ppid: u32, cmd: &str, cgroup: &str) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            cmdline: cmd.replace(' ', "\0").into_bytes(),
            cgroups: vec![cgroup.to_string()],
        }
    }

    #[test]
    fn finds_the_labs_processes_and_their_children_only() {
        let dir = Path::new("/run/weft-lab/t1");
        let procs = vec![
            proc(1, 0, "init", "/"),
            proc(10, 1, "bash", "/"),
            proc(11, 10, "weft lab down --name t1", "/"),
            proc(
                20,
                1,
                "dockerd --data-root /run/weft-lab/t1/h1/docker/data",
                "/",
            ),
            proc(
                21,
                20,
                "containerd --config /run/weft-lab/t1/h1/docker/exec/c.toml",
                "/",
            ),
            proc(
                22,
                1,
                "containerd-shim-runc-v2 -address /run/weft-lab/t1/h1/x",
                "/",
            ),
            proc(23, 22, "sleep 1000", "/weft-lab-t1-h1/abc"),
            proc(24, 23, "sleep 5", "/weft-lab-t1-h1/abc"),
            proc(
                30,
                1,
                "dockerd --data-root /run/weft-lab/t10/h1/docker/data",
                "/",
            ),
            proc(31, 1, "sleep 1", "/weft-lab-t10-h1/abc"),
            proc(40, 1, "router", "/"),
            proc(41, 40, "helper", "/"),
        ];
        let seeds: BTreeSet<u32> = [40, 10].into();
        let found = lab_processes(&procs, "t1", dir, &seeds, 11);
        // 10 is an ancestor of `me` (11): never signalled, even when in the lab.
        assert_eq!(found, [20, 21, 22, 23, 24, 40, 41].into());
        assert!(names_dir(b"x\0/run/weft-lab/t1/h1", dir));
        assert!(!names_dir(b"x\0/run/weft-lab/t10/h1", dir));
        assert!(in_lab_cgroup("t1", "/weft-lab-t1-h2/abc"));
        assert!(!in_lab_cgroup("t1", "/weft-lab-t10-h2/abc"));
    }
}
