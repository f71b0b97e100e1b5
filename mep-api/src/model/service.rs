//! `ServiceInfo` and the types it carries (MEC 011 clause 8.1.2).

use serde::{Deserialize, Serialize};

use super::common::{require_text, CategoryRef, LinkType, ServiceState, MAX_INFO_URI};
use super::ids::AppInstanceId;

/// `SerializerType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SerializerType {
    Json,
    Xml,
    Protobuf3,
}

/// `LocalityType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LocalityType {
    MecSystem,
    MecHost,
    NfviPop,
    Zone,
    ZoneGroup,
    NfviNode,
}

/// `TransportType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransportType {
    RestHttp,
    MbTopicBased,
    MbRouting,
    MbPubsub,
    Rpc,
    RpcStreaming,
    Websocket,
}

/// `GrantType` of `OAuth2Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = SecurityInfo::OAuth2Info::GrantType)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrantType {
    #[serde(rename = "OAUTH2_AUTHORIZATION_CODE")]
    AuthorizationCode,
    #[serde(rename = "OAUTH2_IMPLICIT_GRANT")]
    ImplicitGrant,
    #[serde(rename = "OAUTH2_RESOURCE_OWNER")]
    ResourceOwner,
    #[serde(rename = "OAUTH2_CLIENT_CREDENTIALS")]
    ClientCredentials,
}

/// `OAuth2Info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = SecurityInfo::OAuth2Info)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Info {
    pub grant_types: Vec<GrantType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
}

/// `SecurityInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o_auth2_info: Option<OAuth2Info>,
}

/// One `{host, port}` entry of `EndPointInfo.addresses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = EndPointInfo::Address)]
pub struct EndpointAddress {
    #[schema(min_length = 1, max_length = 253, pattern = r"\S")]
    pub host: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u32,
}

/// `EndPointInfo`: exactly one of `uris`, `fqdn` (v3), `addresses` or `alternative`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndPointInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    /// Since MEC 011 v3.1.1: fully qualified domain names of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<EndpointAddress>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative: Option<serde_json::Value>,
}

impl EndPointInfo {
    /// Checks the form of an endpoint; `what` names it in messages.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        let present = [
            self.uris.is_some(),
            self.fqdn.is_some(),
            self.addresses.is_some(),
            self.alternative.is_some(),
        ]
        .iter()
        .filter(|p| **p)
        .count();
        if present != 1 {
            return Err(format!(
                "{what} must carry exactly one of uris, fqdn, addresses, alternative"
            ));
        }
        if let Some(uris) = &self.uris {
            non_empty_list(&format!("{what}.uris"), uris.len())?;
            for uri in uris {
                require_text(&format!("{what}.uris[]"), uri, MAX_INFO_URI)?;
            }
        }
        if let Some(names) = &self.fqdn {
            non_empty_list(&format!("{what}.fqdn"), names.len())?;
            for name in names {
                require_text(&format!("{what}.fqdn[]"), name, 253)?;
            }
        }
        if let Some(addresses) = &self.addresses {
            non_empty_list(&format!("{what}.addresses"), addresses.len())?;
            for a in addresses {
                require_text(&format!("{what}.addresses[].host"), &a.host, 253)?;
                if !(1..=65535).contains(&a.port) {
                    return Err(format!("{what}.addresses[].port must be 1..65535"));
                }
            }
        }
        Ok(())
    }
}

fn non_empty_list(what: &str, len: usize) -> Result<(), String> {
    if len == 0 {
        Err(format!("{what} must not be empty"))
    } else {
        Ok(())
    }
}

/// `TransportInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransportInfo {
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub id: String,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub transport_type: TransportType,
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub protocol: String,
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub version: String,
    pub endpoint: EndPointInfo,
    /// Required by the spec, but v2.2.1's own POST example omits it: absent means `{}`.
    #[serde(default)]
    pub security: SecurityInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impl_specific_info: Option<serde_json::Value>,
}

impl TransportInfo {
    pub fn validate(&self) -> Result<(), String> {
        require_text("transportInfo.id", &self.id, 128)?;
        require_text("transportInfo.name", &self.name, 128)?;
        require_text("transportInfo.protocol", &self.protocol, 64)?;
        require_text("transportInfo.version", &self.version, 64)?;
        self.endpoint.validate("transportInfo.endpoint")?;
        if let Some(oauth) = &self.security.o_auth2_info {
            if oauth.grant_types.is_empty() || oauth.grant_types.len() > 4 {
                return Err(
                    "transportInfo.security.oAuth2Info.grantTypes must hold 1 to 4 values".into(),
                );
            }
            if let Some(endpoint) = &oauth.token_endpoint {
                require_text(
                    "transportInfo.security.oAuth2Info.tokenEndpoint",
                    endpoint,
                    MAX_INFO_URI,
                )?;
            }
        }
        Ok(())
    }
}

