//! The data path in the router: the `weft` bridge, fastdp (kernel VXLAN) programmed from
//! the mesh, the sleeve (userspace UDP through a TAP on the same bridge), the choice of
//! path per peer with heartbeats on both paths, expose/hide with the firewall, and reset.
//!
//! `start` builds the kernel side and spawns the driver task (`driver.rs`); the attach
//! pipeline tells the handle about local container interfaces; the driver gossips them on
//! the mesh's DATAPATH channel and programs the VXLAN FDB and the sleeve from what peers
//! announce (the `weft-paths` core decides, sans-IO; the driver only carries it out).

mod driver;
pub mod expose;
pub mod ingress;
pub mod wire;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use tokio::sync::{mpsc, oneshot};
use weft_datapath::{fastdp, mtu, AttachInfo, Netns};

use crate::config::{Config, PeerAddr};
use crate::mesh::MeshHandle;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

/// Name of the overlay bridge.
pub const BRIDGE: &str = "weft";
/// The overlay MTU when nothing better is known (Weave's default).
pub const DEFAULT_MTU: u32 = 1376;
/// Name of the sleeve's TAP device.
pub const SLEEVE_TAP: &str = weft_datapath::reset::SLEEVE_TAP;

/// Local container interfaces: container → (MAC, addresses).
type LocalEndpoints = BTreeMap<String, ([u8; 6], Vec<Ipv4Net>)>;

/// Path, encryption and MTU of one peer, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// `fastdp`, `sleeve` or `sleeve via NAME`.
    pub path: String,
    /// The sleeve cipher when the path is sealed (None: clear text).
    pub cipher: Option<weft_datapath::sleeve::CipherKind>,
    /// Overlay MTU that fits one packet on that path.
    pub mtu: u32,
    /// Largest underlay datagram the path carries, as probed (None: not known yet).
    pub pmtu: Option<u32>,
}

/// Handle the attach pipeline and the API use.
#[derive(Debug, Clone)]
pub struct DatapathHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bridge: String,
    mtu: u32,
    fastdp: bool,
    range: Ipv4Net,
    state_dir: std::path::PathBuf,
    /// Local container interfaces: container → (MAC, addresses).
    local: Mutex<LocalEndpoints>,
    /// Paths per peer name, written by the driver.
    paths: Mutex<BTreeMap<String, PathInfo>>,
    /// Wake-ups and requests for the driver.
    cmds: mpsc::UnboundedSender<driver::Cmd>,
    /// Whether exposed addresses are masqueraded.
    masquerade: Mutex<bool>,
    /// Ports published for Docker containers (`-p`), DNATed by the firewall.
    published: Mutex<Vec<weft_firewall::Published>>,
}

/// The underlay MTU this host sends on: towards the first peer given as an address, else
/// through the default route, else the largest MTU of an up, non-weft link, else 1500.
fn host_underlay_mtu(peers: &[PeerAddr]) -> u32 {
    for p in peers {
        if let Ok(ip) = p.host.parse::<Ipv4Addr>() {
            if let Ok(m) = mtu::underlay_mtu(ip) {
                return m;
            }
        }
    }
    if let Ok(m) = mtu::underlay_mtu(Ipv4Addr::new(192, 0, 2, 1)) {
        return m;
    }
    1500
}

