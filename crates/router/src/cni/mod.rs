//! CNI: the router's side of the plugin. ADD, DEL, CHECK, GC and STATUS on attachments
//! keyed by (network, container id, interface), carried out by the attach pipeline
//! (`containers`: IPAM, the veth, anti-spoofing, DNS, its crash intents) and recorded in
//! [`store`] so that results and GC survive a restart.

pub mod store;

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use weft_api::{
    AttachRequest, CniAddRequest, CniAttachment, CniCheckRequest, CniDelRequest, CniDns,
    CniGcRequest, CniGcResponse, CniKey, CniStatus, DetachRequest,
};

use crate::containers::{Containers, ContainersError};
use store::{Record, Stage, Store};

/// Why a CNI operation failed; each names its input.
#[derive(Debug, thiserror::Error)]
pub enum CniHandleError {
    /// The attach pipeline failed (its error says which step); nothing was left behind.
    #[error(transparent)]
    Containers(#[from] ContainersError),
    /// The request is wrong (an address, a subnet, an empty key).
    #[error("{0}")]
    BadRequest(String),
    /// The attachment exists in another namespace.
    #[error(
        "container {container} already has {ifname} on network {network} in {netns}; DEL it first"
    )]
    Exists {
        /// Network.
        network: String,
        /// Container id.
        container: String,
        /// Interface.
        ifname: String,
        /// The namespace it is in.
        netns: String,
    },
    /// The namespace already has an interface of that name that weft did not make.
    #[error("{netns} already has an interface {ifname}; weft does not take over another plugin's interface: choose another CNI_IFNAME")]
    IfnameTaken {
        /// The namespace.
        netns: String,
        /// The interface.
        ifname: String,
    },
    /// CHECK of an attachment weft does not have.
    #[error("weft has no attachment of container {container} ({ifname}) on network {network}; ADD it first")]
    NotFound {
        /// Network.
        network: String,
        /// Container id.
        container: String,
        /// Interface.
        ifname: String,
    },
    /// CHECK found the attachment not as it should be.
    #[error("{0}")]
    Check(String),
    /// STATUS: the router cannot take ADDs now.
    #[error("IPAM is not ready: {0}")]
    NotReady(String),
    /// The attachment record could not be written.
    #[error("{0}")]
    Store(String),
}

/// The CNI handle, built once at start-up.
pub struct Cni {
    containers: Arc<Containers>,
    store: Store,
}

