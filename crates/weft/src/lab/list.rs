//! `weft lab list`: the labs on this machine, found by their namespaces and directories.

use std::collections::BTreeSet;

use anyhow::Result;

use super::docker;
use super::down;
use super::files;
use super::names::{self, Member};
use super::netns;

/// Names of the labs present (an underlay namespace, an /etc/netns entry of one, or a
/// lab directory says a lab is there).
pub fn labs() -> Result<BTreeSet<String>> {
    let mut labs = BTreeSet::new();
    for ns in netns::list()?.into_iter().chain(files::list_etc()?) {
        if let Some(lab) = names::lab_of_underlay(&ns) {
            labs.insert(lab.to_string());
        }
    }
    if let Ok(dir) = std::fs::read_dir(files::labs_dir()) {
        for entry in dir.filter_map(|e| e.ok()) {
            if let Ok(name) = entry.file_name().into_string() {
                if names::validate_lab_name(&name).is_ok() && entry.path().is_dir() {
                    labs.insert(name);
                }
            }
        }
    }
    Ok(labs)
}

/// `weft lab list`: one line per lab, `NAME  hosts: h1 h2  containers: c1`, and for a
/// Docker lab `dockerd running on: h1 h2` (those whose dockerd answers).
pub fn list() -> Result<()> {
    let labs = labs()?;
    if labs.is_empty() {
        eprintln!("no labs (create one with `weft lab up`)");
    }
    for lab in labs {
        let mut hosts = Vec::new();
        let mut containers = Vec::new();
        for (m, _) in down::lab_namespaces(&lab)? {
            match m {
                Member::Host(i) => hosts.push(names::host_name(i)),
                Member::Container(c) => containers.push(c),
                Member::Underlay => {}
            }
        }
        let mut line = format!("{lab}  hosts: {}", or_none(&hosts));
        line.push_str(&format!("  containers: {}", or_none(&containers)));
        if files::has_docker(&lab) {
            line.push_str(&format!(
                "  dockerd running on: {}",
                or_none(&docker::running_hosts(&lab))
            ));
        }
        if !netns::exists(&names::underlay_ns(&lab)) {
            line.push_str("  (incomplete: remove it with `weft lab down --name ");
            line.push_str(&lab);
            line.push_str("`)");
        }
        println!("{line}");
    }
    Ok(())
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(" ")
    }
}
