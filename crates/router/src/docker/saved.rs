//! What the Docker plugin remembers across router restarts (`docker.json` in the state
//! dir): dockerd does not replay its calls to a restarted plugin, so pools, gateways,
//! networks and endpoints must survive the router.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use weft_types::Proto;

/// File name in the state dir.
const FILE: &str = "docker.json";

/// A pool handed to Docker; its id is the subnet, so networks on one subnet share it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolEntry {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// How many Docker networks use it (RequestPool minus ReleasePool).
    pub users: u32,
}

/// The gateway of a subnet: this host's address on the bridge in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEntry {
    /// Address with the subnet's prefix.
    pub addr: Ipv4Net,
    /// Whether the plugin exposed it (then it hides it when the last network goes);
    /// an address exposed by the user stays.
    pub ours: bool,
    /// How many Docker networks use it.
    pub users: u32,
}

/// A Docker network of driver weft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkEntry {
    /// Its subnet.
    pub subnet: Option<Ipv4Net>,
    /// Its gateway (this host's address in the subnet).
    pub gateway: Option<Ipv4Net>,
}

/// A published port as it was programmed (host port chosen when Docker left it to us).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SavedPort {
    /// `tcp`, `udp` or `sctp`.
    pub proto: Proto,
    /// Port in the container.
    pub port: u16,
    /// Host address, if one was given.
    pub host_ip: Option<std::net::Ipv4Addr>,
    /// Host port.
    pub host_port: u16,
}

/// One container's endpoint on a weft network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointEntry {
    /// Docker's network id.
    pub network: String,
    /// The address IPAM gave it.
    pub addr: Option<Ipv4Net>,
    /// Its MAC (`aa:bb:..`).
    pub mac: String,
    /// Host side of its veth.
    pub host_veth: String,
    /// Ports asked for (`-p`), host port 0 where Docker left the choice to us.
    pub ports: Vec<SavedPort>,
    /// Ports as published (after ProgramExternalConnectivity).
    #[serde(default)]
    pub published: Vec<SavedPort>,
    /// The container, once a `start` event told us.
    #[serde(default)]
    pub container: Option<String>,
}

/// Everything in `docker.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Pools by id.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolEntry>,
    /// Gateways by subnet.
    #[serde(default)]
    pub gateways: BTreeMap<Ipv4Net, GatewayEntry>,
    /// Networks by Docker id.
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkEntry>,
    /// Endpoints by Docker id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointEntry>,
    /// Container addresses by IPAM owner. IPAM gives one owner one address per subnet,
    /// and Docker's RequestAddress names no container, so every request gets an owner of
    /// its own; it is recorded (address still unknown) before IPAM is asked, so an
    /// address granted just before a crash is found and released at the next start.
    #[serde(default)]
    pub allocations: BTreeMap<String, Option<Ipv4Net>>,
    /// Subnets whose gateway the plugin is exposing right now (recorded before the expose,
    /// cleared with the gateway's entry): one left at start is a gateway a crash cut short,
    /// hidden again.
    #[serde(default)]
    pub pending_gateways: std::collections::BTreeSet<Ipv4Net>,
}

/// The path of `docker.json` in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

impl Saved {
    /// Loads the file; absent means empty. A file that does not parse is an error that
    /// names it (the router refuses to guess which addresses Docker holds).
    pub fn load(path: &Path) -> anyhow::Result<Saved> {
        let saved = crate::persist::load_json(path, "start the Docker plugin afresh")?;
        Ok(saved.unwrap_or_default())
    }

    /// Writes the file atomically.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        crate::persist::store_json(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert_eq!(Saved::load(&p).unwrap(), Saved::default());
        let mut s = Saved::default();
        let subnet: Ipv4Net = "10.32.0.0/12".parse().unwrap();
        s.pools
            .insert(subnet.to_string(), PoolEntry { subnet, users: 1 });
        s.endpoints.insert(
            "ep1".into(),
            EndpointEntry {
                network: "n1".into(),
                addr: Some("10.32.0.5/12".parse().unwrap()),
                mac: "02:00:00:00:00:01".into(),
                host_veth: "vethweep1".into(),
                ports: vec![SavedPort {
                    proto: Proto::Tcp,
                    port: 80,
                    host_ip: None,
                    host_port: 8080,
                }],
                published: Vec::new(),
                container: None,
            },
        );
        s.store(&p).unwrap();
        assert_eq!(Saved::load(&p).unwrap(), s);
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        std::fs::write(&p, b"{not json").unwrap();
        let e = Saved::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("docker.json") && e.contains("move it away"),
            "{e}"
        );
    }

    #[test]
    fn ports_in_the_form_docker_json_already_holds_load() {
        let json = r#"{"proto":"sctp","port":80,"host_ip":null,"host_port":8080}"#;
        let p: SavedPort = serde_json::from_str(json).unwrap();
        assert_eq!(p.proto, Proto::Sctp);
        assert_eq!(serde_json::to_string(&p).unwrap(), json);
    }
}
