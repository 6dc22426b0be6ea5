//! Keeps the bridge's anti-spoofing guard (`weft_firewall::guard`) in step with the
//! containers weft attaches: a port is guarded with its addresses before the container's
//! interface exists, its MAC is added once known, and all of it goes on detach.

use ipnet::Ipv4Net;
use std::sync::Mutex;

use weft_firewall::{CommandRunner, Nftables, PortGuard, Runner};

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

/// Updates waiting for `nft`, and whether a blocking task is running them. The bridge
/// table is one per host: concurrent attaches queue their scripts here and one `nft`
/// transaction carries all that queued meanwhile (an `nft` run costs a process and a read
/// of the table; 50 parallel attaches spent about half their time in them).
struct Queue {
    pending: Vec<Update>,
    flushing: bool,
}

type Update = (String, tokio::sync::oneshot::Sender<Result<(), String>>);

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    pending: Vec::new(),
    flushing: false,
});

fn queue() -> std::sync::MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `script` in the next batch and waits for its outcome.
async fn batched(script: String) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let lead = {
        let mut q = queue();
        q.pending.push((script, tx));
        !std::mem::replace(&mut q.flushing, true)
    };
    if lead {
        tokio::task::spawn_blocking(flush);
    }
    rx.await
        .map_err(|_| "the firewall update was dropped".to_string())?
        .map_err(|e| format!("cannot update the anti-spoofing rules: {e}"))
}

/// Runs batches until the queue is empty. A batch is one transaction: when it fails, each
/// of its updates runs alone, so only the bad one fails.
fn flush() {
    loop {
        let batch = {
            let mut q = queue();
            if q.pending.is_empty() {
                q.flushing = false;
                return;
            }
            std::mem::take(&mut q.pending)
        };
        let mut nft = CommandRunner::new();
        let all: String = batch.iter().map(|(s, _)| s.as_str()).collect();
        if batch.len() > 1 && nft.run(&all).is_ok() {
            for (_, tx) in batch {
                let _ = tx.send(Ok(()));
            }
            continue;
        }
        for (script, tx) in batch {
            let _ = tx.send(nft.run(&script).map_err(|e| e.to_string()));
        }
    }
}

/// Lets the port send from `g`'s addresses (and MAC), guarding it.
pub async fn allow(g: PortGuard) -> Result<(), String> {
    batched(weft_firewall::guard::render_allow(&g)).await
}

/// Takes back `g`'s addresses; with `unguard`, the port and its MAC too.
pub async fn revoke(g: PortGuard, unguard: bool) {
    if let Err(e) = batched(weft_firewall::guard::render_revoke(&g, unguard)).await {
        tracing::warn!(port = %g.port, "{e}");
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
