//! A stand-in for a connection actor: a recipient of [`ToClient`] that keeps every frame the
//! engine sent it, for tests that drive the supervisor and session actors without WebSockets.

use actix::Recipient;
use rollcall::actors::supervisor::Join;
use rollcall::actors::{ReplyFrame, ToClient};
use rollcall::engine::Engine;
use rollcall::model::{Member, Presence};
use serde_json::Value;
use tokio::sync::mpsc;

use super::members::member;
use super::probe::forward;
use super::server::WAIT;

/// A stand-in socket: every frame it was sent, in order.
pub struct Socket {
    pub connection: String,
    rx: mpsc::UnboundedReceiver<ToClient>,
    client: Recipient<ToClient>,
    pub frames: Vec<Value>,
}

impl Socket {
    pub fn new(connection: &str) -> Socket {
        let (client, rx) = forward::<ToClient>();
        Socket {
            connection: connection.to_owned(),
            rx,
            client,
            frames: Vec::new(),
        }
    }

    pub async fn join(&self, engine: &Engine, session: &str, presence: Presence) {
        let join = Join {
            session: session.into(),
            member: Member {
                user: None,
                ..member(&self.connection, &engine.store().instance().incarnation)
            },
            client: self.client.clone(),
            socket: None,
            reply: ReplyFrame::Session { id: None },
            presence,
        };
        let joined = engine.supervisor().send(join).await;
        joined
            .expect("the supervisor answers")
            .unwrap_or_else(|e| panic!("{} could not join: {e:?}", self.connection));
    }

    /// Where the engine sends this socket's frames.
    pub fn client(&self) -> Recipient<ToClient> {
        self.client.clone()
    }

    /// Takes every frame delivered so far.
    pub fn drain(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            self.take(msg);
        }
    }

    fn take(&mut self, msg: ToClient) {
        let parse = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);
        match msg {
            ToClient::Frame(text) => self.frames.push(parse(&text)),
            ToClient::Frames(frames) => self.frames.extend(frames.iter().map(|t| parse(t))),
            ToClient::MembershipEnded { .. }
            | ToClient::Replaced { .. }
            | ToClient::Close { .. } => {}
        }
    }

    /// Waits for the first frame (taken or arriving) matching `pred`.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.drain();
        if let Some(found) = self.frames.iter().find(|f| pred(f)) {
            return found.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(msg)) => {
                    let before = self.frames.len();
                    self.take(msg);
                    if let Some(found) = self.frames[before..].iter().find(|f| pred(f)) {
                        return found.clone();
                    }
                }
                Ok(None) => panic!("{}: socket closed waiting for {what}", self.connection),
                Err(_) => panic!(
                    "{}: no {what} within {WAIT:?}; frames: {:#?}",
                    self.connection, self.frames
                ),
            }
        }
    }

    pub fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.frames.iter().filter(|f| f["type"] == kind).collect()
    }
}
