//! The session operations of the Redis store: each one script call (joins and leaves through
//! [`super::membership`]), its reply decoded by [`super::reply`].

use async_trait::async_trait;

use super::reply::{
    ScriptStatus, array, change_of, int, member_json, optional_change, reply_error, status,
    unexpected, view_of,
};
use super::{RedisStore, Result};
use crate::model::{Change, Counts, LeaveReason, Member, SessionView};
use crate::store::plan::Plan;
use crate::store::{JoinOutcome, PlansWritten, ResumeRuling, Sessions, StoreError, StoreResult};

#[async_trait]
impl Sessions for RedisStore {
    async fn join(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
    ) -> StoreResult<JoinOutcome> {
        self.join_with(session, member, max_members, None).await
    }

    async fn leave(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        self.leave_with(session, connection, reason, None).await
    }

    async fn join_planned(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
        plan: Plan,
    ) -> StoreResult<JoinOutcome> {
        self.join_with(session, member, max_members, Some(plan))
            .await
    }

    async fn leave_planned(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
        plan: Plan,
    ) -> StoreResult<Option<Change>> {
        self.leave_with(session, connection, reason, Some(plan))
            .await
    }

    async fn write_plans(&self, session: &str, plans: &[Plan]) -> StoreResult<PlansWritten> {
        self.write_batch(session, plans).await
    }

    async fn update_member(&self, session: &str, member: Member) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("update", &self.scripts.update, session);
        call.arg(member_json(&member)?);
        let reply = self.invoke(&call).await?;
        Ok(optional_change("update", reply)?)
    }

    async fn resume(
        &self,
        session: &str,
        connection: &str,
        user: Option<&str>,
    ) -> StoreResult<ResumeRuling> {
        let mut call = self.session_call("resume", &self.scripts.resume, session);
        call.arg(connection)
            .arg(user.unwrap_or(""))
            .arg(self.store_clock.deadline());
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::None => Ok(ResumeRuling::Gone),
            ScriptStatus::Forbidden => Ok(ResumeRuling::OtherUser),
            ScriptStatus::Late => Err(StoreError::unavailable_because(
                "the store ran the resume after its deadline and did nothing",
            )),
            ScriptStatus::Same => Ok(ResumeRuling::Resumed {
                change: None,
                version: int(items.get(1).unwrap_or(&::redis::Value::Nil))?,
            }),
            ScriptStatus::Ok => {
                let change = change_of(items.get(1))?;
                Ok(ResumeRuling::Resumed {
                    version: change.version,
                    change: Some(change),
                })
            }
            other => Err(unexpected("resume", other).into()),
        }
    }

    async fn end(&self, session: &str, connection: &str, epoch: u64) -> StoreResult<Change> {
        let mut call = self.session_call("end", &self.scripts.end, session);
        call.arg(connection).arg(epoch);
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::NotLeader => Err(StoreError::NotLeader),
            ScriptStatus::Ended => Err(StoreError::SessionEnded),
            ScriptStatus::Ok => Ok(change_of(items.get(1))?),
            other => Err(unexpected("end", other).into()),
        }
    }

    async fn view(&self, session: &str) -> StoreResult<Option<SessionView>> {
        let call = self.session_call("view", &self.scripts.view, session);
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::None => Ok(None),
            _ => Ok(Some(view_of(&items)?)),
        }
    }

    async fn changes_since(&self, session: &str, version: u64) -> StoreResult<Option<Vec<Change>>> {
        let mut call = self.session_call("changes", &self.scripts.changes, session);
        call.arg(version);
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::None => Ok(None),
            ScriptStatus::Ok => {
                let changes = items[1..].iter().map(|item| change_of(Some(item)));
                Ok(Some(changes.collect::<Result<Vec<_>>>()?))
            }
            other => Err(unexpected("changes", other).into()),
        }
    }

    async fn counts(&self, sessions: &[String]) -> StoreResult<Vec<Counts>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let replies = self
            .per_session("counts", &self.scripts.counts, sessions)
            .await?;
        let counts = replies
            .into_iter()
            .map(|reply| {
                let items = array(reply)?;
                match items.as_slice() {
                    [connections, users, reconnecting] => Ok(Counts {
                        connections: int(connections)?,
                        users: int(users)?,
                        reconnecting: int(reconnecting)?,
                    }),
                    _ => Err(reply_error("counts reply")),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(counts)
    }
}
