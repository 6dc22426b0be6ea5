//! Who owns what weft holds on this host: IPAM addresses and ports on weft's bridge. Each
//! kind of owner (attached containers, the host's exposed addresses, Docker endpoints; CNI
//! attachments and service VIPs later) implements [`Owner`] and is registered once at
//! start-up in an [`OwnerRegistry`]. Reconciliation at start then asks the registry, never
//! the kinds themselves:
//! - [`audit_addresses`]: an address IPAM holds for an owner no registered kind claims is
//!   released;
//! - [`sweep_ports`]: a veth of weft's (named `vethwe…`) on the bridge that no kind claims
//!   is deleted.
//!
//! Both read the kernel or IPAM first and the owners after: an operation records its owner
//! (an intent, a saved allocation) before it allocates or makes a veth, so whatever the
//! first read saw is claimed by the second unless it is really orphaned.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use ipnet::Ipv4Net;

use crate::ipam::{IpamHandle, IpamHandleError};

/// An IPAM owner's claim: one of its addresses, or all of them (an operation in flight,
/// whose addresses are not known yet).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    /// The IPAM owner.
    pub owner: String,
    /// The address, or `None` for every address of the owner.
    pub addr: Option<Ipv4Addr>,
}

impl Claim {
    /// One address of `owner`.
    pub fn addr(owner: &str, addr: Ipv4Addr) -> Claim {
        Claim {
            owner: owner.to_string(),
            addr: Some(addr),
        }
    }

    /// Every address of `owner`.
    pub fn all(owner: &str) -> Claim {
        Claim {
            owner: owner.to_string(),
            addr: None,
        }
    }
}

/// What one kind of owner holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// IPAM addresses.
    pub addrs: Vec<Claim>,
    /// Host-side interfaces on weft's bridge, by name.
    pub ports: Vec<String>,
}

/// One kind of owner of addresses and bridge ports.
pub trait Owner: Send + Sync {
    /// What it is, for the log ("containers", "expose", "docker", ...).
    fn kind(&self) -> &'static str;
    /// Everything it owns now, operations in flight included.
    fn owned(&self) -> BoxFuture<'_, Owned>;
}

/// A kind of owner that holds IPAM addresses only, no bridge ports (service VIPs, the raw
/// IPAM API's owners): it says what it claims, and is an [`Owner`] by that.
pub trait AddrOwner: Send + Sync {
    /// What it is, for the log.
    const KIND: &'static str;
    /// Every address it claims now, operations in flight included.
    fn claims(&self) -> impl std::future::Future<Output = Vec<Claim>> + Send;
}

impl<T: AddrOwner> Owner for T {
    fn kind(&self) -> &'static str {
        T::KIND
    }

    fn owned(&self) -> BoxFuture<'_, Owned> {
        Box::pin(async move {
            Owned {
                addrs: self.claims().await,
                ports: Vec::new(),
            }
        })
    }
}

/// The kinds of owner of this router, registered at start-up.
#[derive(Clone, Default)]
pub struct OwnerRegistry {
    kinds: Arc<Mutex<Vec<Arc<dyn Owner>>>>,
}

