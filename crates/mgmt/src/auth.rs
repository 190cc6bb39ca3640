//! Bearer authentication: the static token (MILINK_API_TOKEN) or signed, expiring tokens made by
//! `milink token create`. A signed token is a JWT (HS256) whose key lives in the instance's data directory
//! (`mgmt-token.key`, 32 random bytes, mode 0600), so only someone who can read that directory can mint one.

use crate::arm_error;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::hmac;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "mgmt-token.key";
const ISSUER: &str = "milink";
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The HMAC-SHA256 key signed tokens are made and checked with.
pub struct SigningKey(hmac::Key);

#[derive(Debug, PartialEq)]
pub enum TokenError {
    Malformed(&'static str),
    BadSignature,
    Expired(i64),
}

impl SigningKey {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE)
    }

    /// The data directory's key, created on first use. A key readable by others is refused, as ssh does.
    pub fn load_or_create(data_dir: &Path) -> io::Result<SigningKey> {
        let path = Self::path(data_dir);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(&path) {
            Ok(mut f) => {
                let mut k = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
                    .map_err(|_| io::Error::other("no system randomness"))?;
                f.write_all(&k)?;
                f.sync_all()?;
                return Ok(SigningKey(hmac::Key::new(hmac::HMAC_SHA256, &k)));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut f = std::fs::File::open(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = f.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is accessible by other users (mode {:o}): chmod 600 it",
                        path.display(),
                        mode & 0o777
                    ),
                ));
            }
        }
        let mut k = Vec::new();
        f.read_to_end(&mut k)?;
        if k.len() < 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a token key (too short)", path.display()),
            ));
        }
        Ok(SigningKey(hmac::Key::new(hmac::HMAC_SHA256, &k)))
    }

    /// A token for `subject` valid from `now` (unix seconds) for `ttl_secs`.
    pub fn create_token(&self, subject: &str, now: i64, ttl_secs: i64) -> String {
        let claims = json!({"iss": ISSUER, "sub": subject, "iat": now, "exp": now + ttl_secs});
        let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(claims.to_string()));
        let sig = hmac::sign(&self.0, signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }

    /// The claims of a token this key signed and that has not expired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Value, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not a signed token"));
        };
        let header: Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed("bad token header"))?;
        // Only HS256: never let the token choose "none" or another algorithm.
        if header["alg"] != "HS256" {
            return Err(TokenError::Malformed("unsupported token algorithm"));
        }
        let sig = B64
            .decode(s)
            .map_err(|_| TokenError::Malformed("bad token signature"))?;
        hmac::verify(&self.0, format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Value = B64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed("bad token claims"))?;
        if claims["iss"] != ISSUER {
            return Err(TokenError::Malformed("token from another issuer"));
        }
        let exp = claims["exp"]
            .as_i64()
            .ok_or(TokenError::Malformed("token without expiry"))?;
        if exp <= now {
            return Err(TokenError::Expired(exp));
        }
        Ok(claims)
    }
}

/// Who may call the API: the static token, tokens signed with the instance's key, or both.
pub struct Auth {
    static_token: Option<String>,
    key: Option<SigningKey>,
}

/// Equal without an early exit, so timing does not reveal how much of a guess was right.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(static_token: Option<String>, key: Option<SigningKey>) -> Auth {
        Auth {
            static_token: static_token.filter(|t| !t.is_empty()),
            key,
        }
    }

    /// Ok for a valid `Authorization: Bearer` header; otherwise the 401 to answer.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Response> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth.is_empty() {
            return Err(unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        }
        let token = match auth.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => {
                return Err(unauthorized(
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is not a Bearer token.",
                ))
            }
        };
        if self
            .static_token
            .as_ref()
            .is_some_and(|s| ct_eq(s.as_bytes(), token.as_bytes()))
        {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp();
        match self.key.as_ref().map(|k| k.verify(token, now)) {
            Some(Ok(_)) => Ok(()),
            Some(Err(TokenError::Expired(exp))) => {
                let at = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_default();
                Err(unauthorized(
                    "ExpiredAuthenticationToken",
                    &format!(
                        "The access token expired at '{}': create a new one with 'milink token create'.",
                        at.to_rfc3339()
                    ),
                ))
            }
            _ => Err(unauthorized(
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )),
        }
    }
}

/// 401 in ARM's envelope, with RFC 6750's challenge.
fn unauthorized(code: &str, message: &str) -> Response {
    let mut r = arm_error(StatusCode::UNAUTHORIZED, code, message, None);
    let desc = message.replace(['"', '\\'], "'");
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{desc}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert("www-authenticate", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_expire_and_resist_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let k = SigningKey::load_or_create(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(SigningKey::path(dir.path())).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        let t = k.create_token("ops", 1_000, 3_600);
        assert_eq!(k.verify(&t, 1_001).unwrap()["sub"], "ops");
        assert_eq!(k.verify(&t, 4_600), Err(TokenError::Expired(4_600)));
        // The same key loads again; another data directory's key does not accept the token.
        let again = SigningKey::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&t, 1_001).is_ok());
        let other = SigningKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(other.verify(&t, 1_001), Err(TokenError::BadSignature));
        // A longer expiry in the claims breaks the signature.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(r#"{"iss":"milink","sub":"ops","iat":1000,"exp":99999999999}"#);
        let t2 = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(k.verify(&t2, 1_001), Err(TokenError::BadSignature));
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert!(matches!(
            k.verify(&none, 1_001),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            k.verify("abc", 1_001),
            Err(TokenError::Malformed(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        SigningKey::load_or_create(dir.path()).unwrap();
        let p = SigningKey::path(dir.path());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SigningKey::load_or_create(dir.path()).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
