//! Sign-in token rules (docs/protocol.md §1.2) at the WebSocket upgrade and on `/api/*`: a bad token is
//! a 401 before the upgrade and never an anonymous connection; the `sessions` claim limits joins;
//! anonymous access can be turned off.

use crate::support::db::{now_secs, token, token_with_exp, ws_handshake_status};
use crate::support::server::http_get_as;
use crate::support::ws::WsClient;
use rollcall::config::ServeArgs;
use rollcall::server::RunningServer;
use serde_json::json;

const SECRET: &str = "auth-test-secret";

async fn start(allow_anonymous: bool) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut args = ServeArgs::defaults();
    args.bind = "127.0.0.1:0".parse().expect("loopback address");
    args.redis_url = None;
    args.database_url = format!("sqlite://{}", dir.path().join("auth.db").display());
    args.jwt_secret = Some(SECRET.to_owned());
    args.allow_anonymous = allow_anonymous;
    args.instance_name = Some(format!(
        "auth-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let server = rollcall::server::start(&args)
        .await
        .expect("the server should start");
    (server, dir)
}

fn ws_url(server: &RunningServer) -> String {
    format!("ws://{}/ws", server.addr)
}

#[actix_rt::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let (server, _dir) = start(true).await;
    let url = ws_url(&server);
    let expired = token_with_exp(SECRET, "alice", None, now_secs() - 3600);
    let foreign = token("another-secret", "alice", None);
    let empty_sub = token(SECRET, "", None);
    for (what, bad) in [
        ("expired", expired.as_str()),
        ("wrong signature", foreign.as_str()),
        ("empty sub", empty_sub.as_str()),
        ("not a JWT", "not.a.jwt"),
    ] {
        assert_eq!(
            ws_handshake_status(&url, Some(bad)).await,
            401,
            "{what} in the header"
        );
        assert_eq!(
            ws_handshake_status(&format!("{url}?token={bad}"), None).await,
            401,
            "{what} in the query"
        );
        let (status, _) = http_get_as(server.addr, "/api/me/sessions", Some(bad)).await;
        assert_eq!(status, 401, "{what} on /api");
    }
    // No token: anonymous is allowed here.
    assert_eq!(ws_handshake_status(&url, None).await, 101);
    let anonymous = WsClient::connect(&url).await;
    assert_eq!(anonymous.welcome["user"], json!(null));
    // A good token, in the header or the query, names the user.
    let good = token(SECRET, "alice", None);
    assert_eq!(ws_handshake_status(&url, Some(&good)).await, 101);
    let alice = WsClient::connect(&format!("{url}?token={good}")).await;
    assert_eq!(alice.welcome["user"], "alice");
    server.shutdown().await;
}

#[actix_rt::test]
async fn the_sessions_claim_limits_joins() {
    let (server, _dir) = start(true).await;
    let limited = token(SECRET, "carol", Some(&["allowed"]));
    let mut carol = WsClient::connect(&format!("{}?token={limited}", ws_url(&server))).await;
    let joined = carol.join("allowed").await;
    assert_eq!(joined["session"], "allowed");
    carol
        .request_err(json!({"type": "join", "session": "elsewhere"}), "forbidden")
        .await;
    // The same rule reads sessions over HTTP: 403 outside the claim.
    let (status, _) = http_get_as(server.addr, "/api/sessions/allowed", Some(&limited)).await;
    assert_eq!(status, 200);
    let (status, body) = http_get_as(server.addr, "/api/sessions/elsewhere", Some(&limited)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    server.shutdown().await;
}

#[actix_rt::test]
async fn anonymous_off_needs_a_token() {
    let (server, _dir) = start(false).await;
    let url = ws_url(&server);
    assert_eq!(ws_handshake_status(&url, None).await, 401);
    let good = token(SECRET, "dave", None);
    assert_eq!(ws_handshake_status(&url, Some(&good)).await, 101);
    let (status, _) = http_get_as(server.addr, "/api/sessions/any", None).await;
    assert_eq!(status, 401);
    server.shutdown().await;
}

#[actix_rt::test]
async fn anonymous_off_without_a_secret_is_a_configuration_error() {
    let mut args = ServeArgs::defaults();
    args.bind = "127.0.0.1:0".parse().expect("loopback address");
    args.database_url = "sqlite://:memory:".into();
    args.jwt_secret = None;
    args.allow_anonymous = false;
    let err = rollcall::server::start(&args)
        .await
        .err()
        .expect("the server must refuse to start");
    assert!(err.to_string().contains("--jwt-secret"), "{err}");
}
