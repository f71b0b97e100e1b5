//! The Mm5 listener: the platform manager's interface, plus health and metrics for operators.

pub mod appd;
pub mod capabilities;
pub mod credentials;
pub mod termination;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use mep_rules::DataPlane;

use crate::http::extract::ApiQuery;
use crate::metrics::{Metrics, OutcomeLabels, RuleLabels};
use crate::problem::{problem_response, ProblemDetails};
use crate::readiness::Readiness;
use crate::registry::Registry;
use crate::store::{Leadership, Store};

/// What the operations endpoints read.
#[derive(Clone)]
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub store: Store,
    /// Whether this node sends the site's notifications.
    pub leadership: Leadership,
    pub dataplane: Arc<dyn DataPlane>,
    pub readiness: Arc<Readiness>,
    /// The newest rule snapshot, for the rule counts.
    pub snapshots: mep_rules::SnapshotReader,
}

/// `GET /health`, `GET /ready`, `GET /metrics` and the data plane's per-rule counters.
pub fn ops_router(state: OpsState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(rule_counters))
        .routes(routes!(dns_answers))
        .with_state(state)
}

#[derive(serde::Deserialize)]
struct NameQuery {
    name: String,
}

/// What the DNS server answers for a name and why: the ACTIVE DNS rules that cover it (a local,
/// authoritative answer), or none (the query is forwarded).
#[utoipa::path(
get, path = "/mepcfg/dns/v1/answers", tag = "operations", summary = "mep addition: what the DNS server answers for a name, and why", params(("name" = String, Query, description = "The domain name")), responses((status = 200, description = "The ACTIVE DNS rules covering the name (empty: forwarded)", content_type = "application/json"))
)]
async fn dns_answers(State(state): State<OpsState>, ApiQuery(q): ApiQuery<NameQuery>) -> Response {
    let name = q.name.trim_end_matches('.').to_ascii_lowercase();
    let snapshot = state.snapshots.load();
    let answers: Vec<serde_json::Value> = snapshot
        .dns_rules()
        .filter(|r| {
            r.rule
                .domain_name
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&name)
        })
        .map(|r| {
            serde_json::json!({
                "address": r.rule.ip_address,
                "ttl": r.rule.ttl,
                "appInstanceId": r.app_instance_id,
                "dnsRuleId": r.rule.dns_rule_id,
            })
        })
        .collect();
    // The lookup the DNS server itself makes decides; the rules say where the answer comes from.
    let source = match snapshot.dns_answers(&name) {
        Some(_) => "local",
        None => "upstream",
    };
    axum::Json(serde_json::json!({"name": name, "source": source, "answers": answers}))
        .into_response()
}

/// Packets and bytes per ACTIVE traffic rule, from data planes that count (xdp).
#[utoipa::path(
get, path = "/mepcfg/dataplane/v1/traffic_rule_counters", tag = "operations", summary = "mep addition: packets and bytes per traffic rule", responses((status = 200, description = "Counters per rule", content_type = "application/json"))
)]
async fn rule_counters(State(state): State<OpsState>) -> Response {
    axum::Json(state.dataplane.counters()).into_response()
}

#[utoipa::path(
get, path = "/health", tag = "operations", summary = "Liveness of the process", security(()), responses((status = 200, description = "`{\"status\":\"ok\"}`", content_type = "application/json"))
)]
async fn health() -> Response {
    let mut r = axum::Json(serde_json::json!({"status": "ok"})).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// 200 once the store is loaded, the data plane holds the committed rules and DNS listens; 503
/// with what is missing until then.
#[utoipa::path(
get, path = "/ready", tag = "operations", summary = "Readiness: store loaded, data plane synced, DNS listening", security(()), responses((status = 200, description = "`{\"status\":\"ready\"}`", content_type = "application/json"), (status = 503, description = "What is missing", body = ProblemDetails, content_type = "application/problem+json"))
)]
async fn ready(State(state): State<OpsState>) -> Response {
    let missing = state.readiness.missing();
    if missing.is_empty() {
        let mut body = serde_json::json!({"status": "ready", "store": state.store.kind()});
        if let Some(node) = state.store.node_id() {
            body["node"] = node.into();
            body["appliedRevision"] = state.store.applied_revision().into();
            body["notifier"] = state.leadership.is_leader().into();
        }
        return axum::Json(body).into_response();
    }
    let mut response = problem_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}", missing.join("; ")),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[utoipa::path(
get, path = "/metrics", tag = "operations", summary = "Prometheus metrics", responses((status = 200, description = "The Prometheus text format", content_type = "text/plain; version=0.0.4"))
)]
async fn metrics(State(state): State<OpsState>) -> Response {
    let counts = state.registry.counts();
    state.metrics.services.set(counts.services as i64);
    state.metrics.subscriptions.set(counts.subscriptions as i64);
    let snapshot = state.snapshots.load();
    state
        .metrics
        .active_traffic_rules
        .set(snapshot.traffic_rule_count() as i64);
    state
        .metrics
        .active_dns_rules
        .set(snapshot.dns_rule_count() as i64);
    state
        .metrics
        .store_bytes
        .set(state.store.file_size() as i64);
    state
        .metrics
        .store_applied_revision
        .set(state.store.applied_revision());
    state
        .metrics
        .notifier_leader
        .set(i64::from(state.leadership.is_leader()));
    state.metrics.traffic_rule_packets.clear();
    state.metrics.traffic_rule_bytes.clear();
    for c in state.dataplane.counters() {
        let labels = RuleLabels {
            app_instance_id: c.app_instance_id,
            traffic_rule_id: c.traffic_rule_id,
        };
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        state
            .metrics
            .traffic_rule_packets
            .get_or_create(&labels)
            .set(clamp(c.packets));
        state
            .metrics
            .traffic_rule_bytes
            .get_or_create(&labels)
            .set(clamp(c.bytes));
    }
    for o in state.dataplane.forward_outcomes() {
        state
            .metrics
            .forwarded_packets
            .get_or_create(&OutcomeLabels { outcome: o.outcome })
            .set(i64::try_from(o.packets).unwrap_or(i64::MAX));
    }
    if let Some(dns) = state.dataplane.dns_answers() {
        for (outcome, n) in [("answered", dns.answered), ("passed", dns.passed)] {
            state
                .metrics
                .dataplane_dns_queries
                .get_or_create(&OutcomeLabels { outcome })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    let mut r = state.metrics.encode().into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
