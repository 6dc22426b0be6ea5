//! Start-up and shutdown of the router process: lock, pid file, sockets, readiness, signals.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{anyhow, Context};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::{TcpListener, UnixListener};

use crate::config::Config;
use crate::state::Router;

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
    config.validate()?;
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
    let router = Router::new(config, name);
    runtime.block_on(serve(router, ready))?;
    let _ = std::fs::remove_file(paths.socket());
    let _ = std::fs::remove_file(paths.pid_file());
    tracing::info!("router stopped");
    Ok(())
}

async fn serve(router: Router, ready: &mut Option<ReadySignal>) -> anyhow::Result<()> {
    let paths = router.config().paths.clone();
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

    let stop_mesh = router.clone();
    let mesh = crate::mesh::start(
        crate::mesh::DriverConfig {
            name: router.name().to_string(),
            nickname: router.config().nickname.clone(),
            port: router.config().port,
            password: router.config().password.clone(),
            conn_limit: router.config().conn_limit,
            discovery: !router.config().no_discovery,
            peers: router.config().peers.clone(),
        },
        router.metrics_arc(),
        async move { stop_mesh.stopped().await },
    )
    .await?;
    router.set_mesh(mesh);
    router.set_parts(crate::containers::start(&router).await?);
    tokio::spawn(crate::containers::reconcile::run(router.clone()));
    if let Some(docker) = crate::docker::start(&router).await? {
        router.set_docker(docker);
    }

    let app = crate::api::routes(router.clone());
    let public = crate::api::public_routes(router.clone());
    let stop_unix = router.clone();
    let stop_tcp = router.clone();
    let unix_server = axum::serve(unix, app.clone())
        .with_graceful_shutdown(async move { stop_unix.stopped().await });
    let tcp_server =
        axum::serve(tcp, public).with_graceful_shutdown(async move { stop_tcp.stopped().await });
    let unix_task = tokio::spawn(async move { unix_server.await });
    let tcp_task = tokio::spawn(async move { tcp_server.await });
    tokio::spawn(watch_signals(router.clone()));

    if let Some(r) = ready.take() {
        r.ready();
    }
    tracing::info!(socket = %socket.display(), http = weft_api::paths::HTTP_ADDR, "API listening");

    router.stopped().await;
    let _ = unix_task.await;
    let _ = tcp_task.await;
    // The sleeve's threads hold UDP 6783: let them go before the pid file is released,
    // so a launch right after `weft stop` can bind it.
    if let Ok(parts) = router.parts() {
        parts.datapath.stop().await;
    }
    Ok(())
}

async fn watch_signals(router: Router) {
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
    router.shutdown();
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

/// The pid of the running router, if one holds the lock on its pid file.
pub fn running_pid(pid_file: &Path) -> Option<u32> {
    let file = File::open(pid_file).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_again_on_drop) => None,
        Err((file, _)) => std::io::read_to_string(file).ok()?.trim().parse().ok(),
    }
}
