//! The HTTP conventions of every route (docs/protocol.md §2.1): `HEAD` wherever `GET`, 405 with
//! `Allow`, JSON 404s, CORS on `/api/*` for `--allowed-origins` only, the page's security headers,
//! `Cache-Control: no-store` on API answers, `--metrics-token`, and a `/readyz` that names states
//! but never an error's text.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::db::{admin_url, postgres_addr};
use crate::support::eventually;
use crate::support::process::RollcallProcess;
use crate::support::proxy::TcpProxy;
use crate::support::redis::RedisServer;
use crate::support::server::{HttpAnswer, TestServer, http_request, test_args};
use crate::support::urls::with_host;
use crate::support::ws::WsClient;

const APP: &str = "https://app.example";

fn assert_json_error(answer: &HttpAnswer, status: u16, code: &str, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    let body = answer.json();
    assert_eq!(body["error"]["code"], code, "{what}: {}", answer.body);
    assert!(
        body["error"]["message"].is_string(),
        "{what}: {}",
        answer.body
    );
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: {:?}",
        answer.headers
    );
}

fn no_cors_headers(answer: &HttpAnswer, what: &str) {
    for (name, _) in &answer.headers {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "{what} carries {name}: {:?}",
            answer.headers
        );
    }
}

#[actix_rt::test]
async fn head_answers_wherever_get_does_with_the_same_headers_and_no_body() {
    let server = TestServer::start_default().await;
    let mut member = WsClient::connect(&server.ws_url()).await;
    member.join("x").await;
    for path in [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/sessions/x",
        "/assets/page.js",
        "/assets/favicon.svg",
    ] {
        let get = http_request(server.addr, "GET", path, &[]).await;
        let head = http_request(server.addr, "HEAD", path, &[]).await;
        assert_eq!(get.status, 200, "GET {path}: {}", get.body);
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(
            head.body.is_empty(),
            "HEAD {path} has a body: {}",
            head.body
        );
        for name in [
            "content-type",
            "cache-control",
            "content-security-policy",
            "x-content-type-options",
        ] {
            assert_eq!(head.header(name), get.header(name), "{name} of HEAD {path}");
        }
        if path != "/metrics" && path != "/readyz" {
            // Same body, so the same length (the metrics and readiness move between two calls).
            assert_eq!(
                head.header("content-length"),
                Some(get.body.len().to_string().as_str()),
                "content-length of HEAD {path}"
            );
        }
    }
    // Where GET is an error, HEAD is the same error.
    let head = http_request(server.addr, "HEAD", "/api/sessions/nobody-here", &[]).await;
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty());
}

#[actix_rt::test]
async fn another_method_on_a_known_path_is_405_with_allow() {
    let server = TestServer::start_default().await;
    for (method, path, allow) in [
        ("POST", "/healthz", "GET, HEAD"),
        ("PUT", "/readyz", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
        ("POST", "/assets/page.js", "GET, HEAD"),
        ("DELETE", "/api/sessions/x", "GET, HEAD"),
        ("POST", "/api/me/sessions", "GET, HEAD"),
        ("GET", "/api/server/presence", "POST"),
        ("PUT", "/api/server/sessions/x/kick", "POST"),
        ("POST", "/api/server/sessions", "GET, HEAD"),
        ("POST", "/ws", "GET"),
        // Without --allowed-origins, OPTIONS is a method like any other.
        ("OPTIONS", "/api/sessions/x", "GET, HEAD"),
    ] {
        let answer = http_request(server.addr, method, path, &[]).await;
        let what = format!("{method} {path}");
        assert_json_error(&answer, 405, "method_not_allowed", &what);
        assert_eq!(answer.header("allow"), Some(allow), "{what}");
    }
}

#[actix_rt::test]
async fn unknown_paths_are_404_with_the_json_error_body_everywhere() {
    let server = TestServer::start_default().await;
    for (method, path) in [
        ("GET", "/nope"),
        ("HEAD", "/nope"),
        ("POST", "/nope"),
        ("GET", "/api"),
        ("GET", "/api/nope"),
        ("GET", "/api/sessions"),
        ("GET", "/api/server/nope"),
        ("GET", "/assets/nope.js"),
        ("GET", "/assets/a/b.js"),
        ("GET", "/healthz/more"),
    ] {
        let answer = http_request(server.addr, method, path, &[]).await;
        let what = format!("{method} {path}");
        if method == "HEAD" {
            assert_eq!(answer.status, 404, "{what}");
            continue;
        }
        assert_json_error(&answer, 404, "not_found", &what);
    }
}

#[actix_rt::test]
async fn api_cors_preflights_are_answered_for_the_allowed_origins_only() {
    let mut args = test_args();
    args.allowed_origins = vec![APP.to_owned()];
    let server = TestServer::start(args).await;

    let allowed = http_request(
        server.addr,
        "OPTIONS",
        "/api/sessions/x",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .await;
    assert!((200..300).contains(&allowed.status), "{}", allowed.status);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(APP));
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");

    // The server API: POST with its key header and a JSON body.
    let server_api = http_request(
        server.addr,
        "OPTIONS",
        "/api/server/presence",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "x-api-key, content-type"),
        ],
    )
    .await;
    assert!(
        (200..300).contains(&server_api.status),
        "{}",
        server_api.body
    );
    assert_eq!(server_api.header("access-control-allow-origin"), Some(APP));
    let methods = server_api
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");

    let refused = http_request(
        server.addr,
        "OPTIONS",
        "/api/sessions/x",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
    )
    .await;
    assert_json_error(
        &refused,
        403,
        "forbidden",
        "a preflight from another origin",
    );
    assert_eq!(refused.header("access-control-allow-origin"), None);

    let bad_method = http_request(
        server.addr,
        "OPTIONS",
        "/api/sessions/x",
        &[("Origin", APP), ("Access-Control-Request-Method", "DELETE")],
    )
    .await;
    assert_json_error(&bad_method, 403, "forbidden", "a preflight for DELETE");

    // Actual requests: the allowed origin gets the header (and Vary), another gets its answer
    // without it, and paths outside /api/* have no CORS.
    let actual = http_request(server.addr, "GET", "/api/sessions/x", &[("Origin", APP)]).await;
    assert_eq!(actual.status, 404, "no such session, but an answer");
    assert_eq!(actual.header("access-control-allow-origin"), Some(APP));
    let vary = actual
        .header("vary")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(vary.contains("origin"), "{vary}");
    let other = http_request(
        server.addr,
        "GET",
        "/api/sessions/x",
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(other.status, 404);
    assert_eq!(other.header("access-control-allow-origin"), None);
    let health = http_request(server.addr, "GET", "/healthz", &[("Origin", APP)]).await;
    no_cors_headers(&health, "/healthz");
}

