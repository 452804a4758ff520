//! One actor per session with members on this instance.
//!
//! It applies every change of its session through the store, one at a time, so the view it delivers
//! advances in version order. Changes made elsewhere arrive from the supervisor as [`RemoteChange`];
//! a change that does not directly follow the current version is never guessed at: the actor reads a
//! snapshot and sends it to its local clients instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Message, Recipient, WrapFuture};

use super::{ChangeRecorder, RecordChange, ToClient};

mod requests;
mod sync;

use crate::ids::{ConnectionId, SessionId};
use crate::model::{Change, Event, LeaveReason, Member, SessionView};
use crate::protocol::reply::{ServerMessage, ViewBody};
use crate::store::{Floor, Store};
pub use requests::{EndSession, JoinLocal, Leave, Publish, ReadMembers, UpdateProfile};
pub use sync::{CurrentView, Reconcile, RemoteChange, RemoteMessage, Retire, ShutdownSession};

/// Where a session actor reports to whoever owns it (the supervisor in an engine, a probe in a test).
/// Recipients, not the owner's address, so the session actor knows nothing of its owner's type.
#[derive(Clone)]
pub struct SessionOwner {
    pub local_count: Recipient<LocalCount>,
    pub orphaned: Recipient<Orphaned>,
}

/// A session actor's number of local members changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LocalCount {
    pub session: SessionId,
    pub count: usize,
}

/// Removals a retired session actor could not get confirmed; retried on every heartbeat.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Orphaned {
    pub session: SessionId,
    pub removals: Vec<PendingRemoval>,
}

/// A removal the store has not confirmed yet (it was unreachable); retried until it is.
#[derive(Clone, Debug)]
pub struct PendingRemoval {
    pub connection: ConnectionId,
    pub reason: LeaveReason,
}

/// A `message` frame held for the batch window, with the member that published it (who does not
/// get its own message back).
struct HeldMessage {
    frame: Arc<str>,
    publisher: Option<ConnectionId>,
}

struct LocalMember {
    member: Member,
    client: Recipient<ToClient>,
}

pub struct SessionActor {
    session: SessionId,
    store: Arc<dyn Store>,
    owner: SessionOwner,
    max_members: usize,
    recorder: Option<ChangeRecorder>,
    /// How long a `message` may wait to share one write with the next ones; zero sends at once.
    message_batch: Duration,
    /// `message` frames waiting for the batch window, each with the member that must not get it.
    pending_messages: Vec<HeldMessage>,
    /// When `message`s last went out.
    last_message_write: Option<Instant>,
    view: SessionView,
    local: HashMap<ConnectionId, LocalMember>,
    /// Local connections whose removal the store has not confirmed yet (it was unreachable).
    pending_removals: Vec<PendingRemoval>,
}

impl SessionActor {
    pub fn new(
        session: SessionId,
        store: Arc<dyn Store>,
        owner: SessionOwner,
        max_members: usize,
        message_batch: Duration,
        recorder: Option<ChangeRecorder>,
    ) -> SessionActor {
        SessionActor {
            session,
            store,
            owner,
            max_members,
            recorder,
            message_batch,
            pending_messages: Vec::new(),
            last_message_write: None,
            view: SessionView::default(),
            local: HashMap::new(),
            pending_removals: Vec::new(),
        }
    }

    /// Sends a frame to every local member but `skip`, after the batched messages before it.
    fn send_frame(&mut self, frame: &Arc<str>, skip: Option<&str>) {
        self.flush_messages();
        self.send_each(frame, skip);
    }

    fn send_each(&self, frame: &Arc<str>, skip: Option<&str>) {
        for (connection, local) in &self.local {
            if Some(connection.as_str()) != skip {
                local.client.do_send(ToClient::Frame(frame.clone()));
            }
        }
    }

    /// Delivers a `message` frame to every local member but `skip`. A message that follows a
    /// whole batch window of quiet goes out at once; one that follows sooner waits until the
    /// window since the last write ends, together with the others that arrive meanwhile. A
    /// sparse session sees no delay, and a busy one costs one write per socket per window
    /// instead of one per message.
    fn deliver_message(
        &mut self,
        frame: Arc<str>,
        publisher: Option<ConnectionId>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let since_write = self
            .last_message_write
            .map_or(Duration::MAX, |at| now.duration_since(at));
        if self.pending_messages.is_empty() {
            if since_write >= self.message_batch {
                self.last_message_write = Some(now);
                self.send_each(&frame, publisher.as_deref());
                return;
            }
            let wait = self.message_batch - since_write;
            ctx.run_later(wait, |act, _| act.flush_messages());
        }
        self.pending_messages.push(HeldMessage { frame, publisher });
    }

