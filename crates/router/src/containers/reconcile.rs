//! Crash safety of attach and detach. Each records its intent in
//! `$WEFT_STATE_DIR/intents.json` before it touches IPAM or the kernel, and clears it when
//! done (success or undone failure). An intent still there at start-up is an operation a
//! kill -9 cut short: [`run`] finishes it so that every address in the kernel belongs to an
//! entry `weft ps` lists and no address held by IPAM is left without an owner:
//! - an attach is undone down to what the registry lists for the container (the client saw
//!   it fail): the addresses IPAM gave it beyond those are released and taken off the
//!   interface; with no entry at all, the interface goes;
//! - a detach is carried through to the end (its first step may already have happened).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use weft_datapath::Netns;

use super::{Containers, ContainersError};

/// The kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `weft attach`.
    Attach,
    /// `weft detach`.
    Detach,
}

/// One operation in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// What.
    pub op: Op,
    /// Container id (the IPAM owner).
    pub id: String,
    /// Namespace path.
    pub netns: String,
    /// Its inode (a path may name another namespace after a restart).
    pub ns_inode: u64,
    /// Interface in the container.
    pub ifname: String,
    /// For a detach: the addresses to remove.
    pub addrs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
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
        let path = state_dir.join("intents.json");
        let afresh = "start without undoing the operations a crash cut short";
        let ops = crate::persist::load_json::<File>(&path, afresh)?
            .map(|f| f.ops)
            .unwrap_or_default();
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
        crate::persist::store_json(&self.path, &file)
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

    fn end(&self, n: u64) {
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

/// Finishes the operations a crash cut short (see the module's doc). Runs at start-up,
/// in the background: IPAM may need its peers before it answers.
pub async fn run(c: Arc<Containers>) {
    for (n, intent) in c.intents.pending() {
        tracing::info!(op = ?intent.op, container = %intent.id, "finishing an operation a crash cut short");
        let done = match intent.op {
            Op::Attach => undo_attach(&c, &intent).await,
            Op::Detach => finish_detach(&c, &intent).await,
        };
        match done {
            Ok(()) => c.intents.end(n),
            Err(e) => tracing::warn!(container = %intent.id, "cannot finish the operation: {e}"),
        }
    }
}

async fn undo_attach(parts: &Containers, intent: &Intent) -> Result<(), String> {
    let entry = parts.registry.lock().await.get(&intent.id).cloned();
    let keep: Vec<Ipv4Net> = entry
        .iter()
        .flat_map(|e| e.addrs.iter().filter_map(|a| a.parse().ok()))
        .collect();
    // IPAM may wait for its peers after a restart: give it time, within bounds.
    let mut owned = None;
    for attempt in 0..120u32 {
        match parts.ipam.lookup(&intent.id).await {
            Ok(v) => {
                owned = Some(v);
                break;
            }
            Err(e) if attempt == 119 => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let extra: Vec<Ipv4Net> = owned
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !keep.contains(a))
        .collect();
    let whole = entry.is_none();
    let (path, inode, ifname, remove) = (
        intent.netns.clone(),
        intent.ns_inode,
        intent.ifname.clone(),
        extra.clone(),
    );
    let kernel =
        tokio::task::spawn_blocking(move || undo_in_kernel(&path, inode, &ifname, &remove, whole))
            .await
            .map_err(|e| e.to_string())?;
    if let Err(e) = kernel {
        tracing::warn!(container = %intent.id, "undoing in the kernel: {e}");
    }
    for a in &extra {
        if let Err(e) = parts.ipam.release(&intent.id, Some(*a)).await {
            return Err(e.to_string());
        }
    }
    let mac = entry
        .as_ref()
        .and_then(|e| crate::datapath::wire::parse_mac(&e.mac));
    super::guard::revoke(
        super::guard::port_guard(inode, &intent.ifname, mac, &extra),
        whole,
    )
    .await;
    parts.dns.container_detached(&intent.id, &extra).await;
    tracing::info!(container = %intent.id, released = ?extra, "attach cut short by a crash undone");
    Ok(())
}

/// Takes `remove` off the container's interface (the interface itself with `whole`), or
/// deletes the host side of its veth when the namespace is gone.
fn undo_in_kernel(
    path: &str,
    inode: u64,
    ifname: &str,
    remove: &[Ipv4Net],
    whole: bool,
) -> Result<(), String> {
    let same_ns = Netns::open_path(Path::new(path))
        .ok()
        .filter(|ns| ns.inode() == inode);
    if let Some(ns) = &same_ns {
        if whole {
            let _ = weft_datapath::detach(ns, ifname, &[]);
        } else if !remove.is_empty() {
            weft_datapath::detach(ns, ifname, remove).map_err(|e| e.to_string())?;
        }
    }
    if whole {
        let host_veth = weft_datapath::attach::host_veth_name_for(inode, ifname);
        let mut h = weft_datapath::nl::Handle::current().map_err(|e| e.to_string())?;
        weft_datapath::link::delete_by_name(&mut h, &host_veth).map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn finish_detach(c: &Containers, intent: &Intent) -> Result<(), String> {
    let req = weft_api::DetachRequest {
        container: Some(intent.id.clone()),
        netns: String::new(),
        addrs: intent.addrs.clone(),
    };
    match super::detach(c, req).await {
        // Nothing left to detach: the cut-short detach had got that far.
        Ok(_) | Err(ContainersError::NotAttached(_) | ContainersError::NoneOfThese { .. }) => {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
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
}
