//! The session's queue of joins and leaves, written to the store in batches.
//!
//! A join or a leave waits in the queue while the store is busy with the ones before it. When the
//! actor gets to the queue, every request at its front that it can plan in a row
//! ([`Planner`]) goes to the store in one call, and each requester gets its reply in queue
//! order, exactly as if they had been applied one at a time. So a busy session costs the store one
//! call per batch instead of one per request, and an idle one still writes each request at once.
//! A request that cannot be planned (the session's first member, a full or ended session, another
//! instance's member) is applied alone, and so are the requests of a batch the store declined
//! because another instance changed the session meanwhile.

use std::collections::VecDeque;

use actix::{
    ActorFutureExt, AsyncContext, Context, Handler, Message, Recipient, ResponseFuture, WrapFuture,
};
use futures_util::future::join;
use tokio::sync::oneshot;

use super::history::{Recovery, read_position, recover};
use super::messages::LatestMessage;
use super::outbox::Audience;
use super::{LocalMember, Missed, PendingRemoval, SessionActor};
use crate::actors::{ReplyFrame, SocketId, ToClient};
use crate::ids::ConnectionId;
use crate::model::{Change, Event, LeaveReason, Member, Presence, SessionView};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::rules::CountsTracker;
use crate::store::plan::{Plan, Planner};
use crate::store::{JoinOutcome, PlansWritten, StoreError, StoreResult, Whose, plan};

/// Most requests written in one store call.
const MAX_BATCH: usize = 64;

/// A join or leave waiting for the store, with where its answer goes.
pub(super) enum Queued {
    Join {
        msg: JoinLocal,
        reply: oneshot::Sender<Result<SessionView, ApiError>>,
    },
    Leave {
        msg: Leave,
        reply: oneshot::Sender<Result<Option<u64>, ApiError>>,
        /// The socket was lost without a clean end: the member becomes `reconnecting` for the
        /// grace instead of leaving.
        suspend: bool,
    },
}

#[derive(Default)]
pub(super) struct MembershipQueue {
    queued: VecDeque<Queued>,
    /// A [`WriteQueued`] is on its way to the actor.
    scheduled: bool,
    /// Requests at the front to apply one at a time (the store declined their batch).
    one_at_a_time: usize,
}

impl MembershipQueue {
    /// The connections whose leave is queued: no longer local, still in the store.
    pub(super) fn leaving(&self) -> impl Iterator<Item = &ConnectionId> {
        self.queued.iter().filter_map(|request| match request {
            Queued::Leave { msg, .. } => Some(&msg.connection),
            Queued::Join { .. } => None,
        })
    }

    /// Answers every queued request of an instance that is shutting down: a join is refused, and
    /// a leave is done, as the shutdown removes every member of this instance from the store.
    /// Whether there was a leave, whose member the store still has.
    pub(super) fn abandon_at_shutdown(&mut self) -> bool {
        self.one_at_a_time = 0;
        let mut leaves = false;
        for request in self.queued.drain(..) {
            match request {
                Queued::Join { reply, .. } => {
                    let _ = reply.send(Err(ApiError::new(
                        ErrorCode::Unavailable,
                        "this instance is shutting down; reconnect to another",
                    )));
                }
                Queued::Leave { reply, .. } => {
                    leaves = true;
                    let _ = reply.send(Ok(None));
                }
            }
        }
        leaves
    }
}

/// Join a local connection (sent by the supervisor, which routes every join).
#[derive(Message)]
#[rtype(result = "Result<SessionView, ApiError>")]
pub struct JoinLocal {
    pub member: Member,
    pub client: Recipient<ToClient>,
    /// The socket joining, if it is one (see [`Leave::socket`]).
    pub socket: Option<SocketId>,
    pub reply: ReplyFrame,
    pub presence: Presence,
}

impl Handler<JoinLocal> for SessionActor {
    type Result = ResponseFuture<Result<SessionView, ApiError>>;

