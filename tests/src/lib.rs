//! Helpers for the end-to-end tests in `tests/tests/`: a real `mep` on ephemeral loopback ports with
//! a controllable clock, and a real HTTP callback receiver for notifications.

pub mod auth;
pub mod spec_examples;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use mep_api::app::Substitutes;
use mep_api::clock::ManualClock;
use mep_api::{Config, Mep};
use mep_rules::{AppInfo, ApplyError, DataPlane, DataPlaneError, RuleChange, Snapshot};
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub const SERVICE_MGMT: &str = "/mep/mec_service_mgmt/v1";
pub const APP_SUPPORT: &str = "/mep/mec_app_support/v1";

/// A running mep and a client for it.
pub struct TestMep {
    pub mep: Mep,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of Mp1.
    pub mp1: String,
    /// `http://127.0.0.1:PORT` of Mm5.
    pub mm5: String,
}

/// The configuration tests use: ephemeral loopback ports, plain HTTP without authentication
/// (`tests/auth.rs` and `tests/tls.rs` turn both back on), fast liveness sweeps and quick
/// notification retries.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::with_data_dir(data_dir);
    config.mp1_addr = "127.0.0.1:0".parse().unwrap();
    config.mm5_addr = "127.0.0.1:0".parse().unwrap();
    config.insecure_http = true;
    config.dns.listen = "127.0.0.1:0".parse().unwrap();
    config.dns.upstreams = vec!["127.0.0.1:9".parse().unwrap()];
    config.auth.enabled = false;
    config.liveness_sweep = Duration::from_millis(20);
    config.notify.timeout = Duration::from_secs(2);
    config.notify.retries = 3;
    config.notify.initial_backoff = Duration::from_millis(50);
    config.notify.max_backoff = Duration::from_millis(200);
    config
}

