//! Handing an nft script to the kernel.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::FirewallError;

/// Something that applies an nft script atomically.
pub trait Runner {
    /// Applies `script` (nft's `-f` syntax) as one transaction.
    fn run(&mut self, script: &str) -> Result<(), FirewallError>;
}

/// Runs `nft -f -` (optionally behind a prefix such as `ip netns exec NS`).
#[derive(Debug, Clone)]
pub struct CommandRunner {
    argv: Vec<String>,
}

impl Default for CommandRunner {
    fn default() -> Self {
        CommandRunner {
            argv: vec!["nft".into()],
        }
    }
}

impl CommandRunner {
    /// `nft` in the current network namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// `nft` started through `prefix` (e.g. `["ip", "netns", "exec", "ns1"]`).
    pub fn with_prefix(prefix: &[&str]) -> Self {
        let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        argv.push("nft".into());
        CommandRunner { argv }
    }
}

impl Runner for CommandRunner {
    fn run(&mut self, script: &str) -> Result<(), FirewallError> {
        let (program, args) = self.argv.split_first().expect("argv always holds nft");
        let spawn = |source| FirewallError::Spawn {
            program: program.clone(),
            source,
        };
        let mut child = Command::new(program)
            .args(args)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(spawn)?;
        }
        let out = child.wait_with_output().map_err(spawn)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(FirewallError::Rejected {
                stderr: String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | "),
            })
        }
    }
}
