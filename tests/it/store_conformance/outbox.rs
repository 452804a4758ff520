//! The outbox and directory cases of the conformance suite (`rollcall::store::outbox`): every
//! change kept in the same step until acknowledged, crash-reaped members included; one deliverer
//! at a time; pages of live sessions. Listed in the suite's `conformance!` like every other case.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rollcall::model::{Change, Event, LeaveReason};
use rollcall::store::{OutboxEntry, PendingSession, Store};

use super::{Harness, join, leave, member};
use crate::support::eventually;

/// The changes of every pending entry of `session`, flattened: a store may keep one step's
/// changes in one entry or several.
async fn kept(store: &Arc<dyn Store>, session: &str) -> Vec<(Change, u64)> {
    let pending: Vec<PendingSession> = store.pending(100, 100, usize::MAX).await.expect("pending");
    pending
        .into_iter()
        .filter(|p| p.session == session)
        .flat_map(|p| p.entries)
        .flat_map(|entry| {
            let members = entry.members;
            entry.changes.into_iter().map(move |c| (c, members))
        })
        .collect()
}

/// The pending entries of `session`, oldest first.
async fn entries(store: &Arc<dyn Store>, session: &str) -> Vec<OutboxEntry> {
    let pending: Vec<PendingSession> = store.pending(100, 100, usize::MAX).await.expect("pending");
    pending
        .into_iter()
        .filter(|p| p.session == session)
        .flat_map(|p| p.entries)
        .collect()
}

/// Acknowledges the `n` oldest entries of `session` as `store` reads them now.
async fn acknowledge_oldest(store: &Arc<dyn Store>, session: &str, n: usize) -> usize {
    let read = entries(store, session).await;
    store
        .acknowledge(session, read[n - 1].id(), n)
        .await
        .expect("acknowledge")
}

fn versions(kept: &[(Change, u64)]) -> Vec<u64> {
    kept.iter().map(|(c, _)| c.version).collect()
}

/// Changes made on two instances are kept, in version order, with the member count after each
/// step, until a deliverer acknowledges them; nothing is kept while the outbox is off.
pub(super) async fn every_change_is_kept_until_acknowledged<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    join(&a, "off", member(&a, "x1", None)).await;
    assert!(kept(&a, "off").await.is_empty(), "the outbox is off");
    a.keep_outbox(true);
    b.keep_outbox(true);
    let joined = join(&a, "s", member(&a, "c1", Some("u1"))).await;
    join(&b, "s", member(&b, "c2", Some("u2"))).await;
    let left = leave(&a, "s", "c1").await;
    let all = kept(&b, "s").await;
    assert_eq!(versions(&all), vec![1, 2, 3], "every change, in order");
    assert_eq!(
        all.iter().map(|(_, members)| *members).collect::<Vec<_>>(),
        vec![1, 2, 1],
        "members after each step"
    );
    assert_eq!(
        (&all[0].0, &all[2].0),
        (&joined, &left),
        "the changes as made"
    );
    assert_eq!(acknowledge_oldest(&a, "s", 2).await, 2);
    assert_eq!(
        versions(&kept(&a, "s").await),
        vec![3],
        "the two oldest are gone"
    );
    assert_eq!(acknowledge_oldest(&a, "s", 1).await, 1);
    assert!(kept(&a, "s").await.is_empty(), "all delivered");
}

/// An acknowledgement names the last entry it read: one made after another deliverer already
/// removed that entry removes nothing more, so entries nobody delivered stay.
pub(super) async fn a_late_acknowledgement_removes_only_what_was_read<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    a.keep_outbox(true);
    b.keep_outbox(true);
    for i in 1..=4 {
        join(&a, "s", member(&a, &format!("c{i}"), None)).await;
    }
    let read_by_a = entries(&a, "s").await;
    let read_by_b = entries(&b, "s").await;
    assert_eq!(read_by_a.len(), 4, "one entry a join: {read_by_a:?}");
    let removed = a
        .acknowledge("s", read_by_a[1].id(), 2)
        .await
        .expect("acknowledge");
    assert_eq!(removed, 2, "the first acknowledgement removes what it read");
    let late = b
        .acknowledge("s", read_by_b[1].id(), 2)
        .await
        .expect("acknowledge");
    assert_eq!(
        late, 0,
        "the same entries acknowledged again remove nothing"
    );
    assert_eq!(versions(&kept(&b, "s").await), vec![3, 4], "3 and 4 stay");
    let rest = b
        .acknowledge("s", read_by_b[2].id(), 3)
        .await
        .expect("acknowledge");
    assert_eq!(
        rest, 1,
        "what b read that is still there goes, up to its last"
    );
    assert_eq!(versions(&kept(&b, "s").await), vec![4], "4 stays");
}

