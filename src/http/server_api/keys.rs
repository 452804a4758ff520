//! The server API's keys (`--api-key`): who may act on sessions from the application's backend.
//!
//! Several keys may be configured at once, so that a new key can be rolled out before the old one
//! is removed. A presented key is compared with every configured key, each comparison in constant
//! time over the keys' SHA-256 digests (so neither the content nor the length of a key leaks
//! through timing), and all of them are made whatever the outcome.

use actix_web::HttpRequest;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::error::HttpError;

/// The header that carries the key.
pub const HEADER: &str = "X-Api-Key";

/// The configured keys; none means the server API is off.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} configured)", self.digests.len())
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl ApiKeys {
    /// The non-empty keys of `keys` (surrounding spaces ignored).
    pub fn new<S: AsRef<str>>(keys: &[S]) -> ApiKeys {
        ApiKeys {
            digests: keys
                .iter()
                .map(|k| k.as_ref().trim())
                .filter(|k| !k.is_empty())
                .map(|k| digest(k.as_bytes()))
                .collect(),
        }
    }

    /// Whether the server API is on.
    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Whether `presented` is one of the keys.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&presented)
            })
            .into()
    }

    /// Lets `req` through, or says why not: 404 `not_found` while the API is off (as if the
    /// route did not exist), 401 without the right key. A bearer token is never looked at.
    pub fn check(&self, req: &HttpRequest) -> Result<(), HttpError> {
        if !self.enabled() {
            return Err(HttpError::NotFound("no such route".into()));
        }
        match req.headers().get(HEADER) {
            None => Err(HttpError::ApiKey(format!(
                "the server API needs an API key in the {HEADER} header"
            ))),
            Some(key) if self.accepts(key.as_bytes()) => Ok(()),
            Some(_) => Err(HttpError::ApiKey("this API key is not valid".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_key_is_accepted_and_nothing_else() {
        let keys = ApiKeys::new(&["old-key", " new-key ", ""]);
        assert!(keys.enabled());
        assert!(keys.accepts(b"old-key"));
        assert!(keys.accepts(b"new-key"), "trimmed");
        assert!(!keys.accepts(b""), "an empty entry is no key");
        assert!(!keys.accepts(b"old-ke"));
        assert!(!keys.accepts(b"old-key "));
        assert!(!ApiKeys::new::<&str>(&[]).enabled());
        assert!(!ApiKeys::new(&[" "]).enabled());
    }
}
