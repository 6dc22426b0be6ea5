//! The environment a runtime sets for a CNI plugin: CNI_COMMAND, CNI_CONTAINERID,
//! CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH.

use std::net::Ipv4Addr;

use crate::error::{code, CniError};

/// The most CNI_ARGS pairs read (a runtime sends a handful).
const MAX_ARGS: usize = 64;

/// A CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// ADD.
    Add,
    /// DEL.
    Del,
    /// CHECK.
    Check,
    /// GC.
    Gc,
    /// STATUS.
    Status,
    /// VERSION.
    Version,
}

impl Command {
    /// Parses CNI_COMMAND.
    pub fn parse(s: &str) -> Result<Command, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "unknown CNI_COMMAND",
                    format!(
                        "CNI_COMMAND={other:?} is none of ADD, DEL, CHECK, GC, STATUS, VERSION"
                    ),
                ))
            }
        })
    }
}

/// CNI_ARGS, the keys weft reads: an address, and what names the container in DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// `IP=`: fixed addresses (a prefix is optional), comma separated.
    pub ips: Vec<(Ipv4Addr, Option<u8>)>,
    /// `K8S_POD_NAME` (also set by podman to the container's name).
    pub k8s_pod_name: Option<String>,
    /// `K8S_POD_NAMESPACE`.
    pub k8s_pod_namespace: Option<String>,
    /// `NOMAD_ALLOC_ID`.
    pub nomad_alloc_id: Option<String>,
    /// `NOMAD_GROUP_NAME`.
    pub nomad_group_name: Option<String>,
    /// `NOMAD_JOB_ID`.
    pub nomad_job_id: Option<String>,
    /// `NOMAD_NAMESPACE`.
    pub nomad_namespace: Option<String>,
    /// `NOMAD_REGION`.
    pub nomad_region: Option<String>,
}

