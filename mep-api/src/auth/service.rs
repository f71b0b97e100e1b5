//! The authentication service of a running mep: credentials, signing keys, the lockout and the
//! settings that tie them together. Handlers and middleware share it in an `Arc`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::credentials::{AppCredential, CredentialError, Credentials};
use super::keys::{unix, KeyError, KeyRing};
use super::lockout::{Lockout, LockoutPolicy};
use super::replay::ReplayGuard;
use super::secrets::{MasterKey, SecretError};
use super::tokens::{issue, Claims, TokenError, Verifier};
use crate::clock::Clock;
use crate::model::ids::AppInstanceId;
use crate::store::{Replicated, Store, Table, Write};

/// Settings of authentication on Mp1.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// When false, Mp1 trusts every caller (local testing only).
    pub enabled: bool,
    /// `iss` of issued tokens, checked on every request.
    pub issuer: String,
    pub token_ttl: Duration,
    /// How far `x-sdk-date` of a signed token request may be from the platform clock.
    pub max_clock_skew: Duration,
    pub lockout: LockoutPolicy,
    /// Rotate the signing key once it is this old; `None` rotates only on request.
    pub key_max_age: Option<Duration>,
    /// Restrict global discovery to the caller's `requiredServices`.
    pub restrict_discovery: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            issuer: "mep".into(),
            token_ttl: Duration::from_secs(3600),
            max_clock_skew: Duration::from_secs(300),
            lockout: LockoutPolicy::default(),
            key_max_age: Some(Duration::from_secs(30 * 86_400)),
            restrict_discovery: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot sign a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// An authenticated application and what it may see.
#[derive(Debug, Clone)]
pub struct Grant {
    pub app: AppInstanceId,
    pub visible_services: Option<Arc<[String]>>,
}

/// A freshly issued access token.
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

/// What verifying a token established, kept so that the next request with the same token skips
/// the signature check. Only tokens that verified are cached, under their full text; expiry and
/// revocation are still checked on every use.
#[derive(Clone)]
struct Verified {
    app: AppInstanceId,
    exp: u64,
    gen: u64,
}

/// Tokens remembered after verification (a bounded cache; a miss costs one ECDSA verification).
const VERIFIED_TOKENS: usize = 16_384;

/// See the module documentation.
pub struct Auth {
    verified: quick_cache::sync::Cache<String, Verified>,
    config: AuthConfig,
    credentials: Credentials,
    keys: KeyRing,
    verifier: Verifier,
    lockout: Lockout,
    replays: ReplayGuard,
    clock: Arc<dyn Clock>,
    store: Store,
    /// What this node last saw of the key ring shared with other nodes (etcd store).
    shared_ring: parking_lot::Mutex<super::shared_keys::SharedRing>,
}

/// How long a retired key keeps verifying beyond the token lifetime (clock differences).
const RETIRED_KEY_MARGIN: Duration = Duration::from_secs(60);