impl DatapathHandle {
    /// Builds the bridge and (unless --no-fastdp) the VXLAN device in the host's namespace,
    /// starts the sleeve, and spawns the driver. Containers already on the bridge stay.
    pub async fn start(
        config: &Config,
        me: &str,
        mesh: MeshHandle,
        registry: &Registry,
        stop: Shutdown,
    ) -> anyhow::Result<Self> {
        let use_fastdp = !config.no_fastdp;
        let peers = config.peers.clone();
        let configured = config.mtu;
        let (mtu, underlay) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u32, u32)> {
            let underlay = host_underlay_mtu(&peers);
            let overhead = if use_fastdp {
                mtu::VXLAN_OVERHEAD_V4
            } else {
                mtu::SLEEVE_OVERHEAD_DEFAULT
            };
            let mtu = match configured {
                Some(m) => m,
                None => mtu::overlay_mtu(underlay, overhead).unwrap_or(DEFAULT_MTU),
            };
            if use_fastdp {
                fastdp::setup(&fastdp::FastdpSpec::new(BRIDGE, mtu, None))?;
                weft_datapath::port::set_isolated(fastdp::VXLAN_NAME, true)?;
            } else {
                weft_datapath::ensure_bridge(BRIDGE, mtu)?;
                // A VXLAN device of an earlier run with fastdp must not carry traffic now.
                fastdp::teardown(fastdp::VXLAN_NAME)?;
            }
            Ok((mtu, underlay))
        })
        .await??;
        let (cmds, rx) = mpsc::unbounded_channel();
        let masquerade = expose::load_masquerade(&config.paths.state_dir);
        let handle = DatapathHandle {
            inner: Arc::new(Inner {
                bridge: BRIDGE.to_string(),
                mtu,
                fastdp: use_fastdp,
                range: config.range(),
                state_dir: config.paths.state_dir.clone(),
                local: Mutex::new(local_from_registry(registry)),
                paths: Mutex::new(BTreeMap::new()),
                cmds,
                masquerade: Mutex::new(masquerade),
                published: Mutex::new(Vec::new()),
            }),
        };
        driver::spawn(config, me, mesh, stop, handle.clone(), underlay, rx).await?;
        tracing::info!(mtu, underlay, fastdp = use_fastdp, "data path started");
        Ok(handle)
    }

    /// The bridge containers attach to.
    pub fn bridge(&self) -> &str {
        &self.inner.bridge
    }

    /// The overlay MTU given to containers.
    pub fn mtu(&self) -> u32 {
        self.inner.mtu
    }

    /// Whether fastdp is on (not --no-fastdp).
    pub fn fastdp(&self) -> bool {
        self.inner.fastdp
    }

    /// A local container interface appeared (its MAC is announced to peers).
    pub fn endpoint_added(&self, container: &str, netns: &Netns, info: &AttachInfo) {
        let _ = netns;
        {
            let mut l = lock(&self.inner.local);
            let e = l
                .entry(container.to_string())
                .or_insert((info.mac, Vec::new()));
            e.0 = info.mac;
            for a in &info.added {
                if !e.1.contains(a) {
                    e.1.push(*a);
                }
            }
        }
        let _ = self.inner.cmds.send(driver::Cmd::LocalChanged);
    }

    /// A local interface made by a runtime (Docker's plugin) appeared: its MAC and
    /// addresses are announced to peers like an attached container's.
    pub fn endpoint_mac_added(&self, key: &str, mac: [u8; 6], addrs: Vec<Ipv4Net>) {
        lock(&self.inner.local).insert(key.to_string(), (mac, addrs));
        let _ = self.inner.cmds.send(driver::Cmd::LocalChanged);
    }

    /// Whether exposed addresses are masqueraded (the last expose's choice).
    pub fn masquerade(&self) -> bool {
        *lock(&self.inner.masquerade)
    }

    /// Replaces the set of published ports (the caller applies the firewall after).
    pub fn set_published(&self, ports: Vec<weft_firewall::Published>) {
        *lock(&self.inner.published) = ports;
    }

    /// The published ports.
    pub fn published(&self) -> Vec<weft_firewall::Published> {
        lock(&self.inner.published).clone()
    }

    /// A local container interface went away.
    pub fn endpoint_removed(&self, container: &str, mac: &str) {
        let _ = mac;
        lock(&self.inner.local).remove(container);
        let _ = self.inner.cmds.send(driver::Cmd::LocalChanged);
    }

    /// The path and MTU in use to a peer, by its name.
    pub fn path_of(&self, peer: &str) -> Option<PathInfo> {
        lock(&self.inner.paths).get(peer).cloned()
    }

    /// Stops the driver (the sleeve goes, fastdp state stays in the kernel); waits for it.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmds.send(driver::Cmd::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    fn local_macs(&self) -> Vec<[u8; 6]> {
        lock(&self.inner.local).values().map(|(m, _)| *m).collect()
    }

    fn local_subnets(&self) -> Vec<Ipv4Net> {
        lock(&self.inner.local)
            .values()
            .flat_map(|(_, a)| a.iter().map(|n| n.trunc()))
            .collect()
    }
}

/// The containers of the registry of an earlier run whose namespace still exists.
fn local_from_registry(reg: &Registry) -> LocalEndpoints {
    let mut out = BTreeMap::new();
    for (id, e) in reg.iter() {
        let alive = Netns::open_path(std::path::Path::new(&e.netns))
            .map(|ns| ns.inode() == e.ns_inode)
            .unwrap_or(false);
        if let (true, Some(mac)) = (alive, wire::parse_mac(&e.mac)) {
            let addrs = e.addrs.iter().filter_map(|a| a.parse().ok()).collect();
            out.insert(id.clone(), (mac, addrs));
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
