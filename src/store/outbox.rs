//! The outbox and the directory: what the application's backend hears and asks about sessions.
//!
//! Webhooks must never lose a change, not even when the instance that made it dies a moment later.
//! So the store keeps every change, in the same atomic step that makes it, in the session's
//! outbox; a delivering instance ([`crate::webhooks`]) reads the outboxes, posts what it read, and
//! acknowledges it only once the receiver has answered. Whatever instance dies, the entries stay
//! in the store until some live instance has delivered them.
//!
//! Finding the outboxes with entries, and listing live sessions for the server API, both need an
//! index of sessions; the [`Directory`] keeps it. A store marks a session in it *before* it
//! changes the session, so a session with members or with undelivered entries is always in the
//! index; a mark is only taken away once the session has neither and has not been marked for
//! [`MARK_MARGIN`], far longer than any change takes between its mark and its write.

use std::time::Duration;

use async_trait::async_trait;

use super::{Broadcast, BroadcastBody, StoreResult};
use crate::model::{Change, Counts};

/// How long after its last mark a vacated session may leave the index.
pub const MARK_MARGIN: Duration = Duration::from_secs(60);

/// One atomic step's changes of one session, as the outbox keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// When the step ran: store time, milliseconds since the Unix epoch.
    pub at: i64,
    /// How many members (present or reconnecting) the session had after the last change.
    pub members: u64,
    /// The changes, oldest first, consecutive versions.
    pub changes: Vec<Change>,
}

/// Which entry of a session's outbox: when its step ran and its first change's version. No two
/// entries of one outbox share both, so a deliverer can say which entries it delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId {
    pub at: i64,
    pub first_version: u64,
}

/// A session's oldest undelivered entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSession {
    pub session: String,
    pub entries: Vec<OutboxEntry>,
}

/// One page of live sessions, in session id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<(String, Counts)>,
    /// Where the next page starts; `None` on the last page.
    pub cursor: Option<String>,
}

/// The changes kept for the backend, until a deliverer acknowledges them.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// From now on (`on`) every change this instance makes is also kept in its session's outbox.
    /// Every instance sharing a store must be configured alike.
    fn keep_outbox(&self, on: bool);

    /// Up to `sessions` sessions with undelivered entries, each with its oldest entries (at most
    /// `per_session`), the sessions with the oldest marks first. A store may stop adding sessions
    /// once the entries it has hold `events` events ([`OutboxEntry::events`]): a deliverer
    /// wanting one batch need not be sent entries it cannot post yet.
    async fn pending(
        &self,
        sessions: usize,
        per_session: usize,
        events: usize,
    ) -> StoreResult<Vec<PendingSession>>;

    /// Removes `session`'s oldest entries up to and including `through`, which was the
    /// `entries`-th oldest when read: delivered, or dropped. When `through` is no longer among the
    /// oldest `entries` (another deliverer acknowledged it meanwhile), nothing is removed, so a
    /// deliverer that lost its right never removes an entry it did not read. Returns how many
    /// entries were removed.
    async fn acknowledge(
        &self,
        session: &str,
        through: EntryId,
        entries: usize,
    ) -> StoreResult<usize>;

    /// Takes or renews the right to deliver, for `ttl`: true while this instance holds it. One
    /// deliverer at a time keeps every session's events in order.
    async fn hold_delivery(&self, ttl: Duration) -> StoreResult<bool>;
}

/// The index of live sessions (and of sessions whose outbox still has entries).
#[async_trait]
pub trait Directory: Send + Sync {
    /// Live sessions (with at least one member) after `cursor`, at most `limit` of them. Every
    /// session live while a client pages through is listed exactly once.
    async fn live_sessions(&self, cursor: Option<&str>, limit: usize) -> StoreResult<SessionPage>;

    /// Takes out of the index sessions without members and without undelivered entries whose
    /// last mark is older than [`MARK_MARGIN`]; returns how many it took out.
    async fn tidy_directory(&self) -> StoreResult<usize>;
}

impl OutboxEntry {
    /// The events of its changes.
    pub fn events(&self) -> usize {
        self.changes.iter().map(|c| c.events.len()).sum()
    }

    pub fn id(&self) -> EntryId {
        EntryId {
            at: self.at,
            first_version: self.changes.first().map_or(0, |c| c.version),
        }
    }

    /// Reads an entry as the Redis scripts keep it: a header `<at> <members>`, and the JSON of
    /// the step's change broadcast, or of the array of its change broadcasts.
    pub fn from_stored(header: &[u8], changes: &[u8]) -> Result<OutboxEntry, String> {
        let header = std::str::from_utf8(header).map_err(|_| "outbox header: not UTF-8")?;
        let (at, members) = header
            .split_once(' ')
            .and_then(|(at, members)| Some((at.parse().ok()?, members.parse().ok()?)))
            .ok_or_else(|| format!("outbox header {header:?}"))?;
        let broadcasts: Vec<Broadcast> = match changes.first() {
            Some(b'[') => serde_json::from_slice(changes),
            _ => serde_json::from_slice(changes).map(|one| vec![one]),
        }
        .map_err(|e| format!("outbox entry: {e}"))?;
        let changes = broadcasts
            .into_iter()
            .map(|broadcast| match broadcast.body {
                BroadcastBody::Change(change) => Ok(change),
                _ => Err("outbox entry: a broadcast that is not a change".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboxEntry {
            at,
            members,
            changes,
        })
    }
}
