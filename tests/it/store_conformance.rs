//! One set of store cases, run against the Memory store, the Redis store on a private
//! `redis-server` per test, and the Redis store on a Redis Cluster (3 masters, one shared by every
//! case, each case under a key prefix of its own). The Redis store must behave event for event like
//! the Memory store.

use std::sync::Arc;
use std::time::Duration;

use rollcall::ids::ConnectionId;
use rollcall::model::{Change, Counts, Event, LeaveReason, Member, MemberState, now_ms};
use rollcall::store::memory::MemoryBackend;
use rollcall::store::plan::{Plan, Planner};
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use rollcall::store::{
    BroadcastBody, CHANGE_LOG_LENGTH, Feed, FeedEvent, Floor, InstanceId, JoinOutcome, LeaseStatus,
    PlansWritten, ResumeRuling, Store, StoreError, Whose,
};

use crate::support::cluster::{self, RedisCluster};
use crate::support::redis::RedisServer;

mod history;
mod operator;
use operator::{
    the_backend_ends_a_live_session_with_by_null,
    the_backend_kicks_a_connection_or_every_connection_of_a_user,
    the_backend_publishes_to_a_live_session_only, views_of_many_sessions_at_once,
};
mod outbox;
use history::{
    a_store_that_lost_its_data_starts_a_new_stream, history_keeps_the_latest_size_messages,
    history_pages_after_since, history_size_zero_keeps_nothing_but_still_numbers,
    messages_expire_and_a_silent_stream_is_forgotten,
    offsets_grow_by_one_and_history_gives_the_messages_back,
};
use outbox::{
    a_late_acknowledgement_removes_only_what_was_read, every_change_is_kept_until_acknowledged,
    live_sessions_are_paged_exactly_once, one_deliverer_at_a_time,
    reaped_members_are_kept_for_delivery,
};

const WAIT: Duration = Duration::from_secs(3);

/// A fresh shared backend that instances connect to.
trait Harness: Sized {
    async fn new(lease: Duration) -> Self;
    async fn connect(&self, name: &str) -> (Arc<dyn Store>, Feed);
    /// The backend loses all its data (Memory: reset; Redis: FLUSHALL).
    fn lose_data(&self);
}

struct Memory {
    backend: MemoryBackend,
}

impl Harness for Memory {
    async fn new(lease: Duration) -> Self {
        Memory {
            backend: MemoryBackend::new(lease),
        }
    }

    async fn connect(&self, name: &str) -> (Arc<dyn Store>, Feed) {
        let (store, feed) = self.backend.connect(InstanceId::new(name));
        (Arc::new(store), feed)
    }

    fn lose_data(&self) {
        self.backend.reset();
    }
}

struct Redis {
    server: RedisServer,
    lease: Duration,
}

impl Harness for Redis {
    async fn new(lease: Duration) -> Self {
        Redis {
            server: RedisServer::start(),
            lease,
        }
    }

    async fn connect(&self, name: &str) -> (Arc<dyn Store>, Feed) {
        let (store, feed) = RedisStore::connect(
            &self.server.url(),
            "rc",
            InstanceId::new(name),
            self.lease,
            DEFAULT_SESSION_TTL,
        )
        .await
        .expect("connect to the private redis");
        (Arc::new(store), feed)
    }

    fn lose_data(&self) {
        self.server.flushall();
    }
}

struct Cluster {
    cluster: Arc<RedisCluster>,
    prefix: String,
    lease: Duration,
}

impl Harness for Cluster {
    async fn new(lease: Duration) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Cluster {
            cluster: tokio::task::spawn_blocking(cluster::shared)
                .await
                .expect("start the shared cluster"),
            prefix: format!("rc-{}", &suffix[..8]),
            lease,
        }
    }

    async fn connect(&self, name: &str) -> (Arc<dyn Store>, Feed) {
        let (store, feed) = self.cluster.store(&self.prefix, name, self.lease).await;
        (Arc::new(store), feed)
    }

    fn lose_data(&self) {
        self.cluster.delete_prefix(&self.prefix);
    }
}

fn member(store: &Arc<dyn Store>, connection: &str, user: Option<&str>) -> Member {
    Member {
        user: user.map(str::to_owned),
        ..crate::support::members::member(connection, &store.instance().incarnation)
    }
}

async fn join(store: &Arc<dyn Store>, session: &str, m: Member) -> Change {
    store
        .join(session, m, 100)
        .await
        .expect("join")
        .change()
        .cloned()
        .expect("a join of a new member makes a change")
}

async fn leave(store: &Arc<dyn Store>, session: &str, connection: &str) -> Change {
    store
        .leave(session, connection, LeaveReason::Left)
        .await
        .expect("leave")
        .expect("a leave of a member makes a change")
}

fn joined_member(change: &Change) -> Member {
    match change.events.first() {
        Some(Event::MemberJoined { member }) => member.clone(),
        other => panic!("expected member_joined first, got {other:?}"),
    }
}

