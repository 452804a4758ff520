//! Server → client frames of docs/protocol.md §1.6.

use bytestring::ByteString;

use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use super::request::RequestId;
use crate::ids::{ConnectionId, SessionId};
use crate::model::{Change, Counts, Event, LeaveReason, Member, SessionView};
use crate::store::{StoredMessage, StreamPosition};

/// Every frame the server sends, tagged by `type`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        connection: ConnectionId,
        user: Option<String>,
        instance: String,
        protocol: u32,
        heartbeat_ms: u64,
        /// Carries this connection on over a new socket (`resume`).
        resume_token: String,
    },
    /// Reply to `resume`: this socket is `connection` from now on.
    Resumed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        connection: ConnectionId,
        resume_token: String,
        sessions: Vec<ResumedSession>,
    },
    Joined {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        session: SessionId,
        you: ConnectionId,
        #[serde(flatten)]
        view: ViewBody,
        /// Only for a `join` with `since`: whether the messages after it follow.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    Left {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        session: SessionId,
        /// The version of the change that removed the member: every change before it has been
        /// sent to the member, none after. Absent when the store had no such member.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    Members {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        session: SessionId,
        #[serde(flatten)]
        view: ViewBody,
    },
    Snapshot {
        session: SessionId,
        #[serde(flatten)]
        view: ViewBody,
    },
    /// Presence mode `counts`: the live counts changed (coalesced, see `--counts-interval-ms`).
    Counts {
        session: SessionId,
        version: u64,
        counts: Counts,
    },
    MemberJoined {
        session: SessionId,
        version: u64,
        member: Member,
    },
    MemberLeft {
        session: SessionId,
        version: u64,
        connection: ConnectionId,
        reason: LeaveReason,
    },
    MemberUpdated {
        session: SessionId,
        version: u64,
        member: Member,
    },
    LeaderChanged {
        session: SessionId,
        version: u64,
        leader: Option<ConnectionId>,
        epoch: u64,
    },
    Message {
        session: SessionId,
        /// The publishing member; null for a message of the application's backend (server API).
        from: Option<ConnectionId>,
        user: Option<String>,
        data: Value,
        /// Its place in the session's stream (absent only for a message from an instance that
        /// predates message history).
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stream: Option<String>,
    },
    SessionEnded {
        session: SessionId,
        /// The leader that ended it; null when the application's backend did (server API).
        by: Option<ConnectionId>,
    },
    /// This connection was removed from `session`, by the application's backend (server API
    /// `kick`) or because a refreshed token no longer allows it: it is no longer a member there;
    /// its socket and its other sessions stay.
    Kicked {
        session: SessionId,
        /// Why, if said.
        reason: Option<String>,
    },
    ProfileUpdated {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Published {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        session: SessionId,
        offset: u64,
        stream: String,
    },
    /// Reply to `history`: the kept messages after its `since`, oldest first.
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        session: SessionId,
        stream: Option<String>,
        messages: Vec<StoredMessage>,
        complete: bool,
    },
    Ended {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        session: SessionId,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// Sent 30 s before the connection's token expires: answer with `refresh`.
    TokenExpiring {
        /// The token's `exp`, in milliseconds since the Unix epoch.
        expires_at: u64,
    },
    /// Reply to `refresh`: the connection carries on under the new token.
    Refreshed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// The new token's `exp`, in milliseconds since the Unix epoch.
        expires_at: u64,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        code: &'static str,
        message: String,
    },
}

/// One session of a `resumed` reply: where it stands, and whether what the client missed follows.
#[derive(Clone, Debug, Serialize)]
pub struct ResumedSession {
    pub session: SessionId,
    pub version: u64,
    pub leader: Option<ConnectionId>,
    pub epoch: u64,
    pub counts: Counts,
    /// `false` when the missed changes could not all be replayed: a `snapshot` follows instead.
    pub recovered: bool,
}

/// The fields a full view carries in `joined`, `members` and `snapshot`.
#[derive(Clone, Debug, Serialize)]
pub struct ViewBody {
    pub version: u64,
    pub leader: Option<ConnectionId>,
    pub epoch: u64,
    pub members: Vec<Member>,
    pub counts: Counts,
    /// The session's message stream and the offset of its latest message (null while unknown).
    pub stream: Option<String>,
    pub offset: Option<u64>,
}

impl From<&SessionView> for ViewBody {
    fn from(view: &SessionView) -> ViewBody {
        ViewBody {
            version: view.version,
            leader: view.leader.clone(),
            epoch: view.epoch,
            members: view.members.clone(),
            counts: view.counts(),
            stream: None,
            offset: None,
        }
    }
}

impl ServerMessage {
    /// A `message` event, at `position` in its session's stream when it has one.
    pub fn message(
        session: &SessionId,
        from: Option<ConnectionId>,
        user: Option<String>,
        data: Value,
        position: Option<&StreamPosition>,
    ) -> ServerMessage {
        ServerMessage::Message {
            session: session.clone(),
            from,
            user,
            data,
            offset: position.map(|p| p.offset),
            stream: position.map(|p| p.stream.clone()),
        }
    }

    pub fn error(id: Option<RequestId>, err: &ApiError) -> ServerMessage {
        ServerMessage::Error {
            id,
            code: err.code.as_str(),
            message: err.message.clone(),
        }
    }

    /// The event frames of one change, in order.
    pub fn from_change(session: &str, change: &Change) -> Vec<ServerMessage> {
        change
            .events
            .iter()
            .map(|event| ServerMessage::from_event(session, change.version, event))
            .collect()
    }

    pub fn from_event(session: &str, version: u64, event: &Event) -> ServerMessage {
        let session = SessionId::from(session);
        match event {
            Event::MemberJoined { member } => ServerMessage::MemberJoined {
                session,
                version,
                member: member.clone(),
            },
            Event::MemberLeft {
                connection, reason, ..
            } => ServerMessage::MemberLeft {
                session,
                version,
                connection: connection.clone(),
                reason: *reason,
            },
            Event::MemberUpdated { member } => ServerMessage::MemberUpdated {
                session,
                version,
                member: member.clone(),
            },
            Event::LeaderChanged { leader, epoch } => ServerMessage::LeaderChanged {
                session,
                version,
                leader: leader.clone(),
                epoch: *epoch,
            },
            Event::SessionEnded { by } => ServerMessage::SessionEnded {
                session,
                by: by.clone(),
            },
        }
    }

    /// Serializes once, so one frame can be fanned out to many sockets without copying: the
    /// WebSocket writer takes a `ByteString` as it is.
    pub fn encode(&self) -> ByteString {
        match serde_json::to_string(self) {
            // Exactly its length: the serializer's spare capacity would live as long as the
            // frame, through every socket's queue.
            Ok(text) => text.into_boxed_str().into(),
            Err(e) => {
                tracing::error!(error = %e, "could not encode a server message");
                r#"{"type":"error","code":"internal","message":"encoding failed"}"#.into()
            }
        }
    }
}
