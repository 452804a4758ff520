//! The server API (`/api/server/*`) over real HTTP, with real WebSocket members: its key, each
//! route's answer and effect, bad input refused without a change, and a kick that crosses
//! instances (the API call on one instance, the kicked socket on another, one Redis between them).

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::support::db::token;
use crate::support::redis::RedisServer;
use crate::support::server::{TestServer, http_post, test_args};
use crate::support::ws::WsClient;

const KEY: &str = "backend-key-1";

/// A server on the in-process store with the server API on (two keys, as during a rotation).
async fn server() -> TestServer {
    let mut args = test_args();
    args.api_key = vec!["backend-key-0".into(), KEY.into()];
    TestServer::start(args).await
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    http_post(addr, path, Some(KEY), body.to_string()).await
}

async fn member(server: &TestServer, session: &str) -> WsClient {
    let mut client = WsClient::connect(&server.ws_url()).await;
    client.join(session).await;
    client
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[actix_rt::test]
async fn the_api_is_off_without_a_key_and_otherwise_needs_one_of_the_keys() {
    let off = TestServer::start_default().await;
    let (status, body) = post(off.addr, "/api/server/presence", json!({"sessions": []})).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");

    let mut args = test_args();
    args.api_key = vec!["old".into(), "new".into()];
    args.jwt_secret = Some("jwt-secret".into());
    let on = TestServer::start(args).await;
    let presence = "/api/server/presence";
    let body = json!({"sessions": ["s"]}).to_string();
    for key in ["old", "new"] {
        let (status, answer) = http_post(on.addr, presence, Some(key), body.clone()).await;
        assert_eq!(status, 200, "key {key}: {answer}");
        assert_eq!(answer, json!({"sessions": {"s": null}}));
    }
    for key in [None, Some("wrong"), Some("ol"), Some("")] {
        let (status, answer) = http_post(on.addr, presence, key, body.clone()).await;
        assert_eq!(
            (status, error_code(&answer)),
            (401, "unauthorized"),
            "{key:?}"
        );
    }
    // A user's token is no key, whatever header it comes in.
    let user_token = token("jwt-secret", "u1", None);
    let answer = reqwest::Client::new()
        .post(format!("http://{}{presence}", on.addr))
        .bearer_auth(&user_token)
        .body(body.clone())
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 401);
    let (status, _) = http_post(on.addr, presence, Some(&user_token), body).await;
    assert_eq!(status, 401);
}

#[actix_rt::test]
async fn bad_input_is_refused_with_a_json_error_and_changes_nothing() {
    let server = server().await;
    let mut a = member(&server, "s").await;
    let before = a.members("s").await["version"].clone();
    let addr = server.addr;
    let raw = |path: &'static str, body: &'static str| async move {
        http_post(addr, path, Some(KEY), body).await
    };
    let cases = [
        (
            "/api/server/sessions/s/publish",
            "not json",
            400,
            "bad_request",
        ),
        ("/api/server/sessions/s/publish", "{}", 400, "bad_request"),
        (
            "/api/server/sessions/s/publish",
            r#"{"data":1,"x":2}"#,
            400,
            "bad_request",
        ),
        (
            "/api/server/sessions/s/kick",
            r#"{"connection":"c","user":"u"}"#,
            400,
            "bad_request",
        ),
        ("/api/server/sessions/s/kick", r#"{}"#, 400, "bad_request"),
        (
            "/api/server/sessions/s/kick",
            r#"{"connection":"c","why":"x"}"#,
            400,
            "bad_request",
        ),
        (
            "/api/server/sessions/s/kick",
            r#"{"connection":""}"#,
            400,
            "bad_request",
        ),
        (
            "/api/server/sessions/s/end",
            r#"{"now":true}"#,
            400,
            "bad_request",
        ),
        ("/api/server/sessions/s/end", "", 400, "bad_request"),
        (
            "/api/server/sessions/s%20x/end",
            "{}",
            400,
            "invalid_session",
        ),
        (
            "/api/server/presence",
            r#"{"sessions":["ok","not ok"]}"#,
            400,
            "invalid_session",
        ),
        (
            "/api/server/presence",
            r#"{"sessions":"s"}"#,
            400,
            "bad_request",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = raw(path, body).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{path} {body}: {answer}"
        );
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let long = "x".repeat(129);
    let (status, answer) = post(
        addr,
        "/api/server/sessions/s/kick",
        json!({"connection": a.connection, "reason": long}),
    )
    .await;
    assert_eq!((status, error_code(&answer)), (400, "bad_request"));
    let (status, answer) = post(
        addr,
        "/api/server/sessions/s/kick",
        json!({"connection": "not-a-member"}),
    )
    .await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "not_found"),
        "{answer}"
    );
    let big = "x".repeat(16 * 1024);
    let (status, answer) = post(addr, "/api/server/sessions/s/publish", json!({"data": big})).await;
    assert_eq!((status, error_code(&answer)), (413, "payload_too_large"));
    let many: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
    let (status, answer) = post(addr, "/api/server/presence", json!({"sessions": many})).await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "bad_request"),
        "{answer}"
    );
    let after = a.members("s").await;
    assert_eq!(after["version"], before, "nothing changed");
    assert_eq!(after["members"].as_array().map(Vec::len), Some(1));
    assert!(a.pending_of("message").is_empty(), "nothing was published");
}