impl TestMep {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(test_config(data_dir)).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_with_dataplane(config, None).await
    }

    /// Starts with `dataplane` instead of the configured one.
    pub async fn start_with_dataplane(
        config: Config,
        dataplane: Option<Arc<dyn DataPlane>>,
    ) -> Self {
        let clock = ManualClock::new();
        let mep = Mep::start_with(
            config,
            Substitutes {
                clock: Some(Arc::new(clock.clone())),
                dataplane,
            },
        )
        .await
        .expect("mep starts");
        Self {
            mp1: format!("http://{}", mep.mp1_addr),
            mm5: format!("http://{}", mep.mm5_addr),
            mep,
            clock,
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(self) {
        self.mep.shutdown().await;
    }

    /// Absolute URL of a service management path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{SERVICE_MGMT}{path}", self.mp1)
    }

    /// GETs an absolute URL and decodes its JSON body.
    pub async fn json_at(&self, url: impl reqwest::IntoUrl) -> Value {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Sends `body` as JSON to an absolute URL with `method`.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .request(method, url)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http.delete(self.url(path)).send().await.unwrap()
    }

    /// Absolute URL of an application support path.
    pub fn app_support(&self, path: &str) -> String {
        format!("{}{APP_SUPPORT}{path}", self.mp1)
    }

    /// Absolute URL of an Mm5 path.
    /// The text of Mm5's `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.mm5))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn mm5_url(&self, path: &str) -> String {
        format!("{}{path}", self.mm5)
    }

    /// Sends an Mm5 appd_configuration request and returns status and body.
    pub async fn appd(
        &self,
        method: reqwest::Method,
        app: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = self.mm5_url(&format!(
            "/mepcfg/app_lcm/v1/applications/{app}/appd_configuration"
        ));
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers `body` for `app`, asserts 201 and returns the representation.
    pub async fn register(&self, app: &str, body: &Value) -> Value {
        let r = self
            .post(&format!("/applications/{app}/services"), body)
            .await;
        assert_eq!(
            r.status(),
            201,
            "registration refused: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// Sends `method` to `url` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// [`TestMep::call`], asserting the answer's status (and `ProblemDetails` for errors);
    /// answers the JSON body, or `Null` when there is none.
    pub async fn expect(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
        status: u16,
    ) -> Value {
        let what = format!("{method} {url}");
        let r = self.call(method, url, token, body).await;
        if status >= 400 {
            let got = r.status().as_u16();
            assert_eq!(got, status, "{what}");
            return assert_problem(r, status).await;
        }
        let got = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{what}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
    }

    /// `POST /mep/token` of this mep.
    pub fn token_url(&self) -> String {
        format!("{}/mep/token", self.mp1)
    }

    /// Provisions AK/SK credentials for `app` over Mm5 (EdgeGallery's `confs` call), which also
    /// makes `app` known to the platform.
    pub async fn provision(&self, app: &str, ak: &str, sk: &str, required: &[&str]) {
        let url = self.mm5_url(&format!("/mep/appMng/v1/applications/{app}/confs"));
        let r = self
            .send_json(reqwest::Method::PUT, url, &confs_body(ak, sk, required))
            .await;
        assert!(
            r.status().is_success(),
            "provisioning failed: {}",
            r.status()
        );
    }

    /// An access token for the credentials `ak`/`sk`, by OAuth client credentials.
    pub async fn token(&self, ak: &str, sk: &str) -> String {
        let r = self
            .http
            .post(self.token_url())
            .basic_auth(ak, Some(sk))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Waits until the liveness sweeper has run at least once more.
    pub async fn let_sweeper_run(&self) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The body of EdgeGallery's `confs` call.
pub fn confs_body(ak: &str, sk: &str, required: &[&str]) -> Value {
    json!({
        "authInfo": {"credentials": {"accessKeyId": ak, "secretKey": sk}},
        "appInfo": {"appName": "demo", "requiredServices": required}
    })
}

/// Two application instances with credentials, for tests with authentication on.
pub mod apps {
    pub const APP_A: &str = "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f";
    pub const APP_B: &str = "8c2a1f3e-6b7d-4c1e-9f0a-2d3b4c5e6f70";
    pub const AK_A: &str = "QVUJMSUMgS0VZLS0tLS0";
    pub const SK_A: &str = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc";
    pub const AK_B: &str = "bbbbbbbbbbbbbbbbbbbb";
    pub const SK_B: &str = "b+b/b=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
}

/// A valid POST body for a service named `name`.
pub fn service_body(name: &str) -> Value {
    json!({
        "serName": name,
        "version": "2.1.1",
        "state": "ACTIVE",
        "serializer": "JSON",
        "transportInfo": {
            "id": "transport-1",
            "name": "REST",
            "type": "REST_HTTP",
            "protocol": "HTTP",
            "version": "2.0",
            "endpoint": {"uris": [format!("http://10.0.0.5:8080/{name}/v1")]},
            "security": {"oAuth2Info": {
                "grantTypes": ["OAUTH2_CLIENT_CREDENTIALS"],
                "tokenEndpoint": "https://mep.example/mep/token"
            }}
        }
    })
}

/// Asserts a `ProblemDetails` response with `status` and returns its body.
pub async fn assert_problem(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], status, "status member equals HTTP status");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

/// A real HTTP server that receives notifications. It can be told to refuse the first N
/// deliveries with 500.
pub struct CallbackReceiver {
    pub url: String,
    pub received: mpsc::UnboundedReceiver<Value>,
    failures_left: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ReceiverState {
    tx: mpsc::UnboundedSender<Value>,
    failures_left: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
}

impl CallbackReceiver {
    pub async fn start() -> Self {
        let (tx, received) = mpsc::unbounded_channel();
        let failures_left = Arc::new(AtomicUsize::new(0));
        let attempts = Arc::new(AtomicUsize::new(0));
        let state = ReceiverState {
            tx,
            failures_left: failures_left.clone(),
            attempts: attempts.clone(),
        };
        let app = Router::new()
            .route("/notify", post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/notify"),
            received,
            failures_left,
            attempts,
        }
    }

    /// The next 'n' deliveries get 500.
    pub fn fail_next(&self, n: usize) {
        self.failures_left.store(n, Ordering::SeqCst);
    }

    /// Delivery attempts seen, successful or not.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// The next accepted notification, or a panic after five seconds.
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(5), self.received.recv())
            .await
            .expect("a notification within 5 s")
            .expect("receiver open")
    }

    /// Asserts that nothing more arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(Some(v)) = tokio::time::timeout(wait, self.received.recv()).await {
            panic!("unexpected notification: {v}");
        }
    }
}

