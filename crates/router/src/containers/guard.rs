//! Keeps the bridge's anti-spoofing guard (`weft_firewall::guard`) in step with the
//! containers weft attaches: a port is guarded with its addresses before the container's
//! interface exists, its MAC is added once known, and all of it goes on detach.

use ipnet::Ipv4Net;
use weft_firewall::{CommandRunner, Nftables, PortGuard};

use crate::registry::Registry;

/// The guard entry of a container interface.
pub fn port_guard(
    ns_inode: u64,
    ifname: &str,
    mac: Option<[u8; 6]>,
    addrs: &[Ipv4Net],
) -> PortGuard {
    PortGuard {
        port: weft_datapath::attach::host_veth_name_for(ns_inode, ifname),
        mac,
        addrs: addrs.iter().map(Ipv4Net::addr).collect(),
    }
}

/// The guard entry of a Docker endpoint's port (its MAC is weft's from the start).
pub fn endpoint_guard(port: &str, mac: [u8; 6], addr: Option<Ipv4Net>) -> PortGuard {
    PortGuard {
        port: port.to_string(),
        mac: Some(mac),
        addrs: addr.iter().map(Ipv4Net::addr).collect(),
    }
}

async fn run(
    what: &'static str,
    f: impl FnOnce(&mut Nftables<CommandRunner>) -> Result<(), weft_firewall::FirewallError>
        + Send
        + 'static,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || f(&mut Nftables::new(CommandRunner::new())))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot {what} the anti-spoofing rules: {e}"))
}

/// Lets the port send from `g`'s addresses (and MAC), guarding it.
pub async fn allow(g: PortGuard) -> Result<(), String> {
    run("update", move |fw| fw.guard_allow(&g)).await
}

/// Takes back `g`'s addresses; with `unguard`, the port and its MAC too.
pub async fn revoke(g: PortGuard, unguard: bool) {
    let port = g.port.clone();
    if let Err(e) = run("update", move |fw| fw.guard_revoke(&g, unguard)).await {
        tracing::warn!(port = %port, "{e}");
    }
}

/// Makes the guard hold exactly the registry's containers (at start-up).
pub async fn sync(registry: &Registry) -> Result<(), String> {
    let all: Vec<PortGuard> = registry
        .iter()
        .map(|(_, e)| {
            let addrs: Vec<Ipv4Net> = e.addrs.iter().filter_map(|a| a.parse().ok()).collect();
            port_guard(
                e.ns_inode,
                &e.ifname,
                crate::datapath::wire::parse_mac(&e.mac),
                &addrs,
            )
        })
        .collect();
    run("set up", move |fw| fw.guard_sync(&all)).await
}