#[actix_rt::test]
async fn without_allowed_origins_there_are_no_cors_headers_at_all() {
    let server = TestServer::start_default().await;
    let preflight = http_request(
        server.addr,
        "OPTIONS",
        "/api/sessions/x",
        &[("Origin", APP), ("Access-Control-Request-Method", "GET")],
    )
    .await;
    assert_eq!(preflight.status, 405);
    no_cors_headers(&preflight, "a preflight");
    let actual = http_request(server.addr, "GET", "/api/sessions/x", &[("Origin", APP)]).await;
    no_cors_headers(&actual, "GET /api/sessions/x");
}

#[actix_rt::test]
async fn the_page_and_its_assets_carry_the_security_headers() {
    let server = TestServer::start_default().await;
    for path in [
        "/",
        "/assets/page.js",
        "/assets/page.css",
        "/assets/index.js",
    ] {
        let answer = http_request(server.addr, "GET", path, &[]).await;
        assert_eq!(answer.status, 200, "{path}");
        let csp = answer
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path} has no Content-Security-Policy"));
        assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        let websocket = format!("connect-src 'self' ws://{0} wss://{0};", server.addr);
        assert!(csp.contains(&websocket), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(!csp.contains('*'), "{path}: {csp}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(answer.header("cache-control"), Some("no-cache"), "{path}");
    }
}

#[actix_rt::test]
async fn api_answers_carry_cache_control_no_store() {
    let mut args = test_args();
    args.api_key = vec!["key".into()];
    let server = TestServer::start(args).await;
    let mut member = WsClient::connect(&server.ws_url()).await;
    member.join("x").await;
    for (method, path, status) in [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/api/sessions/x", 200),
        ("GET", "/api/sessions/unknown", 404),
        ("GET", "/api/sessions/not%20valid", 400),
        ("GET", "/api/server/sessions", 401),
        ("POST", "/api/server/presence", 401),
        ("GET", "/api/nope", 404),
    ] {
        let answer = http_request(server.addr, method, path, &[]).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        assert_eq!(
            answer.header("cache-control"),
            Some("no-store"),
            "{method} {path}"
        );
    }
}

#[actix_rt::test]
async fn metrics_token_is_required_when_set() {
    let mut args = test_args();
    args.metrics_token = Some("metrics-s3cret".into());
    let server = TestServer::start(args).await;
    for (what, headers) in [
        ("no token", vec![]),
        (
            "a wrong token",
            vec![("Authorization", "Bearer metrics-s3cre")],
        ),
        (
            "a longer token",
            vec![("Authorization", "Bearer metrics-s3cret0")],
        ),
        (
            "another scheme",
            vec![("Authorization", "Basic metrics-s3cret")],
        ),
    ] {
        let answer = http_request(server.addr, "GET", "/metrics", &headers).await;
        assert_json_error(&answer, 401, "unauthorized", what);
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{what}");
        assert!(!answer.body.contains("rollcall_"), "{what}: metrics leaked");
    }
    let right = [("Authorization", "Bearer metrics-s3cret")];
    let answer = http_request(server.addr, "GET", "/metrics", &right).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        answer.headers
    );
    let head = http_request(server.addr, "HEAD", "/metrics", &right).await;
    assert_eq!(head.status, 200);
    // Only /metrics: health and readiness stay open for probes.
    let health = http_request(server.addr, "GET", "/healthz", &[]).await;
    assert_eq!(health.status, 200);
}