async fn receive(State(state): State<ReceiverState>, body: String) -> StatusCode {
    state.attempts.fetch_add(1, Ordering::SeqCst);
    let fail = state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if fail {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let _ = state
        .tx
        .send(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    StatusCode::NO_CONTENT
}

/// One call a [`ScriptedDataPlane`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPlaneCall {
    pub op: &'static str,
    pub app: String,
    pub rule: Value,
}

/// A real `DataPlane` implementation that records every rule change and can be told to fail the
/// Nth one from now, for the rollback paths.
#[derive(Default)]
pub struct ScriptedDataPlane {
    calls: parking_lot::Mutex<Vec<DataPlaneCall>>,
    fail_at: parking_lot::Mutex<Option<usize>>,
    delay: parking_lot::Mutex<Duration>,
    app_delays: parking_lot::Mutex<std::collections::HashMap<String, Duration>>,
    batches: parking_lot::Mutex<usize>,
}

impl ScriptedDataPlane {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The `n`th rule change from now (1 = the next) fails.
    pub fn fail_nth_call(&self, n: usize) {
        *self.fail_at.lock() = Some(self.calls.lock().len() + n);
    }

    /// Every rule change from now on takes `delay` (a slow UPF controller).
    pub fn delay_calls(&self, delay: Duration) {
        *self.delay.lock() = delay;
    }

    /// Every batch for `app` from now on waits `delay` first, without holding up other apps'.
    pub fn delay_app(&self, app: &str, delay: Duration) {
        self.app_delays.lock().insert(app.to_owned(), delay);
    }

    /// Every rule change so far.
    pub fn calls(&self) -> Vec<DataPlaneCall> {
        self.calls.lock().clone()
    }

    /// How many `apply` calls (batches) came so far.
    pub fn batches(&self) -> usize {
        *self.batches.lock()
    }

    fn record(&self, op: &'static str, app: &AppInfo, rule: Value) -> Result<(), DataPlaneError> {
        let delay = *self.delay.lock();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut calls = self.calls.lock();
        calls.push(DataPlaneCall {
            op,
            app: app.app_instance_id.clone(),
            rule,
        });
        if *self.fail_at.lock() == Some(calls.len()) {
            return Err(DataPlaneError::Failed {
                plane: "scripted",
                reason: format!("told to fail call {}", calls.len()),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DataPlane for ScriptedDataPlane {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    async fn init(&self, _: &Snapshot) -> Result<(), DataPlaneError> {
        Ok(())
    }
    async fn apply(&self, app: &AppInfo, changes: &[RuleChange]) -> Result<(), ApplyError> {
        *self.batches.lock() += 1;
        let app_delay = self.app_delays.lock().get(&app.app_instance_id).copied();
        if let Some(delay) = app_delay {
            tokio::time::sleep(delay).await;
        }
        for (applied, change) in changes.iter().enumerate() {
            let (op, rule) = match change {
                RuleChange::AddTraffic(r) => ("add_traffic", serde_json::to_value(r)),
                RuleChange::UpdateTraffic { new, .. } => ("set_traffic", serde_json::to_value(new)),
                RuleChange::RemoveTraffic(r) => ("delete_traffic", serde_json::to_value(r)),
                RuleChange::AddDns(r) => ("add_dns", serde_json::to_value(r)),
                RuleChange::UpdateDns { new, .. } => ("set_dns", serde_json::to_value(new)),
                RuleChange::RemoveDns(r) => ("delete_dns", serde_json::to_value(r)),
            };
            self.record(op, app, rule.unwrap())
                .map_err(|error| ApplyError { applied, error })?;
        }
        Ok(())
    }
    async fn resync(&self, _: &Snapshot) -> Result<(), DataPlaneError> {
        Ok(())
    }
}

/// An AppD configuration with one DNS rule and one traffic rule.
pub fn appd_body(app_name: &str, domain: &str) -> Value {
    json!({
        "appName": app_name,
        "appSupportMp1": true,
        "appDNSRule": [{
            "dnsRuleId": "dns-1", "domainName": domain, "ipAddressType": "IP_V4",
            "ipAddress": "192.0.2.10", "ttl": 30, "state": "ACTIVE"
        }],
        "appTrafficRule": [{
            "trafficRuleId": "tr-1", "filterType": "FLOW", "priority": 5, "action": "FORWARD_DECAPSULATED",
            "state": "ACTIVE",
            "trafficFilter": [{"dstAddress": ["198.51.100.0/24"], "dstPort": ["80"], "protocol": ["TCP"]}],
            "dstInterface": [{"interfaceType": "IP", "dstIpAddress": "10.10.0.2"}]
        }]
    })
}
