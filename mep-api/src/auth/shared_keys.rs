//! The token signing keys on a store shared by several nodes (etcd): one key ring for the site,
//! so that a token issued by any node verifies on every node.
//!
//! The ring is exported as one document, sealed with the master key (which every node is given
//! and which never goes into the store) and kept in the `meta` table. The first node to start
//! creates it (create-if-absent); the others adopt it. A node whose maintenance rotated or pruned
//! the ring publishes it with a compare-and-swap on what it last saw; if another node was first,
//! it adopts that one instead. Other nodes' publications arrive through replication.

use super::keys::KeyError;
use super::secrets::Sealed;
use super::service::Auth;
use crate::store::{Check, Replicated, StoreError, Table, Write};

/// The key of the sealed ring in the `meta` table.
pub const SHARED_KEYS: &str = "jwt_signing_keys";
/// The associated data of the seal: the ring cannot be passed off as another secret.
const CONTEXT: &[u8] = b"mep token signing keys v1";

/// What this node last saw of the shared ring.
#[derive(Default)]
pub(super) struct SharedRing {
    /// The sealed document as the store holds it (the compare of the next publication).
    stored: Option<Vec<u8>>,
    /// The unsealed document, to tell whether local maintenance changed the ring.
    exported: Vec<u8>,
}

fn key_error(e: impl std::fmt::Display) -> KeyError {
    KeyError::Invalid(format!("shared signing keys: {e}"))
}

impl Auth {
    fn seal_ring(&self, exported: &[u8]) -> Result<Vec<u8>, KeyError> {
        let sealed = self
            .credentials()
            .master()
            .seal(exported, CONTEXT)
            .map_err(key_error)?;
        serde_json::to_vec(&sealed).map_err(key_error)
    }

    /// Adopts a sealed ring from the store.
    fn adopt_sealed(&self, stored: Vec<u8>) -> Result<(), KeyError> {
        let sealed: Sealed = serde_json::from_slice(&stored).map_err(key_error)?;
        let exported = self
            .credentials()
            .master()
            .open(&sealed, CONTEXT)
            .map_err(|_| key_error("they do not open under this node's master key (every node needs the same master_key_file)"))?;
        self.keys().adopt(&exported)?;
        *self.shared_ring().lock() = SharedRing {
            stored: Some(stored),
            exported: exported.to_vec(),
        };
        Ok(())
    }

    /// At start: adopts the site's ring, or makes this node's the site's if there is none.
    pub async fn share_keys(&self) -> Result<(), KeyError> {
        if !self.store().is_shared() {
            return Ok(());
        }
        if let Some(stored) = self
            .store()
            .get(Table::Meta, SHARED_KEYS)
            .await
            .map_err(key_error)?
        {
            return self.adopt_sealed(stored);
        }
        self.publish_keys(None, self.keys().export()?).await
    }

    /// After maintenance: publishes the ring if maintenance changed it.
    pub async fn publish_keys_if_changed(&self) -> Result<(), KeyError> {
        if !self.store().is_shared() {
            return Ok(());
        }
        let exported = self.keys().export()?;
        let previous = {
            let shared = self.shared_ring().lock();
            if shared.exported == exported {
                return Ok(());
            }
            shared.stored.clone()
        };
        self.publish_keys(previous, exported).await
    }

    /// Stores this node's ring (`exported`) if the store still holds `previous` (`None`:
    /// nothing), else adopts what it holds.
    async fn publish_keys(
        &self,
        previous: Option<Vec<u8>>,
        exported: Vec<u8>,
    ) -> Result<(), KeyError> {
        let stored = self.seal_ring(&exported)?;
        let check = match previous {
            Some(value) => Check::Holds {
                table: Table::Meta,
                key: SHARED_KEYS.into(),
                value,
            },
            None => Check::Absent {
                table: Table::Meta,
                key: SHARED_KEYS.into(),
            },
        };
        let put = Write::Put {
            table: Table::Meta,
            key: SHARED_KEYS.into(),
            value: stored.clone(),
        };
        match self.store().commit_checked(vec![check], vec![put]).await {
            Ok(()) => {
                *self.shared_ring().lock() = SharedRing {
                    stored: Some(stored),
                    exported,
                };
                Ok(())
            }
            Err(StoreError::Conflict) => {
                let stored = self
                    .store()
                    .get(Table::Meta, SHARED_KEYS)
                    .await
                    .map_err(key_error)?
                    .ok_or_else(|| key_error("changed and then removed by another node"))?;
                self.adopt_sealed(stored)
            }
            Err(e) => Err(key_error(e)),
        }
    }

    /// The ring another node published (replication of the `meta` table).
    pub fn apply_replicated_keys(&self, change: &Replicated) {
        if change.key != SHARED_KEYS || !self.store().claim(change) {
            return;
        }
        let Some(stored) = change.value.clone() else {
            return;
        };
        if self.shared_ring().lock().stored.as_ref() == Some(&stored) {
            return;
        }
        match self.adopt_sealed(stored) {
            Ok(()) => tracing::info!("adopted the token signing keys another node published"),
            Err(e) => tracing::error!(error = %e, "cannot adopt the shared token signing keys"),
        }
    }
}
