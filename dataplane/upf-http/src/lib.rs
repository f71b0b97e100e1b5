//! The `upf-http` data plane: forwards every rule change, whole, to an external UPF controller as
//! JSON over HTTP(S), and pushes the full set of ACTIVE rules at start. The schema is documented
//! for controller authors in `dataplane/upf-http/UPF-HTTP.md`.
//!
//! Every call is idempotent (PUT of a whole rule under its own id, DELETE that accepts 404), so
//! retrying after a timeout or a 5xx can never apply a change twice; a call either succeeds or
//! returns an error, which lets the control plane commit or revert.

// Input and I/O paths never unwrap; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod schema;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Certificate, Method};
use serde::Serialize;
use url::Url;

use mep_rules::{AppInfo, ApplyError, DataPlane, DataPlaneError, RuleChange, Snapshot};

pub use schema::{SCHEMA_HEADER, SCHEMA_VERSION, SEQUENCE_HEADER};

use schema::{Collection, RuleDocument, StateDocument};
use transport::Transport;

const PLANE: &str = "upf-http";

/// How to reach the UPF controller.
#[derive(Clone)]
pub struct UpfHttpConfig {
    /// Base URL of the controller (`https://` or `http://`, may carry a path prefix); the schema's
    /// paths (`v1/...`) are appended to it.
    pub endpoint: Url,
    /// Limit for one attempt, connection included.
    pub timeout: Duration,
    /// Further attempts after a transport error, a 5xx or a 429 (0: one attempt only).
    pub retries: u32,
    /// Wait before the first retry; it doubles for each next one, up to 16 times this.
    pub backoff: Duration,
    /// A PEM file of extra CA certificates trusted for the controller, besides the public roots.
    pub ca_cert_pem: Option<PathBuf>,
    /// Sent as `Authorization: Bearer <token>` on every request.
    pub bearer_token: Option<String>,
}

impl UpfHttpConfig {
    /// A configuration with the defaults: 5 s timeout, 3 retries, 200 ms backoff, no extra CA,
    /// no token.
    pub fn new(endpoint: Url) -> Self {
        UpfHttpConfig {
            endpoint,
            timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_millis(200),
            ca_cert_pem: None,
            bearer_token: None,
        }
    }
}

/// Keeps the bearer token out of logs.
impl fmt::Debug for UpfHttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpfHttpConfig")
            .field("endpoint", &self.endpoint.as_str())
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a `upf-http` data plane could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum UpfHttpError {
    #[error("upf-http endpoint {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("upf-http timeout must be more than zero")]
    Timeout,
    #[error("upf-http CA certificate file {path}: {reason}")]
    CaCertificate { path: PathBuf, reason: String },
    #[error("upf-http bearer token: {0}")]
    Token(String),
    #[error("upf-http HTTP client: {0}")]
    Client(String),
}

/// The `upf-http` data plane.
pub struct UpfHttpDataPlane {
    endpoint: Url,
    transport: Transport,
}

