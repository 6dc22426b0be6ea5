//! State files: written so that a crash at any moment leaves the old or the new content,
//! and read as JSON with one error for a damaged file.

use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads JSON state file `path` (None when there is none); one that does not parse is an
/// error that names it and what moving it away does (`afresh`, e.g. "start with no
/// containers").
pub fn load_json<T: DeserializeOwned>(path: &Path, afresh: &str) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{} is damaged ({e}); move it away to {afresh}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
}

/// Checks that a state file read from `path` has the format this build writes.
pub fn check_format(path: &Path, found: u32, want: u32) -> anyhow::Result<()> {
    if found != want {
        anyhow::bail!(
            "{} has format {found}, this weft reads {want}",
            path.display()
        );
    }
    Ok(())
}

/// Writes `value` as JSON to `path`, atomically ([`write_atomic`]).
pub fn store_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Writes `data` to `path` atomically: a temp file beside it, fsync, rename, fsync of the
/// directory (so the rename itself survives a crash). Creates the directory if needed; a
/// failed write leaves no temp file behind.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let bad_path = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path");
    let dir = path.parent().ok_or_else(bad_path)?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(bad_path)?;
    std::fs::create_dir_all(dir)?;
    // The pid keeps two processes writing the same file from sharing a temp file.
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state")]);
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }
}
