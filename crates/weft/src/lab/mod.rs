//! `weft lab`: a multi-host network on one machine, in network namespaces.

use anyhow::{bail, Result};

use crate::cli::LabCommand;

/// Runs one `weft lab` command.
pub fn run(command: LabCommand) -> Result<()> {
    let _ = command;
    bail!("weft lab: not available yet")
}