#[actix_rt::test]
async fn a_publish_reaches_every_member_from_null_and_is_kept_in_history() {
    let server = server().await;
    let mut a = member(&server, "s").await;
    let mut b = member(&server, "s").await;
    let (status, answer) = post(
        server.addr,
        "/api/server/sessions/s/publish",
        json!({"data": {"notice": "hello"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offset"], 1);
    let stream = answer["stream"].clone();
    assert!(stream.is_string());
    for client in [&mut a, &mut b] {
        let message = client.expect_event("message", "s").await;
        assert_eq!(message["from"], Value::Null);
        assert_eq!(message["user"], Value::Null);
        assert_eq!(message["data"], json!({"notice": "hello"}));
        assert_eq!(
            (&message["offset"], &message["stream"]),
            (&json!(1), &stream)
        );
    }
    let history = a
        .request_ok(json!({"type": "history", "session": "s"}), "history")
        .await;
    let kept = &history["messages"][0];
    assert_eq!(
        (&kept["offset"], &kept["from"], &kept["user"], &kept["data"]),
        (
            &json!(1),
            &Value::Null,
            &Value::Null,
            &json!({"notice": "hello"})
        )
    );
    let (status, answer) = post(
        server.addr,
        "/api/server/sessions/nobody-here/publish",
        json!({"data": null}),
    )
    .await;
    assert_eq!((status, error_code(&answer)), (404, "not_found"));
}

/// The kicked socket is on instance two, the API call goes to instance one: the kicked member (the
/// leader) gets `kicked` with the reason and is no longer a member (its socket and its other
/// session stay); the others get `member_left` (kicked) and the new leader in the same version;
/// the kicked member cannot be resumed into the session.
#[actix_rt::test]
async fn a_kick_through_one_instance_reaches_the_socket_on_the_other() {
    let redis = RedisServer::start();
    let mut args = test_args();
    args.api_key = vec![KEY.into()];
    args.resume_grace_ms = 10_000;
    let (one, two) = TestServer::pair_on_redis(args, &redis.url()).await;
    let mut kicked = member(&two, "s").await;
    kicked.join("other").await;
    let mut peer = member(&one, "s").await;
    let mut neighbour = member(&two, "s").await;
    let (status, answer) = post(
        one.addr,
        "/api/server/sessions/s/kick",
        json!({"connection": kicked.connection, "reason": "spam"}),
    )
    .await;
    assert_eq!((status, &answer), (200, &json!({"removed": 1})));
    let frame = kicked.expect("kicked", |f| f["type"] == "kicked").await;
    assert_eq!(
        frame,
        json!({"type": "kicked", "session": "s", "reason": "spam"})
    );
    kicked
        .request_err(json!({"type": "members", "session": "s"}), "not_member")
        .await;
    kicked.members("other").await;
    assert!(
        kicked.pending_of("member_left").is_empty(),
        "no member_left of its own"
    );
    let new_leader = json!(peer.connection);
    for client in [&mut peer, &mut neighbour] {
        let left = client.expect_event("member_left", "s").await;
        assert_eq!(left["connection"], json!(kicked.connection));
        assert_eq!(left["reason"], "kicked");
        let leader = client.expect_event("leader_changed", "s").await;
        assert_eq!(leader["leader"], new_leader, "the earliest left leads");
        assert_eq!(leader["version"], left["version"], "in the same change");
    }
    // A message of the backend through instance one reaches the members on instance two.
    let (status, _) = post(
        one.addr,
        "/api/server/sessions/s/publish",
        json!({"data": "after the kick"}),
    )
    .await;
    assert_eq!(status, 200);
    let message = neighbour.expect_event("message", "s").await;
    assert_eq!(
        (&message["from"], &message["data"]),
        (&Value::Null, &json!("after the kick"))
    );
    peer.expect_event("message", "s").await;
    // Its socket drops; a resume into s finds nothing (its other session comes back).
    kicked.abort();
    let mut back = WsClient::connect(&two.ws_url()).await;
    let mut resume = kicked.resume_request("s", json!(null));
    let resumed = back.request(resume.clone()).await;
    assert_eq!(resumed["type"], "error", "{resumed}");
    assert_eq!(resumed["code"], "resume_failed");
    resume["sessions"][0]["session"] = json!("other");
    let mut again = WsClient::connect(&one.ws_url()).await;
    again.request_ok(resume, "resumed").await;
    let (status, answer) = post(
        one.addr,
        "/api/server/sessions/s/kick",
        json!({"connection": kicked.connection}),
    )
    .await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "not_found"),
        "{answer}"
    );
}

#[actix_rt::test]
async fn a_kick_by_user_removes_every_connection_of_that_user() {
    let mut args = test_args();
    args.api_key = vec![KEY.into()];
    args.jwt_secret = Some("jwt-secret".into());
    let server = TestServer::start(args).await;
    let url = |user: &str| {
        format!(
            "{}?token={}",
            server.ws_url(),
            token("jwt-secret", user, None)
        )
    };
    let mut tab1 = WsClient::connect(&url("u1")).await;
    let mut tab2 = WsClient::connect(&url("u1")).await;
    let mut other = WsClient::connect(&url("u2")).await;
    for client in [&mut tab1, &mut tab2, &mut other] {
        client.join("s").await;
    }
    let (status, answer) = post(
        server.addr,
        "/api/server/sessions/s/kick",
        json!({"user": "u1"}),
    )
    .await;
    assert_eq!((status, &answer), (200, &json!({"removed": 2})));
    for tab in [&mut tab1, &mut tab2] {
        let frame = tab.expect_event("kicked", "s").await;
        assert_eq!(frame["reason"], Value::Null, "no reason given");
    }
    let members = other.members("s").await;
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(members["leader"], json!(other.connection));
}

#[actix_rt::test]
async fn the_backend_ends_a_session_with_by_null() {
    let server = server().await;
    let mut a = member(&server, "s").await;
    let mut b = member(&server, "s").await;
    let (status, answer) = post(server.addr, "/api/server/sessions/s/end", json!({})).await;
    assert_eq!((status, &answer), (200, &json!({"ended": true})));
    for client in [&mut a, &mut b] {
        let ended = client.expect_event("session_ended", "s").await;
        assert_eq!(ended["by"], Value::Null);
        client
            .request_err(json!({"type": "members", "session": "s"}), "not_member")
            .await;
    }
    a.request_err(json!({"type": "join", "session": "s"}), "session_ended")
        .await;
    let (status, answer) = post(server.addr, "/api/server/sessions/s/end", json!({})).await;
    assert_eq!((status, error_code(&answer)), (404, "not_found"));
}

#[actix_rt::test]
async fn presence_reads_several_sessions_at_once_on_redis() {
    let redis = RedisServer::start();
    let mut args = test_args();
    args.api_key = vec![KEY.into()];
    let (one, two) = TestServer::pair_on_redis(args, &redis.url()).await;
    let a = member(&one, "p1").await;
    let b = member(&two, "p1").await;
    let c = member(&two, "p2").await;
    let (status, answer) = post(
        one.addr,
        "/api/server/presence",
        json!({"sessions": ["p1", "p2", "p3", "p1"]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let sessions = answer["sessions"].as_object().expect("a map");
    assert_eq!(sessions.len(), 3);
    let p1 = &sessions["p1"];
    assert_eq!(p1["leader"], json!(a.connection));
    assert_eq!((&p1["version"], &p1["epoch"]), (&json!(2), &json!(1)));
    assert_eq!(p1["counts"]["connections"], 2);
    let ids: Vec<&Value> = p1["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| &m["connection"])
        .collect();
    assert_eq!(ids, [&json!(a.connection), &json!(b.connection)]);
    assert_eq!(sessions["p2"]["leader"], json!(c.connection));
    assert_eq!(sessions["p3"], Value::Null, "no live session");
}

#[actix_rt::test]
async fn live_sessions_are_listed_page_by_page() {
    let server = server().await;
    let mut clients = Vec::new();
    for session in ["l1", "l2", "l3"] {
        clients.push(member(&server, session).await);
    }
    clients.push(member(&server, "l2").await);
    let mut quiet = member(&server, "l4").await;
    quiet.leave("l4").await;
    let get = |path: String| {
        let addr = server.addr;
        async move {
            let response = reqwest::Client::new()
                .get(format!("http://{addr}{path}"))
                .header("X-Api-Key", KEY)
                .send()
                .await
                .expect("an answer");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let mut listed = Vec::new();
    let mut path = "/api/server/sessions?limit=2".to_owned();
    loop {
        let (status, page) = get(path.clone()).await;
        assert_eq!(status, 200, "{page}");
        for entry in page["sessions"].as_array().expect("a list") {
            listed.push((
                entry["session"].clone(),
                entry["counts"]["connections"].clone(),
            ));
        }
        match page["cursor"].as_str() {
            Some(cursor) => path = format!("/api/server/sessions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        listed,
        [
            (json!("l1"), json!(1)),
            (json!("l2"), json!(2)),
            (json!("l3"), json!(1))
        ],
        "every live session once, none without members"
    );
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?cursor=a%20b",
        "?page=2",
    ] {
        let (status, answer) = get(format!("/api/server/sessions{bad}")).await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "bad_request"),
            "{bad}: {answer}"
        );
    }
}
