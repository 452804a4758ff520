//! Keeping the members Redis lists true to the instances that hold them.

use async_trait::async_trait;
use futures_util::future::join;

use super::RedisStore;
use super::reply::{
    ScriptStatus, array, change_of, int, member_json, optional_change, status, unexpected,
};
use crate::ids::ConnectionId;
use crate::model::{Change, LeaveReason, Member};
use crate::store::{Floor, StoreError, StoreResult, Upkeep};

#[async_trait]
impl Upkeep for RedisStore {
    async fn remove_instance_members(
        &self,
        session: &str,
        dead: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("remove_instance", &self.scripts.remove_instance, session);
        call.arg(dead).arg(reason.as_str());
        let reply = self.invoke(&call).await?;
        Ok(optional_change("remove_instance", reply)?)
    }

    async fn held_count(&self, session: &str) -> StoreResult<u64> {
        let key = self.keys.session_by_instance(session);
        let me = &self.instance.incarnation;
        let mut cmd = ::redis::cmd("ZLEXCOUNT");
        cmd.arg(&key)
            .arg(format!("[{me}\0"))
            .arg(format!("({me}\u{1}"));
        let reply = self
            .command("zlexcount", &cmd, std::slice::from_ref(&key))
            .await?;
        Ok(int(&reply)?)
    }

    async fn remove_strays(
        &self,
        session: &str,
        keep: &[ConnectionId],
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("remove_instance", &self.scripts.remove_instance, session);
        call.arg(&self.instance.incarnation).arg(reason.as_str());
        for connection in keep {
            call.arg(connection.as_str());
        }
        let reply = self.invoke(&call).await?;
        Ok(optional_change("remove_instance", reply)?)
    }

    async fn reassert(
        &self,
        session: &str,
        members: Vec<Member>,
        floor: Floor,
    ) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("reassert", &self.scripts.reassert, session);
        call.arg(floor.version).arg(floor.epoch);
        for member in &members {
            call.arg(member_json(member)?);
        }
        // Another slot: its own command, sent at the same time (see the module doc of `redis`).
        let (reply, listed) = join(
            self.invoke(&call),
            self.list_session(&self.instance.incarnation, session),
        )
        .await;
        listed?;
        let items = array(reply?)?;
        match status(&items)? {
            ScriptStatus::Ended => Err(StoreError::SessionEnded),
            ScriptStatus::None => Ok(None),
            ScriptStatus::Ok => Ok(Some(change_of(items.get(1))?)),
            other => Err(unexpected("reassert", other).into()),
        }
    }

    async fn touch(&self, session: &str) -> StoreResult<()> {
        let call = self.session_call("touch", &self.scripts.touch, session);
        self.invoke(&call).await?;
        Ok(())
    }
}
