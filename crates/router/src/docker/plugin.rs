//! The router's side of Docker's network and IPAM plugin: pools and addresses come from
//! weft's IPAM, each network's gateway is this host's address on the bridge in its subnet
//! (an `expose`), endpoints are veth pairs on the bridge, and `-p` becomes nftables DNAT.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::Ipv4Net;
use tokio::sync::Mutex;
use weft_docker::plugin::{
    AddressRequest, Backend, EndpointCreated, EndpointInfo, EndpointSpec, JoinSpec, Joined,
    NetworkSpec, PluginError, PluginResult, Pool, PoolRequest, PortMapping, Proto,
};

use super::saved::{EndpointEntry, GatewayEntry, NetworkEntry, PoolEntry, Saved, SavedPort};
use crate::containers::Containers;
use crate::datapath::wire::fmt_mac;
use weft_api::{ExposeRequest, HideRequest};

/// Prefix of the IPAM owners of container addresses (`docker:SUBNET:NONCE`).
pub const OWNER_PREFIX: &str = "docker:";
/// Interface name prefix inside containers: Docker numbers it (eth0, eth1...).
const DST_PREFIX: &str = "eth";
/// Host ports chosen when `-p CTR` leaves the choice to weft (Docker's own range).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49153..=65535;

/// A new IPAM owner for one container address of pool `pool_id`.
pub fn new_owner(pool_id: &str) -> String {
    format!("{OWNER_PREFIX}{pool_id}:{:016x}", rand::random::<u64>())
}

/// The key under which a Docker endpoint's MAC and ports are known to the data path.
pub fn endpoint_key(endpoint_id: &str) -> String {
    format!("docker-ep:{endpoint_id}")
}

/// The plugin backend: shared state, persisted on every change.
#[derive(Clone)]
pub struct RouterBackend {
    containers: Arc<Containers>,
    state: Arc<Mutex<Saved>>,
    path: PathBuf,
}

impl RouterBackend {
    /// A backend over the saved state at `path`.
    pub fn new(containers: Arc<Containers>, saved: Saved, path: PathBuf) -> Self {
        RouterBackend {
            containers,
            state: Arc::new(Mutex::new(saved)),
            path,
        }
    }

    /// The attach pipeline's handles this backend uses.
    pub fn containers(&self) -> &Arc<Containers> {
        &self.containers
    }

    /// The shared state (events and reconciliation read and change it too).
    pub fn state(&self) -> &Arc<Mutex<Saved>> {
        &self.state
    }

    /// Writes the state; a failure is an error for the call that changed it.
    pub fn persist(&self, s: &Saved) -> PluginResult<()> {
        s.store(&self.path)
            .map_err(|e| err(format!("cannot save {}: {e}", self.path.display())))
    }

    fn parts(&self) -> &Containers {
        &self.containers
    }

    /// Hands the ports of every published endpoint to the firewall.
    pub async fn apply_published(&self) {
        let parts = self.parts();
        let s = self.state.lock().await;
        let mut all = Vec::new();
        for e in s.endpoints.values() {
            let Some(addr) = e.addr else { continue };
            for p in &e.published {
                all.push(weft_firewall::Published {
                    proto: p.proto,
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    addr: addr.addr(),
                    port: p.port,
                });
            }
        }
        drop(s);
        parts.datapath.set_published(all);
        crate::datapath::expose::apply_firewall(&parts.datapath).await;
    }
}

fn err(m: impl Into<String>) -> PluginError {
    PluginError::new(m)
}

/// A router error as dockerd shows it: the error's own line (what, why, what to do).
fn plugin_err(e: impl std::fmt::Display) -> PluginError {
    PluginError::new(e.to_string())
}

