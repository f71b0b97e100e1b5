//! EdgeGallery's AK/SK request signing (`Authorization: SDK-HMAC-SHA256 ...` with `x-sdk-date`),
//! verified exactly as mepauth computes it so that an unchanged mep-agent gets tokens from mep:
//!
//! - the request is rebuilt as `POST` of the received path and query with an **empty body**, and
//!   only the headers named in `SignedHeaders` plus `host` (a named header that is absent counts
//!   with an empty value);
//! - canonical request = method, canonical URI (decoded path segments without empty, `.` and `..`,
//!   each query-escaped, with a leading and a forced trailing `/`), canonical query (sorted
//!   `escape(k)=escape(v)`), canonical headers (`name:trimmed value` lines, sorted, each ending in
//!   `\n`), signed header names (sorted, `;`-joined) and the hex SHA-256 of the empty body, joined
//!   by `\n`;
//! - string to sign = `SDK-HMAC-SHA256`, the `x-sdk-date` value and the hex SHA-256 of the canonical
//!   request, joined by `\n`; signature = hex HMAC-SHA256 keyed with the secret key.
//!
//! Unlike mepauth, `x-sdk-date` must be signed and within the allowed clock skew (so a captured
//! request cannot be replayed later), and signatures are compared in constant time.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};

pub const SCHEME: &str = "SDK-HMAC-SHA256";
pub const DATE_HEADER: &str = "x-sdk-date";
const MAX_SIGNED_HEADERS: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("the Authorization header is not `SDK-HMAC-SHA256 Access=.., SignedHeaders=.., Signature=..`")]
    Malformed,
    #[error("SignedHeaders must name x-sdk-date")]
    DateNotSigned,
    #[error("x-sdk-date is missing or not of the form YYYYMMDDTHHMMSSZ")]
    BadDate,
    #[error("x-sdk-date is outside the allowed clock skew; sign the request again")]
    Skew,
}

/// The parts of an `SDK-HMAC-SHA256` Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkAuthorization {
    pub access_key: String,
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
}

/// Parses `SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<a;b;c>, Signature=<64 hex>`.
pub fn parse_authorization(value: &str) -> Result<SdkAuthorization, SigningError> {
    let rest = value
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(SigningError::Malformed)?;
    let mut access = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or(SigningError::Malformed)?;
        let slot = match name {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(SigningError::Malformed),
        };
        if slot.replace(value).is_some() {
            return Err(SigningError::Malformed);
        }
    }
    let (Some(access), Some(signed), Some(signature)) = (access, signed, signature) else {
        return Err(SigningError::Malformed);
    };
    if access.is_empty() || access.len() > 128 {
        return Err(SigningError::Malformed);
    }
    let signed_headers: Vec<String> = signed
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>();
    if signed_headers.len() > MAX_SIGNED_HEADERS
        || signed_headers
            .iter()
            .any(|h| h.is_empty() || !h.bytes().all(is_token_char))
    {
        return Err(SigningError::Malformed);
    }
    if !signed_headers.iter().any(|h| h == DATE_HEADER) {
        return Err(SigningError::DateNotSigned);
    }
    Ok(SdkAuthorization {
        access_key: access.to_owned(),
        signed_headers,
        signature: decode_hex32(signature).ok_or(SigningError::Malformed)?,
    })
}

/// Parses an `x-sdk-date` (`YYYYMMDDTHHMMSSZ`, UTC).
pub fn parse_sdk_date(value: &str) -> Result<SystemTime, SigningError> {
    let b = value.as_bytes();
    // ASCII first: the digits are sliced by byte offset below.
    if !value.is_ascii() || b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(SigningError::BadDate);
    }
    let num = |range: std::ops::Range<usize>| -> Result<u32, SigningError> {
        let digits = &value[range];
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(SigningError::BadDate);
        }
        digits.parse().map_err(|_| SigningError::BadDate)
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(SigningError::BadDate);
    }
    let days = days_from_civil(year as i64, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// Refuses a signing date further than `max_skew` from `now` in either direction.
pub fn check_skew(
    date: SystemTime,
    now: SystemTime,
    max_skew: Duration,
) -> Result<(), SigningError> {
    let skew = match now.duration_since(date) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > max_skew {
        return Err(SigningError::Skew);
    }
    Ok(())
}

/// The request as the signer saw it.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path as received (percent-encoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub host: &'a str,
    /// First value of a header by lowercase name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// The string to sign for `request` with the headers `signed_headers`.
pub fn string_to_sign(request: &RequestParts<'_>, signed_headers: &[String]) -> String {
    let mut headers: BTreeMap<String, String> = signed_headers
        .iter()
        .map(|name| (name.clone(), (request.header)(name).unwrap_or_default()))
        .collect();
    headers.insert("host".into(), request.host.to_owned());
    let date = headers.get(DATE_HEADER).cloned().unwrap_or_default();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_names = headers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(";");
    let canonical = [
        request.method,
        &canonical_uri(request.path),
        &canonical_query(request.query),
        &canonical_headers,
        &signed_names,
        &hex::encode(digest::digest(&digest::SHA256, b"").as_ref()),
    ]
    .join("\n");
    format!(
        "{SCHEME}\n{date}\n{}",
        hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    )
}

/// Whether `signature` is HMAC-SHA256(`secret`, `string_to_sign`); constant time.
pub fn verify(secret: &[u8], string_to_sign: &str, signature: &[u8; 32]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, string_to_sign.as_bytes(), signature).is_ok()
}

