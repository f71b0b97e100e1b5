//! The Mp1 and Mm5 APIs as routers, with the layers every route gets: a trace span per request
//! on its matched route, a response deadline, panics turned into 500s, metrics, the URI and body
//! limits, and `ProblemDetails` for what routing itself answers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::Router;
use http::{Request, StatusCode};
use secrecy::ExposeSecret;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::core::Core;
use crate::auth::middleware::{require_operator_token, OperatorToken};
use crate::config::Config;
use crate::directory::KnownApps;
use crate::http::middleware::{
    limit_uri_length, problem_for_bare_errors, read_body_within, record_metrics, BodyLimits,
    MetricsContext,
};
use crate::links::{served_under, APP_SUPPORT_PREFIXES, SERVICE_MGMT_PREFIXES};
use crate::metrics::Metrics;
use crate::mm5::{ops_router, OpsState};
use crate::mp1::app_support::AppSupportState;
use crate::mp1::timing::{NtpServer, PtpMaster};
use crate::openapi::{map_routes, serve_document, About, Security};
use crate::problem::problem_response;
use crate::{auth, mm5, mp1};

/// What the Mp1 document says about the listener.
fn mp1_about(config: &Config) -> About {
    About {
        title: "mep Mp1: MEC service management and application support (ETSI GS MEC 011)",
        description: "The Mp1 reference point of mep. Schemas carry the names of ETSI's MEC 011 \
            v2.1.1 files; members and values added later (v2.2.1, v3.1.1) or by mep say so.",
        security: if config.auth.enabled {
            Security::ClientCredentials {
                token_path: auth::endpoint::TOKEN_PATH,
            }
        } else {
            Security::None
        },
        tags: vec![
            (
                "service management",
                served_under("MEC 011 clause 8", &SERVICE_MGMT_PREFIXES),
            ),
            (
                "application support",
                served_under("MEC 011 clause 7", &APP_SUPPORT_PREFIXES),
            ),
            ("token", "Access tokens for the Mp1 API.".into()),
            ("documentation", "This document.".into()),
        ],
    }
}

/// What the Mm5 document says about the listener.
fn mm5_about(config: &Config) -> About {
    About {
        title: "mep Mm5: the platform manager's interface",
        description: "Per-application traffic and DNS rules (EdgeGallery's appd_configuration), \
            capabilities, credentials, termination, and the operator's health, readiness and \
            metrics.",
        security: if config.mm5_token.is_some() {
            Security::OperatorToken
        } else {
            Security::None
        },
        tags: vec![
            (
                "app configuration",
                "Rules per application instance, applied as tasks.".into(),
            ),
            (
                "capabilities",
                "The services registered on the platform.".into(),
            ),
            (
                "credentials",
                "Application credentials and token signing keys.".into(),
            ),
            ("termination", "Application instance termination.".into()),
            (
                "operations",
                "Health, readiness, metrics and diagnostics.".into(),
            ),
            ("documentation", "This document.".into()),
        ],
    }
}

/// Mp1: service management, application support and the token endpoint.
pub(super) fn mp1(config: &Config, core: &Core) -> Router {
    let app_support = mp1::app_support::router(AppSupportState {
        apps: core.apps.clone(),
        clock: core.clock.clone(),
        ntp_servers: config
            .ntp_servers
            .iter()
            .map(|s| NtpServer::named(s))
            .collect(),
        ptp_masters: config
            .ptp_masters
            .iter()
            .map(|a| PtpMaster::at(*a))
            .collect(),
    });
    let directory = Arc::new(KnownApps {
        auth: core.auth.clone(),
        apps: core.apps.clone(),
        registry: core.registry.clone(),
        trusting: !config.auth.enabled,
    });
    let protected = map_routes(
        mp1::service_mgmt::router(core.registry.clone()).merge(app_support),
        |api| auth::protect(api, &core.auth, &config.callback_allow, directory),
    );
    let api = protected
        .merge(auth::endpoint::router(core.auth.clone()))
        .layer(deadline(config.http.request_timeout));
    with_common_layers(
        serve_document(api, &mp1_about(config)),
        config,
        config.max_body_bytes,
        &core.metrics,
        "mp1",
    )
}

/// Mm5: the platform manager's interface, health, readiness and metrics; behind the operator
/// token when one is configured.
pub(super) fn mm5(config: &Config, core: &Core) -> Router {
    let api = ops_router(OpsState {
        metrics: core.metrics.clone(),
        registry: core.registry.clone(),
        store: core.store.clone(),
        leadership: core.leadership.clone(),
        dataplane: core.apps.dataplane().clone(),
        readiness: core.readiness.clone(),
        snapshots: core.apps.snapshots(),
    })
    .merge(mm5::appd::router(core.apps.clone()))
    .merge(mm5::capabilities::router(core.registry.clone()))
    .merge(mm5::credentials::router(core.auth.clone()))
    .layer(deadline(config.http.request_timeout));
    let api = api.merge(
        mm5::termination::router(core.apps.clone(), core.auth.clone())
            .layer(deadline(termination_deadline(config))),
    );
    let router = with_common_layers(
        serve_document(api, &mm5_about(config)),
        config,
        config.mm5_max_body_bytes,
        &core.metrics,
        "mm5",
    );
    match &config.mm5_token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(
            Arc::new(OperatorToken::new(token.expose_secret())),
            require_operator_token,
        )),
        None => router,
    }
}

