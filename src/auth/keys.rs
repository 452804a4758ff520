//! Public keys that verify an identity provider's tokens, each pinned to the algorithms it may
//! verify: the key decides, never the token's `alg` alone (docs/protocol.md, "Identity").
//!
//! An RSA key verifies RS256, RS384 and RS512; a P-256 key ES256 and a P-384 key ES384 only; an
//! Ed25519 key EdDSA only. A JWK that names its `alg` verifies that one algorithm. Symmetric
//! keys (`oct`), encryption keys (`use: enc`), PS*, P-521 and private keys are refused.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Why a key could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "a public key is expected, and this is a private key: give the server only the public key"
    )]
    PrivateKey,
    #[error("not a PEM public key of RSA, P-256, P-384 or Ed25519")]
    UnsupportedPem,
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("unreadable key: {0}")]
    Invalid(String),
}

/// A verifying key and the algorithms it is pinned to.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    /// The JWK's `kid`; `None` for a key from a PEM file.
    pub kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

const RSA: [Algorithm; 3] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

impl VerifyingKey {
    /// A key from a PEM public key (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<VerifyingKey, KeyError> {
        if String::from_utf8_lossy(pem).contains("PRIVATE KEY") {
            return Err(KeyError::PrivateKey);
        }
        let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, RSA.to_vec())
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            // The key is the uncompressed point (0x04, x, y): its length names the curve.
            let len = key.try_get_as_bytes().map_or(0, <[u8]>::len);
            let alg = match len {
                65 => Algorithm::ES256,
                97 => Algorithm::ES384,
                _ => {
                    return Err(KeyError::Unsupported(
                        "an EC key not on P-256 or P-384".into(),
                    ));
                }
            };
            (key, vec![alg])
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (key, vec![Algorithm::EdDSA])
        } else {
            return Err(KeyError::UnsupportedPem);
        };
        Ok(VerifyingKey {
            kid: None,
            algorithms,
            key,
        })
    }

    /// A key of a JWKS.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, KeyError> {
        if let Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)) = &jwk.common.public_key_use
        {
            return Err(KeyError::Unsupported("not a signature key (`use`)".into()));
        }
        let by_type = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA.to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return Err(KeyError::Unsupported(format!("curve {:?}", ec.curve))),
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                return Err(KeyError::Unsupported(format!("curve {:?}", okp.curve)));
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err(KeyError::Unsupported("symmetric (`oct`) keys".into()));
            }
            _ => return Err(KeyError::Unsupported("key type (`kty`)".into())),
        };
        let algorithms = match jwk.common.key_algorithm {
            None => by_type,
            Some(named) => {
                let alg = algorithm_of(named)
                    .ok_or_else(|| KeyError::Unsupported(format!("`alg` {named:?}")))?;
                if !by_type.contains(&alg) {
                    return Err(KeyError::Invalid(format!(
                        "`alg` {named:?} does not fit the key type"
                    )));
                }
                vec![alg]
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(VerifyingKey {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        })
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The signature algorithms rollcall takes from a JWK's `alg`.
fn algorithm_of(named: KeyAlgorithm) -> Option<Algorithm> {
    Some(match named {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(value: serde_json::Value) -> Jwk {
        serde_json::from_value(value).expect("a JWK")
    }

    #[test]
    fn jwk_algorithms_follow_the_key_type_or_its_alg() {
        let ed = jwk(serde_json::json!({"kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "e"}));
        let key = VerifyingKey::from_jwk(&ed).expect("an Ed25519 key");
        assert_eq!(key.algorithms(), [Algorithm::EdDSA]);
        assert_eq!(key.kid.as_deref(), Some("e"));
        let oct = jwk(serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}));
        assert!(matches!(
            VerifyingKey::from_jwk(&oct),
            Err(KeyError::Unsupported(_))
        ));
        let enc = jwk(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "use": "enc",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        );
        assert!(VerifyingKey::from_jwk(&enc).is_err());
        let mismatched = jwk(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "RS256",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        );
        assert!(matches!(
            VerifyingKey::from_jwk(&mismatched),
            Err(KeyError::Invalid(_))
        ));
    }

    #[test]
    fn private_and_foreign_pem_are_refused() {
        let private =
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            VerifyingKey::from_pem(private).err(),
            Some(KeyError::PrivateKey)
        );
        assert_eq!(
            VerifyingKey::from_pem(b"not a key").err(),
            Some(KeyError::UnsupportedPem)
        );
    }
}
