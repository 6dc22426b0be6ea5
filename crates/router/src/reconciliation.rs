//! Reconciliation at start-up, in order, before the gate (`intents::Gate`) lets the API's
//! requests that change state through (the Docker plugin does not wait: dockerd may hold
//! the answers start-up waits for until its plugin calls return; each step below is safe
//! against the plugin's calls, see `owners` and `datapath::expose::reconcile`):
//! 1. attaches and detaches a kill -9 cut short are undone or finished
//!    (`containers::reconcile`), then the CNI ADDs cut short are undone (`cni::Cni::recover`);
//! 2. the bridge and IPAM agree with the record of exposed addresses again, which undoes a
//!    cut-short expose and finishes a cut-short hide (`datapath::expose::reconcile`);
//! 3. containers whose veth went while the router was down are detached, and the tasks of
//!    containers no longer attached leave their services;
//! 4. every veth of weft's on the bridge belongs to an owner, or goes (`owners::sweep_ports`);
//! 5. every address IPAM holds here belongs to an owner, or is released
//!    (`owners::audit_addresses`).
//!
//! The Docker plugin reconciles its own state with dockerd's before this runs
//! (`docker::events::reconcile`), so its endpoints and allocations are current here.

use std::sync::Arc;

use crate::cni::Cni;
use crate::containers::Containers;
use crate::docker::DockerHandle;
use crate::intents::{GateOpener, Op};
use crate::owners::OwnerRegistry;

/// Runs the steps (a step that fails is logged; the next ones still run), then opens the gate.
pub async fn run(
    c: Arc<Containers>,
    cni: Arc<Cni>,
    docker: Option<DockerHandle>,
    owners: OwnerRegistry,
    opener: GateOpener,
) {
    let last_run = c.intents.pending();
    crate::containers::reconcile::run(&c, &last_run).await;
    cni.recover().await;

    let of_this_run = || {
        c.intents.pending().iter().any(|(n, i)| {
            matches!(i.op, Op::Expose | Op::Hide) && !last_run.iter().any(|(m, _)| m == n)
        })
    };
    match crate::datapath::expose::reconcile(&c.datapath, &c.ipam, of_this_run).await {
        Ok(()) => {
            for (n, i) in &last_run {
                if matches!(i.op, Op::Expose | Op::Hide) {
                    tracing::info!(op = ?i.op, "finished an operation a crash cut short");
                    c.intents.end(*n);
                }
            }
        }
        Err(e) => tracing::warn!("cannot reconcile the exposed addresses: {e}"),
    }

    crate::containers::reconcile::forget_vanished(&c).await;
    let mut alive: Vec<(String, Vec<std::net::Ipv4Addr>)> = c
        .registry
        .lock()
        .await
        .iter()
        .map(|(id, e)| {
            let addrs = e
                .addrs
                .iter()
                .filter_map(|a| a.parse::<ipnet::Ipv4Net>().ok());
            (id.clone(), addrs.map(|n| n.addr()).collect())
        })
        .collect();
    // Docker's containers are not in the registry; Docker's own reconciliation (done by
    // now) has taken out those that stopped while the router was down.
    if let Some(d) = &docker {
        alive.extend(d.containers_on_weft().await);
    }
    c.services.forget_gone(alive).await;

    if let Err(e) = crate::owners::sweep_ports(c.datapath.bridge(), &owners).await {
        tracing::warn!("cannot sweep the bridge's ports: {e}");
    }
    match crate::owners::audit_addresses(&c.ipam, &owners).await {
        Ok(released) => tracing::info!(
            owners = ?owners.kinds(),
            released = released.len(),
            "IPAM owner audit done"
        ),
        Err(e) => tracing::warn!("cannot audit IPAM's owners: {e}"),
    }
    opener.open();
    tracing::info!("start-up reconciliation done");
}
