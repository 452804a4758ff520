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
//! # One slot per command, standalone or cluster
//! The same scripts and callers run over one server or a Redis Cluster ([`conn`]): no script and no
//! pipeline touches two slots. The instance's session set (slot of `{i:<incarnation>}`) lists the
//! sessions where the instance may have members, for the reaper of a dead instance. A session
//! enters it when the instance subscribes to the session, which the supervisor does before the
//! instance's first join there, and on re-assertion; it leaves it on
//! [`Store::unsubscribe`](crate::store::Store::unsubscribe), which the supervisor calls, in order
//! with its subscriptions, when the instance's last local member of the session is gone. So a join
//! or a leave is one script call and nothing else, and the set is a superset while the instance has
//! members there (a conditional removal on leave would need the script's answer, a second round
//! trip). [`Store::sessions_of`](crate::store::Store::sessions_of) filters it against the
//! sessions' `byinst` index, and the set is deleted when its instance is forgotten or deregisters.
//! The global keys share the tag `{g}` so the lease scripts are single-slot too. Reads of many
//! sessions (`counts`, `sessions_of`) send one command per session, all at once.
//!
//! Session keys carry a backstop TTL (default 24 h), refreshed by the scripts that may create keys
//! (join, reassert, end) and by [`Store::touch`](crate::store::Store::touch), which the supervisor calls for its sessions
//! every minute; leave, update and remove_instance only touch keys that already carry the TTL,
//! which saves five `PEXPIRE`s per call. The instance's session set is refreshed by every lease
//! renewal.
//!
//! # Pub/sub
//! Sharded: the scripts `SPUBLISH` on the session's channel (same hash tag as its keys) and every
//! instance `SSUBSCRIBE`s the channels of its sessions, on a connection of its own; rollcall owns
//! the subscriptions ([`subscriptions`]) and puts them back after a reconnection, a failover or a
//! slot migration ([`feed`]). Redis ≥ 7 is needed, standalone or cluster.
//!
//! # Data loss
//! `P:{g}:generation` tells a lease renewal that Redis (or, on a cluster, the master of `{g}`) lost
//! its data; on a cluster, [`shards`] does the same for every other master and reconciles the
//! sessions whose slot changed master.

mod broker;
mod conn;
mod deadline;
mod feed;
mod hints;
mod history;
pub mod keys;
mod membership;
mod operator;
mod outbox;
mod per_session;
mod registry;
mod reply;
mod scripts;
mod sessions;
mod shards;
pub mod slots;
mod subscriptions;
mod upkeep;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::{PushInfo, RedisError, Script, Value};
use tokio::sync::mpsc;

use async_trait::async_trait;

use super::{Feed, FeedEvent, InstanceId, Store, StoreError};
use conn::Conn;
pub use conn::RedisTarget;
pub use keys::KeyLayout;
use scripts::Scripts;
use shards::ShardWatch;
use subscriptions::Subscriptions;

/// Default backstop TTL of session keys.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Every Redis operation gives up after this long and reports [`StoreError::Unavailable`].
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after an instance released a session (it holds no member there any more) a Redis
/// Cluster failover of the session's slot still makes it check that the store lists none: the
/// new master may have missed the last leave. Longer than a failover takes (the cluster's node
/// timeout plus an election).
pub const RELEASE_WATCH: Duration = Duration::from_secs(60);

/// Errors of the Redis store before they are mapped to [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("invalid redis url: {0}")]
    Url(String),
    /// The servers are not of the kind configured (a cluster node given as a server, or nodes that
    /// are not a healthy cluster).
    #[error("{0}")]
    Topology(String),
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

/// A recorded call: the script's (or command's) name and the keys it was given.
pub type ScriptCall = (&'static str, Vec<String>);

type Result<T, E = RedisStoreError> = std::result::Result<T, E>;

/// One instance's handle on the shared Redis (one server, or a cluster).
pub struct RedisStore {
    /// Commands and scripts; never subscriptions (see [`subscriptions`]).
    conn: Conn,
    subscriptions: Arc<Subscriptions>,
    keys: KeyLayout,
    instance: InstanceId,
    lease: Duration,
    session_ttl: Duration,
    scripts: Scripts,
    generation: Mutex<Option<String>>,
    /// Per-shard tokens and topology, on a cluster.
    shards: Option<ShardWatch>,
    /// The feed, for the reconciliations the heartbeat finds necessary.
    feed: mpsc::UnboundedSender<FeedEvent>,
    /// Keys of every call, when recording is switched on (slot-rule tests).
    recorded: Mutex<Option<Vec<ScriptCall>>>,
    /// Sessions this instance stopped listening to lately, and when: on a cluster, a failover
    /// within [`RELEASE_WATCH`] may bring back a leave it lost, so the shard check watches them too.
    released: Mutex<Vec<(String, std::time::Instant)>>,
    /// Redis's clock as seen from here, for the deadlines of writes.
    store_clock: deadline::StoreClock,
    /// What this instance keeps of the messages it publishes ([`history`]).
    history: Mutex<crate::store::HistorySettings>,
    /// Whether changes are kept in their session's outbox ([`outbox`]).
    outbox_on: std::sync::atomic::AtomicBool,
    /// Sessions this instance marked in the directory lately, and when ([`outbox`]).
    marked: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Sessions this instance wrote lately, and its deliverer's passes, on a cluster ([`hints`]).
    hints: hints::Hints,
    feed_tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for task in &self.feed_tasks {
            task.abort();
        }
    }
}

