//! Start-up and shutdown of the router process: lock, pid file, sockets, readiness, signals.
//! Start-up builds every handle once, in order (the Kubernetes node list when asked for,
//! mesh, data path, IPAM, the Kubernetes peers, DNS, services, containers, Docker), and only then
//! serves the API with them.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::{TcpListener, UnixListener};

use crate::api::{AppState, Handles};
use crate::config::Config;
use crate::containers::Containers;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

/// The environment variable through which `weft launch` passes the readiness pipe.
pub const READY_FD_ENV: &str = "WEFT_READY_FD";

/// Tells the process that launched the router whether start-up worked: one line,
/// `ok` or the error, on an inherited pipe.
#[derive(Debug)]
pub struct ReadySignal {
    pipe: File,
}

impl ReadySignal {
    /// Takes the pipe named by `WEFT_READY_FD`, if any (and unsets the variable so
    /// children do not inherit it).
    pub fn from_env() -> Option<Self> {
        let fd: i32 = std::env::var(READY_FD_ENV).ok()?.parse().ok()?;
        // SAFETY: the variable is only set by `weft launch` for this process.
        unsafe { std::env::remove_var(READY_FD_ENV) };
        // SAFETY: F_GETFD only queries whether the descriptor is open.
        if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
        // SAFETY: the fd is open (checked above) and owned by nothing else in this process.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Some(ReadySignal {
            pipe: File::from(owned),
        })
    }

    /// Start-up finished.
    pub fn ready(mut self) {
        let _ = self.pipe.write_all(b"ok\n");
    }

    /// Start-up failed with this reason.
    pub fn fail(mut self, why: &str) {
        let line = why.replace('\n', " ");
        let _ = writeln!(self.pipe, "{line}");
    }
}

/// Runs the router until it is stopped. `ready` is told once the API answers.
pub fn run(config: Config, ready: Option<ReadySignal>) -> anyhow::Result<()> {
    let mut ready = ready;
    match start(config, &mut ready) {
        Ok(()) => Ok(()),
        Err(e) => {
            if let Some(r) = ready.take() {
                r.fail(&format!("{e:#}"));
            }
            Err(e)
        }
    }
}

fn start(config: Config, ready: &mut Option<ReadySignal>) -> anyhow::Result<()> {
    let paths = config.paths.clone();
    create_dir(&paths.state_dir, 0o700)?;
    create_dir(&paths.run_dir, 0o755)?;
    let _lock = lock_pid_file(&paths.pid_file())?;

    crate::logging::init(&paths.log_file(), config.log_to_stderr)?;
    let name = crate::identity::load_or_create(&paths.state_dir, config.name.as_deref())?;
    tracing::info!(
        name = %name,
        nickname = %config.nickname,
        version = weft_api::VERSION,
        "router starting"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weft-router")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, name, ready))?;
    let _ = std::fs::remove_file(paths.socket());
    let _ = std::fs::remove_file(paths.pid_file());
    tracing::info!("router stopped");
    Ok(())
}

async fn serve(
    config: Config,
    name: String,
    ready: &mut Option<ReadySignal>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let paths = config.paths.clone();
    let socket = paths.socket();
    // We hold the pid-file lock, so a socket file left here is from a router that died.
    let _ = std::fs::remove_file(&socket);
    let unix = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", socket.display()))?;
    let tcp = TcpListener::bind(weft_api::paths::HTTP_ADDR)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot listen on {} ({e}); another router runs in this network namespace: \
                 stop it, or give this one its own namespace",
                weft_api::paths::HTTP_ADDR
            )
        })?;

    let shutdown = Shutdown::new();
    let handles = start_handles(config, name, started, shutdown.clone()).await?;
    let datapath = handles.containers.datapath.clone();

    let state = AppState::new(handles);
    let public = crate::api::public_routes(state.clone());
    let app = crate::api::routes(state);
    let unix_server = axum::serve(unix, app).with_graceful_shutdown(shutdown.stopped());
    let tcp_server = axum::serve(tcp, public).with_graceful_shutdown(shutdown.stopped());
    let unix_task = tokio::spawn(async move { unix_server.await });
    let tcp_task = tokio::spawn(async move { tcp_server.await });
    tokio::spawn(watch_signals(shutdown.clone()));

    if let Some(r) = ready.take() {
        r.ready();
    }
    tracing::info!(socket = %socket.display(), http = weft_api::paths::HTTP_ADDR, "API listening");

    shutdown.stopped().await;
    let _ = unix_task.await;
    let _ = tcp_task.await;
    // The sleeve's threads hold UDP 6783: let them go before the pid file is released,
    // so a launch right after `weft stop` can bind it.
    datapath.stop().await;
    Ok(())
}

