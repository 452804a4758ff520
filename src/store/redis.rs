//! Redis [`Store`]: the shared state of several instances, behaving event for event like
//! [`super::memory`].
//!
//! # Why
//! Several rollcall processes serve the same sessions. They agree on members, leader, epoch and
//! version through Redis, and tell each other about changes over pub/sub. Every change of a session
//! is one atomic Lua script (sent with EVALSHA, reloaded by [`::redis::Script`] after a flush) that
//! also PUBLISHes the change, so a change and its event cannot come apart. Lease times come from
//! Redis `TIME`, never from instance clocks.
//!
//! # Key layout (`P` = the key prefix, `--key-prefix`)
//! Every script call touches keys of ONE Redis Cluster slot only, passed in `KEYS`; scripts never
//! build key names.
//!
//! | key | type | content |
//! |---|---|---|
//! | `P:{s:<id>}:meta` | hash | `version`, `epoch`, `leader`, `ended_at`, `anonymous` |
//! | `P:{s:<id>}:members` | hash | connection → member record (JSON of [`Member`]) |
//! | `P:{s:<id>}:order` | zset | connection scored by `joined_at` (election order, ties by id) |
//! | `P:{s:<id>}:byinst` | zset | `<incarnation>\0<connection>`, score 0: the per-instance member sets (a lex range is one instance's members, so removing them costs O(their number)) |
//! | `P:{s:<id>}:users` | hash | user id → live connections of that user (for `counts`) |
//! | `P:{i:<incarnation>}:sessions` | set | sessions in which the instance has (or had) members |
//! | `P:{i:<incarnation>}:claim` | string | who reaps this (dead) instance, with a short TTL |
//! | `P:{g}:leases` | zset | incarnation scored by lease expiry (Redis time, ms) |
//! | `P:{g}:names` | hash | instance name → current incarnation |
//! | `P:{g}:generation` | string | random token set once; a change means Redis lost its data |
//!
//! Pub/sub channel of a session: `P:{s:<id>}:events`, carrying JSON [`Broadcast`]s.
//!
//! # One slot per script, one round trip per operation
//! A join changes the session (slot of `{s:<id>}`) and the instance's session set (slot of
//! `{i:<incarnation>}`). The join script touches only session keys; the `SADD` to the instance's
//! session set is a second command in the same pipeline, so a join is still one round trip. The
//! instance's session set is therefore a superset while the instance has members there: entries are
//! added on join and re-assertion, not removed on leave (a conditional removal would need the
//! script's answer, i.e. a second round trip, and would race with a concurrent join); they are
//! removed by [`Store::unsubscribe`], which the supervisor calls, in order with its subscriptions,
//! when the instance's last local member of the session is gone. [`Store::sessions_of`] filters it against the
//! sessions' `byinst` index, and the set is deleted when its instance is forgotten or deregisters.
//! The global keys share the tag `{g}` so the lease scripts are single-slot too.
//!
//! Session keys carry a backstop TTL (default 24 h), refreshed by the scripts that may create keys
//! (join, reassert, end) and by [`Store::touch`], which the supervisor calls for its sessions
//! every minute; leave, update and remove_instance only touch keys that already carry the TTL,
//! which saves five `PEXPIRE`s per call. The instance's session set is refreshed by every lease
//! renewal.
//!
//! # Pub/sub
//! One [`ConnectionManager`] (RESP3) carries commands and subscriptions. It reconnects by itself
//! and re-subscribes the channels; after a disconnection the feed task pings until Redis answers
//! again (so the re-subscription is done) and then sends [`FeedEvent::Resumed`], upon which the
//! engine reconciles every local session.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ErrorKind, PushInfo, PushKind, RedisError, Script, ServerErrorKind, Value};
use async_trait::async_trait;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use super::{
    Broadcast, BroadcastBody, Feed, FeedEvent, Floor, InstanceId, JoinOutcome, LeaseStatus, Store,
    StoreError, StoreResult,
};
use crate::model::{Change, Counts, LeaveReason, Member, SessionView, sort_members};

