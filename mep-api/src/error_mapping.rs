//! Which HTTP status each domain error is. The domain modules (`registry`, `apps`, `auth`) know
//! nothing of HTTP; the handlers' `?` turns their errors into [`ApiError`]s here: a caller's
//! mistake is 4xx, a failure of the platform (store, encoding, an interrupted task) is 5xx.

use crate::apps::{AppsError, RuleChangeError};
use crate::auth::credentials::CredentialError;
use crate::problem::ApiError;
use crate::registry::RegistryError;
use crate::store::StoreError;

/// A store failure: a write that lost a race with another node is a conflict, a store that
/// cannot take writes now (etcd without quorum) is unavailable, anything else is internal.
fn store_error(e: &StoreError, detail: String) -> ApiError {
    match e {
        StoreError::Conflict => ApiError::Conflict(detail),
        StoreError::Unavailable(_) => ApiError::ServiceUnavailable(detail),
        _ => ApiError::Internal(detail),
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let detail = e.to_string();
        match e {
            RegistryError::Invalid(_) => ApiError::BadRequest(detail),
            RegistryError::ServiceNotFound(_) | RegistryError::SubscriptionNotFound(_) => {
                ApiError::NotFound(detail)
            }
            RegistryError::NotOwner { .. } => ApiError::Forbidden(detail),
            RegistryError::PreconditionFailed => ApiError::PreconditionFailed(detail),
            RegistryError::Quota(_) => ApiError::Forbidden(detail),
            RegistryError::Store(ref s) => store_error(s, detail),
            RegistryError::Encoding(_) => ApiError::Internal(detail),
        }
    }
}

impl From<AppsError> for ApiError {
    fn from(e: AppsError) -> Self {
        let detail = e.to_string();
        match e {
            AppsError::Invalid(_) => ApiError::BadRequest(detail),
            AppsError::NotFound(_) => ApiError::NotFound(detail),
            AppsError::Conflict(_) => ApiError::Conflict(detail),
            AppsError::Quota(_) => ApiError::Forbidden(detail),
            AppsError::Store(ref s) => store_error(s, detail),
            AppsError::Interrupted(_) | AppsError::Encoding(_) => ApiError::Internal(detail),
        }
    }
}

impl From<RuleChangeError> for ApiError {
    fn from(e: RuleChangeError) -> Self {
        let detail = e.to_string();
        match e {
            RuleChangeError::Invalid(_) => ApiError::BadRequest(detail),
            RuleChangeError::Conflict(_) => ApiError::Conflict(detail),
            RuleChangeError::NotFound(_) => ApiError::NotFound(detail),
            RuleChangeError::PreconditionFailed => ApiError::PreconditionFailed(detail),
            RuleChangeError::Store(ref s) => store_error(s, detail),
            RuleChangeError::Interrupted(_) | RuleChangeError::Encoding(_) => {
                ApiError::Internal(detail)
            }
            RuleChangeError::DataPlaneOutOfSync(_) => ApiError::ServiceUnavailable(detail),
        }
    }
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Invalid(d) => ApiError::BadRequest(d),
            CredentialError::AccessKeyTaken => ApiError::Conflict(e.to_string()),
            CredentialError::Store(ref s) => store_error(s, e.to_string()),
            CredentialError::Secret(_) => ApiError::Internal(e.to_string()),
        }
    }
}
