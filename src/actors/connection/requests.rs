//! The requests of one socket, answered one at a time and in order, without holding the socket:
//! while a request waits for a session actor or the store, the next ones wait their turn, a
//! `ping` is answered at once, and frames keep flowing both ways (so a stalled store never
//! silences a connection).

use std::collections::VecDeque;

use actix::dev::ToEnvelope;
use actix::{Actor, ActorFuture, ActorFutureExt, Addr, AsyncContext, Handler, Message, WrapFuture};
use actix_web_actors::ws;

use super::{ConnectionActor, JoinProfile, flatten};
use crate::actors::ReplyFrame;
use crate::actors::session::{EndSession, Leave, ReadMembers, UpdateProfile};
use crate::actors::supervisor::Join;
use crate::ids::{Incarnation, SessionId};
use crate::model::{LeaveReason, Member, MemberState, Presence};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::reply::ServerMessage;
use crate::protocol::request::{Patch, Request, RequestId};
use crate::store::StreamPosition;

/// Requests that arrived while another one was waiting for its answer.
#[derive(Default)]
pub(super) struct RequestQueue {
    waiting: VecDeque<(Option<RequestId>, Request)>,
    in_flight: bool,
}

impl ConnectionActor {
    /// Takes one parsed request: a `ping` is answered at once; anything else in its turn.
    pub(super) fn request(
        &mut self,
        id: Option<RequestId>,
        request: Request,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if request == Request::Ping {
            self.first_request = false;
            return self.send(ctx, ServerMessage::Pong { id });
        }
        if self.requests.in_flight {
            self.requests.waiting.push_back((id, request));
            return;
        }
        self.dispatch(id, request, ctx);
    }

    /// Runs `work` (a request's wait for its answer) with the next requests held until it is done.
    pub(super) fn wait_for(
        &mut self,
        work: impl ActorFuture<Self, Output = ()> + 'static,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.requests.in_flight = true;
        ctx.spawn(work.map(|(), act, ctx| {
            act.requests.in_flight = false;
            act.next_request(ctx);
        }));
    }

    /// Dispatches the waiting requests until one has to wait for its answer.
    fn next_request(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        while !self.requests.in_flight {
            let Some((id, request)) = self.requests.waiting.pop_front() else {
                return;
            };
            self.dispatch(id, request, ctx);
        }
    }

    fn dispatch(
        &mut self,
        id: Option<RequestId>,
        request: Request,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let first = std::mem::replace(&mut self.first_request, false);
        match request {
            Request::Ping => self.send(ctx, ServerMessage::Pong { id }),
            Request::Resume { token, sessions } => {
                if !first {
                    let err = ApiError::new(
                        ErrorCode::ResumeFailed,
                        "resume must be the first request on a socket",
                    );
                    return self.send_error(ctx, id, &err);
                }
                self.resume(id, &token, sessions, ctx);
            }
            Request::Join {
                session,
                name,
                avatar,
                presence,
                since,
            } => {
                let profile = JoinProfile { name, avatar };
                self.join(id, session, profile, presence, since, ctx)
            }
            Request::Leave { session } => {
                let Some(addr) = self.sessions.remove(&session) else {
                    return self.send_error(ctx, id, &ApiError::not_member(&session));
                };
                let leave = Leave {
                    connection: self.id.clone(),
                    reason: LeaveReason::Left,
                    socket: Some(self.socket),
                };
                self.ask(&addr, leave, id.clone(), ctx, move |_, version| {
                    Some(ServerMessage::Left {
                        id,
                        session,
                        version,
                    })
                });
            }
            Request::Profile { name, avatar } => {
                if let Some(name) = name {
                    self.name = Some(name);
                }
                match avatar {
                    Patch::Keep => {}
                    Patch::Clear => self.avatar = None,
                    Patch::Set(url) => self.avatar = Some(url),
                }
                let name = self.display_name(None);
                let updates: Vec<_> = self
                    .sessions
                    .values()
                    .map(|addr| {
                        addr.send(UpdateProfile {
                            connection: self.id.clone(),
                            name: name.clone(),
                            avatar: self.avatar.clone(),
                        })
                    })
                    .collect();
                let all = futures_util::future::join_all(updates);
                let updated = all.into_actor(self).map(move |results, act, ctx| {
                    let failed = results.into_iter().map(flatten).find_map(Result::err);
                    match failed {
                        None => act.send(ctx, ServerMessage::ProfileUpdated { id }),
                        Some(e) => act.send_error(ctx, id, &e),
                    }
                });
                self.wait_for(updated, ctx);
            }
            Request::Refresh { token } => self.refresh(id, token, ctx),
            Request::Publish { session, data } => self.publish(id, session, data, ctx),
            Request::History {
                session,
                since,
                limit,
            } => self.read_history(id, session, since, limit, ctx),
            Request::Members { session } => {
                let addr = match self.session_addr(&session) {
                    Ok(addr) => addr,
                    Err(e) => return self.send_error(ctx, id, &e),
                };
                let read = ReadMembers {
                    connection: self.id.clone(),
                    reply: ReplyFrame::Session { id: id.clone() },
                };
                // On success the session actor has sent the `members` reply.
                self.ask(&addr, read, id, ctx, |_, _| None);
            }
            Request::End { session, epoch } => {
                let addr = match self.session_addr(&session) {
                    Ok(addr) => addr,
                    Err(e) => return self.send_error(ctx, id, &e),
                };
                let end = EndSession {
                    connection: self.id.clone(),
                    epoch,
                };
                self.ask(&addr, end, id.clone(), ctx, move |act, ()| {
                    act.sessions.remove(&session);
                    Some(ServerMessage::Ended { id, session })
                });
            }
        }
    }