    fn handle(&mut self, mut msg: JoinLocal, ctx: &mut Context<Self>) -> Self::Result {
        // The store keys a member's instance by this incarnation (shutdown removal, reaping).
        msg.member.instance = self.store.instance().incarnation.clone();
        let (reply, done) = oneshot::channel();
        self.enqueue(Queued::Join { msg, reply }, ctx);
        Box::pin(async move { done.await.unwrap_or_else(|_| Err(closed_before_done())) })
    }
}

/// End one local membership. Answers the version of the change that removed the member, when
/// the store made one: the member has been sent every change before it.
#[derive(Message)]
#[rtype(result = "Result<Option<u64>, ApiError>")]
pub struct Leave {
    pub connection: ConnectionId,
    pub reason: LeaveReason,
    /// The socket leaving: the leave is ignored when another socket carries the connection in
    /// this session now (it was resumed there). `None` leaves whatever socket carries it.
    pub socket: Option<SocketId>,
}

impl Handler<Leave> for SessionActor {
    type Result = ResponseFuture<Result<Option<u64>, ApiError>>;

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) -> Self::Result {
        self.end_local(msg, false, ctx)
    }
}

impl SessionActor {
    /// Ends a local membership: the member leaves, or (`suspend`) becomes `reconnecting`.
    pub(super) fn end_local(
        &mut self,
        msg: Leave,
        suspend: bool,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Option<u64>, ApiError>> {
        let carried_by_another = self.local.get(&msg.connection).is_some_and(|local| {
            msg.socket.is_some() && local.socket.is_some() && local.socket != msg.socket
        });
        if carried_by_another {
            let not_member = ApiError::not_member(&self.session);
            return Box::pin(async move { Err(not_member) });
        }
        let Some(local) = self.local.remove(&msg.connection) else {
            let not_member = ApiError::not_member(&self.session);
            return Box::pin(async move { Err(not_member) });
        };
        if suspend {
            // Its socket is gone: what was queued for it goes now, and nothing more.
            super::outbox::send_held(&self.outbox, &msg.connection, &local);
        } else {
            // It still hears every change made before its leave ([`SessionActor::departing`]).
            self.departing.insert(msg.connection.clone(), local);
        }
        let (reply, done) = oneshot::channel();
        self.enqueue(
            Queued::Leave {
                msg,
                reply,
                suspend,
            },
            ctx,
        );
        Box::pin(async move { done.await.unwrap_or_else(|_| Err(closed_before_done())) })
    }
}

/// The answer to a queued join or leave whose session actor stopped before writing it.
fn closed_before_done() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "the session closed on this instance before the request was applied; try again",
    )
}

/// Write what is queued. Sent by the actor to itself, so that it arrives after the requests
/// already in the mailbox have joined the queue.
#[derive(Message)]
#[rtype(result = "()")]
struct WriteQueued;

impl SessionActor {
    pub(super) fn enqueue(&mut self, request: Queued, ctx: &mut Context<Self>) {
        self.membership.queued.push_back(request);
        self.schedule_write(ctx);
    }

    fn schedule_write(&mut self, ctx: &mut Context<Self>) {
        if !self.membership.scheduled && !self.membership.queued.is_empty() {
            self.membership.scheduled = true;
            ctx.notify(WriteQueued);
        }
    }

    /// Whether the view has `connection` as another instance's member. A leave plan writes this
    /// instance's index entry, so such a leave is left to the store's own logic.
    fn held_elsewhere(&self, connection: &ConnectionId) -> bool {
        let me = &self.store.instance().incarnation;
        self.view
            .member(connection)
            .is_some_and(|m| &m.instance != me)
    }

