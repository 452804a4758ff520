//! Limits of docs/protocol.md §1.10 and §3.1 over a real socket (issue 6): sessions per connection, members
//! per session (both stores), connections per instance (HTTP 503 before the upgrade), publish size,
//! the Origin allow-list (403 before the upgrade), and the per-connection rate limit: a flooding
//! client gets `rate_limited`, then a 1008 close, while another client's joins stay fast.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::redis::RedisServer;
use crate::support::server::{TestServer, WAIT, test_args};
use crate::support::ws::{WsClient, member_ids};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Opens a WebSocket with optional extra headers; `Ok(101 response status)` or `Err(HTTP status and
/// body)` when the server refused the upgrade.
async fn handshake(url: &str, origin: Option<&str>) -> Result<u16, (u16, String)> {
    let mut request = url.into_client_request().expect("a WebSocket request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("a header value"));
    }
    let attempt = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|_| panic!("the handshake with {url} did not finish within {WAIT:?}"));
    match attempt {
        Ok((mut socket, response)) => {
            let _ = socket.close(None).await;
            Ok(response.status().as_u16())
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("the handshake with {url} failed below HTTP: {e}"),
    }
}

fn error_code(body: &str) -> Value {
    serde_json::from_str::<Value>(body)
        .map(|v| v["error"]["code"].clone())
        .unwrap_or(Value::Null)
}

#[actix_rt::test]
async fn sessions_per_connection_are_limited_with_too_many_sessions() {
    let mut args = test_args();
    args.max_sessions_per_connection = 3;
    let server = TestServer::start(args).await;
    let mut a = WsClient::connect(&server.ws_url()).await;
    for s in ["s1", "s2", "s3"] {
        a.join(s).await;
    }
    let refused = a
        .request_err(
            json!({"type": "join", "session": "s4"}),
            "too_many_sessions",
        )
        .await;
    assert!(
        refused["message"].as_str().is_some_and(|m| m.contains('3')),
        "the message names the limit: {refused}"
    );
    let (status, _) = server.http_get("/api/sessions/s4").await;
    assert_eq!(status, 404, "a refused join leaves no session behind");
    // Re-joining a session the connection is in is not a new one.
    a.join("s2").await;
    // Another connection has its own allowance.
    let mut b = WsClient::connect(&server.ws_url()).await;
    b.join("s4").await;
    // Leaving frees a slot.
    a.leave("s1").await;
    a.join("s4").await;
    a.request_err(
        json!({"type": "join", "session": "s5"}),
        "too_many_sessions",
    )
    .await;
}

async fn session_full(args: rollcall::config::ServeArgs) {
    let server = TestServer::start(args).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut c = WsClient::connect(&server.ws_url()).await;
        c.join("crowd").await;
        members.push(c);
    }
    let mut late = WsClient::connect(&server.ws_url()).await;
    late.request_err(json!({"type": "join", "session": "crowd"}), "session_full")
        .await;
    // An idempotent re-join of a member is not refused.
    members[1].join("crowd").await;
    let view = members[0].members("crowd").await;
    assert_eq!(view["counts"]["connections"], 3, "{view}");
    assert!(
        !member_ids(&view).contains(&late.connection),
        "the refused connection is not a member: {view}"
    );
    // A member leaves: there is room again.
    members[2].leave("crowd").await;
    let joined = late.join("crowd").await;
    assert_eq!(joined["counts"]["connections"], 3, "{joined}");
}

#[actix_rt::test]
async fn members_per_session_are_limited_with_session_full_in_memory() {
    let mut args = test_args();
    args.max_members_per_session = 3;
    session_full(args).await;
}

#[actix_rt::test]
async fn members_per_session_are_limited_with_session_full_on_redis() {
    let redis = RedisServer::start();
    let mut args = test_args();
    args.redis_url = Some(redis.url());
    args.max_members_per_session = 3;
    session_full(args).await;
}

#[actix_rt::test]
async fn connections_over_the_instance_limit_get_503_before_the_upgrade() {
    let mut args = test_args();
    args.max_connections = 3;
    let server = TestServer::start(args).await;
    let url = server.ws_url();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(WsClient::connect(&url).await);
    }
    for _ in 0..3 {
        let refused = handshake(&url, None).await;
        let Err((status, body)) = refused else {
            panic!("a 4th connection should be refused, got {refused:?}");
        };
        assert_eq!(status, 503, "{body}");
        assert_eq!(error_code(&body), "unavailable", "{body}");
    }
    // The open connections are unaffected.
    for c in &mut open {
        c.request_ok(json!({"type": "ping"}), "pong").await;
    }
    // A closed connection gives its slot back (bounded wait: the close is asynchronous). The
    // connection that gets it stays open, so the instance is full again.
    let gone = open.pop().expect("three open");
    gone.close();
    let deadline = Instant::now() + WAIT;
    let _third = loop {
        let attempt = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .expect("a handshake within the wait");
        match attempt {
            Ok((socket, response)) => {
                assert_eq!(response.status().as_u16(), 101);
                break socket;
            }
            Err(tungstenite::Error::Http(r)) if r.status() == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("the freed slot was not given back within {WAIT:?}: {e}"),
        }
    };
    // Refused attempts did not leak or create slots: exactly three are in use again.
    assert!(
        matches!(handshake(&url, None).await, Err((503, _))),
        "the instance is full again"
    );
    for c in &mut open {
        c.request_ok(json!({"type": "ping"}), "pong").await;
    }
}

