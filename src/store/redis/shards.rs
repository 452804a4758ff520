//! Per-shard data loss and failover detection on a Redis Cluster, checked on every heartbeat.
//!
//! One generation key (`P:{g}:generation`) sees its own master lose data, but not another shard
//! failing over or restarting empty. So each lease renewal on a cluster also:
//! 1. reads the topology (`CLUSTER SLOTS`: slot ranges and the node id of their master);
//! 2. reads (setting it if absent) a generation token on every master, in a key whose hash tag is
//!    a slot that master owns (`P:{<tag>}:shard`, [`super::slots::tag_for_slot`] of the master's
//!    first slot). A token that changed under a known master means the shard lost its data;
//! 3. for every session this instance is subscribed to (those with local members): if the master
//!    of its slot lost its data, the session is re-asserted; if its slot has another master than
//!    at the previous check (a failover, or a migration), it is reconciled, which re-asserts the
//!    local members if the new master misses any of them or has an older version (a replica that
//!    missed the last writes) and removes the members listed under this instance that it no
//!    longer holds (a leave the old master had not replicated); see
//!    [`crate::actors::session`]'s `Reconcile`. Sessions the instance released within
//!    [`super::RELEASE_WATCH`] are checked too: the leave of their last local member may be the
//!    one a failover lost, and the supervisor releases them again.
//!
//! A token is keyed by (master node id, slot of its key): a promoted replica is a new master id (its
//! token, replicated, is recorded as first seen), and a migrated token slot just starts a new key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use ::redis::{Script, Value};

use super::conn::Conn;
use super::keys::KeyLayout;
use super::reply::{array, int, text};
use super::slots::{slot, tag_for_slot};
use super::{RedisStoreError, Result, fresh_token, lock, within};

/// A slot range and the node id of its master.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Range {
    start: u16,
    end: u16,
    master: String,
}

/// Sessions to bring back in step after a check.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Verdict {
    /// On a shard that lost its data: re-assert the local members.
    pub reassert: Vec<String>,
    /// On a slot with a new master: reconcile (re-assert if anything is missing).
    pub reconcile: Vec<String>,
}

#[derive(Default)]
struct State {
    ranges: Vec<Range>,
    tokens: HashMap<(String, u16), String>,
}

pub(super) struct ShardWatch {
    script: Script,
    state: Mutex<State>,
}

impl ShardWatch {
    pub fn new() -> ShardWatch {
        ShardWatch {
            script: Script::new(include_str!("lua/shard_token.lua")),
            state: Mutex::new(State::default()),
        }
    }

    /// One check (see the module doc) of `sessions`: those this instance listens to, and those it
    /// released lately ([`super::RELEASE_WATCH`]), whose last leave a failover may have lost.
    /// `record` is told the keys of every script call (slot-rule tests).
    pub async fn check(
        &self,
        conn: &Conn,
        keys: &KeyLayout,
        sessions: &[String],
        record: impl Fn(&'static str, &[String]),
    ) -> Result<Verdict> {
        let ranges = parse_slots(
            conn.query(&::redis::cmd("CLUSTER").arg("SLOTS").to_owned())
                .await?,
        )?;
        let mut first_slot: BTreeMap<String, u16> = BTreeMap::new();
        for r in &ranges {
            let first = first_slot.entry(r.master.clone()).or_insert(r.start);
            *first = (*first).min(r.start);
        }
        let mut tokens = Vec::new();
        for (master, first) in &first_slot {
            let key = keys.shard_token(&tag_for_slot(*first));
            record("shard_token", std::slice::from_ref(&key));
            let mut call = self.script.key(&key);
            call.arg(fresh_token());
            let mut c = conn.clone();
            match within(call.invoke_async::<Value>(&mut c)).await {
                Ok(Ok(token)) => {
                    if let Some(token) = text(&token) {
                        tokens.push(((master.clone(), *first), token));
                    }
                }
                Ok(Err(e)) => tracing::debug!(%master, error = %e, "shard token not read"),
                Err(e) => tracing::debug!(%master, error = %e, "shard token not read"),
            }
        }
        let mut state = lock(&self.state);
        let mut lost: BTreeSet<String> = BTreeSet::new();
        for (id, token) in tokens {
            if let Some(known) = state.tokens.insert(id.clone(), token.clone())
                && known != token
            {
                tracing::warn!(master = %id.0, "a redis cluster shard lost its data");
                lost.insert(id.0);
            }
        }
        let mut verdict = Verdict::default();
        for session in sessions {
            let s = slot(&keys.channel(session));
            let now = owner(&ranges, s);
            let before = owner(&state.ranges, s);
            if now.is_some_and(|m| lost.contains(m)) {
                verdict.reassert.push(session.clone());
            } else if before.is_some() && now.is_some() && before != now {
                verdict.reconcile.push(session.clone());
            }
        }
        if !verdict.reconcile.is_empty() {
            tracing::warn!(
                sessions = verdict.reconcile.len(),
                "redis cluster slots changed master; reconciling their sessions"
            );
        }
        state.ranges = ranges;
        Ok(verdict)
    }
}

impl ShardWatch {
    /// The master (node id) of each of `slots` as the last check saw it; `None` where no check
    /// saw one yet.
    pub fn masters_of(&self, slots: &[u16]) -> Vec<Option<String>> {
        let state = lock(&self.state);
        slots
            .iter()
            .map(|s| owner(&state.ranges, *s).map(str::to_owned))
            .collect()
    }
}

fn owner(ranges: &[Range], slot: u16) -> Option<&str> {
    ranges
        .iter()
        .find(|r| r.start <= slot && slot <= r.end)
        .map(|r| r.master.as_str())
}

/// `CLUSTER SLOTS`: `[[start, end, [ip, port, id, …], replicas…], …]`.
fn parse_slots(reply: Value) -> Result<Vec<Range>> {
    let bad = |what: &str| RedisStoreError::Reply(format!("CLUSTER SLOTS: {what}"));
    array(reply)?
        .into_iter()
        .map(|entry| {
            let items = array(entry)?;
            let (Some(start), Some(end), Some(master)) =
                (items.first(), items.get(1), items.get(2))
            else {
                return Err(bad("short entry"));
            };
            let node = match master {
                Value::Array(node) => node,
                _ => return Err(bad("master is not an array")),
            };
            let id = node
                .get(2)
                .and_then(text)
                .ok_or_else(|| bad("no node id"))?;
            let slot = |v: &Value| {
                int(v).and_then(|n| u16::try_from(n).map_err(|_| bad("slot out of range")))
            };
            Ok(Range {
                start: slot(start)?,
                end: slot(end)?,
                master: id,
            })
        })
        .collect()
}
