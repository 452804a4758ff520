//! `resume`: a new socket carries on an earlier connection, in every session it names that the
//! connection is still a member of (docs/protocol.md, continuity).
//!
//! The token is checked here, without the store: a forged or foreign one is refused before
//! anything shared is touched. Each session actor then claims its member in one store step
//! and queues what the client missed for this socket; the `resumed` reply is written straight to
//! the socket, so it precedes those frames.

use actix::{ActorFutureExt, Addr, AsyncContext, MailboxError, WrapFuture};
use actix_web_actors::ws;

use super::{ConnectionActor, flatten};
use crate::actors::session::{Resumption, SessionActor};
use crate::actors::supervisor::Resume;
use crate::ids::ConnectionId;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::reply::{ResumedSession, ServerMessage};
use crate::protocol::request::{RequestId, ResumeSession};

/// What the supervisor answers for one session of a `resume`.
type SessionAnswer =
    Result<Result<Option<(Resumption, Addr<SessionActor>)>, ApiError>, MailboxError>;

fn resume_failed(message: &str) -> ApiError {
    ApiError::new(ErrorCode::ResumeFailed, message)
}

impl ConnectionActor {
    pub(super) fn resume(
        &mut self,
        id: Option<RequestId>,
        token: &str,
        sessions: Vec<ResumeSession>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(connection) = self.settings.resume.verify(token) else {
            let err = resume_failed("unknown or invalid resume token; join afresh");
            return self.send_error(ctx, id, &err);
        };
        if connection == self.id || sessions.is_empty() {
            let err = resume_failed("nothing to resume; join the sessions afresh");
            return self.send_error(ctx, id, &err);
        }
        let allowed = |session: &str| {
            self.identity
                .sessions
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|a| a == session))
        };
        let forbidden = sessions.iter().any(|s| !allowed(&s.session));
        let asks: Vec<_> = sessions
            .into_iter()
            .filter(|s| allowed(&s.session))
            .take(self.settings.max_sessions)
            .map(|s| {
                self.supervisor.send(Resume {
                    session: s.session,
                    connection: connection.clone(),
                    user: self.identity.user.clone(),
                    client: ctx.address().recipient(),
                    socket: self.socket,
                    since: s.version,
                    offset: s.offset,
                })
            })
            .collect();
        let all = futures_util::future::join_all(asks);
        self.held_for_resume = Some(Vec::new());
        self.wait_for(
            all.into_actor(self).map(move |answers, act, ctx| {
                act.finish_resume(id, connection, answers, forbidden, ctx);
                // Written now, in order, ahead of anything still in the mailbox.
                for held in act.held_for_resume.take().unwrap_or_default() {
                    act.take(held, ctx);
                }
            }),
            ctx,
        );
    }

    fn finish_resume(
        &mut self,
        id: Option<RequestId>,
        connection: ConnectionId,
        answers: Vec<SessionAnswer>,
        forbidden: bool,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let mut resumed = Vec::new();
        let mut refusal = forbidden.then(|| {
            ApiError::new(
                ErrorCode::Forbidden,
                "your token does not allow one of these sessions",
            )
        });
        for answer in answers {
            match flatten(answer) {
                Ok(Some(session)) => resumed.push(session),
                Ok(None) => {}
                Err(e) => {
                    if refusal.is_none() || e.code == ErrorCode::Forbidden {
                        refusal = Some(e);
                    }
                }
            }
        }
        if resumed.is_empty() {
            let err = refusal.unwrap_or_else(|| {
                resume_failed("that connection is no longer a member of these sessions")
            });
            return self.send_error(ctx, id, &err);
        }
        self.id = connection;
        let mut entries = Vec::with_capacity(resumed.len());
        for (resumption, addr) in resumed {
            self.sessions.insert(resumption.session.clone(), addr);
            entries.push(ResumedSession {
                session: resumption.session,
                version: resumption.version,
                leader: resumption.leader,
                epoch: resumption.epoch,
                counts: resumption.counts,
                recovered: resumption.recovered,
            });
        }
        tracing::info!(connection = %self.id, sessions = entries.len(), "connection resumed");
        let reply = ServerMessage::Resumed {
            id,
            connection: self.id.clone(),
            resume_token: self.settings.resume.mint(&self.id),
            sessions: entries,
        };
        // Straight to the socket, ahead of the frames the session actors queued for it.
        self.frames_out.increment(1);
        ctx.text(reply.encode());
    }
}
