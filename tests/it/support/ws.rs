//! A WebSocket test client that records every frame it receives.
//!
//! One background task owns the socket: it reads continuously (so WebSocket pings are answered, as a
//! real client's would be), records every text frame as JSON, and writes what the test sends. A test
//! can [`WsClient::freeze`] that task to play a client that stopped answering (a half-open socket),
//! or [`WsClient::abort`] it to drop the TCP connection without a close frame.
//!
//! Frames land in an inbox. [`WsClient::request`] sends a request with a fresh `id` and takes the
//! reply with that `id` out of the inbox; [`WsClient::expect`] takes the first frame matching a
//! predicate. Frames not taken stay in the inbox, and every frame also stays in [`WsClient::log`],
//! from which [`SessionModel`] rebuilds a client's view of a session.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::server::WAIT;

/// What the socket task reports.
#[derive(Debug)]
enum Incoming {
    Frame(Value),
    /// A frame the protocol never sends (binary, or text that is not JSON).
    Unexpected(String),
    /// The socket ended; the close code if the server sent a close frame.
    Closed(Option<(u16, String)>),
}

/// What the test asks the socket task to do.
#[derive(Debug)]
enum Command {
    Send(Message),
    /// Stop reading and writing until `Thaw` (pings go unanswered).
    Freeze,
    Thaw,
    /// Drop the TCP connection without a close frame.
    Abort,
}

pub struct WsClient {
    /// This connection's id, from `welcome`.
    pub connection: String,
    pub welcome: Value,
    log: Vec<Value>,
    inbox: VecDeque<Value>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    tx: mpsc::UnboundedSender<Command>,
    closed: Option<Option<(u16, String)>>,
    next_id: u64,
    name: String,
}

impl WsClient {
    /// Connects to `url` and reads the `welcome` frame, which must be the first.
    pub async fn connect(url: &str) -> WsClient {
        let (socket, _response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("WebSocket connect to {url} timed out"))
            .unwrap_or_else(|e| panic!("WebSocket connect to {url} failed: {e}"));
        let (in_tx, rx) = mpsc::unbounded_channel();
        let (tx, cmd_rx) = mpsc::unbounded_channel();
        tokio::spawn(socket_task(socket, in_tx, cmd_rx));
        let mut client = WsClient {
            connection: String::new(),
            welcome: Value::Null,
            log: Vec::new(),
            inbox: VecDeque::new(),
            rx,
            tx,
            closed: None,
            next_id: 0,
            name: String::from("client"),
        };
        let welcome = client.next_frame(WAIT).await;
        assert_eq!(
            welcome["type"], "welcome",
            "the first frame must be welcome, got {welcome}"
        );
        client.connection = welcome["connection"]
            .as_str()
            .expect("welcome.connection is a string")
            .to_owned();
        client.name = format!("client {}", &client.connection[..8]);
        client.welcome = welcome;
        client
    }

    /// Every frame received so far, in order (including `welcome`).
    pub fn log(&self) -> &[Value] {
        &self.log
    }

    /// Receives whatever has already arrived, without waiting.
    pub fn drain_ready(&mut self) {
        while let Ok(incoming) = self.rx.try_recv() {
            self.accept(incoming);
        }
    }

