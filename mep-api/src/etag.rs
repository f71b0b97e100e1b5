//! Strong entity tags derived from a representation's bytes, so they need no bookkeeping and change
//! exactly when the representation does.

use std::hash::{DefaultHasher, Hash, Hasher};

/// The quoted strong ETag of `representation`.
pub fn etag_of(representation: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    representation.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

/// Checks an `If-Match` header value against the current ETag with the strong comparison of
/// RFC 9110 section 13.1.1: weak tags never match; no header always matches.
pub fn if_match_holds(if_match: Option<&str>, current_etag: &str) -> bool {
    let Some(header) = if_match else {
        return true;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current_etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_lists_and_wildcards() {
        let a = etag_of(b"a");
        assert_ne!(a, etag_of(b"b"));
        assert!(if_match_holds(None, &a));
        assert!(if_match_holds(Some("*"), &a));
        assert!(if_match_holds(Some(&format!("\"x\", {a}")), &a));
        assert!(!if_match_holds(Some("\"x\""), &a));
        assert!(!if_match_holds(Some(&format!("W/{a}")), &a));
    }
}
