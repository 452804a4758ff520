//! The in-process outbox and directory: the same contract as Redis's, in this process's memory.
//! Undelivered entries die with the process; with one instance there is nobody else to deliver
//! them anyway.

use std::collections::VecDeque;

use async_trait::async_trait;

use super::*;
use crate::store::{Directory, EntryId, Outbox, OutboxEntry, PendingSession, SessionPage};

/// Entries kept for delivery, and who delivers them.
#[derive(Default)]
pub(super) struct OutboxState {
    pub on: bool,
    pub sessions: HashMap<String, VecDeque<OutboxEntry>>,
    holder: Option<(String, Instant)>,
}

impl MemoryStore {
    /// Keeps `change` of `session` for delivery, when the outbox is on.
    pub(super) fn keep_for_delivery(&self, state: &mut State, session: &str, change: &Change) {
        if !state.outbox.on {
            return;
        }
        let members = state
            .sessions
            .get(session)
            .map_or(0, |s| s.view.members.len() as u64);
        let entry = OutboxEntry {
            at: self.backend.clock.now_ms(),
            members,
            changes: vec![change.clone()],
        };
        state
            .outbox
            .sessions
            .entry(session.to_owned())
            .or_default()
            .push_back(entry);
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    fn keep_outbox(&self, on: bool) {
        self.backend.lock().outbox.on = on;
    }

    async fn pending(
        &self,
        sessions: usize,
        per_session: usize,
        _events: usize,
    ) -> StoreResult<Vec<PendingSession>> {
        let state = self.backend.lock();
        let mut pending: Vec<PendingSession> = state
            .outbox
            .sessions
            .iter()
            .filter(|(_, entries)| !entries.is_empty())
            .map(|(session, entries)| PendingSession {
                session: session.clone(),
                entries: entries.iter().take(per_session).cloned().collect(),
            })
            .collect();
        pending.sort_by_key(|p| (p.entries[0].at, p.session.clone()));
        pending.truncate(sessions);
        Ok(pending)
    }

    async fn acknowledge(
        &self,
        session: &str,
        through: EntryId,
        entries: usize,
    ) -> StoreResult<usize> {
        let mut state = self.backend.lock();
        let Some(kept) = state.outbox.sessions.get_mut(session) else {
            return Ok(0);
        };
        let Some(last) = kept.iter().take(entries).position(|e| e.id() == through) else {
            return Ok(0);
        };
        kept.drain(..=last);
        if kept.is_empty() {
            state.outbox.sessions.remove(session);
        }
        Ok(last + 1)
    }

    async fn hold_delivery(&self, ttl: Duration) -> StoreResult<bool> {
        let mut state = self.backend.lock();
        let me = self.instance.incarnation.to_string();
        let now = Instant::now();
        let held_by_other = matches!(&state.outbox.holder,
            Some((holder, until)) if *holder != me && *until > now);
        if held_by_other {
            return Ok(false);
        }
        state.outbox.holder = Some((me, now + ttl));
        Ok(true)
    }
}

#[async_trait]
impl Directory for MemoryStore {
    async fn live_sessions(&self, cursor: Option<&str>, limit: usize) -> StoreResult<SessionPage> {
        let state = self.backend.lock();
        let mut live: Vec<(&String, &SessionState)> = state
            .sessions
            .iter()
            .filter(|(id, s)| {
                !s.view.members.is_empty() && cursor.is_none_or(|after| id.as_str() > after)
            })
            .collect();
        live.sort_by(|a, b| a.0.cmp(b.0));
        let more = live.len() > limit;
        live.truncate(limit);
        let sessions: Vec<(String, Counts)> = live
            .into_iter()
            .map(|(id, s)| (id.clone(), Counts::of(&s.view.members)))
            .collect();
        let cursor = match more {
            true => sessions.last().map(|(id, _)| id.clone()),
            false => None,
        };
        Ok(SessionPage { sessions, cursor })
    }

    /// The in-process store lists sessions straight from its state: there is no index to tidy.
    async fn tidy_directory(&self) -> StoreResult<usize> {
        Ok(0)
    }
}
