//! weft's packet filtering and NAT, with nftables.
//!
//! The router describes what it wants ([`Ruleset`]: which ranges to masquerade, which
//! subnets to keep apart); [`render`] turns that into one nft script that replaces weft's
//! own tables atomically, and a [`Runner`] hands the script to the kernel. Nothing outside
//! the `weft` tables is ever touched, so the host's own firewall stays as it was, with one
//! exception: on a Docker host, [`DockerForward`] adds two tagged accept rules to Docker's
//! `DOCKER-USER` chain, without which Docker's `FORWARD` drop would stop weft's traffic.

mod docker_forward;
pub mod guard;
mod render;
mod rules;
mod runner;
pub mod services;

pub use docker_forward::{DockerForward, COMMENT, DOCKER_USER};
pub use guard::PortGuard;
pub use render::{render, render_clear, render_reset, DNAT_MARK, TABLE};
pub use rules::{Masquerade, Proto, Published, Ruleset};
pub use runner::{CommandRunner, Exec, ExecOutput, Runner};
pub use services::{render_svc_reset, SvcRule, SvcScope, SvcTable, SyncStats, SVC_TABLE};

/// What went wrong applying rules.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `nft` could not be started.
    #[error("cannot run {program} ({source}); install the nftables package")]
    Spawn {
        /// The program.
        program: String,
        /// Cause.
        source: std::io::Error,
    },
    /// `nft` refused the script.
    #[error("nftables refused weft's rules: {stderr}")]
    Rejected {
        /// What nft printed.
        stderr: String,
    },
    /// A published port that cannot be set up.
    #[error("cannot publish {mapping}: {reason}")]
    InvalidPublished {
        /// The mapping (`HOST_IP:HOST_PORT->ADDR:PORT/PROTO`).
        mapping: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A service rule that cannot be programmed.
    #[error("cannot program service {name:?}: {reason}")]
    InvalidService {
        /// The service.
        name: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A bridge name that cannot go into an iptables rule.
    #[error("bridge name {name:?} is invalid: {reason}")]
    InvalidBridge {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// `iptables` refused a command.
    #[error("`{command}` failed: {stderr}")]
    Iptables {
        /// The command line.
        command: String,
        /// What iptables printed.
        stderr: String,
    },
}

/// The firewall as the router sees it: apply the wanted state, or remove everything.
pub trait Firewall {
    /// Replaces weft's tables with exactly `rules`; invalid rules change nothing.
    fn apply(&mut self, rules: &Ruleset) -> Result<(), FirewallError>;
    /// Removes weft's tables (nothing of them left).
    fn reset(&mut self) -> Result<(), FirewallError>;
}

/// The nftables firewall: renders and runs scripts through a [`Runner`].
#[derive(Debug)]
pub struct Nftables<R: Runner> {
    runner: R,
}

impl<R: Runner> Nftables<R> {
    /// A firewall that runs its scripts with `runner`.
    pub fn new(runner: R) -> Self {
        Nftables { runner }
    }
}

impl<R: Runner> Firewall for Nftables<R> {
    fn apply(&mut self, rules: &Ruleset) -> Result<(), FirewallError> {
        rules.validate()?;
        self.runner.run(&render(rules))
    }

    fn reset(&mut self) -> Result<(), FirewallError> {
        self.runner.run(&render_reset())
    }
}

impl<R: Runner> Nftables<R> {
    /// Removes weft's rules but keeps the anti-spoofing guard and its sets.
    pub fn clear(&mut self) -> Result<(), FirewallError> {
        self.runner.run(&render_clear())
    }

    /// Lets a container port send from `g`'s addresses and MAC (and guards the port).
    pub fn guard_allow(&mut self, g: &PortGuard) -> Result<(), FirewallError> {
        self.runner.run(&guard::render_allow(g))
    }

    /// Takes back `g`'s addresses, and with `unguard` the port (see [`guard::render_revoke`]).
    pub fn guard_revoke(&mut self, g: &PortGuard, unguard: bool) -> Result<(), FirewallError> {
        self.runner.run(&guard::render_revoke(g, unguard))
    }

    /// Makes the guard hold exactly `all` (at start-up).
    pub fn guard_sync(&mut self, all: &[PortGuard]) -> Result<(), FirewallError> {
        self.runner.run(&guard::render_sync(all))
    }
}
