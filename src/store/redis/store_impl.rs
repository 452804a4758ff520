//! The [`Store`] trait over Redis, standalone or cluster: each operation is one script call, or
//! a few commands of one slot each, its reply decoded by [`super::reply`].

use ::redis::Value;
use async_trait::async_trait;
use futures_util::future::{join, try_join_all};
use serde_json::Value as Json;

use super::reply::{
    ScriptStatus, array, change_of, int, member_json, optional_change, reply_error, status, text,
    unexpected, view_of,
};
use super::{RELEASE_WATCH, RedisStore, Result, fresh_token, lock};
use crate::ids::ConnectionId;
use crate::model::{Change, Counts, LeaveReason, Member, SessionView};
use crate::store::plan::Plan;
use crate::store::{
    Broadcast, BroadcastBody, FeedEvent, Floor, InstanceId, JoinOutcome, LeaseStatus, PlansWritten,
    Store, StoreError, StoreResult,
};

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn instance(&self) -> &InstanceId {
        &self.instance
    }

    async fn join(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
    ) -> StoreResult<JoinOutcome> {
        self.join_with(session, member, max_members, None).await
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

    async fn leave(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        self.leave_with(session, connection, reason, None).await
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
        // One call per session (each its own slot), all sent at once.
        let calls: Vec<_> = sessions
            .iter()
            .map(|s| self.session_call("counts", &self.scripts.counts, s))
            .collect();
        let replies = try_join_all(calls.iter().map(|call| self.invoke(call))).await?;
        let counts = replies
            .into_iter()
            .map(|reply| {
                let items = array(reply)?;
                match items.as_slice() {
                    [connections, users] => Ok(Counts {
                        connections: int(connections)?,
                        users: int(users)?,
                    }),
                    _ => Err(reply_error("counts reply")),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(counts)
    }

    async fn publish(
        &self,
        session: &str,
        from: &str,
        user: Option<&str>,
        data: &Json,
    ) -> StoreResult<()> {
        let message = Broadcast {
            session: session.into(),
            origin: self.instance.incarnation.clone(),
            body: BroadcastBody::Message {
                from: from.into(),
                user: user.map(str::to_owned),
                data: data.clone(),
            },
        };
        let payload = serde_json::to_string(&message)
            .map_err(|e| StoreError::Corrupt(format!("message JSON: {e}")))?;
        let channel = self.keys.channel(session);
        let mut cmd = ::redis::cmd("SPUBLISH");
        cmd.arg(&channel).arg(payload);
        self.command("spublish", &cmd, std::slice::from_ref(&channel))
            .await?;
        Ok(())
    }

    async fn subscribe(&self, session: &str) -> StoreResult<()> {
        // Two slots, so two commands, sent at the same time (see the module doc of `redis`).
        let (subscribed, listed) = join(
            self.subscriptions.subscribe(session),
            self.list_session(&self.instance.incarnation, session),
        )
        .await;
        subscribed?;
        listed?;
        Ok(())
    }

    async fn unsubscribe(&self, session: &str) -> StoreResult<()> {
        self.subscriptions.unsubscribe(session).await?;
        // No local member is left here: the session leaves this instance's session set too, so
        // the set stays as small as the instance's live sessions.
        let key = self.keys.instance_sessions(&self.instance.incarnation);
        let mut srem = ::redis::cmd("SREM");
        srem.arg(&key).arg(session);
        self.command("srem", &srem, std::slice::from_ref(&key))
            .await?;
        if self.shards.is_some() {
            let now = std::time::Instant::now();
            let mut released = lock(&self.released);
            released.retain(|(s, at)| s != session && now.duration_since(*at) < RELEASE_WATCH);
            released.push((session.to_owned(), now));
        }
        Ok(())
    }

    async fn register(&self) -> StoreResult<Option<String>> {
        let mut call = self.global_call("register", &self.scripts.register);
        call.arg(&self.instance.incarnation)
            .arg(&self.instance.name)
            .arg(self.lease_ms())
            .arg(fresh_token());
        let items = array(self.invoke(&call).await?)?;
        let generation = items
            .first()
            .and_then(text)
            .ok_or_else(|| StoreError::Corrupt("register: no generation".into()))?;
        *lock(&self.generation) = Some(generation);
        // The shards' tokens are known from start-up on, before any member joins here.
        self.check_shards().await;
        Ok(items.get(1).and_then(text))
    }

    async fn renew_lease(&self) -> StoreResult<LeaseStatus> {
        let known = lock(&self.generation).clone().unwrap_or_default();
        let mut call = self.global_call("renew", &self.scripts.renew);
        call.arg(&self.instance.incarnation)
            .arg(&self.instance.name)
            .arg(self.lease_ms())
            .arg(known)
            .arg(fresh_token());
        let sessions_key = self.keys.instance_sessions(&self.instance.incarnation);
        let mut pexpire = ::redis::cmd("PEXPIRE");
        pexpire.arg(&sessions_key).arg(self.ttl_ms());
        let (reply, refreshed) = join(
            self.invoke(&call),
            self.command("pexpire", &pexpire, std::slice::from_ref(&sessions_key)),
        )
        .await;
        refreshed?;
        let items = array(reply?)?;
        let generation = items
            .get(1)
            .and_then(text)
            .ok_or_else(|| StoreError::Corrupt("renew: no generation".into()))?;
        *lock(&self.generation) = Some(generation);
        self.check_shards().await;
        match status(&items)? {
            ScriptStatus::Held => Ok(LeaseStatus::Held),
            ScriptStatus::Lost => Ok(LeaseStatus::WasLost),
            ScriptStatus::Reset => Ok(LeaseStatus::StoreReset),
            other => Err(unexpected("renew", other).into()),
        }
    }

    async fn deregister(&self) -> StoreResult<()> {
        let mut call = self.global_call("deregister", &self.scripts.deregister);
        call.arg(&self.instance.incarnation)
            .arg(&self.instance.name);
        self.invoke(&call).await?;
        self.forget_keys_of(&self.instance.incarnation).await?;
        Ok(())
    }

    async fn expired_instances(&self) -> StoreResult<Vec<String>> {
        let call = self.global_call("expired", &self.scripts.expired);
        let items = array(self.invoke(&call).await?)?;
        Ok(items.iter().filter_map(text).collect())
    }

    async fn claim_reap(&self, dead: &str) -> StoreResult<bool> {
        let key = self.keys.instance_claim(dead);
        self.record("claim", std::slice::from_ref(&key));
        let mut call = self.scripts.claim.key(&key);
        call.arg(&self.instance.incarnation).arg(self.lease_ms());
        let reply = self.invoke(&call).await?;
        Ok(int(&reply)? == 1)
    }

    async fn sessions_of(&self, dead: &str) -> StoreResult<Vec<String>> {
        let key = self.keys.instance_sessions(dead);
        let mut cmd = ::redis::cmd("SMEMBERS");
        cmd.arg(&key);
        let listed = self
            .command("smembers", &cmd, std::slice::from_ref(&key))
            .await?;
        let listed: Vec<String> = array(listed)?.iter().filter_map(text).collect();
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        // The set is a superset (see the module doc): keep the sessions where `dead` still has an
        // entry in the per-instance index (one command per session, each its own slot).
        let present = try_join_all(listed.iter().map(|session| async move {
            let key = self.keys.session_by_instance(session);
            let mut cmd = ::redis::cmd("ZRANGEBYLEX");
            cmd.arg(&key)
                .arg(format!("[{dead}\0"))
                .arg(format!("({dead}\u{1}"))
                .arg("LIMIT")
                .arg(0)
                .arg(1);
            self.command("zrangebylex", &cmd, std::slice::from_ref(&key))
                .await
        }))
        .await?;
        let mut sessions: Vec<String> = listed
            .into_iter()
            .zip(present)
            .filter(|(_, found)| matches!(found, Value::Array(a) if !a.is_empty()))
            .map(|(session, _)| session)
            .collect();
        sessions.sort();
        Ok(sessions)
    }

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

    async fn forget_instance(&self, dead: &str) -> StoreResult<()> {
        let mut call = self.global_call("forget", &self.scripts.forget);
        call.arg(dead);
        self.invoke(&call).await?;
        self.forget_keys_of(dead).await?;
        Ok(())
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

impl RedisStore {
    /// Adds `session` to the session set of `incarnation` (a slot of its own).
    async fn list_session(&self, incarnation: &str, session: &str) -> Result<()> {
        let key = self.keys.instance_sessions(incarnation);
        let mut sadd = ::redis::cmd("SADD");
        sadd.arg(&key).arg(session);
        self.command("sadd", &sadd, std::slice::from_ref(&key))
            .await?;
        Ok(())
    }

    /// Deletes the `{i:<incarnation>}` keys (one slot).
    async fn forget_keys_of(&self, incarnation: &str) -> Result<()> {
        let keys = [
            self.keys.instance_sessions(incarnation),
            self.keys.instance_claim(incarnation),
        ];
        let mut del = ::redis::cmd("DEL");
        del.arg(&keys[..]);
        self.command("del", &del, &keys).await?;
        Ok(())
    }

    /// On a cluster: the per-shard check of [`super::shards`]; its verdict goes to the feed. A
    /// failed check (a master unreachable) is tried again on the next heartbeat.
    async fn check_shards(&self) {
        let Some(shards) = &self.shards else {
            return;
        };
        let mut sessions = self.subscriptions.sessions().await;
        {
            let mut released = lock(&self.released);
            released.retain(|(_, at)| at.elapsed() < RELEASE_WATCH);
            sessions.extend(released.iter().map(|(session, _)| session.clone()));
        }
        match shards
            .check(&self.conn, &self.keys, &sessions, |name, keys| {
                self.record(name, keys)
            })
            .await
        {
            Ok(verdict) => {
                for (sessions, reassert) in [(verdict.reassert, true), (verdict.reconcile, false)] {
                    if !sessions.is_empty() {
                        let _ = self.feed.send(FeedEvent::Reconcile { sessions, reassert });
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cluster shard check failed; will retry"),
        }
    }
}
