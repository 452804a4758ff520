//! Sign-in tokens (docs/protocol.md, "Identity"): JWTs that turn an HTTP request into an
//! [`Identity`].
//!
//! A token is signed with HS256 under the configured secret, or by an identity provider whose public
//! keys come from a JWKS endpoint ([`jwks`]) or a PEM file ([`keys`]). Each key is pinned to its
//! algorithms, `none` never verifies, a `crit` header is refused (rollcall understands no
//! extension), `exp` and `nbf` are enforced with a bounded leeway, and `iss` and `aud` must match
//! when configured.
//!
//! The identity of a WebSocket connection is settled before the upgrade, so a bad token is an HTTP
//! 401 and never a silently anonymous connection. The same check guards `/api/*` when sign-in is
//! configured. This module also mints HS256 tokens, for `rollcall token` and for tests, so that
//! issuing and verifying agree on one set of claims.

pub mod jwks;
pub mod keys;
mod settings;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use jwks::Jwks;
use keys::VerifyingKey;
pub use settings::{AuthSettings, ConfigError, MAX_LEEWAY_SECS};

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
    /// Sessions this token may join; absent means any. Present, it must be a list: `null` is
    /// refused rather than read as "any".
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "sessions_list"
    )]
    pub sessions: Option<Vec<String>>,
}

/// Called only when the claim is present: a list, never `null`.
fn sessions_list<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Vec<String>>, D::Error> {
    Vec::<String>::deserialize(de).map(Some)
}

/// Why a request was refused (HTTP 401), or a token could not be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("no configured key may verify this token: {0}")]
    NoKey(String),
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
            AuthError::NotYetValid
            | AuthError::BadSignature
            | AuthError::NoKey(_)
            | AuthError::Invalid(_) => "invalid_token",
            AuthError::Signing(_) => "internal",
        }
    }
}

/// Who is on the other end of a connection, as established before the upgrade.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub user: Option<String>,
    /// Default display name (the token's `name` claim).
    pub name: Option<String>,
    /// Sessions this connection may join; `None` means any.
    pub sessions: Option<Vec<String>>,
    /// The term of the token that signed the connection in (`None`: anonymous).
    pub token: Option<TokenTerm>,
}

/// A signed-in connection's token: when it expires, and what verifies its successor.
#[derive(Clone, Debug)]
pub struct TokenTerm {
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    pub auth: Arc<Authenticator>,
}

/// Verifies tokens with the configured keys. Without any (no secret, no public key, no JWKS) every
/// connection is anonymous (tokens are ignored) and `/api/*` is open, as docs/protocol.md says.
#[derive(Clone)]
pub struct Authenticator {
    secret: Option<(DecodingKey, EncodingKey)>,
    public_key: Option<VerifyingKey>,
    jwks: Option<Arc<Jwks>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    allow_anonymous: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field(
                "public_key",
                &self.public_key.as_ref().map(|k| k.algorithms()),
            )
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish()
    }
}

impl Authenticator {
    /// HS256 with `secret` only, the default leeway, no issuer or audience.
    pub fn new(secret: Option<&str>, allow_anonymous: bool) -> Authenticator {
        Authenticator::from_settings(AuthSettings {
            secret: secret.map(str::to_owned),
            allow_anonymous,
            ..AuthSettings::default()
        })
    }

    pub fn from_settings(settings: AuthSettings) -> Authenticator {
        Authenticator {
            secret: settings.secret.map(|s| {
                (
                    DecodingKey::from_secret(s.as_bytes()),
                    EncodingKey::from_secret(s.as_bytes()),
                )
            }),
            public_key: settings.public_key,
            jwks: settings.jwks,
            issuer: settings.issuer,
            audience: settings.audience,
            leeway: settings.leeway_secs.min(MAX_LEEWAY_SECS),
            allow_anonymous: settings.allow_anonymous,
        }
    }

