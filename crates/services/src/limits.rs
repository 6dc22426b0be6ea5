//! Bounds of the services core: what a local request may create and what a peer's
//! gossip may make us hold. A peer whose gossip breaks one is dropped
//! ([`weft_mesh::Disconnect`], with the bound in the reason); a local request that would
//! break one is refused ([`crate::ServiceError::TooMany`]). The decoder ([`crate::wire`])
//! checks the lengths of single fields.

use crate::names::{NameState, Names};

/// Longest service name (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// Longest peer name (as the mesh bounds it).
pub const MAX_PEER_LEN: usize = weft_mesh::limits::MAX_NAME;
/// Longest container id or name.
pub const MAX_CONTAINER_LEN: usize = 255;
/// Longest HTTP health check path.
pub const MAX_PATH_LEN: usize = 256;
/// Most ports of one service.
pub const MAX_PORTS: usize = 64;
/// Most published ports of one service.
pub const MAX_PUBLISHED: usize = 64;
/// Shortest health check interval, ms.
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest health check interval, ms.
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Most live services a router creates (concurrent creates elsewhere may pass it a
/// little: [`MAX_NAMES`] leaves room).
pub const MAX_SERVICES: usize = 1_024;
/// Most removed names remembered (their tombstones); the oldest are forgotten first.
pub const MAX_DEAD_NAMES: usize = 1_024;
/// Most names a peer's gossip may make us hold.
pub const MAX_NAMES: usize = 4 * MAX_SERVICES;
/// Most creates held of one name (concurrent creates, and the losers' withdrawals).
pub const MAX_ENTRIES_PER_NAME: usize = 16;
/// Most tasks of one host.
pub const MAX_TASKS_PER_HOST: usize = 4_096;

/// Checks names from a peer against the bounds, given what we hold; the error names the
/// bound.
pub(crate) fn check_names(held: &Names, incoming: &[NameState]) -> Result<(), String> {
    if incoming.len() > MAX_NAMES {
        return Err(format!(
            "a services message of {} names (at most {MAX_NAMES})",
            incoming.len()
        ));
    }
    let new = incoming.iter().filter(|s| !held.holds(&s.name)).count();
    if held.len() + new > MAX_NAMES {
        return Err(format!(
            "{} service names held (at most {MAX_NAMES})",
            held.len() + new
        ));
    }
    for s in incoming {
        let n = held.entries_after_merge(s);
        if n > MAX_ENTRIES_PER_NAME {
            return Err(format!(
                "{n} creates of service {} (at most {MAX_ENTRIES_PER_NAME})",
                s.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Entry;

    fn names(n: usize, prefix: &str) -> Vec<NameState> {
        (0..n)
            .map(|i| NameState {
                name: format!("{prefix}{i}"),
                removed: 1,
                entries: vec![],
            })
            .collect()
    }

    #[test]
    fn bounds_on_message_names_held_and_creates_per_name() {
        let mut held = Names::default();
        assert!(check_names(&held, &names(MAX_NAMES, "n")).is_ok());
        let err = check_names(&held, &names(MAX_NAMES + 1, "n")).unwrap_err();
        assert!(err.contains("message"), "{err}");
        for st in names(MAX_NAMES / 2, "h") {
            held.merge(st);
        }
        let err = check_names(&held, &names(MAX_NAMES / 2 + 1, "n")).unwrap_err();
        assert!(err.contains("held"), "{err}");
        // Names we hold do not count twice.
        assert!(check_names(&held, &names(MAX_NAMES / 2, "h")).is_ok());
        let many = |from: u64| NameState {
            name: "web".into(),
            removed: 0,
            entries: (from..from + 9)
                .map(|v| Entry {
                    origin: "o".into(),
                    version: v,
                    spec: None,
                })
                .collect(),
        };
        held.merge(many(1));
        assert!(check_names(&held, &[many(1)]).is_ok(), "held already");
        let err = check_names(&held, &[many(20)]).unwrap_err();
        assert!(err.contains("18 creates of service web"), "{err}");
        // Unless a removal in the same state covers what we hold.
        let mut covering = many(20);
        covering.removed = 19;
        assert!(check_names(&held, &[covering]).is_ok());
    }
}
