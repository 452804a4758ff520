//! Joins, leaves, profile changes, ends and reads of the in-process store's sessions, each ruled
//! by [`crate::rules`] and applied under the backend's lock.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl Sessions for MemoryStore {
    async fn join(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
    ) -> StoreResult<JoinOutcome> {
        let mut state = self.backend.lock();
        let entry = state.sessions.entry(session.to_owned()).or_default();
        let now = self.backend.clock.now_ms();
        match rules::join(&entry.view, &member, now, max_members).map_err(refused)? {
            JoinRuling::AlreadyMember { version } => Ok(JoinOutcome::AlreadyMember { version }),
            JoinRuling::Joins(change) => {
                if entry.view.members.is_empty() {
                    // A session that starts again keeps no log of its earlier life.
                    entry.log.clear();
                }
                Ok(JoinOutcome::Joined(
                    self.commit(&mut state, session, change),
                ))
            }
        }
    }

    async fn leave(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(None);
        };
        let held_here = entry
            .view
            .member(connection)
            .is_some_and(|m| m.instance == self.instance.incarnation);
        if !held_here {
            // Not a member, or resumed on another instance since: not this instance's to end.
            return Ok(None);
        }
        let Some(change) = rules::leave(&entry.view, connection, reason) else {
            return Ok(None);
        };
        Ok(Some(self.commit(&mut state, session, change)))
    }

    async fn write_plans(&self, session: &str, plans: &[Plan]) -> StoreResult<PlansWritten> {
        let mut state = self.backend.lock();
        let Some(first) = plans.first() else {
            return Ok(PlansWritten::All);
        };
        let Some(entry) = state.sessions.get(session) else {
            return Ok(PlansWritten::Declined);
        };
        if !rules::still_current(&Header::of(&entry.view), &first.after) {
            return Ok(PlansWritten::Declined);
        }
        for plan in plans {
            self.commit(&mut state, session, plan.change.clone());
        }
        Ok(PlansWritten::All)
    }

    async fn update_member(&self, session: &str, member: Member) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(None);
        };
        let Some(change) = rules::update(&entry.view, &member) else {
            return Ok(None);
        };
        Ok(Some(self.commit(&mut state, session, change)))
    }

    async fn resume(
        &self,
        session: &str,
        connection: &str,
        user: Option<&str>,
    ) -> StoreResult<ResumeRuling> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(ResumeRuling::Gone);
        };
        let ruling = rules::resume(&entry.view, connection, user, &self.instance.incarnation);
        if let ResumeRuling::Resumed {
            change: Some(change),
            ..
        } = &ruling
        {
            self.commit(&mut state, session, change.clone());
        }
        Ok(ruling)
    }

    async fn end(&self, session: &str, connection: &str, epoch: u64) -> StoreResult<Change> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Err(StoreError::NotLeader);
        };
        let change = rules::end(&entry.view, connection, epoch).map_err(refused)?;
        let change = self.commit(&mut state, session, change);
        if let Some(entry) = state.sessions.get_mut(session) {
            entry.view.ended_at = Some(self.backend.clock.now_ms());
        }
        Ok(change)
    }

    async fn view(&self, session: &str) -> StoreResult<Option<SessionView>> {
        Ok(self
            .backend
            .lock()
            .sessions
            .get(session)
            .map(|s| s.view.clone()))
    }

    async fn changes_since(&self, session: &str, version: u64) -> StoreResult<Option<Vec<Change>>> {
        let state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(Some(Vec::new()));
        };
        if version >= entry.view.version {
            return Ok(Some(Vec::new()));
        }
        let missing = (entry.view.version - version) as usize;
        if missing > entry.log.len() {
            return Ok(None);
        }
        Ok(Some(
            entry
                .log
                .iter()
                .skip(entry.log.len() - missing)
                .cloned()
                .collect(),
        ))
    }

    async fn counts(&self, sessions: &[String]) -> StoreResult<Vec<Counts>> {
        let state = self.backend.lock();
        Ok(sessions
            .iter()
            .map(|s| {
                state
                    .sessions
                    .get(s)
                    .map(|s| s.view.counts())
                    .unwrap_or_default()
            })
            .collect())
    }
}
