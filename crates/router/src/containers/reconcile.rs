//! Crash safety of attach and detach. Each records its intent (`crate::intents`) before it
//! touches IPAM or the kernel, and clears it when done (success or undone failure). An
//! intent still there at start-up is an operation a kill -9 cut short: [`run`] finishes it
//! so that every address in the kernel belongs to an entry `weft ps` lists and no address
//! held by IPAM is left without an owner:
//! - an attach is undone down to what the registry lists for the container (the client saw
//!   it fail): the addresses IPAM gave it beyond those are released and taken off the
//!   interface; with no entry at all, the interface goes;
//! - a detach is carried through to the end (its first step may already have happened).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use weft_datapath::Netns;

use super::{Containers, ContainersError};
use crate::intents::{Intent, Op};

/// Finishes the attaches and detaches of `last_run` a crash cut short (see the module's
/// doc); expose and hide are `datapath::expose::reconcile`'s. Runs at start-up, in the
/// background: IPAM may need its peers before it answers.
pub async fn run(c: &Arc<Containers>, last_run: &[(u64, Intent)]) {
    for (n, intent) in last_run.iter().cloned() {
        let done = match intent.op {
            Op::Attach => undo_attach(c, &intent).await,
            Op::Detach => finish_detach(c, &intent).await,
            Op::Expose | Op::Hide => continue,
        };
        match done {
            Ok(()) => {
                tracing::info!(op = ?intent.op, container = %intent.id, "finished an operation a crash cut short");
                c.intents.end(n)
            }
            Err(e) => tracing::warn!(container = %intent.id, "cannot finish the operation: {e}"),
        }
    }
}

async fn undo_attach(parts: &Containers, intent: &Intent) -> Result<(), String> {
    let entry = parts.registry.lock().await.get(&intent.id).cloned();
    let keep: Vec<Ipv4Net> = entry
        .iter()
        .flat_map(|e| e.addrs.iter().filter_map(|a| a.parse().ok()))
        .collect();
    // IPAM may wait for its peers after a restart: give it time, within bounds.
    let mut owned = None;
    for attempt in 0..120u32 {
        match parts.ipam.lookup(&intent.id).await {
            Ok(v) => {
                owned = Some(v);
                break;
            }
            Err(e) if attempt == 119 => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let extra: Vec<Ipv4Net> = owned
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !keep.contains(a))
        .collect();
    let whole = entry.is_none();
    let (path, inode, ifname, remove) = (
        intent.netns.clone(),
        intent.ns_inode,
        intent.ifname.clone(),
        extra.clone(),
    );
    let kernel =
        tokio::task::spawn_blocking(move || undo_in_kernel(&path, inode, &ifname, &remove, whole))
            .await
            .map_err(|e| e.to_string())?;
    if let Err(e) = kernel {
        tracing::warn!(container = %intent.id, "undoing in the kernel: {e}");
    }
    for a in &extra {
        if let Err(e) = parts.ipam.release(&intent.id, Some(*a)).await {
            return Err(e.to_string());
        }
    }
    let mac = entry
        .as_ref()
        .and_then(|e| crate::datapath::wire::parse_mac(&e.mac));
    super::guard::revoke(
        super::guard::port_guard(inode, &intent.ifname, mac, &extra),
        whole,
    )
    .await;
    parts.dns.container_detached(&intent.id, &extra).await;
    tracing::info!(container = %intent.id, released = ?extra, "attach cut short by a crash undone");
    Ok(())
}

/// Takes `remove` off the container's interface (the interface itself with `whole`), or
/// deletes the host side of its veth when the namespace is gone.
fn undo_in_kernel(
    path: &str,
    inode: u64,
    ifname: &str,
    remove: &[Ipv4Net],
    whole: bool,
) -> Result<(), String> {
    let same_ns = Netns::open_path(Path::new(path))
        .ok()
        .filter(|ns| ns.inode() == inode);
    if let Some(ns) = &same_ns {
        if whole {
            let _ = weft_datapath::detach(ns, ifname, &[]);
        } else if !remove.is_empty() {
            weft_datapath::detach(ns, ifname, remove).map_err(|e| e.to_string())?;
        }
    }
    if whole {
        let host_veth = weft_datapath::attach::host_veth_name_for(inode, ifname);
        let mut h = weft_datapath::nl::Handle::current().map_err(|e| e.to_string())?;
        weft_datapath::link::delete_by_name(&mut h, &host_veth).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Detaches the registry's containers whose veth is gone from the host (their namespace
/// went while the router was down): `weft ps` lists only what is there, and their
/// addresses go back to IPAM.
pub async fn forget_vanished(c: &Containers) -> Vec<String> {
    let entries: Vec<(String, String)> = c
        .registry
        .lock()
        .await
        .iter()
        .map(|(id, e)| {
            (
                id.clone(),
                weft_datapath::attach::host_veth_name_for(e.ns_inode, &e.ifname),
            )
        })
        .collect();
    let names: Vec<String> = entries.iter().map(|(_, v)| v.clone()).collect();
    let present = tokio::task::spawn_blocking(move || -> Result<Vec<bool>, String> {
        let mut h = weft_datapath::nl::Handle::current().map_err(|e| e.to_string())?;
        names
            .iter()
            .map(|n| {
                weft_datapath::link::get(&mut h, n)
                    .map(|l| l.is_some())
                    .map_err(|e| e.to_string())
            })
            .collect()
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let present = match present {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot list the containers' veths: {e}");
            return Vec::new();
        }
    };
    let mut gone = Vec::new();
    for ((id, veth), there) in entries.into_iter().zip(present) {
        if there {
            continue;
        }
        let req = weft_api::DetachRequest {
            container: Some(id.clone()),
            netns: String::new(),
            addrs: Vec::new(),
        };
        match super::detach(c, req).await {
            Ok(r) => {
                tracing::info!(container = %id, %veth, removed = ?r.removed, "container gone while the router was down: detached");
                gone.push(id);
            }
            Err(e) => {
                tracing::warn!(container = %id, "cannot detach a container that is gone: {e}")
            }
        }
    }
    gone
}

async fn finish_detach(c: &Containers, intent: &Intent) -> Result<(), String> {
    let req = weft_api::DetachRequest {
        container: Some(intent.id.clone()),
        netns: String::new(),
        addrs: intent.addrs.clone(),
    };
    match super::detach(c, req).await {
        // Nothing left to detach: the cut-short detach had got that far.
        Ok(_) | Err(ContainersError::NotAttached(_) | ContainersError::NoneOfThese { .. }) => {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
