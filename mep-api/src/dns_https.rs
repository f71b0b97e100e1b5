//! DNS over HTTPS (RFC 8484) at `/dns-query`: GET with the query in the `dns` parameter
//! (base64url, no padding) and POST with an `application/dns-message` body. The query goes to
//! the DNS server's handler, so it gets the answer UDP, TCP and TLS clients get; HTTP itself
//! (TLS, HTTP/2, connection limits, slow clients) is the API listeners' machinery.

use std::net::{IpAddr, Ipv4Addr};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mep_dns::{DnsAnswerer, Transport};
use serde::Deserialize;

use crate::http::extract::ApiQuery;
use crate::http::serve::PeerAddr;
use crate::problem::problem_response;

/// The path of DNS over HTTPS requests.
pub const PATH: &str = "/dns-query";

const DNS_MESSAGE: &str = "application/dns-message";

/// The router of the DNS-over-HTTPS listener.
pub fn router(answerer: DnsAnswerer) -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(by_get, by_post))
        .with_state(answerer)
}

#[derive(Deserialize)]
struct GetParams {
    dns: Option<String>,
}

#[utoipa::path(
get, path = PATH, tag = "dns", summary = "A DNS query (RFC 8484 GET)", params(("dns" = String, Query, description = "The DNS message, base64url without padding")), responses((status = 200, description = "The DNS answer", content_type = "application/dns-message"), (status = 400, description = "Not a DNS message", body = crate::problem::ProblemDetails, content_type = "application/problem+json"))
)]
async fn by_get(
    State(answerer): State<DnsAnswerer>,
    peer: Option<Extension<PeerAddr>>,
    ApiQuery(params): ApiQuery<GetParams>,
) -> Response {
    let Some(encoded) = params.dns else {
        return problem_response(
            StatusCode::BAD_REQUEST,
            "a GET needs the query in the dns parameter".into(),
        );
    };
    // RFC 8484 §6: no padding, but accept it.
    match URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')) {
        Ok(query) => answer(&answerer, peer, &query).await,
        Err(_) => problem_response(
            StatusCode::BAD_REQUEST,
            "the dns parameter is not base64url".into(),
        ),
    }
}

#[utoipa::path(
post, path = PATH, tag = "dns", summary = "A DNS query (RFC 8484 POST)", request_body(content = Vec<u8>, content_type = "application/dns-message"), responses((status = 200, description = "The DNS answer", content_type = "application/dns-message"), (status = 415, description = "Not application/dns-message", body = crate::problem::ProblemDetails, content_type = "application/problem+json"))
)]
async fn by_post(
    State(answerer): State<DnsAnswerer>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if content_type != Some(DNS_MESSAGE) {
        return problem_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a POST carries a DNS message as {DNS_MESSAGE}"),
        );
    }
    answer(&answerer, peer, &body).await
}

/// `peer` is the client's address; a request that did not come over a listener (a test's
/// `oneshot`) counts as one unspecified client.
async fn answer(
    answerer: &DnsAnswerer,
    peer: Option<Extension<PeerAddr>>,
    query: &[u8],
) -> Response {
    let client = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0 .0.ip());
    match answerer.answer(query, Transport::Https, client).await {
        Some(message) => ([(header::CONTENT_TYPE, DNS_MESSAGE)], message).into_response(),
        None => problem_response(StatusCode::BAD_REQUEST, "not a DNS query".into()),
    }
}
