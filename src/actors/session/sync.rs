//! Keeping the actor in step with the shared state: changes and messages from other instances,
//! reconciliation after a gap or a store failure, graceful stop and retirement.

use std::collections::HashSet;
use std::time::Duration;

use actix::{
    ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message, Recipient, WrapFuture,
};
use serde_json::Value;

use super::messages::Incoming;
use super::{Orphaned, PendingRemoval, SessionActor};
use crate::actors::ToClient;
use crate::ids::ConnectionId;
use crate::model::{Change, Event, LeaveReason, Member, Presence, SessionView};
use crate::protocol::reply::ServerMessage;
use crate::store::reaping::let_go;
use crate::store::{StoreError, StreamPosition};

/// A change made by another instance (or by this instance's reaper), to apply in version order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteChange(pub Change);

impl Handler<RemoteChange> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteChange, ctx: &mut Context<Self>) {
        self.absorb(&msg.0, ctx);
    }
}

/// A `message` published by a member on another instance.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteMessage {
    /// `None`: the application's backend (server API).
    pub from: Option<ConnectionId>,
    pub user: Option<String>,
    pub data: Value,
    /// Its place in the session's stream (`None` from an instance without message history).
    pub position: Option<StreamPosition>,
}

impl Handler<RemoteMessage> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteMessage, ctx: &mut Context<Self>) {
        let message = Incoming {
            from: msg.from,
            user: msg.user,
            data: msg.data,
            position: msg.position,
        };
        self.take_remote_message(message, ctx);
    }
}

/// Re-read the shared view; with `reassert`, first put local members back if the store lost them.
/// Members the store lists under this instance that it does not hold (strays: a join that timed
/// out and ran when the store woke up, a leave a failover lost) are removed with `member_left`.
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
        let held = self.held();
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
                let me = &store.instance().incarnation;
                let strays = view.as_ref().is_some_and(|view| {
                    let held: HashSet<&ConnectionId> = held.iter().collect();
                    view.members
                        .iter()
                        .any(|m| &m.instance == me && !held.contains(&m.connection))
                });
                let removed = match strays {
                    true => {
                        tracing::warn!(%session, "the store lists members of this instance that it does not hold; removing them");
                        store
                            .remove_strays(&session, &held, LeaveReason::Disconnected)
                            .await?
                    }
                    false => None,
                };
                Ok::<_, StoreError>((confirmed, unconfirmed, reasserted, view, removed))
            }
            .into_actor(self)
            .map(move |result, act, ctx| match result {
                Ok((confirmed, unconfirmed, reasserted, view, removed)) => {
                    for change in confirmed.iter().chain(&removed) {
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
                        act.replace_view(view, ctx);
                    }
                    if let Some(change) = removed {
                        act.absorb(&change, ctx);
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

impl SessionActor {
    /// Local members whose connection actor is gone without a leave (it stopped while their join
    /// was on its way, after the join looked at it): lost like any socket that ends without a
    /// close, at the next heartbeat.
    fn lose_vanished_sockets(&mut self, ctx: &mut Context<Self>) {
        let vanished: Vec<(ConnectionId, Option<crate::actors::SocketId>)> = self
            .local
            .iter()
            .filter(|(_, local)| !local.client.connected())
            .map(|(connection, local)| (connection.clone(), local.socket))
            .collect();
        for (connection, socket) in vanished {
            tracing::debug!(session = %self.session, %connection,
                "the member's socket is gone without a leave; it is lost");
            self.lose_orphan(connection, socket, ctx);
        }
    }
}

/// Compare what the store lists under this instance with what the actor holds (every heartbeat).
/// A difference, or a removal the store has not confirmed yet, makes the actor reconcile, so a
/// member listed here that nobody holds is gone within one heartbeat of the store answering.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Audit;

impl Handler<Audit> for SessionActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Audit, ctx: &mut Context<Self>) -> Self::Result {
        self.lose_vanished_sockets(ctx);
        let store = self.store.clone();
        let session = self.session.clone();
        let expected = (self.local.len() + self.membership.leaving().count()) as u64;
        AtomicResponse::new(Box::pin(
            async move { store.held_count(&session).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(listed) if listed == expected && act.pending_removals.is_empty() => {}
                    Ok(listed) => {
                        tracing::debug!(session = %act.session, listed, expected,
                            "the store's members of this instance differ from the local ones; reconciling");
                        ctx.notify(Reconcile { reassert: false });
                    }
                    Err(e) => {
                        log_store_failure!(e, session = %act.session, error = %e, "audit failed")
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
        let grace = self.resume_grace;
        let queued_leaves = self.membership.abandon_at_shutdown();
        self.flush();
        let had_members = queued_leaves || !self.local.is_empty();
        let mut clients = Vec::with_capacity(self.local.len());
        for (_, local) in self.local.drain() {
            local.client.do_send(ToClient::MembershipEnded {
                session: self.session.clone(),
            });
            clients.push((local.client, local.presence));
        }
        AtomicResponse::new(Box::pin(
            async move {
                // With a grace, the members keep their place while their clients resume on another
                // instance; those that do not come back leave with `shutdown`. An in-process store
                // has no other instance: its members leave now, reconnecting ones included.
                let in_process = store.kind() == "memory";
                let grace = if in_process { Duration::ZERO } else { grace };
                let mut changes = Vec::new();
                if in_process {
                    changes.extend(store.end_graces(&session).await?);
                }
                if had_members {
                    let shutdown = LeaveReason::Shutdown;
                    let store = store.as_ref();
                    changes.extend(let_go(store, &session, &me, shutdown, grace).await?);
                }
                Ok::<_, StoreError>(changes)
            }
            .into_actor(self)
            .map(move |result, act, _ctx| {
                match result {
                    Ok(changes) => {
                        for change in changes {
                            act.record(&change);
                            // The local members see who left and why (`shutdown`) before the
                            // 1012 close that the supervisor sends once every session is done.
                            act.tell_at_shutdown(&change, &clients);
                        }
                    }
                    Err(e) => tracing::error!(session = %act.session, error = %e,
                        "could not remove members at shutdown; the reaper will after the lease"),
                }
                act.report_count();
            }),
        ))
    }
}

impl SessionActor {
    /// Sends a change made at shutdown straight to the clients that were local.
    fn tell_at_shutdown(&self, change: &Change, clients: &[(Recipient<ToClient>, Presence)]) {
        let frames = ServerMessage::from_change(&self.session, change);
        for (event, frame) in change.events.iter().zip(frames) {
            let frame = frame.encode();
            let per_member = matches!(
                event,
                Event::MemberJoined { .. } | Event::MemberLeft { .. } | Event::MemberUpdated { .. }
            );
            for (client, presence) in clients {
                if !per_member || *presence == Presence::Full {
                    client.do_send(ToClient::Frame(frame.clone()));
                }
            }
        }
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
