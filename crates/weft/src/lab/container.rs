//! `weft lab container`: a network namespace standing in for a container, attached to a
//! host's router with `weft attach`. If attaching fails, the namespace and its files go.

use anyhow::{anyhow, bail, Result};

use super::exec;
use super::files;
use super::names::{self, Member};
use super::netns;

/// `weft lab container HOST NAME [ADDR...] --name LAB [--service SERVICE]...`.
pub fn container(
    lab: &str,
    host: &str,
    name: &str,
    addrs: &[String],
    services: &[String],
) -> Result<()> {
    let target = exec::resolve(lab, host)?;
    if !matches!(target.member, Member::Host(_)) {
        bail!("{host} is not a host of lab {lab}; containers are made on hosts (h1, h2, ...)");
    }
    names::validate_container_name(name).map_err(anyhow::Error::msg)?;
    let ns = names::container_ns(lab, name);
    if netns::exists(&ns) || files::etc_dir(&ns).exists() {
        bail!("container {name} already exists in lab {lab} (namespace {ns}); pick another name");
    }

    match create_and_attach(lab, &target, name, &ns, addrs, services) {
        Ok(out) => {
            print!("{out}");
            Ok(())
        }
        Err(e) => {
            // Both were checked absent above, so both are ours to remove.
            let mut left = Vec::new();
            if netns::exists(&ns) {
                if let Err(e) = netns::delete(&ns) {
                    left.push(format!("{e:#}"));
                }
            }
            if let Err(e) = files::remove_tree(&files::etc_dir(&ns)) {
                left.push(format!("{e:#}"));
            }
            if left.is_empty() {
                Err(e.context(format!("container {name} was not created")))
            } else {
                Err(e.context(format!(
                    "container {name} was not created, and removing it failed: {}; run `weft lab down --name {lab}`",
                    left.join("; ")
                )))
            }
        }
    }
}

/// Makes the namespace and runs `weft attach` on the host; returns attach's output.
fn create_and_attach(
    lab: &str,
    host: &exec::Target,
    name: &str,
    ns: &str,
    addrs: &[String],
    services: &[String],
) -> Result<String> {
    files::write_etc(
        ns,
        &[
            ("resolv.conf", names::container_resolv_conf()),
            ("hosts", names::container_hosts_file(name, None)),
        ],
    )?;
    netns::add(ns)?;
    netns::ip_batch(ns, &["link set lo up".to_string()])?;

    let exe = std::env::current_exe().map_err(|e| anyhow!("cannot find the weft binary: {e}"))?;
    let mut cmd = vec![exe.to_string_lossy().into_owned(), "attach".to_string()];
    cmd.extend(addrs.iter().cloned());
    cmd.extend([
        "--netns".to_string(),
        netns::handle(ns).to_string_lossy().into_owned(),
        "--hostname".to_string(),
        format!("{name}.weft.local"),
    ]);
    for s in services {
        cmd.extend(["--service".to_string(), s.clone()]);
    }
    let out = exec::command(lab, host, &cmd)?
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow!("cannot run weft attach on {}: {e}", host.short_name()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("weft attach failed without a message");
        bail!("{}", line.strip_prefix("weft: ").unwrap_or(line));
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The container knows its own name, like a Docker container does.
    let first_ip = stdout
        .lines()
        .next()
        .and_then(|l| l.trim().split('/').next())
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
    if let Some(ip) = first_ip {
        files::write_etc(
            ns,
            &[("hosts", names::container_hosts_file(name, Some(ip)))],
        )?;
    }
    Ok(stdout)
}