#[actix_rt::test]
async fn readyz_names_states_but_never_the_database_error() {
    // A Postgres that cannot be reached: every connection through the cut proxy fails.
    let proxy = TcpProxy::start(postgres_addr(&admin_url()));
    proxy.cut();
    let mut args = test_args();
    args.database_url = with_host(&admin_url(), proxy.addr());
    let server = TestServer::start(args).await;
    let mut last = None;
    let down = eventually(Duration::from_secs(10), async || {
        let answer = http_request(server.addr, "GET", "/readyz", &[]).await;
        let down = answer.status == 503 && answer.json()["database"]["state"] == "down";
        last = Some(answer);
        down
    })
    .await;
    let answer = last.expect("at least one answer");
    assert!(
        down,
        "/readyz never said the database is down: {}",
        answer.body
    );
    let body = answer.json();
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["store"]["state"], "up", "{body}");
    assert_eq!(body["lease"], "held", "{body}");
    assert!(body["database"].get("error").is_none(), "{body}");
    let text = answer.body.to_ascii_lowercase();
    let port = proxy.addr().port().to_string();
    for leak in [
        "error",
        "refused",
        "closed",
        "connect",
        "server",
        "127.0.0.1",
        &port,
    ] {
        assert!(
            !text.contains(leak),
            "/readyz shows {leak:?}: {}",
            answer.body
        );
    }
    // A read the database must answer fails with a message of the server's own.
    let answer = http_request(server.addr, "GET", "/api/sessions/never-seen", &[]).await;
    assert_json_error(
        &answer,
        503,
        "unavailable",
        "a session read without the database",
    );
    assert_eq!(
        answer.json()["error"]["message"],
        "the database is unreachable; try again later"
    );
}

/// The real binary (its log at `info,rollcall=debug`) under a flood of bad frames and malformed
/// HTTP requests: no `ERROR` line, and the per-frame lines stay within the log limiter's budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_frames_and_malformed_requests_cannot_flood_the_log() {
    const FRAMES: usize = 600;
    let redis = RedisServer::start();
    let no_rate_limit = [
        "--rate-limit-per-second",
        "100000",
        "--rate-limit-burst",
        "100000",
    ];
    let mut process = RollcallProcess::start(&redis.url(), "log-flood", &no_rate_limit).await;
    let started = Instant::now();
    let mut client = WsClient::connect(&process.ws_url()).await;
    for i in 0..FRAMES {
        client.send_text(format!("not json {i}"));
    }
    for _ in 0..FRAMES {
        client
            .expect("the bad_request of a bad frame", |f| {
                f["type"] == "error" && f["code"] == "bad_request"
            })
            .await;
    }
    for _ in 0..50 {
        let mut tcp = tokio::net::TcpStream::connect(process.addr)
            .await
            .expect("connect");
        tcp.write_all(b"GARBAGE \x01\x02 HTTP/9\r\n\r\n")
            .await
            .expect("send a malformed request");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the server closes a malformed request");
        assert!(
            answer.starts_with(b"HTTP/1.1 400"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let elapsed = started.elapsed();
    // The server is still serving.
    assert_eq!(
        http_request(process.addr, "GET", "/healthz", &[])
            .await
            .status,
        200
    );
    let log = std::fs::read_to_string(process.log_path()).expect("the process log");
    assert!(
        !log.contains("ERROR"),
        "a client wrote ERROR lines: {}",
        process.log_tail()
    );
    let refused = log
        .lines()
        .filter(|l| l.contains("request refused"))
        .count();
    let budget = 20 * (elapsed.as_secs() as usize + 2);
    assert!(
        refused >= 1,
        "bad frames are logged at debug: {}",
        process.log_tail()
    );
    assert!(
        refused <= budget,
        "{refused} lines for {FRAMES} bad frames in {elapsed:?} (budget {budget})"
    );
    println!("{FRAMES} bad frames in {elapsed:?}: {refused} log lines");
    process.terminate(Duration::from_secs(10));
}
