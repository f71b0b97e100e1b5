//! Application credentials (AK/SK) as the platform manager provisions them over Mm5 with
//! EdgeGallery's `PUT /mep/appMng/v1/applications/{appInstanceId}/confs`.
//!
//! The secret key is sealed under the master key before it reaches the store and is only opened
//! for the moment a token request is checked. Each record carries a *generation*: tokens name the
//! generation they were issued under, so deleting the credentials (or changing the key pair)
//! revokes every token issued before, without a token blacklist.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::secrets::{MasterKey, Sealed, SecretError};
use crate::model::ids::AppInstanceId;
use crate::store::{Store, StoreError, Table, Write};

/// Characters EdgeGallery allows in access and secret keys (`[\w+/=]`).
fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'/' | b'=')
}

pub const ACCESS_KEY_LEN: usize = 20;
pub const SECRET_KEY_LEN: usize = 64;
const MAX_NAME_LEN: usize = 128;
const MAX_REQUIRED_SERVICES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Invalid(String),
    #[error("the access key is already provisioned for another application instance")]
    AccessKeyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// The body of `PUT .../confs`. Deliberately not `Debug`: it holds the secret key.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Confs)]
#[serde(rename_all = "camelCase")]
pub struct ConfsBody {
    auth_info: AuthInfoBody,
    #[serde(default)]
    app_info: Option<AppInfo>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Confs::AuthInfo)]
struct AuthInfoBody {
    credentials: CredentialsBody,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Confs::Credentials)]
#[serde(rename_all = "camelCase")]
struct CredentialsBody {
    #[schema(pattern = "^[A-Za-z0-9_+/=]{20}$")]
    access_key_id: String,
    #[schema(pattern = "^[A-Za-z0-9_+/=]{64}$")]
    secret_key: String,
}

/// `appInfo` of the confs resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Confs::AppInfo)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub app_name: Option<String>,
    /// At most 256 names of 1 to 128 characters.
    #[serde(default)]
    #[schema(max_items = 256)]
    pub required_services: Vec<String>,
}

/// Validated credentials, ready to be sealed.
pub struct NewCredentials {
    access_key_id: String,
    secret_key: Zeroizing<String>,
    app_info: AppInfo,
}

impl ConfsBody {
    /// Checks the body against EdgeGallery's rules: AK `^[\w+/=]{20}$`, SK `^[\w+/=]{64}$`.
    /// Messages never contain the secret.
    pub fn validate(self) -> Result<NewCredentials, String> {
        let CredentialsBody {
            access_key_id,
            secret_key,
        } = self.auth_info.credentials;
        let secret_key = Zeroizing::new(secret_key);
        if access_key_id.len() != ACCESS_KEY_LEN || !access_key_id.bytes().all(key_char) {
            return Err(format!(
                "authInfo.credentials.accessKeyId must be {ACCESS_KEY_LEN} characters of [A-Za-z0-9_+/=]"
            ));
        }
        if secret_key.len() != SECRET_KEY_LEN || !secret_key.bytes().all(key_char) {
            return Err(format!(
                "authInfo.credentials.secretKey must be {SECRET_KEY_LEN} characters of [A-Za-z0-9_+/=]"
            ));
        }
        let app_info = self.app_info.unwrap_or_default();
        if let Some(name) = &app_info.app_name {
            if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
                return Err(format!(
                    "appInfo.appName must be 1 to {MAX_NAME_LEN} characters"
                ));
            }
        }
        if app_info.required_services.len() > MAX_REQUIRED_SERVICES {
            return Err(format!(
                "appInfo.requiredServices may hold at most {MAX_REQUIRED_SERVICES} names"
            ));
        }
        if app_info
            .required_services
            .iter()
            .any(|s| s.is_empty() || s.chars().count() > MAX_NAME_LEN)
        {
            return Err(format!(
                "appInfo.requiredServices[] must be 1 to {MAX_NAME_LEN} characters"
            ));
        }
        Ok(NewCredentials {
            access_key_id,
            secret_key,
            app_info,
        })
    }
}

/// The record kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    app_instance_id: AppInstanceId,
    access_key_id: String,
    secret_key: Sealed,
    app_info: AppInfo,
    generation: u64,
}

/// One application's credentials, as the token endpoint and the bearer check use them.
#[derive(Debug)]
pub struct AppCredential {
    pub app: AppInstanceId,
    pub access_key_id: String,
    secret_key: Sealed,
    pub app_info: AppInfo,
    pub generation: u64,
    /// Names global discovery shows this app when restricted; `None` means all.
    pub visible_services: Option<Arc<[String]>>,
}

