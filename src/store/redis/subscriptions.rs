//! The sessions this instance listens to, owned by rollcall rather than by the `redis` crate.
//!
//! Broadcasts travel on sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis ≥ 7), on a connection of
//! their own: a cluster tells a subscriber that a slot moved away with an unsolicited
//! `sunsubscribe` push, which a connection also carrying commands could take for the reply to one
//! of them. Every (re)subscription names ONE channel (a cluster refuses `SSUBSCRIBE` of channels in
//! different slots with `CROSSSLOT`, which is what the crate's own re-subscription of a node
//! sends), and the commands are sent one at a time, each reply checked to be the confirmation of
//! its own channel (a stray push answered instead is detected, and the command sent again).
//!
//! The feed ([`super::feed`]) re-subscribes through [`Subscriptions::resubscribe`] after a
//! disconnection, a failover or a slot migration.

use std::collections::BTreeSet;
use std::time::Duration;

use ::redis::{PushKind, Value};
use tokio::sync::Mutex;

use super::conn::Conn;
use super::keys::KeyLayout;
use super::reply::text;
use super::{RedisStoreError, Result, within};

/// Attempts of one subscription command before its error is reported.
const ATTEMPTS: usize = 3;
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

pub(super) struct Subscriptions {
    conn: Conn,
    keys: KeyLayout,
    /// The sessions subscribed (or being subscribed); the lock also makes the commands serial.
    wanted: Mutex<BTreeSet<String>>,
}

impl Subscriptions {
    pub fn new(conn: Conn, keys: KeyLayout) -> Subscriptions {
        Subscriptions {
            conn,
            keys,
            wanted: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// The sessions subscribed now.
    pub async fn sessions(&self) -> Vec<String> {
        self.wanted.lock().await.iter().cloned().collect()
    }

    /// Whether `session` is (still) to be listened to.
    pub async fn wants(&self, session: &str) -> bool {
        self.wanted.lock().await.contains(session)
    }

    /// Subscribes to `session`'s channel; gives up after [`super::OPERATION_TIMEOUT`] in all, however
    /// many attempts that leaves, so that a join waits for a stalled store no longer than for any
    /// other operation.
    pub async fn subscribe(&self, session: &str) -> Result<()> {
        let mut wanted = self.wanted.lock().await;
        wanted.insert(session.to_owned());
        let result = within(self.ssubscribe(session, ATTEMPTS))
            .await
            .and_then(|subscribed| subscribed);
        if result.is_err() {
            wanted.remove(session);
        }
        result
    }

    pub async fn unsubscribe(&self, session: &str) -> Result<()> {
        let mut wanted = self.wanted.lock().await;
        wanted.remove(session);
        let mut cmd = ::redis::cmd("SUNSUBSCRIBE");
        cmd.arg(self.keys.channel(session));
        // The reply may be a stray push (see the module doc); either way we no longer listen.
        self.conn.query(&cmd).await.map(|_| ())
    }

    /// Subscribes again to those of `sessions` that are still wanted, one command each, one
    /// attempt each (a shard being failed over fails them all; the others go on). Returns the
    /// sessions that failed, to be retried by the caller.
    pub async fn resubscribe(&self, sessions: &[String]) -> Vec<String> {
        let mut failed = Vec::new();
        for session in sessions {
            let wanted = self.wanted.lock().await;
            if !wanted.contains(session) {
                continue;
            }
            if let Err(e) = self.ssubscribe(session, 1).await {
                tracing::debug!(%session, error = %e, "re-subscription failed; will retry");
                failed.push(session.clone());
            }
            drop(wanted);
        }
        failed
    }

    /// `SSUBSCRIBE` of the session's channel, checked to be confirmed as such.
    async fn ssubscribe(&self, session: &str, attempts: usize) -> Result<()> {
        let channel = self.keys.channel(session);
        let mut cmd = ::redis::cmd("SSUBSCRIBE");
        cmd.arg(&channel);
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            match self.conn.query(&cmd).await {
                Ok(reply) if confirms(&reply, &channel) => return Ok(()),
                Ok(other) => {
                    tracing::debug!(%channel, reply = ?other, "SSUBSCRIBE answered by another reply; sending it again");
                    last = Some(RedisStoreError::Reply(format!(
                        "SSUBSCRIBE {channel}: unexpected reply {other:?}"
                    )));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RedisStoreError::Reply("SSUBSCRIBE: no attempt".into())))
    }
}

/// Whether `reply` is the `ssubscribe` confirmation of `channel`.
fn confirms(reply: &Value, channel: &str) -> bool {
    let data = match reply {
        Value::Push {
            kind: PushKind::SSubscribe,
            data,
        } => data,
        // A pipeline-shaped answer of one confirmation.
        Value::Array(items) if items.len() == 1 => return confirms(&items[0], channel),
        _ => return false,
    };
    data.first().and_then(text).as_deref() == Some(channel)
}
