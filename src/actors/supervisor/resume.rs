//! Routing a `resume` to the session actors of the sessions it names, as joins are routed.

use actix::{ActorFutureExt, Addr, Context, Handler, Message, Recipient, ResponseActFuture};

use super::Supervisor;
use crate::actors::session::{Resumption, SessionActor, TakeOver};
use crate::actors::{SocketId, ToClient};
use crate::ids::{ConnectionId, SessionId};
use crate::protocol::error::ApiError;

/// Carry on member `connection` of `session` on a socket of this instance. `None` when it is no
/// member there any more.
#[derive(Message)]
#[rtype(result = "Result<Option<(Resumption, Addr<SessionActor>)>, ApiError>")]
pub struct Resume {
    pub session: SessionId,
    pub connection: ConnectionId,
    pub user: Option<String>,
    pub client: Recipient<ToClient>,
    pub socket: SocketId,
    /// The last version the client applied in the session.
    pub since: Option<u64>,
    /// The last message offset the client applied in the session.
    pub offset: Option<u64>,
}

impl Handler<Resume> for Supervisor {
    type Result =
        ResponseActFuture<Self, Result<Option<(Resumption, Addr<SessionActor>)>, ApiError>>;

    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Self::Result {
        let take_over = TakeOver {
            connection: msg.connection,
            user: msg.user,
            client: msg.client,
            socket: msg.socket,
            since: msg.since,
            offset: msg.offset,
        };
        let resumed = |r: &Result<Option<Resumption>, ApiError>| matches!(r, Ok(Some(_)));
        let asked = self.ask_session(msg.session, take_over, resumed, ctx);
        Box::pin(
            asked.map(|result, _, _| {
                result.map(|(resumption, actor)| resumption.map(|r| (r, actor)))
            }),
        )
    }
}
