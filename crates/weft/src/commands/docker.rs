//! `weft env`, `weft config`, `weft run`: the Docker client through weft's API proxy.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use weft_api::Paths;

use super::is_addr_form;

/// Environment variable naming the docker client `weft run` uses (default `docker`).
const DOCKER_CLI_ENV: &str = "WEFT_DOCKER_CLI";

/// The proxy's socket, or an error saying why it is not there.
fn proxy_socket() -> Result<PathBuf> {
    let paths = Paths::from_env();
    let sock = paths.proxy_socket();
    if !sock.exists() {
        if !paths.socket().exists() {
            bail!("weft is not running here; start it with `weft launch`");
        }
        bail!(
            "weft's Docker proxy is not running: the router found no Docker at launch \
             (set DOCKER_HOST to dockerd's socket and launch again; see the router's log)"
        );
    }
    Ok(sock)
}

/// Quotes a value for the shell.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// The lines `weft env` prints for a proxy at `proxy` and the current DOCKER_HOST.
fn env_lines(proxy: &str, current: Option<&str>, restore: bool, orig: Option<&str>) -> Vec<String> {
    if restore {
        return match orig.filter(|o| !o.is_empty() && *o != proxy) {
            Some(o) => vec![
                format!("export DOCKER_HOST={}", quote(o)),
                "unset ORIG_DOCKER_HOST".to_string(),
            ],
            None => vec!["unset DOCKER_HOST ORIG_DOCKER_HOST".to_string()],
        };
    }
    let mut lines = Vec::new();
    // Already pointed at the proxy: keep the original that was saved the first time.
    if current != Some(proxy) {
        lines.push(format!(
            "export ORIG_DOCKER_HOST={}",
            quote(current.unwrap_or(""))
        ));
    }
    lines.push(format!("export DOCKER_HOST={}", quote(proxy)));
    lines
}

/// `weft env [--restore]`: shell commands that point (or stop pointing) the docker client at
/// weft's proxy: `eval $(weft env)`.
pub fn env(restore: bool) -> Result<()> {
    let proxy = if restore {
        format!("unix://{}", Paths::from_env().proxy_socket().display())
    } else {
        format!("unix://{}", proxy_socket()?.display())
    };
    let current = std::env::var("DOCKER_HOST").ok();
    let orig = std::env::var("ORIG_DOCKER_HOST").ok();
    for l in env_lines(&proxy, current.as_deref(), restore, orig.as_deref()) {
        println!("{l}");
    }
    Ok(())
}

/// `weft config`: the docker client flag for the proxy: `docker $(weft config) ps`.
pub fn config() -> Result<()> {
    println!("-H=unix://{}", proxy_socket()?.display());
    Ok(())
}

/// The label that makes a Docker container a task of services (comma-separated names).
pub const SERVICE_LABEL: &str = "weft.service";

/// Splits the leading `--service NAME` / `--service=NAME` words (before and among the
/// addresses) from the rest of `weft run`'s arguments.
fn split_services(args: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut services = Vec::new();
    let mut rest = Vec::new();
    let mut words = args.iter();
    while let Some(w) = words.next() {
        if w == "--service" {
            match words.next() {
                Some(n) if !n.starts_with('-') && !n.is_empty() => services.push(n.clone()),
                _ => {
                    bail!("--service needs a service name: weft run --service NAME [ADDR...] IMAGE")
                }
            }
        } else if let Some(n) = w.strip_prefix("--service=") {
            if n.is_empty() {
                bail!("--service needs a service name: weft run --service NAME [ADDR...] IMAGE");
            }
            services.push(n.to_string());
        } else if is_addr_form(w) {
            rest.push(w.clone());
        } else {
            rest.push(w.clone());
            rest.extend(words.cloned());
            break;
        }
    }
    Ok((services, rest))
}

