//! The server API's operations on the in-process store ([`crate::store::Operator`]), each ruled
//! by [`crate::rules`] and applied under the backend's lock, like every other change.

use async_trait::async_trait;

use super::*;
use crate::store::{KickTarget, Operator, StreamPosition};

#[async_trait]
impl Operator for MemoryStore {
    async fn publish_as_server(
        &self,
        session: &str,
        data: &Value,
    ) -> StoreResult<Option<StreamPosition>> {
        let mut state = self.backend.lock();
        let live = state
            .sessions
            .get(session)
            .is_some_and(|s| !s.view.members.is_empty());
        if !live {
            return Ok(None);
        }
        Ok(Some(
            self.publish_locked(&mut state, session, None, None, data),
        ))
    }

    async fn kick(
        &self,
        session: &str,
        target: KickTarget<'_>,
        detail: Option<&str>,
    ) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(None);
        };
        let Some(change) = rules::kick(&entry.view, target, detail) else {
            return Ok(None);
        };
        Ok(Some(self.commit(&mut state, session, change)))
    }

    async fn end_by_server(&self, session: &str) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(None);
        };
        let Some(change) = rules::close(&entry.view) else {
            return Ok(None);
        };
        let change = self.commit(&mut state, session, change);
        if let Some(entry) = state.sessions.get_mut(session) {
            entry.view.ended_at = Some(self.backend.clock.now_ms());
        }
        Ok(Some(change))
    }

    async fn views(&self, sessions: &[String]) -> StoreResult<Vec<Option<SessionView>>> {
        let state = self.backend.lock();
        Ok(sessions
            .iter()
            .map(|s| state.sessions.get(s).map(|s| s.view.clone()))
            .collect())
    }
}
