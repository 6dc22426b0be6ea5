//! `weft status` and `weft report`: the router's state as text (laid out like Weave's) or JSON.

use std::fmt::Write;

use anyhow::Result;
use weft_api::Report;

use super::{block_on, client};
use crate::cli::StatusSection;

/// `weft report`.
pub fn report() -> Result<()> {
    let report: Report = block_on(client().get("/report"))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `weft status [SECTION]`.
pub fn status(section: Option<StatusSection>) -> Result<()> {
    let report: Report = block_on(client().get("/report"))?;
    let text = match section {
        None => render_overview(&report),
        Some(StatusSection::Connections) => render_connections(&report),
        Some(StatusSection::Peers) => render_peers(&report),
        Some(StatusSection::Targets) => render_targets(&report),
        Some(StatusSection::Ipam) => match &report.ipam {
            Some(_) => render_ipam(&report),
            None => anyhow::bail!("IPAM is not available in this router"),
        },
        Some(StatusSection::Dns) => match &report.dns {
            Some(_) => render_dns(&report),
            None => anyhow::bail!("DNS is not running in this router (launched with --no-dns?)"),
        },
        Some(StatusSection::Services) => render_services(&report),
    };
    print!("{text}");
    Ok(())
}

/// `weft status services`: a header like the overview's, then the table of services.
fn render_services(r: &Report) -> String {
    let mut out = String::new();
    line(&mut out, "Service", "services");
    line(&mut out, "Services", r.services.len());
    let tasks: usize = r.services.iter().map(|s| s.tasks.len()).sum();
    let healthy: usize = r
        .services
        .iter()
        .map(|s| s.tasks.iter().filter(|t| t.healthy).count())
        .sum();
    line(&mut out, "Tasks", format!("{tasks} ({healthy} healthy)"));
    out.push('\n');
    out.push_str(&super::services::render_table(&r.services));
    out
}

/// One `Label: value` line with the label right-aligned in a 15-character column.
fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:>15}: {value}");
}

/// A blank line, then the lines of one service of the overview.
fn section(out: &mut String, service: &str, lines: &[(&str, &dyn std::fmt::Display)]) {
    out.push('\n');
    line(out, "Service", service);
    for (label, value) in lines {
        line(out, label, value);
    }
}

/// The overview `weft status` prints.
pub fn render_overview(r: &Report) -> String {
    let mut out = String::new();
    let rt = &r.router;
    line(&mut out, "Version", &r.version);
    out.push('\n');
    line(&mut out, "Service", "router");
    line(
        &mut out,
        "Protocol",
        format!(
            "weft {}..{}",
            rt.protocol_min_version, rt.protocol_max_version
        ),
    );
    line(&mut out, "Name", format!("{}({})", rt.name, rt.nickname));
    line(
        &mut out,
        "Encryption",
        if rt.encryption { "enabled" } else { "disabled" },
    );
    line(
        &mut out,
        "PeerDiscovery",
        if rt.peer_discovery {
            "enabled"
        } else {
            "disabled"
        },
    );
    line(&mut out, "Targets", rt.targets.len());
    let established = rt
        .connections
        .iter()
        .filter(|c| c.state == "established")
        .count();
    let failed = rt
        .connections
        .iter()
        .filter(|c| c.state == "failed")
        .count();
    let mut conns = format!("{} ({} established", rt.connections.len(), established);
    if failed > 0 {
        let _ = write!(conns, ", {failed} failed");
    }
    conns.push(')');
    line(&mut out, "Connections", conns);
    let peer_edges: usize = rt
        .peers
        .iter()
        .map(|p| p.connections.iter().filter(|c| c.established).count())
        .sum();
    line(
        &mut out,
        "Peers",
        format!(
            "{} (with {} established connections)",
            rt.peers.len(),
            peer_edges
        ),
    );
    line(
        &mut out,
        "TrustedSubnets",
        if rt.trusted_subnets.is_empty() {
            "none".to_string()
        } else {
            rt.trusted_subnets.join(",")
        },
    );
    if let Some(ipam) = &r.ipam {
        section(
            &mut out,
            "ipam",
            &[
                ("Status", &ipam.status),
                ("Range", &ipam.range),
                ("DefaultSubnet", &ipam.default_subnet),
            ],
        );
    }
    if let Some(dns) = &r.dns {
        section(
            &mut out,
            "dns",
            &[
                ("Domain", &dns.domain),
                ("Upstream", &dns.upstream.join(", ")),
                ("TTL", &dns.ttl),
                ("Entries", &dns.entries.len()),
            ],
        );
    }
    if let Some(d) = &r.docker {
        section(
            &mut out,
            "docker",
            &[
                ("Docker", &d.docker_socket),
                ("Plugin", &d.plugin_socket),
                ("Proxy", &d.proxy_socket),
                ("Networks", &d.networks),
                ("Endpoints", &d.endpoints),
            ],
        );
    }
    if !r.services.is_empty() {
        section(&mut out, "services", &[("Services", &r.services.len())]);
    }
    out
}

