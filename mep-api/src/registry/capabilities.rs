//! Platform capabilities for the platform manager (Mm5): the registered services, with the
//! applications whose availability subscriptions cover them as consumers.

use serde::Serialize;

use super::{DiscoveryQuery, Registry};

/// One consumer of a capability.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    pub application_instance_id: String,
}

/// `PlatformCapability` (EdgeGallery's Mm5 shape).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformCapability {
    pub capability_id: String,
    pub capability_name: String,
    pub status: crate::model::common::ServiceState,
    pub version: String,
    pub consumers: Vec<Consumer>,
}

impl Registry {
    /// The services matching `query` as capabilities; `id` narrows to one service.
    pub fn capabilities(
        &self,
        query: &DiscoveryQuery,
        id: Option<&str>,
    ) -> Vec<PlatformCapability> {
        let index = self.index.read();
        let mut out: Vec<PlatformCapability> = index
            .services
            .values()
            .filter(|e| id.is_none_or(|id| e.service.ser_instance_id == id))
            .filter(|e| query.selector_matches(&e.service) && query.attributes_match(&e.service))
            .map(|e| {
                let facts = e.facts();
                let mut consumers: Vec<String> = index
                    .subscriptions
                    .values()
                    .filter(|s| s.filtering_criteria.matches(&facts))
                    .map(|s| s.app.to_string())
                    .collect();
                consumers.sort();
                consumers.dedup();
                PlatformCapability {
                    capability_id: e.service.ser_instance_id.clone(),
                    capability_name: e.service.ser_name.clone(),
                    status: facts.state,
                    version: e.service.version.clone(),
                    consumers: consumers
                        .into_iter()
                        .map(|application_instance_id| Consumer {
                            application_instance_id,
                        })
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.capability_id.cmp(&b.capability_id));
        out
    }
}