    fn join(
        &mut self,
        id: Option<RequestId>,
        session: SessionId,
        JoinProfile { name, avatar }: JoinProfile,
        presence: Presence,
        since: Option<StreamPosition>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if let Some(allowed) = &self.identity.sessions
            && !allowed.iter().any(|a| session == a.as_str())
        {
            let err = ApiError::new(
                ErrorCode::Forbidden,
                "your token does not allow this session",
            );
            return self.send_error(ctx, id, &err);
        }
        if !self.sessions.contains_key(&session)
            && self.sessions.len() >= self.settings.max_sessions
        {
            let err = ApiError::new(
                ErrorCode::TooManySessions,
                format!(
                    "a connection may be in at most {} sessions",
                    self.settings.max_sessions
                ),
            );
            return self.send_error(ctx, id, &err);
        }
        let member = Member {
            connection: self.id.clone(),
            user: self.identity.user.clone(),
            name: self.display_name(name),
            avatar: avatar.or_else(|| self.avatar.clone()),
            joined_at: 0,
            instance: Incarnation::default(),
            state: MemberState::Present,
            grace: None,
        };
        let join = Join {
            session: session.clone(),
            member,
            client: ctx.address().recipient(),
            socket: Some(self.socket),
            reply: match since {
                Some(since) => ReplyFrame::SessionSince {
                    id: id.clone(),
                    since,
                },
                None => ReplyFrame::Session { id: id.clone() },
            },
            presence,
        };
        let supervisor = self.supervisor.clone();
        self.ask(&supervisor, join, id, ctx, move |act, joined| {
            // The session actor has sent the `joined` reply, in order with its events.
            act.sessions.insert(session, joined.actor);
            None
        });
    }

    /// Sends `request` to `actor` and, once it answers, the reply `answer` makes of its value (none
    /// when the actor sent the reply itself) or the error. The next request waits meanwhile, so
    /// replies leave in request order.
    pub(super) fn ask<A, M, T>(
        &mut self,
        actor: &Addr<A>,
        request: M,
        id: Option<RequestId>,
        ctx: &mut ws::WebsocketContext<Self>,
        answer: impl FnOnce(&mut Self, T) -> Option<ServerMessage> + 'static,
    ) where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message<Result = Result<T, ApiError>> + Send + 'static,
        T: Send + 'static,
    {
        self.wait_for(
            actor
                .send(request)
                .into_actor(self)
                .map(move |res, act, ctx| match flatten(res) {
                    Ok(value) => {
                        if let Some(reply) = answer(act, value) {
                            act.send(ctx, reply);
                        }
                    }
                    Err(e) => act.send_error(ctx, id, &e),
                }),
            ctx,
        );
    }
}
