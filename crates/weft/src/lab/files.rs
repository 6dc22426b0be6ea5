//! Files a lab keeps outside the kernel: its directory under $WEFT_LAB_DIR (one state,
//! run and plugin directory per host) and the /etc/netns/NS files that `ip netns exec`
//! mounts over /etc.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

/// Default for `WEFT_LAB_DIR`.
pub const DEFAULT_LAB_DIR: &str = "/run/weft-lab";
/// Where `ip netns exec` finds files to mount over /etc.
pub const ETC_NETNS: &str = "/etc/netns";

/// The directory that holds every lab's directory.
pub fn labs_dir() -> PathBuf {
    std::env::var_os("WEFT_LAB_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LAB_DIR))
}

/// One lab's directory.
pub fn lab_dir(lab: &str) -> PathBuf {
    labs_dir().join(lab)
}

/// The directories of one lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDirs {
    /// The host's own directory (`LAB/hI`), holding the others.
    pub base: PathBuf,
    /// `WEFT_STATE_DIR` of the host's router.
    pub state: PathBuf,
    /// `WEFT_RUN_DIR` of the host's router.
    pub run: PathBuf,
    /// `WEFT_DOCKER_PLUGIN_DIR` of the host's router.
    pub plugins: PathBuf,
}

/// The directories of host `host` (`hI`) of a lab.
pub fn host_dirs(lab: &str, host: &str) -> HostDirs {
    let base = lab_dir(lab).join(host);
    HostDirs {
        base: base.clone(),
        state: base.join("state"),
        run: base.join("run"),
        plugins: base.join("plugins"),
    }
}

/// The files of one lab host's dockerd (all under the host's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerFiles {
    /// `--data-root` (images, containers, overlay layers).
    pub data: PathBuf,
    /// `--exec-root` (runtime state; containerd's sockets).
    pub exec: PathBuf,
    /// `--config-file`: an empty `{}`, so the machine's /etc/docker/daemon.json cannot apply.
    pub config: PathBuf,
    /// The API socket (`DOCKER_HOST=unix://...`).
    pub sock: PathBuf,
    /// `--pidfile`, written by dockerd.
    pub pidfile: PathBuf,
    /// The pid `lab up` started, written as soon as it is known (found again by `down`).
    pub pid: PathBuf,
    /// dockerd's stdout and stderr.
    pub log: PathBuf,
}

/// The dockerd files of host `host` (`hI`) of a lab.
pub fn docker_files(lab: &str, host: &str) -> DockerFiles {
    let base = lab_dir(lab).join(host);
    let d = base.join("docker");
    DockerFiles {
        data: d.join("data"),
        exec: d.join("exec"),
        config: d.join("daemon.json"),
        pidfile: d.join("docker.pid"),
        sock: base.join("docker.sock"),
        pid: base.join("dockerd.pid"),
        log: base.join("dockerd.log"),
    }
}

/// A file whose presence says the lab was made with `--docker`.
pub fn docker_marker(lab: &str) -> PathBuf {
    lab_dir(lab).join("docker")
}

/// Whether the lab was made with `--docker`.
pub fn has_docker(lab: &str) -> bool {
    docker_marker(lab).exists()
}

/// The /etc/netns directory of a namespace.
pub fn etc_dir(ns: &str) -> PathBuf {
    Path::new(ETC_NETNS).join(ns)
}

/// Entries of /etc/netns (namespace names).
pub fn list_etc() -> Result<Vec<String>> {
    sorted_names(Path::new(ETC_NETNS))
}

/// The names in a directory, sorted; none when the directory does not exist.
pub fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow!("cannot list {}: {e}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Writes the files `ip netns exec NS` mounts over /etc (name → content).
pub fn write_etc(ns: &str, files: &[(&str, String)]) -> Result<()> {
    let dir = etc_dir(ns);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, content) in files {
        write_atomic(&dir.join(name), content)?;
    }
    Ok(())
}

/// Writes a file so that readers see the old or the new content, never a part.
pub fn write_atomic(path: &Path, content: &str) -> Result<()> {
    weft_router::entry::write_atomic(path, content.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Creates a directory (and its parents) with a mode.
pub fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

/// Removes a directory tree; true if there was one.
pub fn remove_tree(path: &Path) -> Result<bool> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(anyhow!("cannot remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = std::env::temp_dir().join(format!("weft-lab-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("hosts");
        write_atomic(&p, "one\n").unwrap();
        write_atomic(&p, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
        assert!(remove_tree(&dir).unwrap());
        assert!(!remove_tree(&dir).unwrap());
    }
}