/// `ServiceInfo` as a client sends it in POST or PUT. Fields the platform owns (`serInstanceId`,
/// `_links`, `isLocal`) are read-only: accepted and ignored, never refused.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = ServiceInfo::Post)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfoBody {
    /// Read-only: assigned by the platform; accepted and ignored.
    #[serde(default)]
    #[schema(value_type = Option<String>, read_only)]
    pub ser_instance_id: Option<serde::de::IgnoredAny>,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub ser_name: String,
    #[serde(default)]
    pub ser_category: Option<CategoryRef>,
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub version: String,
    pub state: ServiceState,
    #[serde(default)]
    pub transport_id: Option<String>,
    #[serde(default)]
    pub transport_info: Option<TransportInfo>,
    pub serializer: SerializerType,
    #[serde(default)]
    pub scope_of_locality: Option<LocalityType>,
    #[serde(default)]
    pub consumed_local_only: Option<bool>,
    /// Read-only: set by the platform; accepted and ignored.
    #[serde(default)]
    #[schema(value_type = Option<bool>, read_only)]
    pub is_local: Option<serde::de::IgnoredAny>,
    /// Since MEC 011 v2.2.1: the heartbeat interval the service asks for, in seconds.
    #[serde(default)]
    pub liveness_interval: Option<u32>,
}

/// Which request a `ServiceInfo` body came with: POST takes exactly one of `transportId` and
/// `transportInfo`; PUT replaces the representation, so `transportInfo` wins when both are there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRequest {
    Register,
    Replace,
}

/// Where a service says it can be reached: either a transport the platform offers or its own.
#[derive(Debug, Clone)]
pub enum TransportChoice {
    Platform(String),
    Own(Box<TransportInfo>),
}

/// A `ServiceInfo` body that passed validation; the transport is not yet resolved.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub ser_name: String,
    pub ser_category: Option<CategoryRef>,
    pub version: String,
    pub state: ServiceState,
    pub transport: TransportChoice,
    pub serializer: SerializerType,
    pub scope_of_locality: LocalityType,
    pub consumed_local_only: bool,
    pub liveness_interval: u32,
}

impl ServiceInfoBody {
    /// Checks every rule of the POST/PUT form and returns the trusted spec.
    pub fn validate(self, request: ServiceRequest) -> Result<ServiceSpec, String> {
        require_text("serName", &self.ser_name, 128)?;
        require_text("version", &self.version, 64)?;
        if let Some(category) = &self.ser_category {
            category.validate("serCategory")?;
        }
        if self.state == ServiceState::Suspended {
            return Err("state SUSPENDED is set by the platform when heartbeats stop; register ACTIVE or INACTIVE".into());
        }
        let transport = match (self.transport_id, self.transport_info) {
            (Some(id), None) => TransportChoice::Platform(id),
            (None, Some(info)) => {
                info.validate()?;
                TransportChoice::Own(Box::new(info))
            }
            (Some(_), Some(info)) if request == ServiceRequest::Replace => {
                info.validate()?;
                TransportChoice::Own(Box::new(info))
            }
            (Some(_), Some(_)) => {
                return Err("give either transportId or transportInfo, not both".into())
            }
            (None, None) => return Err("one of transportId or transportInfo is required".into()),
        };
        Ok(ServiceSpec {
            ser_name: self.ser_name,
            ser_category: self.ser_category,
            version: self.version,
            state: self.state,
            transport,
            serializer: self.serializer,
            scope_of_locality: self.scope_of_locality.unwrap_or(LocalityType::MecHost),
            consumed_local_only: self.consumed_local_only.unwrap_or(true),
            liveness_interval: self.liveness_interval.unwrap_or(0),
        })
    }
}

/// A registered service as the platform stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub ser_instance_id: String,
    pub owner: AppInstanceId,
    pub ser_name: String,
    pub ser_category: Option<CategoryRef>,
    pub version: String,
    /// The state the owner set; the platform may report SUSPENDED on top of it (see liveness).
    pub state: ServiceState,
    pub transport_info: TransportInfo,
    pub serializer: SerializerType,
    pub scope_of_locality: LocalityType,
    pub consumed_local_only: bool,
    /// Whether the service runs on this MEC host (every service registered over this platform's
    /// Mp1 does); read-only for clients.
    pub is_local: bool,
    /// Heartbeat interval in seconds chosen by the platform; 0 means no heartbeats.
    pub liveness_interval: u32,
}

