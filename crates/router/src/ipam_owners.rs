//! Owners of addresses taken through the raw IPAM API (`/ipam/allocate`, `/ipam/claim`),
//! as one kind of owner for the audit at start (`crate::owners`): each is recorded in
//! `$WEFT_STATE_DIR/ipam-owners.json` before IPAM is asked and forgotten once it holds
//! nothing, so what such a client holds survives restarts as it did before the audit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::owners::{AddrOwner, Claim};

/// File name in the state dir.
pub const FILE: &str = "ipam-owners.json";

/// The owners of the raw IPAM API, persisted on every change.
#[derive(Debug)]
pub struct ApiOwners {
    path: PathBuf,
    owners: Mutex<BTreeSet<String>>,
}

impl ApiOwners {
    /// Loads the owners recorded by the last run (none without a file).
    pub fn load(state_dir: &Path) -> anyhow::Result<Arc<ApiOwners>> {
        let path = state_dir.join(FILE);
        let owners = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                anyhow::anyhow!(
                    "{} is damaged ({e}); move it away (addresses taken through /ipam/allocate are then released at start)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        Ok(Arc::new(ApiOwners {
            path,
            owners: Mutex::new(owners),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, owners: &BTreeSet<String>) -> Result<(), String> {
        let bytes = serde_json::to_vec(owners).map_err(|e| e.to_string())?;
        crate::persist::write_atomic(&self.path, &bytes)
            .map_err(|e| format!("cannot record the owner in {}: {e}", self.path.display()))
    }

    /// Records `owner` (before IPAM is asked for it).
    pub fn add(&self, owner: &str) -> Result<(), String> {
        let mut o = self.lock();
        if o.insert(owner.to_string()) {
            if let Err(e) = self.save(&o) {
                o.remove(owner);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Forgets `owner` (it holds nothing any more).
    pub fn remove(&self, owner: &str) -> Result<(), String> {
        let mut o = self.lock();
        if o.remove(owner) {
            self.save(&o)?;
        }
        Ok(())
    }
}

impl AddrOwner for ApiOwners {
    const KIND: &'static str = "ipam-api";

    async fn claims(&self) -> Vec<Claim> {
        self.lock().iter().map(|o| Claim::all(o)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owners::Owner;

    #[tokio::test]
    async fn owners_survive_a_restart_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let o = ApiOwners::load(dir.path()).unwrap();
        o.add("a").unwrap();
        o.add("b").unwrap();
        o.remove("a").unwrap();
        let again = ApiOwners::load(dir.path()).unwrap();
        assert_eq!(again.owned().await.addrs, vec![Claim::all("b")]);
    }
}