/// Default backstop TTL of session keys.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Every Redis operation gives up after this long and reports [`StoreError::Unavailable`].
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

macro_rules! session_script {
    ($file:literal) => {
        concat!(
            include_str!("lua/session_prelude.lua"),
            include_str!(concat!("lua/", $file))
        )
    };
}

/// The Lua scripts, compiled into the binary.
struct Scripts {
    join: Script,
    leave: Script,
    update: Script,
    end: Script,
    remove_instance: Script,
    reassert: Script,
    view: Script,
    counts: Script,
    touch: Script,
    register: Script,
    renew: Script,
    expired: Script,
    deregister: Script,
    forget: Script,
    claim: Script,
}

impl Scripts {
    fn load() -> Scripts {
        Scripts {
            join: Script::new(session_script!("join.lua")),
            leave: Script::new(session_script!("leave.lua")),
            update: Script::new(session_script!("update.lua")),
            end: Script::new(session_script!("end.lua")),
            remove_instance: Script::new(session_script!("remove_instance.lua")),
            reassert: Script::new(session_script!("reassert.lua")),
            view: Script::new(session_script!("view.lua")),
            counts: Script::new(session_script!("counts.lua")),
            touch: Script::new(session_script!("touch.lua")),
            register: Script::new(include_str!("lua/register.lua")),
            renew: Script::new(include_str!("lua/renew.lua")),
            expired: Script::new(include_str!("lua/expired.lua")),
            deregister: Script::new(include_str!("lua/deregister.lua")),
            forget: Script::new(include_str!("lua/forget.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
        }
    }
}

/// Key and channel names. Public so tests can check the slot rule and inspect keys.
#[derive(Clone, Debug)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    pub fn new(prefix: &str) -> KeyLayout {
        KeyLayout {
            prefix: prefix.to_owned(),
        }
    }

    /// The five keys of a session, in the order the session scripts take them.
    pub fn session(&self, session: &str) -> [String; 5] {
        let p = &self.prefix;
        ["meta", "members", "order", "byinst", "users"].map(|k| format!("{p}:{{s:{session}}}:{k}"))
    }

    pub fn channel(&self, session: &str) -> String {
        format!("{}:{{s:{session}}}:events", self.prefix)
    }

    /// The channel's session id, if `channel` is a session channel of this prefix.
    pub fn session_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{s:")?
            .strip_suffix("}:events")
    }

    pub fn instance_sessions(&self, incarnation: &str) -> String {
        format!("{}:{{i:{incarnation}}}:sessions", self.prefix)
    }

    pub fn instance_claim(&self, incarnation: &str) -> String {
        format!("{}:{{i:{incarnation}}}:claim", self.prefix)
    }

    /// Leases zset, names hash, generation token: the keys of the lease scripts.
    pub fn global(&self) -> [String; 3] {
        let p = &self.prefix;
        ["leases", "names", "generation"].map(|k| format!("{p}:{{g}}:{k}"))
    }
}

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
            other => StoreError::Unavailable(other.to_string()),
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

/// Adds `protocol=resp3` to a Redis URL that names no protocol (push messages need RESP3).
pub fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
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
        let client = ::redis::Client::open(with_resp3(url))
            .map_err(|e| RedisStoreError::Url(e.to_string()))?;
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
        let feed_task = tokio::spawn(run_feed(
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

    fn parse_change(&self, reply: Value) -> Result<Option<Change>> {
        let items = array(reply)?;
        match status(&items)?.as_str() {
            "none" => Ok(None),
            "ok" => Ok(Some(change_of(items.get(1))?)),
            other => Err(reply_error(format!("unexpected status {other}"))),
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

fn reply_error(m: impl Into<String>) -> RedisStoreError {
    RedisStoreError::Reply(m.into())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

fn int(v: &Value) -> Result<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).map_err(|_| reply_error(format!("negative {i}"))),
        other => text(other)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| reply_error(format!("not an integer: {other:?}"))),
    }
}

fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(reply_error(format!("not an array: {other:?}"))),
    }
}

