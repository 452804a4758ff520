//! A session's messages reach its local members in stream order, each once.
//!
//! # Why
//! Every message has an offset in its session's stream ([`crate::store::history`]), and clients
//! take one at or below the last offset they applied for a duplicate: a member that got message 7
//! before message 6 would drop 6. Messages reach this actor two ways, its own members' publishes
//! (numbered by the store's answer) and other instances' (over pub/sub, at most once), which can
//! arrive out of step: another instance's message 6 may still be on its way when the store numbers
//! a local one 7. So the actor keeps the position of the latest message it delivered, and a
//! message that does not directly follow it is never delivered blindly: the ones in between are
//! read from the history first (what pub/sub lost, or what is still on its way), delivered in
//! order, and whatever arrives later at or below the position is dropped as seen. A message of
//! another stream (the store lost the history) starts afresh from its own position.

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};
use serde_json::Value;

use super::SessionActor;
use super::outbox::Audience;
use crate::ids::{ConnectionId, SessionId};
use crate::protocol::reply::ServerMessage;
use crate::store::{Store, StoredMessage, StreamPosition};

/// The most missed messages one gap read asks for (the history keeps fewer by default).
const MAX_GAP_READ: u64 = 10_000;

/// A message on its way to the local members.
pub(super) struct Incoming {
    /// `None`: the application's backend (server API).
    pub from: Option<ConnectionId>,
    pub user: Option<String>,
    pub data: Value,
    /// Its place, if its publisher's instance numbers messages.
    pub position: Option<StreamPosition>,
}

/// Where this actor stands in its session's stream: the latest message it delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum LatestMessage {
    /// Not known yet (a fresh actor reads it with its first join).
    #[default]
    Unknown,
    /// The session had no stream: whatever stream comes next is read from its start.
    NoStream,
    At(StreamPosition),
}

impl LatestMessage {
    /// What a store read of the position found.
    pub(super) fn read(position: Option<StreamPosition>) -> LatestMessage {
        position.map_or(LatestMessage::NoStream, LatestMessage::At)
    }

    pub(super) fn position(&self) -> Option<&StreamPosition> {
        match self {
            LatestMessage::At(position) => Some(position),
            LatestMessage::Unknown | LatestMessage::NoStream => None,
        }
    }

    /// The offset after which messages are missing before `position`; `None` when nothing is
    /// (or, not knowing where the actor stands, nothing can be told missing).
    fn missing_after(&self, position: &StreamPosition) -> Option<u64> {
        let after = match self {
            LatestMessage::Unknown => return None,
            LatestMessage::At(known) if known.stream == position.stream => known.offset,
            // A new stream (the store lost the history): read from its start, as for a first.
            LatestMessage::At(_) | LatestMessage::NoStream => 0,
        };
        (position.offset > after + 1).then_some(after)
    }

    /// Whether a message at `position` was delivered already (at or below in its stream).
    fn seen(&self, position: &StreamPosition) -> bool {
        self.position()
            .is_some_and(|k| k.stream == position.stream && position.offset <= k.offset)
    }
}

/// Reads the messages missing between `known` and `position`, oldest first (none when none are
/// missing, or when the read fails: the message itself is not held back for them).
pub(super) async fn read_missed(
    store: &dyn Store,
    session: &str,
    known: &LatestMessage,
    position: &StreamPosition,
) -> Vec<StoredMessage> {
    let Some(after) = known.missing_after(position) else {
        return Vec::new();
    };
    let wanted = (position.offset - after - 1).min(MAX_GAP_READ) as usize;
    match store.history(session, Some(after), wanted).await {
        Ok(page) if page.stream.as_deref() == Some(position.stream.as_str()) => page.messages,
        Ok(_) => Vec::new(),
        Err(e) => {
            log_store_failure!(e, %session, error = %e, "could not read the messages of a gap");
            Vec::new()
        }
    }
}

/// The `message` frame of a kept message.
pub(super) fn stored_frame(
    session: &SessionId,
    stream: &str,
    message: StoredMessage,
) -> bytestring::ByteString {
    let position = StreamPosition {
        stream: stream.to_owned(),
        offset: message.offset,
    };
    ServerMessage::message(
        session,
        message.from,
        message.user,
        message.data,
        Some(&position),
    )
    .encode()
}

