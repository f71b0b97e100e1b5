use std::collections::BTreeSet;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use serde_json::Value;

use crate::app::testing::{routers, send};
use crate::links::{APP_SUPPORT_PREFIXES, SERVICE_MGMT_PREFIXES};

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

/// The paths axum routes, read from the router's `Debug` form (axum has no public route list;
/// Cargo.lock pins the version whose form this reads, and the walk asserts it found routes).
fn paths_of(router: &Router) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let mut paths = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at..];
        let Some(open) = rest.find("): \"") else {
            break;
        };
        let after = &rest[open + 4..];
        let Some(close) = after.find('"') else { break };
        paths.insert(after[..close].to_owned());
        rest = &after[close..];
    }
    paths
}

/// The path as the document names it: aliases of an API's prefix become its canonical prefix.
fn canonical(path: &str) -> String {
    for prefixes in [SERVICE_MGMT_PREFIXES, APP_SUPPORT_PREFIXES] {
        for alias in &prefixes[1..] {
            if let Some(rest) = path.strip_prefix(alias) {
                return format!("{}{rest}", prefixes[0]);
            }
        }
    }
    path.to_owned()
}

/// `path` with every `{parameter}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every (method, canonical path) the router answers: each method is tried on each path, and
/// only a 405 or the router's own 404 means "not routed".
async fn walk(router: &Router) -> BTreeSet<(String, String)> {
    let paths = paths_of(router);
    assert!(
        paths.len() > 10,
        "the walk found only {paths:?}: axum's Debug form changed?"
    );
    let mut routed = BTreeSet::new();
    for path in paths {
        for method in METHODS {
            let request = Request::builder()
                .method(method)
                .uri(concrete(&path))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("a request");
            let answer = send(router, request).await;
            let fallback = answer.status == StatusCode::NOT_FOUND
                && answer.json["detail"] == "no resource at this URI";
            if answer.status != StatusCode::METHOD_NOT_ALLOWED && !fallback {
                routed.insert((method.to_owned(), canonical(&path)));
            }
        }
    }
    routed
}

