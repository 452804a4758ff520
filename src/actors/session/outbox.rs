//! Frames on their way to a session's local connections.
//!
//! Every frame the session actor sends goes through here, in order, with its audience. A frame
//! after a quiet batch window (`--message-batch-ms`) goes out at once; frames that follow sooner
//! wait until the window since the last write ends and then reach each socket in one write. A
//! sparse session sees no delay, and a busy one (a big room filling up, a chatty one) costs one
//! write per socket per window instead of one per event.
//!
//! A direct reply (`joined`, `members`) with nothing held for its connection goes at once, so
//! batching never adds to a request's latency, and a member joining a busy session gets its
//! `joined` at once.
//!
//! The audience is resolved when the batch is written, yet a frame reaches exactly the members
//! that were there when it was queued: every frame gets the next sequence number, and a member
//! gets only the frames from the first number after it became local; a member that leaves is
//! first sent what is held for it ([`SessionActor::write_held_for`]). So members may come and go
//! in a busy session without cutting its batch window short.

use std::time::Duration;

use tokio::time::Instant;

use actix::{AsyncContext, Context};
use bytestring::ByteString;

use super::{LocalMember, SessionActor};
use crate::actors::ToClient;
use crate::ids::ConnectionId;
use crate::model::Presence;

/// Who gets a frame.
#[derive(Clone, Debug)]
pub(super) enum Audience {
    Everyone,
    /// Everyone but one (the publisher of a message).
    EveryoneBut(ConnectionId),
    /// The members that track every member (membership events, full snapshots).
    Tracking(Presence),
    /// One connection (a direct reply).
    Only(ConnectionId),
}

impl Audience {
    fn includes(&self, connection: &ConnectionId, local: &LocalMember) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::EveryoneBut(skip) => skip != connection,
            Audience::Tracking(presence) => local.presence == *presence,
            Audience::Only(only) => only == connection,
        }
    }
}

/// A frame on its way, with its sequence number.
struct Outgoing {
    seq: u64,
    frame: ByteString,
    audience: Audience,
}

impl Outgoing {
    fn is_for(&self, connection: &ConnectionId, local: &LocalMember) -> bool {
        self.seq >= local.first_frame && self.audience.includes(connection, local)
    }
}

/// What is held for the batch window.
#[derive(Default)]
pub(super) struct Outbox {
    held: Vec<Outgoing>,
    last_write: Option<Instant>,
    /// The sequence number of the next frame.
    next_seq: u64,
}

impl Outbox {
    /// The first frame a member that becomes local now is to get.
    pub(super) fn next_frame(&self) -> u64 {
        self.next_seq
    }
}

impl SessionActor {
    /// Sends `frame` to `audience`, at once or with the batch (see the module doc).
    pub(super) fn deliver(
        &mut self,
        frame: ByteString,
        audience: Audience,
        ctx: &mut Context<Self>,
    ) {
        let outgoing = Outgoing {
            seq: self.outbox.next_seq,
            frame,
            audience,
        };
        self.outbox.next_seq += 1;
        if let Audience::Only(connection) = &outgoing.audience
            && !self.holds_for(connection)
        {
            // A direct reply with nothing held before it keeps its request's latency: it goes
            // at once and does not count as a write that starts a window for the others.
            self.write(&[outgoing]);
            return;
        }
        let now = Instant::now();
        if self.outbox.held.is_empty() {
            let since_write = self
                .outbox
                .last_write
                .map_or(Duration::MAX, |at| now.duration_since(at));
            if since_write >= self.message_batch {
                self.outbox.last_write = Some(now);
                self.write(&[outgoing]);
                return;
            }
            ctx.run_later(self.message_batch - since_write, |act, _| act.flush());
        }
        self.outbox.held.push(outgoing);
    }

    /// Whether a frame is held for `connection`.
    fn holds_for(&self, connection: &ConnectionId) -> bool {
        self.local
            .get(connection)
            .is_some_and(|local| self.outbox.held.iter().any(|f| f.is_for(connection, local)))
    }

    /// Writes what is held for one member, which is about to leave: the rest waits for the window.
    pub(super) fn write_held_for(&self, connection: &ConnectionId) {
        if let Some(local) = self.local.get(connection) {
            send_held(&self.outbox, connection, local);
        }
    }

    /// Writes what is held now (before the session ends, say, or a reply that must follow).
    pub(super) fn flush(&mut self) {
        if self.outbox.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.outbox.held);
        self.outbox.last_write = Some(Instant::now());
        self.write(&held);
    }

    fn write(&self, frames: &[Outgoing]) {
        let mut shared = SharedMessage::default();
        for (connection, local) in self.local.iter().chain(&self.departing) {
            if let Some(message) = shared.for_member(frames, connection, local) {
                local.client.do_send(message);
            }
        }
    }
}

/// Writes what is held for one member that is no longer local: its socket is gone, or its leave
/// is written.
pub(super) fn send_held(outbox: &Outbox, connection: &ConnectionId, member: &LocalMember) {
    send(member, frames_for(&outbox.held, connection, member));
}

/// Builds the message of each member in turn, and hands the one built for the member before
/// again when a member is to get the same frames: in a fan-out nearly every member is, so a write
/// to a thousand sockets builds its list of frames about once.
#[derive(Default)]
struct SharedMessage {
    /// Indices of the frames the current member is to get.
    picked: Vec<usize>,
    /// Indices of the frames of `last`.
    last_picked: Vec<usize>,
    last: Option<ToClient>,
}

impl SharedMessage {
    fn for_member(
        &mut self,
        frames: &[Outgoing],
        connection: &ConnectionId,
        local: &LocalMember,
    ) -> Option<ToClient> {
        self.picked.clear();
        self.picked.extend(
            frames
                .iter()
                .enumerate()
                .filter(|(_, f)| f.is_for(connection, local))
                .map(|(i, _)| i),
        );
        if self.picked.is_empty() {
            return None;
        }
        if self.picked != self.last_picked || self.last.is_none() {
            let picked = self
                .picked
                .iter()
                .map(|&i| frames[i].frame.clone())
                .collect();
            self.last = message_of(picked);
            std::mem::swap(&mut self.picked, &mut self.last_picked);
        }
        self.last.clone()
    }
}

/// The frames of `frames` that are for one local member, in order.
fn frames_for(
    frames: &[Outgoing],
    connection: &ConnectionId,
    local: &LocalMember,
) -> Vec<ByteString> {
    frames
        .iter()
        .filter(|f| f.is_for(connection, local))
        .map(|f| f.frame.clone())
        .collect()
}

/// One message to a member's connection, whatever the number of frames.
fn send(local: &LocalMember, frames: Vec<ByteString>) {
    if let Some(message) = message_of(frames) {
        local.client.do_send(message);
    }
}

/// The message that writes `frames` to a socket, if there are any.
fn message_of(mut frames: Vec<ByteString>) -> Option<ToClient> {
    match frames.len() {
        0 => None,
        1 => Some(ToClient::Frame(frames.remove(0))),
        _ => Some(ToClient::Frames(frames.into())),
    }
}