    /// The plans of the requests at the front of the queue that can be planned in a row.
    fn plan_front(&self) -> Vec<Plan> {
        let mut planner = Planner::new(&self.view, self.max_members);
        let mut plans = Vec::new();
        for request in self.membership.queued.iter().take(MAX_BATCH) {
            let plan = match request {
                // A join with `since` reads the messages its joiner missed: it goes alone.
                Queued::Join { msg, .. } if msg.reply.since().is_some() => None,
                Queued::Join { msg, .. } => planner.join(&msg.member, self.clock.now_ms()),
                Queued::Leave { suspend: true, .. } => None,
                Queued::Leave { msg, .. } if self.held_elsewhere(&msg.connection) => None,
                Queued::Leave { msg, .. } => planner.leave(&msg.connection, msg.reason),
            };
            match plan {
                Some(plan) => plans.push(plan),
                None => break,
            }
        }
        plans
    }

    /// Writes `requests`, planned in a row as `plans`, in one store call.
    fn write_batch(&mut self, requests: Vec<Queued>, plans: Vec<Plan>, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let session = self.session.clone();
        ctx.wait(
            async move {
                let written = store.write_plans(&session, &plans).await;
                (written, plans)
            }
            .into_actor(self)
            .map(move |(written, plans), act, ctx| {
                match written {
                    Ok(PlansWritten::All) => {
                        metrics::counter!(crate::metrics::BATCHES_WRITTEN).increment(1);
                        metrics::counter!(crate::metrics::BATCHED_CHANGES)
                            .increment(plans.len() as u64);
                        for (request, plan) in requests.into_iter().zip(plans) {
                            act.complete(request, Ok(plan.change), ctx);
                        }
                    }
                    Ok(PlansWritten::Declined) => {
                        act.membership.one_at_a_time = requests.len();
                        for request in requests.into_iter().rev() {
                            act.membership.queued.push_front(request);
                        }
                    }
                    Err(e) => {
                        for request in requests {
                            act.complete(request, Err(e.clone()), ctx);
                        }
                    }
                }
                act.schedule_write(ctx);
            }),
        );
    }

    /// Answers a request of a written batch: `Ok` with its change, or the store's error.
    fn complete(&mut self, request: Queued, written: StoreResult<Change>, ctx: &mut Context<Self>) {
        match request {
            Queued::Join { msg, reply } => {
                let done = written.map(|change| (JoinOutcome::Joined(change), None));
                let _ = reply.send(self.finish_join(msg, done, true, None, ctx));
            }
            Queued::Leave { msg, reply, .. } => {
                let _ = reply.send(self.finish_leave(msg, written.map(Some), ctx));
            }
        }
    }

    /// Applies one request through the store, with its own plan when it has one.
    fn write_one(&mut self, request: Queued, ctx: &mut Context<Self>) {
        match request {
            Queued::Join { msg, reply } => self.join_one(msg, reply, ctx),
            Queued::Leave {
                msg,
                reply,
                suspend: true,
            } => self.suspend_one(msg, reply, ctx),
            Queued::Leave { msg, reply, .. } => self.leave_one(msg, reply, ctx),
        }
    }

