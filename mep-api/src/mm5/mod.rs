//! The Mm5 listener: the platform manager's interface, plus health and metrics for operators.

pub mod appd;
pub mod capabilities;
pub mod credentials;
pub mod termination;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::CONTENT_TYPE;
use http::HeaderValue;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::Store;

/// What the operations endpoints read.
#[derive(Clone)]
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub store: Store,
}

/// `GET /health` and `GET /metrics`.
pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health() -> Response {
    let mut r = axum::Json(serde_json::json!({"status": "ok"})).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn metrics(State(state): State<OpsState>) -> Response {
    let counts = state.registry.counts();
    state.metrics.services.set(counts.services as i64);
    state.metrics.subscriptions.set(counts.subscriptions as i64);
    state
        .metrics
        .store_bytes
        .set(state.store.file_size() as i64);
    let mut r = state.metrics.encode().into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
