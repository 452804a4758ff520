//! Frames on their way to a session's local connections.
//!
//! Every frame the session actor sends goes through here, in order, with its audience. A frame
//! after a quiet batch window (`--message-batch-ms`) goes out at once; frames that follow sooner
//! wait until the window since the last write ends and then reach each socket in one write. A
//! sparse session sees no delay, and a busy one (a big room filling up, a chatty one) costs one
//! write per socket per window instead of one per event.
//!
//! A direct reply (`joined`, `members`) with nothing held before it goes at once, so batching
//! never adds to a request's latency when the session was quiet.
//!
//! The audience is resolved when the batch is written, so the actor writes what is held before
//! its local members change ([`SessionActor::flush`]): a frame reaches exactly the members that
//! were there when it was queued.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{AsyncContext, Context};

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

/// What is held for the batch window.
#[derive(Default)]
pub(super) struct Outbox {
    held: Vec<(Arc<str>, Audience)>,
    last_write: Option<Instant>,
}

impl SessionActor {
    /// Sends `frame` to `audience`, at once or with the batch (see the module doc).
    pub(super) fn deliver(&mut self, frame: Arc<str>, audience: Audience, ctx: &mut Context<Self>) {
        if self.outbox.held.is_empty() && matches!(audience, Audience::Only(_)) {
            // A direct reply with nothing held before it keeps its request's latency: it goes
            // at once and does not count as a write that starts a window for the others.
            self.write(&[(frame, audience)]);
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
                self.write(&[(frame, audience)]);
                return;
            }
            ctx.run_later(self.message_batch - since_write, |act, _| act.flush());
        }
        self.outbox.held.push((frame, audience));
    }

    /// Writes what is held. Runs before the local members change.
    pub(super) fn flush(&mut self) {
        if self.outbox.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.outbox.held);
        self.outbox.last_write = Some(Instant::now());
        self.write(&held);
    }

    fn write(&self, frames: &[(Arc<str>, Audience)]) {
        for (connection, local) in &self.local {
            let mine: Vec<Arc<str>> = frames
                .iter()
                .filter(|(_, audience)| audience.includes(connection, local))
                .map(|(frame, _)| frame.clone())
                .collect();
            match mine.len() {
                0 => {}
                1 => local.client.do_send(ToClient::Frame(mine[0].clone())),
                _ => local.client.do_send(ToClient::Frames(mine.into())),
            }
        }
    }
}
