//! `weft lab up`: the underlay namespace with its bridge, one namespace per host joined to
//! it by a veth made directly between the two namespaces (nothing is ever created in the
//! machine's own namespace), per-host directories and /etc/netns files. A failure half
//! way removes everything made so far. With `--docker`, each host then gets its dockerd
//! (see `docker.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::docker;
use super::down;
use super::files;
use super::names::{self, HOST_IFNAME, UNDERLAY_BRIDGE, UNDERLAY_PREFIX_LEN};
use super::netns;

/// `weft lab up --hosts N --name LAB [--docker]`.
pub fn up(lab: &str, hosts: u32, docker: bool) -> Result<()> {
    names::validate_lab_name(lab).map_err(|e| anyhow!("{e}; pick another --name"))?;
    names::validate_hosts(hosts).map_err(anyhow::Error::msg)?;
    // Missing Docker programs are found before anything is made.
    let tools = if docker {
        Some(docker::preflight()?)
    } else {
        None
    };
    refuse_if_present(lab)?;

    // Claiming the lab directory is atomic: of two `lab up` racing for a name, one wins.
    let base = files::labs_dir();
    files::create_dir(&base, 0o755)?;
    let dir = files::lab_dir(lab);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!(already_exists(lab, &format!("{} exists", dir.display())))
        }
        Err(e) => bail!("cannot create {}: {e}", dir.display()),
    }

    // From here on everything named after the lab is ours: rolling back is `down`.
    // Ctrl-C (or SIGTERM/SIGHUP) no longer kills us half way but makes us roll back.
    catch_interrupts();
    let started = Instant::now();
    let built = build(lab, hosts).and_then(|()| match &tools {
        Some(t) => docker::start(lab, hosts, t, &check_interrupted),
        None => Ok(()),
    });
    match built {
        Ok(()) => {
            let secs = started.elapsed().as_secs_f64();
            if tools.is_some() {
                eprintln!(
                    "lab {lab}: ready in {secs:.1} s: {hosts} host(s) h1..h{hosts} on 172.29.0.0/24, \
                     each with its dockerd and image {}; try `weft lab exec --name {lab} h1 -- \
                     docker run --rm busybox echo hi`",
                    docker::IMAGE
                );
            } else {
                eprintln!(
                    "lab {lab}: ready: {hosts} host(s) h1..h{hosts} on 172.29.0.0/24; \
                     try `weft lab exec --name {lab} h1 -- ping -c1 h{}`",
                    hosts.min(2)
                );
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("lab {lab}: setup failed ({e:#}); removing what was made");
            let removed = down::remove(lab, true)?;
            if !removed.errors.is_empty() {
                eprintln!(
                    "lab {lab}: could not remove everything: {}",
                    removed.errors.join("; ")
                );
            }
            Err(e.context(format!("lab {lab} was not created")))
        }
    }
}

fn already_exists(lab: &str, evidence: &str) -> String {
    format!(
        "lab {lab} already exists ({evidence}); remove it with `weft lab down --name {lab}` \
         or pick another --name"
    )
}

/// Fails if any piece of a lab of this name is present (namespaces, /etc/netns, dir).
fn refuse_if_present(lab: &str) -> Result<()> {
    let mut evidence = Vec::new();
    let nss: Vec<String> = down::lab_namespaces(lab)?
        .into_iter()
        .map(|(_, ns)| ns)
        .collect();
    if !nss.is_empty() {
        evidence.push(format!("namespaces {}", nss.join(" ")));
    }
    let etc: Vec<String> = files::list_etc()?
        .into_iter()
        .filter(|ns| names::classify(lab, ns).is_some())
        .collect();
    if !etc.is_empty() {
        evidence.push(format!("{} entries {}", files::ETC_NETNS, etc.join(" ")));
    }
    let dir = files::lab_dir(lab);
    if dir.exists() {
        evidence.push(format!("{} exists", dir.display()));
    }
    if !evidence.is_empty() {
        bail!(already_exists(lab, &evidence.join(", ")));
    }
    Ok(())
}

/// Set by a signal handler when the user interrupts `lab up`.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_interrupts() {
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        // Without it, an interrupt would leave a partial lab; that is all we lose.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn build(lab: &str, hosts: u32) -> Result<()> {
    let ul = names::underlay_ns(lab);
    eprintln!("lab {lab}: underlay namespace {ul} with bridge {UNDERLAY_BRIDGE}");
    netns::add(&ul)?;
    netns::ip_batch(
        &ul,
        &[
            "link set lo up".to_string(),
            format!("link add {UNDERLAY_BRIDGE} up type bridge"),
        ],
    )?;

    let hosts_file = names::host_hosts_file(lab, hosts);
    for i in 1..=hosts {
        check_interrupted()?;
        let host = names::host_name(i);
        let ns = names::host_ns(lab, i);
        let addr = names::underlay_ip(i);
        eprintln!(
            "lab {lab}: host {host}: namespace {ns}, {HOST_IFNAME} {addr}/{UNDERLAY_PREFIX_LEN}"
        );

        let dirs = files::host_dirs(lab, &host);
        files::create_dir(&dirs.state, 0o700)?;
        files::create_dir(&dirs.run, 0o755)?;
        files::create_dir(&dirs.plugins, 0o755)?;
        files::write_etc(
            &ns,
            &[
                ("hosts", hosts_file.clone()),
                ("resolv.conf", names::host_resolv_conf()),
            ],
        )?;

        netns::add(&ns)?;
        // The veth is made inside the underlay namespace with its peer moved straight into
        // the host namespace, so it never exists in the machine's own namespace.
        netns::ip_batch(
            &ul,
            &[format!(
                "link add {host} master {UNDERLAY_BRIDGE} up type veth peer name {HOST_IFNAME} netns {ns}"
            )],
        )?;
        netns::ip_batch(
            &ns,
            &[
                "link set lo up".to_string(),
                format!("addr add {addr}/{UNDERLAY_PREFIX_LEN} dev {HOST_IFNAME}"),
                format!("link set {HOST_IFNAME} up"),
            ],
        )?;
    }
    check_interrupted()
}