/// A locally administered unicast MAC, random.
fn random_mac() -> [u8; 6] {
    let mut m: [u8; 6] = rand::random();
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

fn to_saved(p: &PortMapping) -> SavedPort {
    SavedPort {
        proto: p.proto,
        port: p.port,
        host_ip: p.host_ip,
        host_port: p.host_port,
    }
}

fn to_mapping(p: &SavedPort) -> PortMapping {
    PortMapping {
        proto: p.proto,
        port: p.port,
        host_ip: p.host_ip,
        host_port: p.host_port,
        host_port_end: p.host_port,
    }
}

/// Host ports for `wanted`: given ones as they are (refused if another endpoint publishes
/// the same), 0 replaced by a free one from the ephemeral range.
fn choose_ports(
    wanted: &[SavedPort],
    taken: &BTreeSet<(Proto, u16)>,
) -> PluginResult<Vec<SavedPort>> {
    let mut taken = taken.clone();
    let mut out = Vec::new();
    for p in wanted {
        let mut p = *p;
        if p.host_port == 0 {
            let Some(free) = EPHEMERAL.clone().find(|h| !taken.contains(&(p.proto, *h))) else {
                return Err(err("no free host port left in 49153-65535 to publish on"));
            };
            p.host_port = free;
        } else if taken.contains(&(p.proto, p.host_port)) {
            return Err(err(format!(
                "host port {} is already published by another container; choose another with -p",
                p.host_port
            )));
        }
        taken.insert((p.proto, p.host_port));
        out.push(p);
    }
    Ok(out)
}

impl RouterBackend {
    /// The gateway of `subnet`: this host's exposed address in it, exposing one if none
    /// is there (a given `want` address is claimed).
    async fn gateway_for(&self, subnet: Ipv4Net, want: Option<Ipv4Addr>) -> PluginResult<Ipv4Net> {
        let parts = self.parts();
        {
            let mut s = self.state.lock().await;
            if let Some(g) = s.gateways.get_mut(&subnet) {
                if want.is_none_or(|w| w == g.addr.addr()) {
                    g.users += 1;
                    let addr = g.addr;
                    self.persist(&s)?;
                    return Ok(addr);
                }
            }
        }
        // An address the user exposed in this subnet serves as well.
        let bridge = parts.datapath.bridge().to_string();
        let exposed = tokio::task::spawn_blocking(move || weft_datapath::expose::exposed(&bridge))
            .await
            .map_err(|e| err(e.to_string()))?
            .unwrap_or_default();
        let existing = exposed
            .iter()
            .find(|a| a.trunc() == subnet && want.is_none_or(|w| w == a.addr()))
            .map(|a| Ipv4Net::new(a.addr(), subnet.prefix_len()).unwrap_or(*a));
        let (addr, ours) = match existing {
            Some(a) => (a, false),
            None => {
                let word = match want {
                    Some(w) => format!("ip:{w}/{}", subnet.prefix_len()),
                    None => format!("net:{subnet}"),
                };
                // Recorded first: a kill -9 between the expose and the gateway's entry
                // leaves a marker, and the next start hides the address again.
                {
                    let mut s = self.state.lock().await;
                    s.pending_gateways.insert(subnet);
                    self.persist(&s)?;
                }
                let resp = crate::datapath::expose::expose(
                    &parts.datapath,
                    &parts.ipam,
                    &parts.intents,
                    ExposeRequest {
                        addrs: vec![word],
                        without_masquerade: !parts.datapath.masquerade(),
                    },
                )
                .await
                .map_err(|e| {
                    err(format!(
                        "cannot give this host a gateway address in {subnet}: {e}"
                    ))
                });
                let resp = match resp {
                    Ok(r) => r,
                    Err(e) => {
                        let mut s = self.state.lock().await;
                        s.pending_gateways.remove(&subnet);
                        let _ = self.persist(&s);
                        return Err(e);
                    }
                };
                let Some(a) = resp.addrs.first().and_then(|a| a.parse::<Ipv4Net>().ok()) else {
                    return Err(err(format!("no gateway address in {subnet}")));
                };
                (a, true)
            }
        };
        let mut s = self.state.lock().await;
        let g = s.gateways.entry(subnet).or_insert(GatewayEntry {
            addr,
            ours,
            users: 0,
        });
        g.users += 1;
        let addr = g.addr;
        s.pending_gateways.remove(&subnet);
        self.persist(&s)?;
        Ok(addr)
    }

    /// At start: a gateway a crash cut short between its expose and its entry is hidden
    /// again (Docker saw its request fail; it asks again when it retries).
    pub async fn undo_pending_gateways(&self) {
        let pending: Vec<Ipv4Net> = {
            let s = self.state.lock().await;
            s.pending_gateways
                .iter()
                .copied()
                .filter(|subnet| !s.gateways.contains_key(subnet))
                .collect()
        };
        let parts = self.parts();
        let bridge = parts.datapath.bridge().to_string();
        let exposed = tokio::task::spawn_blocking(move || weft_datapath::expose::exposed(&bridge))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let gateways: Vec<Ipv4Addr> = {
            let s = self.state.lock().await;
            s.gateways.values().map(|g| g.addr.addr()).collect()
        };
        for subnet in &pending {
            // Exactly this subnet's (a gateway has its prefix), and no other network's gateway.
            let addrs: Vec<String> = exposed
                .iter()
                .filter(|a| a.trunc() == *subnet && !gateways.contains(&a.addr()))
                .map(|a| format!("ip:{a}"))
                .collect();
            if addrs.is_empty() {
                continue;
            }
            let hidden = crate::datapath::expose::hide(
                &parts.datapath,
                &parts.ipam,
                &parts.intents,
                HideRequest { addrs },
            )
            .await;
            match hidden {
                Ok(r) => {
                    tracing::info!(%subnet, hidden = ?r.addrs, "gateway a crash cut short: hidden again")
                }
                Err(e) => tracing::warn!(%subnet, "cannot hide a gateway a crash cut short: {e}"),
            }
        }
        let mut s = self.state.lock().await;
        if !s.pending_gateways.is_empty() {
            s.pending_gateways.clear();
            if let Err(e) = self.persist(&s) {
                tracing::warn!("{e}");
            }
        }
    }

    /// One network less uses the gateway `addr`; the last one hides it if the plugin
    /// exposed it.
    async fn release_gateway(&self, addr: Ipv4Addr) -> PluginResult<bool> {
        let mut s = self.state.lock().await;
        let Some((subnet, g)) = s
            .gateways
            .iter_mut()
            .find(|(_, g)| g.addr.addr() == addr)
            .map(|(k, g)| (*k, g))
        else {
            return Ok(false);
        };
        g.users = g.users.saturating_sub(1);
        if g.users > 0 {
            self.persist(&s)?;
            return Ok(true);
        }
        let ours = g.ours;
        let net = g.addr;
        s.gateways.remove(&subnet);
        self.persist(&s)?;
        drop(s);
        if ours {
            let parts = self.parts();
            crate::datapath::expose::hide(
                &parts.datapath,
                &parts.ipam,
                &parts.intents,
                HideRequest {
                    addrs: vec![format!("ip:{net}")],
                },
            )
            .await
            .map_err(plugin_err)?;
        }
        Ok(true)
    }

    /// The endpoint's container-side MAC and address, for the data path's gossip.
    pub fn announce_endpoint(&self, endpoint_id: &str, e: &EndpointEntry) {
        let parts = self.parts();
        let Some(mac) = crate::datapath::wire::parse_mac(&e.mac) else {
            return;
        };
        parts.datapath.endpoint_mac_added(
            &endpoint_key(endpoint_id),
            mac,
            e.addr.into_iter().collect(),
        );
        // Restored endpoints get their anti-spoofing entry back (start-up syncs the guard
        // to the registry before Docker's endpoints are restored).
        let g = crate::containers::guard::endpoint_guard(&e.host_veth, mac, e.addr);
        tokio::spawn(async move {
            if let Err(e) = crate::containers::guard::allow(g).await {
                tracing::warn!("{e}");
            }
        });
    }
}

impl Backend for RouterBackend {
    async fn request_pool(&self, req: PoolRequest) -> PluginResult<Pool> {
        if req.v6 {
            return Err(err(
                "weft networks are IPv4 only; create the network without --ipv6",
            ));
        }
        if let Some(sp) = req.sub_pool {
            return Err(err(format!(
                "--ip-range {sp} is not supported by weft's IPAM; give only --subnet (weft hands out addresses of the whole subnet)"
            )));
        }
        let parts = self.parts();
        let range = parts.ipam.range();
        let subnet = match req.subnet {
            Some(s) => {
                let s = s.trunc();
                if !range.contains(&s) {
                    return Err(err(format!(
                        "subnet {s} is outside weft's range {range}; choose a subnet inside it"
                    )));
                }
                s
            }
            None => parts.ipam.default_subnet(),
        };
        let id = subnet.to_string();
        let mut s = self.state.lock().await;
        s.pools
            .entry(id.clone())
            .or_insert(PoolEntry { subnet, users: 0 })
            .users += 1;
        self.persist(&s)?;
        Ok(Pool { id, subnet })
    }

    async fn release_pool(&self, pool_id: String) -> PluginResult<()> {
        let mut s = self.state.lock().await;
        if let Some(p) = s.pools.get_mut(&pool_id) {
            p.users = p.users.saturating_sub(1);
            if p.users == 0 {
                s.pools.remove(&pool_id);
            }
            self.persist(&s)?;
        }
        Ok(())
    }

    async fn request_address(&self, req: AddressRequest) -> PluginResult<Ipv4Net> {
        let subnet = {
            let s = self.state.lock().await;
            match s.pools.get(&req.pool_id) {
                Some(p) => p.subnet,
                None => req
                    .pool_id
                    .parse::<Ipv4Net>()
                    .map_err(|_| err(format!("unknown pool {}", req.pool_id)))?,
            }
        };
        if let Some(a) = req.address {
            if !subnet.contains(&a) {
                return Err(err(format!(
                    "address {a} is not in the network's subnet {subnet}"
                )));
            }
        }
        if req.gateway {
            return self.gateway_for(subnet, req.address).await;
        }
        let parts = self.parts();
        let word = match req.address {
            Some(a) => format!("ip:{a}/{}", subnet.prefix_len()),
            None => format!("net:{subnet}"),
        };
        let specs = weft_ipam::parse_addr_specs(&[word]).map_err(|e| err(e.to_string()))?;
        let Some(spec) = specs.first() else {
            return Err(err("no address form"));
        };
        let owner = new_owner(&req.pool_id);
        {
            let mut s = self.state.lock().await;
            s.allocations.insert(owner.clone(), None);
            self.persist(&s)?;
        }
        let granted = parts.ipam.allocate(&owner, spec).await;
        let mut s = self.state.lock().await;
        match granted {
            Ok(net) => {
                let net = Ipv4Net::new(net.addr(), subnet.prefix_len()).unwrap_or(net);
                s.allocations.insert(owner, Some(net));
                self.persist(&s)?;
                Ok(net)
            }
            Err(e) => {
                s.allocations.remove(&owner);
                let _ = self.persist(&s);
                Err(plugin_err(e))
            }
        }
    }

    async fn release_address(&self, pool_id: String, address: Ipv4Addr) -> PluginResult<()> {
        if self.release_gateway(address).await? {
            return Ok(());
        }
        let owner = {
            let prefix = format!("{OWNER_PREFIX}{pool_id}:");
            let s = self.state.lock().await;
            s.allocations
                .iter()
                .find(|(o, a)| o.starts_with(&prefix) && a.is_some_and(|a| a.addr() == address))
                .map(|(o, _)| o.clone())
        };
        // Unknown: released already (reconciled while the router was down).
        let Some(owner) = owner else {
            return Ok(());
        };
        self.release_allocation(&owner, Some(address)).await;
        Ok(())
    }

    async fn create_network(&self, spec: NetworkSpec) -> PluginResult<()> {
        let mut s = self.state.lock().await;
        s.networks.insert(
            spec.network_id.clone(),
            NetworkEntry {
                subnet: spec.subnet,
                gateway: spec.gateway,
            },
        );
        self.persist(&s)?;
        tracing::info!(network = %spec.network_id, subnet = ?spec.subnet, "Docker network created");
        Ok(())
    }

    async fn delete_network(&self, network_id: String) -> PluginResult<()> {
        let mut s = self.state.lock().await;
        if s.networks.remove(&network_id).is_some() {
            self.persist(&s)?;
        }
        Ok(())
    }

    async fn create_endpoint(&self, spec: EndpointSpec) -> PluginResult<EndpointCreated> {
        let mut s = self.state.lock().await;
        if !s.networks.contains_key(&spec.network_id) {
            return Err(err(format!(
                "network {} is not known to weft; remove it and create it again",
                spec.network_id
            )));
        }
        let (given, mac) = match spec
            .mac
            .as_deref()
            .and_then(crate::datapath::wire::parse_mac)
        {
            Some(m) => (true, m),
            None => (false, random_mac()),
        };
        let (host_veth, _) = weft_datapath::endpoint::veth_names(&spec.endpoint_id);
        s.endpoints.insert(
            spec.endpoint_id.clone(),
            EndpointEntry {
                network: spec.network_id.clone(),
                addr: spec.address,
                mac: fmt_mac(&mac),
                host_veth,
                ports: spec.ports.iter().map(to_saved).collect(),
                published: Vec::new(),
                container: None,
            },
        );
        self.persist(&s)?;
        Ok(EndpointCreated {
            mac: (!given).then(|| fmt_mac(&mac)),
        })
    }

    async fn delete_endpoint(&self, _network_id: String, endpoint_id: String) -> PluginResult<()> {
        let removed = {
            let mut s = self.state.lock().await;
            let e = s.endpoints.remove(&endpoint_id);
            if e.is_some() {
                self.persist(&s)?;
            }
            e
        };
        if let Some(e) = removed {
            self.forget_endpoint(&endpoint_id, &e).await;
        }
        Ok(())
    }

    async fn endpoint_info(
        &self,
        _network_id: String,
        endpoint_id: String,
    ) -> PluginResult<EndpointInfo> {
        let s = self.state.lock().await;
        let Some(e) = s.endpoints.get(&endpoint_id) else {
            return Ok(EndpointInfo::default());
        };
        let ports = if e.published.is_empty() {
            &e.ports
        } else {
            &e.published
        };
        Ok(EndpointInfo {
            ports: ports.iter().map(to_mapping).collect(),
            mac: Some(e.mac.clone()),
        })
    }

    async fn join(&self, spec: JoinSpec) -> PluginResult<Joined> {
        let parts = self.parts();
        let (entry, gateway) = {
            let s = self.state.lock().await;
            let Some(e) = s.endpoints.get(&spec.endpoint_id).cloned() else {
                return Err(err(format!(
                    "endpoint {} is not known to weft",
                    spec.endpoint_id
                )));
            };
            let gw = s.networks.get(&spec.network_id).and_then(|n| n.gateway);
            (e, gw)
        };
        let Some(mac) = crate::datapath::wire::parse_mac(&entry.mac) else {
            return Err(err(format!(
                "bad MAC {} of endpoint {}",
                entry.mac, spec.endpoint_id
            )));
        };
        let (host, peer) = weft_datapath::endpoint::veth_names(&spec.endpoint_id);
        let bridge = parts.datapath.bridge().to_string();
        let mtu = parts.datapath.mtu();
        let p = peer.clone();
        // Anti-spoofing: the port may send only from the endpoint's address and MAC.
        crate::containers::guard::allow(crate::containers::guard::endpoint_guard(
            &host, mac, entry.addr,
        ))
        .await
        .map_err(err)?;
        tokio::task::spawn_blocking(move || {
            weft_datapath::endpoint::create(&bridge, &host, &p, mac, mtu)
        })
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(format!("cannot make the container's interface: {e}")))?;
        self.announce_endpoint(&spec.endpoint_id, &entry);
        Ok(Joined {
            src_name: peer,
            dst_prefix: DST_PREFIX.to_string(),
            gateway: gateway.map(|g| g.addr()),
            disable_gateway_service: false,
        })
    }

    async fn leave(&self, _network_id: String, endpoint_id: String) -> PluginResult<()> {
        let e = self.state.lock().await.endpoints.get(&endpoint_id).cloned();
        if let Some(e) = e {
            self.forget_endpoint(&endpoint_id, &e).await;
        }
        Ok(())
    }

    async fn program_external(&self, _network_id: String, endpoint_id: String) -> PluginResult<()> {
        {
            let mut s = self.state.lock().await;
            let taken: BTreeSet<(Proto, u16)> = s
                .endpoints
                .iter()
                .filter(|(id, _)| **id != endpoint_id)
                .flat_map(|(_, e)| e.published.iter().map(|p| (p.proto, p.host_port)))
                .collect();
            let Some(e) = s.endpoints.get(&endpoint_id) else {
                return Ok(());
            };
            if e.ports.is_empty() {
                return Ok(());
            }
            let chosen = choose_ports(&e.ports, &taken)?;
            if let Some(e) = s.endpoints.get_mut(&endpoint_id) {
                e.published = chosen;
            }
            self.persist(&s)?;
        }
        self.apply_published().await;
        Ok(())
    }

    async fn revoke_external(&self, _network_id: String, endpoint_id: String) -> PluginResult<()> {
        let changed = {
            let mut s = self.state.lock().await;
            match s.endpoints.get_mut(&endpoint_id) {
                Some(e) if !e.published.is_empty() => {
                    e.published.clear();
                    self.persist(&s)?;
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.apply_published().await;
        }
        Ok(())
    }
}

impl RouterBackend {
    /// Releases the address(es) of one allocation owner and forgets the owner.
    pub async fn release_allocation(&self, owner: &str, address: Option<Ipv4Addr>) {
        let net = address.and_then(|a| Ipv4Net::new(a, 32).ok());
        if let Err(e) = self.parts().ipam.release(owner, net).await {
            tracing::debug!(%owner, "release: {e}");
        }
        let mut s = self.state.lock().await;
        if s.allocations.remove(owner).is_some() {
            if let Err(e) = self.persist(&s) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Undoes what Join and the start event did for an endpoint: veth, gossip, names.
    pub async fn forget_endpoint(&self, endpoint_id: &str, e: &EndpointEntry) {
        let host = e.host_veth.clone();
        let _ = tokio::task::spawn_blocking(move || weft_datapath::endpoint::remove(&host)).await;
        if let Some(mac) = crate::datapath::wire::parse_mac(&e.mac) {
            let g = crate::containers::guard::endpoint_guard(&e.host_veth, mac, e.addr);
            crate::containers::guard::revoke(g, true).await;
        }
        let parts = self.parts();
        parts
            .datapath
            .endpoint_removed(&endpoint_key(endpoint_id), &e.mac);
        if let (Some(c), Some(a)) = (&e.container, e.addr) {
            parts.dns.container_detached(c, &[a]).await;
            // Its tasks leave (also for a container that went while the router was down).
            parts.services.container_detached(c).await;
        }
        if !e.published.is_empty() {
            if let Some(x) = self.state.lock().await.endpoints.get_mut(endpoint_id) {
                x.published.clear();
            }
            self.apply_published().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(h: u16) -> SavedPort {
        SavedPort {
            proto: Proto::Tcp,
            port: 80,
            host_ip: None,
            host_port: h,
        }
    }

    #[test]
    fn chosen_ports_skip_taken_ones_and_refuse_conflicts() {
        let mut taken = BTreeSet::new();
        taken.insert((Proto::Tcp, 49153));
        let got = choose_ports(&[port(0), port(8080)], &taken).unwrap();
        assert_eq!(got[0].host_port, 49154);
        assert_eq!(got[1].host_port, 8080);
        taken.insert((Proto::Tcp, 8080));
        let e = choose_ports(&[port(8080)], &taken).unwrap_err();
        assert!(e.message.contains("8080"), "{e}");
        // The same port number on another protocol is free.
        let mut udp = port(8080);
        udp.proto = Proto::Udp;
        assert!(choose_ports(&[udp], &taken).is_ok());
    }

    #[test]
    fn macs_are_local_unicast() {
        for _ in 0..100 {
            let m = random_mac();
            assert_eq!(m[0] & 0x03, 0x02);
        }
    }
}
