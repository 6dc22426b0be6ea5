//! `weft expose`, `weft hide`, `weft reset`: the host on the overlay, and removing
//! everything weft made on this host.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use weft_api::{AddrsResponse, ExposeRequest, HideRequest, Paths, ResetRequest};
use weft_router::entry::{reset_host, restore_forwarding, BRIDGE};

use super::{block_on, client};

/// How long `weft reset` waits for the router to hand over and exit.
const RESET_TIMEOUT: Duration = Duration::from_secs(30);

/// `weft expose`: prints the host's overlay address(es).
pub fn expose(addrs: Vec<String>, without_masquerade: bool) -> Result<()> {
    let req = ExposeRequest {
        addrs,
        without_masquerade,
    };
    let resp: AddrsResponse = block_on(client().post("/expose", &req))?;
    for a in resp.addrs {
        println!("{a}");
    }
    Ok(())
}

/// `weft hide`: prints the addresses taken away.
pub fn hide(addrs: Vec<String>) -> Result<()> {
    let resp: AddrsResponse = block_on(client().post("/hide", &HideRequest { addrs }))?;
    for a in resp.addrs {
        println!("{a}");
    }
    Ok(())
}

/// `weft reset`: through the router when it runs (it hands its address space over first
/// unless `force`), then directly in the kernel, so nothing is left even without a router.
pub fn reset(force: bool) -> Result<()> {
    let paths = Paths::from_env();
    let mut problems = Vec::new();
    if let Some(pid) = paths.running_pid() {
        let asked = block_on(async {
            tokio::time::timeout(
                RESET_TIMEOUT,
                client().post::<_, ()>("/reset", &ResetRequest { force }),
            )
            .await
        });
        match asked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("the router's reset: {e}")),
            Err(_) => problems.push("the router did not answer the reset in time".to_string()),
        }
        let deadline = Instant::now() + RESET_TIMEOUT;
        while paths.running_pid().is_some() {
            if Instant::now() > deadline {
                // It did not stop by itself: ask the way `weft stop` does.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                bail!(
                    "the router (pid {pid}) did not stop after the reset; see {}",
                    paths.log_file().display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Idempotent: removes whatever is left (all of it when no router ran).
    if let Err(e) = reset_host(BRIDGE) {
        problems.push(e);
    }
    if let Err(e) = restore_forwarding(&paths.state_dir) {
        problems.push(e);
    }
    // A reset peer starts afresh: its ring (handed over above when a router ran), names
    // and containers are forgotten; its peer name is kept.
    for f in [
        "containers.json",
        "expose.json",
        "ipam.state",
        "dns.json",
        "intents.json",
        "ipam-owners.json",
        "services.json",
    ] {
        let _ = std::fs::remove_file(paths.state_dir.join(f));
    }
    if !problems.is_empty() {
        bail!("reset incomplete: {}", problems.join("; "));
    }
    Ok(())
}