impl Args {
    /// Parses `K=V;K=V`. Unknown keys are ignored (runtimes pass many, e.g. IgnoreUnknown).
    pub fn parse(s: &str) -> Result<Args, CniError> {
        let bad = |why: String| CniError::new(code::INVALID_ENV, "invalid CNI_ARGS", why);
        let mut out = Args::default();
        for (n, pair) in s.split(';').filter(|p| !p.trim().is_empty()).enumerate() {
            if n >= MAX_ARGS {
                return Err(bad(format!("more than {MAX_ARGS} KEY=VALUE pairs")));
            }
            let Some((k, v)) = pair.split_once('=') else {
                return Err(bad(format!("{pair:?} is not KEY=VALUE")));
            };
            let v = v.trim().to_string();
            let set = |slot: &mut Option<String>| *slot = Some(v.clone()).filter(|v| !v.is_empty());
            match k.trim() {
                "IP" => {
                    for ip in v.split(',').filter(|s| !s.trim().is_empty()) {
                        out.ips
                            .push(parse_ip(ip.trim()).map_err(|e| bad(format!("IP={v}: {e}")))?);
                    }
                }
                "K8S_POD_NAME" => set(&mut out.k8s_pod_name),
                "K8S_POD_NAMESPACE" => set(&mut out.k8s_pod_namespace),
                "NOMAD_ALLOC_ID" => set(&mut out.nomad_alloc_id),
                "NOMAD_GROUP_NAME" => set(&mut out.nomad_group_name),
                "NOMAD_JOB_ID" => set(&mut out.nomad_job_id),
                "NOMAD_NAMESPACE" => set(&mut out.nomad_namespace),
                "NOMAD_REGION" => set(&mut out.nomad_region),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// `A.B.C.D` or `A.B.C.D/P`: an IPv4 address and an optional prefix length.
pub fn parse_ip(s: &str) -> Result<(Ipv4Addr, Option<u8>), String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address (weft gives IPv4 only)"))?;
    let prefix = match p {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if (1..=32).contains(&n) => Some(n),
            _ => return Err(format!("{s:?} has a prefix length that is not 1..32")),
        },
    };
    Ok((addr, prefix))
}

/// The environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// The verb.
    pub command: Command,
    /// CNI_CONTAINERID (ADD, DEL, CHECK).
    pub container_id: String,
    /// CNI_NETNS (ADD, CHECK; DEL may come without it).
    pub netns: Option<String>,
    /// CNI_IFNAME (ADD, DEL, CHECK).
    pub ifname: String,
    /// CNI_ARGS.
    pub args: Args,
}

/// Longest container id or interface name accepted.
const MAX_ID: usize = 256;

impl Env {
    /// Reads the environment through `var`; what the verb needs must be there (code 4).
    pub fn parse(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let command = match var("CNI_COMMAND") {
            Some(c) => Command::parse(&c)?,
            None => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "CNI_COMMAND is not set",
                    "weft acts as a CNI plugin only when a runtime sets CNI_COMMAND",
                ))
            }
        };
        let needs_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let required = |name: &str| -> Result<String, CniError> {
            match var(name).filter(|v| !v.is_empty()) {
                Some(v) if v.len() <= MAX_ID && !v.contains(char::is_control) => Ok(v),
                Some(_) => Err(CniError::new(
                    code::INVALID_ENV,
                    format!("invalid {name}"),
                    format!("{name} is longer than {MAX_ID} bytes or holds control characters"),
                )),
                None if needs_container => Err(CniError::new(
                    code::INVALID_ENV,
                    format!("{name} is not set"),
                    format!("{:?} needs {name}", command),
                )),
                None => Ok(String::new()),
            }
        };
        let container_id = required("CNI_CONTAINERID")?;
        let ifname = required("CNI_IFNAME")?;
        let netns = var("CNI_NETNS").filter(|v| !v.is_empty());
        if netns.is_none() && matches!(command, Command::Add | Command::Check) {
            return Err(CniError::new(
                code::INVALID_ENV,
                "CNI_NETNS is not set",
                format!("{command:?} needs the container's network namespace in CNI_NETNS"),
            ));
        }
        let args = Args::parse(&var("CNI_ARGS").unwrap_or_default())?;
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::parse(|k| m.get(k).cloned())
    }

    #[test]
    fn nomad_args_as_go_cni_sends_them() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/var/run/netns/abc"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;NOMAD_REGION=global;NOMAD_NAMESPACE=default;NOMAD_JOB_ID=web;NOMAD_GROUP_NAME=frontend;NOMAD_ALLOC_ID=0b6e3ea2-1c47-4d5a-9e0c-3c6f1b0b9d11",
            ),
        ])
        .unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.args.nomad_group_name.as_deref(), Some("frontend"));
        assert_eq!(e.args.nomad_job_id.as_deref(), Some("web"));
        assert_eq!(e.args.nomad_region.as_deref(), Some("global"));
        assert!(e.args.nomad_alloc_id.unwrap().starts_with("0b6e3ea2"));
    }

    #[test]
    fn ip_arg_with_and_without_prefix() {
        let a = Args::parse("IP=10.32.5.5,10.40.0.1/24;K8S_POD_NAME=web-0").unwrap();
        assert_eq!(
            a.ips,
            vec![
                ("10.32.5.5".parse().unwrap(), None),
                ("10.40.0.1".parse().unwrap(), Some(24))
            ]
        );
        assert_eq!(a.k8s_pod_name.as_deref(), Some("web-0"));
        assert_eq!(
            Args::parse("IP=fe80::1").unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(
            Args::parse("IP=10.0.0.1/33").unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(Args::parse("novalue").unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn what_each_verb_needs() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "x"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_NETNS"));
        // DEL without a namespace (it is gone) is fine.
        let d = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "x"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(d.netns, None);
        // STATUS and GC need nothing.
        assert_eq!(
            env(&[("CNI_COMMAND", "STATUS")]).unwrap().command,
            Command::Status
        );
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap().command, Command::Gc);
        assert_eq!(
            env(&[("CNI_COMMAND", "BOGUS")]).unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(env(&[]).unwrap_err().code, code::INVALID_ENV);
    }
}
