//! MEC application support API (`/mep/mec_app_support/v1`, MEC 011 clause 7), also routed under
//! the bare root and as `v2` (see [`APP_SUPPORT_PREFIXES`]).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use mep_rules::{DnsRule, TrafficRule};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::timing::{current_time, NtpServer, PtpMaster, TimingCaps};
use super::{created, json, with_etag};
use crate::apps::{Apps, RuleChangeError};
use crate::auth::{AppScope, CallbackAllow, Caller, RegistrantScope};
use crate::clock::{unix_parts, Clock};
use crate::etag::{etag_of, if_match_holds};
use crate::http::extract::{ApiJson, ApiPath as Path, IfMatch};
use crate::links::{nest_under, APP_SUPPORT_PREFIXES};
use crate::model::appd::AppDConfig;
use crate::model::ids::AppInstanceId;
use crate::model::service::TimeStamp;
use crate::problem::ApiError;

/// What the application support handlers use.
#[derive(Clone)]
pub struct AppSupportState {
    pub apps: Arc<Apps>,
    pub clock: Arc<dyn Clock>,
    pub ntp_servers: Arc<[NtpServer]>,
    pub ptp_masters: Arc<[PtpMaster]>,
}

/// The routes of the application support API, under every prefix it answers to.
pub fn router(state: AppSupportState) -> Router {
    let api = Router::new()
        .route(
            "/applications/{appInstanceId}/traffic_rules",
            get(list_traffic_rules),
        )
        .route(
            "/applications/{appInstanceId}/traffic_rules/{trafficRuleId}",
            get(get_traffic_rule).put(put_traffic_rule),
        )
        .route(
            "/applications/{appInstanceId}/dns_rules",
            get(list_dns_rules),
        )
        .route(
            "/applications/{appInstanceId}/dns_rules/{dnsRuleId}",
            get(get_dns_rule).put(put_dns_rule),
        )
        .route(
            "/applications/{appInstanceId}/subscriptions",
            get(list_subscriptions).post(subscribe),
        )
        .route(
            "/applications/{appInstanceId}/subscriptions/{subscriptionId}",
            get(get_subscription).delete(unsubscribe),
        )
        // POST is the spec's method; PUT is what ETSI's earlier conformance suites send.
        .route(
            "/applications/{appInstanceId}/confirm_termination",
            post(confirm_termination).put(confirm_termination),
        )
        .route(
            "/applications/{appInstanceId}/confirm_ready",
            post(confirm_ready).put(confirm_ready),
        )
        .route("/timing/timing_caps", get(timing_caps))
        .route("/timing/current_time", get(get_current_time))
        .route("/registrations", post(register_app))
        .route(
            "/registrations/{appInstanceId}",
            get(get_registration)
                .put(put_registration)
                .delete(delete_registration),
        )
        .with_state(state);
    nest_under(&APP_SUPPORT_PREFIXES, api)
}

type St = State<AppSupportState>;

/// A kind of rule an application reads and switches over Mp1: one code path serves both.
trait AppRule: Serialize + Clone + Send + 'static {
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
    fn of(config: &AppDConfig) -> &Vec<Self>;
    fn of_mut(config: &mut AppDConfig) -> &mut Vec<Self>;
}

impl AppRule for TrafficRule {
    const KIND: &'static str = "traffic rule";
    fn id(&self) -> &str {
        &self.traffic_rule_id
    }
    fn set_id(&mut self, id: String) {
        self.traffic_rule_id = id;
    }
    fn of(config: &AppDConfig) -> &Vec<Self> {
        &config.app_traffic_rule
    }
    fn of_mut(config: &mut AppDConfig) -> &mut Vec<Self> {
        &mut config.app_traffic_rule
    }
}

impl AppRule for DnsRule {
    const KIND: &'static str = "DNS rule";
    fn id(&self) -> &str {
        &self.dns_rule_id
    }
    fn set_id(&mut self, id: String) {
        self.dns_rule_id = id;
    }
    fn of(config: &AppDConfig) -> &Vec<Self> {
        &config.app_dns_rule
    }
    fn of_mut(config: &mut AppDConfig) -> &mut Vec<Self> {
        &mut config.app_dns_rule
    }
}

