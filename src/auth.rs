//! Sign-in tokens (docs/protocol.md §1.2): HS256 JWTs that turn an HTTP request into an [`Identity`].
//!
//! The identity of a WebSocket connection is settled before the upgrade, so a bad token is an HTTP
//! 401 and never a silently anonymous connection. The same check guards `/api/*` when a secret is
//! configured. This module also mints tokens, for `rollcall token` and for tests, so that issuing
//! and verifying agree on one set of claims.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::actors::connection::Identity;

/// Longest accepted user id (`sub`), in characters.
pub const MAX_SUBJECT_CHARS: usize = 128;

/// The claims rollcall reads and writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Default display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sessions this token may join; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<String>>,
}

/// Why a request was refused (HTTP 401), or a token could not be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("could not sign the token: {0}")]
    Signing(String),
}

impl AuthError {
    /// The `code` of the HTTP error body.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "unauthorized",
            AuthError::Expired => "token_expired",
            AuthError::BadSignature | AuthError::Invalid(_) => "invalid_token",
            AuthError::Signing(_) => "internal",
        }
    }
}

/// Verifies tokens with the configured secret. Without a secret every connection is anonymous
/// (tokens are ignored) and `/api/*` is open, as docs/protocol.md §1.2 says.
#[derive(Clone)]
pub struct Authenticator {
    keys: Option<(DecodingKey, EncodingKey)>,
    validation: Validation,
    allow_anonymous: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("secret", &self.keys.as_ref().map(|_| "<set>"))
            .field("allow_anonymous", &self.allow_anonymous)
            .finish()
    }
}

impl Authenticator {
    pub fn new(secret: Option<&str>, allow_anonymous: bool) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        Authenticator {
            keys: secret.map(|s| {
                (
                    DecodingKey::from_secret(s.as_bytes()),
                    EncodingKey::from_secret(s.as_bytes()),
                )
            }),
            validation,
            allow_anonymous,
        }
    }

    /// True when a secret is configured: tokens are checked and `/api/*` needs one.
    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// Checks a token's signature, expiry and claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let Some((decoding, _)) = &self.keys else {
            return Err(AuthError::Invalid("no secret is configured".into()));
        };
        let data = jsonwebtoken::decode::<Claims>(token, decoding, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Invalid(e.to_string()),
            },
        )?;
        let claims = data.claims;
        let chars = claims.sub.chars().count();
        if chars == 0 || chars > MAX_SUBJECT_CHARS {
            return Err(AuthError::Invalid(format!(
                "`sub` must be 1 to {MAX_SUBJECT_CHARS} characters"
            )));
        }
        Ok(claims)
    }

    /// The identity of a WebSocket upgrade request: from its token if it has one, else anonymous
    /// (when allowed). A present token that does not verify is an error, never anonymous.
    pub fn identify(&self, req: &HttpRequest) -> Result<Identity, AuthError> {
        if !self.enabled() {
            return if self.allow_anonymous {
                Ok(Identity::default())
            } else {
                Err(AuthError::Missing)
            };
        }
        match token_of(req)? {
            Some(token) => self.verify(&token).map(identity_of),
            None if self.allow_anonymous => Ok(Identity::default()),
            None => Err(AuthError::Missing),
        }
    }

    /// The claims of an `/api/*` request. `Ok(None)` when no secret is configured (the API is
    /// open); a configured secret makes a valid token mandatory.
    pub fn api_claims(&self, req: &HttpRequest) -> Result<Option<Claims>, AuthError> {
        if !self.enabled() {
            return Ok(None);
        }
        match token_of(req)? {
            Some(token) => self.verify(&token).map(Some),
            None => Err(AuthError::Missing),
        }
    }

    /// Signs a token for `user`, valid for `ttl`.
    pub fn issue(
        &self,
        user: &str,
        name: Option<&str>,
        sessions: Option<Vec<String>>,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let Some((_, encoding)) = &self.keys else {
            return Err(AuthError::Signing(
                "no secret is configured (--jwt-secret / ROLLCALL_JWT_SECRET)".into(),
            ));
        };
        let chars = user.chars().count();
        if chars == 0 || chars > MAX_SUBJECT_CHARS {
            return Err(AuthError::Signing(format!(
                "the user id must be 1 to {MAX_SUBJECT_CHARS} characters"
            )));
        }
        let claims = Claims {
            sub: user.to_owned(),
            exp: jsonwebtoken::get_current_timestamp().saturating_add(ttl.as_secs()),
            name: name.map(str::to_owned),
            sessions,
        };
        sign(encoding, &claims)
    }
}

/// Signs arbitrary claims with `secret` (HS256). For tests and tools that need unusual tokens
/// (expired, foreign secret).
pub fn sign_claims(secret: &str, claims: &Claims) -> Result<String, AuthError> {
    sign(&EncodingKey::from_secret(secret.as_bytes()), claims)
}

fn sign(key: &EncodingKey, claims: &Claims) -> Result<String, AuthError> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key)
        .map_err(|e| AuthError::Signing(e.to_string()))
}

fn identity_of(claims: Claims) -> Identity {
    Identity {
        user: Some(claims.sub),
        name: claims.name,
        sessions: claims.sessions,
    }
}

/// The token of a request: the `Authorization: Bearer` header first, else the `token` query
/// parameter (browsers cannot set headers on WebSockets).
pub fn token_of(req: &HttpRequest) -> Result<Option<String>, AuthError> {
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Invalid("the Authorization header is not ASCII".into()))?;
        let (scheme, token) = value.trim().split_once(' ').ok_or_else(|| {
            AuthError::Invalid("the Authorization header must be `Bearer <token>`".into())
        })?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Invalid(
                "the Authorization header must be `Bearer <token>`".into(),
            ));
        }
        return Ok(Some(token.trim().to_owned()));
    }
    let query = actix_web::web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| AuthError::Invalid(format!("unreadable query string: {e}")))?;
    Ok(query.get("token").cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
            name: None,
            sessions: None,
        }
    }

    #[test]
    fn issued_tokens_verify() {
        let auth = Authenticator::new(Some("s3cret"), true);
        let token = auth
            .issue(
                "alice",
                Some("Alice"),
                Some(vec!["a".into()]),
                Duration::from_secs(60),
            )
            .expect("sign");
        let claims = auth.verify(&token).expect("verify");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.name.as_deref(), Some("Alice"));
        assert_eq!(claims.sessions, Some(vec!["a".to_owned()]));
    }

    #[test]
    fn expired_wrong_secret_and_bad_subject_are_refused() {
        let auth = Authenticator::new(Some("s3cret"), true);
        let now = jsonwebtoken::get_current_timestamp();
        let expired = sign_claims("s3cret", &claims("bob", now - 3600)).expect("sign");
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
        let foreign = sign_claims("other", &claims("bob", now + 3600)).expect("sign");
        assert_eq!(auth.verify(&foreign), Err(AuthError::BadSignature));
        let empty = sign_claims("s3cret", &claims("", now + 3600)).expect("sign");
        assert!(matches!(auth.verify(&empty), Err(AuthError::Invalid(_))));
        let long = sign_claims("s3cret", &claims(&"x".repeat(129), now + 3600)).expect("sign");
        assert!(matches!(auth.verify(&long), Err(AuthError::Invalid(_))));
        assert!(matches!(
            auth.verify("not.a.token"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn missing_exp_is_refused() {
        let auth = Authenticator::new(Some("s3cret"), true);
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "carol"}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .expect("sign");
        assert!(matches!(auth.verify(&token), Err(AuthError::Invalid(_))));
    }
}
