//! The feed: turns the RESP3 pushes of the subscription connection into [`FeedEvent`]s, and puts
//! the subscriptions back when Redis takes them away.
//!
//! Two tasks. The reader forwards every broadcast (`smessage`) at once, dropping this instance's
//! own echo. It hands the repairs to the re-subscriber, so that one shard being failed over does
//! not hold up the broadcasts of the others:
//! - a disconnection (of the server, or of any cluster node): every subscription is sent again, one
//!   channel a command, until all are confirmed; then [`FeedEvent::Resumed`] (anything published
//!   meanwhile was missed, so the engine reconciles every local session);
//! - an unsolicited `sunsubscribe` of a channel still wanted (its slot moved to another master, or
//!   the master became a replica): that channel is subscribed again (the cluster client follows
//!   `MOVED` to the new owner), then [`FeedEvent::Reconcile`] of that session alone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::keys::KeyLayout;
use super::reply::{broadcasts, text};
use super::subscriptions::Subscriptions;
use crate::ids::Incarnation;
use crate::store::{Broadcast, FeedEvent};

/// How often the re-subscriber tries again while subscriptions are still missing.
const RETRY_POLL: Duration = Duration::from_millis(100);

/// What the re-subscriber is asked to repair.
enum Repair {
    /// Every subscription (after a disconnection).
    All,
    /// The subscription of one session (after an unsolicited `sunsubscribe`).
    One(String),
}

/// Starts the reader and the re-subscriber; both end when the feed's receiver is dropped or the
/// connection is gone.
pub(super) fn start(
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    feed: mpsc::UnboundedSender<FeedEvent>,
    subscriptions: Arc<Subscriptions>,
    keys: KeyLayout,
    me: Incarnation,
) -> [tokio::task::JoinHandle<()>; 2] {
    let (repair_tx, repair_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read(
        pushes,
        feed.clone(),
        repair_tx,
        subscriptions.clone(),
        Decoder::new(keys, me),
    ));
    let resubscriber = tokio::spawn(resubscribe(repair_rx, feed, subscriptions));
    [reader, resubscriber]
}

