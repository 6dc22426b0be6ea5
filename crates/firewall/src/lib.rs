//! weft's packet filtering and NAT, with nftables.
//!
//! The router describes what it wants ([`Ruleset`]: which ranges to masquerade, which
//! subnets to keep apart); [`render`] turns that into one nft script that replaces weft's
//! own tables atomically, and a [`Runner`] hands the script to the kernel. Nothing outside
//! the `weft` tables is ever touched, so the host's own firewall stays as it was.

mod render;
mod rules;
mod runner;

pub use render::{render, render_reset, TABLE};
pub use rules::{Masquerade, Ruleset};
pub use runner::{CommandRunner, Runner};

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
}

/// The firewall as the router sees it: apply the wanted state, or remove everything.
pub trait Firewall {
    /// Replaces weft's tables with exactly `rules`.
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
        self.runner.run(&render(rules))
    }

    fn reset(&mut self) -> Result<(), FirewallError> {
        self.runner.run(&render_reset())
    }
}