/// Builds every handle of the router, each from those it needs, in dependency order.
async fn start_handles(
    config: Config,
    name: String,
    started: Instant,
    shutdown: Shutdown,
) -> anyhow::Result<Handles> {
    // The API is read first, so a router that cannot read it changes nothing on the host.
    let kube = match &config.kube {
        Some(k) => Some(
            crate::kube::KubePeers::prepare(
                k,
                config.port,
                config.peers.iter().map(|p| p.to_string()).collect(),
                &config.paths.state_dir,
            )
            .await?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let mesh = crate::mesh::start(
        crate::mesh::DriverConfig {
            name: name.clone(),
            nickname: config.nickname.clone(),
            port: config.port,
            password: config.password.clone(),
            conn_limit: config.conn_limit,
            discovery: !config.no_discovery,
            peers: config.peers.clone(),
        },
        metrics.clone(),
        shutdown.stopped(),
    )
    .await?;

    let range = config.range();
    // Before the bridge exists, so a refused launch changes nothing on the host.
    crate::ipam::check_host_routes(
        range,
        config.ipalloc_range.is_some(),
        crate::datapath::BRIDGE,
    )?;
    // The containers of an earlier run: their MACs, listeners and names come back.
    let registry = Registry::load(&config.paths.state_dir)?;
    crate::containers::guard::sync(&registry)
        .await
        .map_err(anyhow::Error::msg)?;
    let datapath = crate::datapath::DatapathHandle::start(
        &config,
        &name,
        mesh.clone(),
        &registry,
        shutdown.clone(),
    )
    .await?;
    let ipam = crate::ipam::IpamHandle::start(
        crate::ipam::IpamStart {
            name: name.clone(),
            range,
            default_subnet: config.ipalloc_default_subnet,
            // As weave-kube: consensus among the nodes listed at launch, unless told.
            init: match (&kube, &config.kube) {
                (Some(peers), Some(k)) if k.init_from_nodes => {
                    weft_ipam::InitMode::Consensus(peers.listed_nodes())
                }
                _ => config.ipalloc_init.clone(),
            },
            state_dir: config.paths.state_dir.clone(),
        },
        Some(mesh.clone()),
        shutdown.stopped(),
    )?;
    if let Some(kube) = kube {
        kube.run(mesh.clone(), ipam.clone(), shutdown.stopped());
    }
    let dns = crate::dns::DnsHandle::start(&config, &name, Some(mesh.clone()), &registry).await?;
    let services = crate::services::Services::start(crate::services::ServicesStart {
        me: &name,
        state_dir: &config.paths.state_dir,
        port: config.port,
        mesh: Some(&mesh),
        ipam: ipam.clone(),
        datapath: datapath.clone(),
        dns: dns.clone(),
        registry: &registry,
    })?;
    let engine = crate::docker::connect(&config.paths).await;
    let (ready, opener) = crate::intents::Gate::closed();
    let containers = Arc::new(Containers {
        ipam,
        datapath,
        dns,
        services: services.clone(),
        registry: tokio::sync::Mutex::new(registry),
        docker: engine.clone(),
        intents: crate::intents::Intents::load(&config.paths.state_dir)?,
        ready,
    });
    // Every kind of owner of addresses and bridge ports; a new kind (CNI attachments,
    // service VIPs) registers here, before reconciliation runs.
    let owners = crate::owners::OwnerRegistry::default();
    owners.register(Arc::new(crate::containers::owner::ContainerOwner(
        containers.clone(),
    )));
    owners.register(Arc::new(crate::datapath::expose::ExposeOwner {
        state_dir: config.paths.state_dir.clone(),
    }));
    owners.register(Arc::new(crate::services::VipOwner(services.clone())));
    owners.register(Arc::new(crate::datapath::ingress::IngressOwner));
    let ipam_owners = crate::ipam_owners::ApiOwners::load(&config.paths.state_dir)?;
    owners.register(ipam_owners.clone());
    let cni = crate::cni::Cni::new(containers.clone(), &config.paths.state_dir)?;
    let docker = match engine {
        Some(engine) => Some(
            crate::docker::start(engine, containers.clone(), &config.paths, shutdown.clone())
                .await?,
        ),
        None => None,
    };
    if let Some(d) = &docker {
        owners.register(Arc::new(crate::docker::owner::DockerOwner(
            d.backend.clone(),
        )));
    }
    tokio::spawn(crate::reconciliation::run(
        containers.clone(),
        cni.clone(),
        docker.clone(),
        owners,
        opener,
    ));
    Ok(Handles {
        config,
        name,
        started,
        metrics,
        mesh,
        containers,
        ipam_owners,
        cni,
        docker,
        shutdown,
    })
}

async fn watch_signals(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch signals; stop the router with `weft stop`");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.trigger();
}

fn create_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
    Ok(())
}

/// Takes an exclusive lock on the pid file and writes our pid into it. The lock (not the
/// file's existence) says a router runs, so a crashed router never blocks a new one.
fn lock_pid_file(path: &Path) -> anyhow::Result<Flock<File>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((file, _)) => {
            let pid = std::io::read_to_string(&file).unwrap_or_default();
            return Err(anyhow!(
                "weft is already running (pid {}); stop it with `weft stop` first",
                pid.trim()
            ));
        }
    };
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;
    lock.sync_all()?;
    Ok(lock)
}
