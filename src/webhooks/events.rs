//! What the backend is told: an outbox entry of a session turned into webhook events.
//!
//! Each change of the entry becomes the events a WebSocket client would see for it, stamped with
//! an `id`, the change's `version` and the entry's time. Two events a client cannot see are added
//! from the member counts: `session_started` before a change that fills an empty session, and
//! `session_vacated` after a change that empties it. The entry keeps only the count after its last
//! change, so the counts before each change are found by walking the changes backwards.
//!
//! Everything here is a pure function of the stored entry, so a redelivered entry produces the
//! very same events, ids included: that is what lets receivers deduplicate by `id`.

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use crate::ids::ConnectionId;
use crate::model::{Change, Event, LeaveReason, Member};
use crate::store::OutboxEntry;

/// One webhook event, as it is posted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookEvent {
    /// `<session>:<version>:<index in the change>:<at ms>`: the same on every delivery of one
    /// stored entry, unique otherwise (the last three parts are numbers, so the session id may
    /// hold colons; `at` tells apart a version reused after the store lost its data).
    pub id: String,
    #[serde(flatten)]
    pub kind: EventKind,
    pub session: String,
    pub version: u64,
    /// When the change was made, RFC 3339 in UTC.
    pub at: String,
    /// Store time of the change in ms, for the delivery latency; not sent.
    #[serde(skip)]
    pub at_ms: i64,
}

/// The `type` of an event and the fields of the matching WebSocket event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The session got its first member.
    SessionStarted,
    MemberJoined {
        member: Member,
    },
    MemberLeft {
        connection: ConnectionId,
        reason: LeaveReason,
    },
    MemberUpdated {
        member: Member,
    },
    LeaderChanged {
        leader: Option<ConnectionId>,
        epoch: u64,
    },
    /// `by` is null when the session was ended by the server, not by its leader.
    SessionEnded {
        by: Option<ConnectionId>,
    },
    /// The last member is gone.
    SessionVacated,
}

impl EventKind {
    fn of(event: &Event) -> EventKind {
        match event {
            Event::MemberJoined { member } => EventKind::MemberJoined {
                member: member.clone(),
            },
            Event::MemberLeft {
                connection, reason, ..
            } => EventKind::MemberLeft {
                connection: connection.clone(),
                reason: *reason,
            },
            Event::MemberUpdated { member } => EventKind::MemberUpdated {
                member: member.clone(),
            },
            Event::LeaderChanged { leader, epoch } => EventKind::LeaderChanged {
                leader: leader.clone(),
                epoch: *epoch,
            },
            Event::SessionEnded { by } => EventKind::SessionEnded { by: by.clone() },
        }
    }
}

/// The events of one stored entry of `session`, in order.
pub fn events_of(session: &str, entry: &OutboxEntry) -> Vec<WebhookEvent> {
    let at = rfc3339(entry.at);
    let counts = member_counts(entry);
    let mut events = Vec::new();
    for (change, (before, after)) in entry.changes.iter().zip(counts) {
        let mut kinds = Vec::with_capacity(change.events.len() + 1);
        if before == 0 && after > 0 {
            kinds.push(EventKind::SessionStarted);
        }
        kinds.extend(change.events.iter().map(EventKind::of));
        if before > 0 && after == 0 {
            kinds.push(EventKind::SessionVacated);
        }
        events.extend(
            kinds
                .into_iter()
                .enumerate()
                .map(|(index, kind)| WebhookEvent {
                    id: format!("{session}:{}:{index}:{}", change.version, entry.at),
                    kind,
                    session: session.to_owned(),
                    version: change.version,
                    at: at.clone(),
                    at_ms: entry.at,
                }),
        );
    }
    events
}

/// How many events [`events_of`] makes of `entry`, without building them.
pub fn count_of(entry: &OutboxEntry) -> usize {
    member_counts(entry)
        .into_iter()
        .zip(&entry.changes)
        .map(|((before, after), change)| {
            change.events.len()
                + usize::from(before == 0 && after > 0)
                + usize::from(before > 0 && after == 0)
        })
        .sum()
}

/// The member counts (before, after) of each change, from the count after the last one.
fn member_counts(entry: &OutboxEntry) -> Vec<(u64, u64)> {
    let mut counts = vec![(0, 0); entry.changes.len()];
    let mut after = entry.members;
    for (i, change) in entry.changes.iter().enumerate().rev() {
        let before = count_before(change, after);
        counts[i] = (before, after);
        after = before;
    }
    counts
}

/// The member count before `change`, given the count after it.
fn count_before(change: &Change, after: u64) -> u64 {
    let (joined, left) =
        change
            .events
            .iter()
            .fold((0u64, 0u64), |(joined, left), event| match event {
                Event::MemberJoined { .. } => (joined + 1, left),
                Event::MemberLeft { .. } => (joined, left + 1),
                _ => (joined, left),
            });
    (after + left).saturating_sub(joined)
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC, with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
