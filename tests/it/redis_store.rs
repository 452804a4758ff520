//! Redis-only properties of the Redis store: the Cluster slot rule, the backstop TTL, script
//! reloading after a flush, and the feed resuming after Redis restarts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rollcall::model::{LeaveReason, Member};
use rollcall::store::redis::slots::{crc16, slot};
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore, RedisTarget};
use rollcall::store::{
    Broker, Directory, FeedEvent, Floor, History, InstanceId, LeaseStatus, Operator, Outbox,
    Registry, Sessions, Store, Upkeep,
};

use crate::support::redis::RedisServer;

fn member(store: &RedisStore, connection: &str) -> Member {
    crate::support::members::member(connection, &store.instance().incarnation)
}

#[test]
fn key_slots_match_redis_reference_values() {
    // From the Redis Cluster specification: "123456789" -> 0x31C3, and its hash-tag examples.
    assert_eq!(crc16(b"123456789"), 0x31c3);
    assert_eq!(slot("123456789"), 0x31c3);
    assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
    assert_eq!(slot("foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
}

/// Every script call and every plain command names keys of one slot (there are no pipelines: a
/// command of another slot is sent on its own).
#[tokio::test]
async fn every_call_stays_in_one_cluster_slot() {
    let server = RedisServer::start();
    let (a, _fa) = server.store("a", DEFAULT_SESSION_TTL).await;
    let (b, _fb) = server.store("b", DEFAULT_SESSION_TTL).await;
    exercise_every_call(a, b, false).await;
}

/// The same calls on a real cluster, which refuses any command or script of two slots
/// (`CROSSSLOT`); the per-shard token script is exercised too.
#[tokio::test]
async fn every_call_runs_on_a_cluster() {
    let cluster = tokio::task::spawn_blocking(crate::support::cluster::shared)
        .await
        .expect("the shared cluster");
    let prefix = format!("slots-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (a, _fa) = cluster.store(&prefix, "a", Duration::from_secs(5)).await;
    let (b, _fb) = cluster.store(&prefix, "b", Duration::from_secs(5)).await;
    assert!(a.is_cluster());
    exercise_every_call(a, b, true).await;
}

async fn exercise_every_call(a: RedisStore, b: RedisStore, cluster: bool) {
    a.record_script_keys(true);
    b.record_script_keys(true);

    a.register().await.unwrap();
    b.register().await.unwrap();
    a.renew_lease().await.unwrap();
    a.join("s1", member(&a, "c1"), 10).await.unwrap();
    a.join("s1", member(&a, "c2"), 10).await.unwrap();
    // Subscribing lists the session among b's, as the engine does before b's first join there.
    b.subscribe("s2").await.unwrap();
    b.join("s2", member(&b, "c3"), 10).await.unwrap();
    let mut m = member(&a, "c1");
    m.name = "renamed".into();
    a.update_member("s1", m).await.unwrap();
    a.view("s1").await.unwrap();
    a.changes_since("s1", 0).await.unwrap();
    a.counts(&["s1".into(), "s2".into()]).await.unwrap();
    a.subscribe("s1").await.unwrap();
    a.publish("s1", "c1", None, &serde_json::json!({"x": 1}))
        .await
        .unwrap();
    a.history("s1", None, 10).await.unwrap();
    a.touch("s1").await.unwrap();
    // Planned: written by the same scripts, on the same keys.
    let current = a.view("s1").await.unwrap().unwrap();
    let joining = member(&a, "c4");
    let plan = rollcall::store::plan::join(&current, &joining, 1, 10).unwrap();
    a.join_planned("s1", joining, 10, plan).await.unwrap();
    let current = a.view("s1").await.unwrap().unwrap();
    let plan = rollcall::store::plan::leave(&current, &"c4".into(), LeaveReason::Left).unwrap();
    a.leave_planned("s1", "c4", LeaveReason::Left, plan)
        .await
        .unwrap();
    a.leave("s1", "c2", LeaveReason::Left).await.unwrap();
    a.unsubscribe("s1").await.unwrap();
    let view = a.view("s1").await.unwrap().unwrap();
    a.end("s1", "c1", view.epoch).await.unwrap();
    a.reassert("s3", vec![member(&a, "c9")], Floor::default())
        .await
        .unwrap();
    let dead = b.instance().incarnation.clone();
    a.expired_instances().await.unwrap();
    a.claim_reap(&dead).await.unwrap();
    a.sessions_of(&dead).await.unwrap();
    a.remove_instance_members("s2", &dead, LeaveReason::InstanceLost)
        .await
        .unwrap();
    a.forget_instance(&dead).await.unwrap();
    // The outbox and the directory (webhooks, the server API's list).
    a.keep_outbox(true);
    a.join("s4", member(&a, "c5"), 10).await.unwrap();
    // The first pass reads every listed session; on a cluster the second only the hinted ones.
    a.pending(10, 10, 100).await.unwrap();
    let pending = a.pending(10, 10, 100).await.unwrap();
    assert!(
        pending.iter().any(|p| p.session == "s4"),
        "s4's join is kept"
    );
    let kept = pending
        .iter()
        .find(|p| p.session == "s4")
        .expect("s4 pending");
    a.acknowledge("s4", kept.entries[0].id(), 1).await.unwrap();
    a.hold_delivery(Duration::from_secs(1)).await.unwrap();
    a.live_sessions(None, 10).await.unwrap();
    a.tidy_directory().await.unwrap();
    a.deregister().await.unwrap();

    let mut calls = a.recorded_script_keys();
    calls.extend(b.recorded_script_keys());
    let scripts: BTreeSet<&str> = calls.iter().map(|(name, _)| *name).collect();
    let mut all = vec![
        "acknowledge",
        "changes",
        "claim",
        "deliverer",
        "directory",
        "mark",
        "marks",
        "outbox",
        "counts",
        "deregister",
        "end",
        "expired",
        "forget",
        "history",
        "join",
        "leave",
        "publish",
        "reassert",
        "register",
        "remove_instance",
        "renew",
        "touch",
        "update",
        "view",
        // plain commands
        "del",
        "pexpire",
        "sadd",
        "smembers",
        "srem",
        "zrangebylex",
    ];
    if cluster {
        // The per-shard tokens, and the outbox hints the deliverer reads on a cluster.
        all.extend(["shard_token", "hint", "hints"]);
    }
    assert_eq!(
        scripts,
        BTreeSet::from_iter(all),
        "every script and command was exercised"
    );
    for (name, keys) in &calls {
        assert!(!keys.is_empty(), "{name} is called with its keys");
        let slots: BTreeSet<u16> = keys.iter().map(|k| slot(k)).collect();
        assert_eq!(
            slots.len(),
            1,
            "{name} touches keys of several slots: {keys:?}"
        );
    }
    // The scripts use only KEYS[...] as key names (they never build one).
    for source in [
        include_str!("../../src/store/redis/lua/session_base.lua"),
        include_str!("../../src/store/redis/lua/session_prelude.lua"),
        include_str!("../../src/store/redis/lua/join_planned.lua"),
        include_str!("../../src/store/redis/lua/leave_planned.lua"),
        include_str!("../../src/store/redis/lua/register.lua"),
        include_str!("../../src/store/redis/lua/renew.lua"),
        include_str!("../../src/store/redis/lua/claim.lua"),
        include_str!("../../src/store/redis/lua/forget.lua"),
        include_str!("../../src/store/redis/lua/deregister.lua"),
        include_str!("../../src/store/redis/lua/expired.lua"),
        include_str!("../../src/store/redis/lua/publish.lua"),
        include_str!("../../src/store/redis/lua/history.lua"),
    ] {
        assert!(!source.contains(".. ':'"), "a script builds a key name");
    }
}

#[tokio::test]
async fn touch_keeps_a_live_member_past_the_backstop_ttl() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(300);
    let (a, _f) = server.store("a", ttl).await;
    a.join("kept", member(&a, "c1"), 10).await.unwrap();
    a.join("dropped", member(&a, "c2"), 10).await.unwrap();
    // Four TTLs long, touching `kept` every third of a TTL.
    let until = tokio::time::Instant::now() + ttl * 4;
    while tokio::time::Instant::now() < until {
        a.touch("kept").await.unwrap();
        tokio::time::sleep(ttl / 3).await;
    }
    let kept = a.view("kept").await.unwrap().expect("touched session kept");
    assert_eq!(kept.members.len(), 1, "a live member is never dropped");
    assert_eq!(
        a.view("dropped").await.unwrap(),
        None,
        "an untouched session expires after its TTL (the backstop works)"
    );
}

/// The deliverer's read stops adding sessions once their entries hold the events it asked for,
/// oldest mark first, and reads on while they do not.
#[tokio::test]
async fn pending_reads_sessions_until_their_entries_hold_the_events_asked_for() {
    let server = RedisServer::start();
    let (a, _f) = server.store("a", DEFAULT_SESSION_TTL).await;
    a.keep_outbox(true);
    for i in 0..6 {
        a.join(&format!("s{i}"), member(&a, &format!("c{i}")), 10)
            .await
            .unwrap();
    }
    let all = a.pending(100, 8, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 6, "every session with entries: {all:?}");
    let one = a.pending(100, 8, 1).await.unwrap();
    assert!(
        !one.is_empty() && one.len() < 6,
        "one event asked for: not every session is read ({} were)",
        one.len()
    );
    assert_eq!(
        one[0].session, all[0].session,
        "the oldest mark comes first either way"
    );
    let three = a.pending(100, 8, 3).await.unwrap();
    let events: usize = three
        .iter()
        .flat_map(|p| &p.entries)
        .map(|e| e.events())
        .sum();
    assert!(events >= 3, "read on until 3 events: {events}");
}

/// Calls of `command` a Redis server has run (`INFO commandstats`).
fn command_calls(port: u16, command: &str) -> u64 {
    let info = crate::support::cluster::cli(port, &["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// A deliverer's pass over many sessions whose outboxes are all empty reads none of them: one
/// `EXISTS` per 500 listed sessions says so. With one entry waiting, it is found and read.
#[tokio::test]
async fn an_idle_pass_over_many_sessions_reads_no_outbox() {
    let server = RedisServer::start();
    let (a, _f) = server.store("a", DEFAULT_SESSION_TTL).await;
    for i in 0..700 {
        a.join(&format!("idle{i}"), member(&a, &format!("c{i}")), 10)
            .await
            .unwrap();
    }
    let (lrange, exists) = (
        command_calls(server.port(), "lrange"),
        command_calls(server.port(), "exists"),
    );
    assert!(a.pending(100, 8, 100).await.unwrap().is_empty());
    assert_eq!(
        command_calls(server.port(), "lrange") - lrange,
        0,
        "no outbox read"
    );
    assert_eq!(
        command_calls(server.port(), "exists") - exists,
        2,
        "one EXISTS per chunk of 500 sessions"
    );
    a.keep_outbox(true);
    a.join("idle650", member(&a, "late"), 10).await.unwrap();
    let pending = a.pending(100, 8, 100).await.unwrap();
    let sessions: Vec<&str> = pending.iter().map(|p| p.session.as_str()).collect();
    assert_eq!(sessions, ["idle650"], "the one outbox with an entry");
}

/// Only a session's first join sets the TTL on every key; later joins set it only on a key they
/// may create (the users hash, here created by the second join, as the first member is anonymous).
/// Leave, update and instance removal do not refresh the TTL themselves; the keys they leave
/// behind must still carry the one set at join, so nothing ever outlives the backstop.
#[tokio::test]
async fn every_session_key_keeps_a_ttl_after_every_kind_of_change() {
    let server = RedisServer::start();
    let (a, _f) = server.store("a", DEFAULT_SESSION_TTL).await;
    let (b, _g) = server.store("b", DEFAULT_SESSION_TTL).await;
    let mut anonymous = member(&a, "c1");
    anonymous.user = None;
    a.join("s", anonymous, 10).await.unwrap();
    let mut named = member(&a, "c2");
    named.user = Some("u2".into());
    a.join("s", named.clone(), 10).await.unwrap();
    b.join("s", member(&b, "c3"), 10).await.unwrap();
    a.leave("s", "c1", LeaveReason::Left).await.unwrap();
    named.name = "renamed".into();
    a.update_member("s", named).await.unwrap();
    a.remove_instance_members("s", &b.instance().incarnation, LeaveReason::InstanceLost)
        .await
        .unwrap();
    let keys: Vec<String> = server.query(&["KEYS", "rc:{s:s}:*"]).expect("KEYS");
    assert!(keys.len() >= 4, "the session keys exist: {keys:?}");
    for key in &keys {
        let ms: i64 = server.query(&["PTTL", key]).expect("PTTL");
        assert!(ms > 0, "{key} has no TTL after the changes (PTTL {ms})");
    }
}

/// The publisher drops its own echo by its first bytes (see the feed), so every published change
/// must begin with its origin; the log, trimmed only once it is 16 past its length, holds what
/// was published, and `changes` still reaches back exactly `CHANGE_LOG_LENGTH` changes.
#[tokio::test]
async fn published_changes_begin_with_their_origin_and_the_log_is_trimmed_lazily() {
    use rollcall::store::CHANGE_LOG_LENGTH;
    let server = RedisServer::start();
    let (a, _f) = server.store("a", DEFAULT_SESSION_TTL).await;
    let prefix = format!(r#"{{"origin":"{}","#, a.instance().incarnation);
    let mut versions = 0u64;
    for i in 0..(CHANGE_LOG_LENGTH + 16) {
        a.join("s", member(&a, &format!("c{i}")), 1000)
            .await
            .unwrap();
        versions += 1;
        let newest: String = server
            .query(&["LINDEX", "rc:{s:s}:log", "0"])
            .expect("LINDEX");
        assert!(
            newest.starts_with(&prefix),
            "change {i} begins {newest:.60}"
        );
    }
    let logged: usize = server.query(&["LLEN", "rc:{s:s}:log"]).expect("LLEN");
    assert_eq!(
        logged,
        CHANGE_LOG_LENGTH + 16,
        "not trimmed before it is 16 past its length"
    );
    let latest = a
        .changes_since("s", versions - CHANGE_LOG_LENGTH as u64)
        .await
        .unwrap();
    assert_eq!(latest.map(|c| c.len()), Some(CHANGE_LOG_LENGTH));
    assert_eq!(
        a.changes_since("s", versions - CHANGE_LOG_LENGTH as u64 - 1)
            .await
            .unwrap(),
        None,
        "never further back than the promised length, whatever the log holds"
    );
    a.join("s", member(&a, "one-more"), 1000).await.unwrap();
    let logged: usize = server.query(&["LLEN", "rc:{s:s}:log"]).expect("LLEN");
    assert_eq!(logged, CHANGE_LOG_LENGTH, "trimmed back to its length");
}

#[tokio::test]
async fn scripts_are_reloaded_after_a_script_flush() {
    let server = RedisServer::start();
    let (a, _f) = server.store("a", DEFAULT_SESSION_TTL).await;
    a.register().await.unwrap();
    a.join("s", member(&a, "c1"), 10).await.unwrap();
    let flush = |server: &RedisServer| {
        server
            .query::<()>(&["SCRIPT", "FLUSH"])
            .expect("SCRIPT FLUSH");
    };
    flush(&server);
    // Pipelined (join + SADD) and plain (leave) script calls both recover.
    a.join("s", member(&a, "c2"), 10).await.unwrap();
    flush(&server);
    a.leave("s", "c2", LeaveReason::Left).await.unwrap();
    flush(&server);
    a.renew_lease().await.unwrap();
    assert_eq!(a.view("s").await.unwrap().unwrap().members.len(), 1);
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_then_the_feed_resumes() {
    let mut server = RedisServer::start();
    let (a, mut fa) = server.store("a", DEFAULT_SESSION_TTL).await;
    let (b, _fb) = server.store("b", DEFAULT_SESSION_TTL).await;
    let a: Arc<dyn Store> = Arc::new(a);
    a.subscribe("s").await.unwrap();
    server.kill();
    let started = std::time::Instant::now();
    let err = a.view("s").await.expect_err("redis is down");
    assert!(
        matches!(err, rollcall::store::StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4), "bounded wait");
    server.restart();
    // The feed says it resumed (subscriptions restored), then carries b's changes again.
    let resumed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match fa.recv().await {
                Some(FeedEvent::Resumed) => return,
                Some(_) => continue,
                None => panic!("feed closed"),
            }
        }
    })
    .await;
    assert!(
        resumed.is_ok(),
        "no Resumed within 10 s of Redis coming back"
    );
    b.join("s", member(&b, "c1"), 10).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(3), fa.recv())
        .await
        .expect("no broadcast after resuming")
        .expect("feed closed");
    assert!(
        matches!(event, FeedEvent::Broadcast(ref bc) if bc.session == "s"),
        "{event:?}"
    );
}

/// A cluster node given as one server, and a server given as cluster nodes, are start-up errors
/// that say so.
#[tokio::test]
async fn the_wrong_kind_of_redis_is_refused_at_start_up() {
    let cluster = tokio::task::spawn_blocking(crate::support::cluster::shared)
        .await
        .expect("the shared cluster");
    let node = cluster.urls()[0].clone();
    let err = RedisStore::connect(
        &node,
        "rc",
        InstanceId::new("a"),
        Duration::from_secs(5),
        DEFAULT_SESSION_TTL,
    )
    .await
    .err()
    .expect("a cluster node is not a standalone server");
    assert!(err.to_string().contains("is a Redis Cluster node"), "{err}");
    let server = RedisServer::start();
    let err = RedisStore::connect_to(
        &RedisTarget::Cluster(vec![server.url()]),
        "rc",
        InstanceId::new("a"),
        Duration::from_secs(5),
        DEFAULT_SESSION_TTL,
    )
    .await
    .err()
    .expect("a standalone server is not a cluster");
    assert!(
        err.to_string().contains("not a reachable Redis Cluster"),
        "{err}"
    );
}

/// On a cluster, a shard that loses its data (its master flushed) is found by the next lease
/// renewal, which asks the feed to re-assert the sessions on it, and only those.
#[tokio::test]
async fn a_flushed_shard_is_found_by_the_next_renewal() {
    let cluster = tokio::task::spawn_blocking(crate::support::cluster::RedisCluster::start)
        .await
        .expect("a cluster of its own");
    let by_master = crate::support::cluster::sessions_on_every_master(&cluster, "f", 1);
    let (a, mut feed) = cluster.store("rc", "a", Duration::from_secs(5)).await;
    a.register().await.unwrap();
    for session in by_master.values().flatten() {
        a.subscribe(session).await.unwrap();
        a.join(session, member(&a, &format!("c-{session}")), 10)
            .await
            .unwrap();
    }
    assert_eq!(a.renew_lease().await.unwrap(), LeaseStatus::Held);
    let lease_master = cluster
        .master_of(rollcall::store::redis::slots::slot("{g}"))
        .expect("a master of {g}");
    let (&flushed, sessions) = by_master
        .iter()
        .find(|(port, _)| **port != lease_master)
        .expect("a master without the leases");
    cluster.flush_master(flushed);
    assert_eq!(
        a.renew_lease().await.unwrap(),
        LeaseStatus::Held,
        "the leases live on another master"
    );
    let event = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match feed.recv().await {
                Some(FeedEvent::Reconcile { sessions, reassert }) => return (sessions, reassert),
                Some(_) => continue,
                None => panic!("feed closed"),
            }
        }
    })
    .await
    .expect("no Reconcile within 3 s of the renewal");
    assert_eq!(event, (sessions.clone(), true));
}

