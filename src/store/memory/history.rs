//! The in-process store's message history ([`crate::store::history`]): per session, the stream's
//! id, its latest offset and the kept messages, under the backend's lock, so that numbering,
//! keeping and broadcasting a message are one step as with Redis. Time is the backend's wall
//! clock; expired messages and streams are dropped when the session's history is next touched.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;

use async_trait::async_trait;

use super::*;
use crate::store::{History, HistoryPage, StoredMessage, StreamPosition};

/// One session's stream.
pub(super) struct MessageLog {
    stream: String,
    latest: u64,
    /// The latest messages, oldest first, consecutive offsets ending at `latest`.
    kept: VecDeque<StoredMessage>,
    /// When the stream is forgotten (ms), refreshed like the Redis keys' expiry.
    expires_ms: i64,
}

impl MessageLog {
    fn new() -> MessageLog {
        MessageLog {
            stream: uuid::Uuid::new_v4().simple().to_string(),
            latest: 0,
            kept: VecDeque::new(),
            expires_ms: 0,
        }
    }
}

/// The session's log, unless it expired (then it is forgotten).
fn live_log<'a>(state: &'a mut State, session: &str, now: i64) -> Option<&'a mut MessageLog> {
    if state
        .histories
        .get(session)
        .is_some_and(|log| now >= log.expires_ms)
    {
        state.histories.remove(session);
    }
    state.histories.get_mut(session)
}

impl MemoryStore {
    fn history_settings(&self) -> HistorySettings {
        *self
            .history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Numbers a message, keeps it and sends it to the other instances, in one step.
    pub(super) fn publish_message(
        &self,
        session: &str,
        from: Option<&str>,
        user: Option<&str>,
        data: &Value,
    ) -> StreamPosition {
        let mut state = self.backend.lock();
        self.publish_locked(&mut state, session, from, user, data)
    }

    /// [`MemoryStore::publish_message`] under the backend's lock, for callers that check the
    /// session in the same step.
    pub(super) fn publish_locked(
        &self,
        state: &mut State,
        session: &str,
        from: Option<&str>,
        user: Option<&str>,
        data: &Value,
    ) -> StreamPosition {
        let settings = self.history_settings();
        let ttl = settings.ttl_ms() as i64;
        let now = self.backend.clock.now_ms();
        let log = match state.histories.entry(session.to_owned()) {
            Entry::Occupied(expired) if now >= expired.get().expires_ms => {
                let log = expired.into_mut();
                *log = MessageLog::new();
                log
            }
            Entry::Occupied(live) => live.into_mut(),
            Entry::Vacant(none) => none.insert(MessageLog::new()),
        };
        log.latest += 1;
        if settings.size == 0 {
            log.kept.clear();
        } else {
            log.kept.push_back(StoredMessage {
                offset: log.latest,
                from: from.map(ConnectionId::from),
                user: user.map(str::to_owned),
                data: data.clone(),
                at: now,
            });
            while log.kept.len() > settings.size {
                log.kept.pop_front();
            }
        }
        if now + ttl > log.expires_ms {
            log.expires_ms = now + 2 * ttl;
        }
        let position = StreamPosition {
            stream: log.stream.clone(),
            offset: log.latest,
        };
        let body = BroadcastBody::Message {
            from: from.map(ConnectionId::from),
            user: user.map(str::to_owned),
            data: data.clone(),
            stream: Some(position.stream.clone()),
            offset: Some(position.offset),
        };
        self.broadcast(state, session, body);
        position
    }
}

#[async_trait]
impl History for MemoryStore {
    fn keep_history(&self, settings: HistorySettings) {
        *self
            .history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = settings;
    }

    async fn history(
        &self,
        session: &str,
        since: Option<u64>,
        limit: usize,
    ) -> StoreResult<HistoryPage> {
        let settings = self.history_settings();
        let now = self.backend.clock.now_ms();
        let mut state = self.backend.lock();
        let Some(log) = live_log(&mut state, session, now) else {
            return Ok(HistoryPage::new(None, None, since, Vec::new()));
        };
        let fresh_from = now - settings.ttl_ms() as i64;
        let after = since.unwrap_or(0);
        let skip = log.kept.len().saturating_sub(settings.size);
        let messages = log
            .kept
            .iter()
            .skip(skip)
            .filter(|m| m.at >= fresh_from && m.offset > after)
            .take(limit)
            .cloned()
            .collect();
        Ok(HistoryPage::new(
            Some(log.stream.clone()),
            Some(log.latest),
            since,
            messages,
        ))
    }
}