    /// Sends the batched messages. It runs before any other frame goes out and before the local
    /// members change, so batching never reorders a socket's frames, and a message reaches
    /// exactly the members that were there when it was published.
    fn flush_messages(&mut self) {
        let pending = std::mem::take(&mut self.pending_messages);
        if pending.is_empty() {
            return;
        }
        self.last_message_write = Some(Instant::now());
        if let [HeldMessage { frame, publisher }] = pending.as_slice() {
            self.send_each(frame, publisher.as_deref());
            return;
        }
        let everyone: Arc<[Arc<str>]> = pending.iter().map(|held| held.frame.clone()).collect();
        for (connection, local) in &self.local {
            let is_publisher = pending
                .iter()
                .any(|held| held.publisher.as_ref() == Some(connection));
            let frames = if is_publisher {
                pending
                    .iter()
                    .filter(|held| held.publisher.as_ref() != Some(connection))
                    .map(|held| held.frame.clone())
                    .collect()
            } else {
                everyone.clone()
            };
            if !frames.is_empty() {
                local.client.do_send(ToClient::Frames(frames));
            }
        }
    }

    /// Hands a change this instance made to the participation recorder.
    fn record(&self, change: &Change) {
        crate::metrics::count_change(change);
        if let Some(recorder) = &self.recorder {
            recorder.do_send(RecordChange {
                session: self.session.clone(),
                change: change.clone(),
            });
        }
    }

    /// Enqueues a frame for one local connection, in order with the events sent to it.
    fn send_to(&mut self, connection: &str, message: ServerMessage) {
        self.flush_messages();
        if let Some(local) = self.local.get(connection) {
            local.client.do_send(ToClient::Frame(message.encode()));
        }
    }

    fn report_count(&self) {
        self.owner.local_count.do_send(LocalCount {
            session: self.session.clone(),
            count: self.local.len(),
        });
    }

    fn snapshot_frame(&self) -> Arc<str> {
        ServerMessage::Snapshot {
            session: self.session.clone(),
            view: ViewBody::from(&self.view),
        }
        .encode()
    }

    /// Applies a change whose events every local member except `skip` should see.
    fn absorb(&mut self, change: &Change, skip: Option<&str>, ctx: &mut Context<Self>) {
        if change.version <= self.view.version {
            return;
        }
        if change.version != self.view.version + 1 {
            metrics::counter!(crate::metrics::EVENT_GAPS).increment(1);
            self.resync(ctx);
            return;
        }
        self.view.apply(change);
        for frame in ServerMessage::from_change(&self.session, change) {
            self.send_frame(&frame.encode(), skip);
        }
        self.after_change(change, ctx);
    }

    /// Consequences of a change for local connections: removed by `end`, or lost by the store.
    fn after_change(&mut self, change: &Change, ctx: &mut Context<Self>) {
        let mut lost_local = false;
        for event in &change.events {
            match event {
                Event::SessionEnded { .. } => {
                    for (_, local) in self.local.drain() {
                        local.client.do_send(ToClient::MembershipEnded {
                            session: self.session.clone(),
                        });
                    }
                    self.report_count();
                }
                Event::MemberLeft {
                    connection,
                    reason: LeaveReason::InstanceLost,
                    ..
                } if self.local.contains_key(connection) => {
                    lost_local = true;
                }
                _ => {}
            }
        }
        if lost_local {
            // Another instance removed members that are alive here (we were thought dead).
            ctx.notify(Reconcile { reassert: true });
        }
    }

    /// Reads the shared view and sends it to every local client as a `snapshot`.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        metrics::counter!(crate::metrics::RESYNCS).increment(1);
        let store = self.store.clone();
        let session = self.session.clone();
        ctx.wait(
            async move { store.view(&session).await }
                .into_actor(self)
                .map(|result, act, _ctx| match result {
                    Ok(Some(view)) if view.version >= act.view.version => {
                        act.view = view;
                        let frame = act.snapshot_frame();
                        act.send_frame(&frame, None);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log_store_failure!(e, session = %act.session, error = %e, "resync failed")
                    }
                }),
        );
    }

    fn floor(&self) -> Floor {
        Floor {
            version: self.view.version,
            epoch: self.view.epoch,
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        tracing::debug!(session = %self.session, "session actor started");
    }
}
