//! This router's own DNS entries, kept in `$WEFT_STATE_DIR/dns.json` so that names added
//! with `weft dns-add` survive a restart (attached containers' hostnames are also in the
//! container registry).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the file format.
const FORMAT: u32 = 1;

/// One saved entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Container id (or [`super::EXTERN`]).
    pub container: String,
    /// Fully qualified name.
    pub hostname: String,
    /// Address.
    pub addr: Ipv4Addr,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    entries: Vec<Saved>,
}

/// Path of the file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("dns.json")
}

/// Reads the saved entries; a missing file is none, a damaged one is an error.
pub fn load(path: &Path) -> anyhow::Result<Vec<Saved>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let file: File = serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is damaged ({e}); move it away to start without saved DNS names",
                    path.display()
                )
            })?;
            if file.format != FORMAT {
                anyhow::bail!(
                    "{} has format {}, this weft reads {FORMAT}",
                    path.display(),
                    file.format
                );
            }
            Ok(file.entries)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
}

/// Writes the entries atomically (temp file, fsync, rename, fsync dir).
pub fn store(path: &Path, entries: Vec<Saved>) -> anyhow::Result<()> {
    let file = File {
        format: FORMAT,
        entries,
    };
    let bytes = serde_json::to_vec_pretty(&file)?;
    crate::identity::write_atomic(path, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot save DNS names: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert!(load(&p).unwrap().is_empty());
        let e = vec![Saved {
            container: "c1".into(),
            hostname: "c1.weft.local.".into(),
            addr: Ipv4Addr::new(10, 32, 0, 1),
        }];
        store(&p, e.clone()).unwrap();
        assert_eq!(load(&p).unwrap(), e);
        std::fs::write(&p, b"{not json").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