fn canonical_uri(path: &str) -> String {
    let decoded = percent_decode(path);
    let segments: Vec<String> = decoded
        .split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .map(query_escape)
        .collect();
    let mut uri = format!("/{}", segments.join("/"));
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

fn canonical_query(query: Option<&str>) -> String {
    let mut params: Vec<String> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| format!("{}={}", query_escape(&k), query_escape(&v)))
        .collect();
    params.sort();
    params.join("&")
}

/// What Go's `url.QueryEscape` escapes: everything but ASCII letters, digits and `-_.~`.
const QUERY_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`, the rest `%XX`.
fn query_escape(s: &str) -> String {
    utf8_percent_encode(s, QUERY_ESCAPED)
        .map(|chunk| if chunk == "%20" { "+" } else { chunk })
        .collect()
}

/// Decodes `%XX` escapes of a URI path (a `+` stays a `+`); invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &str = "content-type;host;x-sdk-date";

    #[test]
    fn header_parsing() {
        let sig = "a".repeat(64);
        let parsed = parse_authorization(&format!(
            "SDK-HMAC-SHA256 Access=QVUJMSUMgS0VZLS0tLS0, SignedHeaders={SIGNED}, Signature={sig}"
        ))
        .unwrap();
        assert_eq!(parsed.access_key, "QVUJMSUMgS0VZLS0tLS0");
        assert_eq!(
            parsed.signed_headers,
            ["content-type", "host", "x-sdk-date"]
        );
        assert_eq!(parsed.signature, [0xaa; 32]);
        assert_eq!(
            parse_authorization(&format!(
                "SDK-HMAC-SHA256 Access=x, SignedHeaders=host, Signature={sig}"
            )),
            Err(SigningError::DateNotSigned)
        );
        for bad in [
            "Bearer x".to_owned(),
            format!("SDK-HMAC-SHA256 Access=x, SignedHeaders={SIGNED}, Signature=zz"),
            format!("SDK-HMAC-SHA256 Access=x, SignedHeaders={SIGNED}"),
            format!("SDK-HMAC-SHA256 Access=x, Access=y, SignedHeaders={SIGNED}, Signature={sig}"),
        ] {
            assert_eq!(
                parse_authorization(&bad),
                Err(SigningError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn dates_and_skew() {
        let t = parse_sdk_date("20240229T235959Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_709_251_199
        );
        assert_eq!(parse_sdk_date("19700101T000000Z").unwrap(), UNIX_EPOCH);
        for bad in [
            "20230229T000000Z",
            "20240101 000000Z",
            "2024-01-01T00:00",
            "20241301T000000Z",
            // 16 bytes whose 'T' and 'Z' sit where they should, with multi-byte characters
            // between: byte-offset slicing would panic.
            "2é40101T0é000Z",
        ] {
            assert_eq!(parse_sdk_date(bad), Err(SigningError::BadDate), "{bad}");
        }
        let five = Duration::from_secs(300);
        assert!(check_skew(t, t + five, five).is_ok());
        assert!(check_skew(t + five, t, five).is_ok());
        assert_eq!(
            check_skew(t, t + five + Duration::from_secs(1), five),
            Err(SigningError::Skew)
        );
        assert_eq!(
            check_skew(t + Duration::from_secs(301), t, five),
            Err(SigningError::Skew)
        );
    }

    #[test]
    fn canonical_parts_follow_mepauth() {
        assert_eq!(canonical_uri("/mep/token"), "/mep/token/");
        assert_eq!(canonical_uri("//mep/./../token/"), "/mep/token/");
        assert_eq!(canonical_uri("/a%20b/c+d"), "/a+b/c%2Bd/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a~b*c/%zz%4"), "/a~b%2Ac/%25zz%254/");
        assert_eq!(canonical_uri("/caf%C3%A9"), "/caf%C3%A9/");
        assert_eq!(decode_hex32(&"aB".repeat(32)), Some([0xab; 32]));
        assert_eq!(decode_hex32(&"ab".repeat(31)), None);
        assert_eq!(decode_hex32(&"zz".repeat(32)), None);
        assert_eq!(canonical_query(Some("b=2&a=x y&a=1")), "a=1&a=x+y&b=2");
        assert_eq!(canonical_query(None), "");
    }

    #[test]
    fn signature_round_trip() {
        let header = |name: &str| match name {
            "content-type" => Some("application/json".to_owned()),
            "x-sdk-date" => Some("20240101T000000Z".to_owned()),
            _ => None,
        };
        let parts = RequestParts {
            method: "POST",
            path: "/mep/token",
            query: None,
            host: "mep.example:8443",
            header: &header,
        };
        let signed: Vec<String> = SIGNED.split(';').map(str::to_owned).collect();
        let sts = string_to_sign(&parts, &signed);
        assert!(sts.starts_with("SDK-HMAC-SHA256\n20240101T000000Z\n"));
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let tag: [u8; 32] = hmac::sign(&key, sts.as_bytes())
            .as_ref()
            .try_into()
            .unwrap();
        assert!(verify(b"secret", &sts, &tag));
        assert!(!verify(b"Secret", &sts, &tag));
    }
}
