//! Operations in flight, on disk: attach, detach, expose and hide record their intent in
//! `$WEFT_STATE_DIR/intents.json` before they touch IPAM or the kernel, and clear it when
//! done (success or undone failure). An intent still there at start-up is an operation a
//! kill -9 cut short; reconciliation (`containers::reconcile`, `datapath::expose`) finishes
//! or undoes it. Until that is done, the [`Gate`] holds new operations back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// File name in the state dir.
pub const FILE: &str = "intents.json";

/// The kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `weft attach`.
    Attach,
    /// `weft detach`.
    Detach,
    /// `weft expose` (and a Docker network's gateway).
    Expose,
    /// `weft hide`.
    Hide,
}

/// One operation in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// What.
    pub op: Op,
    /// Container id (the IPAM owner).
    pub id: String,
    /// Namespace path (empty for expose and hide).
    #[serde(default)]
    pub netns: String,
    /// Its inode (a path may name another namespace after a restart).
    #[serde(default)]
    pub ns_inode: u64,
    /// Interface in the container.
    #[serde(default)]
    pub ifname: String,
    /// For a detach or a hide: the addresses to remove.
    #[serde(default)]
    pub addrs: Vec<String>,
}

impl Intent {
    /// An operation on container `id`'s interface `ifname` in the namespace at `netns`
    /// (inode `ns_inode`); `addrs` are those a detach removes.
    pub fn container(
        op: Op,
        id: &str,
        (netns, ns_inode): (&str, u64),
        ifname: &str,
        addrs: Vec<String>,
    ) -> Intent {
        Intent {
            op,
            id: id.to_string(),
            netns: netns.to_string(),
            ns_inode,
            ifname: ifname.to_string(),
            addrs,
        }
    }

    /// An operation on the host's own addresses (expose, hide), owned by `owner`.
    pub fn host(op: Op, owner: &str, addrs: Vec<String>) -> Intent {
        Intent {
            op,
            id: owner.to_string(),
            netns: String::new(),
            ns_inode: 0,
            ifname: String::new(),
            addrs,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    ops: BTreeMap<u64, Intent>,
}

/// The operations in flight, persisted on every change.
#[derive(Debug)]
pub struct Intents {
    path: PathBuf,
    state: Mutex<(u64, BTreeMap<u64, Intent>)>,
}

/// Clears its intent when dropped (the operation finished, or undid itself).
#[derive(Debug)]
pub struct Pending {
    intents: Arc<Intents>,
    n: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.intents.end(self.n);
    }
}

impl Intents {
    /// Loads the intents left by the last run (none when there is no file).
    pub fn load(state_dir: &Path) -> anyhow::Result<Arc<Intents>> {
        let path = state_dir.join(FILE);
        let ops = match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice::<File>(&b)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{} is damaged ({e}); move it away (operations cut short by a crash are then not undone)",
                            path.display()
                        )
                    })?
                    .ops
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        let next = ops.keys().next_back().map_or(1, |n| n + 1);
        Ok(Arc::new(Intents {
            path,
            state: Mutex::new((next, ops)),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Intent>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, ops: &BTreeMap<u64, Intent>) -> std::io::Result<()> {
        let file = File {
            format: 1,
            ops: ops.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        crate::persist::write_atomic(&self.path, &bytes)
    }

    /// Records `intent` on disk before the operation changes anything.
    pub fn begin(self: &Arc<Self>, intent: Intent) -> Result<Pending, String> {
        let mut st = self.lock();
        let n = st.0;
        st.0 += 1;
        st.1.insert(n, intent);
        if let Err(e) = self.save(&st.1) {
            st.1.remove(&n);
            return Err(format!(
                "cannot record the operation in {} ({e}); nothing was changed",
                self.path.display()
            ));
        }
        Ok(Pending {
            intents: self.clone(),
            n,
        })
    }

    /// Clears intent `n` (finished at start-up).
    pub fn end(&self, n: u64) {
        let mut st = self.lock();
        if st.1.remove(&n).is_some() {
            if let Err(e) = self.save(&st.1) {
                tracing::warn!("cannot update {}: {e}", self.path.display());
            }
        }
    }

    /// The intents left by the last run.
    pub fn pending(&self) -> Vec<(u64, Intent)> {
        self.lock().1.iter().map(|(n, i)| (*n, i.clone())).collect()
    }
}

/// Holds operations that change state until start-up reconciliation has finished the
/// operations of the last run (which it must do on a state nobody else changes).
#[derive(Debug, Clone)]
pub struct Gate(tokio::sync::watch::Receiver<bool>);

/// Opens the [`Gate`] (once, when reconciliation is done).
#[derive(Debug)]
pub struct GateOpener(tokio::sync::watch::Sender<bool>);

impl Gate {
    /// A closed gate and what opens it.
    pub fn closed() -> (Gate, GateOpener) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (Gate(rx), GateOpener(tx))
    }

    /// Waits until the gate is open (at once when it is). A gate whose opener is gone
    /// without opening counts as open: the router is stopping anyway.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|open| *open).await;
    }

    /// Whether it is open now.
    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }
}

impl GateOpener {
    /// Opens the gate for good.
    pub fn open(self) {
        let _ = self.0.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: &str) -> Intent {
        Intent {
            op: Op::Attach,
            id: id.into(),
            netns: "/run/netns/x".into(),
            ns_inode: 7,
            ifname: "ethwe".into(),
            addrs: Vec::new(),
        }
    }

    #[test]
    fn an_intent_survives_a_crash_and_goes_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let intents = Intents::load(dir.path()).unwrap();
        let done = intents.begin(intent("done")).unwrap();
        let cut_short = intents.begin(intent("cut")).unwrap();
        drop(done);
        // kill -9: the guard of the second never runs.
        std::mem::forget(cut_short);
        let after = Intents::load(dir.path()).unwrap();
        let left: Vec<String> = after.pending().into_iter().map(|(_, i)| i.id).collect();
        assert_eq!(left, vec!["cut".to_string()]);
        // New operations after the restart do not reuse its number.
        let next = after.begin(intent("new")).unwrap();
        assert!(next.n > after.pending()[0].0);
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("intents.json"), b"{").unwrap();
        let err = Intents::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("intents.json") && err.contains("damaged"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_gate_holds_until_opened() {
        let (gate, opener) = Gate::closed();
        assert!(!gate.is_open());
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.wait().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        opener.open();
        waiter.await.unwrap();
        assert!(gate.is_open());
        gate.wait().await;
    }
}
