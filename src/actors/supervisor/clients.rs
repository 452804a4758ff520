//! The sockets of this instance as the supervisor knows them: who is connected (a graceful stop
//! closes them all with 1012), how many, and the instance's health for `/readyz`.

use actix::{Context, Handler, Message, Recipient};

use super::{CLOSE_RESTARTING, Health, Supervisor};
use crate::actors::{SocketId, ToClient};

/// A client connected (it was admitted before its upgrade, see [`crate::admission`]). One that
/// arrives while the instance is stopping is closed with 1012 at once, like those already here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub socket: SocketId,
    pub client: Recipient<ToClient>,
}

impl Handler<Connect> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Connect, _ctx: &mut Context<Self>) {
        if self.shutting_down {
            msg.client.do_send(ToClient::Close {
                code: CLOSE_RESTARTING,
                reason: "server restarting".into(),
            });
        }
        self.clients.insert(msg.socket, msg.client);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub socket: SocketId,
}

impl Handler<Disconnect> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _ctx: &mut Context<Self>) {
        self.clients.remove(&msg.socket);
    }
}

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
