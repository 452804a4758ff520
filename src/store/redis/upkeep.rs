//! Keeping the members Redis lists true to the instances that hold them.

use async_trait::async_trait;
use futures_util::future::join;

use super::RedisStore;
use super::reply::{
    ScriptStatus, array, change_of, int, member_json, optional_change, status, text, unexpected,
};
use crate::ids::ConnectionId;
use crate::model::{Change, LeaveReason, Member};
use crate::store::{Floor, StoreError, StoreResult, Upkeep, Whose};
use std::collections::HashMap;
use std::time::Duration;

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
        self.mark(session).await?;
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

    async fn suspend(
        &self,
        session: &str,
        whose: Whose<'_>,
        reason: LeaveReason,
        grace: Duration,
    ) -> StoreResult<Option<Change>> {
        // The index entry first: whatever happens to this instance after, the deadline the
        // script sets is found (the entry outlives every deadline of its session, see
        // `expire_graces`).
        let entry = grace_entry(session);
        let estimate = self.store_clock.store_now_ms() + grace.as_millis() as i64;
        self.index_grace(&entry, estimate, false).await?;
        let (mode, who) = match whose {
            Whose::Connection(connection) => ("connection", connection),
            Whose::Instance(instance) => ("instance", instance),
        };
        let mut call = self.session_call("suspend", &self.scripts.suspend, session);
        call.arg(mode)
            .arg(who)
            .arg(reason.as_str())
            .arg(grace.as_millis() as u64);
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::None => {
                self.unindex_grace(&entry).await?;
                Ok(None)
            }
            ScriptStatus::Ok => {
                let change = change_of(items.get(1))?;
                if let Some(until) = items.get(2).map(int).transpose()? {
                    self.index_grace(&entry, until as i64, true).await?;
                }
                Ok(Some(change))
            }
            other => Err(unexpected("suspend", other).into()),
        }
    }

    async fn end_graces(&self, session: &str) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("expire", &self.scripts.expire, session);
        call.arg("all");
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::Ok => Ok(Some(change_of(items.get(2))?)),
            ScriptStatus::None => Ok(None),
            other => Err(unexpected("expire", other).into()),
        }
    }

    async fn expire_graces(&self) -> StoreResult<Vec<(String, Change)>> {
        let index = self.keys.graces();
        let mut call = self.scripts.graces_due.prepare_invoke();
        call.key(&index).arg(GRACES_PER_PASS);
        let due = array(self.invoke(&call).await?)?;
        let mut by_session: HashMap<String, Vec<String>> = HashMap::new();
        for entry in due.iter().filter_map(text) {
            if let Some((session, _)) = entry.split_once('\0') {
                by_session
                    .entry(session.to_owned())
                    .or_default()
                    .push(entry.clone());
            }
        }
        let mut changes = Vec::new();
        for (session, entries) in by_session {
            let call = self.session_call("expire", &self.scripts.expire, &session);
            let items = array(self.invoke(&call).await?)?;
            let next = items.get(1).and_then(text).unwrap_or_default();
            match status(&items)? {
                ScriptStatus::Ok => changes.push((session.clone(), change_of(items.get(2))?)),
                ScriptStatus::None => {}
                other => return Err(unexpected("expire", other).into()),
            }
            for entry in entries {
                match next.parse::<i64>() {
                    // Deadlines still pending: the entry now points at the earliest.
                    Ok(next) => self.index_grace(&entry, next, true).await?,
                    Err(_) => self.unindex_grace(&entry).await?,
                }
            }
        }
        Ok(changes)
    }
}

/// Grace index entries read per pass of [`Upkeep::expire_graces`].
const GRACES_PER_PASS: usize = 256;

/// A new entry of the grace index for `session`: `<session>\0<tag>`, unique per suspension.
fn grace_entry(session: &str) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{session}\0{}", &tag[..12])
}

impl RedisStore {
    /// Scores `entry` of the grace index at `at` (only an existing entry when `existing`).
    async fn index_grace(&self, entry: &str, at: i64, existing: bool) -> StoreResult<()> {
        let index = self.keys.graces();
        let mut zadd = ::redis::cmd("ZADD");
        zadd.arg(&index);
        if existing {
            zadd.arg("XX");
        }
        zadd.arg(at).arg(entry);
        self.command("grace_index", &zadd, std::slice::from_ref(&index))
            .await?;
        Ok(())
    }

    async fn unindex_grace(&self, entry: &str) -> StoreResult<()> {
        let index = self.keys.graces();
        let mut zrem = ::redis::cmd("ZREM");
        zrem.arg(&index).arg(entry);
        self.command("grace_index", &zrem, std::slice::from_ref(&index))
            .await?;
        Ok(())
    }
}