async fn read(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    feed: mpsc::UnboundedSender<FeedEvent>,
    repair: mpsc::UnboundedSender<Repair>,
    subscriptions: Arc<Subscriptions>,
    decoder: Decoder,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                for b in decoder.decode(push) {
                    if feed.send(FeedEvent::Broadcast(b)).is_err() {
                        return;
                    }
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("redis subscription connection lost; subscribing again");
                if repair.send(Repair::All).is_err() {
                    return;
                }
            }
            PushKind::SUnsubscribe => {
                // Our own SUNSUBSCRIBE is confirmed like this too: only a channel still wanted
                // was taken away by Redis.
                let Some(session) = decoder.session_of(&push.data) else {
                    continue;
                };
                if subscriptions.wants(&session).await {
                    tracing::info!(%session, "redis dropped a subscription (slot moved or failover); subscribing again");
                    if repair.send(Repair::One(session)).is_err() {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

async fn resubscribe(
    mut requests: mpsc::UnboundedReceiver<Repair>,
    feed: mpsc::UnboundedSender<FeedEvent>,
    subscriptions: Arc<Subscriptions>,
) {
    while let Some(first) = requests.recv().await {
        let mut work = Work::default();
        work.add(first, &subscriptions).await;
        loop {
            while let Ok(r) = requests.try_recv() {
                work.add(r, &subscriptions).await;
            }
            if work.pending.is_empty() {
                // Nothing to subscribe: after a disconnection, wait until Redis answers.
                if !work.all || answers(&subscriptions).await {
                    break;
                }
            } else {
                let pending: Vec<String> = std::mem::take(&mut work.pending).into_iter().collect();
                work.pending = subscriptions
                    .resubscribe(&pending)
                    .await
                    .into_iter()
                    .collect();
                if work.pending.is_empty() {
                    break;
                }
            }
            if feed.is_closed() {
                return;
            }
            tokio::time::sleep(RETRY_POLL).await;
        }
        let event = if work.all {
            tracing::info!("redis subscriptions restored");
            FeedEvent::Resumed
        } else {
            FeedEvent::Reconcile {
                sessions: work.reported.into_iter().collect(),
                reassert: false,
            }
        };
        if feed.send(event).is_err() {
            return;
        }
    }
}

/// The repairs asked for since the re-subscriber last reported.
#[derive(Default)]
struct Work {
    /// A disconnection: report [`FeedEvent::Resumed`] at the end.
    all: bool,
    /// Sessions still to subscribe.
    pending: BTreeSet<String>,
    /// Sessions to reconcile at the end (when not all of them).
    reported: BTreeSet<String>,
}

impl Work {
    async fn add(&mut self, repair: Repair, subscriptions: &Subscriptions) {
        match repair {
            Repair::All => {
                self.all = true;
                self.pending.extend(subscriptions.sessions().await);
            }
            Repair::One(session) => {
                self.reported.insert(session.clone());
                self.pending.insert(session);
            }
        }
    }
}

/// Whether the subscription connection answers a PING (after a disconnection with nothing to
/// re-subscribe, this is how the re-subscriber knows Redis is back).
async fn answers(subscriptions: &Subscriptions) -> bool {
    subscriptions
        .conn()
        .query(&::redis::cmd("PING"))
        .await
        .is_ok()
}

/// Decodes the pushes of session channels, dropping this instance's own echo.
struct Decoder {
    keys: KeyLayout,
    /// This instance's incarnation.
    me: Incarnation,
    /// How this instance's own broadcasts begin (`origin` is their first field): an echo is
    /// dropped without being parsed.
    echo_prefix: String,
    /// How this instance's own batches begin (an array of broadcasts).
    batch_echo_prefix: String,
}

impl Decoder {
    fn new(keys: KeyLayout, me: Incarnation) -> Decoder {
        let origin = serde_json::to_string(&me).unwrap_or_default();
        Decoder {
            keys,
            echo_prefix: format!(r#"{{"origin":{origin},"#),
            batch_echo_prefix: format!(r#"[{{"origin":{origin},"#),
            me,
        }
    }

    fn session_of(&self, data: &[Value]) -> Option<String> {
        let channel = text(data.first()?)?;
        self.keys.session_of_channel(&channel).map(str::to_owned)
    }

    /// The broadcasts of a push: none for an echo, several for a batch (oldest first).
    fn decode(&self, push: PushInfo) -> Vec<Broadcast> {
        let mut data = push.data.into_iter();
        let (Some(channel), Some(payload)) = (data.next().as_ref().and_then(text), data.next())
        else {
            return Vec::new();
        };
        if self.keys.session_of_channel(&channel).is_none() {
            return Vec::new();
        }
        if let Value::BulkString(b) = &payload
            && (b.starts_with(self.echo_prefix.as_bytes())
                || b.starts_with(self.batch_echo_prefix.as_bytes()))
        {
            return Vec::new();
        }
        // Anything else is copied out and parsed, and its origin checked again.
        let Some(payload) = text(&payload) else {
            return Vec::new();
        };
        match broadcasts(&payload) {
            Ok(mut all) => {
                all.retain(|b| b.origin != self.me);
                all
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, "undecodable broadcast dropped");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Change;
    use crate::store::BroadcastBody;

    fn push(keys: &KeyLayout, payload: &str) -> PushInfo {
        PushInfo {
            kind: PushKind::SMessage,
            data: vec![
                Value::BulkString(keys.channel("s").into_bytes()),
                Value::BulkString(payload.as_bytes().to_vec()),
            ],
        }
    }

    fn change_from(origin: &str) -> Broadcast {
        Broadcast {
            origin: Incarnation::new(origin),
            session: "s".into(),
            body: BroadcastBody::Change(Change {
                version: 0,
                leader: None,
                epoch: 0,
                events: Vec::new(),
            }),
        }
    }

    #[test]
    fn drops_its_own_echo_from_the_first_bytes_and_keeps_the_others() {
        let keys = KeyLayout::new("t:");
        let decoder = Decoder::new(keys.clone(), Incarnation::new("me"));
        let own = serde_json::to_string(&change_from("me")).unwrap();
        assert!(
            own.starts_with(r#"{"origin":"me","#),
            "origin comes first: {own}"
        );
        assert_eq!(decoder.decode(push(&keys, &own)), vec![]);
        // Not parsed at all: what follows the prefix does not matter.
        assert_eq!(
            decoder.decode(push(&keys, r#"{"origin":"me",garbage"#)),
            vec![]
        );
        for other in ["mee", "m", "other"] {
            let theirs = serde_json::to_string(&change_from(other)).unwrap();
            assert_eq!(
                decoder.decode(push(&keys, &theirs)),
                vec![change_from(other)],
                "a broadcast of {other} is delivered"
            );
        }
        // Fields in another order are parsed, and the echo still recognised.
        let reordered = r#"{"session":"s","origin":"me","body":{"kind":"change","version":0,"leader":null,"epoch":0,"events":[]}}"#;
        assert_eq!(decoder.decode(push(&keys, reordered)), vec![]);
    }

    #[test]
    fn splits_a_batch_into_its_broadcasts_and_drops_its_own() {
        let keys = KeyLayout::new("t:");
        let decoder = Decoder::new(keys.clone(), Incarnation::new("me"));
        let json = |b: &Broadcast| serde_json::to_string(b).unwrap();
        let mut first = change_from("other");
        let mut second = change_from("other");
        if let (BroadcastBody::Change(a), BroadcastBody::Change(b)) =
            (&mut first.body, &mut second.body)
        {
            a.version = 1;
            b.version = 2;
        }
        let batch = format!("[{},{}]", json(&first), json(&second));
        assert_eq!(decoder.decode(push(&keys, &batch)), vec![first, second]);
        let own = format!("[{}]", json(&change_from("me")));
        assert_eq!(decoder.decode(push(&keys, &own)), vec![]);
        assert_eq!(decoder.decode(push(&keys, "[{not json")), vec![]);
    }
}
