//! Handing an nft script to the kernel, and running other firewall commands (`iptables`).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::FirewallError;

/// Something that applies an nft script atomically.
pub trait Runner {
    /// Applies `script` (nft's `-f` syntax) as one transaction.
    fn run(&mut self, script: &str) -> Result<(), FirewallError>;
}

/// What a finished command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ExecOutput {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Something that runs one firewall command (such as `iptables -S`) and reports how it
/// ended; a non-zero exit is an [`ExecOutput`], not an error.
pub trait Exec {
    /// Runs `program` with `args`.
    fn exec(&mut self, program: &str, args: &[&str]) -> Result<ExecOutput, FirewallError>;
}

/// Runs `nft -f -` and other commands (optionally behind a prefix such as
/// `ip netns exec NS`).
#[derive(Debug, Clone, Default)]
pub struct CommandRunner {
    prefix: Vec<String>,
}

impl CommandRunner {
    /// Commands in the current network namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commands started through `prefix` (e.g. `["ip", "netns", "exec", "ns1"]`).
    pub fn with_prefix(prefix: &[&str]) -> Self {
        CommandRunner {
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The command that starts `program` (behind the prefix), and its name for errors.
    fn command(&self, program: &str) -> (Command, String) {
        match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                (c, first.clone())
            }
            None => (Command::new(program), program.to_string()),
        }
    }
}

/// The first lines of what a command printed on stderr, on one line.
fn first_lines(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ")
}

impl Runner for CommandRunner {
    fn run(&mut self, script: &str) -> Result<(), FirewallError> {
        let (mut cmd, program) = self.command("nft");
        let spawn = |source| FirewallError::Spawn {
            program: program.clone(),
            source,
        };
        let mut child = cmd
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
                stderr: first_lines(&out.stderr),
            })
        }
    }
}

impl Exec for CommandRunner {
    fn exec(&mut self, program: &str, args: &[&str]) -> Result<ExecOutput, FirewallError> {
        let (mut cmd, started) = self.command(program);
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| FirewallError::Spawn {
                program: started,
                source,
            })?;
        Ok(ExecOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: first_lines(&out.stderr),
        })
    }
}
