//! Stand-ins for the actors a component talks to: a [`Forward`] actor receives any message type and
//! hands each message to the test through a channel, so a test can stand in for a socket
//! (`ToClient`) or for a session actor's owner (`LocalCount`, `Orphaned`).

use actix::{Actor, Context, Handler, Message, Recipient};
use tokio::sync::mpsc;

/// Forwards every `M` it receives into a channel.
pub struct Forward<M> {
    tx: mpsc::UnboundedSender<M>,
}

impl<M: Unpin + 'static> Actor for Forward<M> {
    type Context = Context<Self>;
}

impl<M> Handler<M> for Forward<M>
where
    M: Message<Result = ()> + Send + Unpin + 'static,
{
    type Result = ();

    fn handle(&mut self, msg: M, _ctx: &mut Context<Self>) {
        let _ = self.tx.send(msg);
    }
}

/// A recipient of `M` whose messages arrive on the returned receiver. Needs a running actix system.
pub fn forward<M>() -> (Recipient<M>, mpsc::UnboundedReceiver<M>)
where
    M: Message<Result = ()> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    (Forward { tx }.start().recipient(), rx)
}
