//! The `upf-http` data plane against a real HTTP(S) receiver that behaves like a small UPF
//! controller (it keeps the rules it is sent) and can be told to fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use mep_rules::{
    Action, AppInfo, DataPlane, DataPlaneError, DestinationInterface, DnsRule, FilterType,
    InterfaceType, IpAddressType, RuleChange, RuleState, Snapshot, TrafficFilter, TrafficRule,
};
use mep_upf_http::{UpfHttpConfig, UpfHttpDataPlane};

/// One change at a time, as the tests below send them.
trait OneByOne {
    async fn add_traffic_rule(&self, app: &AppInfo, r: &TrafficRule) -> Result<(), DataPlaneError>;
    async fn set_traffic_rule(&self, app: &AppInfo, r: &TrafficRule) -> Result<(), DataPlaneError>;
    async fn delete_traffic_rule(
        &self,
        app: &AppInfo,
        r: &TrafficRule,
    ) -> Result<(), DataPlaneError>;
    async fn add_dns_rule(&self, app: &AppInfo, r: &DnsRule) -> Result<(), DataPlaneError>;
    async fn set_dns_rule(&self, app: &AppInfo, r: &DnsRule) -> Result<(), DataPlaneError>;
    async fn delete_dns_rule(&self, app: &AppInfo, r: &DnsRule) -> Result<(), DataPlaneError>;
}

impl OneByOne for UpfHttpDataPlane {
    async fn add_traffic_rule(&self, app: &AppInfo, r: &TrafficRule) -> Result<(), DataPlaneError> {
        one(self, app, RuleChange::AddTraffic(r.clone())).await
    }
    async fn set_traffic_rule(&self, app: &AppInfo, r: &TrafficRule) -> Result<(), DataPlaneError> {
        let (old, new) = (r.clone(), r.clone());
        one(self, app, RuleChange::UpdateTraffic { old, new }).await
    }
    async fn delete_traffic_rule(
        &self,
        app: &AppInfo,
        r: &TrafficRule,
    ) -> Result<(), DataPlaneError> {
        one(self, app, RuleChange::RemoveTraffic(r.clone())).await
    }
    async fn add_dns_rule(&self, app: &AppInfo, r: &DnsRule) -> Result<(), DataPlaneError> {
        one(self, app, RuleChange::AddDns(r.clone())).await
    }
    async fn set_dns_rule(&self, app: &AppInfo, r: &DnsRule) -> Result<(), DataPlaneError> {
        let (old, new) = (r.clone(), r.clone());
        one(self, app, RuleChange::UpdateDns { old, new }).await
    }
    async fn delete_dns_rule(&self, app: &AppInfo, r: &DnsRule) -> Result<(), DataPlaneError> {
        one(self, app, RuleChange::RemoveDns(r.clone())).await
    }
}

async fn one(
    plane: &UpfHttpDataPlane,
    app: &AppInfo,
    change: RuleChange,
) -> Result<(), DataPlaneError> {
    plane.apply(app, &[change]).await.map_err(|e| e.error)
}
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Every receiver serves under this prefix, so the tests also check that the endpoint's own path
/// is kept.
const PREFIX: &str = "/upf";
const TOKEN: &str = "test-token";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Option<Value>,
}

/// The receiver: records requests, keeps rules by `app/collection/id`, and fails on demand.
#[derive(Default)]
struct Controller {
    requests: Mutex<Vec<Recorded>>,
    rules: Mutex<BTreeMap<String, Value>>,
    /// The next N requests are answered with this status.
    fail_next: Mutex<(usize, u16)>,
    /// A request for this rule id is answered with this status and reason.
    reject: Mutex<Option<(String, u16, String)>>,
    /// Requests are never answered.
    hang: AtomicBool,
}

impl Controller {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn rules(&self) -> BTreeMap<String, Value> {
        self.rules.lock().unwrap().clone()
    }

    fn fail_next(&self, n: usize, status: u16) {
        *self.fail_next.lock().unwrap() = (n, status);
    }
}

