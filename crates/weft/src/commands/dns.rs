//! `weft dns-add`, `dns-remove`, `dns-lookup`, `dns-args`: names in weft's DNS.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use weft_api::{DnsEditRequest, DnsEditResponse, Report};

use super::{block_on, client};
use crate::cli::DnsEditArgs;

/// Splits `[IP...] [CONTAINER]` into addresses and at most one container.
fn edit_request(args: &DnsEditArgs, verb: &str) -> Result<DnsEditRequest> {
    let mut ips = Vec::new();
    let mut container: Option<String> = None;
    for w in &args.args {
        let ip_part = w.split('/').next().unwrap_or_default();
        if ip_part.parse::<Ipv4Addr>().is_ok() {
            ips.push(w.clone());
        } else if let Some(c) = &container {
            bail!(
                "{verb}: {c:?} and {w:?} both look like containers; give at most one container \
                 (usage: weft {verb} [IP...] CONTAINER [-h FQDN] | weft {verb} IP... -h FQDN)"
            );
        } else {
            container = Some(w.clone());
        }
    }
    if container.is_none() && args.fqdn.is_none() {
        bail!(
            "{verb}: no container and no -h FQDN given \
             (usage: weft {verb} [IP...] CONTAINER [-h FQDN] | weft {verb} IP... -h FQDN)"
        );
    }
    if container.is_none() && ips.is_empty() && verb == "dns-add" {
        bail!(
            "dns-add: no address given for {}; usage: weft dns-add IP... -h FQDN",
            args.fqdn.as_deref().unwrap_or("?")
        );
    }
    Ok(DnsEditRequest {
        container,
        ips,
        fqdn: args.fqdn.clone(),
    })
}

/// `weft dns-add`.
pub fn add(args: DnsEditArgs) -> Result<()> {
    let req = edit_request(&args, "dns-add")?;
    let _: DnsEditResponse = block_on(client().post("/dns/add", &req))?;
    Ok(())
}

/// `weft dns-remove`.
pub fn remove(args: DnsEditArgs) -> Result<()> {
    let req = edit_request(&args, "dns-remove")?;
    let _: DnsEditResponse = block_on(client().post("/dns/remove", &req))?;
    Ok(())
}

/// `weft dns-lookup NAME`: the addresses, one per line; fails if there are none.
pub fn lookup(name: String) -> Result<()> {
    let path = format!("/dns/lookup?name={}", percent_encode(&name));
    let addrs: Vec<String> = block_on(client().get(&path))?;
    if addrs.is_empty() {
        bail!("{name}: no such name in weft's DNS (`weft status dns` lists the names)");
    }
    for a in addrs {
        println!("{a}");
    }
    Ok(())
}

/// `weft dns-args`: the docker run flags that point a container at weft's DNS.
pub fn args() -> Result<()> {
    let report: Report = block_on(client().get("/report"))?;
    let Some(dns) = report.dns else {
        bail!("DNS is off in this router (it was launched with --no-dns); relaunch it without --no-dns");
    };
    println!("{}", weft_dns::docker_dns_args(&dns.domain));
    Ok(())
}

/// Encodes a query value: unreserved characters stay, everything else becomes %XX.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str], fqdn: Option<&str>) -> DnsEditArgs {
        DnsEditArgs {
            args: words.iter().map(|s| s.to_string()).collect(),
            fqdn: fqdn.map(str::to_string),
            help: None,
        }
    }

    #[test]
    fn forms_of_dns_add() {
        let r = edit_request(&args(&["10.32.0.5", "c1"], None), "dns-add").unwrap();
        assert_eq!(r.container.as_deref(), Some("c1"));
        assert_eq!(r.ips, ["10.32.0.5"]);
        let r = edit_request(
            &args(&["10.32.0.5", "10.32.0.6"], Some("x.weft.local")),
            "dns-add",
        )
        .unwrap();
        assert_eq!(r.container, None);
        assert_eq!(r.ips.len(), 2);
        assert!(edit_request(&args(&["10.32.0.5"], None), "dns-add").is_err());
        assert!(edit_request(&args(&["a", "b"], None), "dns-add").is_err());
        assert!(edit_request(&args(&[], Some("x.weft.local")), "dns-add").is_err());
        assert!(edit_request(&args(&[], Some("x.weft.local")), "dns-remove").is_ok());
    }

    #[test]
    fn lookup_names_are_encoded() {
        assert_eq!(percent_encode("c1.weft.local"), "c1.weft.local");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }
}
