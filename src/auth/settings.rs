//! What sign-in is configured with (`--jwt-*`), read and checked at start-up: an unreadable key
//! file, a JWKS URL that is not HTTP(S) or an issuer with nothing to verify with stops the server
//! with an error naming the setting.

use std::sync::Arc;

use super::jwks::{HttpSource, Jwks};
use super::keys::VerifyingKey;
use crate::config::ServeArgs;

/// Largest leeway on `exp` and `nbf`, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 60;
/// Default leeway on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// A sign-in setting that must not run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--jwt-public-key-file (ROLLCALL_JWT_PUBLIC_KEY_FILE) {path}: {reason}")]
    PublicKeyFile { path: String, reason: String },
    #[error("--jwt-jwks-url (ROLLCALL_JWT_JWKS_URL) {url:?}: {reason}")]
    JwksUrl { url: String, reason: String },
    #[error(
        "{flag} needs a key to verify tokens with: --jwt-secret, --jwt-public-key-file or \
         --jwt-jwks-url"
    )]
    NothingToVerifyWith { flag: &'static str },
}

/// The sign-in configuration of an [`super::Authenticator`].
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// HS256 secret.
    pub secret: Option<String>,
    /// A provider's public key (PEM).
    pub public_key: Option<VerifyingKey>,
    /// A provider's JWKS.
    pub jwks: Option<Arc<Jwks>>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's).
    pub audience: Option<String>,
    /// Leeway on `exp` and `nbf`, at most [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
    pub allow_anonymous: bool,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings {
            secret: None,
            public_key: None,
            jwks: None,
            issuer: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            allow_anonymous: true,
        }
    }
}

impl AuthSettings {
    /// The settings of `args`, with the key file read and the JWKS URL checked (not fetched).
    pub fn from_args(args: &ServeArgs) -> Result<AuthSettings, ConfigError> {
        let public_key = match &args.jwt_public_key_file {
            None => None,
            Some(path) => {
                let failed = |reason: String| ConfigError::PublicKeyFile {
                    path: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
                Some(VerifyingKey::from_pem(&pem).map_err(|e| failed(e.to_string()))?)
            }
        };
        let jwks = match &args.jwt_jwks_url {
            None => None,
            Some(url) => {
                let failed = |reason: &str| ConfigError::JwksUrl {
                    url: url.clone(),
                    reason: reason.to_owned(),
                };
                let parsed = reqwest::Url::parse(url).map_err(|e| failed(&e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(failed("must be an http:// or https:// URL"));
                }
                let source = HttpSource::new(url).map_err(|e| failed(&e.to_string()))?;
                Some(Jwks::new(source))
            }
        };
        let settings = AuthSettings {
            secret: args.jwt_secret.clone(),
            public_key,
            jwks,
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            leeway_secs: args.jwt_leeway_secs,
            allow_anonymous: args.allow_anonymous,
        };
        let verifies =
            settings.secret.is_some() || settings.public_key.is_some() || settings.jwks.is_some();
        if !verifies {
            if settings.issuer.is_some() {
                return Err(ConfigError::NothingToVerifyWith {
                    flag: "--jwt-issuer (ROLLCALL_JWT_ISSUER)",
                });
            }
            if settings.audience.is_some() {
                return Err(ConfigError::NothingToVerifyWith {
                    flag: "--jwt-audience (ROLLCALL_JWT_AUDIENCE)",
                });
            }
        }
        Ok(settings)
    }
}
