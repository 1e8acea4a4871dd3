use std::fmt;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};

use crate::peer_id::{PeerId, Signature};
use crate::{IdentityError, base32};

/// First token of a key file; the base32 secret follows it.
const KEY_FILE_TAG: &str = "p2pf-ed25519-secret-v1";

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
/// assert!(!format!("{keypair:?}").contains(&format!("{:?}", keypair.secret_bytes())));
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
        let mut seed = [0u8; 32];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut seed).expect("the operating system's random number generator failed");
        let keypair = Self::from_secret_bytes(seed);
        seed.fill(0);
        keypair
    }

    /// Builds the keypair whose 32-byte Ed25519 secret seed is `secret`.
    ///
    /// Deterministic: the same seed always gives the same identity (useful for tests and
    /// simulations; real nodes use [`Keypair::generate`]).
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&secret);
        let peer_id = PeerId::from_verifying_key(signing.verifying_key());
        Self { signing, peer_id }
    }

    /// The 32-byte secret seed. Keep it secret.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
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
        let metadata = std::fs::metadata(path).map_err(io_err)?;
        check_private(path, &metadata)?;
        if metadata.len() > 256 {
            return Err(malformed(path, "file is larger than any key file"));
        }
        let text = std::fs::read_to_string(path).map_err(io_err)?;
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
        let mut bytes =
            base32::decode(encoded).ok_or_else(|| malformed(path, "secret is not base32"))?;
        let secret: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| malformed(path, "secret is not 32 bytes"))?;
        bytes.fill(0);
        Ok(Self::from_secret_bytes(secret))
    }

    /// Writes the keypair to `path`, readable and writable by its owner only (mode 0600).
    ///
    /// The file is written beside `path` and renamed over it, so a crash never leaves a
    /// half-written key.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IdentityError> {
        let path = path.as_ref();
        let io_err = |source| IdentityError::KeyFileIo {
            path: path.to_owned(),
            source,
        };
        let mut tmp_name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io_err)?;
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(io_err)?;
        let contents = format!(
            "{KEY_FILE_TAG} {}\n",
            base32::encode(&self.signing.to_bytes())
        );
        file.write_all(contents.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io_err)
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
