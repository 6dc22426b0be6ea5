//! What a router persists of the services core (services.json) and gives back to
//! [`crate::ServicesCore::new`] after a restart.

use serde::{Deserialize, Serialize};

use crate::spec::ServiceSpec;
use crate::tasks::Task;

/// Every definition we know (with tombstones and withdrawn losers), our own tasks and our
/// clocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Lamport clock of the definitions.
    pub(crate) clock: u64,
    /// Every name we hold.
    pub(crate) names: Vec<SavedName>,
    /// Sequence number of our task set.
    pub(crate) task_seq: u64,
    /// Our own tasks.
    pub(crate) tasks: Vec<Task>,
}

/// One name's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedName {
    /// Service name.
    pub name: String,
    /// Version of its latest removal (0: never removed).
    pub removed: u64,
    /// Its creates not covered by the removal.
    pub entries: Vec<SavedEntry>,
}

/// One create of a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedEntry {
    /// The creating peer.
    pub origin: String,
    /// Its Lamport time.
    pub version: u64,
    /// The specification; None when its creator withdrew it (it lost).
    pub spec: Option<ServiceSpec>,
}