impl Auth {
    /// Opens the master key, the signing keys (in `<data_dir>/auth/`) and the stored credentials.
    pub fn open(
        config: AuthConfig,
        data_dir: &Path,
        master_key_file: Option<&Path>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthError> {
        let dir = data_dir.join("auth");
        let master = match master_key_file {
            Some(path) => MasterKey::load_or_create(path)?,
            None => MasterKey::load_or_create(&dir.join("master.key"))?,
        };
        let keys = KeyRing::load_or_create(&dir.join("jwt"), clock.now())?;
        let credentials = Credentials::load(store.clone(), master)?;
        let auth = Self {
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS),
            verifier: Verifier::new(&config.issuer),
            lockout: Lockout::new(config.lockout),
            replays: ReplayGuard::default(),
            config,
            credentials,
            keys,
            clock,
            store,
            shared_ring: parking_lot::Mutex::new(Default::default()),
        };
        auth.maintain_keys()?;
        Ok(auth)
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn shared_ring(&self) -> &parking_lot::Mutex<super::shared_keys::SharedRing> {
        &self.shared_ring
    }

    pub fn lockout(&self) -> &Lockout {
        &self.lockout
    }

    pub fn replays(&self) -> &ReplayGuard {
        &self.replays
    }

    /// On a store shared by several nodes, stores a lock this node just set, for the others
    /// to apply; in the background (the refused request does not wait for etcd), and a lost
    /// one only leaves the lock to this node.
    pub fn share_lock(&self, access_key: &str, source: IpAddr, locked_for: Duration) {
        if !self.store.is_shared() {
            return;
        }
        let record = SharedLock {
            access_key: access_key.to_owned(),
            source,
            until_ms: (self.now() + locked_for)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let Ok(value) = serde_json::to_vec(&record) else {
            return;
        };
        let key = format!("{access_key}@{source}");
        let store = self.store.clone();
        tokio::spawn(async move {
            let shared = async {
                let lease = store.grant_lease(locked_for).await?;
                store
                    .commit(vec![Write::PutLeased {
                        table: Table::Lockouts,
                        key,
                        value,
                        lease,
                    }])
                    .await
            };
            if let Err(e) = shared.await {
                tracing::warn!(error = %e, "a token request lock not shared with the other nodes");
            }
        });
    }

    /// A lock another node set.
    pub fn apply_replicated_lock(&self, change: &Replicated) {
        if !self.store.claim(change) {
            return;
        }
        if let Ok(Some(lock)) = change.decode::<SharedLock>() {
            let until = UNIX_EPOCH + Duration::from_millis(lock.until_ms);
            self.lockout
                .apply_lock(&lock.access_key, lock.source, until);
        }
    }

    /// Records a signed request's use for the other nodes sharing the store.
    pub async fn record_shared_use(
        &self,
        used: &super::replay::SignedUse,
    ) -> Result<(), super::replay::SharedReplay> {
        used.record(&self.store, self.now()).await
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Issues a token for `cred`: one ECDSA signature with the cached key.
    pub fn issue_for(&self, cred: &AppCredential) -> Result<IssuedToken, AuthError> {
        let now = unix(self.now());
        let ttl = self.config.token_ttl.as_secs();
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: cred.app.as_str().to_owned(),
            iat: now,
            exp: now + ttl,
            gen: cred.generation,
        };
        let access_token = issue(&self.keys.current(), &claims)?;
        Ok(IssuedToken {
            access_token,
            expires_in: ttl,
        })
    }

    /// Checks a bearer token and that its credentials still stand.
    pub fn authenticate(&self, token: &str) -> Result<Grant, TokenError> {
        let now = unix(self.now());
        let verified = match self.verified.get(token) {
            Some(v) if v.exp > now => v,
            Some(_) => return Err(TokenError::Expired),
            None => {
                let claims = self.verifier.verify(&self.keys.current(), token, now)?;
                let v = Verified {
                    app: AppInstanceId::parse(&claims.sub).map_err(|_| TokenError::Malformed)?,
                    exp: claims.exp,
                    gen: claims.gen,
                };
                self.verified.insert(token.to_owned(), v.clone());
                v
            }
        };
        let app = verified.app;
        let cred = self
            .credentials
            .by_app(&app)
            .filter(|c| c.generation == verified.gen)
            .ok_or(TokenError::Revoked)?;
        Ok(Grant {
            app,
            visible_services: if self.config.restrict_discovery {
                cred.visible_services.clone()
            } else {
                None
            },
        })
    }

    /// Removes an application's credentials, revoking its tokens.
    pub async fn remove_credentials(&self, app: &AppInstanceId) -> Result<bool, CredentialError> {
        let existing = self.credentials.by_app(app);
        let removed = self.credentials.delete(app).await?;
        if let Some(cred) = existing {
            self.lockout.forget(&cred.access_key_id);
        }
        Ok(removed)
    }

    /// Makes a new signing key current; tokens signed by the old one stay valid until they expire.
    pub fn rotate_keys(&self) -> Result<String, KeyError> {
        self.keys.rotate(self.now())
    }

    /// Rotates the signing key when it is older than `key_max_age` and prunes retired keys whose
    /// tokens have all expired.
    pub fn maintain_keys(&self) -> Result<(), KeyError> {
        let now = self.now();
        if let Some(max_age) = self.config.key_max_age {
            if self.keys.current_older_than(now, max_age) {
                self.keys.rotate(now)?;
            }
        }
        self.keys
            .prune(now, self.config.token_ttl + RETIRED_KEY_MARGIN)?;
        Ok(())
    }
}

/// Runs [`Auth::maintain_keys`] every minute until shutdown.
pub async fn run_key_maintenance(auth: Arc<Auth>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let auth = auth.clone();
                let maintained = auth.clone();
                match tokio::task::spawn_blocking(move || maintained.maintain_keys()).await {
                    Ok(Ok(())) => {
                        if let Err(e) = auth.publish_keys_if_changed().await {
                            tracing::error!(error = %e, "cannot share the token signing keys");
                        }
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "token key maintenance failed"),
                    Err(e) => tracing::error!(error = %e, "token key maintenance panicked"),
                }
            }
        }
    }
}

/// A token request lock as stored for the other nodes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharedLock {
    access_key: String,
    source: IpAddr,
    /// Until when, Unix milliseconds.
    until_ms: u64,
}