fn status(items: &[Value]) -> Result<String> {
    items
        .first()
        .and_then(text)
        .ok_or_else(|| reply_error("missing status"))
}

fn change_of(v: Option<&Value>) -> Result<Change> {
    let json = v
        .and_then(text)
        .ok_or_else(|| reply_error("missing change"))?;
    let broadcast: Broadcast = serde_json::from_str(&json)
        .map_err(|e| reply_error(format!("change JSON: {e}: {json}")))?;
    match broadcast.body {
        BroadcastBody::Change(change) => Ok(change),
        BroadcastBody::Message { .. } => Err(reply_error("a message where a change was expected")),
    }
}

/// Parses `{status, change, version, leader, epoch, ended_at, member records...}`.
fn view_of(items: &[Value]) -> Result<SessionView> {
    let field = |i: usize| {
        items
            .get(i)
            .and_then(text)
            .ok_or_else(|| reply_error(format!("view field {i} missing")))
    };
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    let mut members = items
        .iter()
        .skip(6)
        .map(|v| {
            let json = text(v).ok_or_else(|| reply_error("member record is not text"))?;
            serde_json::from_str::<Member>(&json)
                .map_err(|e| reply_error(format!("member record: {e}: {json}")))
        })
        .collect::<Result<Vec<Member>>>()?;
    sort_members(&mut members);
    let ended_at = match non_empty(field(5)?) {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| reply_error(format!("ended_at {t}")))?,
        ),
        None => None,
    };
    Ok(SessionView {
        version: int(items.get(2).unwrap_or(&Value::Nil))?,
        leader: non_empty(field(3)?),
        epoch: int(items.get(4).unwrap_or(&Value::Nil))?,
        members,
        ended_at,
    })
}

fn reason_str(reason: LeaveReason) -> &'static str {
    reason.as_str()
}

fn member_json(member: &Member) -> Result<String> {
    serde_json::to_string(member).map_err(|e| reply_error(format!("member JSON: {e}")))
}

