//! `weft lab down`: removes everything of a lab found by its name — processes, namespaces,
//! /etc/netns entries, the lab directory — also after a crash. `lab up` rolls back with it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::docker;
use super::files;
use super::names::{self, Member};
use super::netns;

/// How long processes get to exit after SIGTERM, and again after SIGKILL.
const TERM_WAIT: Duration = Duration::from_secs(5);
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What `remove` found and removed.
#[derive(Debug, Default)]
pub struct Removed {
    /// Processes stopped (pids).
    pub processes: Vec<u32>,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// /etc/netns entries deleted.
    pub etc: Vec<String>,
    /// The lab directory, if there was one.
    pub dir: Option<PathBuf>,
    /// What could not be removed.
    pub errors: Vec<String>,
}

impl Removed {
    /// Whether there was nothing of the lab.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.namespaces.is_empty()
            && self.etc.is_empty()
            && self.dir.is_none()
    }

    /// One line saying what was removed.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.processes.is_empty() {
            parts.push(format!("stopped {} process(es)", self.processes.len()));
        }
        if !self.namespaces.is_empty() {
            parts.push(format!("deleted namespaces {}", self.namespaces.join(" ")));
        }
        if !self.etc.is_empty() {
            parts.push(format!(
                "removed {} /etc/netns entr{}",
                self.etc.len(),
                if self.etc.len() == 1 { "y" } else { "ies" }
            ));
        }
        if let Some(d) = &self.dir {
            parts.push(format!("removed {}", d.display()));
        }
        parts.join(", ")
    }
}

/// `weft lab down --name LAB`.
pub fn down(lab: &str) -> Result<()> {
    names::validate_lab_name(lab).map_err(anyhow::Error::msg)?;
    let removed = remove(lab, true)?;
    if removed.is_empty() {
        println!("lab {lab}: nothing to remove");
    } else {
        println!("lab {lab}: {}", removed.summary());
    }
    if !removed.errors.is_empty() {
        bail!(
            "lab {lab}: could not remove everything: {}; run `weft lab down --name {lab}` again",
            removed.errors.join("; ")
        );
    }
    Ok(())
}

/// The lab's namespaces: hosts, then containers, then the underlay.
pub fn lab_namespaces(lab: &str) -> Result<Vec<(Member, String)>> {
    let mut found: Vec<(Member, String)> = netns::list()?
        .into_iter()
        .filter_map(|ns| names::classify(lab, &ns).map(|m| (m, ns)))
        .collect();
    found.sort();
    Ok(found)
}

/// Removes everything of lab `lab`. Errors on single items are collected, not fatal, so
/// that as much as possible goes.
pub fn remove(lab: &str, progress: bool) -> Result<Removed> {
    let say = |msg: String| {
        if progress {
            eprintln!("lab {lab}: {msg}");
        }
    };
    let mut removed = Removed::default();
    let namespaces: Vec<String> = lab_namespaces(lab)?.into_iter().map(|(_, ns)| ns).collect();

    // Docker first: containers, then each dockerd (which stops its containerd).
    let (dockers, errors) = docker::stop(lab, &say);
    removed.errors.extend(errors);
    let (stopped, stubborn) = stop_processes(lab, &namespaces, &say);
    let mut all: BTreeSet<u32> = dockers;
    all.extend(stopped);
    removed.processes = all.into_iter().collect();
    if !stubborn.is_empty() {
        removed
            .errors
            .push(format!("processes {stubborn:?} did not exit after SIGKILL"));
    }
    let (unmounted, errors) = docker::unmount_under(&files::lab_dir(lab));
    removed.errors.extend(errors);
    if !unmounted.is_empty() {
        say(format!(
            "unmounted {} mount(s) under the lab directory",
            unmounted.len()
        ));
    }
    let (cgroups, errors) = docker::remove_cgroups(lab);
    removed.errors.extend(errors);
    if cgroups > 0 {
        say(format!(
            "removed {cgroups} Docker cgroup(s) weft-lab-{lab}-h*"
        ));
    }

    for ns in namespaces {
        match netns::delete(&ns) {
            Ok(()) => removed.namespaces.push(ns),
            Err(e) => removed.errors.push(format!("{e:#}")),
        }
    }
    if !removed.namespaces.is_empty() {
        say(format!(
            "deleted namespaces {}",
            removed.namespaces.join(" ")
        ));
    }

    for ns in files::list_etc()? {
        if names::classify(lab, &ns).is_some() {
            match files::remove_tree(&files::etc_dir(&ns)) {
                Ok(_) => removed.etc.push(ns),
                Err(e) => removed.errors.push(format!("{e:#}")),
            }
        }
    }
    if !removed.etc.is_empty() {
        say(format!(
            "removed {} for {}",
            files::ETC_NETNS,
            removed.etc.join(" ")
        ));
    }

    let dir = files::lab_dir(lab);
    match files::remove_tree(&dir) {
        Ok(true) => {
            say(format!("removed {}", dir.display()));
            removed.dir = Some(dir);
        }
        Ok(false) => {}
        Err(e) => removed.errors.push(format!("{e:#}")),
    }
    Ok(removed)
}

/// Stops every process of the lab: those in its namespaces, those whose command line names
/// the lab directory (containerd, shims), those in its Docker cgroups, and their
/// descendants: SIGTERM, a bounded wait, then SIGKILL. Returns the pids seen and those
/// still alive at the end.
fn stop_processes(lab: &str, namespaces: &[String], say: &dyn Fn(String)) -> (Vec<u32>, Vec<u32>) {
    let me = std::process::id();
    let dir = files::lab_dir(lab);
    let alive = || -> BTreeSet<u32> {
        let seeds: BTreeSet<u32> = namespaces.iter().flat_map(|ns| netns::pids(ns)).collect();
        docker::lab_processes(&docker::scan_processes(), lab, &dir, &seeds, me)
    };
    let mut seen = alive();
    if seen.is_empty() {
        return (Vec::new(), Vec::new());
    }
    say(format!(
        "stopping {} process(es): {}",
        seen.len(),
        join(&seen)
    ));
    for (signal, wait) in [(Signal::SIGTERM, TERM_WAIT), (Signal::SIGKILL, KILL_WAIT)] {
        let now = alive();
        if now.is_empty() {
            break;
        }
        if signal == Signal::SIGKILL {
            say(format!("killing {} with SIGKILL", join(&now)));
        }
        for pid in &now {
            send(*pid, signal);
        }
        seen.extend(&now);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let left = alive();
            seen.extend(&left);
            if left.is_empty() {
                break;
            }
            // Processes that start meanwhile (children of the lab's) get the same signal.
            for pid in left.difference(&now) {
                send(*pid, signal);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (seen.into_iter().collect(), alive().into_iter().collect())
}

fn send(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        // The process may have exited since it was listed; that is fine.
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

fn join(pids: &BTreeSet<u32>) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}
