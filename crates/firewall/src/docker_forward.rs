//! Letting weft's traffic through Docker's iptables `FORWARD` chain.
//!
//! dockerd sets the policy of the `filter` table's `FORWARD` chain to `DROP` and jumps
//! first to the `DOCKER-USER` chain, the place Docker leaves to its users. A packet must be
//! accepted by every base chain of a hook, so no accept in weft's own nftables tables can
//! undo that drop; and with `bridge-nf-call-iptables=1` even frames bridged between two
//! containers on weft's bridge pass that chain (with the bridge as input and output
//! device). Without help, a Docker host would cut its weft containers off from each other,
//! from the outside and from their published ports.
//!
//! [`DockerForward::ensure`] therefore inserts two rules at the top of `DOCKER-USER`,
//! tagged with the comment `weft`:
//!
//! ```text
//! -A DOCKER-USER -i BRIDGE -m comment --comment weft -j ACCEPT
//! -A DOCKER-USER -o BRIDGE -m comment --comment weft -j ACCEPT
//! ```
//!
//! They accept, in iptables, everything that enters or leaves weft's bridge. This does not
//! weaken weft's isolation of subnets: an iptables accept only ends the iptables chain;
//! weft's `inet weft` forward chain and `bridge weft` forward chain are base chains of
//! their own that still see every such packet and drop those between two subnets of the
//! range (every base chain must accept). The rules only take Docker's default drop out of
//! the way, so a Docker host forwards weft's traffic exactly like a host without Docker
//! (where the `FORWARD` policy is `ACCEPT`): weft's policy lives in weft's tables, not in
//! the `FORWARD` policy. One consequence, the same as on a host without Docker: a weft
//! container that the host routes into one of Docker's own bridges (a `-i BRIDGE` packet)
//! is not stopped by Docker's rules for that bridge.
//!
//! When there is no `DOCKER-USER` chain (no dockerd, or one started without iptables),
//! nothing is done; the router calls `ensure` again when the firewall is refreshed, which
//! covers a dockerd started after weft. Only IPv4 (`iptables`) is handled, like weft's
//! overlay.

use crate::runner::Exec;
use crate::FirewallError;

/// The chain dockerd leaves to its users, jumped to first from `FORWARD`.
pub const DOCKER_USER: &str = "DOCKER-USER";
/// The comment that marks weft's rules in `DOCKER-USER`.
pub const COMMENT: &str = "weft";

const IPTABLES: &str = "iptables";
/// More copies of one rule than this means something keeps adding them: stop deleting.
const MAX_COPIES: usize = 64;

/// weft's accept rules in Docker's `DOCKER-USER` chain (see the module documentation).
#[derive(Debug)]
pub struct DockerForward<E: Exec> {
    exec: E,
}

/// The two rule specifications for `bridge`, in the order they end up in the chain.
fn rules(bridge: &str) -> [[&str; 8]; 2] {
    let rule = |dir| {
        [
            dir,
            bridge,
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "ACCEPT",
        ]
    };
    [rule("-i"), rule("-o")]
}

/// Refuses names that are not plain interface names (`+` would be an iptables wildcard).
fn check_bridge(name: &str) -> Result<(), FirewallError> {
    let bad = |reason: &'static str| FirewallError::InvalidBridge {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 15 {
        return Err(bad("an interface name has 1 to 15 characters"));
    }
    if name == "." || name == ".." || name.starts_with('-') {
        return Err(bad("not an interface name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(bad(
            "only letters, digits, '-', '_' and '.' are accepted in a bridge name",
        ));
    }
    Ok(())
}

impl<E: Exec> DockerForward<E> {
    /// Manages the rules through `exec` (e.g. a [`crate::CommandRunner`]).
    pub fn new(exec: E) -> Self {
        DockerForward { exec }
    }

    fn iptables(&mut self, args: &[&str]) -> Result<crate::ExecOutput, FirewallError> {
        let mut all = vec!["-w"];
        all.extend_from_slice(args);
        self.exec.exec(IPTABLES, &all)
    }

