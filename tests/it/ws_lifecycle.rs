//! Liveness, close codes, graceful shutdown and the HTTP API of one instance (docs/protocol.md §1.10, §2).

use std::time::{Duration, Instant};

use crate::support::raw_ws::{PROMPT_TCP_CLOSE, connect_raw, expect_close, time_to_tcp_eof};
use crate::support::server::{TestServer, WAIT, test_args};
use crate::support::ws::{WsClient, is_member_left, member_ids};
use futures_util::SinkExt;
use rollcall::actors::connection::CLOSE_HANDSHAKE_TIMEOUT;
use rollcall::store::memory::MemoryBackend;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[actix_rt::test]
async fn a_client_that_stops_answering_is_removed_with_reason_timeout_within_the_bound() {
    const PING_MS: u64 = 100;
    const TIMEOUT_MS: u64 = 800;
    let mut args = test_args();
    args.client_ping_ms = PING_MS;
    args.client_timeout_ms = TIMEOUT_MS;
    let server = TestServer::start(args).await;
    let mut watcher = WsClient::connect(&server.ws_url()).await;
    let mut frozen = WsClient::connect(&server.ws_url()).await;
    let mut quiet = WsClient::connect(&server.ws_url()).await;
    watcher.join("live").await;
    frozen.join("live").await;
    quiet.join("live").await;

    // `frozen` stops reading and writing: the server's pings go unanswered, as with a half-open
    // socket. `quiet` sends nothing either, but its socket answers pings.
    frozen.freeze();
    let t0 = Instant::now();
    // The server checks at the moment the silence reaches the timeout; 1 s of margin.
    let bound = Duration::from_millis(TIMEOUT_MS + 1000);
    let left = watcher
        .expect_within(
            "member_left of the frozen client",
            |f| is_member_left(f, "live", &frozen.connection),
            bound + WAIT,
        )
        .await;
    let elapsed = t0.elapsed();
    eprintln!(
        "frozen client removed {elapsed:?} after it stopped answering (timeout {TIMEOUT_MS} ms)"
    );
    assert_eq!(left["reason"], "timeout", "{left}");
    // It was last heard from at most one ping interval before it froze.
    assert!(
        elapsed >= Duration::from_millis(TIMEOUT_MS - PING_MS - 50),
        "removed after {elapsed:?}, before its silence reached the {TIMEOUT_MS} ms timeout"
    );
    assert!(
        elapsed <= bound,
        "removed after {elapsed:?}: more than the timeout plus a 1 s margin ({bound:?})"
    );

    // The client that answers pings outlives three timeouts without sending a frame.
    let three_timeouts = Duration::from_millis(3 * TIMEOUT_MS);
    if let Some(extra) = three_timeouts.checked_sub(t0.elapsed()) {
        tokio::time::sleep(extra).await;
    }
    let view = watcher.members("live").await;
    let mut expected = vec![watcher.connection.clone(), quiet.connection.clone()];
    expected.sort();
    assert_eq!(
        member_ids(&view),
        expected,
        "only the frozen client was removed"
    );
    assert!(!quiet.is_closed());
    quiet.drain_ready();
    assert!(
        quiet
            .pending_of("member_left")
            .iter()
            .all(|f| f["connection"] != quiet.connection.as_str()),
        "the quiet client was not removed"
    );

    // Thawed, the frozen client finds its connection gone.
    frozen.thaw();
    frozen.closed_with(WAIT).await;
}

#[actix_rt::test]
async fn a_frame_over_max_message_bytes_closes_with_1009() {
    let mut args = test_args();
    args.max_message_bytes = 2048;
    let server = TestServer::start(args).await;
    let mut watcher = WsClient::connect(&server.ws_url()).await;
    let mut big = WsClient::connect(&server.ws_url()).await;
    watcher.join("size").await;
    big.join("size").await;

    // Just under the limit is served.
    let fits = "x".repeat(1900);
    big.request_ok(
        json!({"type": "publish", "session": "size", "data": fits}),
        "published",
    )
    .await;
    watcher.expect_event("message", "size").await;

    big.send_text(
        json!({"type": "publish", "session": "size", "data": "x".repeat(2100)}).to_string(),
    );
    let close = big.closed_with(WAIT).await;
    assert_eq!(
        close.as_ref().map(|c| c.0),
        Some(1009),
        "close frame: {close:?}"
    );
    let left = watcher
        .expect("member_left of the big sender", |f| {
            is_member_left(f, "size", &big.connection)
        })
        .await;
    assert_eq!(left["reason"], "disconnected");
}

