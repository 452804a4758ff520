//! A webhook receiver for tests: an actix-web server on a free loopback port that checks the
//! signature of every request on its own (HMAC-SHA256 computed here, not with rollcall's code),
//! records the events, and can be turned "down" (it then answers 503) or made to hang (it answers
//! nothing until let go).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::eventually;

#[derive(Default)]
struct Received {
    /// Every event of every acknowledged request, in arrival order (redeliveries included).
    events: Vec<Value>,
    /// What was wrong with each refused request.
    refused: Vec<String>,
    /// Requests answered 503 while down.
    turned_away: usize,
    down: bool,
    /// Requests that arrived while hanging (each held until let go, or until its sender gave up).
    held: usize,
    hanging: bool,
}

pub struct Receiver {
    pub url: String,
    secret: String,
    state: Arc<Mutex<Received>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    /// Starts a receiver that checks signatures made with `secret`.
    pub async fn start(secret: &str) -> Receiver {
        let state = Arc::new(Mutex::new(Received::default()));
        let shared = (state.clone(), secret.to_owned());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind the webhook receiver");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver {
            url: format!("http://{addr}/hooks"),
            secret: secret.to_owned(),
            state,
            handle,
        }
    }

    /// `--webhook-url`, `--webhook-secret` for this receiver (and a short retention if asked).
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--webhook-url".into(),
            self.url.clone(),
            "--webhook-secret".into(),
            self.secret.clone(),
        ]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Down: every request is answered 503 (and its events not recorded).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Hanging: every request is held unanswered until [`Receiver::set_hanging`]`(false)`.
    pub fn set_hanging(&self, hanging: bool) {
        self.lock().hanging = hanging;
    }

    /// Requests that arrived while hanging.
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// Requests turned away while down.
    pub fn turned_away(&self) -> usize {
        self.lock().turned_away
    }

    /// Every event received, redeliveries included.
    pub fn all(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// Each event once (its first delivery), in arrival order.
    pub fn unique(&self) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        self.all()
            .into_iter()
            .filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    /// The unique events of `session`.
    pub fn of(&self, session: &str) -> Vec<Value> {
        self.unique()
            .into_iter()
            .filter(|e| e["session"] == session)
            .collect()
    }

    /// Waits until the unique events satisfy `done`, at most `within`; fails naming `what`.
    pub async fn wait_for(&self, within: Duration, what: &str, done: impl Fn(&[Value]) -> bool) {
        let held = eventually(within, async || done(&self.unique())).await;
        if !held {
            let summary: Vec<String> = self.unique().iter().map(summarize).collect();
            panic!(
                "webhooks: not within {within:?}: {what}; {} refused, received:\n{}",
                self.lock().refused.len(),
                summary.join("\n")
            );
        }
    }

    /// Every request had a valid signature and a JSON content type.
    pub fn assert_signatures_valid(&self) {
        let refused = self.lock().refused.clone();
        assert!(refused.is_empty(), "refused requests: {refused:?}");
    }

    /// Per session, the versions of the unique events never go back, and no version is missing
    /// from the first one received to the last.
    pub fn assert_in_order(&self) {
        let mut by_session: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for event in self.unique() {
            let session = event["session"].as_str().expect("a session").to_owned();
            let version = event["version"].as_u64().expect("a version");
            by_session.entry(session).or_default().push(version);
        }
        for (session, versions) in by_session {
            assert!(
                versions.windows(2).all(|w| w[0] <= w[1]),
                "session {session}: versions out of order: {versions:?}"
            );
            let mut distinct = versions.clone();
            distinct.dedup();
            assert!(
                distinct.windows(2).all(|w| w[1] == w[0] + 1),
                "session {session}: a version is missing: {distinct:?}"
            );
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        actix_rt::spawn(async move { handle.stop(false).await });
    }
}

/// `type session version (connection|member.connection) reason`, for failure messages.
pub fn summarize(event: &Value) -> String {
    let who = event["connection"]
        .as_str()
        .or_else(|| event["member"]["connection"].as_str())
        .or_else(|| event["leader"].as_str())
        .unwrap_or("");
    format!(
        "{} {} v{} {} {}",
        event["type"].as_str().unwrap_or("?"),
        event["session"].as_str().unwrap_or("?"),
        event["version"],
        who,
        event["reason"].as_str().unwrap_or("")
    )
}

/// Whether `event` is a `member_left` of `connection` in `session` with `reason`.
pub fn is_left(event: &Value, session: &str, connection: &str, reason: &str) -> bool {
    event["type"] == "member_left"
        && event["session"] == session
        && event["connection"] == connection
        && event["reason"] == reason
}

/// How many unique events of `kind` `events` hold for `session`.
pub fn count(events: &[Value], session: &str, kind: &str) -> usize {
    events
        .iter()
        .filter(|e| e["session"] == session && e["type"] == kind)
        .count()
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<(Arc<Mutex<Received>>, String)>,
) -> HttpResponse {
    let (state, secret) = shared.get_ref();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    if lock().hanging {
        lock().held += 1;
        while lock().hanging {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut state = lock();
    if state.down {
        state.turned_away += 1;
        return HttpResponse::ServiceUnavailable().finish();
    }
    match check(&request, &body, secret) {
        Ok(events) => {
            state.events.extend(events);
            HttpResponse::NoContent().finish()
        }
        Err(why) => {
            state.refused.push(why);
            HttpResponse::Unauthorized().finish()
        }
    }
}

/// Checks a request as a receiver in production would, and returns its events.
fn check(request: &HttpRequest, body: &[u8], secret: &str) -> Result<Vec<Value>, String> {
    if request.method() != actix_web::http::Method::POST {
        return Err(format!("method {}", request.method()));
    }
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    if content_type != Some("application/json") {
        return Err(format!("content type {content_type:?}"));
    }
    let header = request
        .headers()
        .get("x-rollcall-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or("no X-Rollcall-Signature")?;
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .ok_or_else(|| format!("malformed signature {header:?}"))?;
    let t: i64 = t.parse().map_err(|_| format!("bad t in {header:?}"))?;
    let now = chrono::Utc::now().timestamp();
    if (now - t).abs() > 300 {
        return Err(format!("t={t} is {}s from now", now - t));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected != v1 {
        return Err(format!("signature mismatch: {header:?}"));
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    let events = body["events"].as_array().ok_or("no events array")?;
    if events.is_empty() || events.len() > 100 {
        return Err(format!("{} events in one request", events.len()));
    }
    Ok(events.clone())
}