    fn accept(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Frame(frame) => {
                self.log.push(frame.clone());
                self.inbox.push_back(frame);
            }
            Incoming::Unexpected(what) => panic!("{}: unexpected frame {what}", self.name),
            Incoming::Closed(code) => self.closed = Some(code),
        }
    }

    /// Waits for one more frame from the socket until `deadline`; `false` on timeout or close.
    async fn pump(&mut self, deadline: Instant) -> bool {
        if self.closed.is_some() {
            return false;
        }
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(incoming)) => {
                self.accept(incoming);
                true
            }
            Ok(None) => {
                self.closed.get_or_insert(None);
                false
            }
            Err(_) => false,
        }
    }

    /// The next frame not yet taken, whatever it is.
    pub async fn next_frame(&mut self, timeout: Duration) -> Value {
        self.expect_within("any frame", |_| true, timeout).await
    }

    /// Takes the first frame (received or still to come) for which `pred` holds.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(what, pred, WAIT).await
    }

    pub async fn expect_within(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        match self.try_expect(&pred, timeout).await {
            Some(frame) => frame,
            None => panic!(
                "{}: no frame matching {what} within {timeout:?} (closed: {:?}); frames not taken: {:#?}",
                self.name, self.closed, self.inbox
            ),
        }
    }

    /// Like [`WsClient::expect_within`], `None` instead of a panic.
    pub async fn try_expect(
        &mut self,
        pred: &impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            if let Some(pos) = self.inbox.iter().skip(checked).position(pred) {
                return self.inbox.remove(checked + pos);
            }
            checked = self.inbox.len();
            if !self.pump(deadline).await {
                // A last look at frames that raced with the deadline or the close.
                self.drain_ready();
                let pos = self.inbox.iter().skip(checked).position(pred)?;
                return self.inbox.remove(checked + pos);
            }
        }
    }

    /// Takes the first event of `kind` for `session`.
    pub async fn expect_event(&mut self, kind: &str, session: &str) -> Value {
        let what = format!("{kind} in {session}");
        self.expect(&what, |f| f["type"] == kind && f["session"] == session)
            .await
    }

    /// Frames of `kind` not taken yet that have arrived by now.
    pub fn pending_of(&mut self, kind: &str) -> Vec<Value> {
        self.drain_ready();
        self.inbox
            .iter()
            .filter(|f| f["type"] == kind)
            .cloned()
            .collect()
    }

    pub fn send_text(&self, text: impl Into<String>) {
        let text: String = text.into();
        self.tx
            .send(Command::Send(Message::Text(text.into())))
            .expect("the socket task is gone");
    }

    pub fn send_binary(&self, bytes: Vec<u8>) {
        self.tx
            .send(Command::Send(Message::Binary(bytes.into())))
            .expect("the socket task is gone");
    }

    pub fn send_json(&self, value: &Value) {
        self.send_text(value.to_string());
    }

    /// Sends `request` with a fresh integer `id` and returns the direct reply (any type, `error`
    /// included) carrying that id.
    pub async fn request(&mut self, mut request: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        request["id"] = json!(id);
        self.send_json(&request);
        let what = format!("the reply to {request}");
        self.expect(&what, move |f| f["id"] == json!(id)).await
    }

    /// Sends `request` and asserts that the reply is of type `kind`.
    pub async fn request_ok(&mut self, request: Value, kind: &str) -> Value {
        let reply = self.request(request.clone()).await;
        assert_eq!(
            reply["type"], kind,
            "{}: {request} should be answered with {kind}, got {reply}",
            self.name
        );
        reply
    }

    /// Sends `request` and asserts that the reply is an `error` with `code`.
    pub async fn request_err(&mut self, request: Value, code: &str) -> Value {
        let reply = self.request(request.clone()).await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some(code)),
            "{}: {request} should fail with {code}, got {reply}",
            self.name
        );
        reply
    }

    pub async fn join(&mut self, session: &str) -> Value {
        self.request_ok(json!({"type": "join", "session": session}), "joined")
            .await
    }

    pub async fn join_as(&mut self, session: &str, name: &str) -> Value {
        self.request_ok(
            json!({"type": "join", "session": session, "name": name}),
            "joined",
        )
        .await
    }

    pub async fn leave(&mut self, session: &str) -> Value {
        self.request_ok(json!({"type": "leave", "session": session}), "left")
            .await
    }

    pub async fn members(&mut self, session: &str) -> Value {
        self.request_ok(json!({"type": "members", "session": session}), "members")
            .await
    }

    /// The `resume` request that carries this client's connection on over another socket, in
    /// `session`, from `version` (the last one applied; `null` for unknown).
    pub fn resume_request(&self, session: &str, version: Value) -> Value {
        serde_json::json!({
            "type": "resume",
            "token": self.welcome["resume_token"],
            "sessions": [{"session": session, "version": version, "offset": null}],
        })
    }

    /// Stops reading and writing: the server's pings go unanswered from now on.
    pub fn freeze(&self) {
        let _ = self.tx.send(Command::Freeze);
    }

    pub fn thaw(&self) {
        let _ = self.tx.send(Command::Thaw);
    }

    /// Drops the TCP connection without a WebSocket close frame.
    pub fn abort(&self) {
        let _ = self.tx.send(Command::Abort);
    }

    /// Sends a normal close frame (1000).
    pub fn close(&self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        let _ = self.tx.send(Command::Send(Message::Close(Some(frame))));
    }

    /// Waits until the server closes the socket; returns the close code it sent (`None` when the
    /// socket ended without a close frame).
    pub async fn closed_with(&mut self, timeout: Duration) -> Option<(u16, String)> {
        let deadline = Instant::now() + timeout;
        while self.closed.is_none() {
            if !self.pump(deadline).await && self.closed.is_none() {
                panic!(
                    "{}: the server did not close the socket within {timeout:?}",
                    self.name
                );
            }
        }
        self.closed.clone().flatten()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }
}

async fn socket_task<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    tx: mpsc::UnboundedSender<Incoming>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut socket = socket;
    let mut close_frame: Option<(u16, String)> = None;
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let item = match serde_json::from_str::<Value>(&text) {
                        Ok(value) => Incoming::Frame(value),
                        Err(_) => Incoming::Unexpected(format!("non-JSON text {text:?}")),
                    };
                    let _ = tx.send(item);
                }
                Some(Ok(Message::Binary(bytes))) => {
                    let _ = tx.send(Incoming::Unexpected(format!("binary frame of {} bytes", bytes.len())));
                }
                Some(Ok(Message::Close(frame))) => {
                    close_frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    // Keep polling: tungstenite answers the close and then ends the stream.
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            command = commands.recv() => match command {
                Some(Command::Send(message)) => {
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
                Some(Command::Freeze) => {
                    // Poll nothing on the socket until thawed or aborted.
                    loop {
                        match commands.recv().await {
                            Some(Command::Thaw) => break,
                            Some(Command::Abort) | None => return report_abort(&tx),
                            Some(_) => {}
                        }
                    }
                }
                Some(Command::Thaw) => {}
                Some(Command::Abort) | None => return report_abort(&tx),
            },
        }
    }
    let _ = tx.send(Incoming::Closed(close_frame));
}

