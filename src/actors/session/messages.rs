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
    pub from: ConnectionId,
    pub user: Option<String>,
    pub data: Value,
    /// Its place, if its publisher's instance numbers messages.
    pub position: Option<StreamPosition>,
}

/// The offset after which messages are missing before `position`, given the latest message
/// delivered (`known`); `None` when nothing is missing.
fn missing_after(known: Option<&StreamPosition>, position: &StreamPosition) -> Option<u64> {
    let known = known.filter(|k| k.stream == position.stream)?;
    (position.offset > known.offset + 1).then_some(known.offset)
}

/// Whether a message at `position` was delivered already (at or below `known` in its stream).
fn seen(known: Option<&StreamPosition>, position: &StreamPosition) -> bool {
    known.is_some_and(|k| k.stream == position.stream && position.offset <= k.offset)
}

/// Reads the messages missing between `known` and `position`, oldest first (none when none are
/// missing, or when the read fails: the message itself is not held back for them).
pub(super) async fn read_missed(
    store: &dyn Store,
    session: &str,
    known: Option<&StreamPosition>,
    position: &StreamPosition,
) -> Vec<StoredMessage> {
    let Some(after) = missing_after(known, position) else {
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
    pub(super) fn learn_position(&mut self, read: Option<Option<StreamPosition>>) {
        if let Some(position) = read
            && !self.position_known
        {
            self.latest_message = position;
            self.position_known = true;
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
        if seen(self.latest_message.as_ref(), &position) {
            return;
        }
        if missing_after(self.latest_message.as_ref(), &position).is_none() {
            self.deliver_message(Vec::new(), message, Audience::Everyone, ctx);
            return;
        }
        let store = self.store.clone();
        let session = self.session.clone();
        let known = self.latest_message.clone();
        ctx.wait(
            async move { read_missed(store.as_ref(), &session, known.as_ref(), &position).await }
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
            if seen(self.latest_message.as_ref(), position) {
                return;
            }
            for kept in missed {
                let at = StreamPosition {
                    stream: position.stream.clone(),
                    offset: kept.offset,
                };
                if kept.offset >= position.offset || seen(self.latest_message.as_ref(), &at) {
                    continue;
                }
                let from = kept.from.clone();
                let frame = stored_frame(&self.session, &position.stream, kept);
                self.deliver(frame, Audience::EveryoneBut(from), ctx);
                self.latest_message = Some(at);
            }
            self.latest_message = Some(position.clone());
            self.position_known = true;
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
    fn a_gap_is_only_within_one_stream() {
        assert_eq!(missing_after(None, &at("a", 5)), None);
        assert_eq!(missing_after(Some(&at("a", 4)), &at("a", 5)), None);
        assert_eq!(missing_after(Some(&at("a", 2)), &at("a", 5)), Some(2));
        assert_eq!(missing_after(Some(&at("b", 2)), &at("a", 5)), None);
        assert_eq!(missing_after(Some(&at("a", 7)), &at("a", 5)), None);
    }

    #[test]
    fn seen_means_at_or_below_in_the_same_stream() {
        assert!(seen(Some(&at("a", 5)), &at("a", 5)));
        assert!(seen(Some(&at("a", 5)), &at("a", 3)));
        assert!(!seen(Some(&at("a", 5)), &at("a", 6)));
        assert!(!seen(Some(&at("b", 5)), &at("a", 3)));
        assert!(!seen(None, &at("a", 1)));
    }
}
