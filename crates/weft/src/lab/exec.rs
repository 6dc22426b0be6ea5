//! `weft lab exec`: runs a command on a lab host (or in a lab container, or in the
//! underlay) through `ip netns exec`, which also mounts /etc/netns/NS/* over /etc so the
//! lab's hosts file and resolv.conf apply. Each run gets its own UTS namespace whose
//! hostname is the host's short name, so a router's default nickname is `h1`, not the
//! machine's name.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use super::files;
use super::names::{self, Member};
use super::netns;

/// A lab member that commands run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What it is.
    pub member: Member,
    /// Its namespace.
    pub ns: String,
}

impl Target {
    /// The short name (`h1`, `c1`, `ul`), also the hostname commands see.
    pub fn short_name(&self) -> String {
        match &self.member {
            Member::Host(i) => names::host_name(*i),
            Member::Container(c) => c.clone(),
            Member::Underlay => "ul".to_string(),
        }
    }
}

/// Finds `s` (`h1`, `LAB-h1`, `c1`, `LAB-c-c1`, `ul`) in lab `lab`; it must exist.
pub fn resolve(lab: &str, s: &str) -> Result<Target> {
    names::validate_lab_name(lab).map_err(anyhow::Error::msg)?;
    if !netns::exists(&names::underlay_ns(lab)) {
        bail!(
            "there is no lab {lab}; create it with `weft lab up --name {lab}` (`weft lab list` shows the labs)"
        );
    }
    let member = names::parse_target(lab, s).ok_or_else(|| {
        anyhow!("{s:?} is neither a host (h1, {lab}-h1) nor a container name of lab {lab}")
    })?;
    let ns = names::member_ns(lab, &member);
    if !netns::exists(&ns) {
        let present: Vec<String> = super::down::lab_namespaces(lab)?
            .into_iter()
            .filter(|(m, _)| *m != Member::Underlay)
            .map(|(m, _)| match m {
                Member::Host(i) => names::host_name(i),
                Member::Container(c) => c,
                Member::Underlay => String::new(),
            })
            .collect();
        bail!(
            "lab {lab} has no host or container {s} (it has: {})",
            present.join(" ")
        );
    }
    Ok(Target { member, ns })
}

/// The command that runs `cmd` in `target` with that host's WEFT_* environment.
pub fn command(lab: &str, target: &Target, cmd: &[String]) -> Result<Command> {
    let mut c = Command::new(netns::ip_binary()?);
    c.args(["netns", "exec", &target.ns]).args(cmd);
    c.env("WEFT_LAB", lab);
    let mut docker_first = false;
    match &target.member {
        Member::Host(i) => {
            let host = names::host_name(*i);
            let dirs = files::host_dirs(lab, &host);
            if files::has_docker(lab) {
                let docker = files::docker_files(lab, &host);
                c.env("DOCKER_HOST", super::docker::docker_host(&docker));
                docker_first = true;
            }
            c.env("WEFT_STATE_DIR", dirs.state)
                .env("WEFT_RUN_DIR", dirs.run)
                .env("WEFT_DOCKER_PLUGIN_DIR", dirs.plugins)
                .env("WEFT_LAB_HOST", host);
        }
        Member::Container(name) => {
            c.env("WEFT_LAB_CONTAINER", name);
        }
        Member::Underlay => {}
    }
    c.env("PATH", path_with_weft_first(docker_first)?);
    let hostname = target.short_name();
    // SAFETY: unshare and sethostname are plain system calls, safe between fork and exec.
    unsafe {
        c.pre_exec(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)
                .map_err(std::io::Error::from)?;
            nix::unistd::sethostname(&hostname).map_err(std::io::Error::from)
        });
    }
    Ok(c)
}

/// PATH with the directory of this weft binary first, so `weft` inside is this one; on a
/// Docker lab host /usr/bin comes next, so `docker` is the 20.10 client that speaks the
/// lab dockerd's API (a newer one, e.g. in /usr/local/bin, asks for a too new API).
fn path_with_weft_first(docker_first: bool) -> Result<OsString> {
    let exe = std::env::current_exe().context("cannot find the weft binary")?;
    let mut dirs: Vec<PathBuf> = exe.parent().map(PathBuf::from).into_iter().collect();
    if docker_first {
        if let Some(dir) = Path::new(super::docker::DOCKER_CLIENT).parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    let old = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    dirs.extend(std::env::split_paths(&old));
    std::env::join_paths(dirs).context("PATH has a directory with ':' in its name")
}

/// `weft lab exec HOST -- CMD...`: becomes CMD (through `ip netns exec`), so its stdin,
/// stdout, stderr, signals and exit code are the caller's.
pub fn exec(lab: &str, host: &str, cmd: &[String]) -> Result<()> {
    let target = resolve(lab, host)?;
    let err = command(lab, &target, cmd)?.exec();
    Err(anyhow!("cannot run `ip netns exec {}`: {err}", target.ns))
}
