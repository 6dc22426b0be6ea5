//! Docker on this host: the network/IPAM plugin dockerd calls, the `weft` network created
//! at launch, the API proxy behind `weft env`, and Docker events that keep weft's view of
//! containers true (also for what happened while the router was down), including the
//! services a container is a task of (label `weft.service`).

pub mod events;
pub mod labels;
pub mod owner;
pub mod plugin;
pub mod saved;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use weft_api::Paths;
use weft_docker::engine::Engine;

use crate::containers::Containers;
use crate::shutdown::Shutdown;
pub use plugin::RouterBackend;

/// Name of the network `weft launch` creates on Docker (`docker run --net=weft`).
pub const NETWORK: &str = "weft";
/// Driver and IPAM driver name (the plugin socket's name in the plugin directory).
pub const DRIVER: &str = "weft";
/// How long launch waits for Docker to create the `weft` network.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// The running Docker integration.
#[derive(Clone)]
pub struct DockerHandle {
    /// The plugin's state and the router's side of its calls.
    pub backend: RouterBackend,
    /// Client of this host's dockerd.
    pub engine: Arc<Engine>,
    /// dockerd's socket.
    pub docker_socket: PathBuf,
    /// The router's stop signal (the plugin, proxy and event tasks end with it).
    pub shutdown: Shutdown,
}

/// The Docker socket the router should use: `DOCKER_HOST`, unless that points at weft's
/// own proxy (a shell after `eval $(weft env)`), then `ORIG_DOCKER_HOST` or the default.
pub fn docker_host(proxy_socket: &Path) -> Option<String> {
    let proxy = format!("unix://{}", proxy_socket.display());
    let env = std::env::var("DOCKER_HOST").ok().filter(|v| !v.is_empty());
    match env {
        Some(v) if v == proxy => std::env::var("ORIG_DOCKER_HOST")
            .ok()
            .filter(|v| !v.is_empty() && *v != proxy),
        other => other,
    }
}

/// This host's dockerd when it answers; `None` when this host has no Docker (weft works
/// without it, and the plugin and the proxy stay off).
pub async fn connect(paths: &Paths) -> Option<Arc<Engine>> {
    let host = docker_host(&paths.proxy_socket());
    let engine = match Engine::from_docker_host(host.as_deref()) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("Docker integration off: {e}");
            return None;
        }
    };
    let docker_socket = engine.socket().to_path_buf();
    if !docker_socket.exists() {
        tracing::info!(socket = %docker_socket.display(), "no Docker here: the plugin and the proxy are off");
        return None;
    }
    if let Err(e) = engine.ping().await {
        tracing::warn!(socket = %docker_socket.display(), "Docker does not answer ({e}): the plugin and the proxy are off");
        return None;
    }
    Some(Arc::new(engine))
}

/// Starts the Docker integration on `engine` (from [`connect`]): the plugin, the proxy
/// and the event follower. The `weft` network is created in the background.
pub async fn start(
    engine: Arc<Engine>,
    containers: Arc<Containers>,
    paths: &Paths,
    shutdown: Shutdown,
) -> anyhow::Result<DockerHandle> {
    let docker_socket = engine.socket().to_path_buf();
    let saved_path = saved::path(&paths.state_dir);
    let backend = RouterBackend::new(
        containers.clone(),
        saved::Saved::load(&saved_path)?,
        saved_path,
    );
    let handle = DockerHandle {
        backend: backend.clone(),
        engine,
        docker_socket: docker_socket.clone(),
        shutdown: shutdown.clone(),
    };
    handle.restore_endpoints().await;

    // The plugin first: creating the network makes dockerd call it.
    let plugin_socket = paths.plugin_socket();
    let listener = bind_socket(&plugin_socket, None)?;
    let b = Arc::new(backend.clone());
    let stop = shutdown.stopped();
    tokio::spawn(async move {
        if let Err(e) = weft_docker::plugin::serve(listener, b, stop).await {
            tracing::error!("Docker plugin stopped: {e}");
        }
    });
    tracing::info!(socket = %plugin_socket.display(), "Docker plugin listening");

    let parts = &containers;
    let bridge = parts.datapath.bridge().to_string();
    // Published ports answer on 127.0.0.1 too: DNATed loopback traffic must be routable
    // out of the bridge (the setting goes with the bridge on reset).
    let localnet =
        tokio::task::spawn_blocking(move || weft_datapath::sysctl::enable_route_localnet(&bridge))
            .await?;
    if let Err(e) = localnet {
        tracing::warn!("published ports will not answer on 127.0.0.1: {e}");
    }

    events::reconcile(&handle, true).await;
    // In the background: the network's gateway address comes from IPAM, which may wait
    // for the other peers (consensus) that are launched after this one.
    tokio::spawn(create_network_until_done(handle.clone()));

    let proxy_socket = paths.proxy_socket();
    let listener = bind_socket(&proxy_socket, Some(&docker_socket))?;
    let config = weft_docker::proxy::ProxyConfig {
        default_network: NETWORK.to_string(),
        default_subnet: parts.ipam.default_subnet(),
        range: parts.ipam.range(),
        dns_server: parts.dns.is_on().then_some(weft_dns::DOCKER_DNS_ADDR),
        dns_domain: parts
            .dns
            .domain()
            .map(|d| d.trim_end_matches('.').to_string()),
        driver: DRIVER.to_string(),
    };
    let stop = shutdown.stopped();
    let upstream = docker_socket.clone();
    tokio::spawn(async move {
        weft_docker::proxy::serve(listener, upstream, config, stop).await;
    });
    tracing::info!(socket = %proxy_socket.display(), "Docker proxy listening");

    tokio::spawn(events::run(handle.clone()));
    Ok(handle)
}

