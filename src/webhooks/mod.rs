//! Webhooks: the application's backend hears every change of every session, crash-reaped members
//! included (docs/protocol.md, "Webhooks").
//!
//! Why a module of its own: a client sees the changes of its own sessions while it is connected,
//! but the backend needs all of them, reliably, even when the instance that made a change dies a
//! moment later. So the store keeps each change in the session's outbox in the same atomic step
//! that makes it ([`crate::store::outbox`]), and one instance at a time reads the outboxes, posts
//! their events to the backend, and trims them only once the backend acknowledged them. Nothing
//! here sits on the path of a change: the session actors never wait for a webhook.
//!
//! - [`events`]: a stored entry becomes the webhook events (pure, redelivered alike);
//! - [`batch`]: which events the next POST carries, in per-session order, at most 100;
//! - [`signature`]: the `X-Rollcall-Signature` header;
//! - [`transport`]: the POST itself (reqwest);
//! - [`deliverer`]: the actor that holds the delivery right, posts, retries and acknowledges.

pub mod batch;
pub mod deliverer;
pub mod events;
pub mod signature;
pub mod transport;

use std::sync::Arc;

use actix::{Actor, Addr};

pub use deliverer::{Deliverer, DeliverySettings, Drain, Stop};
pub use transport::{HttpTransport, Transport, TransportError};

use crate::clock::WallClock;
use crate::store::Outbox;

/// Where and how to deliver (`--webhook-url`, `--webhook-secret`, `--webhook-retention-ms`).
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
    pub delivery: DeliverySettings,
}

/// Starts the deliverer for `settings` on `outbox`, whose store must keep its outbox already.
pub fn start(
    outbox: Arc<dyn Outbox>,
    settings: &WebhookSettings,
) -> Result<Addr<Deliverer>, TransportError> {
    let transport = Arc::new(HttpTransport::new(&settings.url)?);
    tracing::info!(url = %settings.url, "webhooks on");
    Ok(Deliverer::new(
        outbox,
        transport,
        settings.secret.as_bytes(),
        settings.delivery.clone(),
        WallClock::system(),
    )
    .start())
}
