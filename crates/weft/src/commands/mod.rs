//! One function per command; each returns an error whose text is the one line the user sees.

mod cni;
mod containers;
mod datapath;
mod dns;
mod docker;
mod ipam;
mod launch;
mod mesh;
mod services;
mod status;
mod ui;

use anyhow::Result;
use weft_api::{ApiClient, Paths};

use crate::cli::Command;

/// Runs one parsed command.
pub fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Launch(args) => launch::launch(args),
        Command::Stop => launch::stop(),
        Command::Version => {
            println!("weft {}", weft_api::VERSION);
            Ok(())
        }
        Command::Status { section } => status::status(section),
        Command::Report => status::report(),
        Command::Ui => ui::ui(),
        Command::Lab { command } => crate::lab::run(command),
        Command::Service { command } => services::run(command),
        Command::Cni { command } => cni::run(command),
        Command::Reset { force } => datapath::reset(force),
        Command::Connect { replace, peers } => mesh::connect(peers, replace),
        Command::Forget { peers } => mesh::forget(peers),
        Command::Rmpeer { names } => ipam::rmpeer(names),
        Command::Prime => ipam::prime(),
        Command::Ps { containers: c } => containers::ps(c),
        Command::Attach(args) => containers::attach(args),
        Command::Detach(args) => containers::detach(args),
        Command::Expose {
            addrs,
            without_masquerade,
        } => datapath::expose(addrs, without_masquerade),
        Command::Hide { addrs } => datapath::hide(addrs),
        Command::DnsAdd(args) => dns::add(args),
        Command::DnsRemove(args) => dns::remove(args),
        Command::DnsLookup { name } => dns::lookup(name),
        Command::DnsArgs => dns::args(),
        Command::Env { restore } => docker::env(restore),
        Command::Config => docker::config(),
        Command::Run { args } => docker::run(args),
    }
}

/// Whether a word is an address form (`net:...`, `ip:...`, `CIDR`) rather than a
/// container or a docker flag (a flag may hold a path, like `--mount=src=/x`).
fn is_addr_form(s: &str) -> bool {
    s.starts_with("net:") || s.starts_with("ip:") || (s.contains('/') && !s.starts_with('-'))
}

/// A client for this host's router (paths from the environment).
pub fn client() -> ApiClient {
    ApiClient::new(Paths::from_env().socket())
}

/// Runs a future to completion on a small runtime (the CLI is synchronous otherwise).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds")
        .block_on(f)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src is readable") {
            let p = e.expect("an entry").path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The CLI speaks to the router through weft-api's types; the router crate itself is
    /// used only through its one entry point (run the daemon, offline reset, the lab).
    #[test]
    fn the_cli_uses_the_router_only_through_its_entry_point() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let needle = ["weft_", "router::"].concat();
        for f in files {
            let code = std::fs::read_to_string(&f).expect("readable");
            for (i, _) in code.match_indices(&needle) {
                let rest = &code[i + needle.len()..];
                assert!(
                    rest.starts_with("entry::"),
                    "{} uses the router crate outside its entry module: {}",
                    f.display(),
                    rest.lines().next().unwrap_or_default()
                );
            }
        }
    }
}