fn left(connection: &str, user: Option<&str>, reason: LeaveReason) -> Event {
    Event::MemberLeft {
        connection: connection.into(),
        user: user.map(str::to_owned),
        reason,
        detail: None,
    }
}

fn leader(leader: Option<&str>, epoch: u64) -> Event {
    Event::LeaderChanged {
        leader: leader.map(ConnectionId::from),
        epoch,
    }
}

async fn next_event(feed: &mut Feed) -> FeedEvent {
    tokio::time::timeout(WAIT, feed.recv())
        .await
        .expect("no feed event within 3 s")
        .expect("feed closed")
}

// ---------------------------------------------------------------------------------------------
// The cases.

async fn join_leave_rejoin<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _feed) = h.connect("a").await;
    let before = rollcall::model::now_ms();
    let c1 = join(&a, "s", member(&a, "c1", Some("u1"))).await;
    let m1 = joined_member(&c1);
    assert!(
        m1.joined_at >= before - 1000,
        "joined_at is set by the store"
    );
    assert_eq!(m1.instance, a.instance().incarnation);
    assert_eq!(
        c1,
        Change {
            version: 1,
            leader: Some("c1".into()),
            epoch: 1,
            events: vec![
                Event::MemberJoined { member: m1.clone() },
                leader(Some("c1"), 1)
            ],
        }
    );
    // Idempotent re-join: no change, the current version.
    let again = a
        .join("s", member(&a, "c1", Some("u1")), 100)
        .await
        .unwrap();
    assert_eq!(again, JoinOutcome::AlreadyMember { version: 1 });
    let view = a.view("s").await.unwrap().unwrap();
    assert_eq!(view.members, vec![m1.clone()]);

    let c2 = join(&a, "s", member(&a, "c2", Some("u2"))).await;
    let m2 = joined_member(&c2);
    assert_eq!(c2.version, 2);
    assert_eq!(c2.events.len(), 1, "a newcomer never displaces the leader");
    assert_eq!(c2.leader.as_deref(), Some("c1"));

    let l2 = leave(&a, "s", "c2").await;
    assert_eq!(
        l2,
        Change {
            version: 3,
            leader: Some("c1".into()),
            epoch: 1,
            events: vec![left("c2", Some("u2"), LeaveReason::Left)],
        }
    );
    assert_eq!(a.leave("s", "c2", LeaveReason::Left).await.unwrap(), None);
    assert_eq!(
        a.leave("nope", "c2", LeaveReason::Left).await.unwrap(),
        None
    );

    // Re-join after leaving is a new membership.
    let c2b = join(&a, "s", member(&a, "c2", Some("u2"))).await;
    assert_eq!(c2b.version, 4);
    assert!(joined_member(&c2b).joined_at >= m2.joined_at);

    let l1 = a
        .leave("s", "c1", LeaveReason::Disconnected)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        l1.events,
        vec![
            left("c1", Some("u1"), LeaveReason::Disconnected),
            leader(Some("c2"), 2)
        ]
    );
    let l2 = leave(&a, "s", "c2").await;
    assert_eq!(
        l2,
        Change {
            version: 6,
            leader: None,
            epoch: 3,
            events: vec![left("c2", Some("u2"), LeaveReason::Left), leader(None, 3)],
        }
    );
    let view = a.view("s").await.unwrap().expect("the session is known");
    assert_eq!(
        (view.version, view.leader, view.epoch, view.members.len()),
        (6, None, 3, 0)
    );
    assert_eq!(a.view("never").await.unwrap(), None);
}

async fn leader_order_and_versions<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    let mut versions = Vec::new();
    for (store, c) in [(&a, "c1"), (&b, "c2"), (&a, "c3")] {
        let change = join(store, "s", member(store, c, None)).await;
        versions.push(change.version);
        assert_eq!(change.leader.as_deref(), Some("c1"));
    }
    let view = a.view("s").await.unwrap().unwrap();
    let order: Vec<&str> = view.members.iter().map(|m| m.connection.as_str()).collect();
    assert_eq!(order, ["c1", "c2", "c3"], "members sorted by joined_at");

    let change = leave(&a, "s", "c1").await;
    versions.push(change.version);
    assert_eq!(
        change.events[1],
        leader(Some("c2"), 2),
        "earliest member leads"
    );
    let change = join(&a, "s", member(&a, "c4", None)).await;
    versions.push(change.version);
    let change = leave(&a, "s", "c3").await;
    versions.push(change.version);
    assert_eq!(
        change.events.len(),
        1,
        "a non-leader leaving changes no leader"
    );
    let change = leave(&b, "s", "c2").await;
    versions.push(change.version);
    assert_eq!(change.events[1], leader(Some("c4"), 3));
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7], "one version per change");
}

