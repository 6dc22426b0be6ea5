//! `weft lab up --docker`: every host of a lab runs its own dockerd (its own data root,
//! bridge subnet and containers), `weft lab exec` reaches it through DOCKER_HOST, and
//! `weft lab down` leaves nothing behind: no namespace, no process, no mount, no cgroup,
//! no directory.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weft_testkit::{require_docker, Lab};

/// Processes whose command line names a path under `dir` (dockerd, containerd, shims).
fn processes_naming(dir: &Path) -> Vec<String> {
    let needle = format!("{}/", dir.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// Cgroup directories the lab's dockerds made (`weft-lab-LAB-hN` in each hierarchy).
fn lab_cgroups(lab: &str) -> Vec<String> {
    let mut found = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for entry in std::fs::read_dir(hierarchy.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("weft-lab-{lab}-h")) {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

/// What the test plugin answers in `Err`, so that its answer can be recognised.
const PLUGIN_MARK: &str = "weft lab test plugin was asked";

/// Serves a Docker plugin socket that activates as a local network driver and refuses
/// every other call with "[`PLUGIN_MARK`] on HOST" (in a thread that ends with the test process).
fn serve_plugin(path: &Path, host: &str) {
    let host = host.to_string();
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = vec![0u8; 65536];
            let n = conn.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let body = if request.starts_with("POST /Plugin.Activate") {
                r#"{"Implements":["NetworkDriver"]}"#.to_string()
            } else if request.starts_with("POST /NetworkDriver.GetCapabilities") {
                r#"{"Scope":"local"}"#.to_string()
            } else {
                format!(r#"{{"Err":"{PLUGIN_MARK} on {host}"}}"#)
            };
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

#[test]
fn each_host_runs_its_own_dockerd_and_down_removes_everything() {
    require_docker();
    let lab = Lab::up_docker(env!("CARGO_BIN_EXE_weft"), 2);
    let name = lab.name().to_string();
    let dir = lab.dir();

    for (i, host) in lab.hosts().iter().enumerate() {
        let out = lab.docker_ok(
            host,
            &["run", "--rm", "--net=none", "busybox", "echo", "hi"],
        );
        assert_eq!(out.trim(), "hi", "docker run on {host}");

        let root = lab.docker_ok(host, &["info", "--format", "{{.DockerRootDir}}"]);
        assert_eq!(
            Path::new(root.trim()),
            dir.join(host).join("docker/data"),
            "{host}'s dockerd keeps its data under the lab directory"
        );

        // Containers on the default bridge get addresses of this host's subnet.
        let addr = lab.docker_ok(
            host,
            &["run", "--rm", "busybox", "ip", "-4", "addr", "show", "eth0"],
        );
        let subnet = format!("inet 172.30.{}.", i + 1);
        assert!(
            addr.contains(&subnet),
            "{host}: expected an address in {subnet}0/24: {addr}"
        );
    }

    // A container left running on h1: h2's dockerd does not see it, and down must stop it.
    let id = lab.docker_ok("h1", &["run", "-d", "busybox", "sleep", "600"]);
    let ps1 = lab.docker_ok("h1", &["ps", "-q", "--no-trunc"]);
    assert!(ps1.contains(id.trim()), "h1 lists its container: {ps1}");
    let ps2 = lab.docker_ok("h2", &["ps", "-q"]);
    assert!(
        ps2.trim().is_empty(),
        "h2 has its own dockerd, without h1's container: {ps2}"
    );
    assert!(
        !processes_naming(&dir).is_empty(),
        "the dockerds name the lab directory"
    );
    assert!(
        !lab_cgroups(&name).is_empty(),
        "h1's container lives in the lab's cgroup"
    );

    // A plugin socket in a host's WEFT_DOCKER_PLUGIN_DIR is the one that host's dockerd
    // uses (it sees that directory as /run/docker/plugins), and only that host's.
    for host in lab.hosts() {
        serve_plugin(&dir.join(&host).join("plugins/weft.sock"), &host);
    }
    for host in lab.hosts() {
        let out = lab.docker(&host, &["network", "create", "-d", "weft", "n1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{PLUGIN_MARK} on {host}")),
            "{host}'s dockerd asks the plugin in {host}'s plugin directory: {stderr}"
        );
    }

    let list = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["lab", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let line = list.lines().find(|l| l.starts_with(&format!("{name} ")));
    assert!(
        line.is_some_and(|l| l.contains("dockerd running on: h1 h2")),
        "lab list shows the running dockerds: {list}"
    );

    // Dropping the lab runs `weft lab down` and fails the test if that fails.
    drop(lab);

    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{name}-")))
                .collect()
        })
        .unwrap_or_default();
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    let left = processes_naming(&dir);
    assert!(left.is_empty(), "processes left: {left:?}");
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains(&format!("{}/", dir.display()))
                || l.contains(&format!(" {} ", dir.display()))
        })
        .map(String::from)
        .collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let cgroups = lab_cgroups(&name);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert!(!dir.exists(), "{} is left", dir.display());
}

/// Every `dockerd` weft could find (PATH, then the system directories).
fn dockerds() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut found: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("dockerd"))
        .filter(|p| p.is_file())
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Runs `weft lab up --docker --hosts 2 --name LAB` in a private mount namespace in which
/// every dockerd is `replacement` (bind-mounted over it); the machine's files stay as they are.
fn up_with_dockerd_replaced(lab: &str, replacement: &Path) -> Output {
    let mut script = String::from("set -e\n");
    for d in dockerds() {
        script.push_str(&format!(
            "mount --bind {} {}\n",
            replacement.display(),
            d.display()
        ));
    }
    script.push_str("exec \"$0\" lab up --docker --hosts 2 --name \"$1\"\n");
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_weft"))
        .arg(lab)
        .output()
        .expect("cannot run unshare (util-linux)")
}

/// Fails the test with what of lab `lab` is left behind, if anything is.
fn assert_nothing_left(lab: &str) {
    let left = leftovers(lab);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// What is left of a lab: namespaces, /etc/netns entries, its directory, processes, cgroups.
fn leftovers(lab: &str) -> Vec<String> {
    let dir = labs_dir().join(lab);
    let mut left = Vec::new();
    for base in ["/run/netns", "/etc/netns"] {
        for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{lab}-")) {
                left.push(format!("{base}/{n}"));
            }
        }
    }
    if dir.exists() {
        left.push(dir.display().to_string());
    }
    left.extend(processes_naming(&dir));
    left.extend(lab_cgroups(lab));
    left
}

