//! Choosing what the next POST carries, from what the outboxes hold.
//!
//! A batch holds at most [`MAX_EVENTS`] events; each session's events in it are contiguous and in
//! version order, and a session's entries are taken oldest first, so a receiver never sees a later
//! version of a session before an earlier one. An entry with more events than fit is split across
//! consecutive batches: [`Progress`] remembers how many of its events the receiver already has, and
//! the entry is acknowledged in the store only with the batch that carries its last event.
//!
//! Entries older than the retention are dropped first (acknowledged without delivery).

use std::collections::HashMap;

use super::events::{WebhookEvent, count_of, events_of};
use crate::store::{OutboxEntry, PendingSession};

/// At most this many events in one POST (docs/protocol.md, webhooks).
pub const MAX_EVENTS: usize = 100;

/// The oldest entry of a session, partly delivered: how many of its events the receiver has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partial {
    /// Which entry: its time and its first version.
    at: i64,
    first_version: u64,
    sent: usize,
}

impl Partial {
    fn of(entry: &OutboxEntry, sent: usize) -> Partial {
        Partial {
            at: entry.at,
            first_version: first_version(entry),
            sent,
        }
    }

    /// Events of `entry` already delivered, if it is the entry this progress is about.
    fn sent_of(&self, entry: &OutboxEntry) -> usize {
        if self.at == entry.at && self.first_version == first_version(entry) {
            self.sent
        } else {
            0
        }
    }
}

fn first_version(entry: &OutboxEntry) -> u64 {
    entry.changes.first().map_or(0, |c| c.version)
}

/// Per session, its partly delivered oldest entry.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    partial: HashMap<String, Partial>,
}

impl Progress {
    /// The receiver acknowledged `batch`.
    pub fn delivered(&mut self, batch: &Batch) {
        for (session, _) in &batch.complete {
            self.partial.remove(session);
        }
        if let Some((session, partial)) = &batch.partial {
            self.partial.insert(session.clone(), partial.clone());
        }
    }

    fn sent_of(&self, session: &str, entry: &OutboxEntry) -> usize {
        self.partial.get(session).map_or(0, |p| p.sent_of(entry))
    }
}

/// Entries to acknowledge without delivery: too old.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub session: String,
    pub entries: usize,
    /// Their events not yet delivered.
    pub events: usize,
}

/// One POST's worth of events.
#[derive(Clone, Debug)]
pub struct Batch {
    pub events: Vec<WebhookEvent>,
    /// Per session, how many of its oldest entries (after the drops) this batch completes.
    pub complete: Vec<(String, usize)>,
    /// The entry this batch carries only a part of.
    pub partial: Option<(String, Partial)>,
    /// The oldest store time of its entries, in ms.
    pub oldest_at: i64,
}

/// What to do with what was read.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub drops: Vec<Expired>,
    pub batch: Option<Batch>,
    /// Events the read saw, not yet delivered.
    pub pending_events: usize,
}

/// Drops what is older than `retention_ms` at `now_ms`, and fills a batch with the rest.
pub fn plan(
    pending: &[PendingSession],
    progress: &Progress,
    now_ms: i64,
    retention_ms: i64,
) -> Plan {
    let mut plan = Plan::default();
    let mut events = Vec::new();
    let mut complete = Vec::new();
    let mut partial = None;
    let mut full = false;
    let mut oldest_at = i64::MAX;
    for session in pending {
        let name = session.session.as_str();
        let mut entries = session.entries.iter().peekable();
        let mut dropped = Expired {
            session: name.to_owned(),
            entries: 0,
            events: 0,
        };
        while let Some(entry) = entries.next_if(|e| now_ms.saturating_sub(e.at) > retention_ms) {
            let sent = if dropped.entries == 0 {
                progress.sent_of(name, entry)
            } else {
                0
            };
            dropped.entries += 1;
            dropped.events += count_of(entry).saturating_sub(sent);
        }
        let mut taken = 0;
        for (i, entry) in entries.enumerate() {
            let sent = if i == 0 && dropped.entries == 0 {
                progress.sent_of(name, entry)
            } else {
                0
            };
            let left = count_of(entry).saturating_sub(sent);
            plan.pending_events += left;
            if full {
                continue;
            }
            let space = MAX_EVENTS - events.len();
            if left <= space {
                events.extend(events_of(name, entry).into_iter().skip(sent));
                taken += 1;
            } else if space > 0 {
                events.extend(events_of(name, entry).into_iter().skip(sent).take(space));
                partial = Some((name.to_owned(), Partial::of(entry, sent + space)));
                full = true;
            } else {
                full = true;
                continue;
            }
            oldest_at = oldest_at.min(entry.at);
        }
        plan.pending_events += dropped.events;
        if dropped.entries > 0 {
            plan.drops.push(dropped);
        }
        if taken > 0 {
            complete.push((name.to_owned(), taken));
        }
    }
    if !events.is_empty() || !complete.is_empty() {
        plan.batch = Some(Batch {
            events,
            complete,
            partial,
            oldest_at,
        });
    }
    plan
}

#[cfg(test)]
#[path = "batch_tests.rs"]
pub(super) mod tests;
