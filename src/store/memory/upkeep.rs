//! Keeping the in-process store's members true to the engines that hold them.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl Upkeep for MemoryStore {
    async fn remove_instance_members(
        &self,
        session: &str,
        dead: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        Ok(self.remove_members_of(session, dead, &[], reason))
    }

    async fn held_count(&self, session: &str) -> StoreResult<u64> {
        let state = self.backend.lock();
        let me = &self.instance.incarnation;
        Ok(state.sessions.get(session).map_or(0, |s| {
            let held = s.view.members.iter();
            held.filter(|m| &m.instance == me && m.is_present()).count() as u64
        }))
    }

    async fn remove_strays(
        &self,
        session: &str,
        keep: &[ConnectionId],
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let me = self.instance.incarnation.clone();
        Ok(self.remove_members_of(session, &me, keep, reason))
    }

    async fn reassert(
        &self,
        session: &str,
        members: Vec<Member>,
        floor: Floor,
    ) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let entry = state.sessions.entry(session.to_owned()).or_default();
        if entry.view.ended_at.is_some() {
            return Err(StoreError::SessionEnded);
        }
        let floor = Header {
            version: floor.version,
            epoch: floor.epoch,
            leader: None,
        };
        let (kept, change) = rules::reassert(&entry.view, &members, &floor);
        if kept.version > entry.view.version {
            // The version jumps: the log would no longer hold consecutive versions.
            entry.log.clear();
        }
        entry.view.version = kept.version;
        entry.view.epoch = kept.epoch;
        let Some(change) = change else {
            return Ok(None);
        };
        let change = self.commit(&mut state, session, change);
        let instance = self.instance.incarnation.to_string();
        Self::track(&mut state, &instance, session, true);
        Ok(Some(change))
    }

    async fn touch(&self, _session: &str) -> StoreResult<()> {
        Ok(())
    }

    async fn suspend(
        &self,
        session: &str,
        whose: Whose<'_>,
        reason: LeaveReason,
        grace: Duration,
    ) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(None);
        };
        let me = &self.instance.incarnation;
        let until = self.backend.clock.now_ms() + grace.as_millis() as i64;
        let losing = |m: &Member| match whose {
            Whose::Connection(connection) => m.connection == connection && &m.instance == me,
            Whose::Instance(instance) => m.instance == instance,
        };
        let Some(change) = rules::suspend(&entry.view, losing, reason, until) else {
            return Ok(None);
        };
        Ok(Some(self.commit(&mut state, session, change)))
    }

    async fn end_graces(&self, session: &str) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(None);
        };
        let Some(change) = rules::expire(&entry.view, i64::MAX) else {
            return Ok(None);
        };
        Ok(Some(self.commit(&mut state, session, change)))
    }

    async fn expire_graces(&self) -> StoreResult<Vec<(String, Change)>> {
        let mut state = self.backend.lock();
        let now = self.backend.clock.now_ms();
        let due: Vec<(String, Change)> = state
            .sessions
            .iter()
            .filter_map(|(session, entry)| {
                rules::expire(&entry.view, now).map(|change| (session.clone(), change))
            })
            .collect();
        Ok(due
            .into_iter()
            .map(|(session, change)| {
                let change = self.commit(&mut state, &session, change);
                (session, change)
            })
            .collect())
    }
}