impl fmt::Debug for UpfHttpDataPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpfHttpDataPlane")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl UpfHttpDataPlane {
    /// Checks the configuration and builds the HTTP client (rustls, certificate verification
    /// on, no redirects: a change goes to the configured controller or fails). Sends nothing.
    pub fn new(config: UpfHttpConfig) -> Result<Self, UpfHttpError> {
        check_endpoint(&config.endpoint)?;
        if config.timeout.is_zero() {
            return Err(UpfHttpError::Timeout);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(SCHEMA_HEADER, HeaderValue::from(SCHEMA_VERSION));
        if let Some(token) = &config.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                UpfHttpError::Token("it may hold only visible ASCII characters".into())
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mep-upf-http/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers);
        if let Some(path) = &config.ca_cert_pem {
            for cert in read_ca_certificates(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.endpoint.scheme() == "http" {
            tracing::warn!(endpoint = %config.endpoint, "upf-http controller reached over plain HTTP");
        }
        let client = builder
            .build()
            .map_err(|e| UpfHttpError::Client(e.to_string()))?;
        Ok(UpfHttpDataPlane {
            endpoint: config.endpoint,
            transport: Transport::new(client, config.timeout, config.retries, config.backoff),
        })
    }

    async fn put_rule<R: Serialize>(
        &self,
        app: &AppInfo,
        collection: Collection,
        rule_id: &str,
        rule: &R,
    ) -> Result<(), DataPlaneError> {
        let url = schema::rule_url(&self.endpoint, &app.app_instance_id, collection, rule_id)
            .map_err(failed)?;
        let body = json(&RuleDocument {
            schema_version: SCHEMA_VERSION,
            app_instance_id: &app.app_instance_id,
            app_name: &app.app_name,
            rule,
        })?;
        self.transport
            .send(Method::PUT, url, Some(body))
            .await
            .map_err(failed)
    }

    async fn delete_rule(
        &self,
        app: &AppInfo,
        collection: Collection,
        rule_id: &str,
    ) -> Result<(), DataPlaneError> {
        let url = schema::rule_url(&self.endpoint, &app.app_instance_id, collection, rule_id)
            .map_err(failed)?;
        self.transport
            .send(Method::DELETE, url, None)
            .await
            .map_err(failed)
    }
}

#[async_trait]
impl DataPlane for UpfHttpDataPlane {
    fn kind(&self) -> &'static str {
        PLANE
    }

    /// One controller for the whole site.
    fn shared_by_site(&self) -> bool {
        true
    }

    /// A full resync, so that a controller that restarted or missed changes while mep was down
    /// holds exactly the stored ACTIVE rules.
    async fn init(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError> {
        self.resync(snapshot).await?;
        tracing::info!(
            endpoint = %self.endpoint,
            traffic_rules = snapshot.traffic_rule_count(),
            dns_rules = snapshot.dns_rule_count(),
            "upf-http data plane ready"
        );
        Ok(())
    }

    /// One idempotent call per change, in order; on a failure, how many went through.
    async fn apply(&self, app: &AppInfo, changes: &[RuleChange]) -> Result<(), ApplyError> {
        for (applied, change) in changes.iter().enumerate() {
            let result = match change {
                RuleChange::AddTraffic(rule) | RuleChange::UpdateTraffic { new: rule, .. } => {
                    self.put_rule(app, Collection::Traffic, &rule.traffic_rule_id, rule)
                        .await
                }
                RuleChange::RemoveTraffic(rule) => {
                    self.delete_rule(app, Collection::Traffic, &rule.traffic_rule_id)
                        .await
                }
                RuleChange::AddDns(rule) | RuleChange::UpdateDns { new: rule, .. } => {
                    self.put_rule(app, Collection::Dns, &rule.dns_rule_id, rule)
                        .await
                }
                RuleChange::RemoveDns(rule) => {
                    self.delete_rule(app, Collection::Dns, &rule.dns_rule_id)
                        .await
                }
            };
            result.map_err(|error| ApplyError { applied, error })?;
        }
        Ok(())
    }

    async fn resync(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError> {
        let url = schema::state_url(&self.endpoint).map_err(failed)?;
        let body = json(&StateDocument::from_snapshot(snapshot))?;
        self.transport
            .send(Method::PUT, url, Some(body))
            .await
            .map_err(failed)
    }
}

/// An endpoint must be an absolute http(s) URL without credentials (they would end up in logs
/// and error messages; use the bearer token), query or fragment.
fn check_endpoint(endpoint: &Url) -> Result<(), UpfHttpError> {
    let bad = |reason: &str| UpfHttpError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.into(),
    };
    if !matches!(endpoint.scheme(), "https" | "http") {
        return Err(bad("the scheme must be https or http"));
    }
    if endpoint.cannot_be_a_base() || endpoint.host().is_none() {
        return Err(bad("it must name a host"));
    }
    if !endpoint.username().is_empty() || endpoint.password().is_some() {
        return Err(bad(
            "credentials may not be part of the URL; use the bearer token",
        ));
    }
    if endpoint.query().is_some() || endpoint.fragment().is_some() {
        return Err(bad("it may not have a query or a fragment"));
    }
    Ok(())
}

fn read_ca_certificates(path: &PathBuf) -> Result<Vec<Certificate>, UpfHttpError> {
    let bad = |reason: String| UpfHttpError::CaCertificate {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn json(body: &impl Serialize) -> Result<Vec<u8>, DataPlaneError> {
    serde_json::to_vec(body).map_err(|e| failed(format!("cannot encode the request: {e}")))
}

fn failed(reason: String) -> DataPlaneError {
    DataPlaneError::Failed {
        plane: PLANE,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str) -> UpfHttpConfig {
        UpfHttpConfig::new(Url::parse(endpoint).unwrap())
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(UpfHttpDataPlane::new(config("https://upf.example/api")).is_ok());
        for bad in [
            "ftp://upf.example",
            "https://user:pw@upf.example",
            "https://upf.example/?a=1",
            "mailto:x@upf.example",
        ] {
            assert!(
                matches!(
                    UpfHttpDataPlane::new(config(bad)),
                    Err(UpfHttpError::Endpoint { .. })
                ),
                "{bad}"
            );
        }
        let mut zero = config("https://upf.example");
        zero.timeout = Duration::ZERO;
        assert!(matches!(
            UpfHttpDataPlane::new(zero),
            Err(UpfHttpError::Timeout)
        ));
    }

    #[test]
    fn bad_ca_files_and_tokens_are_refused() {
        let mut c = config("https://upf.example");
        c.ca_cert_pem = Some("/nonexistent/ca.pem".into());
        assert!(matches!(
            UpfHttpDataPlane::new(c),
            Err(UpfHttpError::CaCertificate { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let mut c = config("https://upf.example");
        c.ca_cert_pem = Some(not_pem);
        assert!(matches!(
            UpfHttpDataPlane::new(c),
            Err(UpfHttpError::CaCertificate { .. })
        ));
        let mut c = config("https://upf.example");
        c.bearer_token = Some("bad\ntoken".into());
        assert!(matches!(
            UpfHttpDataPlane::new(c),
            Err(UpfHttpError::Token(_))
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let mut c = config("https://upf.example");
        c.bearer_token = Some("s3cret".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"));
        assert!(shown.contains("redacted"));
    }
}
