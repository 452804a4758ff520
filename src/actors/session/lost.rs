//! A local member whose socket was lost without a clean end: it becomes `reconnecting` for the
//! resume grace, or, without a grace, leaves at once.

use actix::{Context, Handler, Message, ResponseFuture};

use super::SessionActor;
use super::membership::Leave;
use crate::actors::SocketId;
use crate::ids::ConnectionId;
use crate::model::LeaveReason;
use crate::protocol::error::ApiError;

/// A local member's socket was lost without a clean end (dropped without a close frame, or
/// silent past the client timeout): with a resume grace the member becomes `reconnecting`, so
/// that its client can resume it; without one it leaves with `reason`, as a [`Leave`] would.
#[derive(Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct Lost(pub Leave);

impl Handler<Lost> for SessionActor {
    type Result = ResponseFuture<Result<(), ApiError>>;

    fn handle(&mut self, Lost(msg): Lost, ctx: &mut Context<Self>) -> Self::Result {
        let suspend = !self.resume_grace.is_zero();
        let ended = self.end_local(msg, suspend, ctx);
        Box::pin(async move { ended.await.map(|_| ()) })
    }
}

impl SessionActor {
    /// A local member whose socket closed before its join or resume was done: lost like any
    /// socket that ends without a close.
    pub(super) fn lose_orphan(
        &mut self,
        connection: ConnectionId,
        socket: Option<SocketId>,
        ctx: &mut Context<Self>,
    ) {
        let leave = Leave {
            connection,
            reason: LeaveReason::Disconnected,
            socket,
        };
        let suspend = !self.resume_grace.is_zero();
        // Queued like the socket's own loss; nobody waits for the answer.
        drop(self.end_local(leave, suspend, ctx));
    }
}
