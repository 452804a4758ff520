//! What a local member asks of its session besides joining and leaving (`membership.rs`):
//! profile, publish, members, end (`history.rs` reads messages back). Each is applied through the
//! store at once, and delivered in version order by the actor.

use actix::{ActorFutureExt, AtomicResponse, Context, Handler, Message, WrapFuture};
use serde_json::Value;

use super::messages::{Incoming, read_missed};
use super::outbox::Audience;
use super::{Missed, SessionActor};
use crate::actors::{ReplyFrame, ToClient};
use crate::ids::ConnectionId;
use crate::model::{Event, Presence, SessionView};
use crate::protocol::error::ApiError;
use crate::protocol::reply::ServerMessage;
use crate::store::{StoreError, StreamPosition};

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

/// Send a `message` to the other members of the session. Answers its place in the session's
/// stream; the local members get it once the store numbered it, in stream order ([`messages`]).
///
/// [`messages`]: super::messages
#[derive(Message)]
#[rtype(result = "Result<StreamPosition, ApiError>")]
pub struct Publish {
    pub connection: ConnectionId,
    pub data: Value,
}

impl Handler<Publish> for SessionActor {
    type Result = AtomicResponse<Self, Result<StreamPosition, ApiError>>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(local) = self.local.get(&msg.connection) else {
            let err = ApiError::not_member(&self.session);
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(err))));
        };
        let user = local.member.user.clone();
        let store = self.store.clone();
        let session = self.session.clone();
        // The actor handles nothing else until the store answered, so this stays its position.
        let known = self.latest_message.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let published = store
                    .publish(&session, &msg.connection, user.as_deref(), &msg.data)
                    .await;
                let missed = match &published {
                    Ok(position) => read_missed(store.as_ref(), &session, &known, position).await,
                    Err(_) => Vec::new(),
                };
                (msg, user, published, missed)
            }
            .into_actor(self)
            .map(|(msg, user, published, missed), act, ctx| {
                let message = Incoming {
                    from: Some(msg.connection.clone()),
                    user,
                    data: msg.data,
                    position: published.as_ref().ok().cloned(),
                };
                // Unnumbered when the store could not be reached: the local members still get
                // it (the publisher hears `unavailable`), the other instances do not.
                act.deliver_message(missed, message, Audience::EveryoneBut(msg.connection), ctx);
                Ok(published?)
            }),
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
