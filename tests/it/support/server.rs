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
    // The bound tests measure how fast a lost member is removed; the grace tests turn it on.
    args.resume_grace_ms = 0;
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

    /// Two servers with `args` on the Redis at `redis_url` (two instances of one deployment):
    /// the second's instance name is the first's with `-two` appended.
    pub async fn pair_on_redis(mut args: ServeArgs, redis_url: &str) -> (TestServer, TestServer) {
        args.redis_url = Some(redis_url.to_owned());
        let one = TestServer::start(args.clone()).await;
        args.instance_name = Some(format!(
            "{}-two",
            args.instance_name.clone().unwrap_or_default()
        ));
        (one, TestServer::start(args).await)
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
    let (status, _, body) = http_get_text(addr, path, token).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// `POST path` with `body` as it is (JSON or not) and, when given, the server API key in
/// `X-Api-Key`: the status and the JSON body (`Value::Null` when the body is not JSON).
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    api_key: Option<&str>,
    body: impl Into<String>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.into());
    if let Some(key) = api_key {
        request = request.header("X-Api-Key", key);
    }
    let exchange = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    };
    match tokio::time::timeout(WAIT, exchange).await {
        Ok(Ok((status, body))) => (status, serde_json::from_str(&body).unwrap_or(Value::Null)),
        Ok(Err(e)) => panic!("POST {path} failed: {e}"),
        Err(_) => panic!("POST {path} did not answer within {WAIT:?}"),
    }
}

/// `GET path`: the status, the `Content-Type` and the body as text.
pub async fn http_get_text(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let exchange = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok::<_, reqwest::Error>((status, content_type, response.text().await?))
    };
    match tokio::time::timeout(WAIT, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => panic!("GET {path} failed: {e}"),
        Err(_) => panic!("GET {path} did not answer within {WAIT:?}"),
    }
}

/// What [`http_request`] got back: the status, the headers and the body as text.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl HttpAnswer {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Any `method` on `path` with extra `headers` and no body, for the tests of the HTTP conventions
/// (`HEAD`, 405, CORS preflights).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpAnswer {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .unwrap_or_else(|e| panic!("{method:?} is not a method: {e}"));
    let mut request =
        reqwest::Client::new().request(method.clone(), format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let exchange = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Ok::<_, reqwest::Error>(HttpAnswer {
            status,
            headers,
            body: response.text().await?,
        })
    };
    match tokio::time::timeout(WAIT, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => panic!("{method} {path} failed: {e}"),
        Err(_) => panic!("{method} {path} did not answer within {WAIT:?}"),
    }
}
