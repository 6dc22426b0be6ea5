//! The attached containers, kept in `$WEFT_STATE_DIR/containers.json` so that `weft ps`,
//! `detach` and DNS survive a router restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_api::ContainerReport;

use crate::persist::{check_format, load_json, store_json};

/// The registry's file in the state directory.
pub const FILE: &str = "containers.json";
/// Version of the file format.
const FORMAT: u32 = 1;

/// One attached container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Namespace path it was attached by.
    pub netns: String,
    /// Inode of that namespace: finds the entry whichever path (or pid) names it.
    pub ns_inode: u64,
    /// Interface inside it.
    pub ifname: String,
    /// MAC of that interface, `aa:bb:..`.
    pub mac: String,
    /// Overlay addresses as CIDRs.
    pub addrs: Vec<String>,
    /// DNS name, if registered.
    pub hostname: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    containers: BTreeMap<String, Entry>,
}

/// Attached containers by id, persisted on every change.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    containers: BTreeMap<String, Entry>,
}

impl Registry {
    /// Loads the registry from the state dir (empty when there is none yet).
    pub fn load(state_dir: &Path) -> anyhow::Result<Registry> {
        let path = state_dir.join(FILE);
        let containers = match load_json::<File>(&path, "start with no containers")? {
            Some(file) => {
                check_format(&path, file.format, FORMAT)?;
                file.containers
            }
            None => BTreeMap::new(),
        };
        Ok(Registry { path, containers })
    }

    /// The entry of a container.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.containers.get(id)
    }

    /// The id of the container whose namespace has inode `ino`.
    pub fn find_by_inode(&self, ino: u64) -> Option<&str> {
        self.containers
            .iter()
            .find(|(_, e)| e.ns_inode == ino)
            .map(|(id, _)| id.as_str())
    }

    /// All entries.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.containers.iter()
    }

    /// Sets (or replaces) a container's entry and persists.
    pub fn put(&mut self, id: &str, entry: Entry) -> anyhow::Result<()> {
        self.containers.insert(id.to_string(), entry);
        self.save()
    }

    /// Forgets a container and persists.
    pub fn remove(&mut self, id: &str) -> anyhow::Result<Option<Entry>> {
        let old = self.containers.remove(id);
        self.save()?;
        Ok(old)
    }

    /// What `weft ps` shows.
    pub fn report(&self) -> Vec<ContainerReport> {
        self.containers
            .iter()
            .map(|(id, e)| ContainerReport {
                id: id.clone(),
                netns: e.netns.clone(),
                ifname: e.ifname.clone(),
                mac: e.mac.clone(),
                addrs: e.addrs.clone(),
                hostname: e.hostname.clone(),
            })
            .collect()
    }

    fn save(&self) -> anyhow::Result<()> {
        let file = File {
            format: FORMAT,
            containers: self.containers.clone(),
        };
        Ok(store_json(&self.path, &file)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reload_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::load(dir.path()).unwrap();
        let e = Entry {
            netns: "/run/netns/x".into(),
            ns_inode: 7,
            ifname: "ethwe".into(),
            mac: "02:00:00:00:00:01".into(),
            addrs: vec!["10.32.0.1/12".into()],
            hostname: Some("a.weft.local.".into()),
        };
        r.put("c1", e.clone()).unwrap();
        let r2 = Registry::load(dir.path()).unwrap();
        assert_eq!(r2.get("c1"), Some(&e));
        std::fs::write(dir.path().join("containers.json"), b"{nonsense").unwrap();
        let err = Registry::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
