//! What the server API (the application's backend) changed, brought to this instance's own
//! session actors.
//!
//! The store publishes every change and message to every instance subscribed to the session, but
//! an instance ignores its own echo: its session actors hear of their own changes from the request
//! that made them. A server API call has no session actor behind it, so the HTTP handler hands the
//! result to the supervisor, which records a change like any change this instance makes and passes
//! both on to the local session actor, if there is one (the other instances get them from the feed).

use actix::{Context, Handler, Message};
use serde_json::Value;

use super::Supervisor;
use crate::actors::session::RemoteMessage;
use crate::ids::SessionId;
use crate::model::Change;
use crate::store::StreamPosition;

/// A change the server API made in `session` (a kick, an end).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendChange {
    pub session: SessionId,
    pub change: Change,
}

impl Handler<BackendChange> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BackendChange, _ctx: &mut Context<Self>) {
        self.record(&msg.session, &msg.change);
        self.route(&msg.session, msg.change);
    }
}

/// A message the server API published in `session` (`from` null), at `position`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendMessage {
    pub session: SessionId,
    pub data: Value,
    pub position: StreamPosition,
}

impl Handler<BackendMessage> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BackendMessage, _ctx: &mut Context<Self>) {
        if let Some(entry) = self.sessions.get(&msg.session) {
            entry.addr.do_send(RemoteMessage {
                from: None,
                user: None,
                data: msg.data,
                position: Some(msg.position),
            });
        }
    }
}