impl AppCredential {
    fn from_record(r: Record) -> Self {
        let all = r.app_info.required_services.is_empty()
            || r.app_info.required_services.iter().any(|s| s == "*");
        Self {
            visible_services: (!all).then(|| r.app_info.required_services.clone().into()),
            app: r.app_instance_id,
            access_key_id: r.access_key_id,
            secret_key: r.secret_key,
            app_info: r.app_info,
            generation: r.generation,
        }
    }

    /// The representation of `GET .../confs`: everything but the secret.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "authInfo": {"credentials": {"accessKeyId": self.access_key_id}},
            "appInfo": self.app_info,
        })
    }
}

/// Binds a sealed secret to its owner and access key.
fn seal_context(app: &AppInstanceId, access_key_id: &str) -> Vec<u8> {
    format!("mep/app-credentials/{app}/{access_key_id}").into_bytes()
}

#[derive(Default)]
struct Index {
    by_app: HashMap<AppInstanceId, Arc<AppCredential>>,
    by_access_key: HashMap<String, Arc<AppCredential>>,
}

/// Provisioned credentials: an in-memory index kept in step with the store.
pub struct Credentials {
    store: Store,
    master: MasterKey,
    index: RwLock<Index>,
    /// Serializes changes so that the AK uniqueness check and the commit cannot interleave.
    writer: tokio::sync::Mutex<()>,
}

/// What a `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Replaced,
}