/// The docker arguments of `weft run [--service NAME]... ADDR... ARGS...` for a proxy socket.
fn run_args(proxy: &str, args: &[String]) -> Result<Vec<String>> {
    let (services, args) = split_services(args)?;
    let n = args.iter().take_while(|a| is_addr_form(a)).count();
    let (addrs, rest) = args.split_at(n);
    if rest.is_empty() {
        bail!("weft run needs docker run arguments, at least an image: weft run [ADDR...] IMAGE [CMD...]");
    }
    let mut out = vec![
        "-H".to_string(),
        format!("unix://{proxy}"),
        "run".to_string(),
        "-d".to_string(),
    ];
    if !addrs.is_empty() {
        out.push("-e".to_string());
        out.push(format!("WEFT_CIDR={}", addrs.join(" ")));
    }
    if !services.is_empty() {
        out.push("--label".to_string());
        out.push(format!("{SERVICE_LABEL}={}", services.join(",")));
    }
    out.extend(rest.iter().cloned());
    Ok(out)
}

/// `weft run [ADDR...] ARGS...`: `docker run -d` through the proxy, so the container is
/// created, attached (its interface is up before its process starts) and started in one
/// step; docker prints the container's id.
pub fn run(args: Vec<String>) -> Result<()> {
    let proxy = proxy_socket()?;
    let argv = run_args(&proxy.to_string_lossy(), &args)?;
    // An unknown service fails here, before a container is made.
    super::services::require_services(&split_services(&args)?.0)?;
    let cli = std::env::var(DOCKER_CLI_ENV).unwrap_or_else(|_| "docker".to_string());
    let status = Command::new(&cli)
        .args(&argv)
        .status()
        .with_context(|| format!("cannot run {cli} (set {DOCKER_CLI_ENV} to the docker client)"))?;
    if !status.success() {
        bail!("docker run failed ({status}); see docker's message above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_saves_the_original_host_once_and_restores_it() {
        let p = "unix:///run/weft/docker.sock";
        assert_eq!(
            env_lines(p, None, false, None),
            vec![
                "export ORIG_DOCKER_HOST=''".to_string(),
                format!("export DOCKER_HOST='{p}'")
            ]
        );
        assert_eq!(
            env_lines(p, Some(p), false, Some("unix:///d.sock")),
            vec![format!("export DOCKER_HOST='{p}'")]
        );
        assert_eq!(
            env_lines(p, Some(p), true, Some("unix:///d.sock")),
            vec![
                "export DOCKER_HOST='unix:///d.sock'".to_string(),
                "unset ORIG_DOCKER_HOST".to_string()
            ]
        );
        assert_eq!(
            env_lines(p, Some(p), true, Some("")),
            vec!["unset DOCKER_HOST ORIG_DOCKER_HOST".to_string()]
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn run_splits_addresses_from_docker_arguments() {
        let a: Vec<String> = [
            "net:10.32.1.0/24",
            "ip:10.32.2.9/24",
            "--name",
            "c1",
            "-ti",
            "busybox",
            "sh",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = run_args("/run/weft/docker.sock", &a).unwrap();
        assert_eq!(
            got[..6],
            [
                "-H",
                "unix:///run/weft/docker.sock",
                "run",
                "-d",
                "-e",
                "WEFT_CIDR=net:10.32.1.0/24 ip:10.32.2.9/24"
            ]
        );
        assert_eq!(got[6..], ["--name", "c1", "-ti", "busybox", "sh"]);
        let got = run_args("/s", &["busybox".to_string()]).unwrap();
        assert_eq!(got, ["-H", "unix:///s", "run", "-d", "busybox"]);
        assert!(run_args("/s", &["net:default".to_string()]).is_err());
    }

    #[test]
    fn run_turns_services_into_the_label() {
        let a: Vec<String> = ["--service", "web", "net:default", "--service=db", "busybox"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = run_args("/s", &a).unwrap();
        assert_eq!(
            got[4..],
            [
                "-e",
                "WEFT_CIDR=net:default",
                "--label",
                "weft.service=web,db",
                "busybox"
            ]
        );
        assert!(run_args("/s", &["--service".to_string()]).is_err());
        let only = run_args("/s", &["--service".into(), "web".into(), "busybox".into()]);
        assert_eq!(
            only.unwrap()[4..],
            ["--label", "weft.service=web", "busybox"]
        );
    }
}
