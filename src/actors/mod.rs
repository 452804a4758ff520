//! The actors of docs/architecture.md §2: one [`connection::ConnectionActor`] per socket, one
//! [`session::SessionActor`] per session with local members, one [`supervisor::Supervisor`] per
//! instance. Each message type lives next to the actor that handles it.
//!
//! Connections are reached only through a `Recipient<ToClient>`, so tests can stand in for a socket
//! with any actor that handles [`ToClient`].

pub mod connection;
pub mod rate;
pub mod session;
pub mod supervisor;

use std::sync::Arc;

use actix::{Message, Recipient};
use bytestring::ByteString;

use crate::ids::SessionId;
use crate::model::Change;

/// A change this instance made (its own requests, shutdown removals and reaped instances), for
/// whoever records participation. Changes made by other instances are recorded by them.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct RecordChange {
    pub session: SessionId,
    pub change: Change,
}

/// One socket, as opposed to the connection it carries: after a `resume`, a new socket carries
/// the connection an earlier socket did, and the two must not be taken for each other (the old
/// one's late leave must not end the new one's membership).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId(u64);

impl SocketId {
    /// A socket id never given out before in this process.
    pub fn next() -> SocketId {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        SocketId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// Where an engine sends its [`RecordChange`]s.
pub type ChangeRecorder = Recipient<RecordChange>;

/// Who writes the direct reply of a `join` or `members` request. Those replies carry a version, so
/// they must reach the client in order with the events: the session actor enqueues them itself,
/// between the events it sends, when asked to.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ReplyFrame {
    /// The caller builds the reply from the returned value (actor-level callers and tests).
    #[default]
    Caller,
    /// The session actor sends the reply frame to the client, with this request id.
    Session {
        id: Option<crate::protocol::request::RequestId>,
    },
    /// As [`ReplyFrame::Session`], for a `join` with `since`: the `joined` reply says whether the
    /// messages after `since` could be sent (`recovered`), and they follow it.
    SessionSince {
        id: Option<crate::protocol::request::RequestId>,
        since: crate::store::StreamPosition,
    },
}

impl ReplyFrame {
    /// The `since` of a `join` that has one.
    pub fn since(&self) -> Option<&crate::store::StreamPosition> {
        match self {
            ReplyFrame::SessionSince { since, .. } => Some(since),
            ReplyFrame::Caller | ReplyFrame::Session { .. } => None,
        }
    }
}

/// What the engine sends to a client (a socket, or a test recipient standing in for one).
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub enum ToClient {
    /// One encoded JSON frame.
    Frame(ByteString),
    /// Several frames to write at once, in this order (a batch of `message`s, see
    /// `--message-batch-ms`); the client sees the same frames as if each had come alone.
    Frames(Arc<[ByteString]>),
    /// The connection is no longer a member of this session (ended, shut down, or lost).
    MembershipEnded { session: SessionId },
    /// Another socket carries this connection in `session` now (a `resume`): the membership is
    /// no longer this socket's, and the socket is closed with 4001 without leaving.
    Replaced { session: SessionId },
    /// Close the connection with this WebSocket close code (1012 on graceful shutdown).
    Close { code: u16, reason: String },
}
