//! Types shared by the MEC 011 APIs.

use serde::{Deserialize, Serialize};

/// `LinkType`: a hyperlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkType {
    pub href: String,
}

impl LinkType {
    pub fn new(href: String) -> Self {
        Self { href }
    }
}

/// `CategoryRef`: a reference to a service category. `href` is informational (mep never
/// dereferences it), so any non-empty string is accepted: the spec's own examples use `"catItem1"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CategoryRef {
    #[schema(min_length = 1, max_length = 2048, pattern = r"\S")]
    pub href: String,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub id: String,
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub name: String,
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub version: String,
}

impl CategoryRef {
    pub fn validate(&self, what: &str) -> Result<(), String> {
        require_text(&format!("{what}.href"), &self.href, MAX_INFO_URI)?;
        require_text(&format!("{what}.id"), &self.id, 128)?;
        require_text(&format!("{what}.name"), &self.name, 128)?;
        require_text(&format!("{what}.version"), &self.version, 64)?;
        Ok(())
    }
}

/// `ServiceState`. Since MEC 011 v2.2.1: SUSPENDED, set by the platform when heartbeats stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceState {
    Active,
    Inactive,
    Suspended,
}

/// Parses a value of a string enum the way a JSON body would, so that query parameters and bodies
/// accept exactly the same spellings.
pub fn parse_enum<T: serde::de::DeserializeOwned>(what: &str, raw: &str) -> Result<T, String> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(raw))
        .map_err(|e| format!("{what}: {e}"))
}

/// Longest informational URI accepted (`href`s, endpoint URIs, token endpoints): mep stores and
/// echoes them but never dereferences them, so they are text, not URLs.
pub const MAX_INFO_URI: usize = 2048;

/// A non-empty string of at most `max` characters.
pub fn require_text(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.chars().count() > max {
        return Err(format!("{what} must be at most {max} characters"));
    }
    Ok(())
}

/// A `callbackReference`, which mep calls: an absolute http(s) URI with a host.
pub fn require_callback_uri(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value)
        .map_err(|e| format!("callbackReference is not an absolute URI: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("callbackReference must be an http or https URI".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("callbackReference has no host".into());
    }
    Ok(())
}

/// An absolute http(s) URI that mep calls. The pattern is a subset of what mep takes (host
/// names in ASCII, IPv4 addresses), so a URI that matches it is always accepted.
#[derive(utoipa::ToSchema)]
#[schema(
    value_type = String,
    pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*|(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3})(:[0-9]{1,4})?([/?#][!-~]*)?$"
)]
pub struct CallbackUri(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_like_json() {
        assert_eq!(
            parse_enum::<ServiceState>("state", "SUSPENDED").unwrap(),
            ServiceState::Suspended
        );
        let err = parse_enum::<ServiceState>("state", "active").unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }

    #[test]
    fn callback_uris_must_be_absolute_http() {
        assert!(require_callback_uri("http://10.0.0.1:8080/cb").is_ok());
        assert!(require_callback_uri("/relative").is_err());
        assert!(require_callback_uri("http://").is_err());
        assert!(require_callback_uri("mailto:ops@example.com").is_err());
    }
}
