//! What an application confirms over Mp1: that it is ready, and that it finished the operation a
//! termination notification announced (MEC 011 clauses 7.1.2.7, 7.1.2.8, 7.1.3.1).

use serde::{Deserialize, Serialize};

/// `OperationActionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationActionType {
    Stopping,
    Terminating,
}

impl OperationActionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopping => "STOPPING",
            Self::Terminating => "TERMINATING",
        }
    }
}

/// `ReadyIndicationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReadyIndicationType {
    Ready,
}

/// `AppTerminationConfirmation`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppTerminationConfirmation {
    pub operation_action: OperationActionType,
}

/// `AppReadyConfirmation`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AppReadyConfirmation {
    pub indication: ReadyIndicationType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_take_only_the_spec_values() {
        let ok: AppTerminationConfirmation =
            serde_json::from_str(r#"{"operationAction":"STOPPING"}"#).unwrap();
        assert_eq!(ok.operation_action.as_str(), "STOPPING");
        assert!(
            serde_json::from_str::<AppTerminationConfirmation>(r#"{"operationAction":"X"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<AppReadyConfirmation>(r#"{"indication":"READY"}"#).is_ok());
        assert!(serde_json::from_str::<AppReadyConfirmation>(r#"{"indication":"ready"}"#).is_err());
    }
}
