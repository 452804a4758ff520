//! Tokens of an outside identity provider (docs/protocol.md, "Identity"), made with libraries
//! independent of the server's: RS256, ES256 and EdDSA keys from a JWKS endpoint (rotated, then
//! stopped) and from PEM files; the time, `crit`, `iss` and `aud` checks; algorithm confusion; a
//! scoped token's `/api/me/sessions`. The token's term on a live connection is in
//! `token_refresh.rs`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::db::{now_secs, ws_handshake_status};
use crate::support::eventually;
use crate::support::idp::{JwksServer, ProviderKey, hs256_token, unsigned_token};
use crate::support::server::{TestServer, WAIT, http_get_as, test_args};
use crate::support::ws::WsClient;
use rollcall::config::ServeArgs;

pub const ISSUER: &str = "https://idp.test/realms/rollcall";
pub const AUDIENCE: &str = "rollcall-test";

/// Claims the test server accepts, for `user`, valid from a minute ago for an hour.
pub fn claims(user: &str) -> Value {
    let now = now_secs();
    json!({"sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 60, "exp": now + 3600})
}

/// A server taking the provider's tokens from `jwks`, or from the PEM file `pem`, with `leeway`.
pub async fn start(
    jwks: Option<&JwksServer>,
    pem: Option<&ProviderKey>,
    leeway: u64,
) -> (TestServer, tempfile::TempDir) {
    let (args, dir) = args(jwks, pem, leeway);
    (TestServer::start(args).await, dir)
}

/// The arguments of [`start`], for a test to change further; the folder holds the database and
/// the PEM file.
pub fn args(
    jwks: Option<&JwksServer>,
    pem: Option<&ProviderKey>,
    leeway: u64,
) -> (ServeArgs, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut args = test_args();
    args.database_url = format!("sqlite://{}", dir.path().join("idp.db").display());
    args.jwt_jwks_url = jwks.map(JwksServer::url);
    if let Some(key) = pem {
        let path = dir.path().join("provider.pem");
        std::fs::write(&path, key.public_pem()).expect("write the PEM file");
        args.jwt_public_key_file = Some(path);
    }
    args.jwt_issuer = Some(ISSUER.into());
    args.jwt_audience = Some(AUDIENCE.into());
    args.jwt_leeway_secs = leeway;
    (args, dir)
}

async fn status(server: &TestServer, token: &str) -> u16 {
    ws_handshake_status(&server.ws_url(), Some(token)).await
}

#[actix_rt::test]
async fn rs256_es256_and_eddsa_tokens_sign_in_through_the_jwks() {
    let keys = [
        ProviderKey::rsa("rsa-1", 0),
        ProviderKey::es256("ec-1"),
        ProviderKey::ed25519("ed-1"),
    ];
    let jwks = JwksServer::start(&keys.iter().collect::<Vec<_>>()).await;
    let (mut server, _dir) = start(Some(&jwks), None, 30).await;
    for key in &keys {
        let token = key.token(&claims(&format!("user-{}", key.kid)));
        let client = WsClient::connect(&format!("{}?token={token}", server.ws_url())).await;
        assert_eq!(
            client.welcome["user"],
            format!("user-{}", key.kid),
            "{}",
            key.alg()
        );
        let (code, body) = http_get_as(server.addr, "/api/me/sessions", Some(&token)).await;
        assert_eq!(code, 200, "{} on /api: {body}", key.alg());
    }
    server.shutdown().await;
}

#[actix_rt::test]
async fn pem_keys_sign_in_only_with_their_own_algorithm() {
    let rsa = ProviderKey::rsa("r", 0);
    let ec = ProviderKey::es256("e");
    let ed = ProviderKey::ed25519("d");
    for key in [&rsa, &ec, &ed] {
        let (mut server, _dir) = start(None, Some(key), 30).await;
        assert_eq!(
            status(&server, &key.token(&claims("pem-user"))).await,
            101,
            "{}",
            key.alg()
        );
        for other in [&rsa, &ec, &ed]
            .into_iter()
            .filter(|o| o.alg() != key.alg())
        {
            let token = other.token(&claims("pem-user"));
            assert_eq!(
                status(&server, &token).await,
                401,
                "{} against {}",
                other.alg(),
                key.alg()
            );
        }
        // Algorithm confusion: HS256 "signed" with the public key's PEM text as the secret.
        let pem = key.public_pem();
        let confused = hs256_token(pem.as_bytes(), json!({}), &claims("pem-user"));
        assert_eq!(
            status(&server, &confused).await,
            401,
            "HS256 against {}",
            key.alg()
        );
        assert_eq!(
            status(&server, &unsigned_token(&claims("pem-user"))).await,
            401
        );
        server.shutdown().await;
    }
}

#[actix_rt::test]
async fn times_crit_issuer_and_audience_are_checked() {
    let key = ProviderKey::ed25519("ed-1");
    let jwks = JwksServer::start(&[&key]).await;
    let (mut server, _dir) = start(Some(&jwks), None, 10).await;
    let now = now_secs();
    let with = |changes: Value| {
        let mut c = claims("checked");
        for (field, value) in changes.as_object().expect("an object") {
            if value.is_null() {
                c.as_object_mut().expect("an object").remove(field);
            } else {
                c[field] = value.clone();
            }
        }
        c
    };
    assert_eq!(status(&server, &key.token(&with(json!({})))).await, 101);
    assert_eq!(
        status(&server, &key.token(&with(json!({"nbf": now + 5})))).await,
        101,
        "nbf within the 10 s leeway"
    );
    for (what, token) in [
        (
            "nbf in an hour",
            key.token(&with(json!({"nbf": now + 3600}))),
        ),
        (
            "nbf beyond the leeway",
            key.token(&with(json!({"nbf": now + 40}))),
        ),
        ("exp past", key.token(&with(json!({"exp": now - 40})))),
        ("no exp", key.token(&with(json!({"exp": null})))),
        (
            "foreign aud",
            key.token(&with(json!({"aud": "another-app"}))),
        ),
        ("no aud", key.token(&with(json!({"aud": null})))),
        (
            "foreign iss",
            key.token(&with(json!({"iss": "https://evil.test/"}))),
        ),
        ("no iss", key.token(&with(json!({"iss": null})))),
        (
            "sessions not a list",
            key.token(&with(json!({"sessions": "x"}))),
        ),
        (
            "crit",
            key.token_with_header(
                json!({"kid": "ed-1", "crit": ["b64"], "b64": false}),
                &with(json!({})),
            ),
        ),
        (
            "unknown kid",
            ProviderKey::ed25519("ed-2").token(&with(json!({}))),
        ),
    ] {
        assert_eq!(status(&server, &token).await, 401, "{what}");
        let (code, body) = http_get_as(server.addr, "/api/me/sessions", Some(&token)).await;
        assert_eq!(code, 401, "{what} on /api: {body}");
    }
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_rotated_key_is_fetched_and_a_stopped_endpoint_is_served_stale() {
    let old = ProviderKey::rsa("2024", 0);
    let new = ProviderKey::rsa("2025", 1);
    let third = ProviderKey::es256("2026");
    let jwks = JwksServer::start(&[&old]).await;
    let (mut server, _dir) = start(Some(&jwks), None, 30).await;
    assert_eq!(status(&server, &old.token(&claims("rot"))).await, 101);
    // The provider rotates: the first token with the new kid makes the server fetch again.
    jwks.rotate(&[&old, &new]);
    assert_eq!(status(&server, &new.token(&claims("rot"))).await, 101);
    // Another rotation within 10 s: that refetch is rate limited, so the kid is still unknown.
    jwks.rotate(&[&old, &new, &third]);
    assert_eq!(status(&server, &third.token(&claims("rot"))).await, 401);
    // The endpoint goes down: the keys fetched before keep working.
    jwks.stop().await;
    for key in [&old, &new] {
        assert_eq!(
            status(&server, &key.token(&claims("rot"))).await,
            101,
            "{}",
            key.kid
        );
    }
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_scoped_token_lists_only_its_sessions() {
    let key = ProviderKey::es256("ec");
    let (mut server, _dir) = start(None, Some(&key), 30).await;
    let any = key.token(&claims("scoped"));
    let mut client = WsClient::connect(&format!("{}?token={any}", server.ws_url())).await;
    for session in ["s1", "s2", "s3"] {
        client.join(session).await;
    }
    let listed = |body: &Value| -> Vec<String> {
        let mut ids: Vec<String> = body["sessions"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["session"].as_str())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let addr = server.addr;
    let recorded = eventually(WAIT, async || {
        let (_, body) = http_get_as(addr, "/api/me/sessions", Some(&any)).await;
        listed(&body).len() == 3
    })
    .await;
    assert!(recorded, "the three participations should be recorded");
    let mut scoped = claims("scoped");
    scoped["sessions"] = json!(["s1", "s3", "never-joined"]);
    let (code, body) = http_get_as(addr, "/api/me/sessions", Some(&key.token(&scoped))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(listed(&body), ["s1", "s3"]);
    scoped["sessions"] = json!([]);
    let (_, body) = http_get_as(addr, "/api/me/sessions", Some(&key.token(&scoped))).await;
    assert_eq!(
        listed(&body),
        Vec::<String>::new(),
        "an empty scope lists nothing"
    );
    drop(client);
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown");
}