/// What the DNS-over-HTTPS document says about the listener.
fn dns_https_about() -> About {
    About {
        title: "mep DNS over HTTPS (RFC 8484)",
        description:
            "mep's DNS server over HTTPS: local answers for ACTIVE DNS rules, the rest forwarded.",
        security: Security::None,
        tags: vec![
            ("dns", "DNS queries.".into()),
            ("documentation", "This document.".into()),
        ],
    }
}

/// DNS over HTTPS, with the layers of the other listeners.
pub(super) fn dns_https(config: &Config, core: &Core, answerer: mep_dns::DnsAnswerer) -> Router {
    with_common_layers(
        serve_document(
            crate::dns_https::router(answerer).layer(deadline(config.http.request_timeout)),
            &dns_https_about(),
        ),
        config,
        // The largest DNS message.
        65_535,
        &core.metrics,
        "dns-https",
    )
}

/// Answers 503 to a request still running after `after` (the work it started goes on).
fn deadline(after: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, after)
}

/// A termination waits up to `max_graceful_timeout` for the application's confirmation, then
/// removes what it had; it gets that long and more.
fn termination_deadline(config: &Config) -> Duration {
    config
        .http
        .request_timeout
        .max(config.apps.max_graceful_timeout + Duration::from_secs(30))
}

fn with_common_layers(
    router: Router,
    config: &Config,
    max_body_bytes: usize,
    metrics: &Arc<Metrics>,
    listener: &'static str,
) -> Router {
    router
        .fallback(|| async {
            problem_response(StatusCode::NOT_FOUND, "no resource at this URI".into())
        })
        .layer(axum::middleware::from_fn(problem_for_bare_errors))
        .layer(axum::middleware::from_fn_with_state(
            BodyLimits {
                max_bytes: max_body_bytes,
                timeout: config.http.body_timeout,
            },
            read_body_within,
        ))
        .layer(axum::middleware::from_fn_with_state(
            config.max_uri_bytes,
            limit_uri_length,
        ))
        .layer(axum::middleware::from_fn_with_state(
            MetricsContext {
                metrics: metrics.clone(),
                listener,
            },
            record_metrics,
        ))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                problem_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the request failed inside mep".into(),
                )
            },
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(move |req: &Request<_>| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", |p| p.as_str());
                tracing::debug_span!("request", listener, method = %req.method(), route)
            }),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// A router with a slow and a panicking route under the common layers, with a 1 s deadline.
    fn layered() -> Router {
        let mut config = Config::with_data_dir("/nonexistent");
        config.http.request_timeout = Duration::from_secs(1);
        let routes = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/panics", get(panics))
            .route("/fine", get(|| async { "fine" }))
            .layer(deadline(config.http.request_timeout));
        with_common_layers(
            routes,
            &config,
            config.max_body_bytes,
            &Arc::new(Metrics::new()),
            "mp1",
        )
    }

    async fn panics() -> &'static str {
        panic!("a handler bug")
    }

    async fn call(router: Router, method: &str, uri: &str) -> (StatusCode, String, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("a request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_a_503_problem() {
        let (status, content_type, body) = call(layered(), "GET", "/slow").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type, "application/problem+json");
        assert!(body.contains("\"status\":503"), "{body}");
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_problem_and_the_router_serves_on() {
        let router = layered();
        let (status, content_type, body) = call(router.clone(), "GET", "/panics").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, "application/problem+json");
        assert!(
            !body.contains("a handler bug"),
            "the panic message leaked: {body}"
        );
        assert_eq!(call(router, "GET", "/fine").await.2, "fine");
    }

    #[tokio::test]
    async fn routing_failures_are_problems() {
        let (status, content_type, _) = call(layered(), "GET", "/nowhere").await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::NOT_FOUND, "application/problem+json")
        );
        let (status, content_type, _) = call(layered(), "POST", "/fine").await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "application/problem+json")
        );
    }

    #[test]
    fn a_termination_may_outlast_the_graceful_timeout() {
        let mut config = Config::with_data_dir("/nonexistent");
        config.http.request_timeout = Duration::from_secs(5);
        config.apps.max_graceful_timeout = Duration::from_secs(100);
        assert_eq!(termination_deadline(&config), Duration::from_secs(130));
        config.apps.max_graceful_timeout = Duration::from_secs(1);
        config.http.request_timeout = Duration::from_secs(60);
        assert_eq!(termination_deadline(&config), Duration::from_secs(60));
    }
}