async fn profile_update<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _f) = h.connect("a").await;
    let m1 = joined_member(&join(&a, "s", member(&a, "c1", Some("u1"))).await);
    let mut updated = m1.clone();
    updated.name = "Ada".into();
    updated.avatar = Some("https://example.com/a.png".into());
    updated.joined_at = 1; // ignored: the store keeps the original
    let change = a.update_member("s", updated).await.unwrap().unwrap();
    let expected = Member {
        name: "Ada".into(),
        avatar: Some("https://example.com/a.png".into()),
        ..m1.clone()
    };
    assert_eq!(
        change,
        Change {
            version: 2,
            leader: Some("c1".into()),
            epoch: 1,
            events: vec![Event::MemberUpdated {
                member: expected.clone()
            }],
        }
    );
    let mut cleared = expected.clone();
    cleared.avatar = None;
    let change = a
        .update_member("s", cleared.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        change.events,
        vec![Event::MemberUpdated {
            member: cleared.clone()
        }]
    );
    assert_eq!(a.view("s").await.unwrap().unwrap().members, vec![cleared]);
    let stranger = member(&a, "c9", None);
    assert_eq!(a.update_member("s", stranger).await.unwrap(), None);
}

async fn end_session<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    join(&a, "s", member(&a, "c1", Some("u1"))).await;
    join(&a, "s", member(&a, "c2", None)).await;
    join(&b, "s", member(&b, "c3", Some("u3"))).await;
    assert_eq!(a.end("s", "c2", 1).await, Err(StoreError::NotLeader));
    assert_eq!(a.end("s", "c1", 7).await, Err(StoreError::NotLeader));
    assert_eq!(a.end("unknown", "c1", 1).await, Err(StoreError::NotLeader));
    let change = a.end("s", "c1", 1).await.unwrap();
    assert_eq!(
        change,
        Change {
            version: 4,
            leader: None,
            epoch: 2,
            events: vec![
                Event::SessionEnded {
                    by: Some("c1".into()),
                },
                left("c1", Some("u1"), LeaveReason::Ended),
                left("c2", None, LeaveReason::Ended),
                left("c3", Some("u3"), LeaveReason::Ended),
                leader(None, 2),
            ],
        }
    );
    let view = a.view("s").await.unwrap().unwrap();
    assert!(view.ended_at.is_some());
    assert!(view.members.is_empty());
    assert_eq!(
        b.join("s", member(&b, "c4", None), 100).await.map(|_| ()),
        Err(StoreError::SessionEnded)
    );
    assert_eq!(a.end("s", "c1", 2).await, Err(StoreError::SessionEnded));
    assert_eq!(
        a.reassert("s", vec![member(&a, "c1", None)], Floor::default())
            .await,
        Err(StoreError::SessionEnded)
    );
    assert_eq!(
        a.counts(&["s".into()]).await.unwrap(),
        vec![Counts::default()]
    );
}

async fn counts_users_and_connections<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _f) = h.connect("a").await;
    for (c, u) in [
        ("t1", Some("u1")),
        ("t2", Some("u1")),
        ("t3", Some("u1")),
        ("x", Some("u2")),
        ("anon1", None),
        ("anon2", None),
    ] {
        join(&a, "s", member(&a, c, u)).await;
    }
    join(&a, "other", member(&a, "y", Some("u1"))).await;
    let asked: Vec<String> = ["s", "missing", "other"].map(String::from).to_vec();
    assert_eq!(
        a.counts(&asked).await.unwrap(),
        vec![
            Counts {
                connections: 6,
                users: 4,
                reconnecting: 0,
            },
            Counts::default(),
            Counts {
                connections: 1,
                users: 1,
                reconnecting: 0,
            },
        ]
    );
    leave(&a, "s", "t1").await;
    leave(&a, "s", "anon1").await;
    leave(&a, "s", "x").await;
    assert_eq!(
        a.counts(&asked[..1]).await.unwrap(),
        vec![Counts {
            connections: 3,
            users: 2,
            reconnecting: 0,
        }]
    );
    assert_eq!(
        a.view("s").await.unwrap().unwrap().counts(),
        Counts {
            connections: 3,
            users: 2,
            reconnecting: 0,
        }
    );
    assert_eq!(a.counts(&[]).await.unwrap(), vec![]);
}

async fn session_full<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _f) = h.connect("a").await;
    a.join("s", member(&a, "c1", None), 2).await.unwrap();
    a.join("s", member(&a, "c2", None), 2).await.unwrap();
    assert_eq!(
        a.join("s", member(&a, "c3", None), 2).await.map(|_| ()),
        Err(StoreError::SessionFull(2))
    );
    let again = a.join("s", member(&a, "c1", None), 2).await.unwrap();
    assert!(
        matches!(again, JoinOutcome::AlreadyMember { .. }),
        "a re-join is not refused when full"
    );
    assert_eq!(a.view("s").await.unwrap().unwrap().members.len(), 2);
}

