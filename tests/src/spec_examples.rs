//! The request-body examples of ETSI's MEC 011 OpenAPI files in `specs/mec011/`, found by walking
//! each document: every `example`/`examples` whose schema is one a request body uses, wherever
//! the document puts it (a request body, a response of the same schema, `components/examples`,
//! a schema of its own), with `$ref`s to `components/examples` resolved.
//!
//! The files are ETSI's (and AdvantEDGE's) as published, with their quirks: AdvantEDGE writes an
//! `examples` map under `example`, OAS 3.1 schemas hold `examples` arrays, lists of a schema
//! carry lists of examples. Each is read for what it is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One example body and the schema it is an example of.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecExample {
    /// The file it came from, relative to `specs/mec011`.
    pub file: String,
    /// The schema's name in `components/schemas` (`ServiceInfo`, `ServiceInfo.Post`, ...).
    pub schema: String,
    pub body: Value,
}

/// `specs/mec011` of the repository.
pub fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("specs")
        .join("mec011")
}

/// Parses a spec file (JSON or YAML) into JSON values.
pub fn load(relative: &str) -> Value {
    let path = spec_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if relative.ends_with(".json") {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
    } else {
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }
}

/// The request-body examples of one spec file, each once.
pub fn request_examples(relative: &str) -> Vec<SpecExample> {
    let doc = load(relative);
    let wanted = request_schemas(&doc);
    let mut found = Vec::new();
    collect(&doc, &doc, &mut found);
    let mut seen = BTreeSet::new();
    found
        .into_iter()
        .filter(|(schema, body)| wanted.contains(schema) && body.is_object())
        .filter(|(schema, body)| seen.insert(format!("{schema}:{body}")))
        .map(|(schema, body)| SpecExample {
            file: relative.to_owned(),
            schema,
            body,
        })
        .collect()
}

/// The names of the schemas that request bodies of the document use.
pub fn request_schemas(doc: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for operations in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for method in ["post", "put", "patch"] {
            let body = resolve(doc, &operations[method]["requestBody"]);
            for media in body["content"]
                .as_object()
                .into_iter()
                .flat_map(|c| c.values())
            {
                if let Some((name, _)) = schema_name(doc, &media["schema"]) {
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// Follows a local `$ref` (`#/a/b/c`), or answers the node itself.
fn resolve<'d>(doc: &'d Value, node: &'d Value) -> &'d Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/")
            .map(|path| {
                path.split('/')
                    .fold(doc, |at, key| at.get(key).unwrap_or(&Value::Null))
            })
            .unwrap_or(&Value::Null),
        None => node,
    }
}

/// The schema a node names: `(name, is_array)` for `{$ref}`, `{type: array, items: {$ref}}`, or
/// v3.1.1's doc2oas wrapper `{type: object, properties: {Name: {$ref}}}`.
fn schema_name(doc: &Value, schema: &Value) -> Option<(String, bool)> {
    let name_of = |s: &Value| {
        s.get("$ref")
            .and_then(Value::as_str)
            .filter(|r| r.starts_with("#/components/schemas/"))
            .and_then(|r| r.rsplit('/').next())
            .map(str::to_owned)
    };
    if let Some(name) = name_of(schema) {
        return Some((name, false));
    }
    let schema = resolve(doc, schema);
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => name_of(&schema["items"]).map(|n| (n, true)),
        Some("object") => match schema["properties"].as_object() {
            Some(properties) if properties.len() == 1 => properties
                .values()
                .next()
                .and_then(name_of)
                .map(|n| (n, false)),
            _ => None,
        },
        _ => None,
    }
}

/// The example bodies held by an `example` or `examples` member, each as written.
fn example_bodies(doc: &Value, node: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(example) = node.get("example") {
        match example.as_object() {
            // AdvantEDGE puts an `examples` map under `example`: {"TrafficRule": {"value": ..}}.
            Some(map)
                if map.len() == 1
                    && map.values().all(|v| {
                        v.get("value").is_some() && v.as_object().is_some_and(|o| o.len() == 1)
                    }) =>
            {
                out.extend(map.values().map(|v| v["value"].clone()));
            }
            _ => out.push(example.clone()),
        }
    }
    match node.get("examples") {
        // OAS 3.1 schemas: a list of examples.
        Some(Value::Array(list)) => out.extend(list.iter().cloned()),
        // OAS 3.0 media types: a map of Example objects (or $refs to them).
        Some(Value::Object(map)) => {
            for example in map.values() {
                let example = resolve(doc, example);
                if let Some(value) = example.get("value") {
                    out.push(value.clone());
                }
            }
        }
        _ => {}
    }
    out
}

/// Walks the document and records `(schema, body)` for every example that names its schema:
/// media types (`schema` beside `example(s)`), schemas with examples of their own, and the
/// named schemas of `components/schemas`.
fn collect(doc: &Value, node: &Value, found: &mut Vec<(String, Value)>) {
    match node {
        Value::Object(map) => {
            if let Some(schema) = map.get("schema") {
                if let Some((name, is_array)) = schema_name(doc, schema) {
                    push(found, &name, is_array, example_bodies(doc, node));
                }
            }
            if let Some((name, is_array)) = schema_name(doc, node) {
                push(found, &name, is_array, example_bodies(doc, node));
            }
            if let Some(schemas) = doc["components"]["schemas"].as_object() {
                for (name, schema) in schemas {
                    if std::ptr::eq(schema, node) {
                        push(found, name, false, example_bodies(doc, node));
                    }
                }
            }
            for value in map.values() {
                collect(doc, value, found);
            }
        }
        Value::Array(list) => {
            for value in list {
                collect(doc, value, found);
            }
        }
        _ => {}
    }
}

fn push(found: &mut Vec<(String, Value)>, name: &str, is_array: bool, bodies: Vec<Value>) {
    for body in bodies {
        match (is_array, body) {
            (true, Value::Array(items)) => {
                found.extend(items.into_iter().map(|item| (name.to_owned(), item)));
            }
            // OAS 3.1 wraps a list example in a list of examples.
            (true, Value::Object(_)) => {}
            (false, body) => found.push((name.to_owned(), body)),
            (true, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_1_1_service_info_example_is_found() {
        let examples = request_examples("v2.1.1/MecServiceMgmtApi.json");
        assert!(examples
            .iter()
            .any(|e| e.schema == "ServiceInfo" && e.body["serInstanceId"] == "ServiceInstance123"));
    }
}
