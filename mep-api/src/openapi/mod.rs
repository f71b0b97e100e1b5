//! The OpenAPI 3.1 document of each listener, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives, and served at `GET /openapi.json`.
//!
//! Routes are registered through [`utoipa_axum::router::OpenApiRouter`], so a route and its
//! documentation come from one annotation; the test in `tests` walks the finished axum routers and
//! fails on any route the document does not name. Schemas take the names ETSI's MEC 011 files give
//! them (`ServiceInfo`, `ServiceInfo.Post`, ...); what mep adds to them says so in its description
//! ("Since MEC 011 v2.2.1", "mep addition").

pub mod params;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityRequirement,
    SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, PathItem, Ref, RefOr, ResponseBuilder,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::{problem_response, ProblemDetails};

/// Path of the document on every listener.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// How callers of a listener authenticate, as the document declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Nothing to present.
    None,
    /// OAuth 2.0 client credentials from mep's token endpoint at this path.
    ClientCredentials { token_path: &'static str },
    /// A static bearer token (the Mm5 operator token).
    OperatorToken,
}

/// What a listener's document says about itself.
#[derive(Debug, Clone)]
pub struct About {
    pub title: &'static str,
    pub description: &'static str,
    pub security: Security,
    /// Tag names and what they group.
    pub tags: Vec<(&'static str, String)>,
}

/// `api` with `GET /openapi.json` serving its finished document, as a plain router.
pub fn serve_document(api: OpenApiRouter, about: &About) -> Router {
    let document = Arc::new(OnceLock::new());
    let (router, openapi) = api
        .merge(
            OpenApiRouter::new()
                .routes(routes!(openapi_json))
                .with_state(document.clone()),
        )
        .split_for_parts();
    let finished = finish(openapi, about);
    match serde_json::to_vec(&finished) {
        Ok(json) => {
            let _ = document.set(Bytes::from(json));
        }
        Err(error) => tracing::error!(%error, "the OpenAPI document does not serialize"),
    }
    router
}

/// `api` with `wrap` applied to its routes (layers that need a plain `Router`), its document kept.
pub fn map_routes(api: OpenApiRouter, wrap: impl FnOnce(Router) -> Router) -> OpenApiRouter {
    let (router, openapi) = api.split_for_parts();
    let mut wrapped = OpenApiRouter::from(wrap(router));
    *wrapped.get_openapi_mut() = openapi;
    wrapped
}

/// `api` whose document also holds `T`'s schema: for what no operation names, such as what mep
/// sends to a subscription's callback.
pub fn with_schema<T: ToSchema>(mut api: OpenApiRouter) -> OpenApiRouter {
    add_schema::<T>(
        api.get_openapi_mut()
            .components
            .get_or_insert_with(Default::default),
    );
    api
}

/// The document as served: info, tags, the security scheme and a `ProblemDetails` default
/// response on every operation.
pub fn finish(mut openapi: OpenApi, about: &About) -> OpenApi {
    openapi.info = InfoBuilder::new()
        .title(about.title)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(about.description))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    openapi.tags = Some(
        about
            .tags
            .iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(*name)
                    .description(Some(description.as_str()))
                    .build()
            })
            .collect(),
    );
    let components = openapi.components.get_or_insert_with(Default::default);
    add_schema::<ProblemDetails>(components);
    match about.security {
        Security::None => {}
        Security::ClientCredentials { token_path } => {
            components.add_security_scheme(
                "oauth2",
                SecurityScheme::OAuth2(OAuth2::with_description(
                    [Flow::ClientCredentials(ClientCredentials::new(
                        token_path,
                        Scopes::new(),
                    ))],
                    "A token from mep's token endpoint: OAuth 2.0 client credentials, or \
                     EdgeGallery's signed request (SDK-HMAC-SHA256).",
                )),
            );
            openapi.security = Some(vec![SecurityRequirement::new::<_, _, &str>("oauth2", [])]);
        }
        Security::OperatorToken => {
            components.add_security_scheme(
                "operatorToken",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "The operator token mep was started with (--mm5-token).",
                        ))
                        .build(),
                ),
            );
            openapi.security = Some(vec![SecurityRequirement::new::<_, _, &str>(
                "operatorToken",
                [],
            )]);
        }
    }
    let problem = ResponseBuilder::new()
        .description("An error, as RFC 7807 ProblemDetails")
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ProblemDetails::name())))
                .build(),
        )
        .build();
    for item in openapi.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            operation
                .responses
                .responses
                .entry("default".into())
                .or_insert_with(|| RefOr::T(problem.clone()));
        }
    }
    openapi
}

fn add_schema<T: ToSchema>(components: &mut utoipa::openapi::Components) {
    let mut schemas = Vec::new();
    T::schemas(&mut schemas);
    components.schemas.extend(schemas);
    components
        .schemas
        .insert(T::name().into_owned(), T::schema());
}

/// Every operation of a path item.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
        &mut item.query,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
    .chain(item.additional_operations.values_mut())
}

#[utoipa::path(
    get, path = OPENAPI_PATH, tag = "documentation",
    summary = "This document",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this listener", content_type = "application/json"))
)]
async fn openapi_json(State(document): State<Arc<OnceLock<Bytes>>>) -> Response {
    match document.get() {
        Some(json) => {
            let mut response = (StatusCode::OK, json.clone()).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        None => problem_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the OpenAPI document could not be built".into(),
        ),
    }
}
