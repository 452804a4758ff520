//! Instance leases over Redis (keys tagged `{g}` and `{i:<incarnation>}`), timed by Redis `TIME`,
//! and, on a cluster, the per-shard check of [`super::shards`] on every renewal.

use ::redis::Value;
use async_trait::async_trait;
use futures_util::future::{join, try_join_all};

use super::reply::{ScriptStatus, array, int, status, text, unexpected};
use super::{RELEASE_WATCH, RedisStore, Result, fresh_token, lock};
use crate::store::{FeedEvent, LeaseStatus, Registry, StoreError, StoreResult};

#[async_trait]
impl Registry for RedisStore {
    async fn register(&self) -> StoreResult<Option<String>> {
        let mut call = self.global_call("register", &self.scripts.register);
        call.arg(&self.instance.incarnation)
            .arg(&self.instance.name)
            .arg(self.lease_ms())
            .arg(fresh_token());
        let sent = self.store_clock.now_ms();
        let items = array(self.invoke(&call).await?)?;
        self.observe_store_time(sent, items.get(2));
        let generation = items
            .first()
            .and_then(text)
            .ok_or_else(|| StoreError::Corrupt("register: no generation".into()))?;
        *lock(&self.generation) = Some(generation);
        // The shards' tokens are known from start-up on, before any member joins here.
        self.check_shards().await;
        Ok(items
            .get(1)
            .and_then(text)
            .filter(|previous| !previous.is_empty()))
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
        let sent = self.store_clock.now_ms();
        let (reply, refreshed) = join(
            self.invoke(&call),
            self.command("pexpire", &pexpire, std::slice::from_ref(&sessions_key)),
        )
        .await;
        refreshed?;
        let items = array(reply?)?;
        self.observe_store_time(sent, items.get(2));
        let generation = items
            .get(1)
            .and_then(text)
            .ok_or_else(|| StoreError::Corrupt("renew: no generation".into()))?;
        *lock(&self.generation) = Some(generation);
        self.check_shards().await;
        match status(&items)? {
            ScriptStatus::Held => Ok(LeaseStatus::Held),
            ScriptStatus::Lost => Ok(LeaseStatus::WasLost),
            ScriptStatus::Reset => {
                // The directory went with the rest (it lives beside the generation key): every
                // session must be marked again.
                lock(&self.marked).clear();
                Ok(LeaseStatus::StoreReset)
            }
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

    async fn resume_secret(&self) -> StoreResult<Vec<u8>> {
        let key = self.keys.resume_secret();
        let fresh = crate::resume::fresh_secret();
        // SET NX GET: the secret already there, or none when ours was just set.
        let mut set = ::redis::cmd("SET");
        set.arg(&key).arg(&fresh).arg("NX").arg("GET");
        match self
            .command("resume_secret", &set, std::slice::from_ref(&key))
            .await?
        {
            Value::Nil => Ok(fresh),
            Value::BulkString(existing) => Ok(existing),
            other => Err(StoreError::Corrupt(format!(
                "resume secret: unexpected reply {other:?}"
            ))),
        }
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

    async fn forget_instance(&self, dead: &str) -> StoreResult<()> {
        let mut call = self.global_call("forget", &self.scripts.forget);
        call.arg(dead);
        self.invoke(&call).await?;
        self.forget_keys_of(dead).await?;
        Ok(())
    }
}

impl RedisStore {
    /// Learns Redis's clock from a lease script's answer (`store_ms`) to a call sent at `sent`.
    fn observe_store_time(&self, sent: i64, store_ms: Option<&Value>) {
        if let Some(store_ms) = store_ms.and_then(|v| int(v).ok()) {
            let store_ms = i64::try_from(store_ms).unwrap_or(i64::MAX);
            self.store_clock
                .observe(sent, store_ms, self.store_clock.now_ms());
        }
    }

    /// Adds `session` to the session set of `incarnation` (a slot of its own).
    pub(super) async fn list_session(&self, incarnation: &str, session: &str) -> Result<()> {
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