#[actix_rt::test]
async fn publish_data_over_the_limit_is_payload_too_large_and_not_delivered() {
    let mut args = test_args();
    args.max_publish_bytes = 1000;
    let server = TestServer::start(args).await;
    let mut a = WsClient::connect(&server.ws_url()).await;
    let mut b = WsClient::connect(&server.ws_url()).await;
    a.join("pub").await;
    b.join("pub").await;
    // The limit is on the serialized data: a string of n characters takes n + 2 bytes.
    a.request_err(
        json!({"type": "publish", "session": "pub", "data": "x".repeat(999)}),
        "payload_too_large",
    )
    .await;
    a.request_err(
        json!({"type": "publish", "session": "pub", "data": {"list": vec![123456789; 100]}}),
        "payload_too_large",
    )
    .await;
    a.request_ok(
        json!({"type": "publish", "session": "pub", "data": "y".repeat(998)}),
        "published",
    )
    .await;
    let message = b.expect_event("message", "pub").await;
    assert_eq!(message["data"].as_str().map(str::len), Some(998));
    assert!(
        b.pending_of("message").is_empty(),
        "refused publishes are not delivered"
    );
}

#[actix_rt::test]
async fn the_origin_allow_list_answers_403_for_a_wrong_or_missing_origin_and_101_for_an_allowed_one()
 {
    let mut args = test_args();
    args.allowed_origins = vec![
        "https://app.example".into(),
        "http://localhost:3000/".into(),
    ];
    let server = TestServer::start(args).await;
    let url = server.ws_url();
    for allowed in [
        "https://app.example",
        "https://app.example/",
        "HTTPS://APP.EXAMPLE",
        "http://localhost:3000",
    ] {
        assert_eq!(handshake(&url, Some(allowed)).await, Ok(101), "{allowed}");
    }
    for refused in [
        None,
        Some("https://evil.example"),
        Some("https://app.example.evil"),
        Some("http://app.example"),
        Some("https://app.example:444"),
        Some("null"),
        Some(""),
        Some("http://localhost:3001"),
    ] {
        match handshake(&url, refused).await {
            Err((403, body)) => assert_eq!(error_code(&body), "forbidden", "{body}"),
            other => panic!("Origin {refused:?} should get 403, got {other:?}"),
        }
    }
    // Without an allow-list every origin, and none, is accepted.
    let open = TestServer::start_default().await;
    assert_eq!(handshake(&open.ws_url(), None).await, Ok(101));
    assert_eq!(
        handshake(&open.ws_url(), Some("https://evil.example")).await,
        Ok(101)
    );
}

/// What one flooding connection saw.
#[derive(Debug, Default)]
struct Flood {
    /// Frames served: `pong`, or for binary frames their `bad_request`.
    pongs: usize,
    rate_limited: usize,
    rate_limited_with_id: usize,
    close: Option<u16>,
}

/// Sends pings (or binary frames) in pipelined batches of 100, as fast as replies come, until
/// the server closes.
async fn flood_once(url: &str, binary: bool) -> Flood {
    let mut client = WsClient::connect(url).await;
    let mut flood = Flood::default();
    let mut next = 0u64;
    let started = Instant::now();
    while !client.is_closed() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a flooding client was not closed within 20 s: {flood:?}"
        );
        for _ in 0..100 {
            next += 1;
            if binary {
                client.send_binary(next.to_be_bytes().to_vec());
            } else {
                client.send_json(&json!({"type": "ping", "id": next}));
            }
        }
        for _ in 0..100 {
            let Some(reply) = client.try_expect(&|_| true, WAIT).await else {
                break;
            };
            match (reply["type"].as_str(), reply["code"].as_str()) {
                (Some("pong"), _) if !binary => flood.pongs += 1,
                (Some("error"), Some("bad_request")) if binary => flood.pongs += 1,
                (Some("error"), Some("rate_limited")) => {
                    flood.rate_limited += 1;
                    if reply["id"].is_u64() {
                        flood.rate_limited_with_id += 1;
                    }
                }
                _ => panic!("a flooding client got {reply}"),
            }
        }
    }
    flood.close = client.closed_with(WAIT).await.map(|c| c.0);
    flood
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Join round trips of one client (join a session, then leave it), paced to stay within its own
/// rate limit.
async fn join_round_trips(client: &mut WsClient, samples: usize, label: &str) -> Vec<Duration> {
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let session = format!("calm-{label}-{i}");
        let started = Instant::now();
        client.join(&session).await;
        times.push(started.elapsed());
        client.leave(&session).await;
        tokio::time::sleep(Duration::from_millis(70)).await;
    }
    times.sort();
    times
}

