//! The server API's cases of the conformance suite (`rollcall::store::Operator`): kicks by
//! connection and by user, with the reason text carried to the other instances and the leader
//! handed over in the same change; the backend's end (`by` null); the backend's publish (kept in
//! history, `from` null, only to a live session); many views at once. Listed in the suite's
//! `conformance!`, so they run on the Memory store, Redis and Redis Cluster.

use std::time::Duration;

use rollcall::model::{Change, Event, LeaveReason};
use rollcall::store::{BroadcastBody, FeedEvent, KickTarget, ResumeRuling, StoreError};
use serde_json::json;

use super::{Harness, join, leader, leave, left, member, next_event};

fn kicked(connection: &str, user: Option<&str>, detail: Option<&str>) -> Event {
    match left(connection, user, LeaveReason::Kicked) {
        Event::MemberLeft {
            connection,
            user,
            reason,
            ..
        } => Event::MemberLeft {
            connection,
            user,
            reason,
            detail: detail.map(str::to_owned),
        },
        other => other,
    }
}

/// A kick removes a member of any instance, with its reason text, in one change that also hands
/// the leadership over; the other instances hear it with the text; the kicked member cannot be
/// resumed; a kick by user removes every connection of that user; a kick of no member changes
/// nothing.
pub async fn the_backend_kicks_a_connection_or_every_connection_of_a_user<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, mut fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    a.subscribe("s").await.unwrap();
    join(&a, "s", member(&a, "m1", Some("u1"))).await;
    join(&b, "s", member(&b, "m2", Some("u2"))).await;
    join(&b, "s", member(&b, "m3", Some("u1"))).await;
    join(&a, "s", member(&a, "m4", Some("u1"))).await;
    // b joined twice: a hears those changes first.
    for _ in 0..2 {
        next_event(&mut fa).await;
    }
    let change = b
        .kick("s", KickTarget::Connection("m1"), Some("spam"))
        .await
        .unwrap()
        .expect("m1 is a member (of a)");
    assert_eq!(
        change,
        Change {
            version: 5,
            leader: Some("m2".into()),
            epoch: 2,
            events: vec![
                kicked("m1", Some("u1"), Some("spam")),
                leader(Some("m2"), 2)
            ],
        },
        "the kicked leader hands over in the same change"
    );
    match next_event(&mut fa).await {
        FeedEvent::Broadcast(bc) => assert_eq!(bc.body, BroadcastBody::Change(change.clone())),
        other => panic!("expected the kick, got {other:?}"),
    }
    assert_eq!(
        a.resume("s", "m1", Some("u1")).await.unwrap(),
        ResumeRuling::Gone,
        "a kicked member cannot be resumed"
    );
    assert_eq!(
        b.kick("s", KickTarget::Connection("m1"), None)
            .await
            .unwrap(),
        None,
        "no longer a member"
    );
    assert_eq!(
        a.kick("s", KickTarget::User("nobody"), None).await.unwrap(),
        None
    );
    assert_eq!(
        a.kick("nowhere", KickTarget::Connection("m2"), None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(a.view("s").await.unwrap().unwrap().version, 5, "unchanged");
    let by_user = a
        .kick("s", KickTarget::User("u1"), None)
        .await
        .unwrap()
        .expect("u1 has two connections left");
    assert_eq!(by_user.version, 6);
    assert_eq!(
        by_user.events,
        vec![
            kicked("m3", Some("u1"), None),
            kicked("m4", Some("u1"), None)
        ],
        "in election order, no reason text, the leader stays"
    );
    let view = a.view("s").await.unwrap().unwrap();
    let ids: Vec<&str> = view.members.iter().map(|m| m.connection.as_str()).collect();
    assert_eq!(ids, ["m2"]);
    assert_eq!(b.counts(&["s".into()]).await.unwrap()[0].users, 1);
    assert_eq!(a.held_count("s").await.unwrap(), 0, "a holds nobody there");
    assert_eq!(b.held_count("s").await.unwrap(), 1);
    assert_eq!(
        a.changes_since("s", 4).await.unwrap(),
        Some(vec![change, by_user]),
        "logged like any change"
    );
}

/// The backend's end: as a leader's, with `by` null; only a live session ends.
pub async fn the_backend_ends_a_live_session_with_by_null<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    assert_eq!(a.end_by_server("never").await.unwrap(), None, "no record");
    join(&a, "s", member(&a, "m1", Some("u1"))).await;
    join(&b, "s", member(&b, "m2", None)).await;
    let change = a.end_by_server("s").await.unwrap().expect("a live session");
    assert_eq!(
        change,
        Change {
            version: 3,
            leader: None,
            epoch: 2,
            events: vec![
                Event::SessionEnded { by: None },
                left("m1", Some("u1"), LeaveReason::Ended),
                left("m2", None, LeaveReason::Ended),
                leader(None, 2),
            ],
        }
    );
    let view = b.view("s").await.unwrap().unwrap();
    assert!(view.ended_at.is_some() && view.members.is_empty());
    assert_eq!(a.end_by_server("s").await.unwrap(), None, "ended already");
    assert_eq!(
        a.join("s", member(&a, "m3", None), 10).await,
        Err(StoreError::SessionEnded)
    );
    join(&a, "empty", member(&a, "m4", None)).await;
    leave(&a, "empty", "m4").await;
    assert_eq!(a.end_by_server("empty").await.unwrap(), None, "no member");
}

