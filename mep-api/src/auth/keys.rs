//! The ES256 keys that sign access tokens, kept in `<data_dir>/auth/jwt/`: one PKCS#8 PEM file per
//! key (mode 0600) and `keys.json` saying which key is current and when the others were retired.
//!
//! Rotation makes a new key current and *retires* the old one: a retired key signs nothing more but
//! stays in the JWKS and keeps verifying until every token it signed has expired, then it is
//! pruned. The parsed keys and the rendered JWKS live in an `ArcSwap`, so issuing and verifying
//! never parse a key or take a lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

use crate::private_files::{create_private_dir, replace_private_file, write_private_file};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("token signing keys in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token signing keys: {0}")]
    Invalid(String),
}

/// What `keys.json` records of one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyMeta {
    kid: String,
    /// Unix seconds.
    created: u64,
    /// Unix seconds; `None` for the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeysFile {
    keys: Vec<KeyMeta>,
}

/// A key as [`KeyRing::export`] writes it.
#[derive(Serialize, Deserialize)]
struct ExportedKey {
    #[serde(flatten)]
    meta: KeyMeta,
    /// The PKCS#8 document, base64.
    pkcs8: String,
}

/// The key that signs new tokens.
pub struct SigningKey {
    pub kid: String,
    pub created: u64,
    pub header: Header,
    pub encoding: EncodingKey,
}

/// Everything issuing and verification need, parsed once per rotation.
pub struct KeySet {
    pub current: SigningKey,
    pub verifying: HashMap<String, DecodingKey>,
    /// The JWKS document, rendered once.
    pub jwks: Bytes,
    meta: Vec<KeyMeta>,
}

struct Loaded {
    meta: KeyMeta,
    pkcs8: Vec<u8>,
    jwk: serde_json::Value,
    decoding: DecodingKey,
}

/// The signing keys and their directory.
pub struct KeyRing {
    dir: PathBuf,
    set: ArcSwap<KeySet>,
    /// Serializes rotations and pruning (file writes), never taken by issuing or verifying.
    changes: parking_lot::Mutex<()>,
}