#[actix_rt::test]
async fn a_flooding_client_is_rate_limited_then_closed_with_1008_while_others_stay_fast() {
    let mut args = test_args();
    args.rate_limit_per_second = 20;
    args.rate_limit_burst = 40;
    // Many refusals before the close, so that each flooder keeps the server busy for a while.
    args.rate_limit_close_after = 2_000;
    let server = TestServer::start(args).await;
    let url = server.ws_url();

    let mut calm = WsClient::connect(&url).await;
    let before = join_round_trips(&mut calm, 20, "before").await;

    // Three flooders on their own thread (their client-side work must not slow the measuring
    // client down), each reconnecting after its 1008 until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = {
        let (stop, url) = (stop.clone(), url.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the flooders");
            runtime.block_on(async move {
                let one = |stop: Arc<AtomicBool>, url: String| async move {
                    let mut floods = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        floods.push(flood_once(&url, false).await);
                    }
                    floods
                };
                let all = futures_util::future::join_all(
                    (0..3).map(|_| tokio::spawn(one(stop.clone(), url.clone()))),
                )
                .await;
                all.into_iter()
                    .flat_map(|r| r.expect("a flooder panicked"))
                    .collect::<Vec<Flood>>()
            })
        })
    };
    // Let the flood start, then measure.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = join_round_trips(&mut calm, 20, "during").await;
    stop.store(true, Ordering::SeqCst);
    let floods = tokio::task::spawn_blocking(move || flooding.join())
        .await
        .expect("join the flood thread")
        .expect("the flood thread panicked");

    let total_limited: usize = floods.iter().map(|f| f.rate_limited).sum();
    let total_pongs: usize = floods.iter().map(|f| f.pongs).sum();
    println!(
        "calm client join round trip: before the flood p50 {:?} max {:?}; during p50 {:?} max {:?}",
        percentile(&before, 0.5),
        before[before.len() - 1],
        percentile(&during, 0.5),
        during[during.len() - 1],
    );
    println!(
        "{} flooding connections: {total_pongs} requests served, {total_limited} refused with rate_limited",
        floods.len()
    );
    assert!(floods.len() >= 3, "every flooder ran: {floods:?}");
    for flood in &floods {
        assert_eq!(
            flood.close,
            Some(1008),
            "a flooder is closed with 1008: {flood:?}"
        );
        assert!(
            flood.rate_limited >= 2_000,
            "refused with rate_limited before the close: {flood:?}"
        );
        assert_eq!(
            flood.rate_limited, flood.rate_limited_with_id,
            "rate_limited errors echo the request id: {flood:?}"
        );
        // The burst plus what the sustained rate refilled during the flood (it lasts seconds at
        // most); never the thousands that were sent.
        assert!(
            (40..=200).contains(&flood.pongs),
            "served within the burst and the sustained rate: {flood:?}"
        );
    }
    let max_during = during[during.len() - 1];
    assert!(
        max_during < Duration::from_millis(250),
        "the calm client's joins stayed fast during the flood: max {max_during:?} (before: max {:?})",
        before[before.len() - 1]
    );
    // The calm client was never refused or closed.
    assert!(!calm.is_closed());
    assert!(
        calm.log().iter().all(|f| f["type"] != "error"),
        "the calm client got an error"
    );
}

#[actix_rt::test]
async fn a_flood_of_binary_frames_is_rate_limited_and_closed_with_1008_too() {
    let mut args = test_args();
    args.rate_limit_per_second = 20;
    args.rate_limit_burst = 40;
    args.rate_limit_close_after = 100;
    let server = TestServer::start(args).await;
    let flood = flood_once(&server.ws_url(), true).await;
    println!("binary flood: {flood:?}");
    assert_eq!(flood.close, Some(1008), "{flood:?}");
    assert!(flood.rate_limited >= 100, "{flood:?}");
    assert!((40..=60).contains(&flood.pongs), "{flood:?}");
    // Text and binary frames share one allowance.
    let mut mixed = WsClient::connect(&server.ws_url()).await;
    for _ in 0..40 {
        mixed.send_binary(vec![0xff]);
    }
    for _ in 0..40 {
        let reply = mixed.next_frame(WAIT).await;
        assert_eq!(reply["code"], "bad_request", "{reply}");
    }
    mixed
        .request_err(json!({"type": "ping"}), "rate_limited")
        .await;
}
