//! Identifiers that appear in URIs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id accepted in a URI segment.
const MAX_ID_LEN: usize = 128;

/// An application instance id as allocated by the MEC platform manager: opaque, but restricted to
/// characters that need no escaping in a URI so that links built from it are always valid.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct AppInstanceId(String);

impl AppInstanceId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        validate_id("appInstanceId", raw).map(|()| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppInstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What [`validate_id`] accepts, as a regular expression for the OpenAPI document.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._~-]{1,128}$";

/// Checks that an id is 1..=128 characters of `[A-Za-z0-9._~-]`.
pub fn validate_id(what: &str, raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > MAX_ID_LEN {
        return Err(format!("{what} must be 1 to {MAX_ID_LEN} characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        return Err(format!(
            "{what} may only contain letters, digits and '-', '_', '.', '~'"
        ));
    }
    Ok(())
}

/// A new platform-allocated id (UUID v4).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_instance_ids_are_uri_safe() {
        assert!(AppInstanceId::parse("5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f").is_ok());
        assert!(AppInstanceId::parse("").is_err());
        assert!(AppInstanceId::parse("a/b").is_err());
        assert!(AppInstanceId::parse("a b").is_err());
        assert!(AppInstanceId::parse(&"x".repeat(129)).is_err());
    }

    proptest::proptest! {
        /// The document's pattern says what the parser does: clients that validate against it
        /// send what mep takes.
        #[test]
        fn the_id_pattern_accepts_what_validate_id_accepts(raw in "[ -~\u{80}-\u{10ffff}]{0,130}|[A-Za-z0-9._~-]{0,130}") {
            let pattern = regex::Regex::new(ID_PATTERN).expect("a regular expression");
            proptest::prop_assert_eq!(pattern.is_match(&raw), validate_id("id", &raw).is_ok());
        }
    }
}