async fn remove_instance_members<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    a.register().await.unwrap();
    b.register().await.unwrap();
    let dead = a.instance().incarnation.clone();
    // As the engine does: an instance subscribes to a session before its first join there.
    for session in ["s1", "s2", "s3"] {
        a.subscribe(session).await.unwrap();
    }
    b.subscribe("s1").await.unwrap();
    join(&a, "s1", member(&a, "c1", Some("u1"))).await;
    join(&b, "s1", member(&b, "c2", Some("u2"))).await;
    join(&a, "s1", member(&a, "c3", None)).await;
    join(&a, "s2", member(&a, "c4", None)).await;
    join(&a, "s3", member(&a, "c5", None)).await;
    leave(&a, "s3", "c5").await;
    assert_eq!(
        b.sessions_of(&dead).await.unwrap(),
        ["s1", "s2"],
        "the sessions where the instance still has members"
    );
    let change = b
        .remove_instance_members("s1", &dead, LeaveReason::InstanceLost)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        change,
        Change {
            version: 4,
            leader: Some("c2".into()),
            epoch: 2,
            events: vec![
                left("c1", Some("u1"), LeaveReason::InstanceLost),
                left("c3", None, LeaveReason::InstanceLost),
                leader(Some("c2"), 2),
            ],
        }
    );
    assert_eq!(
        b.remove_instance_members("s1", &dead, LeaveReason::InstanceLost)
            .await
            .unwrap(),
        None
    );
    assert_eq!(b.sessions_of(&dead).await.unwrap(), ["s2"]);
    let view = b.view("s1").await.unwrap().unwrap();
    assert_eq!(view.members.len(), 1);
    assert_eq!(
        view.counts(),
        b.counts(&["s1".into()]).await.unwrap()[0],
        "counts follow removals"
    );
    b.forget_instance(&dead).await.unwrap();
    assert!(
        !b.expired_instances()
            .await
            .unwrap()
            .contains(&dead.to_string())
    );
}

async fn strays_are_counted_and_removed<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    a.register().await.unwrap();
    b.register().await.unwrap();
    a.subscribe("s").await.unwrap();
    b.subscribe("s").await.unwrap();
    join(&b, "s", member(&b, "b1", Some("u2"))).await;
    join(&a, "s", member(&a, "held", Some("u1"))).await;
    join(&a, "s", member(&a, "stray", None)).await;
    join(&a, "s", member(&a, "stray2", Some("u3"))).await;
    assert_eq!(a.held_count("s").await.unwrap(), 3, "a's members only");
    assert_eq!(b.held_count("s").await.unwrap(), 1);
    assert_eq!(a.held_count("other").await.unwrap(), 0, "no such session");
    let change = a
        .remove_strays("s", &["held".into()], LeaveReason::Disconnected)
        .await
        .unwrap()
        .expect("two strays removed");
    assert_eq!(
        change,
        Change {
            version: 5,
            leader: Some("b1".into()),
            epoch: 1,
            events: vec![
                left("stray", None, LeaveReason::Disconnected),
                left("stray2", Some("u3"), LeaveReason::Disconnected),
            ],
        }
    );
    assert_eq!(a.held_count("s").await.unwrap(), 1);
    assert_eq!(
        a.remove_strays("s", &["held".into()], LeaveReason::Disconnected)
            .await
            .unwrap(),
        None,
        "nothing left to remove"
    );
    let view = a.view("s").await.unwrap().unwrap();
    let ids: Vec<&str> = view.members.iter().map(|m| m.connection.as_str()).collect();
    assert_eq!(
        ids,
        ["b1", "held"],
        "the other instance's member and the held one stay"
    );
    assert_eq!(
        view.counts(),
        a.counts(&["s".into()]).await.unwrap()[0],
        "counts follow removals"
    );
    // Without a member to keep, every member of the instance goes, the leader handed over.
    join(&a, "s2", member(&a, "lead", None)).await;
    join(&b, "s2", member(&b, "b2", None)).await;
    let change = a
        .remove_strays("s2", &[], LeaveReason::Disconnected)
        .await
        .unwrap()
        .expect("the leader removed");
    assert_eq!(
        change.events,
        vec![
            left("lead", None, LeaveReason::Disconnected),
            leader(Some("b2"), 2),
        ]
    );
    assert_eq!(a.held_count("s2").await.unwrap(), 0);
}