fn fresh_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Turns RESP3 pushes into feed events; after a disconnection, waits until Redis answers again
/// (the connection manager has then re-subscribed) and reports [`FeedEvent::Resumed`].
async fn run_feed(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    feed: mpsc::UnboundedSender<FeedEvent>,
    conn: ConnectionManager,
    keys: KeyLayout,
    me: String,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message => {
                let mut data = push.data.into_iter();
                let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
                    continue;
                };
                let (Some(channel), Some(payload)) = (text(&channel), text(&payload)) else {
                    continue;
                };
                if keys.session_of_channel(&channel).is_none() {
                    continue;
                }
                match serde_json::from_str::<Broadcast>(&payload) {
                    Ok(broadcast) if broadcast.origin == me => {}
                    Ok(broadcast) => {
                        if feed.send(FeedEvent::Broadcast(broadcast)).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(%channel, error = %e, "undecodable broadcast"),
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("redis connection lost; waiting for it to come back");
                let mut conn = conn.clone();
                loop {
                    let ping = ::redis::cmd("PING");
                    match within(ping.query_async::<Value>(&mut conn)).await {
                        Ok(Ok(_)) => break,
                        _ => {
                            if feed.is_closed() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                // Disconnections queued while we were waiting are the same outage.
                let mut later = Vec::new();
                while let Ok(push) = pushes.try_recv() {
                    if push.kind != PushKind::Disconnection {
                        later.push(push);
                    }
                }
                tracing::info!("redis connection back; subscriptions restored");
                if feed.send(FeedEvent::Resumed).is_err() {
                    return;
                }
                for push in later {
                    if let PushKind::Message = push.kind
                        && let [channel, payload] = push.data.as_slice()
                        && let (Some(channel), Some(payload)) = (text(channel), text(payload))
                        && keys.session_of_channel(&channel).is_some()
                        && let Ok(b) = serde_json::from_str::<Broadcast>(&payload)
                        && b.origin != me
                        && feed.send(FeedEvent::Broadcast(b)).is_err()
                    {
                        return;
                    }
                }
            }
            _ => {}
        }
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

    async fn join(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
    ) -> StoreResult<JoinOutcome> {
        let mut call = self.session_call("join", &self.scripts.join, session);
        call.arg(member_json(&member)?).arg(max_members);
        let mut pipe = ::redis::pipe();
        pipe.invoke_script(&call)
            .cmd("SADD")
            .arg(self.keys.instance_sessions(&member.instance))
            .arg(session)
            .ignore();
        let mut replies = self
            .pipeline_with_script(&self.scripts.join, &pipe)
            .await?
            .into_iter();
        let items = array(replies.next().unwrap_or(Value::Nil))?;
        match status(&items)?.as_str() {
            "ended" => Err(StoreError::SessionEnded),
            "full" => Err(StoreError::SessionFull(max_members)),
            "same" => Ok(JoinOutcome {
                view: view_of(&items)?,
                change: None,
            }),
            "ok" => Ok(JoinOutcome {
                view: view_of(&items)?,
                change: Some(change_of(items.get(1))?),
            }),
            other => Err(reply_error(format!("join status {other}")).into()),
        }
    }

    async fn leave(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("leave", &self.scripts.leave, session);
        call.arg(connection).arg(reason_str(reason));
        let reply = self.invoke(&call).await?;
        Ok(self.parse_change(reply)?)
    }

    async fn update_member(&self, session: &str, member: Member) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("update", &self.scripts.update, session);
        call.arg(member_json(&member)?);
        let reply = self.invoke(&call).await?;
        Ok(self.parse_change(reply)?)
    }

    async fn end(&self, session: &str, connection: &str, epoch: u64) -> StoreResult<Change> {
        let mut call = self.session_call("end", &self.scripts.end, session);
        call.arg(connection).arg(epoch);
        let items = array(self.invoke(&call).await?)?;
        match status(&items)?.as_str() {
            "not_leader" => Err(StoreError::NotLeader),
            "ended" => Err(StoreError::SessionEnded),
            "ok" => Ok(change_of(items.get(1))?),
            other => Err(reply_error(format!("end status {other}")).into()),
        }
    }

    async fn view(&self, session: &str) -> StoreResult<Option<SessionView>> {
        let call = self.session_call("view", &self.scripts.view, session);
        let items = array(self.invoke(&call).await?)?;
        match status(&items)?.as_str() {
            "none" => Ok(None),
            _ => Ok(Some(view_of(&items)?)),
        }
    }

    async fn counts(&self, sessions: &[String]) -> StoreResult<Vec<Counts>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let calls: Vec<_> = sessions
            .iter()
            .map(|s| self.session_call("counts", &self.scripts.counts, s))
            .collect();
        let mut pipe = ::redis::pipe();
        for call in &calls {
            pipe.invoke_script(call);
        }
        let replies = self
            .pipeline_with_script(&self.scripts.counts, &pipe)
            .await?;
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
            session: session.to_owned(),
            origin: self.instance.incarnation.clone(),
            body: BroadcastBody::Message {
                from: from.to_owned(),
                user: user.map(str::to_owned),
                data: data.clone(),
            },
        };
        let payload = serde_json::to_string(&message)
            .map_err(|e| StoreError::Corrupt(format!("message JSON: {e}")))?;
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("PUBLISH")
            .arg(self.keys.channel(session))
            .arg(payload)
            .to_owned();
        within(cmd.query_async::<Value>(&mut conn))
            .await?
            .map_err(RedisStoreError::from)?;
        Ok(())
    }

    async fn subscribe(&self, session: &str) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        within(conn.subscribe(self.keys.channel(session)))
            .await?
            .map_err(RedisStoreError::from)?;
        Ok(())
    }

    async fn unsubscribe(&self, session: &str) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        within(conn.unsubscribe(self.keys.channel(session)))
            .await?
            .map_err(RedisStoreError::from)?;
        // No local member is left here: the session leaves this instance's session set too, so
        // the set stays as small as the instance's live sessions.
        let mut srem = ::redis::cmd("SREM");
        srem.arg(self.keys.instance_sessions(&self.instance.incarnation))
            .arg(session);
        within(srem.query_async::<()>(&mut conn))
            .await?
            .map_err(RedisStoreError::from)?;
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
        let mut pipe = ::redis::pipe();
        pipe.invoke_script(&call)
            .cmd("PEXPIRE")
            .arg(self.keys.instance_sessions(&self.instance.incarnation))
            .arg(self.ttl_ms())
            .ignore();
        let mut replies = self
            .pipeline_with_script(&self.scripts.renew, &pipe)
            .await?
            .into_iter();
        let items = array(replies.next().unwrap_or(Value::Nil))?;
        let generation = items
            .get(1)
            .and_then(text)
            .ok_or_else(|| StoreError::Corrupt("renew: no generation".into()))?;
        *lock(&self.generation) = Some(generation);
        match status(&items)?.as_str() {
            "held" => Ok(LeaseStatus::Held),
            "lost" => Ok(LeaseStatus::WasLost),
            "reset" => Ok(LeaseStatus::StoreReset),
            other => Err(StoreError::Corrupt(format!("renew status {other}"))),
        }
    }

    async fn deregister(&self) -> StoreResult<()> {
        let mut call = self.global_call("deregister", &self.scripts.deregister);
        call.arg(&self.instance.incarnation)
            .arg(&self.instance.name);
        let mut pipe = ::redis::pipe();
        pipe.invoke_script(&call)
            .ignore()
            .cmd("DEL")
            .arg(self.keys.instance_sessions(&self.instance.incarnation))
            .ignore();
        self.pipeline_with_script(&self.scripts.deregister, &pipe)
            .await?;
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
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("SMEMBERS")
            .arg(self.keys.instance_sessions(dead))
            .to_owned();
        let listed = within(cmd.query_async::<Value>(&mut conn))
            .await?
            .map_err(RedisStoreError::from)?;
        let listed: Vec<String> = array(listed)?.iter().filter_map(text).collect();
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        // The set is a superset (see the module doc): keep the sessions where `dead` still has an
        // entry in the per-instance index.
        let mut pipe = ::redis::pipe();
        for session in &listed {
            let [_, _, _, byinst, _] = self.keys.session(session);
            pipe.cmd("ZRANGEBYLEX")
                .arg(byinst)
                .arg(format!("[{dead}\0"))
                .arg(format!("({dead}\u{1}"))
                .arg("LIMIT")
                .arg(0)
                .arg(1);
        }
        let present = within(pipe.query_async::<Vec<Value>>(&mut conn))
            .await?
            .map_err(RedisStoreError::from)?;
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
        call.arg(dead).arg(reason_str(reason));
        let reply = self.invoke(&call).await?;
        Ok(self.parse_change(reply)?)
    }

    async fn forget_instance(&self, dead: &str) -> StoreResult<()> {
        let mut call = self.global_call("forget", &self.scripts.forget);
        call.arg(dead);
        let mut pipe = ::redis::pipe();
        pipe.invoke_script(&call)
            .ignore()
            .cmd("DEL")
            .arg(self.keys.instance_sessions(dead))
            .arg(self.keys.instance_claim(dead))
            .ignore();
        self.pipeline_with_script(&self.scripts.forget, &pipe)
            .await?;
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
        let mut pipe = ::redis::pipe();
        pipe.invoke_script(&call)
            .cmd("SADD")
            .arg(self.keys.instance_sessions(&self.instance.incarnation))
            .arg(session)
            .ignore();
        let mut replies = self
            .pipeline_with_script(&self.scripts.reassert, &pipe)
            .await?
            .into_iter();
        let items = array(replies.next().unwrap_or(Value::Nil))?;
        match status(&items)?.as_str() {
            "ended" => Err(StoreError::SessionEnded),
            "none" => Ok(None),
            "ok" => Ok(Some(change_of(items.get(1))?)),
            other => Err(reply_error(format!("reassert status {other}")).into()),
        }
    }

    async fn touch(&self, session: &str) -> StoreResult<()> {
        let call = self.session_call("touch", &self.scripts.touch, session);
        self.invoke(&call).await?;
        Ok(())
    }
}
