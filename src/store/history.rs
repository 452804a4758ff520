//! Message history: a session's latest messages, kept in the store so that a member can read back
//! what it missed (docs/protocol.md, "Message history").
//!
//! # Why
//! Pub/sub reaches a message's audience at most once, and only the members connected at that
//! moment. A phone whose socket dropped for a second, or a member joining a minute late, would miss
//! messages without knowing it. So every message gets a place in its session's *stream*: an
//! `offset`, one more than the message before it, and the stream's id, which is new whenever the
//! store has to start the stream afresh (it lost its data, or the session was silent for longer
//! than its history is kept). An offset is therefore never taken for one of another stream: a
//! client holding `(stream, offset)` either gets exactly what followed it, or learns that it cannot.
//!
//! The store keeps the latest [`HistorySettings::size`] messages of a session, each for
//! [`HistorySettings::ttl`]; the same atomic step that publishes a message
//! ([`crate::store::Broker::publish`]) numbers and keeps it. With a size of 0 nothing is kept, but
//! messages are still numbered (so clients can still tell a gap), and every read finds nothing.
//!
//! Both stores follow the rules below, held to them by the conformance suite:
//! - offsets start at 1 in a new stream and grow by exactly one per message;
//! - a read returns the kept messages after `since`, oldest first, starting with the oldest one
//!   still kept, at most `limit` of them; a message past its `ttl`, or older than the latest
//!   `size`, counts as dropped;
//! - [`HistoryPage::complete`] is false when messages after `since` were dropped;
//! - a stream nobody published to for a while is forgotten: from `ttl` after its last message
//!   (Redis: between `ttl` and twice `ttl`, so that its keys' expiry is refreshed at most once per
//!   `ttl`), and the next message starts a new stream.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreResult;
use crate::ids::ConnectionId;

/// The most messages one read returns, and the default and largest `limit` of a `history` request.
pub const MAX_PAGE: usize = 100;

/// What an instance keeps (`--history-size`, `--history-ttl-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    /// The latest messages kept per session; 0 keeps none.
    pub size: usize,
    /// How long a message is kept.
    pub ttl: Duration,
}

impl HistorySettings {
    pub const DEFAULT_SIZE: usize = 100;
    pub const DEFAULT_TTL: Duration = Duration::from_millis(300_000);

    /// The TTL in whole milliseconds, at least 1.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis().clamp(1, u64::MAX as u128) as u64
    }
}

impl Default for HistorySettings {
    fn default() -> HistorySettings {
        HistorySettings {
            size: HistorySettings::DEFAULT_SIZE,
            ttl: HistorySettings::DEFAULT_TTL,
        }
    }
}

/// A message's place: the stream it belongs to and its offset there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    pub stream: String,
    pub offset: u64,
}

/// A kept message, as the store keeps it and as a `history` reply lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub offset: u64,
    /// The publishing member; `None` for a message of the application's backend (server API).
    pub from: Option<ConnectionId>,
    pub user: Option<String>,
    pub data: Value,
    /// When the store numbered it, in milliseconds since the Unix epoch (the store's clock: Redis
    /// `TIME`, or the process's for the in-process store).
    pub at: i64,
}

/// What a history read found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryPage {
    /// The session's current stream; `None` when it has none (no message yet, or forgotten).
    pub stream: Option<String>,
    /// The latest offset of that stream (`None` with no stream).
    pub latest: Option<u64>,
    /// The kept messages after the read's `since`, oldest first.
    pub messages: Vec<StoredMessage>,
    /// False when messages after `since` were dropped before this read.
    pub complete: bool,
}

impl HistoryPage {
    /// A page of `stream` at `latest`, read after `since`, whose `messages` are the kept ones.
    pub fn new(
        stream: Option<String>,
        latest: Option<u64>,
        since: Option<u64>,
        messages: Vec<StoredMessage>,
    ) -> HistoryPage {
        let since = since.unwrap_or(0);
        let complete = match latest {
            // Nothing after `since` was dropped when nothing follows it, or the first kept
            // message directly follows it.
            Some(latest) => {
                since >= latest || messages.first().is_some_and(|m| m.offset == since + 1)
            }
            // No stream: a client that had seen messages of one cannot have them all.
            None => since == 0,
        };
        HistoryPage {
            stream,
            latest,
            messages,
            complete,
        }
    }

    /// The session's latest position, when it has a stream.
    pub fn position(&self) -> Option<StreamPosition> {
        Some(StreamPosition {
            stream: self.stream.clone()?,
            offset: self.latest?,
        })
    }
}

/// Reading a session's kept messages back (the writing is [`crate::store::Broker::publish`]'s).
#[async_trait]
pub trait History: Send + Sync {
    /// What this instance keeps from now on (its later publishes and reads follow it). A store
    /// starts with [`HistorySettings::default`].
    fn keep_history(&self, settings: HistorySettings);

    /// The kept messages of `session` after offset `since` (from the oldest kept one when `None`),
    /// oldest first, at most `limit` (0 reads only the stream and its latest offset).
    async fn history(
        &self,
        session: &str,
        since: Option<u64>,
        limit: usize,
    ) -> StoreResult<HistoryPage>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(offset: u64) -> StoredMessage {
        StoredMessage {
            offset,
            from: Some("c".into()),
            user: None,
            data: Value::Null,
            at: 0,
        }
    }

    #[test]
    fn a_page_is_complete_when_it_starts_right_after_since() {
        let s = || Some("s".to_owned());
        assert!(HistoryPage::new(s(), Some(3), None, vec![message(1)]).complete);
        assert!(HistoryPage::new(s(), Some(3), Some(1), vec![message(2)]).complete);
        assert!(!HistoryPage::new(s(), Some(3), Some(1), vec![message(3)]).complete);
        assert!(!HistoryPage::new(s(), Some(3), None, vec![]).complete);
        assert!(HistoryPage::new(s(), Some(3), Some(3), vec![]).complete);
        assert!(HistoryPage::new(None, None, None, vec![]).complete);
        assert!(!HistoryPage::new(None, None, Some(4), vec![]).complete);
    }

    #[test]
    fn the_position_needs_a_stream() {
        let page = HistoryPage::new(Some("s".into()), Some(7), None, vec![]);
        assert_eq!(
            page.position(),
            Some(StreamPosition {
                stream: "s".into(),
                offset: 7
            })
        );
        assert_eq!(HistoryPage::default().position(), None);
    }
}
