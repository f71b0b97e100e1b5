//! Middleware every listener uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::HttpBody as _;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;

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

/// What a request body may be.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// Time the whole body has to arrive once the head has.
    pub timeout: Duration,
}

/// Reads a request's body before any handler sees it: 413 straight from a `Content-Length` over
/// the limit (before a byte of the body is read, and without `100 Continue`), 413 when a body
/// without a declared length grows over it, 408 (closing the connection) when it does not arrive
/// whole within the timeout. Handlers then read it from memory.
pub async fn read_body_within(
    State(limits): State<BodyLimits>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_bytes as u64) {
        return ApiError::PayloadTooLarge(format!(
            "the declared body of {} bytes is larger than the limit of {} bytes",
            declared.unwrap_or_default(),
            limits.max_bytes
        ))
        .into_response();
    }
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(
        limits.timeout,
        http_body_util::Limited::new(body, limits.max_bytes).collect(),
    )
    .await;
    match collected {
        Ok(Ok(body)) => {
            let req = Request::from_parts(parts, axum::body::Body::from(body.to_bytes()));
            next.run(req).await
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            ApiError::PayloadTooLarge(format!(
                "the request body is larger than the limit of {} bytes",
                limits.max_bytes
            ))
            .into_response()
        }
        Ok(Err(e)) => {
            ApiError::BadRequest(format!("the request body could not be read: {e}")).into_response()
        }
        Err(_) => {
            let mut response = problem_response(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    limits.timeout.as_secs_f64()
                ),
            );
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// Gives the bodiless error responses of routing (404, 405) and of tower layers (the 503 of a
/// request that ran past its deadline) a `ProblemDetails` body.
pub async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(CONTENT_TYPE)
    {
        return response;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no resource at this URI".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.to_string(),
        StatusCode::SERVICE_UNAVAILABLE => {
            "the request was not answered in time; the work it started goes on".to_owned()
        }
        other => other.canonical_reason().unwrap_or("error").to_owned(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
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