/// A rule with its `ETag`.
fn rule_response<R: AppRule>(rule: &R) -> Response {
    let body = serde_json::to_vec(rule).unwrap_or_default();
    let etag = etag_of(&body);
    with_etag(json(StatusCode::OK, body), &etag)
}

fn list_rules<R: AppRule>(apps: &Apps, app: &AppInstanceId) -> Response {
    let rules = apps
        .config(app)
        .map(|c| R::of(&c).clone())
        .unwrap_or_default();
    Json(rules).into_response()
}

fn get_rule<R: AppRule>(apps: &Apps, app: &AppInstanceId, id: &str) -> Result<Response, ApiError> {
    apps.config(app)
        .and_then(|c| R::of(&c).iter().find(|r| r.id() == id).cloned())
        .map(|r| rule_response(&r))
        .ok_or_else(|| ApiError::NotFound(format!("{} {id} not found", R::KIND)))
}

/// Replaces one rule as a task; the path id wins over the body's. A data-plane failure is 503
/// and leaves the rule as it was.
async fn put_rule<R: AppRule>(
    apps: &Arc<Apps>,
    app: &AppInstanceId,
    id: String,
    if_match: Option<String>,
    mut rule: R,
) -> Result<Response, ApiError> {
    rule.set_id(id.clone());
    let response = rule_response(&rule);
    let who = app.clone();
    let (outcome, _) = apps
        .edit(app, move |current| {
            let mut config = current.cloned().ok_or_else(|| {
                RuleChangeError::NotFound(format!("application instance {who} has no rules"))
            })?;
            let slot = R::of_mut(&mut config)
                .iter_mut()
                .find(|r| r.id() == id)
                .ok_or_else(|| RuleChangeError::NotFound(format!("{} {id} not found", R::KIND)))?;
            let current_etag = etag_of(&serde_json::to_vec(slot).unwrap_or_default());
            if !if_match_holds(if_match.as_deref(), &current_etag) {
                return Err(RuleChangeError::PreconditionFailed);
            }
            *slot = rule;
            Ok(Some(config))
        })
        .await?;
    if !outcome.succeeded() {
        return Err(ApiError::ServiceUnavailable(outcome.progress.detailed));
    }
    Ok(response)
}

async fn list_traffic_rules(State(s): St, AppScope(app): AppScope) -> Response {
    list_rules::<TrafficRule>(&s.apps, &app)
}

async fn get_traffic_rule(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_rule::<TrafficRule>(&s.apps, &app, &id)
}

async fn put_traffic_rule(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(rule): ApiJson<TrafficRule>,
) -> Result<Response, ApiError> {
    put_rule(&s.apps, &app, id, if_match, rule).await
}

async fn list_dns_rules(State(s): St, AppScope(app): AppScope) -> Response {
    list_rules::<DnsRule>(&s.apps, &app)
}

async fn get_dns_rule(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_rule::<DnsRule>(&s.apps, &app, &id)
}

async fn put_dns_rule(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(rule): ApiJson<DnsRule>,
) -> Result<Response, ApiError> {
    put_rule(&s.apps, &app, id, if_match, rule).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TerminationSubscriptionBody {
    subscription_type: String,
    callback_reference: String,
    /// Required by the spec, but the URI names the instance (ETSI's own test body names another).
    #[serde(default)]
    app_instance_id: Option<String>,
}

async fn list_subscriptions(State(s): St, AppScope(app): AppScope) -> Response {
    Json(s.apps.termination_subscription_list(&app)).into_response()
}

async fn subscribe(
    State(s): St,
    RegistrantScope(app): RegistrantScope,
    callbacks: CallbackAllow,
    ApiJson(body): ApiJson<TerminationSubscriptionBody>,
) -> Result<Response, ApiError> {
    callbacks.check(&body.callback_reference)?;
    if let Some(named) = body
        .app_instance_id
        .as_deref()
        .filter(|id| *id != app.as_str())
    {
        tracing::debug!(app = %app, named, "termination subscription names another appInstanceId; the URI's applies");
    }
    let (id, representation) = s
        .apps
        .subscribe_termination(&app, &body.subscription_type, body.callback_reference)
        .await?;
    let location = s.apps.links().termination_subscription(app.as_str(), &id);
    Ok(created(&location, representation))
}

async fn get_subscription(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        s.apps.termination_subscription(&app, &id)?,
    ))
}

