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
use crate::store::{EntryId, OutboxEntry, PendingSession};

/// At most this many events in one POST (docs/protocol.md, webhooks).
pub const MAX_EVENTS: usize = 100;

/// The oldest entry of a session, partly delivered: how many of its events the receiver has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partial {
    entry: EntryId,
    sent: usize,
}

impl Partial {
    fn of(entry: &OutboxEntry, sent: usize) -> Partial {
        Partial {
            entry: entry.id(),
            sent,
        }
    }

    /// Events of `entry` already delivered, if it is the entry this progress is about.
    fn sent_of(&self, entry: &OutboxEntry) -> usize {
        if self.entry == entry.id() {
            self.sent
        } else {
            0
        }
    }
}

/// A session's oldest entries, up to and including `through`, to remove from its outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub session: String,
    pub entries: usize,
    pub through: EntryId,
}

/// Per session, its partly delivered oldest entry.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    partial: HashMap<String, Partial>,
}

impl Progress {
    /// The receiver acknowledged `batch`.
    pub fn delivered(&mut self, batch: &Batch) {
        for done in &batch.complete {
            self.partial.remove(&done.session);
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
    pub acknowledgement: Acknowledgement,
    /// Their events not yet delivered.
    pub events: usize,
}

/// One POST's worth of events.
#[derive(Clone, Debug)]
pub struct Batch {
    pub events: Vec<WebhookEvent>,
    /// Per session, the oldest entries (after the drops) this batch completes.
    pub complete: Vec<Acknowledgement>,
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
        let mut dropped: Option<Expired> = None;
        while let Some(entry) = entries.next_if(|e| now_ms.saturating_sub(e.at) > retention_ms) {
            let sent = match dropped {
                None => progress.sent_of(name, entry),
                Some(_) => 0,
            };
            let expired = dropped.get_or_insert_with(|| Expired {
                acknowledgement: Acknowledgement {
                    session: name.to_owned(),
                    entries: 0,
                    through: entry.id(),
                },
                events: 0,
            });
            expired.acknowledgement.entries += 1;
            expired.acknowledgement.through = entry.id();
            expired.events += count_of(entry).saturating_sub(sent);
        }
        let mut taken: Option<Acknowledgement> = None;
        for (i, entry) in entries.enumerate() {
            let sent = if i == 0 && dropped.is_none() {
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
                let done = taken.get_or_insert_with(|| Acknowledgement {
                    session: name.to_owned(),
                    entries: 0,
                    through: entry.id(),
                });
                done.entries += 1;
                done.through = entry.id();
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
        if let Some(dropped) = dropped {
            plan.pending_events += dropped.events;
            plan.drops.push(dropped);
        }
        complete.extend(taken);
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
