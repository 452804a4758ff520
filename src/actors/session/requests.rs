//! What a local connection asks of its session: join, leave, profile, publish, members, end.
//! Each is applied through the store, then delivered in version order by the actor.

use actix::{ActorFutureExt, AtomicResponse, Context, Handler, Message, Recipient, WrapFuture};
use serde_json::Value;

use super::outbox::Audience;
use super::{LocalMember, Missed, PendingRemoval, SessionActor};
use crate::actors::{ReplyFrame, ToClient};
use crate::ids::ConnectionId;
use crate::model::{CountsTracker, Event, LeaveReason, Member, Presence, SessionView, now_ms};
use crate::protocol::error::ApiError;
use crate::protocol::reply::ServerMessage;
use crate::store::{JoinOutcome, StoreError, plan};

/// Join a local connection (sent by the supervisor, which routes every join).
#[derive(Message)]
#[rtype(result = "Result<SessionView, ApiError>")]
pub struct JoinLocal {
    pub member: Member,
    pub client: Recipient<ToClient>,
    pub reply: ReplyFrame,
    pub presence: Presence,
}

impl Handler<JoinLocal> for SessionActor {
    type Result = AtomicResponse<Self, Result<SessionView, ApiError>>;

    fn handle(&mut self, msg: JoinLocal, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let session = self.session.clone();
        let max_members = self.max_members;
        // The actor handles nothing else until this join is done, so this stays its version.
        let known = self.view.version;
        let has_view = known > 0;
        let mut member = msg.member.clone();
        // The store keys a member's instance by this incarnation (shutdown removal, reaping).
        member.instance = store.instance().incarnation.clone();
        let plan = plan::join(&self.view, &member, now_ms(), max_members);
        AtomicResponse::new(Box::pin(
            async move {
                let outcome = match plan {
                    Some(plan) => store.join_planned(&session, member, max_members, plan),
                    None => store.join(&session, member, max_members),
                }
                .await?;
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
                Ok::<_, StoreError>((outcome, missed))
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let (outcome, missed) = result?;
                let connection = msg.member.connection.clone();
                if let Some(change) = outcome.change() {
                    act.record(change);
                }
                // Others see the join (and anything missed) before the joiner is local, so the
                // joiner gets its `joined` reply instead of its own `member_joined`.
                match missed {
                    Some(Missed::View(Some(view))) if !has_view => {
                        act.view = view;
                        act.counts = CountsTracker::of(&act.view.members);
                    }
                    Some(missed) => act.take_missed(missed, ctx),
                    None => {
                        if let Some(change) = outcome.change() {
                            act.absorb(change, ctx);
                        }
                    }
                }
                let joined = act
                    .joined_record(&outcome, &connection)
                    .unwrap_or(msg.member);
                act.flush();
                act.local.insert(
                    connection.clone(),
                    LocalMember {
                        member: joined,
                        client: msg.client,
                        presence: msg.presence,
                    },
                );
                if msg.presence == Presence::Counts {
                    act.counts_changed(ctx);
                }
                let reply_frame_sent = matches!(msg.reply, ReplyFrame::Session { .. });
                if let ReplyFrame::Session { id } = msg.reply {
                    let joined = ServerMessage::Joined {
                        id,
                        session: act.session.clone(),
                        you: connection.clone(),
                        view: act.view_body(msg.presence, &connection),
                    };
                    act.deliver(joined.encode(), Audience::Only(connection), ctx);
                }
                act.report_count();
                Ok(match reply_frame_sent {
                    // The joiner has its list in the reply frame; the caller gets the header.
                    true => SessionView {
                        members: Vec::new(),
                        ..act.view.header()
                    },
                    false => act.view.clone(),
                })
            }),
        ))
    }
}

impl SessionActor {
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
        self.flush();
        if self.local.remove(&msg.connection).is_none() {
            let session = self.session.clone();
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ApiError::not_member(
                &session,
            )))));
        }
        let store = self.store.clone();
        let session = self.session.clone();
        let connection = msg.connection.clone();
        // A plan writes this instance's index entry, so only for a member of this instance.
        let ours = self
            .view
            .member(&connection)
            .is_some_and(|m| m.instance == store.instance().incarnation);
        let plan = ours
            .then(|| plan::leave(&self.view, &connection, msg.reason))
            .flatten();
        AtomicResponse::new(Box::pin(
            async move {
                match plan {
                    Some(plan) => store.leave_planned(&session, &connection, msg.reason, plan),
                    None => store.leave(&session, &connection, msg.reason),
                }
                .await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let outcome = match result {
                    Ok(Some(change)) => {
                        act.record(&change);
                        act.absorb(&change, ctx);
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
                        // session it is in confirms the new profile, before `profile_updated`.
                        act.absorb(&change, ctx);
                        act.flush();
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
        self.deliver(frame, Audience::EveryoneBut(msg.connection.clone()), ctx);
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
        // Answered from this actor's view, once it has what the store has: the missed changes
        // (usually none) come from the store's log, not a read of every member.
        let store = self.store.clone();
        let session = self.session.clone();
        let known = self.view.version;
        AtomicResponse::new(Box::pin(
            async move {
                match store.changes_since(&session, known).await? {
                    Some(changes) => Ok(Missed::Changes(changes)),
                    None => Ok(Missed::View(store.view(&session).await?)),
                }
            }
            .into_actor(self)
            .map(move |result: Result<Missed, StoreError>, act, ctx| {
                act.take_missed(result?, ctx);
                if let ReplyFrame::Session { id } = msg.reply {
                    // `members` answers with the whole list in either presence mode.
                    let body = act.view_body(Presence::Full, &msg.connection);
                    let members = ServerMessage::Members {
                        id,
                        session: act.session.clone(),
                        view: body,
                    };
                    act.deliver(members.encode(), Audience::Only(msg.connection), ctx);
                }
                Ok(act.view.clone())
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
                    act.flush();
                    if let Some(local) = act.local.remove(&msg.connection) {
                        local.client.do_send(ToClient::MembershipEnded {
                            session: act.session.clone(),
                        });
                    }
                    // After a gap, the catch-up delivers `session_ended` to the others.
                    act.absorb(&change, ctx);
                    act.report_count();
                    Ok(())
                }),
        ))
    }
}