/// Total read events a Redis node has processed (`INFO stats`): a pipeline arrives in one or two,
/// calls sent one by one in about one each.
fn reads_processed(port: u16) -> u64 {
    let info = crate::support::cluster::cli(port, &["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("total_reads_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has total_reads_processed")
}

/// The views of 99 sessions spread over a cluster's three masters are one pipeline per master;
/// a session whose slot moved since the store last read the topology is still read (on its own).
#[tokio::test]
async fn many_views_on_a_cluster_are_one_request_per_master_and_follow_a_moved_slot() {
    let cluster = tokio::task::spawn_blocking(crate::support::cluster::RedisCluster::start)
        .await
        .expect("a private cluster");
    let (a, _fa) = cluster.store("views", "a", Duration::from_secs(5)).await;
    // Registering reads the topology, as every instance does at start-up.
    a.register().await.unwrap();
    let by_master = crate::support::cluster::sessions_on_every_master(&cluster, "v", 33);
    let sessions: Vec<String> = by_master.values().flatten().cloned().collect();
    for (i, session) in sessions.iter().enumerate() {
        a.join(session, member(&a, &format!("c{i}")), 10)
            .await
            .unwrap();
    }
    // The first read loads the view script on every master (an extra request and a resend).
    a.views(&sessions).await.unwrap();
    let before: Vec<u64> = by_master
        .keys()
        .map(|&port| reads_processed(port))
        .collect();
    let views = a.views(&sessions).await.unwrap();
    let after: Vec<u64> = by_master
        .keys()
        .map(|&port| reads_processed(port))
        .collect();
    for (session, view) in sessions.iter().zip(&views) {
        let members = view.as_ref().map(|v| v.members.len());
        assert_eq!(members, Some(1), "{session}");
    }
    for ((port, b), a) in by_master.keys().zip(before).zip(after) {
        println!("master {port}: 33 views in {} read events", a - b - 1);
        // One read for the INFO that took the second figure, one or two for the 33 calls' bytes,
        // and room for a replica's once-a-second REPLCONF ACK; one by one, they take 33.
        assert!(
            a - b <= 5,
            "master {port} read 33 views in {} read events: not one request",
            a - b - 1
        );
    }

    let moved = &by_master.values().next().expect("a master")[0];
    let slot = rollcall::store::redis::slots::slot(&format!("{{s:{moved}}}"));
    let to = *by_master.keys().last().expect("another master");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.migrate_slot(slot, to);
        cluster
    })
    .await
    .expect("the slot migrated");
    let views = a.views(&sessions).await.unwrap();
    for (session, view) in sessions.iter().zip(&views) {
        let members = view.as_ref().map(|v| v.members.len());
        assert_eq!(members, Some(1), "{session} after {moved}'s slot moved");
    }
    drop(cluster);
}

