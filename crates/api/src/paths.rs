//! Where a router keeps its state and its sockets. Several routers on one machine (one per
//! lab host) must not collide, so every path comes from the environment.

use std::path::PathBuf;

/// Default for `WEFT_STATE_DIR`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/weft";
/// Default for `WEFT_RUN_DIR`.
pub const DEFAULT_RUN_DIR: &str = "/run/weft";
/// Default for `WEFT_DOCKER_PLUGIN_DIR`.
pub const DEFAULT_DOCKER_PLUGIN_DIR: &str = "/run/docker/plugins";
/// TCP address of the router's HTTP API inside its own network namespace.
pub const HTTP_ADDR: &str = "127.0.0.1:6784";

/// The directories and files one router uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Persistent state (peer name, IPAM ring, DNS entries).
    pub state_dir: PathBuf,
    /// Runtime files (API socket, pid file, log).
    pub run_dir: PathBuf,
    /// Where the Docker plugin socket is served.
    pub docker_plugin_dir: PathBuf,
}

impl Paths {
    /// Paths from `WEFT_STATE_DIR`, `WEFT_RUN_DIR` and `WEFT_DOCKER_PLUGIN_DIR`, with defaults.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Paths {
            state_dir: var("WEFT_STATE_DIR", DEFAULT_STATE_DIR),
            run_dir: var("WEFT_RUN_DIR", DEFAULT_RUN_DIR),
            docker_plugin_dir: var("WEFT_DOCKER_PLUGIN_DIR", DEFAULT_DOCKER_PLUGIN_DIR),
        }
    }

    /// The API unix socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("weft.sock")
    }

    /// The pid file of the running router.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("weft.pid")
    }

    /// The pid of the running router, if one holds the lock on its pid file (the lock,
    /// not the file, says a router runs: a crashed router leaves the file unlocked).
    pub fn running_pid(&self) -> Option<u32> {
        use nix::fcntl::{Flock, FlockArg};
        let file = std::fs::File::open(self.pid_file()).ok()?;
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_unlocked_again_on_drop) => None,
            Err((file, _)) => std::io::read_to_string(file).ok()?.trim().parse().ok(),
        }
    }

    /// The router's log file.
    pub fn log_file(&self) -> PathBuf {
        self.run_dir.join("weft.log")
    }

    /// The Docker API proxy's socket (`weft env` points `DOCKER_HOST` at it).
    pub fn proxy_socket(&self) -> PathBuf {
        self.run_dir.join("docker.sock")
    }

    /// The Docker network/IPAM plugin's socket, where dockerd looks for plugin `weft`.
    pub fn plugin_socket(&self) -> PathBuf {
        self.docker_plugin_dir.join("weft.sock")
    }
}
