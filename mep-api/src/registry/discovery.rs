//! The query of `GET /services` and `GET /applications/{id}/services` (MEC 011 clause 8.2.3.3.1).

use std::sync::Arc;

use crate::model::common::parse_enum;
use crate::model::service::{LocalityType, Service};

/// Which services a discovery request selects. All present conditions must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiscoveryQuery {
    pub selector: Selector,
    pub consumed_local_only: Option<bool>,
    pub is_local: Option<bool>,
    pub scope_of_locality: Option<LocalityType>,
    /// Service names the caller may discover (its `requiredServices`); `None` means all. Not a
    /// query parameter: set from the caller's credentials.
    pub visible_names: Option<Arc<[String]>>,
}

/// The three mutually exclusive selectors of the spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Selector {
    #[default]
    All,
    InstanceIds(Vec<String>),
    Names(Vec<String>),
    CategoryId(String),
}

impl DiscoveryQuery {
    /// Parses a raw query string. Arrays may repeat the parameter (`a=1&a=2`) or use commas
    /// (`a=1,2`). Unknown or repeated single-valued parameters are errors.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut query = DiscoveryQuery::default();
        let mut ids: Option<Vec<String>> = None;
        let mut names: Option<Vec<String>> = None;
        let mut category: Option<String> = None;
        let mut seen_single = Vec::new();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let single = |seen: &mut Vec<String>| {
                if seen.iter().any(|k| *k == key) {
                    return Err(format!("query parameter {key} may be given once"));
                }
                seen.push(key.to_string());
                Ok(())
            };
            match key.as_ref() {
                "ser_instance_id" => ids.get_or_insert_with(Vec::new).extend(split_list(&value)),
                "ser_name" => names
                    .get_or_insert_with(Vec::new)
                    .extend(split_list(&value)),
                "ser_category_id" => {
                    single(&mut seen_single)?;
                    category = Some(value.into_owned());
                }
                "consumed_local_only" => {
                    single(&mut seen_single)?;
                    query.consumed_local_only = Some(parse_bool(&key, &value)?);
                }
                "is_local" => {
                    single(&mut seen_single)?;
                    query.is_local = Some(parse_bool(&key, &value)?);
                }
                "scope_of_locality" => {
                    single(&mut seen_single)?;
                    query.scope_of_locality = Some(parse_enum("scope_of_locality", &value)?);
                }
                other => return Err(format!("unknown query parameter {other}")),
            }
        }
        query.selector = match (ids, names, category) {
            (None, None, None) => Selector::All,
            (Some(ids), None, None) => Selector::InstanceIds(ids),
            (None, Some(names), None) => Selector::Names(names),
            (None, None, Some(category)) => Selector::CategoryId(category),
            _ => {
                return Err(
                    "ser_instance_id, ser_name and ser_category_id are mutually exclusive".into(),
                )
            }
        };
        Ok(query)
    }

    /// Whether the non-selector conditions hold for `service`.
    pub fn attributes_match(&self, service: &Service) -> bool {
        self.consumed_local_only
            .is_none_or(|v| v == service.consumed_local_only)
            && self.is_local.is_none_or(|v| v == service.is_local)
            && self
                .scope_of_locality
                .is_none_or(|v| v == service.scope_of_locality)
            && self
                .visible_names
                .as_ref()
                .is_none_or(|names| names.contains(&service.ser_name))
    }

    /// Whether the selector holds for `service`.
    pub fn selector_matches(&self, service: &Service) -> bool {
        match &self.selector {
            Selector::All => true,
            Selector::InstanceIds(ids) => ids.contains(&service.ser_instance_id),
            Selector::Names(names) => names.contains(&service.ser_name),
            Selector::CategoryId(id) => service.ser_category.as_ref().is_some_and(|c| c.id == *id),
        }
    }
}

fn split_list(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "TRUE" | "True" => Ok(true),
        "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("query parameter {key} must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_accept_repeats_and_commas() {
        let q = DiscoveryQuery::parse(Some("ser_name=a&ser_name=b,c")).unwrap();
        assert_eq!(
            q.selector,
            Selector::Names(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn selectors_exclude_each_other_and_unknowns_fail() {
        assert!(DiscoveryQuery::parse(Some("ser_name=a&ser_category_id=b")).is_err());
        assert!(DiscoveryQuery::parse(Some("ser_instance_id=a&ser_name=b")).is_err());
        assert!(DiscoveryQuery::parse(Some("bogus=1")).is_err());
        assert!(DiscoveryQuery::parse(Some("is_local=maybe")).is_err());
        assert!(DiscoveryQuery::parse(Some("is_local=true&is_local=false")).is_err());
        assert!(DiscoveryQuery::parse(Some("scope_of_locality=PLANET")).is_err());
    }

    #[test]
    fn attributes_parse() {
        let q = DiscoveryQuery::parse(Some(
            "ser_category_id=rni&consumed_local_only=false&is_local=true&scope_of_locality=MEC_SYSTEM",
        ))
        .unwrap();
        assert_eq!(q.selector, Selector::CategoryId("rni".into()));
        assert_eq!(q.consumed_local_only, Some(false));
        assert_eq!(q.is_local, Some(true));
        assert_eq!(q.scope_of_locality, Some(LocalityType::MecSystem));
        assert_eq!(
            DiscoveryQuery::parse(None).unwrap(),
            DiscoveryQuery::default()
        );
    }
}
