//! The feed task: turns the RESP3 pushes of the store's connection into [`FeedEvent`]s.
//!
//! The [`ConnectionManager`] reconnects by itself and re-subscribes the channels. After a
//! disconnection the task pings until Redis answers again (so the re-subscription is done) and then
//! sends [`FeedEvent::Resumed`], upon which the engine reconciles every local session: anything
//! published meanwhile was missed.

use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::keys::KeyLayout;
use super::reply::{broadcast, text};
use super::within;
use crate::ids::Incarnation;
use crate::store::{Broadcast, FeedEvent};

/// How often the task asks a lost connection whether it is back.
const RECONNECT_POLL: Duration = Duration::from_millis(100);

/// Runs until the feed's receiver is dropped or the connection manager is gone.
pub(super) async fn run_feed(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    feed: mpsc::UnboundedSender<FeedEvent>,
    conn: ConnectionManager,
    keys: KeyLayout,
    me: Incarnation,
) {
    let decoder = Decoder { keys, me };
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message => {
                if let Some(b) = decoder.decode(push)
                    && feed.send(FeedEvent::Broadcast(b)).is_err()
                {
                    return;
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("redis connection lost; waiting for it to come back");
                if !wait_until_back(&conn, &feed).await {
                    return;
                }
                // Disconnections queued while we were waiting are the same outage.
                let mut later = Vec::new();
                while let Ok(push) = pushes.try_recv() {
                    if push.kind != PushKind::Disconnection {
                        later.push(push);
                    }
                }
                tracing::info!("redis connection back; subscriptions restored");
                if feed.send(FeedEvent::Resumed).is_err() {
                    return;
                }
                for push in later {
                    if push.kind == PushKind::Message
                        && let Some(b) = decoder.decode(push)
                        && feed.send(FeedEvent::Broadcast(b)).is_err()
                    {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Pings until Redis answers; `false` when the feed was dropped meanwhile.
async fn wait_until_back(
    conn: &ConnectionManager,
    feed: &mpsc::UnboundedSender<FeedEvent>,
) -> bool {
    let mut conn = conn.clone();
    loop {
        let ping = ::redis::cmd("PING");
        if let Ok(Ok(_)) = within(ping.query_async::<Value>(&mut conn)).await {
            return true;
        }
        if feed.is_closed() {
            return false;
        }
        tokio::time::sleep(RECONNECT_POLL).await;
    }
}

/// Decodes the pushes of session channels, dropping this instance's own echo.
struct Decoder {
    keys: KeyLayout,
    /// This instance's incarnation.
    me: Incarnation,
}

impl Decoder {
    fn decode(&self, push: PushInfo) -> Option<Broadcast> {
        let mut data = push.data.into_iter();
        let (channel, payload) = (text(&data.next()?)?, text(&data.next()?)?);
        self.keys.session_of_channel(&channel)?;
        match broadcast(&payload) {
            Ok(b) if b.origin == self.me => None,
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(%channel, error = %e, "undecodable broadcast dropped");
                None
            }
        }
    }
}
