//! Reading a session's message history: the `history` request, and a `join` with `since`, whose
//! `joined` reply is followed by the messages the client missed (docs/protocol.md, "Message
//! history").
//!
//! A joiner with `since` is told exactly what its `joined` says: the position there is the
//! actor's (the latest message it delivered), the messages after `since` up to it follow the reply
//! in order, and later ones reach the joiner live like any member. When they cannot all be sent
//! (another stream, or the history no longer reaches back), none are, and the reply says
//! `recovered: false`.

use actix::{Context, Handler, Message, ResponseFuture};
use bytestring::ByteString;

use super::SessionActor;
use super::messages::{LatestMessage, stored_frame};
use crate::actors::ReplyFrame;
use crate::ids::ConnectionId;
use crate::model::Presence;
use crate::protocol::error::ApiError;
use crate::protocol::reply::ServerMessage;
use crate::store::{HistoryPage, Store, StoredMessage, StreamPosition};

/// Read the kept messages after `since` (the `history` request). Requires membership.
#[derive(Message)]
#[rtype(result = "Result<HistoryPage, ApiError>")]
pub struct ReadHistory {
    pub connection: ConnectionId,
    pub since: Option<u64>,
    pub limit: usize,
}

impl Handler<ReadHistory> for SessionActor {
    type Result = ResponseFuture<Result<HistoryPage, ApiError>>;

    fn handle(&mut self, msg: ReadHistory, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.local.contains_key(&msg.connection) {
            let err = ApiError::not_member(&self.session);
            return Box::pin(async move { Err(err) });
        }
        // A read only: the actor goes on with its session meanwhile.
        let store = self.store.clone();
        let session = self.session.clone();
        Box::pin(async move {
            store
                .history(&session, msg.since, msg.limit)
                .await
                .map_err(ApiError::from)
        })
    }
}

/// What follows the `joined` reply of a `join` with `since`.
#[derive(Debug)]
pub(super) enum Recovery {
    /// Every message after `since` up to the reply's position, oldest first (maybe none).
    Messages(Vec<StoredMessage>),
    /// They cannot all be sent: none are.
    Lost,
}

/// The session's latest position, read when the actor has none yet (its first member here);
/// `None` when it need not read, or could not.
pub(super) async fn read_position(
    store: &dyn Store,
    session: &str,
    needed: bool,
) -> Option<LatestMessage> {
    if !needed {
        return None;
    }
    match store.history(session, None, 0).await {
        Ok(page) => Some(LatestMessage::read(page.position())),
        Err(e) => {
            log_store_failure!(e, %session, error = %e, "could not read the message position");
            None
        }
    }
}

/// The messages after `since` up to `latest` (the position the `joined` reply will carry).
pub(super) async fn recover(
    store: &dyn Store,
    session: &str,
    since: &StreamPosition,
    latest: Option<&StreamPosition>,
) -> Recovery {
    let Some(latest) = latest.filter(|l| l.stream == since.stream) else {
        return Recovery::Lost;
    };
    if since.offset >= latest.offset {
        // Nothing missed (a client ahead of this instance gets the rest live, as duplicates).
        return Recovery::Messages(Vec::new());
    }
    let wanted = latest.offset - since.offset;
    let page = match store
        .history(session, Some(since.offset), wanted as usize)
        .await
    {
        Ok(page) => page,
        Err(e) => {
            log_store_failure!(e, %session, error = %e, "could not read the messages a joiner missed");
            return Recovery::Lost;
        }
    };
    if page.stream.as_deref() != Some(since.stream.as_str()) || !page.complete {
        return Recovery::Lost;
    }
    let messages: Vec<StoredMessage> = page
        .messages
        .into_iter()
        .take_while(|m| m.offset <= latest.offset)
        .collect();
    match messages.last() {
        Some(last) if last.offset == latest.offset && messages.len() as u64 == wanted => {
            Recovery::Messages(messages)
        }
        _ => Recovery::Lost,
    }
}

impl SessionActor {
    /// The `joined` reply of a local joiner (`reply` says to whom and whether with `since`) and,
    /// after it, the messages it missed.
    pub(super) fn joined_frames(
        &self,
        reply: ReplyFrame,
        connection: &ConnectionId,
        presence: Presence,
        recovery: Option<Recovery>,
    ) -> Vec<ByteString> {
        let (id, recovered, missed) = match (reply, recovery) {
            (ReplyFrame::Caller, _) => return Vec::new(),
            (ReplyFrame::Session { id }, _) => (id, None, Vec::new()),
            (ReplyFrame::SessionSince { id, .. }, Some(Recovery::Messages(missed))) => {
                (id, Some(true), missed)
            }
            (ReplyFrame::SessionSince { id, .. }, _) => (id, Some(false), Vec::new()),
        };
        let joined = ServerMessage::Joined {
            id,
            session: self.session.clone(),
            you: connection.clone(),
            view: self.view_body(presence, connection),
            recovered,
        };
        let mut frames = vec![joined.encode()];
        if let Some(latest) = self.latest_message.position() {
            frames.extend(
                missed
                    .into_iter()
                    // A member never gets its own message (an idempotent re-join's).
                    .filter(|m| m.from.as_ref() != Some(connection))
                    .map(|m| stored_frame(&self.session, &latest.stream, m)),
            );
        }
        frames
    }
}
