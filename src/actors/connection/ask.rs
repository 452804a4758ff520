//! Asking another actor on behalf of a request: the connection reads nothing else until the
//! answer comes, so replies leave in request order.

use actix::dev::ToEnvelope;
use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Handler, Message, WrapFuture};
use actix_web_actors::ws;

use super::ConnectionActor;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::reply::ServerMessage;
use crate::protocol::request::RequestId;

impl ConnectionActor {
    /// Sends `request` to `actor` and, once it answers, the reply `answer` makes of its value (none
    /// when the actor sent the reply itself) or the error. The connection reads nothing else
    /// meanwhile, so replies leave in request order.
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
        ctx.wait(
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
        );
    }
}

/// Folds a mailbox failure (the target actor is gone) into the reply error.
pub(super) fn flatten<T>(
    res: Result<Result<T, ApiError>, actix::MailboxError>,
) -> Result<T, ApiError> {
    res.map_err(|e| ApiError::new(ErrorCode::Internal, format!("session unavailable: {e}")))?
}
