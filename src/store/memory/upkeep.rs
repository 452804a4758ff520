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
            s.view.members.iter().filter(|m| &m.instance == me).count() as u64
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
}
