//! Redis [`Store`](crate::store::Store): the shared state of several instances, behaving event for event like
//! [`super::memory`].
//!
//! # Why
//! Several rollcall processes serve the same sessions. They agree on members, leader, epoch and
//! version through Redis, and tell each other about changes over pub/sub. Every change of a session
//! is one atomic Lua script (sent with EVALSHA, reloaded by [`::redis::Script`] after a flush) that
//! also PUBLISHes the change, so a change and its event cannot come apart. Lease times come from
//! Redis `TIME`, never from instance clocks.
//!
//! Key and channel names are in [`keys`]; script replies are decoded in [`reply`]; the pub/sub
//! feed runs in [`feed`].
//!
//! # One slot per script, one round trip per operation
//! A join changes the session (slot of `{s:<id>}`) and the instance's session set (slot of
//! `{i:<incarnation>}`). The join script touches only session keys; the `SADD` to the instance's
//! session set is a second command in the same pipeline, so a join is still one round trip. The
//! instance's session set is therefore a superset while the instance has members there: entries are
//! added on join and re-assertion, not removed on leave (a conditional removal would need the
//! script's answer, i.e. a second round trip, and would race with a concurrent join); they are
//! removed by [`Store::unsubscribe`](crate::store::Store::unsubscribe), which the supervisor calls, in order with its subscriptions,
//! when the instance's last local member of the session is gone. [`Store::sessions_of`](crate::store::Store::sessions_of) filters it against the
//! sessions' `byinst` index, and the set is deleted when its instance is forgotten or deregisters.
//! The global keys share the tag `{g}` so the lease scripts are single-slot too.
//!
//! Session keys carry a backstop TTL (default 24 h), refreshed by the scripts that may create keys
//! (join, reassert, end) and by [`Store::touch`](crate::store::Store::touch), which the supervisor calls for its sessions
//! every minute; leave, update and remove_instance only touch keys that already carry the TTL,
//! which saves five `PEXPIRE`s per call. The instance's session set is refreshed by every lease
//! renewal.
//!
//! # Pub/sub
//! One [`ConnectionManager`] (RESP3) carries commands and subscriptions; see [`feed`].

mod feed;
pub mod keys;
mod reply;
mod scripts;
mod store_impl;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{
    ErrorKind, IntoConnectionInfo, ProtocolVersion, PushInfo, RedisError, Script, ServerErrorKind,
    Value,
};
use tokio::sync::mpsc;

use super::{Feed, InstanceId, StoreError};
pub use keys::KeyLayout;
use scripts::Scripts;

/// Default backstop TTL of session keys.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Every Redis operation gives up after this long and reports [`StoreError::Unavailable`].
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of the Redis store before they are mapped to [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("invalid redis url: {0}")]
    Url(String),
    #[error("unexpected reply from a script: {0}")]
    Reply(String),
}

impl From<RedisStoreError> for StoreError {
    fn from(e: RedisStoreError) -> StoreError {
        match e {
            RedisStoreError::Reply(m) => StoreError::Corrupt(m),
            other => StoreError::unavailable(other),
        }
    }
}

/// A recorded script call: the script's name and the keys it was given.
pub type ScriptCall = (&'static str, Vec<String>);

type Result<T, E = RedisStoreError> = std::result::Result<T, E>;

/// One instance's handle on the shared Redis.
pub struct RedisStore {
    conn: ConnectionManager,
    keys: KeyLayout,
    instance: InstanceId,
    lease: Duration,
    session_ttl: Duration,
    scripts: Scripts,
    generation: Mutex<Option<String>>,
    /// Keys of every script call, when recording is switched on (slot-rule tests).
    recorded: Mutex<Option<Vec<ScriptCall>>>,
    feed_task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.feed_task.abort();
    }
}

impl RedisStore {
    /// Connects to Redis at `url`, with keys and channels under `key_prefix`. Returns the store
    /// and the feed of what the other instances publish on the sessions this one subscribes to.
    pub async fn connect(
        url: &str,
        key_prefix: &str,
        instance: InstanceId,
        lease: Duration,
        session_ttl: Duration,
    ) -> Result<(RedisStore, Feed), StoreError> {
        Ok(Self::connect_inner(url, key_prefix, instance, lease, session_ttl).await?)
    }