impl OwnerRegistry {
    /// Adds a kind of owner.
    pub fn register(&self, owner: Arc<dyn Owner>) {
        self.lock().push(owner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<dyn Owner>>> {
        self.kinds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The registered kinds, by name.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.lock().iter().map(|k| k.kind()).collect()
    }

    /// What every kind owns now, together.
    pub async fn owned(&self) -> Owned {
        let kinds: Vec<Arc<dyn Owner>> = self.lock().clone();
        let mut all = Owned::default();
        for k in kinds {
            let o = k.owned().await;
            all.addrs.extend(o.addrs);
            all.ports.extend(o.ports);
        }
        all
    }
}

/// The holdings no claim covers.
pub fn unowned(holdings: &[(String, Ipv4Net)], claims: &[Claim]) -> Vec<(String, Ipv4Net)> {
    let whole: BTreeSet<&str> = claims
        .iter()
        .filter(|c| c.addr.is_none())
        .map(|c| c.owner.as_str())
        .collect();
    let one: BTreeSet<(&str, Ipv4Addr)> = claims
        .iter()
        .filter_map(|c| c.addr.map(|a| (c.owner.as_str(), a)))
        .collect();
    holdings
        .iter()
        .filter(|(o, a)| !whole.contains(o.as_str()) && !one.contains(&(o.as_str(), a.addr())))
        .cloned()
        .collect()
}

/// Releases every address IPAM holds on this peer for an owner no kind claims; answers
/// with what it released.
pub async fn audit_addresses(
    ipam: &IpamHandle,
    registry: &OwnerRegistry,
) -> Result<Vec<(String, Ipv4Net)>, IpamHandleError> {
    let holdings = ipam.holdings().await?;
    let owned = registry.owned().await;
    let orphans = unowned(&holdings, &owned.addrs);
    for (owner, addr) in &orphans {
        // Released only if this owner still holds it: an owner that let it go meanwhile
        // (and another that took it) are left alone.
        ipam.release(owner, Some(*addr)).await?;
        tracing::info!(%owner, %addr, "address without an owner released");
    }
    Ok(orphans)
}

/// The veths of weft's on `bridge` (named `vethwe…`) that `owned` does not list.
pub fn stray_ports(
    links: &[weft_datapath::link::Link],
    bridge: &str,
    owned: &[String],
) -> Vec<String> {
    let Some(br) = links.iter().find(|l| l.name == bridge) else {
        return Vec::new();
    };
    links
        .iter()
        .filter(|l| l.master == Some(br.index))
        .filter(|l| l.name.starts_with(weft_datapath::attach::VETH_PREFIX))
        .filter(|l| !owned.contains(&l.name))
        .map(|l| l.name.clone())
        .collect()
}

/// Deletes the veths of weft's on `bridge` that no kind of owner claims (containers that
/// went while the router was down, attaches a crash cut short); answers with their names.
pub async fn sweep_ports(bridge: &str, registry: &OwnerRegistry) -> Result<Vec<String>, String> {
    let list = || -> Result<Vec<weft_datapath::link::Link>, String> {
        let mut h = weft_datapath::nl::Handle::current().map_err(|e| e.to_string())?;
        weft_datapath::link::list(&mut h).map_err(|e| e.to_string())
    };
    let links = tokio::task::spawn_blocking(list)
        .await
        .map_err(|e| e.to_string())??;
    let owned = registry.owned().await;
    let stray = stray_ports(&links, bridge, &owned.ports);
    let names = stray.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut h = weft_datapath::nl::Handle::current().map_err(|e| e.to_string())?;
        for n in &names {
            weft_datapath::link::delete_by_name(&mut h, n).map_err(|e| e.to_string())?;
            tracing::info!(veth = %n, "veth on the bridge without an owner removed");
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(stray)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn only_unclaimed_holdings_are_orphans() {
        let holdings = vec![
            ("c1".to_string(), net("10.32.0.1/12")),
            ("c1".to_string(), net("10.32.0.2/12")),
            ("pending".to_string(), net("10.32.0.3/12")),
            ("gone".to_string(), net("10.32.0.4/12")),
        ];
        let claims = vec![
            Claim::addr("c1", "10.32.0.1".parse().unwrap()),
            Claim::all("pending"),
        ];
        assert_eq!(
            unowned(&holdings, &claims),
            vec![
                ("c1".to_string(), net("10.32.0.2/12")),
                ("gone".to_string(), net("10.32.0.4/12")),
            ]
        );
    }

    struct Fixed(Owned);

    impl Owner for Fixed {
        fn kind(&self) -> &'static str {
            "fixed"
        }
        fn owned(&self) -> BoxFuture<'_, Owned> {
            Box::pin(async move { self.0.clone() })
        }
    }

    #[tokio::test]
    async fn the_registry_adds_up_every_kind() {
        let r = OwnerRegistry::default();
        r.register(Arc::new(Fixed(Owned {
            addrs: vec![Claim::all("a")],
            ports: vec!["vethwe1".into()],
        })));
        r.register(Arc::new(Fixed(Owned {
            addrs: vec![Claim::all("b")],
            ports: Vec::new(),
        })));
        let all = r.owned().await;
        assert_eq!(all.addrs, vec![Claim::all("a"), Claim::all("b")]);
        assert_eq!(all.ports, vec!["vethwe1".to_string()]);
        assert_eq!(r.kinds(), vec!["fixed", "fixed"]);
    }

    #[test]
    fn stray_ports_are_weft_veths_on_the_bridge_nobody_owns() {
        let link = |name: &str, index, master| weft_datapath::link::Link {
            name: name.into(),
            index,
            kind: Some("veth".into()),
            mtu: 1500,
            mac: Vec::new(),
            up: true,
            master,
            oper_up: true,
        };
        let links = vec![
            link("weft", 1, None),
            link("vethwe000000001", 2, Some(1)),
            link("vethwe000000002", 3, Some(1)),
            link("weft-sleeve", 4, Some(1)),
            link("vethwe000000003", 5, None),
            link("eth9", 6, Some(1)),
        ];
        let stray = stray_ports(&links, "weft", &["vethwe000000001".to_string()]);
        assert_eq!(stray, vec!["vethwe000000002".to_string()]);
    }
}
