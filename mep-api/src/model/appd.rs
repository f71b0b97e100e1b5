//! The Mm5 application configuration (EdgeGallery's `appd_configuration` shape) and the task
//! progress the platform manager polls.

use mep_rules::{DnsRule, TrafficRule};
use serde::{Deserialize, Serialize};

use super::common::require_text;

/// An application instance's rule configuration as the platform manager sends and reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppDConfig {
    #[serde(default, rename = "appTrafficRule")]
    pub app_traffic_rule: Vec<TrafficRule>,
    #[serde(default, rename = "appDNSRule")]
    pub app_dns_rule: Vec<DnsRule>,
    #[serde(default)]
    pub app_support_mp1: bool,
    #[schema(min_length = 1, max_length = 63, pattern = r"\S")]
    pub app_name: String,
}

impl AppDConfig {
    /// Checks what can be checked within one configuration: every rule, unique ids, the count
    /// limit. Checks across applications (domain ownership) are the registry's.
    pub fn validate(&self, max_rules: usize) -> Result<(), String> {
        require_text("appName", &self.app_name, 63)?;
        let count = self.app_traffic_rule.len() + self.app_dns_rule.len();
        if count > max_rules {
            return Err(format!(
                "{count} rules exceed the limit of {max_rules} rules per application instance"
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for rule in &self.app_traffic_rule {
            rule.compile()
                .map_err(|e| format!("trafficRule {}: {e}", rule.traffic_rule_id))?;
            if !ids.insert(("t", rule.traffic_rule_id.as_str())) {
                return Err(format!(
                    "trafficRuleId {} is used twice",
                    rule.traffic_rule_id
                ));
            }
        }
        for rule in &self.app_dns_rule {
            rule.validate()
                .map_err(|e| format!("dnsRule {}: {e}", rule.dns_rule_id))?;
            if !ids.insert(("d", rule.dns_rule_id.as_str())) {
                return Err(format!("dnsRuleId {} is used twice", rule.dns_rule_id));
            }
        }
        Ok(())
    }
}

/// `configResult` of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfigResult {
    Processing,
    Success,
    Failure,
}

/// `TaskProgress`, EdgeGallery's answer to AppD changes and task queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskProgress {
    pub task_id: String,
    pub app_instance_id: String,
    pub config_result: ConfigResult,
    /// Percent done, as a string ("0".."100").
    pub config_phase: String,
    /// The reason of a failure (EdgeGallery spells it with a capital D).
    #[serde(rename = "Detailed")]
    pub detailed: String,
}
