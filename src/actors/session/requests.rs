//! What a local connection asks of its session: join, leave, profile, publish, members, end.
//! Each is applied through the store, then delivered in version order by the actor.

use actix::{ActorFutureExt, AtomicResponse, Context, Handler, Message, Recipient, WrapFuture};
use serde_json::Value;

use super::{LocalMember, PendingRemoval, SessionActor};
use crate::actors::{ReplyFrame, ToClient};
use crate::ids::ConnectionId;
use crate::model::{Event, LeaveReason, Member, SessionView};
use crate::protocol::error::ApiError;
use crate::protocol::reply::{ServerMessage, ViewBody};

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