    fn join_one(
        &mut self,
        msg: JoinLocal,
        reply: oneshot::Sender<Result<SessionView, ApiError>>,
        ctx: &mut Context<Self>,
    ) {
        let store = self.store.clone();
        let session = self.session.clone();
        let max_members = self.max_members;
        // The actor handles nothing else until this join is done, so this stays its version.
        let known = self.view.version;
        let has_view = known > 0;
        let member = msg.member.clone();
        let plan = plan::join(&self.view, &member, self.clock.now_ms(), max_members);
        let since = msg.reply.since().cloned();
        let latest_message = self.latest_message.clone();
        ctx.wait(
            async move {
                let joined = match plan {
                    Some(plan) => store.join_planned(&session, member, max_members, plan),
                    None => store.join(&session, member, max_members),
                };
                // A fresh actor reads the session's message position alongside its first join.
                let unknown = latest_message == LatestMessage::Unknown;
                let (outcome, position) =
                    join(joined, read_position(store.as_ref(), &session, unknown)).await;
                let outcome = outcome?;
                let follows = outcome.change().is_some_and(|c| c.version == known + 1);
                let missed = if follows || (has_view && outcome.change().is_none()) {
                    None
                } else if has_view {
                    match store.changes_since(&session, known).await? {
                        Some(changes) => Some(Missed::Changes(changes)),
                        None => Some(Missed::View(store.view(&session).await?)),
                    }
                } else {
                    // This instance's first member of the session: the one full read.
                    Some(Missed::View(store.view(&session).await?))
                };
                let latest = position.clone().unwrap_or(latest_message);
                let recovery = match &since {
                    Some(since) => {
                        Some(recover(store.as_ref(), &session, since, latest.position()).await)
                    }
                    None => None,
                };
                Ok::<_, StoreError>(((outcome, missed), position, recovery))
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let (result, recovery) = match result {
                    Ok((joined, position, recovery)) => {
                        act.learn_position(position);
                        (Ok(joined), recovery)
                    }
                    Err(e) => (Err(e), None),
                };
                let _ = reply.send(act.finish_join(msg, result, has_view, recovery, ctx));
                act.schedule_write(ctx);
            }),
        );
    }

    /// What a join's requester hears once the store has it: the joiner becomes local, and the
    /// others see the join (and anything missed) first, so the joiner gets its `joined` reply
    /// instead of its own `member_joined`.
    fn finish_join(
        &mut self,
        msg: JoinLocal,
        result: StoreResult<(JoinOutcome, Option<Missed>)>,
        has_view: bool,
        recovery: Option<Recovery>,
        ctx: &mut Context<Self>,
    ) -> Result<SessionView, ApiError> {
        let (outcome, missed) = result?;
        let connection = msg.member.connection.clone();
        if let Some(change) = outcome.change() {
            self.record(change);
        }
        match missed {
            Some(Missed::View(Some(view))) if !has_view => {
                self.view = view;
                self.counts = CountsTracker::of(&self.view.members);
            }
            Some(missed) => self.take_missed(missed, ctx),
            None => {
                if let Some(change) = outcome.change() {
                    self.absorb(change, ctx);
                }
            }
        }
        let joined = self
            .joined_record(&outcome, &connection)
            .unwrap_or(msg.member);
        // A socket that closed while its join was on its way: the member it left behind is lost.
        let socket_gone = !msg.client.connected();
        let socket = msg.socket;
        // Frames held for the members already here are not for the joiner (its `joined` has
        // their changes): it gets the ones from now on.
        self.local.insert(
            connection.clone(),
            LocalMember {
                member: joined,
                client: msg.client,
                socket: msg.socket,
                presence: msg.presence,
                first_frame: self.outbox.next_frame(),
            },
        );
        if msg.presence == Presence::Counts {
            self.counts_changed(ctx);
        }
        let reply_frame_sent = !matches!(msg.reply, ReplyFrame::Caller);
        // `joined`, and after it the messages a joiner with `since` missed (`history.rs`).
        for frame in self.joined_frames(msg.reply, &connection, msg.presence, recovery) {
            self.deliver(frame, Audience::Only(connection.clone()), ctx);
        }
        self.report_count();
        if socket_gone {
            self.lose_orphan(connection, socket, ctx);
        }
        Ok(match reply_frame_sent {
            // The joiner has its list in the reply frame; the caller gets the header.
            true => SessionView {
                members: Vec::new(),
                ..self.view.header()
            },
            false => self.view.clone(),
        })
    }

    /// The member record the store stamped for `connection` (its `joined_at`).
    fn joined_record(&self, outcome: &JoinOutcome, connection: &ConnectionId) -> Option<Member> {
        let stamped = outcome.change().and_then(|change| {
            change.events.iter().find_map(|event| match event {
                Event::MemberJoined { member } if &member.connection == connection => {
                    Some(member.clone())
                }
                _ => None,
            })
        });
        stamped.or_else(|| self.view.member(connection).cloned())
    }

    fn leave_one(
        &mut self,
        msg: Leave,
        reply: oneshot::Sender<Result<Option<u64>, ApiError>>,
        ctx: &mut Context<Self>,
    ) {
        let store = self.store.clone();
        let session = self.session.clone();
        let connection = msg.connection.clone();
        let plan = (!self.held_elsewhere(&connection))
            .then(|| plan::leave(&self.view, &connection, msg.reason))
            .flatten();
        let reason = msg.reason;
        // The actor handles nothing else until this leave is done, so this stays its version.
        let known = self.view.version;
        ctx.wait(
            async move {
                let left = match plan {
                    Some(plan) => store.leave_planned(&session, &connection, reason, plan),
                    None => store.leave(&session, &connection, reason),
                }
                .await?;
                // Another instance's changes came first: the leaver hears them before its `left`.
                let missed = match &left {
                    Some(change) if change.version > known + 1 => {
                        store.changes_since(&session, known).await.ok().flatten()
                    }
                    _ => None,
                };
                Ok((left, missed))
            }
            .into_actor(self)
            .map(move |result: StoreResult<_>, act, ctx| {
                let left = result.map(|(left, missed)| {
                    if let Some(missed) = missed {
                        act.apply_all(&missed, ctx);
                    }
                    left
                });
                let _ = reply.send(act.finish_leave(msg, left, ctx));
                act.schedule_write(ctx);
            }),
        );
    }

    /// Marks a lost member `reconnecting` for the grace; a store that cannot be reached gets the
    /// member's leave retried on reconcile instead, as for a leave.
    fn suspend_one(
        &mut self,
        msg: Leave,
        reply: oneshot::Sender<Result<Option<u64>, ApiError>>,
        ctx: &mut Context<Self>,
    ) {
        if self.local.contains_key(&msg.connection) {
            // Resumed on a new socket here before the loss was written: nothing was lost.
            let _ = reply.send(Ok(None));
            self.schedule_write(ctx);
            return;
        }
        let store = self.store.clone();
        let session = self.session.clone();
        let connection = msg.connection.clone();
        let (reason, grace) = (msg.reason, self.resume_grace);
        ctx.wait(
            async move {
                let whose = Whose::Connection(connection.as_str());
                store.suspend(&session, whose, reason, grace).await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let _ = reply.send(act.finish_leave(msg, result, ctx));
                act.schedule_write(ctx);
            }),
        );
    }

    /// What a leave's requester hears once the store answered; a leave the store did not confirm
    /// is retried on reconcile.
    fn finish_leave(
        &mut self,
        msg: Leave,
        result: StoreResult<Option<Change>>,
        ctx: &mut Context<Self>,
    ) -> Result<Option<u64>, ApiError> {
        let connection = msg.connection.clone();
        let outcome = match result {
            Ok(Some(change)) => {
                self.record(&change);
                // Applying it lets the leaver go, after every change before it.
                self.absorb(&change, ctx);
                Ok(Some(change.version))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                log_store_failure!(
                    e,
                    session = %self.session,
                    connection = %msg.connection,
                    error = %e,
                    "leave not confirmed by the store; will retry on reconcile"
                );
                self.pending_removals.push(PendingRemoval {
                    connection: msg.connection,
                    reason: msg.reason,
                });
                Err(ApiError::from(e))
            }
        };
        // Not let go by its own change (none, not applied yet, or a failed write): it hears no more.
        if let Some(departed) = self.departing.remove(&connection) {
            super::outbox::send_held(&self.outbox, &connection, &departed);
        }
        self.report_count();
        outcome
    }
}

impl Handler<WriteQueued> for SessionActor {
    type Result = ();

    fn handle(&mut self, _msg: WriteQueued, ctx: &mut Context<Self>) {
        self.membership.scheduled = false;
        let plans = match self.membership.one_at_a_time {
            0 => self.plan_front(),
            _ => Vec::new(),
        };
        if plans.len() >= 2 {
            let requests = self.membership.queued.drain(..plans.len()).collect();
            self.write_batch(requests, plans, ctx);
        } else if let Some(request) = self.membership.queued.pop_front() {
            self.membership.one_at_a_time = self.membership.one_at_a_time.saturating_sub(1);
            self.write_one(request, ctx);
        }
    }
}