impl SessionActor {
    /// Takes the session's latest position read from the store (`None`: not read), unless
    /// messages told it already.
    pub(super) fn learn_position(&mut self, read: Option<LatestMessage>) {
        if let Some(read) = read
            && self.latest_message == LatestMessage::Unknown
        {
            self.latest_message = read;
        }
    }

    /// A message from another instance: delivered to every local member in stream order, after
    /// the ones missing before it (read from the history; the actor waits for them).
    pub(super) fn take_remote_message(&mut self, message: Incoming, ctx: &mut Context<Self>) {
        let Some(position) = message.position.clone() else {
            // Unnumbered: delivered as it comes.
            self.deliver_message(Vec::new(), message, Audience::Everyone, ctx);
            return;
        };
        if self.latest_message.seen(&position) {
            return;
        }
        if self.latest_message.missing_after(&position).is_none() {
            self.deliver_message(Vec::new(), message, Audience::Everyone, ctx);
            return;
        }
        let store = self.store.clone();
        let session = self.session.clone();
        let known = self.latest_message.clone();
        ctx.wait(
            async move { read_missed(store.as_ref(), &session, &known, &position).await }
                .into_actor(self)
                .map(move |missed, act, ctx| {
                    act.deliver_message(missed, message, Audience::Everyone, ctx);
                }),
        );
    }

    /// Delivers `missed` (messages read from the history, oldest first) that are still new, then
    /// `message` to `audience`, and moves the position on. A member never gets its own message.
    pub(super) fn deliver_message(
        &mut self,
        missed: Vec<StoredMessage>,
        message: Incoming,
        audience: Audience,
        ctx: &mut Context<Self>,
    ) {
        if let Some(position) = &message.position {
            if self.latest_message.seen(position) {
                return;
            }
            for kept in missed {
                let at = StreamPosition {
                    stream: position.stream.clone(),
                    offset: kept.offset,
                };
                if kept.offset >= position.offset || self.latest_message.seen(&at) {
                    continue;
                }
                let audience = match kept.from.clone() {
                    Some(from) => Audience::EveryoneBut(from),
                    None => Audience::Everyone,
                };
                let frame = stored_frame(&self.session, &position.stream, kept);
                self.deliver(frame, audience, ctx);
                self.latest_message = LatestMessage::At(at);
            }
            self.latest_message = LatestMessage::At(position.clone());
        }
        let frame = ServerMessage::message(
            &self.session,
            message.from,
            message.user,
            message.data,
            message.position.as_ref(),
        )
        .encode();
        self.deliver(frame, audience, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream: &str, offset: u64) -> StreamPosition {
        StreamPosition {
            stream: stream.into(),
            offset,
        }
    }

    #[test]
    fn a_gap_is_within_one_stream_or_from_the_start_of_a_new_one() {
        let known = LatestMessage::At(at("a", 4));
        assert_eq!(known.missing_after(&at("a", 5)), None);
        assert_eq!(known.missing_after(&at("a", 7)), Some(4));
        assert_eq!(known.missing_after(&at("a", 3)), None);
        assert_eq!(known.missing_after(&at("b", 1)), None);
        assert_eq!(known.missing_after(&at("b", 3)), Some(0), "a new stream");
        assert_eq!(LatestMessage::NoStream.missing_after(&at("a", 1)), None);
        assert_eq!(LatestMessage::NoStream.missing_after(&at("a", 2)), Some(0));
        assert_eq!(LatestMessage::Unknown.missing_after(&at("a", 9)), None);
    }

    #[test]
    fn seen_means_at_or_below_in_the_same_stream() {
        let known = LatestMessage::At(at("a", 5));
        assert!(known.seen(&at("a", 5)));
        assert!(known.seen(&at("a", 3)));
        assert!(!known.seen(&at("a", 6)));
        assert!(!known.seen(&at("b", 3)));
        assert!(!LatestMessage::NoStream.seen(&at("a", 1)));
        assert!(!LatestMessage::Unknown.seen(&at("a", 1)));
    }
}
