//! Middleware every listener uses.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::StatusCode;

use crate::metrics::{HttpLabels, Metrics, RouteLabels};
use crate::problem::{problem_response, ApiError};

/// Refuses request targets longer than the limit with 414.
pub async fn limit_uri_length(State(max): State<usize>, req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if len > max {
        return ApiError::UriTooLong(max).into_response();
    }
    next.run(req).await
}

/// Gives the bodiless 404 and 405 responses of routing a `ProblemDetails` body.
pub async fn problem_for_routing_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) || response.headers().contains_key(CONTENT_TYPE)
    {
        return response;
    }
    let detail = if status == StatusCode::NOT_FOUND {
        "no resource at this URI".to_owned()
    } else {
        ApiError::MethodNotAllowed.to_string()
    };
    let (mut parts, _) = response.into_parts();
    let problem = problem_response(status, detail);
    parts.headers.extend(problem.headers().clone());
    Response::from_parts(parts, problem.into_body())
}

/// What the metrics middleware needs to know.
#[derive(Clone)]
pub struct MetricsContext {
    pub metrics: Arc<Metrics>,
    pub listener: &'static str,
}

/// Counts requests and times them per matched route.
pub async fn record_metrics(
    State(ctx): State<MetricsContext>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    ctx.metrics
        .http_latency
        .get_or_create(&RouteLabels {
            listener: ctx.listener,
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            listener: ctx.listener,
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
