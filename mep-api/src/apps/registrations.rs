//! MEC 011 v3 application registration (`/registrations`): applications not instantiated by MEC
//! management announce themselves with an `AppInfo`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Apps, AppsError};
use crate::model::common::{require_text, CategoryRef};
use crate::model::ids::{new_id, AppInstanceId};
use crate::model::service::EndPointInfo;
use crate::store::{Table, Write};

/// A stored registration: the `AppInfo` as given, with `appInstanceId` filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRegistration {
    pub app_instance_id: AppInstanceId,
    pub app_info: Value,
}

/// `ServiceDependency` of a v3 `AppInfo` (`appServiceRequired[]`, `appServiceOptional[]`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceDependency {
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    ser_name: String,
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    version: String,
    #[serde(default)]
    ser_category: Option<CategoryRef>,
}

/// `FeatureDependency` of a v3 `AppInfo` (`appFeatureRequired[]`, `appFeatureOptional[]`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FeatureDependency {
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    feature_name: String,
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    version: String,
}

/// The members of a MEC 011 v3.1.1 `AppInfo` that have a checkable form (the EAS `appProfile`,
/// transport dependencies and permissions are any JSON); the registration itself is stored and
/// echoed as the application sent it, members mep does not check included.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AppInfo)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppInfoMembers {
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    app_name: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256, pattern = r"\S")]
    app_provider: Option<String>,
    #[serde(default)]
    app_category: Option<CategoryRef>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256, pattern = r"\S")]
    app_d_id: Option<String>,
    #[serde(default)]
    endpoint: Option<EndPointInfo>,
    #[serde(default)]
    app_service_required: Option<Vec<ServiceDependency>>,
    #[serde(default)]
    app_service_optional: Option<Vec<ServiceDependency>>,
    #[serde(default)]
    app_feature_required: Option<Vec<FeatureDependency>>,
    #[serde(default)]
    app_feature_optional: Option<Vec<FeatureDependency>>,
    #[serde(default)]
    is_ins_by_mec: Option<bool>,
}

/// Checks an `AppInfo` against MEC 011 v3.1.1 clause 7.1.2.6.
fn validate_app_info(info: &Value) -> Result<(), AppsError> {
    if !info.is_object() {
        return Err(AppsError::Invalid("AppInfo must be a JSON object".into()));
    }
    let members: AppInfoMembers = serde_json::from_value(info.clone())
        .map_err(|e| AppsError::Invalid(format!("invalid AppInfo: {e}")))?;
    let invalid = AppsError::Invalid;
    require_text("appName", &members.app_name, 128).map_err(invalid)?;
    for (what, text) in [
        ("appProvider", &members.app_provider),
        ("appDId", &members.app_d_id),
    ] {
        if let Some(text) = text {
            require_text(what, text, 256).map_err(invalid)?;
        }
    }
    if let Some(category) = &members.app_category {
        category.validate("appCategory").map_err(invalid)?;
    }
    match &members.endpoint {
        Some(endpoint) => endpoint.validate("endpoint").map_err(invalid)?,
        None if !members.is_ins_by_mec.unwrap_or(false) => {
            return Err(AppsError::Invalid(
                "endpoint is required when isInsByMec is false".into(),
            ))
        }
        None => {}
    }
    let services = [&members.app_service_required, &members.app_service_optional];
    for dependency in services.into_iter().flatten().flatten() {
        require_text("serName", &dependency.ser_name, 128).map_err(invalid)?;
        require_text("version", &dependency.version, 64).map_err(invalid)?;
        if let Some(category) = &dependency.ser_category {
            category.validate("serCategory").map_err(invalid)?;
        }
    }
    let features = [&members.app_feature_required, &members.app_feature_optional];
    for dependency in features.into_iter().flatten().flatten() {
        require_text("featureName", &dependency.feature_name, 128).map_err(invalid)?;
        require_text("version", &dependency.version, 64).map_err(invalid)?;
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
        let _turn = self.changes.app(&app).await;
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
        // The URI names the registration, whatever the body says.
        info["appInstanceId"] = Value::String(app.to_string());
        let _turn = self.changes.app(app).await;
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
                value: super::encode(&record)?,
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
        let _turn = self.changes.app(app).await;
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