async fn unsubscribe(
    State(s): St,
    AppScope(app): AppScope,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.apps.unsubscribe_termination(&app, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppTerminationConfirmation {
    operation_action: String,
}

async fn confirm_termination(
    State(s): St,
    AppScope(app): AppScope,
    ApiJson(body): ApiJson<AppTerminationConfirmation>,
) -> Result<StatusCode, ApiError> {
    if !matches!(body.operation_action.as_str(), "STOPPING" | "TERMINATING") {
        return Err(ApiError::BadRequest(format!(
            "operationAction must be STOPPING or TERMINATING, not {}",
            body.operation_action
        )));
    }
    s.apps.confirm_termination(&app, &body.operation_action)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AppReadyConfirmation {
    indication: String,
}

async fn confirm_ready(
    State(s): St,
    AppScope(app): AppScope,
    ApiJson(body): ApiJson<AppReadyConfirmation>,
) -> Result<StatusCode, ApiError> {
    if body.indication != "READY" {
        return Err(ApiError::BadRequest("indication must be READY".into()));
    }
    s.apps.confirm_ready(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn timing_caps(State(s): St, _caller: Caller) -> Response {
    let (seconds, nano_seconds) = unix_parts(s.clock.now());
    Json(TimingCaps {
        time_stamp: TimeStamp {
            seconds,
            nano_seconds,
        },
        ntp_servers: &s.ntp_servers,
        ptp_masters: &s.ptp_masters,
    })
    .into_response()
}

async fn get_current_time(State(s): St, _caller: Caller) -> Response {
    Json(current_time(s.clock.now())).into_response()
}

/// An `AppInfo` body, without the `{"AppInfo": {..}}` wrapper of v3.1.1-generated clients (the
/// body is kept as JSON, so [`ApiJson`]'s unwrapping on parse errors never applies to it).
fn app_info(body: Value) -> Value {
    match body {
        Value::Object(mut outer)
            if outer.len() == 1 && outer.get("AppInfo").is_some_and(Value::is_object) =>
        {
            outer.remove("AppInfo").unwrap_or_default()
        }
        other => other,
    }
}

async fn register_app(
    State(s): St,
    caller: Caller,
    ApiJson(info): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let mut info = app_info(info);
    if let (Caller::App(me), Some(obj)) = (&caller, info.as_object_mut()) {
        match obj.get("appInstanceId").and_then(Value::as_str) {
            Some(id) if id != me.as_str() => {
                return Err(ApiError::Forbidden(format!(
                    "application instance {me} may not register {id}"
                )))
            }
            _ => {
                obj.insert("appInstanceId".into(), Value::String(me.to_string()));
            }
        }
    }
    let (app, info) = s.apps.register_app(info).await?;
    let location = s.apps.links().registration(app.as_str());
    Ok(created(
        &location,
        serde_json::to_vec(&info).unwrap_or_default(),
    ))
}

async fn get_registration(State(s): St, AppScope(app): AppScope) -> Result<Response, ApiError> {
    Ok(Json(s.apps.registration(&app)?).into_response())
}

async fn put_registration(
    State(s): St,
    AppScope(app): AppScope,
    ApiJson(info): ApiJson<Value>,
) -> Result<StatusCode, ApiError> {
    s.apps.update_registration(&app, app_info(info)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_registration(
    State(s): St,
    AppScope(app): AppScope,
) -> Result<StatusCode, ApiError> {
    s.apps.deregister_app(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