impl Credentials {
    pub fn load(store: Store, master: MasterKey) -> Result<Self, CredentialError> {
        let mut index = Index::default();
        for (key, value) in store.load(Table::AppCredentials)? {
            match serde_json::from_slice::<Record>(&value) {
                Ok(record) => {
                    let cred = Arc::new(AppCredential::from_record(record));
                    index
                        .by_access_key
                        .insert(cred.access_key_id.clone(), cred.clone());
                    index.by_app.insert(cred.app.clone(), cred);
                }
                Err(e) => tracing::error!(key, error = %e, "skipping unreadable credential record"),
            }
        }
        Ok(Self {
            store,
            master,
            index: RwLock::new(index),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The key that seals secrets (shared signing keys are sealed with it too).
    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    pub fn by_app(&self, app: &AppInstanceId) -> Option<Arc<AppCredential>> {
        self.index.read().by_app.get(app).cloned()
    }

    pub fn by_access_key(&self, access_key_id: &str) -> Option<Arc<AppCredential>> {
        self.index.read().by_access_key.get(access_key_id).cloned()
    }

    /// The secret key of `cred`, wiped from memory when dropped.
    pub fn secret_key(&self, cred: &AppCredential) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        self.master.open(
            &cred.secret_key,
            &seal_context(&cred.app, &cred.access_key_id),
        )
    }

    /// Creates or replaces the credentials of `app`. Changing the key pair starts a new
    /// generation (revoking earlier tokens); changing only `appInfo` keeps it.
    pub async fn put(
        &self,
        app: AppInstanceId,
        new: NewCredentials,
    ) -> Result<(PutOutcome, Arc<AppCredential>), CredentialError> {
        let _serial = self.writer.lock().await;
        let existing = self.by_app(&app);
        if let Some(holder) = self.by_access_key(&new.access_key_id) {
            if holder.app != app {
                return Err(CredentialError::AccessKeyTaken);
            }
        }
        let same_keys = match &existing {
            Some(old) if old.access_key_id == new.access_key_id => {
                let old_secret = self.secret_key(old)?;
                bool::from(old_secret.as_slice().ct_eq(new.secret_key.as_bytes()))
            }
            _ => false,
        };
        let generation = match &existing {
            Some(old) if same_keys => old.generation,
            _ => new_generation(existing.as_deref().map(|c| c.generation)),
        };
        let record = Record {
            secret_key: self.master.seal(
                new.secret_key.as_bytes(),
                &seal_context(&app, &new.access_key_id),
            )?,
            app_instance_id: app.clone(),
            access_key_id: new.access_key_id,
            app_info: new.app_info,
            generation,
        };
        let value = serde_json::to_vec(&record)
            .map_err(|e| CredentialError::Invalid(format!("cannot encode credentials: {e}")))?;
        self.store
            .commit(vec![Write::Put {
                table: Table::AppCredentials,
                key: app.as_str().to_owned(),
                value,
            }])
            .await?;
        let cred = Arc::new(AppCredential::from_record(record));
        let mut index = self.index.write();
        if let Some(old) = &existing {
            index.by_access_key.remove(&old.access_key_id);
        }
        index
            .by_access_key
            .insert(cred.access_key_id.clone(), cred.clone());
        index.by_app.insert(app, cred.clone());
        let outcome = if existing.is_some() {
            PutOutcome::Replaced
        } else {
            PutOutcome::Created
        };
        Ok((outcome, cred))
    }

    /// Removes the credentials of `app`; false when there were none.
    pub async fn delete(&self, app: &AppInstanceId) -> Result<bool, CredentialError> {
        let _serial = self.writer.lock().await;
        let Some(existing) = self.by_app(app) else {
            return Ok(false);
        };
        self.store
            .commit(vec![Write::Delete {
                table: Table::AppCredentials,
                key: app.as_str().to_owned(),
            }])
            .await?;
        let mut index = self.index.write();
        index.by_app.remove(app);
        index.by_access_key.remove(&existing.access_key_id);
        Ok(true)
    }
}

impl Credentials {
    /// Applies credentials another node provisioned or removed (etcd store).
    pub async fn apply_replicated(&self, change: &crate::store::Replicated) {
        let _serial = self.writer.lock().await;
        if !self.store.claim(change) {
            return;
        }
        let Ok(app) = AppInstanceId::parse(&change.key) else {
            return;
        };
        let Ok(record) = change.decode::<Record>() else {
            return;
        };
        let mut index = self.index.write();
        if let Some(old) = index.by_app.remove(&app) {
            index.by_access_key.remove(&old.access_key_id);
        }
        if let Some(record) = record {
            let cred = Arc::new(AppCredential::from_record(record));
            index
                .by_access_key
                .insert(cred.access_key_id.clone(), cred.clone());
            index.by_app.insert(app, cred);
        }
    }
}

/// A generation different from `previous`, unpredictable so that it says nothing about others.
fn new_generation(previous: Option<u64>) -> u64 {
    loop {
        let g = uuid::Uuid::new_v4().as_u64_pair().0;
        if Some(g) != previous {
            return g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(ak: &str, sk: &str) -> ConfsBody {
        serde_json::from_value(serde_json::json!({
            "authInfo": {"credentials": {"accessKeyId": ak, "secretKey": sk}},
            "appInfo": {"appName": "demo", "requiredServices": ["rnis"]}
        }))
        .unwrap()
    }

    const AK: &str = "QVUJMSUMgS0VZLS0tLS0";
    const SK: &str = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc";

    #[test]
    fn validation_follows_edgegallery_and_hides_the_secret() {
        assert!(body(AK, SK).validate().is_ok());
        let err = body("short", SK).validate().err().unwrap();
        assert!(err.contains("accessKeyId"));
        let bad_sk = format!("{}!", &SK[..63]);
        let err = body(AK, &bad_sk).validate().err().unwrap();
        assert!(err.contains("secretKey") && !err.contains(&bad_sk));
    }

    #[tokio::test]
    async fn secrets_are_sealed_in_the_store_and_generations_track_key_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let creds = Credentials::load(store.clone(), master).unwrap();
        let app = AppInstanceId::parse("app-1").unwrap();
        let (outcome, first) = creds
            .put(app.clone(), body(AK, SK).validate().unwrap())
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Created);
        assert_eq!(&*creds.secret_key(&first).unwrap(), SK.as_bytes());
        let raw = store.load(Table::AppCredentials).unwrap();
        assert!(!String::from_utf8_lossy(&raw[0].1).contains(SK));
        assert_eq!(
            first.visible_services.as_deref(),
            Some(&["rnis".to_owned()][..])
        );

        // Same keys: same generation. New secret: new generation.
        let (outcome, again) = creds
            .put(app.clone(), body(AK, SK).validate().unwrap())
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Replaced);
        assert_eq!(again.generation, first.generation);
        let other_sk = SK.replace('D', "E");
        let (_, changed) = creds
            .put(app.clone(), body(AK, &other_sk).validate().unwrap())
            .await
            .unwrap();
        assert_ne!(changed.generation, first.generation);

        let other = AppInstanceId::parse("app-2").unwrap();
        assert!(matches!(
            creds.put(other, body(AK, SK).validate().unwrap()).await,
            Err(CredentialError::AccessKeyTaken)
        ));
        assert!(creds.delete(&app).await.unwrap());
        assert!(creds.by_access_key(AK).is_none());
        assert!(!creds.delete(&app).await.unwrap());
    }
}
