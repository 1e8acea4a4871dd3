use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use zeroize::{Zeroize, Zeroizing};

use crate::peer_id::{PeerId, Signature};
use crate::{IdentityError, base32};

/// First token of a key file; the base32 secret follows it.
const KEY_FILE_TAG: &str = "p2pf-ed25519-secret-v1";
/// No key file is longer than this (tag, space, 52 base32 characters, newline, with room
/// for stray whitespace).
const MAX_KEY_FILE_LEN: u64 = 256;

/// An Ed25519 keypair: a node's long-term identity.
///
/// `Debug` shows the public [`PeerId`] only; the secret never appears in logs.
///
/// ```
/// use p2p_foundation_identity::Keypair;
///
/// let keypair = Keypair::generate();
/// let signature = keypair.sign(b"hello");
/// assert!(keypair.peer_id().verify(b"hello", &signature).is_ok());
/// assert!(!format!("{keypair:?}").contains(&format!("{:?}", *keypair.secret_bytes())));
/// ```
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    peer_id: PeerId,
}

impl Keypair {
    /// Generates a new keypair from the operating system's randomness.
    ///
    /// # Panics
    /// Panics if the operating system has no randomness to give, as no key could be safe then.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut *seed).expect("the operating system's random number generator failed");
        Self::from_secret_bytes(*seed)
    }

    /// Builds the keypair whose 32-byte Ed25519 secret seed is `secret`.
    ///
    /// Deterministic: the same seed always gives the same identity (useful for tests and
    /// simulations; real nodes use [`Keypair::generate`]). The copy passed in is wiped.
    pub fn from_secret_bytes(mut secret: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&secret);
        secret.zeroize();
        let peer_id = PeerId::from_verifying_key(signing.verifying_key());
        Self { signing, peer_id }
    }

    /// The 32-byte secret seed, wiped from memory when the returned value is dropped. Keep it
    /// secret.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// This keypair's public identity.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The decompressed public key (kept by the signing key, so this costs nothing).
    pub(crate) fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature::from_bytes(self.signing.sign(message).to_bytes())
    }

    /// Loads a keypair from a key file written by [`Keypair::save`].
    ///
    /// On Unix the file must not be readable or writable by group or others: such a key may
    /// already be known to someone else, so it is refused with
    /// [`IdentityError::InsecureKeyFile`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        let path = path.as_ref();
        let io_err = |source| IdentityError::KeyFileIo {
            path: path.to_owned(),
            source,
        };
        // Permissions and contents come from the same open file, so the file checked is the
        // file read.
        let file = std::fs::File::open(path).map_err(io_err)?;
        let metadata = file.metadata().map_err(io_err)?;
        check_private(path, &metadata)?;
        if metadata.len() > MAX_KEY_FILE_LEN {
            return Err(malformed(path, "file is larger than any key file"));
        }
        // Room for the largest file and then some, so reading never reallocates (which would
        // leave an unwiped copy of the secret in the old buffer).
        let mut text = Zeroizing::new(String::with_capacity(2 * MAX_KEY_FILE_LEN as usize));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(io_err)?;
        if text.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(malformed(path, "file is larger than any key file"));
        }
        let mut words = text.split_whitespace();
        if words.next() != Some(KEY_FILE_TAG) {
            return Err(malformed(
                path,
                "missing the `p2pf-ed25519-secret-v1` header",
            ));
        }
        let encoded = words
            .next()
            .ok_or_else(|| malformed(path, "missing the secret"))?;
        if words.next().is_some() {
            return Err(malformed(path, "unexpected text after the secret"));
        }
        // Decoded into a buffer that is wiped whether or not decoding succeeds (a corrupt
        // file's partial decoding is still most of a secret).
        let mut bytes = Zeroizing::new(Vec::with_capacity(base32::decoded_len(encoded)));
        if !base32::decode_into(encoded, &mut bytes) {
            return Err(malformed(path, "secret is not base32"));
        }
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| malformed(path, "secret is not 32 bytes"))?,
        );
        Ok(Self::from_secret_bytes(*secret))
    }

    /// Writes the keypair to `path`, readable and writable by its owner only (mode 0600).
    ///
    /// The key is written to a new temporary file beside `path` (created exclusively under
    /// an unpredictable name, so a planted file or symlink is never followed or reused),
    /// flushed to disk, renamed over `path`, and the directory is flushed too: a crash
    /// leaves either the old key or the new one, never a half-written or vanished one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IdentityError> {
        let path = path.as_ref();
        let io_err = |source| IdentityError::KeyFileIo {
            path: path.to_owned(),
            source,
        };
        let (tmp, mut file) = create_temp_beside(path).map_err(io_err)?;
        let written = (|| {
            #[cfg(unix)]
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            let encoded = Zeroizing::new(base32::encode(&*self.secret_bytes()));
            // Sized up front, so no reallocation leaves an unwiped copy of the secret behind.
            let mut contents = Zeroizing::new(String::with_capacity(
                KEY_FILE_TAG.len() + encoded.len() + 2,
            ));
            contents.push_str(KEY_FILE_TAG);
            contents.push(' ');
            contents.push_str(&encoded);
            contents.push('\n');
            file.write_all(contents.as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            // Best effort: the temporary file holds the secret, so do not leave it behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(e));
        }
        sync_parent_dir(path).map_err(io_err)
    }

    /// Loads the key file at `path`, or generates a keypair and saves it there if the file
    /// does not exist yet.
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        let path = path.as_ref();
        match Self::load(path) {
            Err(IdentityError::KeyFileIo { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let keypair = Self::generate();
                keypair.save(path)?;
                Ok(keypair)
            }
            other => other,
        }
    }
}

