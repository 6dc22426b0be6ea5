//! The CNI attachments, kept in `$WEFT_STATE_DIR/cni.json` (written atomically) so that
//! results, CHECK and GC survive a router restart. An ADD is recorded as `adding` before
//! it changes anything and as `added` once it succeeded: an `adding` record found at
//! start-up is an ADD a kill -9 cut short, which the router then undoes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_api::{CniAttachment, CniKey};

/// The file in the state directory.
pub const FILE: &str = "cni.json";
const FORMAT: u32 = 1;

/// How far an ADD got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Recorded before the attach: not answered yet.
    Adding,
    /// Attached and answered.
    Added,
}

/// One attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// How far its ADD got.
    pub stage: Stage,
    /// What it is (for `adding`, only the key, namespace and id are known).
    pub attachment: CniAttachment,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    attachments: Vec<Record>,
}

/// The attachments, persisted on every change.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    records: Vec<Record>,
}

impl Store {
    /// Loads the store of the state dir (empty when there is none yet).
    pub fn load(state_dir: &Path) -> anyhow::Result<Store> {
        let path = state_dir.join(FILE);
        let records = match std::fs::read(&path) {
            Ok(b) => {
                let f: File = serde_json::from_slice(&b).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is damaged ({e}); move it away (CNI attachments are then forgotten: run GC or DEL them)",
                        path.display()
                    )
                })?;
                if f.format != FORMAT {
                    anyhow::bail!(
                        "{} has format {}, this weft reads {FORMAT}",
                        path.display(),
                        f.format
                    );
                }
                f.attachments
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        Ok(Store { path, records })
    }

    /// The record of `key`.
    pub fn get(&self, key: &CniKey) -> Option<&Record> {
        self.records.iter().find(|r| r.attachment.key == *key)
    }

    /// Every record.
    pub fn all(&self) -> &[Record] {
        &self.records
    }

    /// Sets (or replaces) the record of its key and persists; on failure nothing changed.
    pub fn put(&mut self, record: Record) -> Result<(), String> {
        let old = self.records.clone();
        self.records
            .retain(|r| r.attachment.key != record.attachment.key);
        self.records.push(record);
        self.save().inspect_err(|_| self.records = old)
    }

    /// Forgets `key` and persists.
    pub fn remove(&mut self, key: &CniKey) -> Result<(), String> {
        if self.get(key).is_none() {
            return Ok(());
        }
        let old = self.records.clone();
        self.records.retain(|r| r.attachment.key != *key);
        self.save().inspect_err(|_| self.records = old)
    }

    fn save(&self) -> Result<(), String> {
        let f = File {
            format: FORMAT,
            attachments: self.records.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&f).map_err(|e| e.to_string())?;
        crate::persist::write_atomic(&self.path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(cid: &str, stage: Stage) -> Record {
        Record {
            stage,
            attachment: CniAttachment {
                key: CniKey {
                    network: "weft".into(),
                    container_id: cid.into(),
                    ifname: "eth0".into(),
                },
                netns: "/run/netns/x".into(),
                id: cid.into(),
                ..CniAttachment::default()
            },
        }
    }

    #[test]
    fn survives_a_restart_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::load(dir.path()).unwrap();
        s.put(rec("a", Stage::Adding)).unwrap();
        s.put(rec("a", Stage::Added)).unwrap();
        s.put(rec("b", Stage::Adding)).unwrap();
        s.remove(&rec("b", Stage::Adding).attachment.key).unwrap();
        let again = Store::load(dir.path()).unwrap();
        assert_eq!(again.all(), &[rec("a", Stage::Added)]);
        std::fs::write(dir.path().join(FILE), b"{").unwrap();
        assert!(Store::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("damaged"));
    }
}