/// Creates the network `weft` on Docker, retrying until it exists or the router stops.
async fn create_network_until_done(handle: DockerHandle) {
    let mut delay = Duration::from_secs(1);
    loop {
        let attempt = tokio::time::timeout(CREATE_TIMEOUT, handle.ensure_network());
        let result = tokio::select! {
            _ = handle.shutdown.stopped() => return,
            r = attempt => r,
        };
        match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => tracing::warn!("{e:#}; trying again in {}s", delay.as_secs()),
            Err(_) => tracing::warn!(
                "Docker did not create the network {NETWORK} within {}s (IPAM may be waiting for its peers); trying again",
                CREATE_TIMEOUT.as_secs()
            ),
        }
        tokio::select! {
            _ = handle.shutdown.stopped() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Binds a unix socket, replacing a stale one; with `like`, the socket gets that file's
/// group and mode (the proxy is as reachable as Docker's own socket), else 0600.
fn bind_socket(path: &Path, like: Option<&Path>) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    let mode = match like.and_then(|p| std::fs::metadata(p).ok()) {
        Some(m) => {
            let _ = nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(m.gid())));
            m.mode() & 0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(l)
}

impl DockerHandle {
    /// The Docker section of `weft report` (counts as last seen; never waits).
    pub fn report(&self, paths: &weft_api::Paths) -> weft_api::DockerReport {
        let (networks, endpoints) = match self.backend.state().try_lock() {
            Ok(s) => (s.networks.len(), s.endpoints.len()),
            Err(_) => (0, 0),
        };
        weft_api::DockerReport {
            docker_socket: self.docker_socket.display().to_string(),
            plugin_socket: paths.plugin_socket().display().to_string(),
            proxy_socket: paths.proxy_socket().display().to_string(),
            networks,
            endpoints,
        }
    }

    /// Adds the containers on Docker's weft networks to `out` (a container attached both
    /// ways gets the plugin's addresses too).
    pub async fn add_endpoints(&self, out: &mut Vec<weft_api::ContainerReport>) {
        let s = self.backend.state().lock().await;
        for (ep, e) in &s.endpoints {
            let id = e
                .container
                .clone()
                .unwrap_or_else(|| format!("endpoint:{ep}"));
            match out.iter_mut().find(|c| c.id == id) {
                Some(c) => c.addrs.extend(e.addr.iter().map(|a| a.to_string())),
                None => out.push(weft_api::ContainerReport {
                    id,
                    netns: String::new(),
                    ifname: String::new(),
                    mac: e.mac.clone(),
                    addrs: e.addr.iter().map(|a| a.to_string()).collect(),
                    hostname: None,
                }),
            }
        }
    }

    /// The containers of Docker's weft endpoints with their addresses (those that are
    /// tasks of services stay tasks across a restart of the router).
    pub async fn containers_on_weft(&self) -> Vec<(String, Vec<std::net::Ipv4Addr>)> {
        let s = self.backend.state().lock().await;
        let mut out: Vec<(String, Vec<std::net::Ipv4Addr>)> = Vec::new();
        for e in s.endpoints.values() {
            let (Some(c), Some(a)) = (&e.container, e.addr) else {
                continue;
            };
            match out.iter_mut().find(|(id, _)| id == c) {
                Some((_, addrs)) => addrs.push(a.addr()),
                None => out.push((c.clone(), vec![a.addr()])),
            }
        }
        out
    }

    /// Announces the endpoints of an earlier run (MACs to peers, ports to the firewall).
    async fn restore_endpoints(&self) {
        let s = self.backend.state().lock().await.clone();
        for (id, e) in &s.endpoints {
            self.backend.announce_endpoint(id, e);
        }
        self.backend.apply_published().await;
    }

    /// Removes Docker's networks of driver weft (for `weft reset`); a network that still
    /// has containers stays, with a warning naming it.
    pub async fn remove_networks(&self) {
        let nets = match self.engine.list_networks().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("cannot list Docker's networks to remove weft's: {e}");
                return;
            }
        };
        for n in nets.iter().filter(|n| n.driver == DRIVER) {
            // A container removed a moment ago may still be leaving the network.
            let mut tries = 0;
            loop {
                match self.engine.remove_network(&n.id).await {
                    Ok(()) => tracing::info!(network = %n.name, "Docker network removed"),
                    Err(e) if tries < 10 && e.to_string().contains("active endpoints") => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(e) => tracing::warn!(
                        network = %n.name,
                        "Docker network not removed ({e}); remove its containers, then `docker network rm {}`",
                        n.name
                    ),
                }
                break;
            }
        }
    }

    /// Creates the network `weft` on Docker unless it is there.
    async fn ensure_network(&self) -> anyhow::Result<()> {
        let nets = self.engine.list_networks().await?;
        if let Some(n) = nets.iter().find(|n| n.name == NETWORK) {
            if n.driver != DRIVER {
                tracing::warn!(
                    driver = %n.driver,
                    "Docker already has a network {NETWORK} of another driver; `docker run --net={NETWORK}` will not use weft"
                );
            }
            return Ok(());
        }
        let subnet = self.backend.containers().ipam.default_subnet();
        let req = weft_docker::engine::CreateNetwork {
            name: NETWORK.to_string(),
            driver: DRIVER.to_string(),
            ipam_driver: Some(DRIVER.to_string()),
            subnet: Some(subnet.to_string()),
            ..Default::default()
        };
        match self.engine.create_network(&req).await {
            Ok(_) => {
                tracing::info!(%subnet, "Docker network {NETWORK} created");
                Ok(())
            }
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(anyhow::anyhow!(
                "cannot create the Docker network {NETWORK}: {e}"
            )),
        }
    }
}