async fn reassert_after_data_loss<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    a.register().await.unwrap();
    let m1 = joined_member(&join(&a, "s", member(&a, "c1", Some("u1"))).await);
    let m2 = joined_member(&join(&a, "s", member(&a, "c2", None)).await);
    leave(&a, "s", "c1").await; // v3, leader c2 epoch 2
    tokio::time::sleep(Duration::from_millis(5)).await; // a later joined_at than c2's
    let m1 = joined_member(&join(&a, "s", Member { ..m1 }).await); // v4
    assert_eq!(a.renew_lease().await.unwrap(), LeaseStatus::Held);

    h.lose_data();
    assert_eq!(a.view("s").await.unwrap(), None);
    assert_eq!(a.renew_lease().await.unwrap(), LeaseStatus::StoreReset);
    assert_eq!(a.renew_lease().await.unwrap(), LeaseStatus::Held);

    let floor = Floor {
        version: 4,
        epoch: 2,
    };
    let change = a
        .reassert("s", vec![m1.clone(), m2.clone()], floor)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        change,
        Change {
            version: 5,
            leader: Some("c2".into()),
            epoch: 3,
            events: vec![
                Event::MemberJoined { member: m1.clone() },
                Event::MemberJoined { member: m2.clone() },
                leader(Some("c2"), 3),
            ],
        },
        "members come back with their joined_at; the earliest leads; epochs never go back"
    );
    assert_eq!(
        a.reassert("s", vec![m1.clone(), m2.clone()], floor)
            .await
            .unwrap(),
        None
    );
    let view = a.view("s").await.unwrap().unwrap();
    assert_eq!(view.members, vec![m2.clone(), m1.clone()]);
    assert_eq!(
        a.sessions_of(&a.instance().incarnation).await.unwrap(),
        ["s"]
    );
    assert_eq!(
        a.counts(&["s".into()]).await.unwrap()[0],
        Counts {
            connections: 2,
            users: 2,
            reconnecting: 0,
        }
    );
}

async fn lease_expiry_and_claims<H: Harness>() {
    // Long enough for the registrations and renewals of a loaded machine (on a cluster each one
    // also reads the shard tokens), short enough to wait for.
    let lease = Duration::from_millis(1000);
    let h = H::new(lease).await;
    let (a1, _f1) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    let (c, _fc) = h.connect("c").await;
    // Connected before the leases start: a connection (a cluster's above all) can take longer
    // than this 300 ms lease on a loaded machine.
    let (a2, _f2) = h.connect("a").await;
    assert_eq!(a1.register().await.unwrap(), None);
    b.register().await.unwrap();
    c.register().await.unwrap();
    let dead = a1.instance().incarnation.clone();

    // Restart fast path: the same name registered again names its previous incarnation.
    assert_eq!(a2.register().await.unwrap(), Some(dead.to_string()));
    a2.deregister().await.unwrap();
    assert!(b.expired_instances().await.unwrap().is_empty());

    // a1 stops renewing; b and c keep renewing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        b.renew_lease().await.unwrap();
        c.renew_lease().await.unwrap();
        if b.expired_instances().await.unwrap() == vec![dead.clone()] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a1 never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b.claim_reap(&dead).await.unwrap());
    assert!(!c.claim_reap(&dead).await.unwrap(), "one reaper at a time");
    assert!(
        b.claim_reap(&dead).await.unwrap(),
        "the holder may re-claim"
    );
    b.forget_instance(&dead).await.unwrap();
    assert!(b.expired_instances().await.unwrap().is_empty());
    assert!(
        c.claim_reap(&dead).await.unwrap(),
        "forgetting drops the claim"
    );

    // a1 was declared dead: its next renewal says so, then it holds the lease again.
    assert_eq!(a1.renew_lease().await.unwrap(), LeaseStatus::WasLost);
    assert_eq!(a1.renew_lease().await.unwrap(), LeaseStatus::Held);
    b.deregister().await.unwrap();
    assert_eq!(b.renew_lease().await.unwrap(), LeaseStatus::WasLost);
}

async fn feed_carries_changes_and_messages<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, mut fa) = h.connect("a").await;
    let (b, mut fb) = h.connect("b").await;
    a.subscribe("s").await.unwrap();
    b.subscribe("s").await.unwrap();
    let change = join(&a, "s", member(&a, "c1", None)).await;
    match next_event(&mut fb).await {
        FeedEvent::Broadcast(bc) => {
            assert_eq!(bc.session, "s");
            assert_eq!(bc.origin, a.instance().incarnation);
            assert_eq!(bc.body, BroadcastBody::Change(change));
        }
        other => panic!("expected a broadcast, got {other:?}"),
    }
    let data = serde_json::json!({"hello": [1, 2]});
    let position = b.publish("s", "c2", Some("u2"), &data).await.unwrap();
    // a never hears its own join: the first thing it hears is b's message.
    match next_event(&mut fa).await {
        FeedEvent::Broadcast(bc) => assert_eq!(
            bc.body,
            BroadcastBody::Message {
                from: Some("c2".into()),
                user: Some("u2".into()),
                data: data.clone(),
                stream: Some(position.stream.clone()),
                offset: Some(position.offset),
            }
        ),
        other => panic!("expected b's message, got {other:?}"),
    }
    // After unsubscribing, b hears nothing of s; a marker on another session proves the order.
    b.unsubscribe("s").await.unwrap();
    b.subscribe("marker").await.unwrap();
    a.publish("s", "c1", None, &data).await.unwrap();
    a.publish("marker", "c1", None, &data).await.unwrap();
    match next_event(&mut fb).await {
        FeedEvent::Broadcast(bc) => assert_eq!(bc.session, "marker"),
        other => panic!("expected the marker, got {other:?}"),
    }
}

