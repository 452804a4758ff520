//! A live connection's token term (docs/protocol.md, "Identity"): `token_expiring` before `exp`,
//! `refresh` answered with `refreshed`, a close with 4003 at `exp` without one (memberships ended
//! at once, reason `disconnected`), another user's token refused, a narrower token kicking the
//! sessions it no longer allows. Tokens come from the independent provider of `support::idp`,
//! with a leeway of 0 and lifetimes of a few seconds; every wait is bounded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::idp::{args, claims, start};
use crate::support::db::now_secs;
use crate::support::idp::ProviderKey;
use crate::support::server::{TestServer, WAIT};
use crate::support::ws::WsClient;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Claims of `user` expiring `secs` from now.
fn expiring(user: &str, secs: u64) -> Value {
    let mut c = claims(user);
    c["exp"] = json!(now_secs() + secs);
    c
}

async fn connect(server: &TestServer, token: &str) -> WsClient {
    WsClient::connect(&format!("{}?token={token}", server.ws_url())).await
}

#[actix_rt::test]
async fn token_expiring_comes_before_exp_and_a_refresh_carries_on() {
    let key = ProviderKey::ed25519("ed");
    let (mut server, _dir) = start(None, Some(&key), 0).await;
    let first = expiring("ada", 3);
    let exp_ms = first["exp"].as_u64().expect("exp") * 1000;
    let mut ada = connect(&server, &key.token(&first)).await;
    ada.join("room").await;
    // Less than 30 s left: the warning comes at once, well before exp.
    let warning = ada
        .expect("token_expiring", |f| f["type"] == "token_expiring")
        .await;
    assert!(now_ms() < exp_ms, "token_expiring must come before exp");
    assert_eq!(warning["expires_at"], exp_ms);
    let renewed = expiring("ada", 3600);
    let reply = ada
        .request_ok(
            json!({"type": "refresh", "token": key.token(&renewed)}),
            "refreshed",
        )
        .await;
    assert_eq!(
        reply["expires_at"],
        renewed["exp"].as_u64().expect("exp") * 1000
    );
    // Past the first token's exp the connection and its membership carry on.
    let past_exp = Duration::from_millis((exp_ms + 1500).saturating_sub(now_ms()));
    tokio::time::sleep(past_exp).await;
    ada.request_ok(json!({"type": "ping"}), "pong").await;
    ada.members("room").await;
    assert!(!ada.is_closed());
    server.shutdown().await;
}

#[actix_rt::test]
async fn without_a_refresh_the_socket_closes_with_4003_at_exp_and_its_memberships_end_at_once() {
    let key = ProviderKey::ed25519("ed");
    let (mut args, _dir) = args(None, Some(&key), 0);
    // A resume grace, to show that a close with 4003 does not use it.
    args.resume_grace_ms = 10_000;
    let mut server = TestServer::start(args).await;
    let token = expiring("bea", 2);
    let exp_ms = token["exp"].as_u64().expect("exp") * 1000;
    let mut bea = connect(&server, &key.token(&token)).await;
    let mut peer = connect(&server, &key.token(&claims("peer"))).await;
    bea.join("room").await;
    peer.join("room").await;
    let closed = bea.closed_with(WAIT).await;
    assert!(now_ms() >= exp_ms, "closed before exp");
    assert_eq!(closed.map(|(code, _)| code), Some(4003));
    let left = peer
        .expect("bea's member_left", |f| {
            f["type"] == "member_left" && f["connection"] == bea.connection.as_str()
        })
        .await;
    assert_eq!(left["reason"], "disconnected");
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_refresh_with_another_users_or_a_bad_token_is_refused() {
    let key = ProviderKey::rsa("rsa", 0);
    let (mut server, _dir) = start(None, Some(&key), 0).await;
    let mut cleo = connect(&server, &key.token(&claims("cleo"))).await;
    let other = key.token(&claims("mallory"));
    cleo.request_err(json!({"type": "refresh", "token": other}), "forbidden")
        .await;
    let mut stale = claims("cleo");
    stale["exp"] = json!(now_secs() - 5);
    cleo.request_err(
        json!({"type": "refresh", "token": key.token(&stale)}),
        "invalid_token",
    )
    .await;
    let foreign = ProviderKey::rsa("rsa", 1).token(&claims("cleo"));
    cleo.request_err(
        json!({"type": "refresh", "token": foreign}),
        "invalid_token",
    )
    .await;
    cleo.request_ok(json!({"type": "ping"}), "pong").await;
    // An anonymous connection has no token to refresh.
    let mut anonymous = WsClient::connect(&server.ws_url()).await;
    let token = key.token(&claims("cleo"));
    anonymous
        .request_err(json!({"type": "refresh", "token": token}), "forbidden")
        .await;
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_narrower_refresh_kicks_the_sessions_it_no_longer_allows() {
    let key = ProviderKey::es256("ec");
    let (mut server, _dir) = start(None, Some(&key), 0).await;
    let mut wide = claims("dan");
    wide["sessions"] = json!(["a", "b"]);
    let mut dan = connect(&server, &key.token(&wide)).await;
    let mut peer = connect(&server, &key.token(&claims("peer"))).await;
    dan.join("a").await;
    dan.join("b").await;
    peer.join("b").await;
    let mut narrow = claims("dan");
    narrow["sessions"] = json!(["a"]);
    dan.request_ok(
        json!({"type": "refresh", "token": key.token(&narrow)}),
        "refreshed",
    )
    .await;
    let kicked = dan.expect("kicked", |f| f["type"] == "kicked").await;
    assert_eq!(kicked["session"], "b");
    let left = peer.expect_event("member_left", "b").await;
    assert_eq!(left["reason"], "kicked");
    dan.request_err(json!({"type": "members", "session": "b"}), "not_member")
        .await;
    dan.members("a").await;
    dan.request_err(json!({"type": "join", "session": "b"}), "forbidden")
        .await;
    server.shutdown().await;
}
