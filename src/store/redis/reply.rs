//! Decoding of script replies and pub/sub payloads into the store's types.
//!
//! Every script answers an array whose first element is a [`ScriptStatus`]; the rest depends on the
//! script (see the header comment of each file in `lua/`). Anything else is reported as
//! [`RedisStoreError::Reply`], which the store maps to [`crate::store::StoreError::Corrupt`].

use ::redis::Value;

use super::RedisStoreError;
use crate::ids::ConnectionId;
use crate::model::{Change, Member, SessionView, sort_members};
use crate::store::{Broadcast, BroadcastBody};

type Result<T, E = RedisStoreError> = std::result::Result<T, E>;

/// The first element of every script reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ScriptStatus {
    /// The change was made; a change record follows.
    Ok,
    /// Nothing to do (not a member, nothing to re-assert, no such session).
    None,
    /// An idempotent re-join: the view follows, no change.
    Same,
    /// The session has been ended.
    Ended,
    /// The session has reached its member limit.
    Full,
    /// Not the current leader, or a stale epoch.
    NotLeader,
    /// Lease renewal: the lease was ours.
    Held,
    /// Lease renewal: another instance had removed our lease.
    Lost,
    /// Lease renewal: the generation token changed (Redis lost its data).
    Reset,
    /// Join, leave or a batch of plans: the caller's plans were written as they are
    /// (`crate::store::plan`).
    Planned,
    /// A batch of plans: the session is no longer at the first plan's header; nothing written.
    Moved,
    /// A resume: the member belongs to another user.
    Forbidden,
    /// A write reached the store after its deadline; nothing written
    /// ([`super::deadline`]).
    Late,
}

impl ScriptStatus {
    fn parse(status: &str) -> Option<ScriptStatus> {
        Some(match status {
            "ok" => ScriptStatus::Ok,
            "planned" => ScriptStatus::Planned,
            "moved" => ScriptStatus::Moved,
            "late" => ScriptStatus::Late,
            "none" => ScriptStatus::None,
            "same" => ScriptStatus::Same,
            "ended" => ScriptStatus::Ended,
            "full" => ScriptStatus::Full,
            "not_leader" => ScriptStatus::NotLeader,
            "forbidden" => ScriptStatus::Forbidden,
            "held" => ScriptStatus::Held,
            "lost" => ScriptStatus::Lost,
            "reset" => ScriptStatus::Reset,
            _ => return None,
        })
    }
}

/// The error for a status that the script named `script` does not answer.
pub(super) fn unexpected(script: &str, status: ScriptStatus) -> RedisStoreError {
    reply_error(format!("{script}: unexpected status {status:?}"))
}

pub(super) fn reply_error(m: impl Into<String>) -> RedisStoreError {
    RedisStoreError::Reply(m.into())
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

pub(super) fn int(v: &Value) -> Result<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).map_err(|_| reply_error(format!("negative {i}"))),
        other => text(other)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| reply_error(format!("not an integer: {other:?}"))),
    }
}

pub(super) fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(reply_error(format!("not an array: {other:?}"))),
    }
}

/// The status of a script reply's items.
pub(super) fn status(items: &[Value]) -> Result<ScriptStatus> {
    let status = items
        .first()
        .and_then(text)
        .ok_or_else(|| reply_error("missing status"))?;
    ScriptStatus::parse(&status).ok_or_else(|| reply_error(format!("unknown status {status}")))
}

/// A reply `{status, change?}` of a script that may change nothing (`none`).
pub(super) fn optional_change(script: &str, reply: Value) -> Result<Option<Change>> {
    let items = array(reply)?;
    match status(&items)? {
        ScriptStatus::None => Ok(None),
        ScriptStatus::Ok => Ok(Some(change_of(items.get(1))?)),
        other => Err(unexpected(script, other)),
    }
}

/// The change record at `v` (the JSON of a [`Broadcast`] whose body is a change).
pub(super) fn change_of(v: Option<&Value>) -> Result<Change> {
    let json = v
        .and_then(text)
        .ok_or_else(|| reply_error("missing change"))?;
    match broadcast(&json)?.body {
        BroadcastBody::Change(change) => Ok(change),
        BroadcastBody::Message { .. } => Err(reply_error("a message where a change was expected")),
    }
}

/// A broadcast as the scripts and [`crate::store::Store::publish`] encode it.
pub(super) fn broadcast(json: &str) -> Result<Broadcast> {
    serde_json::from_str(json).map_err(|e| reply_error(format!("broadcast JSON: {e}: {json}")))
}

/// Parses a published message: one broadcast, or the JSON array of a batch's changes
/// (`lua/write_plans.lua`), oldest first.
pub(super) fn broadcasts(json: &str) -> Result<Vec<Broadcast>> {
    if json.starts_with('[') {
        serde_json::from_str(json).map_err(|e| reply_error(format!("batch JSON: {e}: {json}")))
    } else {
        broadcast(json).map(|b| vec![b])
    }
}

/// Parses `{status, change, version, leader, epoch, ended_at, member records...}`.
pub(super) fn view_of(items: &[Value]) -> Result<SessionView> {
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
        leader: non_empty(field(3)?).map(ConnectionId::from),
        epoch: int(items.get(4).unwrap_or(&Value::Nil))?,
        members,
        ended_at,
    })
}

pub(super) fn member_json(member: &Member) -> Result<String> {
    serde_json::to_string(member).map_err(|e| reply_error(format!("member JSON: {e}")))
}