/// The backend's publish: numbered and kept like any message, `from` and `user` null, heard by
/// every instance; a session without a member gets nothing.
pub async fn the_backend_publishes_to_a_live_session_only<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, mut fb) = h.connect("b").await;
    let data = json!({"notice": "maintenance at 5"});
    assert_eq!(a.publish_as_server("s", &data).await.unwrap(), None);
    let page = a.history("s", None, 10).await.unwrap();
    assert_eq!(page.stream, None, "nothing was published");
    join(&b, "s", member(&b, "m1", None)).await;
    b.subscribe("s").await.unwrap();
    let first = a
        .publish_as_server("s", &data)
        .await
        .unwrap()
        .expect("s has a member");
    assert_eq!(first.offset, 1);
    match next_event(&mut fb).await {
        FeedEvent::Broadcast(bc) => assert_eq!(
            bc.body,
            BroadcastBody::Message {
                from: None,
                user: None,
                data: data.clone(),
                stream: Some(first.stream.clone()),
                offset: Some(1),
            }
        ),
        other => panic!("expected the message, got {other:?}"),
    }
    let second = b.publish("s", "m1", None, &json!(2)).await.unwrap();
    assert_eq!(
        (second.stream.as_str(), second.offset),
        (first.stream.as_str(), 2)
    );
    let page = b.history("s", None, 10).await.unwrap();
    let kept: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.offset, m.from.as_deref(), m.data.clone()))
        .collect();
    assert_eq!(kept, [(1, None, data), (2, Some("m1"), json!(2))]);
    assert_eq!(page.messages[0].user, None);
}

/// The views of several sessions at once, in the order asked, as one by one.
pub async fn views_of_many_sessions_at_once<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    assert_eq!(a.views(&[]).await.unwrap(), vec![]);
    let sessions: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
    for (i, session) in sessions.iter().enumerate().take(10) {
        join(&a, session, member(&a, &format!("a{i}"), Some("ua"))).await;
        if i % 2 == 0 {
            join(&b, session, member(&b, &format!("b{i}"), None)).await;
        }
    }
    let views = b.views(&sessions).await.unwrap();
    assert_eq!(views.len(), 12);
    for (session, view) in sessions.iter().zip(&views) {
        assert_eq!(view, &a.view(session).await.unwrap(), "{session}");
    }
    assert_eq!(views[0].as_ref().map(|v| v.members.len()), Some(2));
    assert_eq!(views[1].as_ref().map(|v| v.members.len()), Some(1));
    assert_eq!((&views[10], &views[11]), (&None, &None), "no record");
}
