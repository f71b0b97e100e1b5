//! Access tokens: ES256 JWTs with `iss`, `sub` (the application instance), `iat`, `exp` and `gen`
//! (the credential generation they were issued under), and a `kid` header naming the signing key.
//!
//! Verification pins the algorithm to ES256 (so `alg: none` and HS256 signed with the public key
//! are refused before any signature check), requires a known `kid`, checks the signature, the
//! issuer, and expiry against the platform clock rather than the host clock.

use std::collections::HashSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use super::keys::KeySet;

/// Tokens issued at most this far in the future are tolerated (clock steps between nodes).
const IAT_LEEWAY_SECS: u64 = 60;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub gen: u64,
}

/// Why a bearer token was refused. The messages go into `WWW-Authenticate`, so they use no quotes
/// or backslashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token was not signed with ES256")]
    Algorithm,
    #[error("the token names an unknown signing key")]
    UnknownKey,
    #[error("the token signature is invalid")]
    Signature,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has been revoked")]
    Revoked,
}

/// Validation settings, built once.
pub struct Verifier {
    validation: Validation,
}

impl Verifier {
    pub fn new(issuer: &str) -> Self {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.algorithms = vec![Algorithm::ES256];
        validation.set_issuer(&[issuer]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.required_spec_claims = HashSet::from(["exp", "iss", "sub"].map(str::to_owned));
        Self { validation }
    }

    /// Checks `token` against `keys` at unix time `now`.
    pub fn verify(&self, keys: &KeySet, token: &str, now: u64) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| map_error(e.kind()))?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Algorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.verifying.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| map_error(e.kind()))?
            .claims;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat > now + IAT_LEEWAY_SECS {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// Signs `claims` with the current key.
pub fn issue(keys: &KeySet, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&keys.current.header, claims, &keys.current.encoding)
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::InvalidKeyFormat => TokenError::Algorithm,
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey => TokenError::Signature,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;
    use crate::auth::keys::KeyRing;

    const NOW: u64 = 1_700_000_000;

    fn claims() -> Claims {
        Claims {
            iss: "mep".into(),
            sub: "app-1".into(),
            iat: NOW,
            exp: NOW + 3600,
            gen: 7,
        }
    }

    #[test]
    fn issued_tokens_verify_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let ring =
            KeyRing::load_or_create(dir.path(), UNIX_EPOCH + Duration::from_secs(NOW)).unwrap();
        let keys = ring.current();
        let verifier = Verifier::new("mep");
        let token = issue(&keys, &claims()).unwrap();
        assert_eq!(verifier.verify(&keys, &token, NOW + 10).unwrap(), claims());
        assert_eq!(
            verifier.verify(&keys, &token, NOW + 3600),
            Err(TokenError::Expired)
        );
        assert_eq!(
            Verifier::new("other").verify(&keys, &token, NOW),
            Err(TokenError::Issuer)
        );

        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged_claims = B64URL
            .encode(br#"{"iss":"mep","sub":"app-2","iat":1700000000,"exp":1800000000,"gen":7}"#);
        assert_eq!(
            verifier.verify(&keys, &format!("{head}.{forged_claims}.{sig}"), NOW),
            Err(TokenError::Signature)
        );

        let none_header = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = B64URL.encode(serde_json::to_vec(&claims()).unwrap());
        assert!(verifier
            .verify(&keys, &format!("{none_header}.{body}."), NOW)
            .is_err());

        // HS256 keyed with the public key (the classic RS/HS confusion) is refused by algorithm.
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(keys.current.kid.clone());
        let confused =
            jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(&keys.jwks)).unwrap();
        assert_eq!(
            verifier.verify(&keys, &confused, NOW),
            Err(TokenError::Algorithm)
        );
        assert_eq!(
            verifier.verify(&keys, "not-a-jwt", NOW),
            Err(TokenError::Malformed)
        );
    }
}
