//! [`SvcTable`]: programs the service table, whole the first time, then by differences.

use std::collections::BTreeMap;

use crate::runner::Runner;
use crate::FirewallError;

use super::model::{normalise, Norm, SvcRule, SvcScope};
use super::render::{render_full, render_svc_reset, Diff};

/// What one [`SvcTable::sync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The table was programmed whole (first sync, or the one after a failure).
    pub full: bool,
    /// Services that appeared.
    pub added: usize,
    /// Services whose rules changed.
    pub changed: usize,
    /// Services that went away.
    pub removed: usize,
    /// Size of the script sent to nft (0: nothing to do, nft not run).
    pub script_bytes: usize,
}

/// The service table of one network namespace. It remembers what it programmed and never
/// lists the ruleset: a sync sends only what differs from the last successful one, so its
/// cost follows the change, not the number of services. The first sync, and the one after
/// a failure (the kernel's table may then be anything), replace the table whole.
#[derive(Debug)]
pub struct SvcTable<R: Runner> {
    runner: R,
    scope: SvcScope,
    /// What the kernel holds, by service name; `None`: unknown, program it whole.
    programmed: Option<BTreeMap<String, Norm>>,
}

impl<R: Runner> SvcTable<R> {
    /// A table programmed through `runner`; its first sync writes it whole.
    pub fn new(runner: R, scope: SvcScope) -> Self {
        SvcTable {
            runner,
            scope,
            programmed: None,
        }
    }

    /// The scope the table was made for.
    pub fn scope(&self) -> SvcScope {
        self.scope
    }

    /// Makes the table hold exactly `wanted`, in one nft transaction. Invalid rules change
    /// nothing. When the kernel refuses a difference (its table is not what this one
    /// programmed: someone removed it, say), the table is programmed whole at once; if
    /// that fails too, the error is returned and the next sync starts whole.
    pub fn sync(&mut self, wanted: &[SvcRule]) -> Result<SyncStats, FirewallError> {
        let next = normalise(wanted, self.scope)?;
        let mut stats = SyncStats::default();
        // `programmed` stays `None` until a script succeeds.
        if let Some(prev) = self.programmed.take() {
            let mut diff = Diff::default();
            for (name, old) in &prev {
                match next.get(name) {
                    None => stats.removed += 1,
                    Some(new) if new == old => continue,
                    Some(_) => stats.changed += 1,
                }
                diff.service(Some(old), next.get(name));
            }
            for (name, new) in &next {
                if !prev.contains_key(name) {
                    stats.added += 1;
                    diff.service(None, Some(new));
                }
            }
            let script = diff.script();
            stats.script_bytes = script.len();
            if script.is_empty() || self.runner.run(&script).is_ok() {
                self.programmed = Some(next);
                return Ok(stats);
            }
        }
        let script = render_full(self.scope, next.values());
        self.runner.run(&script)?;
        self.programmed = Some(next);
        Ok(SyncStats {
            full: true,
            added: self.programmed.as_ref().map_or(0, |p| p.len()),
            changed: 0,
            removed: 0,
            script_bytes: script.len(),
        })
    }

    /// Forgets what was programmed: the next sync replaces the table whole.
    pub fn invalidate(&mut self) {
        self.programmed = None;
    }

    /// Removes the whole table (a no-op when there is none); the next sync programs it whole.
    pub fn delete(&mut self) -> Result<(), FirewallError> {
        self.programmed = None;
        self.runner.run(&render_svc_reset())
    }
}