async fn handle(
    State(ctl): State<Arc<Controller>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    };
    ctl.requests.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: uri.path().to_owned(),
        headers: headers.clone(),
        body: body_json.clone(),
    });
    if ctl.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    {
        let mut fail = ctl.fail_next.lock().unwrap();
        if fail.0 > 0 {
            fail.0 -= 1;
            let status = StatusCode::from_u16(fail.1).unwrap();
            return (status, axum::Json(json!({"title": "busy"}))).into_response();
        }
    }
    if headers.get("mep-upf-schema").and_then(|v| v.to_str().ok()) != Some("1") {
        return (StatusCode::BAD_REQUEST, "missing schema version").into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(path) = uri.path().strip_prefix(PREFIX) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let Some((id, status, reason)) = ctl.reject.lock().unwrap().clone() {
        if segments.last() == Some(&id.as_str()) {
            let status = StatusCode::from_u16(status).unwrap();
            return (
                status,
                axum::Json(json!({"title": "refused", "detail": reason})),
            )
                .into_response();
        }
    }
    match (method, segments.as_slice(), body_json) {
        (Method::PUT, ["v1", "apps", app, coll, id], Some(doc)) => {
            if doc["schemaVersion"] != 1 || doc["appInstanceId"] != *app {
                return StatusCode::UNPROCESSABLE_ENTITY.into_response();
            }
            let key = format!("{app}/{coll}/{id}");
            let fresh = ctl.rules.lock().unwrap().insert(key, doc).is_none();
            if fresh {
                StatusCode::CREATED.into_response()
            } else {
                StatusCode::OK.into_response()
            }
        }
        (Method::DELETE, ["v1", "apps", app, coll, id], None) => {
            match ctl
                .rules
                .lock()
                .unwrap()
                .remove(&format!("{app}/{coll}/{id}"))
            {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        (Method::PUT, ["v1", "state"], Some(doc)) => {
            let mut rules = BTreeMap::new();
            for (list, coll, id) in [
                ("trafficRules", "traffic-rules", "trafficRuleId"),
                ("dnsRules", "dns-rules", "dnsRuleId"),
            ] {
                for entry in doc[list].as_array().into_iter().flatten() {
                    let key = format!(
                        "{}/{coll}/{}",
                        entry["appInstanceId"].as_str().unwrap_or_default(),
                        entry["rule"][id].as_str().unwrap_or_default()
                    );
                    rules.insert(key, entry.clone());
                }
            }
            *ctl.rules.lock().unwrap() = rules;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn router(ctl: Arc<Controller>) -> Router {
    Router::new().fallback(handle).with_state(ctl)
}

/// A plain-HTTP receiver on a loopback port.
async fn start_http() -> (Arc<Controller>, SocketAddr) {
    let ctl = Arc::new(Controller::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(std::future::IntoFuture::into_future(axum::serve(
        listener,
        router(ctl.clone()),
    )));
    (ctl, addr)
}

fn config(endpoint: String) -> UpfHttpConfig {
    let mut c = UpfHttpConfig::new(endpoint.parse().unwrap());
    c.timeout = Duration::from_secs(2);
    c.retries = 3;
    c.backoff = Duration::from_millis(20);
    c.bearer_token = Some(TOKEN.into());
    c
}

fn plane_for(addr: SocketAddr) -> UpfHttpDataPlane {
    UpfHttpDataPlane::new(config(format!("http://{addr}{PREFIX}"))).unwrap()
}

fn app(id: &str) -> AppInfo {
    AppInfo {
        app_instance_id: id.into(),
        app_name: format!("{id}-name"),
    }
}

fn traffic_rule(id: &str, priority: u32, state: RuleState) -> TrafficRule {
    TrafficRule {
        traffic_rule_id: id.into(),
        filter_type: FilterType::Flow,
        priority,
        traffic_filter: vec![TrafficFilter {
            dst_address: vec!["198.51.100.0/24".into()],
            dst_port: vec!["443".into()],
            protocol: vec!["TCP".into()],
            ..TrafficFilter::default()
        }],
        action: Action::ForwardDecapsulated,
        dst_interface: vec![DestinationInterface {
            interface_type: InterfaceType::Ip,
            tunnel_info: None,
            src_mac_address: None,
            dst_mac_address: None,
            dst_ip_address: Some("192.0.2.10".into()),
        }],
        state,
    }
}

fn dns_rule(id: &str, name: &str, state: RuleState) -> DnsRule {
    DnsRule {
        dns_rule_id: id.into(),
        domain_name: name.into(),
        ip_address_type: IpAddressType::IpV4,
        ip_address: "192.0.2.20".into(),
        ttl: Some(0),
        state,
    }
}

fn failure_reason(e: DataPlaneError) -> String {
    match e {
        DataPlaneError::Failed { plane, reason } => {
            assert_eq!(plane, "upf-http");
            reason
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn header<'a>(r: &'a Recorded, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn traffic_rules_are_put_and_deleted_whole() {
    let (ctl, addr) = start_http().await;
    let plane = plane_for(addr);
    assert_eq!(plane.kind(), "upf-http");
    let a = app("app-1");
    let rule = traffic_rule("tr-1", 3, RuleState::Active);

    plane.add_traffic_rule(&a, &rule).await.unwrap();
    let mut inactive = rule.clone();
    inactive.state = RuleState::Inactive;
    plane.set_traffic_rule(&a, &inactive).await.unwrap();
    let key = "app-1/traffic-rules/tr-1";
    assert_eq!(ctl.rules()[key]["rule"]["state"], "INACTIVE");
    plane.delete_traffic_rule(&a, &inactive).await.unwrap();
    assert!(ctl.rules().is_empty());

    let reqs = ctl.requests();
    assert_eq!(reqs.len(), 3);
    let path = format!("{PREFIX}/v1/apps/app-1/traffic-rules/tr-1");
    let methods: Vec<(&Method, &str)> = reqs.iter().map(|r| (&r.method, r.path.as_str())).collect();
    assert_eq!(
        methods,
        vec![
            (&Method::PUT, path.as_str()),
            (&Method::PUT, path.as_str()),
            (&Method::DELETE, path.as_str())
        ]
    );
    let put = &reqs[0];
    assert_eq!(
        put.body.as_ref().unwrap(),
        &json!({
            "schemaVersion": 1,
            "appInstanceId": "app-1",
            "appName": "app-1-name",
            "rule": serde_json::to_value(&rule).unwrap(),
        })
    );
    let sent = &put.body.as_ref().unwrap()["rule"];
    assert_eq!(sent["state"], "ACTIVE");
    assert_eq!(sent["action"], "FORWARD_DECAPSULATED");
    assert_eq!(sent["dstInterface"][0]["interfaceType"], "IP");
    assert_eq!(sent["dstInterface"][0]["dstIpAddress"], "192.0.2.10");
    assert_eq!(sent["trafficFilter"][0]["protocol"][0], "TCP");
    assert_eq!(header(put, "content-type"), "application/json");
    assert_eq!(header(put, "mep-upf-schema"), "1");
    assert_eq!(header(put, "authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(reqs[1].body.as_ref().unwrap()["rule"]["state"], "INACTIVE");
    assert!(reqs[2].body.is_none());
    assert_eq!(header(&reqs[2], "mep-upf-schema"), "1");
    let seqs: Vec<u64> = reqs
        .iter()
        .map(|r| header(r, "mep-change-seq").parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test]
async fn dns_rules_are_put_and_deleted_whole() {
    let (ctl, addr) = start_http().await;
    let plane = plane_for(addr);
    let a = app("app-2");
    let rule = dns_rule("dns-1", "edge.example.com", RuleState::Active);

    plane.add_dns_rule(&a, &rule).await.unwrap();
    let mut moved = rule.clone();
    moved.ip_address = "192.0.2.21".into();
    plane.set_dns_rule(&a, &moved).await.unwrap();
    assert_eq!(
        ctl.rules()["app-2/dns-rules/dns-1"]["rule"]["ipAddress"],
        "192.0.2.21"
    );
    plane.delete_dns_rule(&a, &moved).await.unwrap();
    assert!(ctl.rules().is_empty());

    let reqs = ctl.requests();
    let path = format!("{PREFIX}/v1/apps/app-2/dns-rules/dns-1");
    assert!(reqs.iter().all(|r| r.path == path));
    assert_eq!(
        reqs.iter().map(|r| r.method.clone()).collect::<Vec<_>>(),
        vec![Method::PUT, Method::PUT, Method::DELETE]
    );
    assert_eq!(
        reqs[0].body.as_ref().unwrap(),
        &json!({
            "schemaVersion": 1,
            "appInstanceId": "app-2",
            "appName": "app-2-name",
            "rule": {
                "dnsRuleId": "dns-1",
                "domainName": "edge.example.com",
                "ipAddressType": "IP_V4",
                "ipAddress": "192.0.2.20",
                "ttl": 0,
                "state": "ACTIVE"
            }
        })
    );
}

#[tokio::test]
async fn retries_after_503_and_429_then_succeeds() {
    let (ctl, addr) = start_http().await;
    let plane = plane_for(addr);
    ctl.fail_next(2, 503);
    let started = Instant::now();
    plane
        .add_traffic_rule(&app("a"), &traffic_rule("tr-1", 0, RuleState::Active))
        .await
        .unwrap();
    // Backoff 20 ms, then 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
    let reqs = ctl.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.body == reqs[0].body));
    let seq = header(&reqs[0], "mep-change-seq");
    assert!(reqs.iter().all(|r| header(r, "mep-change-seq") == seq));
    assert!(ctl.rules().contains_key("a/traffic-rules/tr-1"));

    ctl.fail_next(1, 429);
    plane
        .delete_traffic_rule(&app("a"), &traffic_rule("tr-1", 0, RuleState::Active))
        .await
        .unwrap();
    assert_eq!(ctl.requests().len(), 5);
    assert!(ctl.rules().is_empty());
}

#[tokio::test]
async fn gives_up_after_the_retries() {
    let (ctl, addr) = start_http().await;
    let plane = plane_for(addr);
    ctl.fail_next(100, 502);
    let e = plane
        .add_dns_rule(&app("a"), &dns_rule("d", "a.example", RuleState::Active))
        .await
        .unwrap_err();
    let reason = failure_reason(e);
    assert!(reason.contains("gave up after 4 attempt(s)"), "{reason}");
    assert!(reason.contains("502"), "{reason}");
    assert!(reason.contains("busy"), "{reason}");
    assert_eq!(ctl.requests().len(), 4);
}

#[tokio::test]
async fn transport_errors_are_retried() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut c = config(format!("http://{addr}{PREFIX}"));
    c.retries = 2;
    let plane = UpfHttpDataPlane::new(c).unwrap();
    let e = plane
        .add_dns_rule(&app("a"), &dns_rule("d", "a.example", RuleState::Active))
        .await
        .unwrap_err();
    let reason = failure_reason(e);
    assert!(reason.contains("gave up after 3 attempt(s)"), "{reason}");
    assert!(reason.contains(&addr.to_string()), "{reason}");
}

/// A batch is sent in order; when one call fails, the answer says how many went through.
#[tokio::test]
async fn a_batch_reports_how_far_it_got() {
    let (ctl, addr) = start_http().await;
    let plane = plane_for(addr);
    *ctl.reject.lock().unwrap() = Some(("tr-bad".into(), 400, "no".into()));
    let changes = [
        RuleChange::AddDns(dns_rule("d", "a.example", RuleState::Active)),
        RuleChange::AddTraffic(traffic_rule("tr-bad", 7, RuleState::Active)),
        RuleChange::AddTraffic(traffic_rule("tr-2", 1, RuleState::Active)),
    ];
    let e = plane.apply(&app("a"), &changes).await.unwrap_err();
    assert_eq!(e.applied, 1);
    assert!(failure_reason(e.error).contains("400"));
    assert_eq!(ctl.requests().len(), 2, "the third change was not tried");
    assert!(ctl.rules().contains_key("a/dns-rules/d"));
}

#[tokio::test]
async fn client_errors_fail_at_once_with_the_reason() {
    let (ctl, addr) = start_http().await;
    let plane = plane_for(addr);
    *ctl.reject.lock().unwrap() = Some((
        "tr-bad".into(),
        400,
        "priority 7 is not supported by this UPF".into(),
    ));
    let e = plane
        .add_traffic_rule(&app("a"), &traffic_rule("tr-bad", 7, RuleState::Active))
        .await
        .unwrap_err();
    let reason = failure_reason(e);
    assert!(reason.contains("400 Bad Request"), "{reason}");
    assert!(
        reason.contains("priority 7 is not supported by this UPF"),
        "{reason}"
    );
    assert!(
        reason.contains("/v1/apps/a/traffic-rules/tr-bad"),
        "{reason}"
    );
    assert_eq!(ctl.requests().len(), 1);

    // A PUT answered 404 (a wrong endpoint) is an error too, not retried.
    let wrong = UpfHttpDataPlane::new(config(format!("http://{addr}/elsewhere"))).unwrap();
    let e = wrong
        .add_traffic_rule(&app("a"), &traffic_rule("tr-1", 0, RuleState::Active))
        .await
        .unwrap_err();
    let reason = failure_reason(e);
    assert!(reason.contains("404 Not Found"), "{reason}");
    assert_eq!(ctl.requests().len(), 2);
}

#[tokio::test]
async fn a_hanging_controller_fails_within_the_timeout() {
    let (ctl, addr) = start_http().await;
    ctl.hang.store(true, Ordering::SeqCst);
    let mut c = config(format!("http://{addr}{PREFIX}"));
    c.timeout = Duration::from_millis(300);
    c.retries = 1;
    c.backoff = Duration::from_millis(10);
    let plane = UpfHttpDataPlane::new(c).unwrap();
    let started = Instant::now();
    let e = plane
        .add_traffic_rule(&app("a"), &traffic_rule("tr-1", 0, RuleState::Active))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    // Two attempts of 300 ms and a 10 ms pause (the receiver would hang for 30 s), with room
    // for a loaded machine.
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    let reason = failure_reason(e);
    assert!(reason.contains("no answer within 300ms"), "{reason}");
    assert_eq!(ctl.requests().len(), 2);
}

#[tokio::test]
async fn delete_of_an_absent_rule_is_success() {
    let (ctl, addr) = start_http().await;
    let plane = plane_for(addr);
    plane
        .delete_dns_rule(
            &app("a"),
            &dns_rule("never", "a.example", RuleState::Active),
        )
        .await
        .unwrap();
    plane
        .delete_traffic_rule(&app("a"), &traffic_rule("never", 0, RuleState::Active))
        .await
        .unwrap();
    let reqs = ctl.requests();
    assert_eq!(reqs.len(), 2, "a 404 must not be retried");
    assert!(reqs.iter().all(|r| r.method == Method::DELETE));
}

#[tokio::test]
async fn init_and_resync_send_the_full_active_set() {
    let (ctl, addr) = start_http().await;
    let plane = plane_for(addr);
    // Something the controller holds that mep no longer has.
    plane
        .add_traffic_rule(&app("gone"), &traffic_rule("stale", 0, RuleState::Active))
        .await
        .unwrap();

    let traffic = [
        ("app-b", traffic_rule("tr-low", 9, RuleState::Active)),
        ("app-a", traffic_rule("tr-high", 1, RuleState::Active)),
        ("app-a", traffic_rule("tr-off", 0, RuleState::Inactive)),
    ];
    let dns = [
        ("app-b", dns_rule("d-2", "b.example", RuleState::Active)),
        ("app-a", dns_rule("d-1", "a.example", RuleState::Active)),
        (
            "app-a",
            dns_rule("d-off", "off.example", RuleState::Inactive),
        ),
    ];
    let snapshot = Snapshot::build(
        42,
        traffic.iter().map(|(a, r)| (*a, r)),
        dns.iter().map(|(a, r)| (*a, r)),
    )
    .with_app_names([("app-a", "App A")]);

    plane.init(&snapshot).await.unwrap();
    let reqs = ctl.requests();
    let state = reqs.last().unwrap();
    assert_eq!(state.method, Method::PUT);
    assert_eq!(state.path, format!("{PREFIX}/v1/state"));
    assert_eq!(header(state, "mep-upf-schema"), "1");
    let doc = state.body.as_ref().unwrap();
    assert_eq!(doc["schemaVersion"], 1);
    assert_eq!(doc["snapshotVersion"], 42);
    assert_eq!(
        doc["trafficRules"],
        json!([
            {"appInstanceId": "app-a", "appName": "App A",
             "rule": serde_json::to_value(&traffic[1].1).unwrap()},
            {"appInstanceId": "app-b",
             "rule": serde_json::to_value(&traffic[0].1).unwrap()},
        ])
    );
    assert_eq!(
        doc["dnsRules"],
        json!([
            {"appInstanceId": "app-a", "appName": "App A",
             "rule": serde_json::to_value(&dns[1].1).unwrap()},
            {"appInstanceId": "app-b",
             "rule": serde_json::to_value(&dns[0].1).unwrap()},
        ])
    );
    assert_eq!(
        ctl.rules().keys().cloned().collect::<Vec<_>>(),
        vec![
            "app-a/dns-rules/d-1",
            "app-a/traffic-rules/tr-high",
            "app-b/dns-rules/d-2",
            "app-b/traffic-rules/tr-low",
        ]
    );

    // A resync to an empty snapshot empties the controller; failures surface as errors.
    plane.resync(&Snapshot::default()).await.unwrap();
    assert!(ctl.rules().is_empty());
    ctl.fail_next(100, 503);
    assert!(plane.resync(&snapshot).await.is_err());
}

mod tls {
    //! The receiver over HTTPS with a certificate from a private CA.

    use super::*;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{crypto::ring, ServerConfig};
    use tokio_rustls::TlsAcceptor;

    /// Starts an HTTPS receiver for `localhost`; returns it, its address and the CA's PEM.
    async fn start_https() -> (Arc<Controller>, SocketAddr, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mep test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

        let tls = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let ctl = Arc::new(Controller::default());
        let app = router(ctl.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        (ctl, addr, ca.pem())
    }

    #[tokio::test]
    async fn https_with_a_private_ca() {
        let (ctl, addr, ca_pem) = start_https().await;
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_pem).unwrap();
        let endpoint = format!("https://localhost:{}{PREFIX}", addr.port());

        let mut trusted = config(endpoint.clone());
        trusted.ca_cert_pem = Some(ca_path);
        let plane = UpfHttpDataPlane::new(trusted).unwrap();
        plane
            .add_traffic_rule(&app("a"), &traffic_rule("tr-1", 0, RuleState::Active))
            .await
            .unwrap();
        assert!(ctl.rules().contains_key("a/traffic-rules/tr-1"));

        // Without the CA the certificate is refused: verification is on.
        let mut untrusted = config(endpoint);
        untrusted.retries = 0;
        let plane = UpfHttpDataPlane::new(untrusted).unwrap();
        let e = plane
            .add_traffic_rule(&app("a"), &traffic_rule("tr-2", 0, RuleState::Active))
            .await
            .unwrap_err();
        let reason = failure_reason(e);
        assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        assert!(!ctl.rules().contains_key("a/traffic-rules/tr-2"));
        assert_eq!(ctl.requests().len(), 1);
    }
}
