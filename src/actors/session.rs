//! One actor per session with members on this instance.
//!
//! It applies every change of its session through the store, one at a time, so the view it delivers
//! advances in version order. Changes made elsewhere arrive from the supervisor as [`RemoteChange`];
//! a change that does not directly follow the current version is never guessed at: the actor reads a
//! snapshot and sends it to its local clients instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message, Recipient,
    WrapFuture,
};
use serde_json::Value;

use super::{ChangeRecorder, RecordChange, ReplyFrame, ToClient};
use crate::ids::{ConnectionId, SessionId};
use crate::model::{Change, Event, LeaveReason, Member, SessionView};
use crate::protocol::error::ApiError;
use crate::protocol::reply::{ServerMessage, ViewBody};
use crate::store::{Floor, Store, StoreError};

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

/// Join a local connection (sent by the supervisor, which routes every join).
#[derive(Message)]
#[rtype(result = "Result<SessionView, ApiError>")]
pub struct JoinLocal {
    pub member: Member,
    pub client: Recipient<ToClient>,
    pub reply: ReplyFrame,
}

impl Handler<JoinLocal> for SessionActor {
    type Result = AtomicResponse<Self, Result<SessionView, ApiError>>;

    fn handle(&mut self, msg: JoinLocal, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let session = self.session.clone();
        let max_members = self.max_members;
        let mut member = msg.member.clone();
        // The store keys a member's instance by this incarnation (shutdown removal, reaping).
        member.instance = store.instance().incarnation.clone();
        AtomicResponse::new(Box::pin(
            async move { store.join(&session, member, max_members).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let outcome = result?;
                    let connection = msg.member.connection.clone();
                    let joined = outcome
                        .view
                        .member(&connection)
                        .cloned()
                        .unwrap_or(msg.member);
                    act.flush_messages();
                    act.local.insert(
                        connection.clone(),
                        LocalMember {
                            member: joined,
                            client: msg.client,
                        },
                    );
                    if let Some(change) = &outcome.change {
                        act.record(change);
                        if change.version == act.view.version + 1 {
                            act.absorb(change, Some(&connection), ctx);
                        } else if outcome.view.version > act.view.version {
                            let first = act.local.len() == 1;
                            act.view = outcome.view.clone();
                            if !first {
                                let frame = act.snapshot_frame();
                                act.send_frame(&frame, Some(&connection));
                            }
                        }
                    } else if outcome.view.version > act.view.version {
                        act.view = outcome.view.clone();
                    }
                    if let ReplyFrame::Session { id } = msg.reply {
                        let joined = ServerMessage::Joined {
                            id,
                            session: act.session.clone(),
                            you: connection.clone(),
                            view: ViewBody::from(&outcome.view),
                        };
                        act.send_to(&connection, joined);
                    }
                    act.report_count();
                    Ok(outcome.view)
                }),
        ))
    }
}

/// End one local membership.
#[derive(Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct Leave {
    pub connection: ConnectionId,
    pub reason: LeaveReason,
}

impl Handler<Leave> for SessionActor {
    type Result = AtomicResponse<Self, Result<(), ApiError>>;

    fn handle(&mut self, msg: Leave, _ctx: &mut Context<Self>) -> Self::Result {
        self.flush_messages();
        if self.local.remove(&msg.connection).is_none() {
            let session = self.session.clone();
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ApiError::not_member(
                &session,
            )))));
        }
        let store = self.store.clone();
        let session = self.session.clone();
        let connection = msg.connection.clone();
        AtomicResponse::new(Box::pin(
            async move { store.leave(&session, &connection, msg.reason).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let outcome = match result {
                        Ok(Some(change)) => {
                            act.record(&change);
                            act.absorb(&change, None, ctx);
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(e) => {
                            log_store_failure!(
                                e,
                                session = %act.session,
                                connection = %msg.connection,
                                error = %e,
                                "leave not confirmed by the store; will retry on reconcile"
                            );
                            act.pending_removals.push(PendingRemoval {
                                connection: msg.connection,
                                reason: msg.reason,
                            });
                            Err(ApiError::from(e))
                        }
                    };
                    act.report_count();
                    outcome
                }),
        ))
    }
}

/// Replace the name and avatar of a local member.
#[derive(Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct UpdateProfile {
    pub connection: ConnectionId,
    pub name: String,
    pub avatar: Option<String>,
}

impl Handler<UpdateProfile> for SessionActor {
    type Result = AtomicResponse<Self, Result<(), ApiError>>;