/// `weft status connections`:
/// `-> ADDR  STATE  [encrypted ]PATH NAME(NICK) mtu=N pmtu=N cipher=C`.
pub fn render_connections(r: &Report) -> String {
    let mut out = String::new();
    for c in &r.router.connections {
        let dir = if c.outbound { "->" } else { "<-" };
        let path = if c.encrypted {
            format!("encrypted {}", c.path)
        } else {
            c.path.clone()
        };
        let mut s = format!("{dir} {:<21} {:<11} {:<7}", c.address, c.state, path);
        if !c.peer.is_empty() {
            let _ = write!(s, " {}", c.peer);
        }
        if let Some(mtu) = c.mtu {
            let _ = write!(s, " mtu={mtu}");
        }
        if let Some(pmtu) = c.pmtu {
            let _ = write!(s, " pmtu={pmtu}");
        }
        if let Some(cipher) = &c.cipher {
            let _ = write!(s, " cipher={cipher}");
        }
        if !c.info.is_empty() {
            let _ = write!(s, " {}", c.info);
        }
        let _ = writeln!(out, "{}", s.trim_end());
    }
    out
}

/// `weft status peers`: every peer and its connections.
pub fn render_peers(r: &Report) -> String {
    let mut out = String::new();
    for p in &r.router.peers {
        let _ = writeln!(out, "{}({})", p.name, p.nickname);
        for c in &p.connections {
            let dir = if c.outbound { "->" } else { "<-" };
            let state = if c.established {
                "established"
            } else {
                "pending"
            };
            let _ = writeln!(
                out,
                "   {dir} {:<21} {}({}) {state}",
                c.address, c.name, c.nickname
            );
        }
    }
    out
}

/// `weft status targets`: one address per line.
pub fn render_targets(r: &Report) -> String {
    r.router
        .targets
        .iter()
        .map(|t| format!("{}\n", t.address))
        .collect()
}

/// `weft status ipam`: each peer's share of the range.
pub fn render_ipam(r: &Report) -> String {
    let mut out = String::new();
    let Some(ipam) = &r.ipam else { return out };
    let _ = writeln!(out, "Status: {}", ipam.status);
    let total: u64 = ipam.entries.iter().map(|e| e.size).sum::<u64>().max(1);
    for e in &ipam.entries {
        let pct = e.size as f64 * 100.0 / total as f64;
        let reach = if e.reachable { "" } else { " - unreachable!" };
        let _ = writeln!(
            out,
            "{}({:<12}) {:>8} IPs ({:>5.1}% of total) ({} available){reach}",
            e.peer, e.nickname, e.size, pct, e.free
        );
    }
    out
}

/// `weft status dns`: one record per line.
pub fn render_dns(r: &Report) -> String {
    let mut out = String::new();
    let Some(dns) = &r.dns else { return out };
    for e in &dns.entries {
        let _ = writeln!(
            out,
            "{:<20} {:<16} {:<14} {}",
            e.hostname, e.address, e.container, e.origin
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::{ConnectionReport, RouterReport};

    #[test]
    fn overview_aligns_labels_in_15_columns() {
        let r = Report {
            version: "0.1.0".into(),
            router: RouterReport {
                name: "aa:bb".into(),
                nickname: "h1".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let text = render_overview(&r);
        assert!(text.contains("        Service: router\n"), "{text}");
        assert!(text.contains("           Name: aa:bb(h1)\n"), "{text}");
        assert!(text.contains(" TrustedSubnets: none\n"), "{text}");
        assert!(
            text.contains("    Connections: 0 (0 established)\n"),
            "{text}"
        );
    }

    #[test]
    fn connection_line_layout() {
        let r = Report {
            router: RouterReport {
                connections: vec![ConnectionReport {
                    address: "192.168.1.2:6783".into(),
                    outbound: true,
                    state: "established".into(),
                    path: "fastdp".into(),
                    peer: "aa:bb(h2)".into(),
                    mtu: Some(1376),
                    pmtu: Some(1426),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            render_connections(&r),
            "-> 192.168.1.2:6783      established fastdp  aa:bb(h2) mtu=1376 pmtu=1426\n"
        );
        let mut sealed = r.clone();
        let c = &mut sealed.router.connections[0];
        c.path = "sleeve".into();
        c.encrypted = true;
        c.cipher = Some("aes-256-gcm".into());
        c.mtu = Some(1118);
        c.pmtu = Some(1216);
        assert_eq!(
            render_connections(&sealed),
            "-> 192.168.1.2:6783      established encrypted sleeve aa:bb(h2) mtu=1118 pmtu=1216 cipher=aes-256-gcm\n"
        );
    }
}
