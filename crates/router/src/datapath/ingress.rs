//! The host's addresses for services: one on the bridge in every subnet that has a
//! service, so the host reaches VIPs and its tasks' health checks, and published-port
//! connections are masqueraded from it as they leave through the bridge (the task then
//! answers this host, wherever it runs). IPv4 forwarding is on while they exist
//! (published ports reached on the host's addresses are forwarded), `route_localnet`
//! while a service publishes a port (127.0.0.1 reaches it). Built on expose's pieces:
//! the bridge address, the forwarding record, the firewall's view of the bridge.
//!
//! IPAM is the record: the addresses `weft:service-ingress` holds. The services core's
//! definitions say which subnets are wanted; [`Keeper`] makes the bridge and IPAM agree
//! with them after every change and at start (so a crash in between is repaired).

use std::collections::BTreeSet;

use ipnet::Ipv4Net;
use tokio::sync::watch;

use super::expose::{apply_firewall, enable_forwarding, restore_forwarding, set_localnet};
use super::DatapathHandle;
use crate::ipam::IpamHandle;
use crate::owners::{Claim, Owned, Owner};

/// The IPAM owner of the host's service addresses.
pub const INGRESS_OWNER: &str = "weft:service-ingress";

/// What the host should have: the subnets, and whether a port is published.
pub type Wanted = (BTreeSet<Ipv4Net>, bool);

/// Keeps the host's service addresses as wanted, in its own task.
#[derive(Clone)]
pub struct Keeper {
    tx: watch::Sender<Option<Wanted>>,
}

impl Keeper {
    /// Starts the task on the current runtime.
    pub fn start(dp: DatapathHandle, ipam: IpamHandle) -> Keeper {
        let (tx, mut rx) = watch::channel(None::<Wanted>);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(wanted) = rx.borrow_and_update().clone() else {
                    continue;
                };
                if let Err(e) = sync(&dp, &ipam, &wanted).await {
                    tracing::warn!("the host's service addresses: {e}");
                }
            }
        });
        Keeper { tx }
    }

    /// The host should have `wanted` (the latest call wins).
    pub fn want(&self, wanted: Wanted) {
        self.tx.send_if_modified(|w| {
            let changed = w.as_ref() != Some(&wanted);
            *w = Some(wanted);
            changed
        });
    }
}

/// Makes the bridge and IPAM hold one address per wanted subnet, and nothing else of
/// [`INGRESS_OWNER`]'s.
async fn sync(dp: &DatapathHandle, ipam: &IpamHandle, wanted: &Wanted) -> Result<(), String> {
    let (subnets, published) = wanted;
    let held = ipam
        .lookup(INGRESS_OWNER)
        .await
        .map_err(|e| e.to_string())?;
    let mut keep = Vec::new();
    for s in subnets {
        match held.iter().find(|h| s.contains(&h.addr())) {
            Some(h) => keep.push(*h),
            None => {
                let spec = weft_ipam::AddrSpec::Subnet(crate::ipam::net_to_cidr(*s));
                let net = ipam
                    .allocate(INGRESS_OWNER, &spec)
                    .await
                    .map_err(|e| format!("no address in {s}: {e}"))?;
                keep.push(net);
            }
        }
    }
    let gone: Vec<Ipv4Net> = held
        .iter()
        .copied()
        .filter(|h| !keep.iter().any(|k| k.addr() == h.addr()))
        .collect();
    let bridge = dp.bridge().to_string();
    let state_dir = dp.inner.state_dir.clone();
    let (add, del, localnet) = (keep.clone(), gone.clone(), *published);
    let changed = tokio::task::spawn_blocking(move || -> Result<bool, String> {
        let mut changed = false;
        for n in &del {
            changed |= weft_datapath::hide(&bridge, *n).map_err(|e| e.to_string())?;
        }
        for n in &add {
            changed |= weft_datapath::expose(&bridge, *n).map_err(|e| e.to_string())?;
        }
        if !add.is_empty() {
            enable_forwarding(&state_dir)?;
        }
        set_localnet(&state_dir, localnet)?;
        if weft_datapath::expose::exposed(&bridge).is_ok_and(|left| left.is_empty()) {
            restore_forwarding(&state_dir)?;
        }
        Ok(changed)
    })
    .await
    .map_err(|e| e.to_string())??;
    for n in &gone {
        if let Err(e) = ipam.release(INGRESS_OWNER, Some(*n)).await {
            tracing::debug!(addr = %n, "release of a service address: {e}");
        }
    }
    if changed {
        tracing::info!(addrs = ?keep, removed = ?gone, "the host's service addresses changed");
        apply_firewall(dp).await;
    }
    Ok(())
}

/// The host's service addresses as a kind of IPAM owner: all of [`INGRESS_OWNER`]'s (the
/// [`Keeper`] takes back those no service wants).
pub struct IngressOwner;

impl Owner for IngressOwner {
    fn kind(&self) -> &'static str {
        "service-ingress"
    }

    fn owned(&self) -> futures::future::BoxFuture<'_, Owned> {
        Box::pin(async move {
            Owned {
                addrs: vec![Claim::all(INGRESS_OWNER)],
                ports: Vec::new(),
            }
        })
    }
}
