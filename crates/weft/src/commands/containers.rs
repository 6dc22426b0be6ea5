//! `weft attach`, `weft detach`, `weft ps`: containers on the overlay.

use std::path::PathBuf;

use anyhow::{bail, Result};
use weft_api::{AttachRequest, AttachResponse, ContainerReport, DetachRequest, DetachResponse};

use super::{block_on, client, is_addr_form};
use crate::cli::{AttachArgs, DetachArgs};

/// Where the container is, from the positional words and the flags.
#[derive(Debug)]
struct Target {
    netns: String,
    container: Option<String>,
    addrs: Vec<String>,
}

fn target(args: &[String], netns: &Option<PathBuf>, pid: Option<u32>) -> Result<Target> {
    let mut addrs = args.to_vec();
    let netns = match (netns, pid) {
        (Some(p), _) => {
            let abs = std::path::absolute(p)
                .map_err(|e| anyhow::anyhow!("bad --netns {}: {e}", p.display()))?;
            abs.to_string_lossy().into_owned()
        }
        (None, Some(pid)) => format!("/proc/{pid}/ns/net"),
        (None, None) => {
            let Some(last) = addrs.pop().filter(|l| !is_addr_form(l)) else {
                bail!("no container given: name a container, --netns PATH or --pid PID");
            };
            if let Some(bad) = addrs.iter().find(|a| !is_addr_form(a)) {
                bail!(
                    "{bad:?} is not an address (net:default, net:CIDR, ip:CIDR or CIDR); \
                     name one container, last"
                );
            }
            // A Docker container by name or id: the router asks Docker where it is.
            return Ok(Target {
                netns: String::new(),
                container: Some(last),
                addrs,
            });
        }
    };
    if let Some(bad) = addrs.iter().find(|a| !is_addr_form(a)) {
        bail!(
            "{bad:?} is not an address (net:default, net:CIDR, ip:CIDR or CIDR); \
             with --netns/--pid no container name is given"
        );
    }
    Ok(Target {
        netns,
        container: None,
        addrs,
    })
}

/// `weft attach`.
pub fn attach(args: AttachArgs) -> Result<()> {
    let t = target(&args.args, &args.netns, args.pid)?;
    let req = AttachRequest {
        netns: t.netns,
        addrs: t.addrs,
        ifname: args.ifname,
        hostname: args.hostname,
        without_dns: args.without_dns,
        container: t.container,
        services: args.services,
    };
    let resp: AttachResponse = block_on(client().post("/attach", &req))?;
    for a in resp.addrs {
        println!("{a}");
    }
    Ok(())
}

/// `weft detach`.
pub fn detach(args: DetachArgs) -> Result<()> {
    let t = target(&args.args, &args.netns, args.pid)?;
    let req = DetachRequest {
        netns: t.netns,
        addrs: t.addrs,
        container: t.container,
    };
    let resp: DetachResponse = block_on(client().post("/detach", &req))?;
    for a in resp.removed {
        println!("{a}");
    }
    Ok(())
}

/// `weft ps [CONTAINER...]`: `ID MAC CIDR...` per attached container, Docker ids
/// shortened to 12 digits as `docker ps` shows them; filtered by id prefix or name.
pub fn ps(filter: Vec<String>) -> Result<()> {
    let list: Vec<ContainerReport> = block_on(client().get("/containers"))?;
    for c in list {
        if !filter.is_empty() && !filter.iter().any(|f| matches(&c, f)) {
            continue;
        }
        println!("{} {} {}", short_id(&c.id), c.mac, c.addrs.join(" "));
    }
    Ok(())
}

fn short_id(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

fn matches(c: &ContainerReport, f: &str) -> bool {
    (f.len() >= 4 && c.id.starts_with(f))
        || c.id == f
        || c.hostname
            .as_deref()
            .is_some_and(|h| h == f || h.split('.').next() == Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_flags_make_a_target() {
        let t = target(&["net:default".into()], &Some("/run/netns/x".into()), None).unwrap();
        assert_eq!(t.netns, "/run/netns/x");
        assert_eq!(t.addrs, vec!["net:default".to_string()]);
        let t = target(&[], &None, Some(42)).unwrap();
        assert_eq!(t.netns, "/proc/42/ns/net");
        assert!(target(&[], &None, None).is_err());
        let t = target(&["net:default".into(), "c1".into()], &None, None).unwrap();
        assert_eq!(t.container.as_deref(), Some("c1"));
        assert!(t.netns.is_empty());
        assert!(target(&["c0".into(), "c1".into()], &None, None).is_err());
        assert!(target(&["c1".into()], &Some("/x".into()), None).is_err());
    }
}