impl KeyRing {
    /// Loads the keys in `dir`, creating the first one when there is none.
    pub fn load_or_create(dir: &Path, now: SystemTime) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_owned(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        let index = dir.join("keys.json");
        let mut loaded = Vec::new();
        match std::fs::read(&index) {
            Ok(bytes) => {
                let file: KeysFile = serde_json::from_slice(&bytes)
                    .map_err(|e| KeyError::Invalid(format!("{}: {e}", index.display())))?;
                for meta in file.keys {
                    let pem = std::fs::read(key_path(dir, &meta.kid)?).map_err(io)?;
                    let der = PrivatePkcs8KeyDer::from_pem_slice(&pem)
                        .map_err(|e| KeyError::Invalid(format!("key {}: {e}", meta.kid)))?;
                    loaded.push(parse(meta, der.secret_pkcs8_der().to_vec())?);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let ring = Self {
            dir: dir.to_owned(),
            set: ArcSwap::from_pointee(placeholder()?),
            changes: parking_lot::Mutex::new(()),
        };
        if loaded.iter().all(|k| k.meta.retired.is_some()) {
            let fresh = ring.generate(now)?;
            for k in &mut loaded {
                k.meta.retired.get_or_insert(unix(now));
            }
            loaded.push(fresh);
            ring.write_index(&loaded)?;
        }
        ring.set.store(Arc::new(build(&loaded)?));
        Ok(ring)
    }

    /// The current keys. Cheap: an atomic load.
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.set.load()
    }

    /// Makes a new key current and retires the previous one; answers the new key id.
    pub fn rotate(&self, now: SystemTime) -> Result<String, KeyError> {
        let _serial = self.changes.lock();
        let mut loaded = self.reload_current()?;
        for k in &mut loaded {
            k.meta.retired.get_or_insert(unix(now));
        }
        let fresh = self.generate(now)?;
        let kid = fresh.meta.kid.clone();
        loaded.push(fresh);
        self.write_index(&loaded)?;
        self.set.store(Arc::new(build(&loaded)?));
        tracing::info!(kid, "token signing key rotated");
        Ok(kid)
    }

    /// Drops retired keys whose tokens have all expired (retired longer than `keep_for` ago).
    pub fn prune(&self, now: SystemTime, keep_for: Duration) -> Result<usize, KeyError> {
        let _serial = self.changes.lock();
        let cutoff = unix(now).saturating_sub(keep_for.as_secs());
        let loaded = self.reload_current()?;
        let (gone, kept): (Vec<_>, Vec<_>) = loaded
            .into_iter()
            .partition(|k| k.meta.retired.is_some_and(|r| r < cutoff));
        if gone.is_empty() {
            return Ok(0);
        }
        self.write_index(&kept)?;
        self.set.store(Arc::new(build(&kept)?));
        for k in &gone {
            if let Ok(path) = key_path(&self.dir, &k.meta.kid) {
                let _ = std::fs::remove_file(path);
            }
            tracing::info!(kid = k.meta.kid, "retired token signing key pruned");
        }
        Ok(gone.len())
    }

    /// Every key with what `keys.json` says of it, as one document: what nodes sharing a store
    /// agree on (sealed before it leaves the process, see `auth::shared_keys`).
    pub fn export(&self) -> Result<Vec<u8>, KeyError> {
        let keys: Vec<ExportedKey> = self
            .reload_current()?
            .into_iter()
            .map(|k| ExportedKey {
                meta: k.meta,
                pkcs8: B64.encode(&k.pkcs8),
            })
            .collect();
        serde_json::to_vec(&keys).map_err(|e| KeyError::Invalid(format!("cannot export keys: {e}")))
    }

    /// Replaces the keys with those of an [`KeyRing::export`] (another node's rotation).
    pub fn adopt(&self, exported: &[u8]) -> Result<(), KeyError> {
        let keys: Vec<ExportedKey> = serde_json::from_slice(exported)
            .map_err(|e| KeyError::Invalid(format!("shared signing keys: {e}")))?;
        let _serial = self.changes.lock();
        let mut loaded = Vec::with_capacity(keys.len());
        for key in keys {
            let pkcs8 = B64
                .decode(&key.pkcs8)
                .map_err(|e| KeyError::Invalid(format!("shared key {}: {e}", key.meta.kid)))?;
            let k = parse(key.meta, pkcs8)?;
            let path = key_path(&self.dir, &k.meta.kid)?;
            replace_private_file(&path, pem("PRIVATE KEY", &k.pkcs8).as_bytes())
                .map_err(|source| KeyError::Io { path, source })?;
            loaded.push(k);
        }
        let set = build(&loaded)?;
        self.write_index(&loaded)?;
        self.set.store(Arc::new(set));
        Ok(())
    }

    /// Whether the current key is older than `max_age`.
    pub fn current_older_than(&self, now: SystemTime, max_age: Duration) -> bool {
        unix(now).saturating_sub(self.current().current.created) >= max_age.as_secs()
    }

    fn reload_current(&self) -> Result<Vec<Loaded>, KeyError> {
        let set = self.current();
        set.meta
            .iter()
            .map(|meta| {
                let pem = std::fs::read(key_path(&self.dir, &meta.kid)?).map_err(|source| {
                    KeyError::Io {
                        path: self.dir.clone(),
                        source,
                    }
                })?;
                let der = PrivatePkcs8KeyDer::from_pem_slice(&pem)
                    .map_err(|e| KeyError::Invalid(format!("key {}: {e}", meta.kid)))?;
                parse(meta.clone(), der.secret_pkcs8_der().to_vec())
            })
            .collect()
    }

    fn generate(&self, now: SystemTime) -> Result<Loaded, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Invalid("cannot generate a P-256 key".into()))?;
        let loaded = parse(
            KeyMeta {
                kid: String::new(),
                created: unix(now),
                retired: None,
            },
            pkcs8.as_ref().to_vec(),
        )?;
        let path = key_path(&self.dir, &loaded.meta.kid)?;
        write_private_file(&path, pem("PRIVATE KEY", &loaded.pkcs8).as_bytes()).map_err(
            |source| KeyError::Io {
                path: path.clone(),
                source,
            },
        )?;
        Ok(loaded)
    }

