//! The CNI attachments, kept in `$WEFT_STATE_DIR/cni.json` (written atomically) so that
//! results, CHECK and GC survive a router restart. An ADD is recorded as `adding` before
//! it changes anything and as `added` once it succeeded: an `adding` record found at
//! start-up is an ADD a kill -9 cut short, which the router then undoes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The attachments, persisted on every change. Concurrent changes share a write: a change
/// waits until a write that includes it is on disk (one write after another, each of the
/// latest state), so 50 parallel ADDs cost a few writes, not 100.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    state: Mutex<State>,
    /// The version on disk; held while writing.
    written: tokio::sync::Mutex<u64>,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Record>,
    version: u64,
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
        Ok(Store {
            path,
            state: Mutex::new(State {
                records,
                version: 0,
            }),
            written: tokio::sync::Mutex::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of `key`.
    pub fn get(&self, key: &CniKey) -> Option<Record> {
        self.lock()
            .records
            .iter()
            .find(|r| r.attachment.key == *key)
            .cloned()
    }

    /// Every record.
    pub fn all(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// Sets (or replaces) the record of its key; returns once that is on disk. On failure
    /// the record is taken back out.
    pub async fn put(&self, record: Record) -> Result<(), String> {
        let key = record.attachment.key.clone();
        let v = {
            let mut st = self.lock();
            st.records.retain(|r| r.attachment.key != key);
            st.records.push(record);
            st.version += 1;
            st.version
        };
        let done = self.persist(v).await;
        if done.is_err() {
            let mut st = self.lock();
            st.records.retain(|r| r.attachment.key != key);
            st.version += 1;
        }
        done
    }

    /// Forgets `key`; returns once that is on disk.
    pub async fn remove(&self, key: &CniKey) -> Result<(), String> {
        let v = {
            let mut st = self.lock();
            let before = st.records.len();
            st.records.retain(|r| r.attachment.key != *key);
            if st.records.len() == before {
                return Ok(());
            }
            st.version += 1;
            st.version
        };
        self.persist(v).await
    }

    /// Writes the latest state unless a write since version `v` already did.
    async fn persist(&self, v: u64) -> Result<(), String> {
        let mut written = self.written.lock().await;
        if *written >= v {
            return Ok(());
        }
        let (bytes, version) = {
            let st = self.lock();
            let f = File {
                format: FORMAT,
                attachments: st.records.clone(),
            };
            let bytes = serde_json::to_vec_pretty(&f).map_err(|e| e.to_string())?;
            (bytes, st.version)
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || crate::persist::write_atomic(&path, &bytes))
            .await
            .map_err(|e| format!("the write of {} did not finish: {e}", self.path.display()))?
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        *written = version;
        Ok(())
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;

    pub fn rec(cid: &str, stage: Stage) -> Record {
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
}

#[cfg(test)]
mod tests {
    use super::tests_support::rec;
    use super::*;

    #[tokio::test]
    async fn survives_a_restart_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::load(dir.path()).unwrap();
        s.put(rec("a", Stage::Adding)).await.unwrap();
        s.put(rec("a", Stage::Added)).await.unwrap();
        s.put(rec("b", Stage::Adding)).await.unwrap();
        s.remove(&rec("b", Stage::Adding).attachment.key)
            .await
            .unwrap();
        let again = Store::load(dir.path()).unwrap();
        assert_eq!(again.all(), vec![rec("a", Stage::Added)]);
        std::fs::write(dir.path().join(FILE), b"{").unwrap();
        assert!(Store::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("damaged"));
    }
}

#[cfg(test)]
mod concurrent {
    use super::tests_support::rec;
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_puts_are_all_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::load(dir.path()).unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.put(rec(&format!("c{i}"), Stage::Added)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(Store::load(dir.path()).unwrap().all().len(), 50);
    }
}
