//! A stand-in identity provider, independent of rollcall's own token code: keys from the `rsa`,
//! `p256` and `ed25519-dalek` crates (fixed, so no key generation slows the tests), tokens built
//! by hand (base64url of the header and the payload, then the signature), the public keys as PEM
//! and as JWK, and a JWKS endpoint served by a small actix-web server that can rotate its keys and
//! be stopped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A signing key of the provider, with its `kid`.
#[derive(Clone)]
pub struct ProviderKey {
    pub kid: String,
    signer: Signer,
}

#[derive(Clone)]
enum Signer {
    Rsa(Box<rsa::RsaPrivateKey>),
    Es256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl ProviderKey {
    /// One of two fixed 2048-bit RSA keys (`which` 0 or 1).
    pub fn rsa(kid: &str, which: usize) -> ProviderKey {
        use rsa::pkcs8::DecodePrivateKey;
        let pem = [
            include_str!("keys/rsa-a.pem"),
            include_str!("keys/rsa-b.pem"),
        ][which];
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("a PKCS#8 RSA key");
        ProviderKey {
            kid: kid.to_owned(),
            signer: Signer::Rsa(Box::new(key)),
        }
    }

    /// A P-256 key from a fixed scalar.
    pub fn es256(kid: &str) -> ProviderKey {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("a P-256 scalar");
        ProviderKey {
            kid: kid.to_owned(),
            signer: Signer::Es256(key),
        }
    }

    /// An Ed25519 key from a fixed seed.
    pub fn ed25519(kid: &str) -> ProviderKey {
        ProviderKey {
            kid: kid.to_owned(),
            signer: Signer::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])),
        }
    }

    /// The JWS algorithm of this key (RSA keys sign RS256).
    pub fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Es256(_) => "ES256",
            Signer::Ed25519(_) => "EdDSA",
        }
    }

    /// A token with `claims`, signed with this key's algorithm, `kid` in the header.
    pub fn token(&self, claims: &Value) -> String {
        self.token_with_header(json!({"kid": self.kid}), claims)
    }

    /// A token with extra header fields (`alg` and `typ` are added).
    pub fn token_with_header(&self, header: Value, claims: &Value) -> String {
        let mut header = header;
        header["alg"] = json!(self.alg());
        header["typ"] = json!("JWT");
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        format!("{signed}.{}", b64(&self.sign(signed.as_bytes())))
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.signer {
            Signer::Rsa(key) => {
                use rsa::signature::{SignatureEncoding, Signer};
                let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**key).clone());
                signer.sign(message).to_vec()
            }
            Signer::Es256(key) => {
                use p256::ecdsa::signature::Signer;
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            Signer::Ed25519(key) => {
                use ed25519_dalek::Signer;
                key.sign(message).to_bytes().to_vec()
            }
        }
    }

    /// The public key as a JWK (with `kid`, `use: sig`, no `alg`).
    pub fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa(key) => {
                use rsa::traits::PublicKeyParts;
                let public = key.to_public_key();
                json!({"kty": "RSA", "kid": self.kid, "use": "sig",
                    "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())})
            }
            Signer::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                let (x, y) = (point.x().expect("x"), point.y().expect("y"));
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                    "x": b64(x), "y": b64(y)})
            }
            Signer::Ed25519(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "use": "sig",
                    "x": b64(&key.verifying_key().to_bytes())})
            }
        }
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`, SPKI).
    pub fn public_pem(&self) -> String {
        match &self.signer {
            Signer::Rsa(key) => {
                use rsa::pkcs8::{EncodePublicKey, LineEnding};
                key.to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .expect("an RSA public key PEM")
            }
            Signer::Es256(key) => {
                use p256::pkcs8::{EncodePublicKey, LineEnding};
                key.verifying_key()
                    .to_public_key_pem(LineEnding::LF)
                    .expect("a P-256 public key PEM")
            }
            Signer::Ed25519(key) => {
                use ed25519_dalek::pkcs8::{EncodePublicKey, spki::der::pem::LineEnding};
                key.verifying_key()
                    .to_public_key_pem(LineEnding::LF)
                    .expect("an Ed25519 public key PEM")
            }
        }
    }
}

/// An HS256 token whose HMAC key is `secret`, built by hand (for algorithm confusion: the secret
/// is an RSA public key's PEM text).
pub fn hs256_token(secret: &[u8], header: Value, claims: &Value) -> String {
    use hmac::Mac;
    let mut header = header;
    header["alg"] = json!("HS256");
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("an HMAC key");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", b64(&mac.finalize().into_bytes()))
}

/// An unsigned token (`alg: none`).
pub fn unsigned_token(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// A JWKS endpoint at `http://addr/jwks` serving the keys it is given.
pub struct JwksServer {
    pub addr: SocketAddr,
    keys: Arc<Mutex<Vec<Value>>>,
    handle: actix_web::dev::ServerHandle,
}

impl JwksServer {
    /// Serves the public keys of `keys`.
    pub async fn start(keys: &[&ProviderKey]) -> JwksServer {
        let served = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()));
        let state = web::Data::new(served.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(state.clone()).route(
                "/jwks",
                web::get().to(|keys: web::Data<Arc<Mutex<Vec<Value>>>>| async move {
                    let keys = keys.lock().map(|k| k.clone()).unwrap_or_default();
                    HttpResponse::Ok().json(json!({ "keys": keys }))
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("a port for the JWKS server");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        JwksServer {
            addr,
            keys: served,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// From now on serves the public keys of `keys` (a key rotation).
    pub fn rotate(&self, keys: &[&ProviderKey]) {
        if let Ok(mut served) = self.keys.lock() {
            *served = keys.iter().map(|k| k.jwk()).collect();
        }
    }

    /// Stops the endpoint: connections to it are refused from now on.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
