//! What an ADD asks the router for (addresses, DNS name), and the result made from what
//! the router gave.

use std::net::Ipv4Addr;

use weft_api::{CniAddRequest, CniAttachment, CniKey};

use crate::conf::NetConf;
use crate::env::Env;
use crate::result::{CniResult, Dns, Interface, IpConfig, Route};

/// Which attachment `env` and `conf` name: the network, CNI_CONTAINERID and CNI_IFNAME.
pub fn attachment_key(env: &Env, conf: &NetConf) -> CniKey {
    CniKey {
        network: conf.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    }
}

/// The request an ADD makes of the router for `env` and `conf`: fixed addresses from the
/// `ips` capability (or `args.cni.ips`), else from CNI_ARGS `IP=`; the DNS name of
/// [`dns_name`].
pub fn add_request(env: &Env, conf: &NetConf) -> CniAddRequest {
    let ips = if conf.ips.is_empty() {
        &env.args.ips
    } else {
        &conf.ips
    };
    CniAddRequest {
        key: attachment_key(env, conf),
        netns: env.netns.clone().unwrap_or_default(),
        subnet: conf.subnet.map(|s| s.to_string()),
        ips: ips.iter().map(|(a, p)| fmt_ip(*a, *p)).collect(),
        hostname: Some(dns_name(env)),
    }
}

fn fmt_ip(a: Ipv4Addr, p: Option<u8>) -> String {
    match p {
        Some(p) => format!("{a}/{p}"),
        None => a.to_string(),
    }
}

/// The container's DNS name: K8S_POD_NAME (podman sets it to the container's name), else
/// Nomad's group and the alloc id's first 8 characters, else the container id's first 12.
/// Made a valid DNS label (lower case letters, digits and `-`, at most 63).
pub fn dns_name(env: &Env) -> String {
    let a = &env.args;
    let raw = if let Some(p) = &a.k8s_pod_name {
        p.clone()
    } else if let Some(alloc) = &a.nomad_alloc_id {
        let short: String = alloc.chars().take(8).collect();
        match &a.nomad_group_name {
            Some(g) => format!("{g}-{short}"),
            None => short,
        }
    } else {
        env.container_id.chars().take(12).collect()
    };
    label(&raw).unwrap_or_else(|| {
        label(&env.container_id.chars().take(12).collect::<String>())
            .unwrap_or_else(|| "cni".into())
    })
}

/// `s` as a DNS label, or none when nothing of it is usable.
fn label(s: &str) -> Option<String> {
    let mut out: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while out.ends_with('-') {
        out.pop();
    }
    let out = out.trim_start_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// The result of an ADD the router answered with `att`: the host veth, then the
/// container's interface with its addresses and a default route when there is a gateway.
pub fn add_result(att: &CniAttachment) -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: att.host_ifname.clone(),
                mac: att.host_mac.clone(),
                sandbox: String::new(),
            },
            Interface {
                name: att.key.ifname.clone(),
                mac: att.mac.clone(),
                sandbox: att.netns.clone(),
            },
        ],
        ips: att
            .addrs
            .iter()
            .map(|a| IpConfig {
                address: a.clone(),
                gateway: att.gateway.clone(),
                interface: Some(1),
            })
            .collect(),
        routes: att
            .gateway
            .iter()
            .map(|g| Route {
                dst: "0.0.0.0/0".into(),
                gw: Some(g.clone()),
            })
            .collect(),
        dns: Dns {
            nameservers: att.dns.nameservers.clone(),
            domain: att.dns.domain.clone(),
            search: att.dns.search.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Args, Command};

    fn env(args: Args) -> Env {
        Env {
            command: Command::Add,
            container_id: "3f2a9c8d7e6b5a4f3e2d1c0b".into(),
            netns: Some("/run/netns/x".into()),
            ifname: "eth0".into(),
            args,
        }
    }

    #[test]
    fn names_in_order_of_preference() {
        let pod = Args {
            k8s_pod_name: Some("Web_Server.1".into()),
            nomad_alloc_id: Some("0b6e3ea2-1c47".into()),
            ..Args::default()
        };
        assert_eq!(dns_name(&env(pod)), "web-server-1");
        let nomad = Args {
            nomad_alloc_id: Some("0b6e3ea2-1c47".into()),
            nomad_group_name: Some("frontend".into()),
            ..Args::default()
        };
        assert_eq!(dns_name(&env(nomad)), "frontend-0b6e3ea2");
        assert_eq!(dns_name(&env(Args::default())), "3f2a9c8d7e6b");
        let junk = Args {
            k8s_pod_name: Some("___".into()),
            ..Args::default()
        };
        assert_eq!(dns_name(&env(junk)), "3f2a9c8d7e6b");
    }

    #[test]
    fn capability_ips_win_over_cni_args() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"t","type":"weft","subnet":"10.40.0.0/24",
                 "runtimeConfig":{"ips":["10.40.0.9/24"]}}"#,
        )
        .unwrap();
        let args = Args::parse("IP=10.40.0.10").unwrap();
        let p = add_request(&env(args.clone()), &conf);
        assert_eq!(p.ips, vec!["10.40.0.9/24"]);
        assert_eq!(p.subnet.as_deref(), Some("10.40.0.0/24"));
        let plain = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"t","type":"weft"}"#).unwrap();
        assert_eq!(add_request(&env(args), &plain).ips, vec!["10.40.0.10"]);
    }

    #[test]
    fn result_has_a_sandbox_interface_with_the_address() {
        let att = CniAttachment {
            key: CniKey {
                ifname: "eth0".into(),
                ..CniKey::default()
            },
            netns: "/run/netns/x".into(),
            host_ifname: "vethwe1".into(),
            addrs: vec!["10.32.0.5/12".into()],
            gateway: Some("10.32.0.1".into()),
            ..CniAttachment::default()
        };
        let r = add_result(&att);
        let (i, iface) = r.first_sandbox().unwrap();
        assert_eq!(iface.sandbox, "/run/netns/x");
        assert_eq!(r.addresses_of(i), vec!["10.32.0.5/12"]);
        assert_eq!(r.routes[0].gw.as_deref(), Some("10.32.0.1"));
    }
}