impl Cni {
    /// The handle, with the attachments of the last run.
    pub fn new(
        containers: Arc<Containers>,
        state_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<Cni>> {
        Ok(Arc::new(Cni {
            containers,
            store: Store::load(state_dir)?,
        }))
    }

    /// Undoes the ADDs a kill -9 cut short (recorded `adding`): their clients saw no result.
    pub async fn recover(&self) {
        let cut: Vec<Record> = self
            .store
            .all()
            .into_iter()
            .filter(|r| r.stage == Stage::Adding)
            .collect();
        for r in cut {
            let key = r.attachment.key.clone();
            tracing::info!(container = %key.container_id, network = %key.network, "undoing a CNI ADD a crash cut short");
            if let Err(e) = self.release(&r.attachment.id).await {
                tracing::warn!(container = %key.container_id, "cannot undo the ADD: {e}");
                continue;
            }
            if let Err(e) = self.store.remove(&key).await {
                tracing::warn!("{e}");
            }
        }
    }

    /// ADD: attaches the container and answers what it got. Fails leaving nothing.
    pub async fn add(&self, req: CniAddRequest) -> Result<CniAttachment, CniHandleError> {
        check_key(&req.key)?;
        if req.netns.is_empty() {
            return Err(CniHandleError::BadRequest(
                "no network namespace (CNI_NETNS) given".into(),
            ));
        }
        if let Some(r) = self.store.get(&req.key) {
            if r.stage == Stage::Added && r.attachment.netns == req.netns {
                // ADD again without DEL: the same answer.
                return Ok(r.attachment.clone());
            }
            if r.stage == Stage::Added {
                return Err(CniHandleError::Exists {
                    network: req.key.network.clone(),
                    container: req.key.container_id.clone(),
                    ifname: req.key.ifname.clone(),
                    netns: r.attachment.netns.clone(),
                });
            }
        }
        let (specs, subnet) = self.addr_specs(&req)?;
        let (path, name) = (req.netns.clone(), req.key.ifname.clone());
        let taken = tokio::task::spawn_blocking(move || interface_exists(&path, &name))
            .await
            .unwrap_or(false);
        if taken {
            return Err(CniHandleError::IfnameTaken {
                netns: req.netns.clone(),
                ifname: req.key.ifname.clone(),
            });
        }
        let gateway = self.gateway_in(subnet).await;
        let mut att = CniAttachment {
            key: req.key.clone(),
            netns: req.netns.clone(),
            id: weft_id(&req.key),
            ..CniAttachment::default()
        };
        // Recorded before anything changes: a kill -9 from here on is undone at start-up.
        self.store
            .put(Record {
                stage: Stage::Adding,
                attachment: att.clone(),
            })
            .await
            .map_err(CniHandleError::Store)?;
        let attach = AttachRequest {
            netns: req.netns.clone(),
            addrs: specs,
            ifname: req.key.ifname.clone(),
            hostname: req.hostname.clone(),
            without_dns: false,
            container: Some(att.id.clone()),
            services: Vec::new(),
        };
        let done = crate::containers::attach_with_gateway(&self.containers, attach, gateway).await;
        let granted = match done {
            Ok(g) => g,
            Err(e) => {
                self.forget(&req.key).await;
                return Err(e.into());
            }
        };
        let entry = self.containers.registry.lock().await.get(&att.id).cloned();
        if let Some(e) = &entry {
            att.mac = e.mac.clone();
            att.host_ifname = weft_datapath::attach::host_veth_name_for(e.ns_inode, &e.ifname);
            att.host_mac = host_mac(&att.host_ifname).await;
        }
        att.addrs = granted.addrs;
        att.gateway = gateway
            .filter(|g| {
                att.addrs
                    .iter()
                    .any(|a| a.parse::<Ipv4Net>().is_ok_and(|n| n.contains(g)))
            })
            .map(|g| g.to_string());
        att.dns = self.dns();
        let saved = self
            .store
            .put(Record {
                stage: Stage::Added,
                attachment: att.clone(),
            })
            .await;
        if let Err(e) = saved {
            let _ = self.release(&att.id).await;
            self.forget(&req.key).await;
            return Err(CniHandleError::Store(format!("{e}; the ADD was undone")));
        }
        Ok(att)
    }

    /// DEL: releases the attachment; succeeds when there is none, and when its namespace
    /// is gone already.
    pub async fn del(&self, req: CniDelRequest) -> Result<(), CniHandleError> {
        let rec = self.store.get(&req.key);
        let Some(rec) = rec else {
            return Ok(());
        };
        self.release(&rec.attachment.id).await?;
        self.store
            .remove(&req.key)
            .await
            .map_err(CniHandleError::Store)
    }

    /// CHECK: the attachment is recorded, has the addresses `req` names, and its interface
    /// is in its namespace with them.
    pub async fn check(&self, req: CniCheckRequest) -> Result<(), CniHandleError> {
        let rec = self.store.get(&req.key);
        let Some(rec) = rec.filter(|r| r.stage == Stage::Added) else {
            return Err(CniHandleError::NotFound {
                network: req.key.network.clone(),
                container: req.key.container_id.clone(),
                ifname: req.key.ifname.clone(),
            });
        };
        let att = rec.attachment;
        if att.netns != req.netns {
            return Err(CniHandleError::Check(format!(
                "the attachment is in {}, not {}",
                att.netns, req.netns
            )));
        }
        if let Some(a) = req.addrs.iter().find(|a| !att.addrs.contains(a)) {
            return Err(CniHandleError::Check(format!(
                "prevResult gives {} address {a}, which weft did not give it (it has {})",
                att.key.ifname,
                att.addrs.join(", ")
            )));
        }
        if self.containers.registry.lock().await.get(&att.id).is_none() {
            return Err(CniHandleError::Check(format!(
                "{} is no longer attached to weft (see `weft ps`); DEL and ADD it again",
                att.id
            )));
        }
        let want: Vec<Ipv4Net> = att.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        let (netns, ifname) = (att.netns.clone(), att.key.ifname.clone());
        tokio::task::spawn_blocking(move || kernel_has(&netns, &ifname, &want))
            .await
            .map_err(|e| CniHandleError::Check(format!("the check did not finish: {e}")))?
            .map_err(CniHandleError::Check)
    }

    /// GC: releases the network's attachments that are not in `req.valid`.
    pub async fn gc(&self, req: CniGcRequest) -> Result<CniGcResponse, CniHandleError> {
        let stale: Vec<CniKey> = self
            .store
            .all()
            .iter()
            .map(|r| r.attachment.key.clone())
            .filter(|k| {
                k.network == req.network
                    && !req
                        .valid
                        .iter()
                        .any(|(c, i)| *c == k.container_id && *i == k.ifname)
            })
            .collect();
        let mut released = Vec::new();
        for key in stale {
            self.del(CniDelRequest {
                key: key.clone(),
                netns: None,
            })
            .await?;
            tracing::info!(container = %key.container_id, network = %key.network, "GC released an attachment");
            released.push(key);
        }
        Ok(CniGcResponse { released })
    }

    /// STATUS: IPAM answers and has not handed its space away.
    pub fn status(&self) -> Result<CniStatus, CniHandleError> {
        match self.containers.ipam.status() {
            None => Err(CniHandleError::NotReady("it has not started yet".into())),
            Some(st) if st.line.starts_with("left") || st.line.starts_with("handing") => {
                Err(CniHandleError::NotReady(st.line))
            }
            Some(st) => Ok(CniStatus { ipam: st.line }),
        }
    }

    /// Address forms for the attach, and the subnet the first one falls in.
    fn addr_specs(&self, req: &CniAddRequest) -> Result<(Vec<String>, Ipv4Net), CniHandleError> {
        let ipam = &self.containers.ipam;
        let subnet: Option<Ipv4Net> = match &req.subnet {
            None => None,
            Some(s) => Some(s.parse::<Ipv4Net>().map(|n| n.trunc()).map_err(|_| {
                CniHandleError::BadRequest(format!("subnet {s:?} is not an IPv4 CIDR"))
            })?),
        };
        if let Some(s) = subnet {
            if !ipam.range().contains(&s) {
                return Err(CniHandleError::BadRequest(format!(
                    "subnet {s} is outside weft's range {}; choose one inside it",
                    ipam.range()
                )));
            }
        }
        if req.ips.is_empty() {
            return Ok(match subnet {
                Some(s) => (vec![format!("net:{s}")], s),
                None => (Vec::new(), ipam.default_subnet()),
            });
        }
        let mut out = Vec::new();
        let mut first = None;
        for text in &req.ips {
            let (addr, prefix) = parse_ip(text).map_err(CniHandleError::BadRequest)?;
            let prefix = match prefix {
                Some(p) => p,
                None => [subnet, Some(ipam.default_subnet()), Some(ipam.range())]
                    .into_iter()
                    .flatten()
                    .find(|n| n.contains(&addr))
                    .map(|n| n.prefix_len())
                    .ok_or_else(|| {
                        CniHandleError::BadRequest(format!(
                            "address {addr} is outside weft's range {}; choose one inside it",
                            ipam.range()
                        ))
                    })?,
            };
            let net = Ipv4Net::new(addr, prefix)
                .map_err(|e| CniHandleError::BadRequest(format!("{text}: {e}")))?;
            first.get_or_insert(net.trunc());
            out.push(format!("ip:{net}"));
        }
        Ok((out, first.unwrap_or_else(|| ipam.default_subnet())))
    }

    /// The host's exposed address in `subnet` (`weft expose`), the containers' gateway.
    async fn gateway_in(&self, subnet: Ipv4Net) -> Option<Ipv4Addr> {
        let exposed = self
            .containers
            .ipam
            .lookup(crate::datapath::expose::EXPOSE_OWNER)
            .await
            .ok()?;
        exposed
            .into_iter()
            .find(|n| n.trunc() == subnet)
            .map(|n| n.addr())
    }

    fn dns(&self) -> CniDns {
        let dns = &self.containers.dns;
        match dns.domain().filter(|_| dns.is_on()) {
            Some(d) => {
                let d = d.trim_end_matches('.').to_string();
                CniDns {
                    nameservers: vec!["127.0.0.11".into()],
                    domain: Some(d.clone()),
                    search: vec![d],
                }
            }
            None => CniDns::default(),
        }
    }

    /// Detaches weft's container `id` if it is attached (also when its namespace is gone).
    async fn release(&self, id: &str) -> Result<(), CniHandleError> {
        if self.containers.registry.lock().await.get(id).is_none() {
            return Ok(());
        }
        let req = DetachRequest {
            netns: String::new(),
            addrs: Vec::new(),
            container: Some(id.to_string()),
        };
        match crate::containers::detach(&self.containers, req).await {
            Ok(_) | Err(ContainersError::NotAttached(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn forget(&self, key: &CniKey) {
        if let Err(e) = self.store.remove(key).await {
            tracing::warn!("{e}");
        }
    }
}

/// weft's id of an attachment: the container id for `eth0`, else with the interface.
pub fn weft_id(key: &CniKey) -> String {
    if key.ifname == "eth0" {
        key.container_id.clone()
    } else {
        format!("{}-{}", key.container_id, key.ifname)
    }
}

fn check_key(key: &CniKey) -> Result<(), CniHandleError> {
    if key.network.is_empty() || key.container_id.is_empty() || key.ifname.is_empty() {
        return Err(CniHandleError::BadRequest(
            "an attachment needs a network name, a container id and an interface name".into(),
        ));
    }
    Ok(())
}

fn parse_ip(s: &str) -> Result<(Ipv4Addr, Option<u8>), String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr = a
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address"))?;
    let prefix = match p {
        None => None,
        Some(p) => Some(
            p.parse::<u8>()
                .ok()
                .filter(|n| (1..=32).contains(n))
                .ok_or_else(|| format!("{s:?} has a prefix length that is not 1..32"))?,
        ),
    };
    Ok((addr, prefix))
}

/// The MAC of a link in the router's namespace, `aa:bb:..` (empty if it cannot be read).
async fn host_mac(name: &str) -> String {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let mut h = weft_datapath::nl::Handle::current().ok()?;
        let link = weft_datapath::link::get(&mut h, &name).ok()??;
        link.mac6().map(|m| crate::datapath::wire::fmt_mac(&m))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Whether the namespace at `path` has an interface `ifname` (false when it cannot be
/// opened: the attach then says why).
fn interface_exists(path: &str, ifname: &str) -> bool {
    let Ok(ns) = weft_datapath::Netns::open_path(std::path::Path::new(path)) else {
        return false;
    };
    let name = ifname.to_string();
    ns.run(move || {
        weft_datapath::nl::Handle::current()
            .ok()
            .and_then(|mut h| weft_datapath::link::get(&mut h, &name).ok())
            .flatten()
            .is_some()
    })
    .unwrap_or(false)
}

/// Whether `ifname` is in the namespace at `path` with every address of `want`.
fn kernel_has(path: &str, ifname: &str, want: &[Ipv4Net]) -> Result<(), String> {
    let ns = weft_datapath::Netns::open_path(std::path::Path::new(path)).map_err(|e| {
        format!("the container's namespace cannot be opened ({e}); DEL and ADD it again")
    })?;
    let name = ifname.to_string();
    let found = ns
        .run(move || -> Result<Option<Vec<Ipv4Net>>, String> {
            let mut h = weft_datapath::nl::Handle::current().map_err(|e| e.to_string())?;
            let Some(link) = weft_datapath::link::get(&mut h, &name).map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let addrs =
                weft_datapath::addr::list(&mut h, Some(link.index)).map_err(|e| e.to_string())?;
            Ok(Some(addrs.into_iter().map(|(_, a)| a).collect()))
        })
        .map_err(|e| e.to_string())??;
    let Some(have) = found else {
        return Err(format!(
            "interface {ifname} is gone from {path}; DEL and ADD the container again"
        ));
    };
    if let Some(missing) = want.iter().find(|w| !have.contains(w)) {
        return Err(format!(
            "interface {ifname} in {path} lacks address {missing} that weft gave it; DEL and ADD the container again"
        ));
    }
    Ok(())
}
