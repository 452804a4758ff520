use super::*;
use crate::model::{Change, Event};

/// An entry of `n` leader changes (no member counts involved), versions `first..first + n`, one
/// event each (the deliverer's tests use it too).
pub(in crate::webhooks) fn entry(at: i64, first: u64, n: u64) -> OutboxEntry {
    OutboxEntry {
        at,
        members: 1,
        changes: (first..first + n)
            .map(|version| Change {
                version,
                leader: None,
                epoch: version,
                events: vec![Event::LeaderChanged {
                    leader: None,
                    epoch: version,
                }],
            })
            .collect(),
    }
}

fn pending(session: &str, entries: Vec<OutboxEntry>) -> PendingSession {
    PendingSession {
        session: session.to_owned(),
        entries,
    }
}

/// Acknowledges `entries` of `session`, the last of them at `at` with first version `first`.
fn ack(session: &str, entries: usize, at: i64, first: u64) -> Acknowledgement {
    Acknowledgement {
        session: session.to_owned(),
        entries,
        through: EntryId {
            at,
            first_version: first,
        },
    }
}

fn versions(batch: &Batch, session: &str) -> Vec<u64> {
    batch
        .events
        .iter()
        .filter(|e| e.session == session)
        .map(|e| e.version)
        .collect()
}

const NOW: i64 = 10_000_000;
const RETENTION: i64 = 3_600_000;

#[test]
fn sessions_are_taken_whole_and_in_version_order() {
    let read = [
        pending("a", vec![entry(NOW, 1, 2), entry(NOW, 3, 1)]),
        pending("b", vec![entry(NOW, 7, 1)]),
    ];
    let plan = plan(&read, &Progress::default(), NOW, RETENTION);
    let batch = plan.batch.expect("a batch");
    assert_eq!(versions(&batch, "a"), [1, 2, 3]);
    assert_eq!(versions(&batch, "b"), [7]);
    assert_eq!(batch.complete, [ack("a", 2, NOW, 3), ack("b", 1, NOW, 7)]);
    assert!(batch.partial.is_none());
    assert!(plan.drops.is_empty());
    assert_eq!(plan.pending_events, 4);
}

#[test]
fn a_batch_holds_at_most_100_events_and_stops_at_the_first_that_does_not_fit() {
    let read = [
        pending("a", vec![entry(NOW, 1, 60), entry(NOW, 61, 30)]),
        // 90 taken; 10 of b's 20 fit: b's entry is split, c waits.
        pending("b", vec![entry(NOW, 1, 20), entry(NOW, 21, 1)]),
        pending("c", vec![entry(NOW, 1, 1)]),
    ];
    let plan = plan(&read, &Progress::default(), NOW, RETENTION);
    let batch = plan.batch.expect("a batch");
    assert_eq!(batch.events.len(), MAX_EVENTS);
    assert_eq!(versions(&batch, "b"), (1..=10).collect::<Vec<_>>());
    assert!(versions(&batch, "c").is_empty());
    assert_eq!(
        batch.complete,
        [ack("a", 2, NOW, 61)],
        "b's entry is not complete"
    );
    assert_eq!(plan.pending_events, 90 + 21 + 1);
}

#[test]
fn a_split_entry_continues_where_the_receiver_left_off_and_is_acknowledged_with_its_last_event() {
    let big = entry(NOW, 1, 250);
    let read = [pending("a", vec![big.clone(), entry(NOW, 251, 1)])];
    let mut progress = Progress::default();
    let mut seen = Vec::new();
    for round in 0..3 {
        let batch = plan(&read, &progress, NOW, RETENTION)
            .batch
            .expect("a batch");
        seen.extend(versions(&batch, "a"));
        if round < 2 {
            assert!(batch.complete.is_empty(), "round {round}");
            assert_eq!(batch.events.len(), 100);
        } else {
            // The last 50 of the big entry, and the next entry whole.
            assert_eq!(batch.complete, [ack("a", 2, NOW, 251)]);
        }
        progress.delivered(&batch);
    }
    assert_eq!(seen, (1..=251).collect::<Vec<_>>());
}

#[test]
fn progress_on_an_entry_that_is_gone_is_forgotten() {
    let read = [pending("a", vec![entry(NOW, 1, 150)])];
    let mut progress = Progress::default();
    let first = plan(&read, &progress, NOW, RETENTION)
        .batch
        .expect("a batch");
    progress.delivered(&first);
    // Another entry heads the outbox now (say the store lost its data): start it from its first.
    let other = [pending("a", vec![entry(NOW + 5, 1, 3)])];
    let batch = plan(&other, &progress, NOW + 5, RETENTION)
        .batch
        .expect("a batch");
    assert_eq!(versions(&batch, "a"), [1, 2, 3]);
}

#[test]
fn entries_past_the_retention_are_dropped_before_anything_is_sent() {
    let read = [
        pending(
            "a",
            vec![
                entry(NOW - RETENTION - 2, 1, 2),
                entry(NOW - RETENTION - 1, 3, 1),
                entry(NOW - RETENTION, 4, 1),
            ],
        ),
        pending("b", vec![entry(NOW - RETENTION - 1, 1, 5)]),
    ];
    let plan = plan(&read, &Progress::default(), NOW, RETENTION);
    assert_eq!(
        plan.drops,
        [
            Expired {
                acknowledgement: ack("a", 2, NOW - RETENTION - 1, 3),
                events: 3
            },
            Expired {
                acknowledgement: ack("b", 1, NOW - RETENTION - 1, 1),
                events: 5
            },
        ]
    );
    let batch = plan.batch.expect("a batch");
    assert_eq!(versions(&batch, "a"), [4], "exactly the retention is kept");
    assert_eq!(batch.complete, [ack("a", 1, NOW - RETENTION, 4)]);
    assert_eq!(batch.oldest_at, NOW - RETENTION);
}

#[test]
fn a_dropped_split_entry_counts_only_its_undelivered_events() {
    let read = [pending("a", vec![entry(NOW, 1, 150)])];
    let mut progress = Progress::default();
    let first = plan(&read, &progress, NOW, RETENTION)
        .batch
        .expect("a batch");
    progress.delivered(&first);
    let later = plan(&read, &progress, NOW + RETENTION + 1, RETENTION);
    assert_eq!(later.drops[0].events, 50);
    assert!(later.batch.is_none());
}

#[test]
fn nothing_pending_is_no_batch() {
    let plan = plan(&[], &Progress::default(), NOW, RETENTION);
    assert!(plan.batch.is_none());
    assert_eq!(plan.pending_events, 0);
}