/// Joins in one burst (most within one millisecond) still get strictly increasing `joined_at`, so
/// the election order is the join order and a re-assertion keeps the leader.
async fn joined_at_is_strictly_increasing<H: Harness>() {
    let h = H::new(Duration::from_secs(3)).await;
    let (a, _feed) = h.connect("a").await;
    let mut stamps = Vec::new();
    for i in 0..20 {
        let change = join(&a, "burst", member(&a, &format!("c{i:02}"), None)).await;
        stamps.push(joined_member(&change).joined_at);
    }
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "joined_at must increase strictly in join order: {stamps:?}"
    );
    let view = a.view("burst").await.expect("view").expect("a session");
    assert_eq!(view.leader.as_deref(), Some("c00"));
    assert_eq!(
        view.members.first().map(|m| m.connection.as_str()),
        Some("c00")
    );
}

async fn change_log_gives_the_missed_changes_until_it_no_longer_reaches_back<H: Harness>() {
    let h = H::new(Duration::from_secs(3)).await;
    let (a, _feed) = h.connect("a").await;
    let mut changes = Vec::new();
    for i in 0..10 {
        changes.push(join(&a, "log", member(&a, &format!("c{i}"), None)).await);
    }
    changes.push(leave(&a, "log", "c3").await);
    let current = changes.last().map_or(0, |c| c.version);
    assert_eq!(
        a.changes_since("log", current).await.unwrap(),
        Some(Vec::new()),
        "nothing missed at the current version"
    );
    assert_eq!(
        a.changes_since("log", current - 4).await.unwrap(),
        Some(changes[changes.len() - 4..].to_vec()),
        "the last four changes, oldest first, exactly as they were made"
    );
    assert_eq!(
        a.changes_since("log", 0).await.unwrap(),
        Some(changes.clone()),
        "from the start while the log holds it all"
    );
    for i in 10..(10 + CHANGE_LOG_LENGTH) {
        join(&a, "log", member(&a, &format!("c{i}"), None)).await;
    }
    assert_eq!(
        a.changes_since("log", 0).await.unwrap(),
        None,
        "a log of {CHANGE_LOG_LENGTH} no longer reaches back to the start: read the view"
    );
    let view = a.view("log").await.unwrap().expect("the session");
    let tail = a
        .changes_since("log", view.version - CHANGE_LOG_LENGTH as u64)
        .await
        .unwrap()
        .expect("the whole log");
    assert_eq!(tail.len(), CHANGE_LOG_LENGTH);
    assert_eq!(tail.last().map(|c| c.version), Some(view.version));
    assert_eq!(
        a.changes_since("unknown", 0)
            .await
            .unwrap()
            .unwrap_or_default(),
        Vec::new(),
        "no session, nothing missed"
    );
}

/// Plans made in a row are written in one step, leave the store where they say, and reach other
/// instances (and the change log) as the changes they are; a batch planned from a session that
/// moved on since is declined and writes nothing.
async fn batched_plans<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _feed_a) = h.connect("a").await;
    let (b, mut feed_b) = h.connect("b").await;
    a.subscribe("s").await.expect("subscribe");
    b.subscribe("s").await.expect("subscribe");
    join(&a, "s", member(&a, "first", Some("ann"))).await;
    next_event(&mut feed_b).await;

    // Joins, the leader's leave (handing over), and a member that joins and leaves in the batch.
    let before = a.view("s").await.expect("view").expect("the session");
    let plans = crate::support::members::mixed_batch(&before, &a.instance().incarnation);
    let written = a.write_plans("s", &plans).await.expect("write");
    assert_eq!(written, PlansWritten::All);
    let mut expected = before.clone();
    for plan in &plans {
        expected.apply(&plan.change);
    }
    let after = a.view("s").await.expect("view").expect("the session");
    assert_eq!(after, expected, "the store is where the plans said");
    assert_eq!(expected.leader.as_deref(), Some("anon"), "handed over");
    let counts = a.counts(&["s".into()]).await.expect("counts");
    assert_eq!(counts[0], expected.counts());

    let planned: Vec<Change> = plans.iter().map(|p| p.change.clone()).collect();
    let mut seen = Vec::new();
    while seen.len() < planned.len() {
        if let FeedEvent::Broadcast(bc) = next_event(&mut feed_b).await
            && let BroadcastBody::Change(change) = bc.body
        {
            seen.push(change);
        }
    }
    assert_eq!(
        seen, planned,
        "the other instance gets every change, in order"
    );
    let logged = b
        .changes_since("s", before.version)
        .await
        .expect("changes")
        .expect("the log reaches back");
    assert_eq!(logged, planned, "the change log holds them one by one");

    // What follows the batch follows on from it.
    let next = leave(&a, "s", "anon").await;
    assert_eq!(next.version, expected.version + 1);
    assert_eq!(next.leader.as_deref(), Some("second"));

    // The view the batch was planned from is now one change behind: a batch planned from it writes nothing.
    let mut stale = Planner::new(&expected, 100);
    let plans: Vec<Plan> = [
        stale.join(&member(&a, "x", None), now_ms()),
        stale.leave(&"second".into(), LeaveReason::Left),
    ]
    .into_iter()
    .map(|p| p.expect("a plan"))
    .collect();
    let moved = a.view("s").await.expect("view").expect("the session");
    let written = a.write_plans("s", &plans).await.expect("write");
    assert_eq!(written, PlansWritten::Declined);
    let now = a.view("s").await.expect("view").expect("the session");
    assert_eq!(now, moved, "nothing written");
}