    fn handle(&mut self, msg: UpdateProfile, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(local) = self.local.get(&msg.connection) else {
            let err = ApiError::not_member(&self.session);
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(err))));
        };
        let mut member = local.member.clone();
        member.name = msg.name;
        member.avatar = msg.avatar;
        let store = self.store.clone();
        let session = self.session.clone();
        AtomicResponse::new(Box::pin(
            async move { store.update_member(&session, member).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    if let Some(change) = result? {
                        act.record(&change);
                        for event in &change.events {
                            if let Event::MemberUpdated { member } = event
                                && let Some(local) = act.local.get_mut(&member.connection)
                            {
                                local.member = member.clone();
                            }
                        }
                        // The updater sees its own `member_updated` too: it is how every
                        // session it is in confirms the new profile.
                        act.absorb(&change, None, ctx);
                    }
                    Ok(())
                }),
        ))
    }
}

/// Send a `message` to the other members of the session.
#[derive(Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct Publish {
    pub connection: ConnectionId,
    pub data: Value,
}

impl Handler<Publish> for SessionActor {
    type Result = AtomicResponse<Self, Result<(), ApiError>>;

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) -> Self::Result {
        let Some(local) = self.local.get(&msg.connection) else {
            let err = ApiError::not_member(&self.session);
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(err))));
        };
        let user = local.member.user.clone();
        let frame = ServerMessage::Message {
            session: self.session.clone(),
            from: msg.connection.clone(),
            user: user.clone(),
            data: msg.data.clone(),
        }
        .encode();
        self.deliver_message(frame, Some(msg.connection.clone()), ctx);
        let store = self.store.clone();
        let session = self.session.clone();
        AtomicResponse::new(Box::pin(
            async move {
                store
                    .publish(&session, &msg.connection, user.as_deref(), &msg.data)
                    .await
                    .map_err(ApiError::from)
            }
            .into_actor(self),
        ))
    }
}

/// Read the authoritative view (the `members` request). Requires membership.
#[derive(Message)]
#[rtype(result = "Result<SessionView, ApiError>")]
pub struct ReadMembers {
    pub connection: ConnectionId,
    pub reply: ReplyFrame,
}

impl Handler<ReadMembers> for SessionActor {
    type Result = AtomicResponse<Self, Result<SessionView, ApiError>>;

    fn handle(&mut self, msg: ReadMembers, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.local.contains_key(&msg.connection) {
            let err = ApiError::not_member(&self.session);
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(err))));
        }
        let store = self.store.clone();
        let session = self.session.clone();
        AtomicResponse::new(Box::pin(
            async move { store.view(&session).await }
                .into_actor(self)
                .map(move |result, act, _ctx| {
                    let view = result?.unwrap_or_default();
                    if view.version > act.view.version {
                        // The store is ahead of what this actor delivered (an event is still on
                        // its way): the other local clients get the same view as a snapshot.
                        act.view = view.clone();
                        let frame = act.snapshot_frame();
                        act.send_frame(&frame, Some(&msg.connection));
                    }
                    if let ReplyFrame::Session { id } = msg.reply {
                        let members = ServerMessage::Members {
                            id,
                            session: act.session.clone(),
                            view: ViewBody::from(&view),
                        };
                        act.send_to(&msg.connection, members);
                    }
                    Ok(view)
                }),
        ))
    }
}

/// End the session (leader only, fenced by epoch).
#[derive(Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct EndSession {
    pub connection: ConnectionId,
    pub epoch: u64,
}

impl Handler<EndSession> for SessionActor {
    type Result = AtomicResponse<Self, Result<(), ApiError>>;

    fn handle(&mut self, msg: EndSession, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.local.contains_key(&msg.connection) {
            let err = ApiError::not_member(&self.session);
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(err))));
        }
        let store = self.store.clone();
        let session = self.session.clone();
        let connection = msg.connection.clone();
        AtomicResponse::new(Box::pin(
            async move { store.end(&session, &connection, msg.epoch).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let change = result?;
                    act.record(&change);
                    // The ender gets `ended` as its reply, not `session_ended`.
                    act.flush_messages();
                    if let Some(local) = act.local.remove(&msg.connection) {
                        local.client.do_send(ToClient::MembershipEnded {
                            session: act.session.clone(),
                        });
                    }
                    act.absorb(&change, None, ctx);
                    if !act.local.is_empty() {
                        // A gap made `absorb` resync instead of delivering `session_ended`.
                        act.after_change(&change, ctx);
                    }
                    act.report_count();
                    Ok(())
                }),
        ))
    }
}

/// A change made by another instance (or by this instance's reaper), to apply in version order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteChange(pub Change);

impl Handler<RemoteChange> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteChange, ctx: &mut Context<Self>) {
        self.absorb(&msg.0, None, ctx);
    }
}

/// A `message` published by a member on another instance.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteMessage {
    pub from: ConnectionId,
    pub user: Option<String>,
    pub data: Value,
}

impl Handler<RemoteMessage> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteMessage, ctx: &mut Context<Self>) {
        let frame = ServerMessage::Message {
            session: self.session.clone(),
            from: msg.from,
            user: msg.user,
            data: msg.data,
        }
        .encode();
        self.deliver_message(frame, None, ctx);
    }
}

