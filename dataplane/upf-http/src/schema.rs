//! The wire schema of `upf-http` (version 1), described for controller authors in
//! `dataplane/upf-http/UPF-HTTP.md`. Changing anything here that a controller can see is a schema change:
//! additive and optional fields keep the version, anything else needs a new one.

use serde::Serialize;
use url::Url;

use mep_rules::{DnsRule, Snapshot, TrafficRule};

/// The schema version in every body (`schemaVersion`), in [`SCHEMA_HEADER`] and in the path.
pub const SCHEMA_VERSION: u32 = 1;

/// Carries [`SCHEMA_VERSION`] on every request, bodiless DELETEs included.
pub const SCHEMA_HEADER: &str = "mep-upf-schema";

/// Carries the change sequence number, the same on every retry of one change, so that a
/// controller can drop a delayed attempt of an older change.
pub const SEQUENCE_HEADER: &str = "mep-change-seq";

/// The path prefix of this schema version.
const VERSION_SEGMENT: &str = "v1";

/// Which rule collection a per-rule path names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Collection {
    Traffic,
    Dns,
}

impl Collection {
    fn segment(self) -> &'static str {
        match self {
            Collection::Traffic => "traffic-rules",
            Collection::Dns => "dns-rules",
        }
    }
}

/// `{endpoint}/v1/apps/{appInstanceId}/{traffic-rules|dns-rules}/{ruleId}`, each segment
/// percent-encoded.
pub(crate) fn rule_url(
    endpoint: &Url,
    app_instance_id: &str,
    collection: Collection,
    rule_id: &str,
) -> Result<Url, String> {
    with_segments(
        endpoint,
        &[
            VERSION_SEGMENT,
            "apps",
            app_instance_id,
            collection.segment(),
            rule_id,
        ],
    )
}

/// `{endpoint}/v1/state`.
pub(crate) fn state_url(endpoint: &Url) -> Result<Url, String> {
    with_segments(endpoint, &[VERSION_SEGMENT, "state"])
}

fn with_segments(endpoint: &Url, segments: &[&str]) -> Result<Url, String> {
    let mut url = endpoint.clone();
    url.path_segments_mut()
        .map_err(|()| format!("endpoint {endpoint} cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The body of a per-rule PUT.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuleDocument<'a, R> {
    pub schema_version: u32,
    pub app_instance_id: &'a str,
    pub app_name: &'a str,
    pub rule: &'a R,
}

/// The body of `PUT /v1/state`: every ACTIVE rule, replacing whatever the controller holds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StateDocument<'a> {
    pub schema_version: u32,
    pub snapshot_version: u64,
    pub traffic_rules: Vec<StateEntry<'a, TrafficRule>>,
    pub dns_rules: Vec<StateEntry<'a, DnsRule>>,
}

/// One rule of a [`StateDocument`], with its owner.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StateEntry<'a, R> {
    pub app_instance_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_name: Option<&'a str>,
    pub rule: &'a R,
}

impl<'a> StateDocument<'a> {
    /// The ACTIVE rules of `snapshot`, traffic rules in match order (priority 0 first).
    pub fn from_snapshot(snapshot: &'a Snapshot) -> Self {
        StateDocument {
            schema_version: SCHEMA_VERSION,
            snapshot_version: snapshot.version,
            traffic_rules: snapshot
                .traffic_rules()
                .map(|r| StateEntry {
                    app_instance_id: &r.app_instance_id,
                    app_name: snapshot.app_name(&r.app_instance_id),
                    rule: &r.rule,
                })
                .collect(),
            dns_rules: snapshot
                .dns_rules()
                .map(|r| StateEntry {
                    app_instance_id: &r.app_instance_id,
                    app_name: snapshot.app_name(&r.app_instance_id),
                    rule: &r.rule,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_appended_and_encoded() {
        let base = Url::parse("https://upf.example:8443/api/").unwrap();
        let url = rule_url(&base, "app 1/x", Collection::Dns, "r.1").unwrap();
        assert_eq!(
            url.as_str(),
            "https://upf.example:8443/api/v1/apps/app%201%2Fx/dns-rules/r.1"
        );
        let bare = Url::parse("http://upf.example").unwrap();
        assert_eq!(
            state_url(&bare).unwrap().as_str(),
            "http://upf.example/v1/state"
        );
    }
}
