//! `weft lab`: a multi-host network on one machine, in network namespaces. Hosts
//! `LAB-h1..N` are joined by a bridge in `LAB-ul`; containers are `LAB-c-NAME`. Nothing
//! is created in the machine's own namespace, and everything is found again by name, so
//! `weft lab down` cleans up after a crash too. With `--docker` every host also runs its
//! own dockerd (`docker.rs`).

mod container;
mod docker;
mod down;
mod exec;
mod files;
mod list;
mod names;
mod netns;
mod up;

use anyhow::Result;

use crate::cli::LabCommand;

/// Runs one `weft lab` command.
pub fn run(command: LabCommand) -> Result<()> {
    match command {
        LabCommand::Up {
            hosts,
            name,
            docker,
        } => up::up(&name, hosts, docker),
        LabCommand::Exec { host, name, cmd } => exec::exec(&name, &host, &cmd),
        LabCommand::Container {
            host,
            container,
            addrs,
            name,
            services,
        } => container::container(&name, &host, &container, &addrs, &services),
        LabCommand::Down { name } => down::down(&name),
        LabCommand::List => list::list(),
    }
}