/// Re-read the shared view; with `reassert`, first put local members back if the store lost them.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Reconcile {
    pub reassert: bool,
}

impl Handler<Reconcile> for SessionActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Reconcile, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let session = self.session.clone();
        let members: Vec<Member> = self.local.values().map(|l| l.member.clone()).collect();
        let floor = self.floor();
        let pending = std::mem::take(&mut self.pending_removals);
        AtomicResponse::new(Box::pin(
            async move {
                let mut unconfirmed = Vec::new();
                let mut confirmed = Vec::new();
                for removal in pending {
                    let PendingRemoval { connection, reason } = &removal;
                    match store.leave(&session, connection, *reason).await {
                        Ok(change) => confirmed.extend(change),
                        Err(e) => {
                            log_store_failure!(
                                e,
                                %session,
                                %connection,
                                error = %e,
                                "leave still not confirmed",
                            );
                            unconfirmed.push(removal);
                        }
                    }
                }
                let mut reasserted = false;
                if msg.reassert && !members.is_empty() {
                    reasserted = store.reassert(&session, members, floor).await?.is_some();
                }
                let view = store.view(&session).await?;
                Ok::<_, StoreError>((confirmed, unconfirmed, reasserted, view))
            }
            .into_actor(self)
            .map(move |result, act, ctx| match result {
                Ok((confirmed, unconfirmed, reasserted, view)) => {
                    for change in &confirmed {
                        act.record(change);
                    }
                    act.pending_removals.extend(unconfirmed);
                    let view = view.unwrap_or_default();
                    let missing = act.local.keys().any(|c| view.member(c).is_none());
                    let store_forgot = view.version < act.view.version;
                    if (missing || store_forgot) && view.ended_at.is_none() && !msg.reassert {
                        // The store lost our members (or all of its data): put them back first.
                        ctx.notify(Reconcile { reassert: true });
                        return;
                    }
                    if store_forgot {
                        // Never show clients an older version than they already saw.
                        return;
                    }
                    if reasserted
                        || view.version != act.view.version
                        || view.leader != act.view.leader
                    {
                        act.view = view;
                        let frame = act.snapshot_frame();
                        act.send_frame(&frame, None);
                    }
                }
                Err(e) => {
                    log_store_failure!(
                        e,
                        session = %act.session,
                        error = %e,
                        "reconcile failed; will retry",
                    );
                }
            }),
        ))
    }
}

/// Graceful stop: remove every local member with reason `shutdown` in one store step.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShutdownSession;

impl Handler<ShutdownSession> for SessionActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: ShutdownSession, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let session = self.session.clone();
        let me = store.instance().incarnation.clone();
        self.flush_messages();
        let had_members = !self.local.is_empty();
        let mut clients = Vec::with_capacity(self.local.len());
        for (_, local) in self.local.drain() {
            local.client.do_send(ToClient::MembershipEnded {
                session: self.session.clone(),
            });
            clients.push(local.client);
        }
        AtomicResponse::new(Box::pin(
            async move {
                if had_members {
                    store
                        .remove_instance_members(&session, &me, LeaveReason::Shutdown)
                        .await
                } else {
                    Ok(None)
                }
            }
            .into_actor(self)
            .map(move |result, act, _ctx| {
                match result {
                    Ok(Some(change)) => {
                        act.record(&change);
                        // The local members see who left and why (`shutdown`) before the 1012
                        // close that the supervisor sends once every session is done.
                        for frame in ServerMessage::from_change(&act.session, &change) {
                            let frame = frame.encode();
                            for client in &clients {
                                client.do_send(ToClient::Frame(frame.clone()));
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(session = %act.session, error = %e,
                        "could not remove members at shutdown; the reaper will after the lease"),
                }
                act.report_count();
            }),
        ))
    }
}

/// Stop: the supervisor saw no local member and no join on its way here, and has already dropped
/// this actor from its registry. Removals the store has not confirmed are handed back to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for SessionActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Context<Self>) {
        use actix::ActorContext;
        if !self.local.is_empty() {
            tracing::error!(
                session = %self.session,
                "retire requested with local members; staying",
            );
            return;
        }
        if !self.pending_removals.is_empty() {
            self.owner.orphaned.do_send(Orphaned {
                session: self.session.clone(),
                removals: std::mem::take(&mut self.pending_removals),
            });
        }
        ctx.stop();
    }
}

/// The view this actor last delivered, for tests and diagnostics.
#[derive(Message)]
#[rtype(result = "SessionView")]
pub struct CurrentView;

impl Handler<CurrentView> for SessionActor {
    type Result = actix::MessageResult<CurrentView>;

    fn handle(&mut self, _msg: CurrentView, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(self.view.clone())
    }
}
