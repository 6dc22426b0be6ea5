//! `weft lab up --docker`: every host of a lab runs its own dockerd (its own data root,
//! bridge subnet and containers), `weft lab exec` reaches it through DOCKER_HOST, and
//! `weft lab down` leaves nothing behind: no namespace, no process, no mount, no cgroup,
//! no directory.

use std::path::Path;

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
