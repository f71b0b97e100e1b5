//! Encryption at rest of application secret keys.
//!
//! HMAC verification of EdgeGallery's signed token requests needs the secret key itself, so it
//! cannot be stored as a hash. Each secret is sealed with AES-256-GCM under a random 256-bit master
//! key that lives in its own file (mode 0600) in the data directory, created at first start. The
//! associated data binds a ciphertext to its application instance and access key, so a sealed
//! secret copied into another record does not open.

use crate::private_files::write_private_file;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create the master key {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the master key {0} is not 32 bytes long")]
    KeyLength(PathBuf),
    #[error("the system random number generator failed")]
    Random,
    #[error("a sealed secret does not open under the master key")]
    Open,
}

/// A secret as stored: base64 of the 96-bit nonce and of the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub nonce: String,
    pub ciphertext: String,
}

/// The master key. Never leaves the process except in its own file.
pub struct MasterKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Loads `path`, or creates it with fresh random bytes and mode 0600 when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::KeyFile {
            path: path.to_owned(),
            source,
        };
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut fresh = Zeroizing::new(vec![0u8; 32]);
                rng.fill(&mut fresh).map_err(|_| SecretError::Random)?;
                write_private_file(path, &fresh).map_err(io)?;
                fresh
            }
            Err(e) => return Err(io(e)),
        };
        if bytes.len() != 32 {
            return Err(SecretError::KeyLength(path.to_owned()));
        }
        warn_if_readable_by_others(path);
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| SecretError::KeyLength(path.into()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng,
        })
    }

    /// Encrypts `plaintext`; `context` must be given again to open it.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Sealed, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buffer,
            )
            .map_err(|_| SecretError::Random)?;
        Ok(Sealed {
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(&buffer),
        })
    }

    /// Decrypts a sealed secret; the plaintext is wiped from memory when dropped.
    pub fn open(&self, sealed: &Sealed, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SecretError::Open)?;
        let mut buffer = Zeroizing::new(
            B64.decode(&sealed.ciphertext)
                .map_err(|_| SecretError::Open)?,
        );
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buffer,
            )
            .map_err(|_| SecretError::Open)?
            .len();
        buffer.truncate(len);
        Ok(buffer)
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "key file is readable by group or others; chmod 600 it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth/master.key");
        let key = MasterKey::load_or_create(&path).unwrap();
        let sealed = key.seal(b"top secret", b"app-1/AK").unwrap();
        assert!(!sealed.ciphertext.contains("top secret"));
        assert_eq!(&*key.open(&sealed, b"app-1/AK").unwrap(), b"top secret");
        assert!(matches!(
            key.open(&sealed, b"app-2/AK"),
            Err(SecretError::Open)
        ));
        // The same file gives the same key.
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(&*again.open(&sealed, b"app-1/AK").unwrap(), b"top secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
