//! Resume tokens: what lets a new socket prove that it carries on a connection (docs/protocol.md,
//! continuity).
//!
//! A token is `<connection id>.<tag>`, where the tag is the first 128 bits of an HMAC-SHA256 of the
//! connection id under a secret that every instance of a deployment shares through the store
//! ([`crate::store::Registry::resume_secret`]). So any instance can check a token without a store
//! round trip, a forged or altered token is refused before it touches shared state, and no secret
//! travels with the member records that peers and the HTTP API see. A store that lost its data
//! has a new secret, and the tokens minted before are refused (the client then joins afresh).

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::ConnectionId;

/// Bytes of the HMAC kept in a token: 128 bits, the protocol's floor for an unguessable token.
const TAG_BYTES: usize = 16;

/// Longest token the protocol allows.
pub const MAX_TOKEN_CHARS: usize = 256;

/// Mints and checks the resume tokens of one deployment; cheap to clone, and updated in place when
/// the store's secret changes.
#[derive(Clone)]
pub struct ResumeTokens {
    secret: Arc<RwLock<Vec<u8>>>,
}

/// Tokens under a secret of this process alone, until the engine takes the store's.
impl Default for ResumeTokens {
    fn default() -> ResumeTokens {
        ResumeTokens::new(fresh_secret())
    }
}

/// Never shows the secret.
impl std::fmt::Debug for ResumeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeTokens(..)")
    }
}

impl ResumeTokens {
    /// Tokens under `secret` (the store's shared secret).
    pub fn new(secret: Vec<u8>) -> ResumeTokens {
        ResumeTokens {
            secret: Arc::new(RwLock::new(secret)),
        }
    }

    /// Takes the store's secret, which changes when the store lost its data.
    pub fn set_secret(&self, secret: Vec<u8>) {
        *self
            .secret
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = secret;
    }

    /// The token of `connection`.
    pub fn mint(&self, connection: &ConnectionId) -> String {
        let tag = self.tag(connection.as_str());
        format!("{connection}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The connection a token carries on, if the token is one of ours.
    pub fn verify(&self, token: &str) -> Option<ConnectionId> {
        if token.len() > MAX_TOKEN_CHARS {
            return None;
        }
        let (connection, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if connection.is_empty() || tag.len() != TAG_BYTES {
            return None;
        }
        let mut mac = self.mac();
        mac.update(connection.as_bytes());
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&tag).ok()?;
        Some(ConnectionId::new(connection))
    }

    fn tag(&self, connection: &str) -> [u8; TAG_BYTES] {
        let mut mac = self.mac();
        mac.update(connection.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    fn mac(&self) -> Hmac<Sha256> {
        let secret = self
            .secret
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(&secret).unwrap_or_else(|_| unreachable!())
    }
}

/// A fresh random secret of 256 bits, for a store that has none yet.
pub fn fresh_secret() -> Vec<u8> {
    rand::random::<[u8; 32]>().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ResumeTokens {
        ResumeTokens::new(b"a shared secret of some length!!".to_vec())
    }

    #[test]
    fn a_minted_token_names_its_connection() {
        let t = tokens();
        let id = ConnectionId::new("6f1c1b0e-6d7a-4f39-9a43-0c5f4c1d2e3f");
        let token = t.mint(&id);
        assert!(token.len() <= MAX_TOKEN_CHARS, "{token}");
        assert_eq!(t.verify(&token), Some(id));
    }

    #[test]
    fn altered_forged_and_foreign_tokens_are_refused() {
        let t = tokens();
        let token = t.mint(&ConnectionId::new("abc"));
        let (_, tag) = token.rsplit_once('.').expect("a dot");
        assert_eq!(t.verify(&format!("abd.{tag}")), None, "another connection");
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(t.verify(&flipped), None, "an altered tag");
        assert_eq!(t.verify("abc"), None, "no tag");
        assert_eq!(t.verify("abc.!!"), None, "not base64");
        assert_eq!(t.verify(&"x".repeat(300)), None, "too long");
        let other = ResumeTokens::new(b"another deployment".to_vec());
        assert_eq!(other.verify(&token), None, "another secret");
        t.set_secret(b"the store was reset".to_vec());
        assert_eq!(t.verify(&token), None, "a secret that changed");
    }
}
