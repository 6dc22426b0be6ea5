//! The peer's unique name: created once, kept in the state dir, so that machines cloned
//! with the same machine-id still get different names.

use std::path::{Path, PathBuf};

use rand::Rng;

/// File in the state dir that holds the peer name.
pub const NAME_FILE: &str = "peer-name";

/// Checks a peer name: 1 to 64 characters of letters, digits, `:` `.` `_` `-`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a peer name must be 1 to 64 characters".to_string());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":._-".contains(c))
    {
        return Err("a peer name may hold only letters, digits and : . _ -".to_string());
    }
    Ok(())
}

/// A fresh name in MAC form with the locally-administered bit set, as Weave's are.
pub fn random_name() -> String {
    let mut b: [u8; 6] = rand::rng().random();
    b[0] = (b[0] & 0xfe) | 0x02;
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Errors reading or writing the persisted name.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// I/O on the name file.
    #[error("peer name file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The stored name is not a valid name.
    #[error(
        "peer name file {path} holds an invalid name ({why}); remove it or launch with --name"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The name to use: `--name` if given (and then stored), else the stored one, else a new
/// random one (stored).
pub fn load_or_create(state_dir: &Path, forced: Option<&str>) -> Result<String, IdentityError> {
    let path = state_dir.join(NAME_FILE);
    if let Some(name) = forced {
        write_atomic(&path, name.as_bytes())?;
        return Ok(name.to_string());
    }
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let name = s.trim().to_string();
            validate_name(&name).map_err(|why| IdentityError::Invalid {
                path: path.clone(),
                why,
            })?;
            Ok(name)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = random_name();
            write_atomic(&path, name.as_bytes())?;
            Ok(name)
        }
        Err(e) => Err(IdentityError::Io { path, source: e }),
    }
}

/// [`crate::persist::write_atomic`], with the path in the error.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), IdentityError> {
    crate::persist::write_atomic(path, data).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_names_are_valid_and_differ() {
        let a = random_name();
        validate_name(&a).unwrap();
        assert_eq!(a.len(), 17);
        assert_ne!(a, random_name());
    }

    #[test]
    fn name_is_kept_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), None).unwrap();
        let b = load_or_create(dir.path(), None).unwrap();
        assert_eq!(a, b);
        let c = load_or_create(dir.path(), Some("peer-x")).unwrap();
        assert_eq!(c, "peer-x");
        assert_eq!(load_or_create(dir.path(), None).unwrap(), "peer-x");
    }

    #[test]
    fn invalid_stored_name_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NAME_FILE), "bad name!").unwrap();
        let e = load_or_create(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("--name"), "{e}");
    }
}
