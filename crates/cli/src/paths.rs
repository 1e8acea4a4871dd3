//! The data directory and the identity file in it.

use std::path::{Path, PathBuf};

use p2p_foundation::Keypair;

use crate::error::CliError;

/// The identity file's name inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// The default data directory: `$XDG_DATA_HOME/p2pf`, else `$HOME/.local/share/p2pf`,
/// else `./.p2pf`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("p2pf");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/p2pf"),
        None => PathBuf::from(".p2pf"),
    }
}

/// Creates `dir` (and its parents) if missing; a directory created here is owner-only
/// (0700) on Unix, as it holds the identity.
pub fn ensure_dir(dir: &Path) -> Result<(), CliError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|source| CliError::Local {
        what: "creating the data directory",
        path: dir.to_owned(),
        source,
    })
}

/// Loads the node identity from `dir`, or generates one and saves it there (mode 0600).
/// Returns it with whether it was created now.
pub fn load_identity(dir: &Path) -> Result<(Keypair, PathBuf, bool), CliError> {
    ensure_dir(dir)?;
    let path = dir.join(IDENTITY_FILE);
    let existed = path.exists();
    let keypair = Keypair::load_or_generate(&path).map_err(p2p_foundation::Error::from)?;
    Ok((keypair, path, !existed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_owner_only_then_reused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("nested/data");
        let (a, path, created) = load_identity(&dir).expect("created");
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        let (b, _, created) = load_identity(&dir).expect("reused");
        assert!(!created);
        assert_eq!(a.peer_id(), b.peer_id());
    }
}