fn report_abort(tx: &mpsc::UnboundedSender<Incoming>) {
    let _ = tx.send(Incoming::Closed(None));
}

/// What one client believes about one session, rebuilt only from the frames it received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionModel {
    pub version: u64,
    pub leader: Option<String>,
    pub epoch: u64,
    /// connection → member object.
    pub members: BTreeMap<String, Value>,
    /// (version, leader, epoch) after every version this client saw.
    pub history: Vec<(u64, Option<String>, u64)>,
    /// Whether the client is (still) in the session.
    pub joined: bool,
}

impl SessionModel {
    /// Replays `log` for `session`: from each `joined` reply on, applies every event, `members`
    /// reply and `snapshot`. Panics when a version goes backwards or an event skips a version.
    pub fn from_log(log: &[Value], session: &str) -> SessionModel {
        let mut model = SessionModel::default();
        for frame in log {
            if frame["session"] != session {
                continue;
            }
            model.apply(frame);
        }
        model
    }

    fn replace(&mut self, frame: &Value) {
        let version = frame["version"].as_u64().expect("version");
        assert!(
            version >= self.version,
            "version went backwards: {} after {}: {frame}",
            version,
            self.version
        );
        self.version = version;
        self.leader = frame["leader"].as_str().map(str::to_owned);
        self.epoch = frame["epoch"].as_u64().expect("epoch");
        self.members = frame["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    m["connection"].as_str().expect("connection").to_owned(),
                    m.clone(),
                )
            })
            .collect();
        self.record();
    }

    fn record(&mut self) {
        match self.history.last_mut() {
            Some(last) if last.0 == self.version => {
                *last = (self.version, self.leader.clone(), self.epoch);
            }
            _ => self
                .history
                .push((self.version, self.leader.clone(), self.epoch)),
        }
    }

    fn step(&mut self, frame: &Value) {
        let version = frame["version"].as_u64().expect("event version");
        assert!(
            version == self.version || version == self.version + 1,
            "an event skipped or reversed versions: at {} got {frame}",
            self.version
        );
        if version != self.version {
            // Every event of the previous version has arrived: check that whole state.
            self.check_leader();
        }
        self.version = version;
    }

    /// A non-empty session has a leader, and it is one of its members. Only meaningful between
    /// changes (within one change, `member_left` of the leader precedes `leader_changed`).
    pub fn check_leader(&self) {
        if !self.joined || self.members.is_empty() {
            return;
        }
        let leader = self
            .leader
            .as_ref()
            .unwrap_or_else(|| panic!("version {} has members and no leader", self.version));
        assert!(
            self.members.contains_key(leader),
            "at version {} the leader {leader} is not a member",
            self.version
        );
    }

    pub fn apply(&mut self, frame: &Value) {
        let kind = frame["type"].as_str().unwrap_or_default();
        match kind {
            "joined" => {
                self.joined = true;
                self.replace(frame);
            }
            "members" | "snapshot" if self.joined => self.replace(frame),
            "left" | "ended" => {
                *self = SessionModel {
                    history: std::mem::take(&mut self.history),
                    ..SessionModel::default()
                };
            }
            "member_joined" | "member_updated" if self.joined => {
                self.step(frame);
                let member = frame["member"].clone();
                let id = member["connection"].as_str().expect("member.connection");
                self.members.insert(id.to_owned(), member);
                self.record();
            }
            "member_left" if self.joined => {
                self.step(frame);
                let id = frame["connection"]
                    .as_str()
                    .expect("member_left.connection");
                self.members.remove(id);
                self.record();
            }
            "leader_changed" if self.joined => {
                self.step(frame);
                self.leader = frame["leader"].as_str().map(str::to_owned);
                let epoch = frame["epoch"].as_u64().expect("epoch");
                assert!(epoch > self.epoch, "epoch did not increase: {frame}");
                self.epoch = epoch;
                self.record();
            }
            "session_ended" if self.joined => {
                self.members.clear();
                self.joined = false;
            }
            _ => {}
        }
    }

    /// The member connection ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }
}

/// The connection ids in a `members`/`joined`/`snapshot` frame or HTTP answer, sorted.
/// Whether `frame` is the `member_left` of `connection` in `session`.
pub fn is_member_left(frame: &Value, session: &str, connection: &str) -> bool {
    frame["type"] == "member_left"
        && frame["session"] == session
        && frame["connection"] == connection
}

pub fn member_ids(frame: &Value) -> Vec<String> {
    let mut ids: Vec<String> = frame["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members list in {frame}"))
        .iter()
        .map(|m| m["connection"].as_str().expect("connection").to_owned())
        .collect();
    ids.sort();
    ids
}