#[actix_rt::test]
async fn when_the_client_closes_the_server_answers_and_closes_tcp_at_once() {
    let server = TestServer::start(test_args()).await;
    let mut ws = connect_raw(&server).await;
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.send(Message::Close(Some(bye)))
        .await
        .expect("send the close frame");
    expect_close(&mut ws, CloseCode::Normal).await;

    let eof = time_to_tcp_eof(ws.get_mut()).await;
    eprintln!("client-initiated close: TCP closed {eof:?} after the server's close frame");
    assert!(
        eof < PROMPT_TCP_CLOSE,
        "the server closed TCP {eof:?} after answering the client's close; it must close it at \
         once (under {PROMPT_TCP_CLOSE:?}), not wait for the client"
    );
}

#[actix_rt::test]
async fn when_the_server_closes_with_1009_it_closes_tcp_at_once_after_the_clients_answer() {
    let mut args = test_args();
    args.max_message_bytes = 2048;
    let server = TestServer::start(args).await;
    let mut ws = connect_raw(&server).await;
    ws.send(Message::Text("x".repeat(4096).into()))
        .await
        .expect("send the over-size frame");
    expect_close(&mut ws, CloseCode::Size).await;
    // tungstenite has queued the answer to the server's close; flushing sends it.
    ws.flush().await.expect("answer the server's close");

    let eof = time_to_tcp_eof(ws.get_mut()).await;
    eprintln!("server-initiated close (1009): TCP closed {eof:?} after the client's answer");
    assert!(
        eof < PROMPT_TCP_CLOSE,
        "the server closed TCP {eof:?} after the client answered its close; it must close it at \
         once (under {PROMPT_TCP_CLOSE:?})"
    );
}

#[actix_rt::test]
async fn a_client_that_never_answers_the_servers_close_is_dropped_after_the_close_timeout() {
    let mut args = test_args();
    args.max_message_bytes = 2048;
    let server = TestServer::start(args).await;
    let mut ws = connect_raw(&server).await;
    ws.send(Message::Text("x".repeat(4096).into()))
        .await
        .expect("send the over-size frame");
    expect_close(&mut ws, CloseCode::Size).await;
    // Taking the TCP stream now drops tungstenite's queued answer unsent.
    let mut tcp = ws.into_inner();

    let eof = time_to_tcp_eof(&mut tcp).await;
    eprintln!("unanswered server close: TCP closed {eof:?} after the server's close frame");
    assert!(
        eof >= CLOSE_HANDSHAKE_TIMEOUT / 2,
        "the server closed TCP {eof:?} after its close frame, without waiting for an answer: a \
         client still sending would get a reset that can destroy the close frame"
    );
    let bound = CLOSE_HANDSHAKE_TIMEOUT + PROMPT_TCP_CLOSE;
    assert!(
        eof < bound,
        "the server kept TCP open {eof:?} for a client that never answered its close (bound: \
         {CLOSE_HANDSHAKE_TIMEOUT:?} for the answer + {PROMPT_TCP_CLOSE:?})"
    );
}

#[actix_rt::test]
async fn graceful_shutdown_closes_with_1012_and_members_leave_with_reason_shutdown() {
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let mut server = TestServer::start_on_backend(test_args(), &backend).await;
    let mut a = WsClient::connect(&server.ws_url()).await;
    let mut b = WsClient::connect(&server.ws_url()).await;
    let mut idle = WsClient::connect(&server.ws_url()).await;
    a.join("s1").await;
    b.join("s1").await;
    b.join("s2").await;
    a.request_ok(json!({"type": "ping"}), "pong").await;
    idle.request_ok(json!({"type": "ping"}), "pong").await;
    let addr = server.addr;

    let t0 = Instant::now();
    server.shutdown().await;
    eprintln!("graceful shutdown took {:?}", t0.elapsed());

    for c in [&mut a, &mut b, &mut idle] {
        let close = c.closed_with(WAIT).await;
        assert_eq!(
            close.as_ref().map(|c| c.0),
            Some(1012),
            "close frame: {close:?}"
        );
    }
    // Each member learns that the others left because the server is restarting.
    let left = a
        .expect("member_left of B", |f| {
            is_member_left(f, "s1", &b.connection)
        })
        .await;
    assert_eq!(left["reason"], "shutdown", "{left}");
    let left = b
        .expect("member_left of A", |f| {
            is_member_left(f, "s1", &a.connection)
        })
        .await;
    assert_eq!(left["reason"], "shutdown", "{left}");
    for c in [&a, &b] {
        for f in c.log().iter().filter(|f| f["type"] == "member_left") {
            assert_eq!(f["reason"], "shutdown", "{f}");
        }
    }
    assert_eq!(
        backend.live_member_count(),
        0,
        "no ghost is left in the store after a graceful stop"
    );
    assert!(
        backend.registered_instances().is_empty(),
        "the lease is removed"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after the shutdown"
    );
}

