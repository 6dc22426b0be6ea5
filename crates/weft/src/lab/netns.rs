//! Network namespaces through iproute2: create, configure, delete, list, and find the
//! processes inside one. Every kernel change of the lab goes through here.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{anyhow, bail, Context, Result};

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The `ip` binary (looked up in PATH, then in the usual sbin directories).
pub fn ip_binary() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join("ip"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("the `ip` command (iproute2) is not installed; install it with `apt-get install iproute2`"))
}

/// Runs `ip ARGS`; the error carries ip's own message.
pub fn ip(args: &[&str]) -> Result<()> {
    let failed = format!("`ip {}` failed", args.join(" "));
    checked_output(Command::new(ip_binary()?).args(args), "`ip`", &failed)?;
    Ok(())
}

/// Runs `cmd` (named `name`) to its end without stdin; its output, or the error `failed`
/// with the first line the command wrote to stderr.
pub fn checked_output(cmd: &mut Command, name: &str, failed: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {name}"))?;
    if !out.status.success() {
        bail!("{failed}: {}", first_line(&out.stderr));
    }
    Ok(out)
}

/// Runs several `ip` commands inside namespace `ns` in one process (`ip -n NS -batch -`).
pub fn ip_batch(ns: &str, commands: &[String]) -> Result<()> {
    let mut child = Command::new(ip_binary()?)
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ip`")?;
    let script = commands.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means ip exited early; its status below says why.
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().context("cannot run `ip`")?;
    if !out.status.success() {
        bail!(
            "`ip -n {ns}` failed on [{}]: {}",
            commands.join("; "),
            first_line(&out.stderr)
        );
    }
    Ok(())
}

fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_string()
}

/// The handle file of a namespace.
pub fn handle(ns: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(ns)
}

/// Whether a namespace of this name exists.
pub fn exists(ns: &str) -> bool {
    handle(ns).exists()
}

/// Every named network namespace on the machine.
pub fn list() -> Result<Vec<String>> {
    super::files::sorted_names(std::path::Path::new(NETNS_RUN_DIR))
}

/// Creates a namespace. (`ip netns add` itself serialises the first-use setup of
/// /run/netns with a lock on that directory, so labs can be made in parallel.)
pub fn add(ns: &str) -> Result<()> {
    ip(&["netns", "add", ns])
}

/// Deletes a namespace handle (the kernel frees the namespace once nothing holds it).
pub fn delete(ns: &str) -> Result<()> {
    ip(&["netns", "delete", ns])
}

/// Pids of the processes whose network namespace is `ns` (what `ip netns pids` finds,
/// without parsing its output).
pub fn pids(ns: &str) -> Vec<u32> {
    let Ok(target) = std::fs::metadata(handle(ns)) else {
        return Vec::new();
    };
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A process that exited meanwhile (or a zombie) has no namespace link: skip it.
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.dev() == target.dev() && m.ino() == target.ino())
                .unwrap_or(false)
        })
        .collect()
}
