//! `publish` and `history`: a member's messages, and reading back the ones its session keeps
//! (docs/protocol.md, "Message history").

use actix_web_actors::ws;
use serde_json::Value;

use super::ConnectionActor;
use crate::actors::session::{Publish, ReadHistory};
use crate::ids::SessionId;
use crate::protocol::reply::ServerMessage;
use crate::protocol::request::RequestId;

impl ConnectionActor {
    /// `publish`: answered with `published`, which carries the message's place in its stream.
    pub(super) fn publish(
        &mut self,
        id: Option<RequestId>,
        session: SessionId,
        data: Value,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let addr = match self.session_addr(&session) {
            Ok(addr) => addr,
            Err(e) => return self.send_error(ctx, id, &e),
        };
        let publish = Publish {
            connection: self.id.clone(),
            data,
        };
        self.ask(&addr, publish, id.clone(), ctx, move |_, position| {
            Some(ServerMessage::Published {
                id,
                session,
                offset: position.offset,
                stream: position.stream,
            })
        });
    }

    /// `history`: the kept messages after `since`, at most `limit`. Requires membership.
    pub(super) fn read_history(
        &mut self,
        id: Option<RequestId>,
        session: SessionId,
        since: Option<u64>,
        limit: usize,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let addr = match self.session_addr(&session) {
            Ok(addr) => addr,
            Err(e) => return self.send_error(ctx, id, &e),
        };
        let read = ReadHistory {
            connection: self.id.clone(),
            since,
            limit,
        };
        self.ask(&addr, read, id.clone(), ctx, move |_, page| {
            Some(ServerMessage::History {
                id,
                session,
                stream: page.stream,
                messages: page.messages,
                complete: page.complete,
            })
        });
    }
}
