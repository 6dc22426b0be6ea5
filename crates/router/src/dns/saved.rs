//! This router's own DNS entries, kept in `$WEFT_STATE_DIR/dns.json` so that names added
//! with `weft dns-add` survive a restart (attached containers' hostnames are also in the
//! container registry).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::persist::{check_format, load_json, store_json};

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

#[derive(Debug, Serialize, Deserialize)]
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
    match load_json::<File>(path, "start without saved DNS names")? {
        Some(file) => {
            check_format(path, file.format, FORMAT)?;
            Ok(file.entries)
        }
        None => Ok(Vec::new()),
    }
}

/// Writes the entries atomically.
pub fn store(path: &Path, entries: Vec<Saved>) -> anyhow::Result<()> {
    let file = File {
        format: FORMAT,
        entries,
    };
    store_json(path, &file).map_err(|e| anyhow::anyhow!("cannot save DNS names: {e}"))
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