/// `ServiceInfo._links`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ServiceInfo::Links)]
pub struct ServiceLinks {
    #[serde(rename = "self")]
    pub self_link: LinkType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LinkType>,
}

/// `ServiceInfo` as the platform returns it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ServiceInfo)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfoView<'a> {
    pub ser_instance_id: &'a str,
    pub ser_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ser_category: Option<&'a CategoryRef>,
    pub version: &'a str,
    pub state: ServiceState,
    pub transport_info: &'a TransportInfo,
    pub serializer: SerializerType,
    pub scope_of_locality: LocalityType,
    pub consumed_local_only: bool,
    pub is_local: bool,
    /// Since MEC 011 v2.2.1: the heartbeat interval the platform chose, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_interval: Option<u32>,
    /// Since MEC 011 v2.2.1: the service's own URI and its liveness resource.
    #[serde(rename = "_links")]
    pub links: ServiceLinks,
}

/// `ServiceLivenessInfo` (v2.2.1).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLivenessInfo {
    pub state: ServiceState,
    pub time_stamp: TimeStamp,
    pub interval: u32,
}

/// `TimeStamp`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeStamp {
    pub seconds: u64,
    pub nano_seconds: u32,
}

/// `ServiceLivenessUpdate` (v2.2.1): the only allowed state is ACTIVE.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ServiceLivenessUpdate {
    /// Only `ACTIVE`: a heartbeat says the service is alive.
    #[schema(value_type = String, pattern = "^ACTIVE$")]
    pub state: ServiceState,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({
            "serName": "rnis", "version": "2.1.1", "state": "ACTIVE", "serializer": "JSON",
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    fn transport() -> serde_json::Value {
        serde_json::json!({
            "id": "t1", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP", "version": "2.0",
            "endpoint": {"uris": ["http://10.1.1.1:8080/rni/v2"]}, "security": {}
        })
    }

    fn parse(v: serde_json::Value) -> Result<ServiceSpec, String> {
        serde_json::from_value::<ServiceInfoBody>(v)
            .map_err(|e| e.to_string())?
            .validate(ServiceRequest::Register)
    }

    #[test]
    fn exactly_one_transport_is_required() {
        assert!(parse(body(serde_json::json!({"transportInfo": transport()}))).is_ok());
        assert!(parse(body(serde_json::json!({"transportId": "x"}))).is_ok());
        assert!(parse(body(serde_json::json!({}))).is_err());
        assert!(parse(body(
            serde_json::json!({"transportId": "x", "transportInfo": transport()})
        ))
        .is_err());
        let both: ServiceInfoBody = serde_json::from_value(body(
            serde_json::json!({"transportId": "x", "transportInfo": transport()}),
        ))
        .unwrap();
        let spec = both.validate(ServiceRequest::Replace).unwrap();
        assert!(
            matches!(spec.transport, TransportChoice::Own(_)),
            "a PUT that carries both keeps the representation's transportInfo"
        );
    }

    #[test]
    fn defaults_follow_v3() {
        let spec = parse(body(serde_json::json!({"transportId": "x"}))).unwrap();
        assert!(spec.consumed_local_only);
        assert_eq!(spec.scope_of_locality, LocalityType::MecHost);
        assert_eq!(spec.liveness_interval, 0);
    }

    #[test]
    fn endpoint_needs_exactly_one_form() {
        let mut t = transport();
        t["endpoint"] =
            serde_json::json!({"uris": ["http://a/"], "addresses": [{"host": "a", "port": 1}]});
        assert!(parse(body(serde_json::json!({"transportInfo": t}))).is_err());
        t["endpoint"] = serde_json::json!({"addresses": [{"host": "a", "port": 70000}]});
        assert!(parse(body(serde_json::json!({"transportInfo": t}))).is_err());
        t["endpoint"] = serde_json::json!({"uris": [""]});
        assert!(parse(body(serde_json::json!({"transportInfo": t}))).is_err());
        t["endpoint"] = serde_json::json!({"uris": ["/mecSerMgmtApi/service/EntryPoint"]});
        assert!(
            parse(body(serde_json::json!({"transportInfo": t}))).is_ok(),
            "endpoint URIs are informational: the spec's example is relative"
        );
    }

    #[test]
    fn suspended_cannot_be_registered_and_enums_are_checked() {
        assert!(parse(body(
            serde_json::json!({"transportId": "x", "state": "SUSPENDED"})
        ))
        .is_err());
        let err = parse(body(
            serde_json::json!({"transportId": "x", "serializer": "YAML"}),
        ))
        .unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }
}
