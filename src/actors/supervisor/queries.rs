//! What the supervisor answers about this instance without changing anything: its clients, its
//! health and its session actors (kept apart from the supervisor's work in `mod.rs`).

use actix::{Addr, Context, Handler, Message};

use super::{Health, Supervisor};
use crate::actors::session::SessionActor;
use crate::ids::SessionId;

/// Number of connected clients.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ClientCount;

impl Handler<ClientCount> for Supervisor {
    type Result = usize;

    fn handle(&mut self, _msg: ClientCount, _ctx: &mut Context<Self>) -> usize {
        self.clients.len()
    }
}

#[derive(Message)]
#[rtype(result = "Health")]
pub struct GetHealth;

impl Handler<GetHealth> for Supervisor {
    type Result = actix::MessageResult<GetHealth>;

    fn handle(&mut self, _msg: GetHealth, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(Health {
            store: self.store.kind(),
            store_reachable: self.store_reachable,
            lease_held: self.lease_held,
            shutting_down: self.shutting_down,
        })
    }
}

/// The session actor of `session` on this instance, if any.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub struct LookupSession(pub SessionId);

impl Handler<LookupSession> for Supervisor {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, msg: LookupSession, _ctx: &mut Context<Self>) -> Self::Result {
        self.sessions.get(&msg.0).map(|e| e.addr.clone())
    }
}