impl RedisStore {
    /// Connects to the standalone Redis at `url`, with keys and channels under `key_prefix`.
    /// Returns the store and the feed of what the other instances publish on the sessions this
    /// one subscribes to.
    pub async fn connect(
        url: &str,
        key_prefix: &str,
        instance: InstanceId,
        lease: Duration,
        session_ttl: Duration,
    ) -> Result<(RedisStore, Feed), StoreError> {
        let target = RedisTarget::Single(url.to_owned());
        Self::connect_to(&target, key_prefix, instance, lease, session_ttl).await
    }

    /// Connects to a standalone Redis or to a Redis Cluster.
    pub async fn connect_to(
        target: &RedisTarget,
        key_prefix: &str,
        instance: InstanceId,
        lease: Duration,
        session_ttl: Duration,
    ) -> Result<(RedisStore, Feed), StoreError> {
        Ok(Self::connect_inner(target, key_prefix, instance, lease, session_ttl).await?)
    }

    async fn connect_inner(
        target: &RedisTarget,
        key_prefix: &str,
        instance: InstanceId,
        lease: Duration,
        session_ttl: Duration,
    ) -> Result<(RedisStore, Feed)> {
        let conn = Conn::open(target, None).await?;
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let pubsub = Conn::open(target, Some(push_tx)).await?;
        let keys = KeyLayout::new(key_prefix);
        let subscriptions = Arc::new(Subscriptions::new(pubsub, keys.clone()));
        let (feed_tx, feed_rx) = mpsc::unbounded_channel();
        let feed_tasks = feed::start(
            push_rx,
            feed_tx.clone(),
            subscriptions.clone(),
            keys.clone(),
            instance.incarnation.clone(),
        );
        let store = RedisStore {
            shards: conn.is_cluster().then(ShardWatch::new),
            conn,
            subscriptions,
            keys,
            instance,
            lease,
            session_ttl,
            scripts: Scripts::load(),
            generation: Mutex::new(None),
            feed: feed_tx,
            recorded: Mutex::new(None),
            released: Mutex::new(Vec::new()),
            store_clock: deadline::StoreClock::default(),
            history: Mutex::new(crate::store::HistorySettings::default()),
            outbox_on: std::sync::atomic::AtomicBool::new(false),
            marked: Mutex::new(std::collections::HashMap::new()),
            hints: hints::Hints::default(),
            feed_tasks,
        };
        Ok((store, feed_rx))
    }

    /// Whether this store runs over a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
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

    /// A session script call with its keys and common ARGV (channel, origin, session, TTL). A
    /// script that may write a change notes the session for an outbox hint ([`hints`]).
    fn session_call<'a>(
        &'a self,
        name: &'static str,
        script: &'a Script,
        session: &str,
    ) -> ::redis::ScriptInvocation<'a> {
        let mut keys = self.keys.session(session).to_vec();
        if self.keeps_outbox() {
            keys.push(self.keys.outbox(session));
            if !READS.contains(&name) {
                self.note_write(session);
            }
        }
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
        let reply = within(call.invoke_async::<Value>(&mut conn)).await??;
        self.flush_hints().await;
        Ok(reply)
    }

    /// One plain command on the keys `keys` (recorded like script calls), bounded in time.
    async fn command(
        &self,
        name: &'static str,
        cmd: &::redis::Cmd,
        keys: &[String],
    ) -> Result<Value> {
        self.record(name, keys);
        self.conn.query(cmd).await
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn instance(&self) -> &InstanceId {
        &self.instance
    }
}

/// Session scripts that never write a change (no outbox entry, no hint).
const READS: [&str; 4] = ["view", "changes", "counts", "touch"];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn within<F: std::future::Future>(fut: F) -> Result<F::Output> {
    tokio::time::timeout(OPERATION_TIMEOUT, fut)
        .await
        .map_err(|_| RedisStoreError::Timeout(OPERATION_TIMEOUT))
}

fn fresh_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