/// `$WEFT_LAB_DIR`, by default /run/weft-lab.
fn labs_dir() -> PathBuf {
    std::env::var_os("WEFT_LAB_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/weft-lab"))
}

/// A lab name of this test process that `Lab` does not use (its counter starts at 1), and
/// a guard that brings that lab down when dropped.
fn own_lab(n: u32) -> (String, DownOnDrop) {
    let name = format!("t{}-{}", std::process::id(), 900 + n);
    (name.clone(), DownOnDrop(name))
}

/// Runs `weft lab down` on a lab when dropped, so a failing test leaves nothing either.
struct DownOnDrop(String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["lab", "down", "--name", &self.0])
            .output();
    }
}

#[test]
fn without_dockerd_lab_up_docker_says_what_to_install_and_makes_nothing() {
    require_docker();
    let (lab, _down) = own_lab(1);
    let out = up_with_dockerd_replaced(&lab, Path::new("/dev/null"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "lab up --docker succeeded without dockerd: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("dockerd is not installed") && stderr.contains("apt-get install docker.io"),
        "{stderr}"
    );
    assert_nothing_left(&lab);
}

#[test]
fn a_dockerd_that_fails_to_start_is_reported_and_the_lab_rolled_back() {
    require_docker();
    let (lab, _down) = own_lab(2);
    let fake = std::env::temp_dir().join(format!("weft-fake-dockerd-{}", std::process::id()));
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'fake dockerd: refusing to start' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = up_with_dockerd_replaced(&lab, &fake);
    let _ = std::fs::remove_file(&fake);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let left = leftovers(&lab);
    assert!(
        !out.status.success(),
        "lab up --docker succeeded with a failing dockerd: {stderr}"
    );
    assert!(
        stderr.contains("dockerd exited") && stderr.contains("fake dockerd: refusing to start"),
        "the error names dockerd's exit and shows its log: {stderr}"
    );
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Waits (bounded) until `f` holds; panics naming `what`.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn down_after_dockerd_was_killed_removes_its_orphans() {
    require_docker();
    let lab = Lab::up_docker(env!("CARGO_BIN_EXE_weft"), 1);
    let name = lab.name().to_string();
    lab.docker_ok("h1", &["run", "-d", "busybox", "sleep", "600"]);
    let pid_file = lab.dir().join("h1/dockerd.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A crash: dockerd dies at once, leaving its container and shim behind.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("dockerd to exit", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(
        !lab_cgroups(&name).is_empty(),
        "the container outlives dockerd"
    );
    drop(lab);
    assert_nothing_left(&name);
}

#[test]
fn down_removes_a_docker_lab_whose_lab_up_was_killed() {
    require_docker();
    let (lab, _down) = own_lab(3);
    let weft = env!("CARGO_BIN_EXE_weft");
    let mut up = Command::new(weft)
        .args(["lab", "up", "--docker", "--hosts", "2", "--name", &lab])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = labs_dir().join(&lab);
    // Killed (SIGKILL: no rollback) once both dockerds are started.
    wait_until("lab up to start both dockerds", || {
        dir.join("h1/dockerd.pid").exists() && dir.join("h2/dockerd.pid").exists()
    });
    up.kill().unwrap();
    up.wait().unwrap();
    assert!(
        !processes_naming(&dir).is_empty(),
        "the dockerds outlive lab up"
    );
    let down = Command::new(weft)
        .args(["lab", "down", "--name", &lab])
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "lab down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_nothing_left(&lab);
}
