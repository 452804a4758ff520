//! Starting a rollcall server (in process, on a free port) for a test.
//!
//! Tests run inside an actix system (`#[actix_rt::test]`): the HTTP server is spawned on the
//! test's local task set, its workers run on their own threads. [`TestServer::http_get`] is a small
//! HTTP/1.1 client, so the tests need no HTTP client crate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rollcall::config::ServeArgs;
use rollcall::engine::{Engine, EngineSettings};
use rollcall::server::{self, RunningServer};
use rollcall::store::InstanceId;
use rollcall::store::memory::MemoryBackend;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a test waits for anything it can await (an event, a reply, a close) before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// Default arguments for a test server: a free port on loopback, the in-process store, a unique
/// instance name. Everything else keeps the documented defaults; tests change what they need.
pub fn test_args() -> ServeArgs {
    let mut args = ServeArgs::defaults();
    args.bind = "127.0.0.1:0".parse().expect("loopback address");
    args.redis_url = None;
    // Anonymous connections only; participation records in a private in-memory database.
    args.jwt_secret = None;
    args.allow_anonymous = true;
    args.database_url = "sqlite://:memory:".into();
    args.instance_name = Some(format!(
        "test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    args.shutdown_timeout_ms = 5_000;
    args
}

/// A server started for one test.
pub struct TestServer {
    pub addr: SocketAddr,
    server: Option<RunningServer>,
}

impl TestServer {
    /// Starts a server with `args` (its `bind` should be port 0).
    pub async fn start(args: ServeArgs) -> TestServer {
        let running = server::start(&args)
            .await
            .expect("the test server should start");
        TestServer {
            addr: running.addr,
            server: Some(running),
        }
    }

    /// Starts a server with the default test arguments.
    pub async fn start_default() -> TestServer {
        TestServer::start(test_args()).await
    }

    /// Starts a server whose engine uses `backend`, so that the test can act on the store directly
    /// (for example [`MemoryBackend::reset`], as a Redis restarted empty would).
    pub async fn start_on_backend(args: ServeArgs, backend: &MemoryBackend) -> TestServer {
        let settings = EngineSettings::from_args(&args);
        let (store, feed) = backend.connect(InstanceId::new(settings.instance_name.clone()));
        let engine = Engine::start(Arc::new(store), feed, &settings)
            .await
            .expect("the engine should start");
        let running = server::start_http(engine, &args)
            .await
            .expect("the test server should listen");
        TestServer {
            addr: running.addr,
            server: Some(running),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.running().engine
    }

    fn running(&self) -> &RunningServer {
        self.server
            .as_ref()
            .expect("the server has already been shut down")
    }

    /// `ws://addr/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Graceful stop (`RunningServer::shutdown`), bounded by [`WAIT`] times two.
    pub async fn shutdown(&mut self) {
        let running = self
            .server
            .take()
            .expect("the server has already been shut down");
        tokio::time::timeout(WAIT * 2, running.shutdown())
            .await
            .expect("graceful shutdown should finish within 10 s");
    }

    /// `GET path`: the status and the JSON body (`Value::Null` when the body is not JSON).
    pub async fn http_get(&self, path: &str) -> (u16, Value) {
        http_get(self.addr, path).await
    }
}

/// A minimal HTTP/1.1 `GET` with `Connection: close`, returning the status and the JSON body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    http_get_as(addr, path, None).await
}

/// `GET path` with an optional bearer token: the status and the JSON body (`Null` if not JSON).
pub async fn http_get_as(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the test server");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Accept: */*\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the HTTP request");
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .expect("read the HTTP response");
        raw
    };
    let raw = tokio::time::timeout(WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} did not answer within {WAIT:?}"));
    let text = String::from_utf8(raw).expect("an HTTP response in UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed HTTP response: {text:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