    async fn connect_inner(
        url: &str,
        key_prefix: &str,
        instance: InstanceId,
        lease: Duration,
        session_ttl: Duration,
    ) -> Result<(RedisStore, Feed)> {
        let client =
            ::redis::Client::open(resp3(url)?).map_err(|e| RedisStoreError::Url(e.to_string()))?;
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(push_tx)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(OPERATION_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        let conn = within(ConnectionManager::new_with_config(client, config)).await??;
        let keys = KeyLayout::new(key_prefix);
        let (feed_tx, feed_rx) = mpsc::unbounded_channel();
        let feed_task = tokio::spawn(feed::run_feed(
            push_rx,
            feed_tx,
            conn.clone(),
            keys.clone(),
            instance.incarnation.clone(),
        ));
        let store = RedisStore {
            conn,
            keys,
            instance,
            lease,
            session_ttl,
            scripts: Scripts::load(),
            generation: Mutex::new(None),
            recorded: Mutex::new(None),
            feed_task,
        };
        Ok((store, feed_rx))
    }

    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    /// Starts (or stops and clears) recording the keys of every script call, for tests.
    pub fn record_script_keys(&self, on: bool) {
        *lock(&self.recorded) = on.then(Vec::new);
    }

    /// The script calls recorded since [`RedisStore::record_script_keys`]: (script name, keys).
    pub fn recorded_script_keys(&self) -> Vec<ScriptCall> {
        lock(&self.recorded).clone().unwrap_or_default()
    }

    fn record(&self, name: &'static str, keys: &[String]) {
        if let Some(calls) = lock(&self.recorded).as_mut() {
            calls.push((name, keys.to_vec()));
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.session_ttl.as_millis().max(1) as u64
    }

    fn lease_ms(&self) -> u64 {
        self.lease.as_millis().max(1) as u64
    }

    /// A session script call with its keys and common ARGV (channel, origin, session, TTL).
    fn session_call<'a>(
        &'a self,
        name: &'static str,
        script: &'a Script,
        session: &str,
    ) -> ::redis::ScriptInvocation<'a> {
        let keys = self.keys.session(session);
        self.record(name, &keys);
        let mut call = script.prepare_invoke();
        for key in &keys {
            call.key(key);
        }
        call.arg(self.keys.channel(session))
            .arg(&self.instance.incarnation)
            .arg(session)
            .arg(self.ttl_ms());
        call
    }

    fn global_call<'a>(
        &'a self,
        name: &'static str,
        script: &'a Script,
    ) -> ::redis::ScriptInvocation<'a> {
        let keys = self.keys.global();
        self.record(name, &keys);
        let mut call = script.prepare_invoke();
        for key in &keys {
            call.key(key);
        }
        call
    }

    async fn invoke(&self, call: &::redis::ScriptInvocation<'_>) -> Result<Value> {
        let mut conn = self.conn.clone();
        Ok(within(call.invoke_async::<Value>(&mut conn)).await??)
    }

    /// Sends a pipeline whose first command is a script call; loads the script and retries once
    /// if Redis does not know it (after `SCRIPT FLUSH` or a restart).
    async fn pipeline_with_script(
        &self,
        script: &Script,
        pipe: &::redis::Pipeline,
    ) -> Result<Vec<Value>> {
        let mut conn = self.conn.clone();
        match within(pipe.query_async::<Vec<Value>>(&mut conn)).await? {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                within(script.load_async(&mut conn)).await??;
                Ok(within(pipe.query_async::<Vec<Value>>(&mut conn)).await??)
            }
            other => Ok(other?),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn within<F: std::future::Future>(fut: F) -> Result<F::Output> {
    tokio::time::timeout(OPERATION_TIMEOUT, fut)
        .await
        .map_err(|_| RedisStoreError::Timeout(OPERATION_TIMEOUT))
}

/// The connection info of `url`, always speaking RESP3: the feed needs push messages.
fn resp3(url: &str) -> Result<::redis::ConnectionInfo> {
    let info = url
        .into_connection_info()
        .map_err(|e| RedisStoreError::Url(e.to_string()))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Ok(info.set_redis_settings(settings))
}

fn fresh_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
