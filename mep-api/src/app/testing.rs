//! The Mp1 and Mm5 routers over a real store in a temporary directory, without listeners, for
//! `Router::oneshot` handler tests.

use std::net::SocketAddr;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::core::Core;
use super::{listeners, routers, Substitutes};
use crate::config::Config;
use crate::readiness::Part;
use crate::store::Store;

/// Both routers and what keeps them alive; dropping it stops the background work.
pub(crate) struct Routers {
    pub(crate) mp1: Router,
    pub(crate) mm5: Router,
    _background: JoinSet<()>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Routers {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The routers of a `mep` with the defaults (auth on, the `none` data plane), changed by
/// `configure`; the data plane's first sync has run when this returns unless `configure` keeps
/// it from.
pub(crate) async fn routers(configure: impl FnOnce(&mut Config)) -> Routers {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config::with_data_dir(dir.path());
    configure(&mut config);
    let store = Store::open(&config.data_dir).expect("a store");
    let shutdown = CancellationToken::new();
    let mp1_addr: SocketAddr = ([127, 0, 0, 1], 8443).into();
    let core = Core::load(
        &config,
        Substitutes::default(),
        store,
        listeners::links(&config, mp1_addr),
        16,
        &shutdown,
    )
    .await
    .expect("the state loads");
    let mut background = JoinSet::new();
    core.spawn_background(&mut background, &config, &shutdown);
    for _ in 0..200 {
        if core.readiness.is_ready(Part::DataPlane) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Routers {
        mp1: routers::mp1(&config, &core),
        mm5: routers::mm5(&config, &core),
        _background: background,
        shutdown,
        _dir: dir,
    }
}

/// What a request got back: status, headers and the body as JSON (`Value::Null` when empty or
/// not JSON).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) json: Value,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts a `ProblemDetails` body with `status`, as MEC 011 wants for every error.
    pub(crate) fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(self.header("content-type"), "application/problem+json");
        assert_eq!(self.json["status"], status, "{}", self.json);
    }
}

/// Sends `request` to `router` and reads the answer whole.
pub(crate) async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    Answer {
        status,
        headers,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

/// A request with a JSON body (or none), and a bearer token when given.
pub(crate) fn request(
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    builder.body(body).expect("a request")
}

/// Credentials for `app` over Mm5, then a token for them over Mp1.
pub(crate) async fn token_for(r: &Routers, app: &str) -> String {
    let (ak, sk) = (format!("AK{}", &app.replace('-', "")[..18]), "s".repeat(64));
    let confs = serde_json::json!({
        "authInfo": {"credentials": {"accessKeyId": ak, "secretKey": sk}},
        "appInfo": {"appName": "demo", "requiredServices": []}
    });
    let uri = format!("/mep/appMng/v1/applications/{app}/confs");
    let answer = send(&r.mm5, request("PUT", &uri, None, Some(&confs))).await;
    assert!(answer.status.is_success(), "{}", answer.json);
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{ak}:{sk}"),
    );
    let token = Request::builder()
        .method("POST")
        .uri("/mep/token")
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"))
        .expect("a request");
    let answer = send(&r.mp1, token).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    answer.json["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// A minimal valid ServiceInfo named `name`.
pub(crate) fn service(name: &str) -> Value {
    serde_json::json!({
        "serName": name, "version": "2.1.1", "state": "ACTIVE", "serializer": "JSON",
        "transportInfo": {
            "id": "t1", "name": "REST", "type": "REST_HTTP", "protocol": "HTTP", "version": "2.0",
            "endpoint": {"uris": ["http://10.0.0.5:8080/v1"]}
        }
    })
}

/// Configures one ACTIVE DNS rule (`cam.edge.example` → 192.0.2.10) for `app` over Mm5.
pub(crate) async fn configure_dns_rule(r: &Routers, app: &str) {
    let appd = serde_json::json!({
        "appName": "demo",
        "appDNSRule": [{
            "dnsRuleId": "dns-1", "domainName": "cam.edge.example", "ipAddressType": "IP_V4",
            "ipAddress": "192.0.2.10", "ttl": 30, "state": "ACTIVE"
        }]
    });
    let uri = format!("/mepcfg/app_lcm/v1/applications/{app}/appd_configuration");
    let task = send(&r.mm5, request("POST", &uri, None, Some(&appd))).await;
    assert_eq!(task.json["configResult"], "SUCCESS", "{}", task.json);
}