    fn write_index(&self, keys: &[Loaded]) -> Result<(), KeyError> {
        let file = KeysFile {
            keys: keys.iter().map(|k| k.meta.clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| KeyError::Invalid(format!("cannot encode keys.json: {e}")))?;
        let path = self.dir.join("keys.json");
        replace_private_file(&path, &bytes).map_err(|source| KeyError::Io { path, source })
    }
}

/// Parses a PKCS#8 P-256 key; when `meta.kid` is empty it becomes the RFC 7638 thumbprint.
fn parse(mut meta: KeyMeta, pkcs8: Vec<u8>) -> Result<Loaded, KeyError> {
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
        .map_err(|e| KeyError::Invalid(format!("not a P-256 PKCS#8 key: {e}")))?;
    let point = pair.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err(KeyError::Invalid("unexpected public key encoding".into()));
    }
    let x = B64URL.encode(&point[1..33]);
    let y = B64URL.encode(&point[33..65]);
    if meta.kid.is_empty() {
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        meta.kid = B64URL.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
    }
    let decoding = DecodingKey::from_ec_components(&x, &y)
        .map_err(|e| KeyError::Invalid(format!("public key: {e}")))?;
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": meta.kid, "use": "sig", "alg": "ES256",
    });
    Ok(Loaded {
        meta,
        pkcs8,
        jwk,
        decoding,
    })
}

fn build(keys: &[Loaded]) -> Result<KeySet, KeyError> {
    let current = keys
        .iter()
        .rev()
        .find(|k| k.meta.retired.is_none())
        .ok_or_else(|| KeyError::Invalid("no current key".into()))?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(current.meta.kid.clone());
    let jwks = serde_json::to_vec(&serde_json::json!({
        "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>()
    }))
    .map_err(|e| KeyError::Invalid(format!("cannot render the JWKS: {e}")))?;
    Ok(KeySet {
        current: SigningKey {
            kid: current.meta.kid.clone(),
            created: current.meta.created,
            header,
            encoding: EncodingKey::from_ec_der(&current.pkcs8),
        },
        verifying: keys
            .iter()
            .map(|k| (k.meta.kid.clone(), k.decoding.clone()))
            .collect(),
        jwks: Bytes::from(jwks),
        meta: keys.iter().map(|k| k.meta.clone()).collect(),
    })
}

/// A key set that exists only until the real one is stored during loading.
fn placeholder() -> Result<KeySet, KeyError> {
    Ok(KeySet {
        current: SigningKey {
            kid: String::new(),
            created: 0,
            header: Header::new(Algorithm::ES256),
            encoding: EncodingKey::from_ec_der(&[]),
        },
        verifying: HashMap::new(),
        jwks: Bytes::from_static(b"{\"keys\":[]}"),
        meta: Vec::new(),
    })
}

/// The file of key `kid`; refuses ids that could name another path.
fn key_path(dir: &Path, kid: &str) -> Result<PathBuf, KeyError> {
    if kid.is_empty()
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(KeyError::Invalid(format!("bad key id {kid:?}")));
    }
    Ok(dir.join(format!("{kid}.pem")))
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kids(ring: &KeyRing) -> Vec<String> {
        let jwks: serde_json::Value = serde_json::from_slice(&ring.current().jwks).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn keys_persist_rotate_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("auth/jwt");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ring = KeyRing::load_or_create(&keys_dir, t0).unwrap();
        let first = ring.current().current.kid.clone();
        assert_eq!(kids(&ring), std::slice::from_ref(&first));

        let again = KeyRing::load_or_create(&keys_dir, t0).unwrap();
        assert_eq!(
            again.current().current.kid,
            first,
            "the key survives a restart"
        );

        let t1 = t0 + Duration::from_secs(100);
        let second = ring.rotate(t1).unwrap();
        assert_ne!(second, first);
        assert_eq!(ring.current().current.kid, second);
        assert_eq!(kids(&ring), [first.clone(), second.clone()]);
        assert!(ring.current().verifying.contains_key(&first));

        // Retired keys stay while their tokens may live.
        assert_eq!(
            ring.prune(t1 + Duration::from_secs(3600), Duration::from_secs(3600))
                .unwrap(),
            0
        );
        assert_eq!(
            ring.prune(t1 + Duration::from_secs(3601), Duration::from_secs(3600))
                .unwrap(),
            1
        );
        assert_eq!(kids(&ring), std::slice::from_ref(&second));
        assert!(!keys_dir.join(format!("{first}.pem")).exists());

        let reloaded = KeyRing::load_or_create(&keys_dir, t1).unwrap();
        assert_eq!(reloaded.current().current.kid, second);
        assert!(!reloaded.current_older_than(t1, Duration::from_secs(10)));
        assert!(reloaded.current_older_than(t1 + Duration::from_secs(10), Duration::from_secs(10)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys_dir.join(format!("{second}.pem")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