/// The members of a dead instance, removed by another, are kept like any other change: a
/// `member_left` with reason `instance_lost`.
pub(super) async fn reaped_members_are_kept_for_delivery<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    a.keep_outbox(true);
    b.keep_outbox(true);
    join(&a, "s", member(&a, "c1", None)).await;
    join(&b, "s", member(&b, "c2", None)).await;
    acknowledge_oldest(&b, "s", 2).await;
    let dead = a.instance().incarnation.to_string();
    b.remove_instance_members("s", &dead, LeaveReason::InstanceLost)
        .await
        .expect("reap")
        .expect("a change");
    let all = kept(&b, "s").await;
    assert_eq!(versions(&all), vec![3]);
    assert!(
        all[0].0.events.iter().any(|e| matches!(e,
            Event::MemberLeft { connection, reason: LeaveReason::InstanceLost, .. }
                if connection.as_str() == "c1")),
        "the reaped member left with instance_lost: {:?}",
        all[0].0
    );
}

/// One instance at a time holds the right to deliver; another takes it once it lapses.
pub(super) async fn one_deliverer_at_a_time<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    let ttl = Duration::from_millis(300);
    assert!(a.hold_delivery(ttl).await.unwrap(), "the first takes it");
    assert!(!b.hold_delivery(ttl).await.unwrap(), "the second waits");
    assert!(a.hold_delivery(ttl).await.unwrap(), "the holder renews");
    let b_took_over = eventually(Duration::from_secs(3), async || {
        b.hold_delivery(ttl).await.unwrap()
    })
    .await;
    assert!(b_took_over, "b takes over once a stops renewing");
    assert!(!a.hold_delivery(ttl).await.unwrap(), "a lost it");
}

/// Paging through live sessions lists every session live throughout exactly once, also while
/// other sessions come and go between pages; vacated sessions are not listed.
pub(super) async fn live_sessions_are_paged_exactly_once<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    let mut live = BTreeSet::new();
    for i in 0..25 {
        let session = format!("s{i:02}");
        let store = if i % 2 == 0 { &a } else { &b };
        join(store, &session, member(store, &format!("c{i}"), None)).await;
        live.insert(session);
    }
    for i in [3, 11, 17] {
        let store = if i % 2 == 0 { &a } else { &b };
        leave(store, &format!("s{i:02}"), &format!("c{i}")).await;
        live.remove(&format!("s{i:02}"));
    }
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = a.live_sessions(cursor.as_deref(), 10).await.expect("page");
        assert!(page.sessions.len() <= 10, "a page holds at most its limit");
        for (session, counts) in &page.sessions {
            assert_eq!(counts.connections, 1, "{session}'s counts");
        }
        listed.extend(page.sessions.into_iter().map(|(s, _)| s));
        pages += 1;
        if pages == 1 {
            // Coming and going between pages: a session after the cursor appears, one before it
            // goes; neither disturbs the others.
            join(&b, "s99", member(&b, "c99", None)).await;
            leave(&a, "s00", "c0").await;
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 20, "paging ends");
    }
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "no session twice: {listed:?}");
    let throughout: BTreeSet<String> = live.iter().filter(|s| *s != "s00").cloned().collect();
    assert!(
        throughout.is_subset(&unique),
        "every session live throughout is listed: missing {:?}",
        throughout.difference(&unique).collect::<Vec<_>>()
    );
    for gone in ["s03", "s11", "s17"] {
        assert!(!unique.contains(gone), "vacated {gone} is not listed");
    }
    assert!(
        unique.contains("s99"),
        "a session that started after the cursor is listed"
    );
}
