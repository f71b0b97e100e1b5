//! MEC 011 v3 application registration (`/registrations`): applications not instantiated by MEC
//! management announce themselves with an `AppInfo`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Apps, AppsError};
use crate::model::common::require_text;
use crate::model::ids::{new_id, AppInstanceId};
use crate::store::{Table, Write};

/// A stored registration: the `AppInfo` as given, with `appInstanceId` filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRegistration {
    pub app_instance_id: AppInstanceId,
    pub app_info: Value,
}

/// Checks the members of `AppInfo` the platform relies on.
fn validate_app_info(info: &Value) -> Result<(), AppsError> {
    let obj = info
        .as_object()
        .ok_or_else(|| AppsError::Invalid("AppInfo must be a JSON object".into()))?;
    let name = obj
        .get("appName")
        .and_then(Value::as_str)
        .ok_or_else(|| AppsError::Invalid("appName is required".into()))?;
    require_text("appName", name, 128).map_err(AppsError::Invalid)?;
    let by_mec = match obj.get("isInsByMec") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(AppsError::Invalid("isInsByMec must be a boolean".into())),
    };
    if !by_mec && obj.get("endpoint").is_none_or(Value::is_null) {
        return Err(AppsError::Invalid(
            "endpoint is required when isInsByMec is false".into(),
        ));
    }
    Ok(())
}

impl Apps {
    /// `POST /registrations`: registers an application; the platform allocates
    /// `appInstanceId` unless the body carries one. Answers the id and the stored `AppInfo`.
    pub async fn register_app(&self, mut info: Value) -> Result<(AppInstanceId, Value), AppsError> {
        validate_app_info(&info)?;
        let app = match info.get("appInstanceId").and_then(Value::as_str) {
            Some(id) => AppInstanceId::parse(id).map_err(AppsError::Invalid)?,
            None => AppInstanceId::parse(&new_id()).map_err(AppsError::Invalid)?,
        };
        info["appInstanceId"] = Value::String(app.to_string());
        let _serial = self.changes.lock().await;
        if self.index.read().registrations.contains_key(&app) {
            return Err(AppsError::Conflict(format!(
                "application instance {app} is already registered"
            )));
        }
        self.store_registration(&app, &info).await?;
        Ok((app, info))
    }

    /// `PUT /registrations/{id}`: replaces the `AppInfo` of a registered application.
    pub async fn update_registration(
        &self,
        app: &AppInstanceId,
        mut info: Value,
    ) -> Result<(), AppsError> {
        validate_app_info(&info)?;
        match info.get("appInstanceId").and_then(Value::as_str) {
            Some(id) if id != app.as_str() => {
                return Err(AppsError::Invalid(
                    "appInstanceId in the body differs from the URI".into(),
                ))
            }
            _ => info["appInstanceId"] = Value::String(app.to_string()),
        }
        let _serial = self.changes.lock().await;
        if !self.index.read().registrations.contains_key(app) {
            return Err(AppsError::NotFound(format!(
                "application instance {app} is not registered"
            )));
        }
        self.store_registration(app, &info).await
    }

    async fn store_registration(&self, app: &AppInstanceId, info: &Value) -> Result<(), AppsError> {
        let record = AppRegistration {
            app_instance_id: app.clone(),
            app_info: info.clone(),
        };
        self.store
            .commit(vec![Write::Put {
                table: Table::Registrations,
                key: app.to_string(),
                value: serde_json::to_vec(&record)
                    .map_err(|e| AppsError::Invalid(e.to_string()))?,
            }])
            .await?;
        self.index.write().registrations.insert(app.clone(), record);
        Ok(())
    }

    pub fn registration(&self, app: &AppInstanceId) -> Result<Value, AppsError> {
        self.index
            .read()
            .registrations
            .get(app)
            .map(|r| r.app_info.clone())
            .ok_or_else(|| {
                AppsError::NotFound(format!("application instance {app} is not registered"))
            })
    }

    pub async fn deregister_app(&self, app: &AppInstanceId) -> Result<(), AppsError> {
        let _serial = self.changes.lock().await;
        if !self.index.read().registrations.contains_key(app) {
            return Err(AppsError::NotFound(format!(
                "application instance {app} is not registered"
            )));
        }
        self.store
            .commit(vec![Write::Delete {
                table: Table::Registrations,
                key: app.to_string(),
            }])
            .await?;
        self.index.write().registrations.remove(app);
        Ok(())
    }
}