async fn a_resume_moves_the_member_to_the_claiming_instance<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, mut fb) = h.connect("b").await;
    a.register().await.unwrap();
    b.register().await.unwrap();
    a.subscribe("s").await.unwrap();
    b.subscribe("s").await.unwrap();
    let ada = joined_member(&join(&a, "s", member(&a, "ada", Some("u1"))).await);
    join(&a, "s", member(&a, "anon", None)).await;
    join(&b, "s", member(&b, "grace", Some("u2"))).await;
    let before = a.view("s").await.unwrap().expect("the session");
    assert_eq!(
        a.resume("s", "ada", Some("u1")).await.unwrap(),
        ResumeRuling::Resumed {
            change: None,
            version: before.version
        },
        "resumed where it is held: nothing changes"
    );
    assert_eq!(
        b.resume("s", "ada", Some("u2")).await.unwrap(),
        ResumeRuling::OtherUser,
        "another user's member"
    );
    assert_eq!(
        b.resume("s", "nobody", None).await.unwrap(),
        ResumeRuling::Gone
    );
    assert_eq!(
        b.resume("other", "ada", Some("u1")).await.unwrap(),
        ResumeRuling::Gone
    );
    assert_eq!(
        a.view("s").await.unwrap().expect("the session"),
        before,
        "refused claims change nothing"
    );
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), fb.recv()).await {}
    let ResumeRuling::Resumed {
        change: Some(change),
        version,
    } = b.resume("s", "ada", Some("u1")).await.unwrap()
    else {
        panic!("a move to b");
    };
    let moved = Member {
        instance: b.instance().incarnation.clone(),
        ..ada.clone()
    };
    assert_eq!(
        change,
        Change {
            version: before.version + 1,
            leader: before.leader.clone(),
            epoch: before.epoch,
            events: vec![Event::MemberUpdated {
                member: moved.clone()
            }],
        },
        "same record, same leadership, one member_updated"
    );
    assert_eq!(version, change.version);
    let after = a.view("s").await.unwrap().expect("the session");
    assert_eq!(after.member("ada"), Some(&moved));
    assert_eq!(a.held_count("s").await.unwrap(), 1, "only anon is a's now");
    assert_eq!(
        a.leave("s", "ada", LeaveReason::Disconnected)
            .await
            .unwrap(),
        None,
        "the instance that let it go can no longer end it"
    );
    assert_eq!(b.held_count("s").await.unwrap(), 2, "grace and ada");
    assert!(
        matches!(
            a.resume("s", "anon", Some("anyone")).await.unwrap(),
            ResumeRuling::Resumed { change: None, .. }
        ),
        "an anonymous member is claimed by its token alone"
    );
    // The member is b's now: removing b's members takes it along.
    let removed = a
        .remove_instance_members(
            "s",
            b.instance().incarnation.as_str(),
            LeaveReason::InstanceLost,
        )
        .await
        .unwrap()
        .expect("b's members removed");
    let gone: Vec<&Event> = removed
        .events
        .iter()
        .filter(|e| matches!(e, Event::MemberLeft { .. }))
        .collect();
    assert_eq!(gone.len(), 2, "{removed:?}");
}

async fn every_instance_shares_one_resume_secret<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    let secret = a.resume_secret().await.unwrap();
    assert!(secret.len() >= 16, "at least 128 bits");
    assert_eq!(b.resume_secret().await.unwrap(), secret);
    assert_eq!(a.resume_secret().await.unwrap(), secret, "made once");
    h.lose_data();
    assert_ne!(
        b.resume_secret().await.unwrap(),
        secret,
        "a store that lost its data has a new secret"
    );
}

