//! What a router persists of the services core (services.json) and gives back to
//! [`crate::ServicesCore::new`] after a restart.

use serde::{Deserialize, Serialize};

use crate::names::NameState;
use crate::tasks::Task;

/// Every definition we know (with tombstones and withdrawn losers), our own tasks and our
/// clocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Lamport clock of the definitions.
    pub(crate) clock: u64,
    /// Every name we hold.
    pub(crate) names: Vec<NameState>,
    /// Sequence number of our task set.
    pub(crate) task_seq: u64,
    /// Our own tasks.
    pub(crate) tasks: Vec<Task>,
}
