//! The message history cases of the conformance suite (`rollcall::store::history`): numbering,
//! reading back, the size cap, the TTL, history turned off, and a new stream after a loss. Listed
//! in the suite's `conformance!` like every other case, so they run on the Memory store, Redis and
//! Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use rollcall::store::{HistoryPage, HistorySettings, Store, StreamPosition};
use serde_json::json;

use super::Harness;
use crate::support::eventually;

async fn publish(store: &Arc<dyn Store>, session: &str, from: &str, n: u64) -> StreamPosition {
    store
        .publish(session, from, Some("u"), &json!({ "n": n }))
        .await
        .expect("publish")
}

async fn read(
    store: &Arc<dyn Store>,
    session: &str,
    since: Option<u64>,
    limit: usize,
) -> HistoryPage {
    store.history(session, since, limit).await.expect("history")
}

fn offsets(page: &HistoryPage) -> Vec<u64> {
    page.messages.iter().map(|m| m.offset).collect()
}

fn keep(size: usize, ttl: Duration) -> HistorySettings {
    HistorySettings { size, ttl }
}

/// Every message of a session gets the next offset of one stream, whichever instance publishes
/// it; the history gives them back in order, with who sent them, their data and when.
pub(super) async fn offsets_grow_by_one_and_history_gives_the_messages_back<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    let empty = read(&a, "s", None, 100).await;
    assert_eq!(
        (empty.stream.as_deref(), empty.latest, empty.complete),
        (None, None, true),
        "no stream before the first message"
    );
    let before = rollcall::model::now_ms();
    let first = publish(&a, "s", "c1", 1).await;
    assert_eq!(first.offset, 1, "a new stream starts at 1");
    let mut stream = vec![first.clone()];
    stream.push(publish(&b, "s", "c2", 2).await);
    stream.push(publish(&a, "s", "c1", 3).await);
    let after = rollcall::model::now_ms();
    assert!(
        stream.iter().all(|p| p.stream == first.stream),
        "one stream: {stream:?}"
    );
    assert_eq!(
        stream.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let other = publish(&a, "t", "c1", 1).await;
    assert_eq!(other.offset, 1, "each session has its own stream");
    assert_ne!(other.stream, first.stream);

    let page = read(&b, "s", None, 100).await;
    assert_eq!(page.stream.as_deref(), Some(first.stream.as_str()));
    assert_eq!(page.latest, Some(3));
    assert!(page.complete);
    assert_eq!(offsets(&page), [1, 2, 3]);
    let froms: Vec<&str> = page
        .messages
        .iter()
        .map(|m| m.from.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(froms, ["c1", "c2", "c1"]);
    assert!(page.messages.iter().all(|m| m.user.as_deref() == Some("u")));
    assert_eq!(page.messages[1].data, json!({"n": 2}));
    // `at` is the store's clock (Redis TIME): allow for a little skew with this process's.
    for m in &page.messages {
        assert!(
            m.at >= before - 5_000 && m.at <= after + 5_000,
            "at {} outside [{before}, {after}]",
            m.at
        );
    }
    assert!(page.messages.windows(2).all(|w| w[0].at <= w[1].at));
    let position = read(&a, "s", None, 0).await;
    assert_eq!(position.position(), stream.last().cloned());
    assert!(
        position.messages.is_empty(),
        "limit 0 reads the position only"
    );
}

/// A read returns the messages after `since`, oldest first, at most `limit`.
pub(super) async fn history_pages_after_since<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    for n in 1..=10 {
        publish(&a, "s", "c1", n).await;
    }
    let page = read(&a, "s", Some(3), 4).await;
    assert_eq!(offsets(&page), [4, 5, 6, 7]);
    assert!(page.complete);
    assert_eq!(page.messages[0].data, json!({"n": 4}));
    let rest = read(&a, "s", Some(7), 100).await;
    assert_eq!(offsets(&rest), [8, 9, 10]);
    assert!(rest.complete);
    let none = read(&a, "s", Some(10), 100).await;
    assert!(none.messages.is_empty() && none.complete);
    let ahead = read(&a, "s", Some(12), 100).await;
    assert!(ahead.messages.is_empty() && ahead.complete);
    let start = read(&a, "s", None, 2).await;
    assert_eq!(offsets(&start), [1, 2]);
    assert!(start.complete);
}