/// Creates a new file beside `path` named `.<name>.<random>.tmp`, with `create_new` (so
/// `O_CREAT | O_EXCL`: an existing file or symlink of that name is an error, never opened)
/// and mode 0600 from the start. A handful of attempts covers a collision with a file
/// someone planted; more than that means something is wrong with the directory.
fn create_temp_beside(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    create_temp_with(path, |nonce| {
        getrandom::fill(nonce).map_err(std::io::Error::other)
    })
}

/// [`create_temp_beside`] with the name's random part drawn from `fill_nonce`.
fn create_temp_with(
    path: &Path,
    mut fill_nonce: impl FnMut(&mut [u8; 8]) -> std::io::Result<()>,
) -> std::io::Result<(PathBuf, std::fs::File)> {
    const ATTEMPTS: usize = 8;
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a key file path must end in a file name",
        )
    })?;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut nonce = [0u8; 8];
        fill_nonce(&mut nonce)?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", base32::encode(&nonce)));
        let tmp = path.with_file_name(tmp_name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary key file could be created")))
}

/// Flushes the directory holding `path`, so the rename that put the key there survives a
/// crash. (Directories cannot be opened for syncing outside Unix; there the rename is left
/// to the file system.)
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

fn malformed(path: &Path, reason: &'static str) -> IdentityError {
    IdentityError::MalformedKeyFile {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::InsecureKeyFile {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), IdentityError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secret() {
        let keypair = Keypair::from_secret_bytes([7; 32]);
        let debug = format!("{keypair:?}");
        assert!(debug.contains(&keypair.peer_id().to_string()));
        assert!(!debug.contains("7, 7"));
        assert!(!debug.contains(&base32::encode(&[7; 32])));
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let keypair = Keypair::generate();
        keypair.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = Keypair::load(&path).unwrap();
        assert_eq!(loaded.peer_id(), keypair.peer_id());
        assert_eq!(loaded.secret_bytes(), keypair.secret_bytes());
    }

    /// A temporary directory, the key path `node.key` in it, and a file `victim` holding
    /// `precious` that a planted symlink may point at.
    #[cfg(unix)]
    fn dir_with_victim() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        (dir, path, victim)
    }

    /// Someone who can write to the key's directory plants a symlink where the temporary
    /// file would go: saving must neither follow it nor truncate what it points at.
    #[cfg(unix)]
    #[test]
    fn save_never_follows_a_planted_symlink() {
        let (dir, path, victim) = dir_with_victim();
        for name in ["node.key.tmp", ".node.key.tmp"] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        let keypair = Keypair::from_secret_bytes([8; 32]);
        keypair.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(Keypair::load(&path).unwrap().peer_id(), keypair.peer_id());
        // Saving again over an existing key works, and leaves no temporary file behind.
        keypair.save(&path).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".node.key.tmp", "node.key", "node.key.tmp", "victim"]
        );
    }

    /// Issue 18: the temporary file is opened with `create_new` (`O_CREAT | O_EXCL`), which
    /// never opens an existing name and never follows a symlink, dangling or not. Someone
    /// who guessed the name and planted symlinks there gets neither the file they point at
    /// truncated nor a file created where a dangling one points; the next name is used.
    #[cfg(unix)]
    #[test]
    fn the_temporary_file_is_created_exclusively_never_through_a_planted_name() {
        let (dir, path, victim) = dir_with_victim();
        let elsewhere = dir.path().join("created-elsewhere");
        let name = |n: u8| {
            dir.path()
                .join(format!(".node.key.{}.tmp", base32::encode(&[n; 8])))
        };
        std::os::unix::fs::symlink(&victim, name(0)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, name(1)).unwrap();
        let mut next = 0u8;
        let (tmp, mut file) = create_temp_with(&path, |nonce| {
            *nonce = [next; 8];
            next += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(tmp, name(2), "the planted names are skipped");
        file.write_all(b"secret").unwrap();
        drop(file);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!elsewhere.exists(), "a dangling symlink was followed");
        for planted in [name(0), name(1)] {
            assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
        }
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::symlink_metadata(&tmp).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        // Every name taken: an error, not a file opened through one of them.
        let err = create_temp_with(&path, |nonce| {
            *nonce = [0; 8];
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        Keypair::generate().save(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Keypair::load(&path).unwrap_err();
            assert!(
                matches!(err, IdentityError::InsecureKeyFile { mode: m, .. } if m == mode),
                "mode {mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Keypair::load(&path).is_ok(), "owner-only read is fine");
    }

    #[test]
    fn malformed_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        for contents in [
            "",
            "hello",
            "p2pf-ed25519-secret-v1",
            "p2pf-ed25519-secret-v1 abc",
            "p2pf-ed25519-secret-v1 !!!!",
        ] {
            Keypair::from_secret_bytes([1; 32]).save(&path).unwrap();
            std::fs::write(&path, contents).unwrap();
            let err = Keypair::load(&path).unwrap_err();
            assert!(
                matches!(err, IdentityError::MalformedKeyFile { .. }),
                "{contents:?}: {err}"
            );
        }
    }

    #[test]
    fn load_or_generate_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub.key");
        let first = Keypair::load_or_generate(&path).unwrap();
        let second = Keypair::load_or_generate(&path).unwrap();
        assert_eq!(first.peer_id(), second.peer_id());
    }
}