async fn document(router: &Router) -> Value {
    let answer = send(
        router,
        Request::get("/openapi.json")
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.header("content-type"), "application/json");
    answer.json
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method.to_ascii_lowercase()).is_some() {
                out.insert((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_of_both_listeners_is_in_its_document_and_nothing_else() {
    let r = routers(|c| c.auth.enabled = false).await;
    for (name, router) in [("mp1", &r.mp1), ("mm5", &r.mm5)] {
        let doc = document(router).await;
        assert_eq!(doc["openapi"], "3.1.0");
        let walked = walk(router).await;
        let documented = documented(&doc);
        if name == "mp1" {
            for method in ["POST", "PUT"] {
                let confirm = (
                    method.to_owned(),
                    "/mep/mec_app_support/v1/applications/{appInstanceId}/confirm_ready".to_owned(),
                );
                assert!(walked.contains(&confirm), "{confirm:?} is not routed");
            }
        }
        let undocumented: Vec<_> = walked.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&walked).collect();
        assert!(
            undocumented.is_empty(),
            "{name}: routed but not documented: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "{name}: documented but not routed: {unrouted:?}"
        );
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                assert!(
                    operation["responses"]["default"].is_object(),
                    "{name}: {method} {path} has no ProblemDetails default"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_documents_declare_how_to_authenticate() {
    let r = routers(|c| c.mm5_token = Some("operator-secret".to_owned().into())).await;
    let mp1 = document(&r.mp1).await;
    assert_eq!(
        mp1["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["tokenUrl"],
        "/mep/token"
    );
    assert_eq!(mp1["security"][0]["oauth2"], serde_json::json!([]));
    assert_eq!(
        mp1["paths"]["/mep/token"]["post"]["security"],
        serde_json::json!([{}]),
        "the token endpoint needs no token"
    );
    let mm5 = document(&r.mm5).await;
    assert_eq!(
        mm5["components"]["securitySchemes"]["operatorToken"]["scheme"],
        "bearer"
    );
}

/// The schema a property's schema stands for: `$ref`s followed, `null` alternatives dropped.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(target) = schema["$ref"].as_str() {
        let name = target.trim_start_matches("#/components/schemas/");
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[key].as_array() {
            if let Some(real) = options.iter().find(|o| o["type"] != "null") {
                return resolve(doc, real);
            }
        }
    }
    let is_array = schema["type"] == "array"
        || schema["type"]
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t == "array"));
    if is_array {
        return resolve(doc, &schema["items"]);
    }
    schema
}

fn enum_of(doc: &Value, schema: &Value) -> BTreeSet<String> {
    resolve(doc, schema)["enum"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a description marks what it describes as newer than v2.1.1 or as mep's own.
fn marked(description: &str) -> bool {
    description.contains("Since MEC 011 v") || description.contains("mep addition")
}

/// ETSI's schema names mep's document uses for another of ETSI's names (the two subscription
/// link lists have one shape and one type in mep).
const SAME_SHAPE: [(&str, &str); 4] = [
    ("LinkType.ConfirmTermination", "LinkType"),
    (
        "MecAppSuptApiSubscriptionLinkList",
        "MecServiceMgmtApiSubscriptionLinkList",
    ),
    (
        "MecAppSuptApiSubscriptionLinkList.Links",
        "MecServiceMgmtApiSubscriptionLinkList.Links",
    ),
    (
        "MecAppSuptApiSubscriptionLinkList.Subscription",
        "MecServiceMgmtApiSubscriptionLinkList.Subscription",
    ),
];

/// Members of ETSI's schemas that mep never sends, with why.
const NOT_SENT: [(&str, &str, &str); 1] = [(
    "ProblemDetails",
    "instance",
    "mep names no problem occurrence",
)];

/// ETSI's v2.1.1 object schemas that are wrappers of the generator, not wire types.
fn is_wire_type(name: &str) -> bool {
    !(name.starts_with("EndPointInfo.") && name != "EndPointInfo.Address"
        || matches!(name, "Self" | "Subscription" | "TimingCaps.TimeStamp"))
}

#[tokio::test]
async fn mec011_schemas_have_the_members_and_values_of_etsi_v2_1_1() {
    let r = routers(|_| {}).await;
    let doc = document(&r.mp1).await;
    let specs = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/mec011/v2.1.1");
    let mut compared = 0;
    for file in ["MecServiceMgmtApi.json", "MecAppSupportApi.json"] {
        let text = std::fs::read_to_string(format!("{specs}/{file}")).expect("ETSI's file");
        let etsi: Value = serde_json::from_str(&text).expect("ETSI's JSON");
        for (name, schema) in etsi["components"]["schemas"].as_object().expect("schemas") {
            let Some(properties) = schema["properties"].as_object() else {
                continue;
            };
            if !is_wire_type(name) {
                continue;
            }
            let ours_name = SAME_SHAPE
                .iter()
                .find(|(theirs, _)| theirs == name)
                .map_or(name.as_str(), |(_, ours)| ours);
            let ours = &doc["components"]["schemas"][ours_name];
            let ours_properties = ours["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{file}: mep's document has no schema {ours_name}"));
            compared += 1;
            for (member, their_schema) in properties {
                if NOT_SENT.iter().any(|(s, m, _)| s == name && m == member) {
                    continue;
                }
                let our_schema = ours_properties
                    .get(member)
                    .unwrap_or_else(|| panic!("{ours_name} lacks ETSI's member {member}"));
                let theirs = enum_of(&etsi, their_schema);
                let our_values = enum_of(&doc, our_schema);
                assert!(
                    theirs.is_subset(&our_values),
                    "{ours_name}.{member}: ETSI's values {theirs:?}, mep's {our_values:?}"
                );
                let added: Vec<_> = our_values.difference(&theirs).collect();
                if !theirs.is_empty() && !added.is_empty() {
                    let description = resolve(&doc, our_schema)["description"]
                        .as_str()
                        .unwrap_or_default();
                    for value in added {
                        assert!(
                            marked(description) && description.contains(value.as_str()),
                            "{ours_name}.{member}: value {value} is not ETSI's v2.1.1 and its \
                             description does not say so: {description:?}"
                        );
                    }
                }
            }
            for (member, our_schema) in ours_properties {
                if properties.contains_key(member) {
                    continue;
                }
                let description = our_schema["description"].as_str().unwrap_or_default();
                assert!(
                    marked(description),
                    "{ours_name}.{member} is not in ETSI's v2.1.1 and its description does not \
                     say where it comes from: {description:?}"
                );
            }
        }
    }
    assert!(compared >= 25, "only {compared} schemas compared");
}

/// Each listener's document passes `openapi-spec-validator` (PyPI; scripts/setup.sh installs it).
#[tokio::test]
async fn the_documents_are_valid_openapi_3_1() {
    let r = routers(|_| {}).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, router) in [("mp1", &r.mp1), ("mm5", &r.mm5)] {
        let path = dir.path().join(format!("{name}.json"));
        let doc = document(router).await;
        std::fs::write(&path, doc.to_string()).expect("the document written");
        let output = std::process::Command::new("openapi-spec-validator")
            .arg(&path)
            .output()
            .expect("openapi-spec-validator runs (scripts/setup.sh installs it)");
        assert!(
            output.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Every `appInstanceId` path parameter carries the pattern the handlers enforce
/// (`model::ids::validate_id`, whose own test holds the pattern to it).
#[tokio::test]
async fn app_instance_ids_are_documented_with_the_enforced_pattern() {
    let r = routers(|_| {}).await;
    let mut seen = 0;
    for router in [&r.mp1, &r.mm5] {
        let doc = document(router).await;
        for item in doc["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("a path item").values() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    if parameter["name"] == "appInstanceId" && parameter["in"] == "path" {
                        assert_eq!(
                            parameter["schema"]["pattern"],
                            crate::model::ids::ID_PATTERN,
                            "{operation}"
                        );
                        seen += 1;
                    }
                }
            }
        }
    }
    assert!(seen >= 30, "only {seen} appInstanceId parameters");
}