/// Only the latest `size` messages are kept; a read after an offset that was dropped starts at
/// the oldest kept one and says it is not complete.
pub(super) async fn history_keeps_the_latest_size_messages<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    a.keep_history(keep(5, HistorySettings::DEFAULT_TTL));
    // Past the Redis script's trimming slack, too.
    for n in 1..=30 {
        publish(&a, "s", "c1", n).await;
    }
    let all = read(&a, "s", None, 100).await;
    assert_eq!(offsets(&all), [26, 27, 28, 29, 30]);
    assert!(!all.complete, "messages 1 to 25 were dropped");
    let dropped = read(&a, "s", Some(20), 2).await;
    assert_eq!(offsets(&dropped), [26, 27]);
    assert!(!dropped.complete);
    let kept = read(&a, "s", Some(25), 100).await;
    assert_eq!(offsets(&kept), [26, 27, 28, 29, 30]);
    assert!(kept.complete);
}

/// With a size of 0 nothing is kept, but messages are still numbered and still published.
pub(super) async fn history_size_zero_keeps_nothing_but_still_numbers<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, mut fb) = h.connect("b").await;
    b.subscribe("s").await.expect("subscribe");
    a.keep_history(keep(0, HistorySettings::DEFAULT_TTL));
    let positions = [
        publish(&a, "s", "c1", 1).await,
        publish(&a, "s", "c1", 2).await,
    ];
    assert_eq!(positions[1].offset, 2);
    assert_eq!(positions[0].stream, positions[1].stream);
    match super::next_event(&mut fb).await {
        rollcall::store::FeedEvent::Broadcast(bc) => assert!(matches!(
            bc.body,
            rollcall::store::BroadcastBody::Message {
                offset: Some(1),
                ..
            }
        )),
        other => panic!("expected the message, got {other:?}"),
    }
    let page = read(&a, "s", None, 100).await;
    assert!(page.messages.is_empty());
    assert_eq!(page.latest, Some(2));
    assert!(!page.complete, "messages 1 and 2 are not kept");
    assert!(read(&a, "s", Some(2), 100).await.complete);
}

/// A message is kept for the TTL; a stream nobody published to for a while is forgotten, and the
/// next message starts a new one.
pub(super) async fn messages_expire_and_a_silent_stream_is_forgotten<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let ttl = Duration::from_millis(300);
    a.keep_history(keep(100, ttl));
    let first = publish(&a, "s", "c1", 1).await;
    assert_eq!(offsets(&read(&a, "s", None, 100).await), [1]);
    let gone = eventually(Duration::from_secs(5), async || {
        read(&a, "s", None, 100).await.stream.is_none()
    })
    .await;
    assert!(gone, "the stream was forgotten within 5 s of a 300 ms TTL");
    let next = publish(&a, "s", "c1", 2).await;
    assert_ne!(next.stream, first.stream, "a new stream");
    assert_eq!(next.offset, 1);
}

/// A store that lost its data starts a new stream: no offset of the old one is taken for one of
/// the new.
pub(super) async fn a_store_that_lost_its_data_starts_a_new_stream<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    for n in 1..=3 {
        publish(&a, "s", "c1", n).await;
    }
    let before = read(&a, "s", None, 0).await;
    h.lose_data();
    assert_eq!(read(&a, "s", Some(3), 100).await.stream, None);
    let after = publish(&a, "s", "c1", 4).await;
    assert_eq!(after.offset, 1);
    assert_ne!(Some(after.stream.clone()), before.stream);
    let page = read(&a, "s", None, 100).await;
    assert_eq!(page.stream, Some(after.stream));
    assert_eq!(offsets(&page), [1]);
}