#[actix_rt::test]
async fn healthz_and_readyz_answer_while_the_server_runs() {
    let server = TestServer::start_default().await;
    let (status, body) = server.http_get("/healthz").await;
    assert_eq!((status, &body), (200, &json!({"status": "ok"})));
    let (status, body) = server.http_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(
        body["store"]["state"], "up",
        "the body names each part's state: {body}"
    );
}

#[actix_rt::test]
async fn api_sessions_answers_200_with_the_view_404_unknown_400_invalid() {
    let server = TestServer::start_default().await;
    let mut a = WsClient::connect(&server.ws_url()).await;
    let mut b = WsClient::connect(&server.ws_url()).await;
    a.join("api-1").await;
    b.request_ok(
        json!({"type": "join", "session": "api-1", "name": "Bee", "avatar": "https://e.com/b.png"}),
        "joined",
    )
    .await;

    let (status, body) = server.http_get("/api/sessions/api-1").await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "session", "version", "leader", "epoch", "counts", "members", "ended_at",
    ] {
        assert!(keys.contains(&key), "missing {key}: {body}");
    }
    assert_eq!(body["session"], "api-1");
    assert_eq!(body["version"], 2);
    assert_eq!(body["leader"], a.connection.as_str());
    assert_eq!(body["epoch"], 1);
    assert_eq!(
        body["counts"],
        json!({"connections": 2, "users": 2, "reconnecting": 0})
    );
    assert_eq!(body["ended_at"], Value::Null);
    let view = a.members("api-1").await;
    assert_eq!(member_ids(&body), member_ids(&view));
    let bee = body["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["connection"] == b.connection.as_str())
        .expect("B listed")
        .clone();
    assert_eq!(bee["name"], "Bee");
    assert_eq!(bee["avatar"], "https://e.com/b.png");
    assert_eq!(bee["user"], Value::Null);
    assert!(bee["joined_at"].is_i64());

    let (status, body) = server.http_get("/api/sessions/never-seen").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "{body}"
    );

    for bad in ["a%20b", "a:b", "%7Bs%7D", &"a".repeat(129)] {
        let (status, body) = server.http_get(&format!("/api/sessions/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_session", "{bad}: {body}");
    }

    // Everyone gone and no record: unknown again (`left` replies after the store changed).
    a.leave("api-1").await;
    b.leave("api-1").await;
    let (status, body) = server.http_get("/api/sessions/api-1").await;
    assert_eq!(status, 404, "{body}");
}

/// A request waiting for a stalled store (Redis stopped with SIGSTOP) holds the requests after it,
/// but never a `ping`: the pong comes at once, the join gets `unavailable` within the store's
/// timeout (2 s), and the socket stays usable.
#[actix_rt::test]
async fn a_ping_is_never_held_behind_a_store_call() {
    let redis = crate::support::redis::RedisServer::start();
    let mut args = test_args();
    args.redis_url = Some(redis.url());
    let server = TestServer::start(args).await;
    let mut client = WsClient::connect(&server.ws_url()).await;
    redis.pause();
    let stalled = Instant::now();
    client.send_json(&serde_json::json!({"type": "join", "session": "new-here", "id": "join"}));
    client.send_json(&serde_json::json!({"type": "ping", "id": "ping"}));
    let first = client.next_frame(WAIT).await;
    let pong_after = stalled.elapsed();
    let second = client.next_frame(WAIT).await;
    let join_after = stalled.elapsed();
    redis.resume();
    assert_eq!(
        (first["type"].as_str(), first["id"].as_str()),
        (Some("pong"), Some("ping")),
        "{first}"
    );
    assert!(
        pong_after < Duration::from_millis(500),
        "pong after {pong_after:?}"
    );
    assert_eq!(second["code"], "unavailable", "{second}");
    assert!(
        join_after < Duration::from_millis(3_000),
        "the join was answered after {join_after:?}"
    );
    println!("stalled store: pong after {pong_after:?}, join refused after {join_after:?}");
    client
        .request_ok(serde_json::json!({"type": "ping"}), "pong")
        .await;
}
