//! Bounds on what a peer's DNS gossip may make us hold, against a hostile or broken peer.
//! A peer that breaks one is dropped ([`weft_mesh::Disconnect`], with the bound in the
//! reason) and its names with it; the router goes on serving the others'. Names longer
//! than [`crate::records::MAX_NAME_LEN`] do not decode at all ([`crate::wire`]).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::records::{Entry, EntryKey, EntryState, Records, MAX_ADDRS_PER_NAME};

/// Most entries of one peer we hold (live, and removed within the tombstone time).
pub const MAX_ENTRIES_PER_PEER: usize = 4_096;
/// Most entries one message may carry (a full state is one message).
pub const MAX_ENTRIES_PER_MESSAGE: usize = MAX_ENTRIES_PER_PEER;
/// Most entries a router makes of its own: half the bound its peers apply, so that their
/// copies, whose tombstones expire a little later than ours, stay under it.
pub const MAX_OWN_ENTRIES: usize = MAX_ENTRIES_PER_PEER / 2;

/// Checks `entries` of `origin` (a delta, or with `full` its whole state) against the
/// bounds, given what `held` holds of it; the error names the bound.
pub fn check_entries(
    held: &Records,
    origin: &str,
    entries: &[Entry],
    full: bool,
) -> Result<(), String> {
    if entries.len() > MAX_ENTRIES_PER_MESSAGE {
        return Err(format!(
            "a DNS gossip message of {} entries (at most {MAX_ENTRIES_PER_MESSAGE})",
            entries.len()
        ));
    }
    // What we would hold of the origin: a full state replaces our copy, a delta merges.
    let mut after: HashMap<&EntryKey, EntryState> = if full {
        HashMap::new()
    } else {
        held.origin_states(origin).collect()
    };
    for e in entries {
        let newer = after.get(&e.key).is_none_or(|old| e.state.beats(old));
        if newer {
            after.insert(&e.key, e.state);
        }
    }
    if after.len() > MAX_ENTRIES_PER_PEER {
        return Err(format!(
            "{} DNS entries of peer {origin} (at most {MAX_ENTRIES_PER_PEER} per peer)",
            after.len()
        ));
    }
    let touched: HashSet<&str> = entries.iter().map(|e| e.key.hostname.as_str()).collect();
    let mut addrs: HashMap<&str, HashSet<Ipv4Addr>> = HashMap::new();
    for (k, s) in &after {
        if !s.tombstone && touched.contains(k.hostname.as_str()) {
            addrs.entry(k.hostname.as_str()).or_default().insert(k.addr);
        }
    }
    if let Some((name, a)) = addrs.iter().find(|(_, a)| a.len() > MAX_ADDRS_PER_NAME) {
        return Err(format!(
            "{} addresses for {name} from peer {origin} (at most {MAX_ADDRS_PER_NAME} per name)",
            a.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(container: &str, name: &str, addr: u32, version: u64, tombstone: bool) -> Entry {
        Entry {
            key: EntryKey::new("evil", container, name, Ipv4Addr::from(addr)).unwrap(),
            state: EntryState { version, tombstone },
        }
    }

    #[test]
    fn bounds_on_message_peer_and_name() {
        let mut held = Records::new(60_000);
        let ok: Vec<Entry> = (0..10)
            .map(|i| entry(&format!("c{i}"), "a.weft.local", i, 1, false))
            .collect();
        assert!(check_entries(&held, "evil", &ok, false).is_ok());

        let big: Vec<Entry> = (0..=MAX_ENTRIES_PER_MESSAGE as u32)
            .map(|i| entry(&format!("c{i}"), &format!("n{i}.weft.local"), i, 1, false))
            .collect();
        let err = check_entries(&held, "evil", &big, true).unwrap_err();
        assert!(err.contains("message"), "{err}");

        // A delta on top of what we hold may not pass the per-peer bound.
        let half = MAX_ENTRIES_PER_PEER / 2;
        for i in 0..=half as u32 {
            held.merge(
                entry(&format!("h{i}"), &format!("h{i}.weft.local"), i, 1, false),
                0,
            );
        }
        let more: Vec<Entry> = (0..half as u32)
            .map(|i| entry(&format!("m{i}"), &format!("m{i}.weft.local"), i, 1, false))
            .collect();
        let err = check_entries(&held, "evil", &more, false).unwrap_err();
        assert!(err.contains("per peer"), "{err}");
        // The same as a full state replaces what we hold: within the bound.
        assert!(check_entries(&held, "evil", &more, true).is_ok());
        // Updates (tombstones) of entries we hold do not grow it.
        let gone: Vec<Entry> = (0..=half as u32)
            .map(|i| entry(&format!("h{i}"), &format!("h{i}.weft.local"), i, 2, true))
            .collect();
        assert!(check_entries(&held, "evil", &gone, false).is_ok());

        // One name with more addresses than a name may have.
        let wide: Vec<Entry> = (0..=MAX_ADDRS_PER_NAME as u32)
            .map(|i| entry(&format!("w{i}"), "web.weft.local", i, 1, false))
            .collect();
        let err = check_entries(&Records::new(60_000), "evil", &wide, true).unwrap_err();
        assert!(err.contains("per name"), "{err}");
        // As many containers on one address are one address.
        let same: Vec<Entry> = (0..=MAX_ADDRS_PER_NAME as u32)
            .map(|i| entry(&format!("w{i}"), "web.weft.local", 7, 1, false))
            .collect();
        assert!(check_entries(&Records::new(60_000), "evil", &same, true).is_ok());
    }
}