async fn lost_members_reconnect_until_their_grace_runs_out<H: Harness>() {
    let h = H::new(Duration::from_secs(5)).await;
    let (a, _fa) = h.connect("a").await;
    let (b, _fb) = h.connect("b").await;
    a.register().await.unwrap();
    b.register().await.unwrap();
    a.subscribe("s").await.unwrap();
    b.subscribe("s").await.unwrap();
    join(&a, "s", member(&a, "m1", Some("u1"))).await;
    join(&a, "s", member(&a, "m2", Some("u2"))).await;
    join(&b, "s", member(&b, "b1", None)).await;
    let grace = Duration::from_millis(300);
    let change = a
        .suspend(
            "s",
            Whose::Connection("m1"),
            LeaveReason::Disconnected,
            grace,
        )
        .await
        .unwrap()
        .expect("m1 is reconnecting");
    let [Event::MemberUpdated { member: lost }] = change.events.as_slice() else {
        panic!("one member_updated: {change:?}");
    };
    assert_eq!(lost.state, MemberState::Reconnecting);
    assert_eq!(
        lost.grace.map(|g| g.reason),
        Some(LeaveReason::Disconnected)
    );
    assert_eq!(
        change.leader.as_deref(),
        Some("m1"),
        "a reconnecting leader keeps the lead"
    );
    assert_eq!(
        a.counts(&["s".into()]).await.unwrap()[0],
        Counts {
            connections: 2,
            users: 2,
            reconnecting: 1
        }
    );
    assert_eq!(a.held_count("s").await.unwrap(), 1, "a holds m2 only now");
    assert_eq!(
        a.suspend("s", Whose::Connection("m1"), LeaveReason::Timeout, grace)
            .await
            .unwrap(),
        None,
        "already reconnecting"
    );
    assert_eq!(
        b.suspend("s", Whose::Connection("m2"), LeaveReason::Timeout, grace)
            .await
            .unwrap(),
        None,
        "not b's member"
    );
    // Another instance ends the grace once it ran out: m1 leaves, the lead goes to m2.
    let deadline = tokio::time::Instant::now() + WAIT;
    let expired = loop {
        let changes = b.expire_graces().await.unwrap();
        if !changes.is_empty() {
            break changes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "m1's grace never ran out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(expired.len(), 1, "{expired:?}");
    let (session, change) = &expired[0];
    assert_eq!(session, "s");
    assert_eq!(
        change.events,
        vec![
            left("m1", Some("u1"), LeaveReason::Disconnected),
            leader(Some("m2"), 2),
        ]
    );
    assert!(
        a.expire_graces().await.unwrap().is_empty(),
        "each member is removed once"
    );
    // A dead instance's members reconnect too (the reaper); a resume makes one present again.
    let a_incarnation = a.instance().incarnation.to_string();
    let change = b
        .suspend(
            "s",
            Whose::Instance(&a_incarnation),
            LeaveReason::InstanceLost,
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .expect("m2 is reconnecting");
    assert_eq!(change.events.len(), 1, "{change:?}");
    let ResumeRuling::Resumed {
        change: Some(change),
        ..
    } = b.resume("s", "m2", Some("u2")).await.unwrap()
    else {
        panic!("m2 resumed on b");
    };
    let [Event::MemberUpdated { member: back }] = change.events.as_slice() else {
        panic!("one member_updated: {change:?}");
    };
    assert_eq!((back.state, back.grace), (MemberState::Present, None));
    assert_eq!(back.instance, b.instance().incarnation);
    assert_eq!(change.leader.as_deref(), Some("m2"), "still leads");
    assert_eq!(
        b.counts(&["s".into()]).await.unwrap()[0],
        Counts {
            connections: 2,
            users: 2,
            reconnecting: 0
        }
    );
    assert_eq!(b.held_count("s").await.unwrap(), 2);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case::<super::Memory>().await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case::<super::Redis>().await
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case::<super::Cluster>().await
                }
            )*
        }
    };
}

conformance!(
    join_leave_rejoin,
    leader_order_and_versions,
    profile_update,
    end_session,
    counts_users_and_connections,
    session_full,
    remove_instance_members,
    strays_are_counted_and_removed,
    reassert_after_data_loss,
    lease_expiry_and_claims,
    feed_carries_changes_and_messages,
    joined_at_is_strictly_increasing,
    change_log_gives_the_missed_changes_until_it_no_longer_reaches_back,
    batched_plans,
    a_resume_moves_the_member_to_the_claiming_instance,
    every_instance_shares_one_resume_secret,
    lost_members_reconnect_until_their_grace_runs_out,
    offsets_grow_by_one_and_history_gives_the_messages_back,
    history_pages_after_since,
    history_keeps_the_latest_size_messages,
    history_size_zero_keeps_nothing_but_still_numbers,
    messages_expire_and_a_silent_stream_is_forgotten,
    a_store_that_lost_its_data_starts_a_new_stream,
    the_backend_kicks_a_connection_or_every_connection_of_a_user,
    the_backend_ends_a_live_session_with_by_null,
    the_backend_publishes_to_a_live_session_only,
    views_of_many_sessions_at_once,
    every_change_is_kept_until_acknowledged,
    a_late_acknowledgement_removes_only_what_was_read,
    reaped_members_are_kept_for_delivery,
    one_deliverer_at_a_time,
    live_sessions_are_paged_exactly_once,
);
