//! The plan: what every host programs for the services, the same on every peer once the
//! gossip has settled.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weft_types::port::Proto;

use crate::spec::{Definition, EndpointMode, PortSpec, Publish};

/// One service as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlannedService {
    /// Service name.
    pub name: String,
    /// Endpoint mode.
    pub mode: EndpointMode,
    /// The VIP (mode vip, and not taken by an older service).
    pub vip: Option<Ipv4Addr>,
    /// Ports balanced from the VIP.
    pub ports: Vec<PortSpec>,
    /// Published ports (those no older service publishes).
    pub published: Vec<Publish>,
    /// Tasks in rotation (healthy, host reachable), sorted.
    pub backends: Vec<Ipv4Addr>,
}

/// Every live service, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Plan {
    /// The services, sorted by name.
    pub services: Vec<PlannedService>,
}

impl Plan {
    /// The planned service `name`.
    pub fn get(&self, name: &str) -> Option<&PlannedService> {
        self.index(name).ok().map(|i| &self.services[i])
    }

    fn index(&self, name: &str) -> Result<usize, usize> {
        self.services
            .binary_search_by(|s| s.name.as_str().cmp(name))
    }

    /// Sets (Some) or drops (None) the entry of `name`; whether the plan changed.
    pub(crate) fn put(&mut self, name: &str, planned: Option<PlannedService>) -> bool {
        match (self.index(name), planned) {
            (Ok(i), Some(p)) if self.services[i] == p => false,
            (Ok(i), Some(p)) => {
                self.services[i] = p;
                true
            }
            (Ok(i), None) => {
                self.services.remove(i);
                true
            }
            (Err(i), Some(p)) => {
                self.services.insert(i, p);
                true
            }
            (Err(_), None) => false,
        }
    }
}

/// A live service's claim on a VIP or host port: of two, the older `(version, origin)`
/// holds it (the same on every peer), the other plans without it.
type Claim = (u64, String, String);

fn claim(def: &Definition) -> Claim {
    (def.version, def.origin.clone(), def.spec.name.clone())
}

/// Which live services claim each VIP and published host port.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claims {
    vips: BTreeMap<Ipv4Addr, BTreeSet<Claim>>,
    ports: BTreeMap<(Proto, u16), BTreeSet<Claim>>,
}

impl Claims {
    /// Records what a live definition claims.
    pub fn add(&mut self, def: &Definition) {
        if let (EndpointMode::Vip, Some(vip)) = (def.spec.mode, def.spec.vip) {
            self.vips.entry(vip).or_default().insert(claim(def));
        }
        for p in &def.spec.published {
            self.ports
                .entry((p.proto, p.host_port))
                .or_default()
                .insert(claim(def));
        }
    }

    /// Forgets what a definition that is no longer live claimed.
    pub fn remove(&mut self, def: &Definition) {
        let c = claim(def);
        if let Some(vip) = def.spec.vip {
            if let Some(set) = self.vips.get_mut(&vip) {
                set.remove(&c);
                if set.is_empty() {
                    self.vips.remove(&vip);
                }
            }
        }
        for p in &def.spec.published {
            let key = (p.proto, p.host_port);
            if let Some(set) = self.ports.get_mut(&key) {
                set.remove(&c);
                if set.is_empty() {
                    self.ports.remove(&key);
                }
            }
        }
    }

    /// Other services claiming a VIP or host port of `def` (their plans may change with it).
    pub fn sharing(&self, def: &Definition) -> BTreeSet<String> {
        let vips = def.spec.vip.iter().filter_map(|v| self.vips.get(v));
        let ports = def
            .spec
            .published
            .iter()
            .filter_map(|p| self.ports.get(&(p.proto, p.host_port)));
        vips.chain(ports)
            .flatten()
            .map(|(_, _, name)| name.clone())
            .filter(|n| *n != def.spec.name)
            .collect()
    }

    /// The service holding `vip`.
    pub fn vip_holder(&self, vip: Ipv4Addr) -> Option<&str> {
        self.vips.get(&vip)?.first().map(|c| c.2.as_str())
    }

    /// The service holding a host port.
    pub fn port_holder(&self, proto: Proto, port: u16) -> Option<&str> {
        self.ports
            .get(&(proto, port))?
            .first()
            .map(|c| c.2.as_str())
    }

    /// Published host ports of live services, sorted.
    pub fn host_ports(&self) -> Vec<(Proto, u16)> {
        self.ports.keys().copied().collect()
    }
}

/// The plan of a live definition: the VIP and host ports it holds, and `backends`.
pub(crate) fn planned(
    def: &Definition,
    claims: &Claims,
    mut backends: Vec<Ipv4Addr>,
) -> PlannedService {
    let name = def.spec.name.as_str();
    // A host checks its own tasks' addresses; a peer's that are not task addresses of
    // the service (a broken peer) are not planned.
    backends.retain(|a| def.spec.subnet.contains(a) && def.spec.vip != Some(*a));
    let vip = match def.spec.mode {
        EndpointMode::Vip => def.spec.vip.filter(|v| claims.vip_holder(*v) == Some(name)),
        EndpointMode::Dnsrr => None,
    };
    PlannedService {
        name: name.to_string(),
        mode: def.spec.mode,
        vip,
        ports: def.spec.ports.clone(),
        published: def
            .spec
            .published
            .iter()
            .filter(|p| claims.port_holder(p.proto, p.host_port) == Some(name))
            .copied()
            .collect(),
        backends,
    }
}