/// On a cluster, after a first pass over every listed session, the deliverer's passes read only
/// the sessions hinted lately (and those left with entries): one outbox read, not 300.
#[tokio::test]
async fn on_a_cluster_a_pass_reads_the_hinted_outboxes_only() {
    let cluster = tokio::task::spawn_blocking(crate::support::cluster::shared)
        .await
        .expect("the shared cluster");
    let prefix = format!("hints-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (a, _fa) = cluster.store(&prefix, "a", Duration::from_secs(5)).await;
    let (b, _fb) = cluster.store(&prefix, "b", Duration::from_secs(5)).await;
    for i in 0..300 {
        a.join(&format!("quiet{i}"), member(&a, &format!("c{i}")), 10)
            .await
            .unwrap();
    }
    a.keep_outbox(true);
    b.keep_outbox(true);
    assert!(a.pending(100, 8, 100).await.unwrap().is_empty());
    b.join("busy", member(&b, "x1"), 10).await.unwrap();
    a.record_script_keys(true);
    let pending = a.pending(100, 8, 100).await.unwrap();
    let sessions: Vec<&str> = pending.iter().map(|p| p.session.as_str()).collect();
    assert_eq!(sessions, ["busy"], "the session b wrote, hinted by b");
    let reads = a
        .recorded_script_keys()
        .iter()
        .filter(|(name, _)| *name == "outbox")
        .count();
    assert_eq!(reads, 1, "one outbox read, not one per listed session");
}
