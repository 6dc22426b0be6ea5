//! `weft launch` and `weft stop`: start the router (in the background unless told
//! otherwise) and stop it.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use weft_api::Paths;
use weft_router::entry::{Config, LaunchFlags, ReadySignal, READY_FD_ENV};

use crate::cli::LaunchArgs;

/// How long `weft launch` waits for the router's API to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `weft stop` waits for the router to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The flags of `weft launch` as the router takes them.
pub fn launch_flags(args: &LaunchArgs) -> LaunchFlags {
    LaunchFlags {
        name: args.name.clone(),
        nickname: args.nickname.clone(),
        password: args.password.clone(),
        trusted_subnets: args.trusted_subnets.clone(),
        port: args.port,
        mtu: args.mtu,
        no_fastdp: args.no_fastdp,
        ipalloc_range: args.ipalloc_range.clone(),
        ipalloc_default_subnet: args.ipalloc_default_subnet.clone(),
        ipalloc_init: args.ipalloc_init.clone(),
        no_dns: args.no_dns,
        dns_domain: args.dns_domain.clone(),
        no_discovery: args.no_discovery,
        conn_limit: args.conn_limit,
        peers: args.peers.clone(),
        kube_peers: args.kube_peers,
        kube_api: args.kube_api.clone(),
        kube_node: args.kube_node.clone(),
        kube_poll: args.kube_poll,
        kube_reclaim_after: args.kube_reclaim_after,
    }
}

/// `weft launch`: every flag is parsed once, here; a bad one stops the launch.
pub fn launch(args: LaunchArgs) -> Result<()> {
    let paths = Paths::from_env();
    let mut config = Config::parse(&launch_flags(&args), paths.clone())?;
    if let Some(pid) = paths.running_pid() {
        if !(exiting(pid) && wait_unlocked(&paths, EXIT_WAIT)) {
            bail!("weft is already running (pid {pid}); stop it with `weft stop` first");
        }
    }
    if args.foreground {
        let ready = ReadySignal::from_env();
        config.log_to_stderr = ready.is_none();
        return weft_router::entry::run(config, ready);
    }
    start_background(&paths)
}

/// How long `weft launch` waits for a router that was killed to finish exiting.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Whether `pid` is dying: its main thread is a zombie (other threads, still exiting,
/// hold its files and so the pid-file lock for a moment) or it is gone.
fn exiting(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Waits until no router holds the pid-file lock; false if one still does after `timeout`.
fn wait_unlocked(paths: &Paths, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while paths.running_pid().is_some() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Re-runs this binary as `weft launch --foreground ...` in a new session and waits for
/// its readiness line.
fn start_background(paths: &Paths) -> Result<()> {
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let exe = std::env::current_exe().context("cannot find the weft binary")?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.push("--foreground".to_string());
    let child_fd = write_end.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(&args)
        .env(READY_FD_ENV, child_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // Keep the readiness pipe open across exec.
            let flags = libc::fcntl(child_fd, libc::F_GETFD);
            libc::fcntl(child_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the router process")?;
    drop(write_end);
    let line = read_ready_line(read_end, START_TIMEOUT);
    match line {
        Ok(l) if l == "ok" => Ok(()),
        Ok(l) if !l.is_empty() => {
            let _ = child.wait();
            Err(anyhow!("{l}"))
        }
        Ok(_) => {
            let status = child.wait().ok();
            Err(anyhow!(
                "the router exited during start-up ({}); see {}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                paths.log_file().display()
            ))
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn read_ready_line(fd: OwnedFd, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut file = std::fs::File::from(fd);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "the router did not answer within {} s; see its log",
                timeout.as_secs()
            );
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as u32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("waiting for the router: {e}"),
        }
        let mut chunk = [0u8; 512];
        let n = file
            .read(&mut chunk)
            .context("reading the router's readiness")?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.contains(&b'\n') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// `weft stop`.
pub fn stop() -> Result<()> {
    let paths = Paths::from_env();
    let Some(pid) = paths.running_pid() else {
        bail!(
            "weft is not running (no router holds {})",
            paths.pid_file().display()
        );
    };
    let asked = super::block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            super::client().post::<_, ()>("/stop", &()),
        )
        .await
    });
    if !matches!(asked, Ok(Ok(()))) {
        // The API does not answer; fall back to the signal the router also handles.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if !wait_unlocked(&paths, STOP_TIMEOUT) {
        bail!(
            "the router (pid {pid}) did not stop within {} s; see {}",
            STOP_TIMEOUT.as_secs(),
            paths.log_file().display()
        );
    }
    Ok(())
}