    fn refused(args: &[&str], stderr: &str) -> FirewallError {
        FirewallError::Iptables {
            command: format!("{IPTABLES} -w {}", args.join(" ")),
            stderr: stderr.to_string(),
        }
    }

    /// Whether dockerd's `DOCKER-USER` chain exists (no `iptables` at all: it does not).
    pub fn chain_exists(&mut self) -> Result<bool, FirewallError> {
        let args = ["-t", "filter", "-S", DOCKER_USER];
        match self.iptables(&args) {
            Ok(out) if out.success() => Ok(true),
            // iptables says 1 for a missing chain (or a missing filter table).
            Ok(out) if out.code == Some(1) => Ok(false),
            Ok(out) => Err(Self::refused(&args, &out.stderr)),
            Err(FirewallError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn present(&mut self, rule: &[&str]) -> Result<bool, FirewallError> {
        let mut args = vec!["-t", "filter", "-C", DOCKER_USER];
        args.extend_from_slice(rule);
        Ok(self.iptables(&args)?.success())
    }

    fn delete(&mut self, rule: &[&str]) -> Result<(), FirewallError> {
        let mut args = vec!["-t", "filter", "-D", DOCKER_USER];
        args.extend_from_slice(rule);
        let out = self.iptables(&args)?;
        if out.success() {
            Ok(())
        } else {
            Err(Self::refused(&args, &out.stderr))
        }
    }

    /// Puts weft's accept rules for `bridge` at the top of `DOCKER-USER` (once; rules
    /// already there stay). Returns whether the chain exists: `false` means there is no
    /// Docker drop to get past and nothing was done. A failure half way removes what this
    /// call inserted.
    pub fn ensure(&mut self, bridge: &str) -> Result<bool, FirewallError> {
        check_bridge(bridge)?;
        if !self.chain_exists()? {
            return Ok(false);
        }
        let mut inserted: Vec<[&str; 8]> = Vec::new();
        // Inserting at position 1 in reverse order leaves them in `rules` order on top.
        for rule in rules(bridge).into_iter().rev() {
            let res = self.present(&rule).and_then(|present| {
                if present {
                    return Ok(false);
                }
                let mut args = vec!["-t", "filter", "-I", DOCKER_USER, "1"];
                args.extend_from_slice(&rule);
                let out = self.iptables(&args)?;
                if out.success() {
                    Ok(true)
                } else {
                    Err(Self::refused(&args, &out.stderr))
                }
            });
            match res {
                Ok(true) => inserted.push(rule),
                Ok(false) => {}
                Err(e) => {
                    for r in &inserted {
                        let _ = self.delete(r);
                    }
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Deletes weft's accept rules for `bridge` from `DOCKER-USER` (every copy) and
    /// nothing else; returns how many it deleted. Without the chain there is nothing to do.
    pub fn remove(&mut self, bridge: &str) -> Result<usize, FirewallError> {
        check_bridge(bridge)?;
        if !self.chain_exists()? {
            return Ok(0);
        }
        let mut deleted = 0;
        for rule in rules(bridge) {
            for _ in 0..MAX_COPIES {
                if !self.present(&rule)? {
                    break;
                }
                self.delete(&rule)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExecOutput;

    /// A fake `iptables` holding one `DOCKER-USER` chain as a list of rule strings.
    #[derive(Default)]
    struct FakeIptables {
        chain: Option<Vec<String>>,
        calls: Vec<String>,
        /// Refuse `-I` after this many successful inserts.
        inserts_allowed: Option<usize>,
    }

    fn out(code: i32) -> Result<ExecOutput, FirewallError> {
        Ok(ExecOutput {
            code: Some(code),
            ..Default::default()
        })
    }

    impl Exec for &mut FakeIptables {
        fn exec(&mut self, program: &str, args: &[&str]) -> Result<ExecOutput, FirewallError> {
            assert_eq!(program, "iptables");
            self.calls.push(args.join(" "));
            let rest = match args {
                ["-w", "-t", "filter", rest @ ..] => rest,
                _ => panic!("unexpected call {args:?}"),
            };
            let Some(chain) = self.chain.as_mut() else {
                return out(1);
            };
            match rest {
                ["-S", "DOCKER-USER"] => out(0),
                ["-C", "DOCKER-USER", rule @ ..] => out(if chain.contains(&rule.join(" ")) {
                    0
                } else {
                    1
                }),
                ["-I", "DOCKER-USER", "1", rule @ ..] => {
                    if let Some(n) = self.inserts_allowed.as_mut() {
                        if *n == 0 {
                            return out(4);
                        }
                        *n -= 1;
                    }
                    chain.insert(0, rule.join(" "));
                    out(0)
                }
                ["-D", "DOCKER-USER", rule @ ..] => {
                    match chain.iter().position(|r| *r == rule.join(" ")) {
                        Some(i) => {
                            chain.remove(i);
                            out(0)
                        }
                        None => out(1),
                    }
                }
                _ => panic!("unexpected call {args:?}"),
            }
        }
    }

    const USER_RULE: &str = "-s 10.1.0.0/16 -j DROP";

    fn docker_chain() -> FakeIptables {
        FakeIptables {
            chain: Some(vec![USER_RULE.to_string()]),
            ..Default::default()
        }
    }

    #[test]
    fn ensure_puts_both_rules_on_top_once() {
        let mut ipt = docker_chain();
        assert!(DockerForward::new(&mut ipt).ensure("weft").unwrap());
        assert!(DockerForward::new(&mut ipt).ensure("weft").unwrap());
        assert_eq!(
            ipt.chain.as_deref().unwrap(),
            [
                "-i weft -m comment --comment weft -j ACCEPT",
                "-o weft -m comment --comment weft -j ACCEPT",
                USER_RULE,
            ]
        );
    }

    #[test]
    fn without_docker_nothing_is_done() {
        let mut ipt = FakeIptables::default();
        assert!(!DockerForward::new(&mut ipt).ensure("weft").unwrap());
        assert_eq!(DockerForward::new(&mut ipt).remove("weft").unwrap(), 0);
        assert_eq!(ipt.calls, ["-w -t filter -S DOCKER-USER"; 2]);
    }

    #[test]
    fn remove_deletes_only_weft_rules_for_that_bridge() {
        let mut ipt = docker_chain();
        DockerForward::new(&mut ipt).ensure("weft").unwrap();
        DockerForward::new(&mut ipt).ensure("other").unwrap();
        // A copy someone added by hand goes too.
        ipt.chain
            .as_mut()
            .unwrap()
            .push("-o weft -m comment --comment weft -j ACCEPT".into());
        assert_eq!(DockerForward::new(&mut ipt).remove("weft").unwrap(), 3);
        assert_eq!(
            ipt.chain.as_deref().unwrap(),
            [
                "-i other -m comment --comment weft -j ACCEPT",
                "-o other -m comment --comment weft -j ACCEPT",
                USER_RULE,
            ]
        );
        assert_eq!(DockerForward::new(&mut ipt).remove("weft").unwrap(), 0);
    }

    #[test]
    fn a_failed_insert_rolls_back() {
        let mut ipt = docker_chain();
        ipt.inserts_allowed = Some(1);
        let err = DockerForward::new(&mut ipt)
            .ensure("weft")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("iptables -w -t filter -I DOCKER-USER 1 -i weft"),
            "{err}"
        );
        assert_eq!(ipt.chain.as_deref().unwrap(), [USER_RULE]);
    }

    #[test]
    fn bad_bridge_names_are_refused_before_any_call() {
        let mut ipt = docker_chain();
        for bad in ["", "weft+", "a b", "sixteen-chars-xx", "..", "we\"ft", "-j"] {
            assert!(DockerForward::new(&mut ipt).ensure(bad).is_err(), "{bad:?}");
            assert!(DockerForward::new(&mut ipt).remove(bad).is_err(), "{bad:?}");
        }
        assert!(ipt.calls.is_empty());
    }
}