    /// True when sign-in is configured: tokens are checked and `/api/*` needs one.
    pub fn enabled(&self) -> bool {
        self.secret.is_some() || self.public_key.is_some() || self.jwks.is_some()
    }

    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// Seconds a token's `exp` and `nbf` may be off by.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// The JWKS, when one is configured (to fetch it at start-up).
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// What a token's claims must satisfy, for a token signed with `alg`.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        // Without `--jwt-audience`, a token meant for some audience is not meant for rollcall.
        validation.validate_aud = true;
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        validation
    }

    /// The keys that may verify a token whose header names `alg` and `kid`: the secret for HS256
    /// only, the public key and the JWKS keys for the algorithms they are pinned to.
    async fn candidates(&self, alg: Algorithm, kid: Option<&str>) -> Vec<DecodingKey> {
        if alg == Algorithm::HS256 {
            return self.secret.iter().map(|(key, _)| key.clone()).collect();
        }
        let mut found: Vec<DecodingKey> = self
            .public_key
            .iter()
            .filter(|key| key.allows(alg))
            .map(|key| key.decoding_key().clone())
            .collect();
        if let Some(jwks) = &self.jwks {
            let keys = jwks.candidates(kid, alg).await;
            found.extend(keys.iter().map(|key| key.decoding_key().clone()));
        }
        found
    }

    /// Checks a token's header, signature, times and claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if !self.enabled() {
            return Err(AuthError::Invalid("sign-in is not configured".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            AuthError::Invalid(format!("unreadable header (or an unsupported `alg`): {e}"))
        })?;
        if let Some(crit) = &header.crit {
            return Err(AuthError::Invalid(format!(
                "critical header parameters {crit:?} are not understood"
            )));
        }
        let keys = self.candidates(header.alg, header.kid.as_deref()).await;
        if keys.is_empty() {
            return Err(AuthError::NoKey(format!(
                "`alg` {:?}, `kid` {:?}",
                header.alg, header.kid
            )));
        }
        let validation = self.validation(header.alg);
        let mut outcome = Err(AuthError::BadSignature);
        for key in &keys {
            outcome = jsonwebtoken::decode::<Claims>(token, key, &validation)
                .map(|data| data.claims)
                .map_err(refusal);
            // Any answer but a signature mismatch comes from a key that fits: it is final.
            if outcome != Err(AuthError::BadSignature) {
                break;
            }
        }
        let claims = outcome?;
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
    pub async fn identify(self: &Arc<Self>, req: &HttpRequest) -> Result<Identity, AuthError> {
        if !self.enabled() {
            return if self.allow_anonymous {
                Ok(Identity::default())
            } else {
                Err(AuthError::Missing)
            };
        }
        match token_of(req)? {
            Some(token) => {
                let claims = self.verify(&token).await?;
                Ok(self.identity_of(claims))
            }
            None if self.allow_anonymous => Ok(Identity::default()),
            None => Err(AuthError::Missing),
        }
    }

    /// The identity verified `claims` give a connection, with the term of its token.
    pub fn identity_of(self: &Arc<Self>, claims: Claims) -> Identity {
        Identity {
            user: Some(claims.sub),
            name: claims.name,
            sessions: claims.sessions,
            token: Some(TokenTerm {
                expires_at: claims.exp,
                auth: self.clone(),
            }),
        }
    }

    /// The claims of an `/api/*` request. `Ok(None)` when sign-in is not configured (the API is
    /// open); otherwise a valid token is mandatory.
    pub async fn api_claims(&self, req: &HttpRequest) -> Result<Option<Claims>, AuthError> {
        if !self.enabled() {
            return Ok(None);
        }
        match token_of(req)? {
            Some(token) => self.verify(&token).await.map(Some),
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
        let Some((_, encoding)) = &self.secret else {
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

/// The refusal a failed decode stands for.
fn refusal(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAudience => AuthError::Invalid("`aud` is not this server's".into()),
        ErrorKind::InvalidIssuer => AuthError::Invalid("`iss` is not the configured issuer".into()),
        ErrorKind::InvalidAlgorithm => AuthError::Invalid("`alg` does not fit the key".into()),
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Invalid(format!("the `{claim}` claim is required"))
        }
        _ => AuthError::Invalid(e.to_string()),
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
mod tests;
