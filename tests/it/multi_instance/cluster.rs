//! Real `rollcall` processes on a Redis Cluster (3 masters): members, events and messages cross
//! instances in sessions on every master, and survive the migration of a live session's slot.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::EVENT_BOUND;
use crate::support::cluster::{self, RedisCluster, sessions_on_every_master};
use crate::support::process::{FAST_LIVENESS, RollcallProcess};
use crate::support::server::http_get;
use crate::support::ws::{WsClient, member_ids};

/// How long events may take to flow again after a slot moved (re-subscription on the new master).
const MIGRATION_BOUND: Duration = Duration::from_secs(5);

async fn start(nodes: &str, name: &str, prefix: &str) -> RollcallProcess {
    let flags = [&FAST_LIVENESS[..], &["--key-prefix", prefix]].concat();
    RollcallProcess::start_on_cluster(nodes, name, &flags).await
}

fn prefix(stem: &str) -> String {
    format!("{stem}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn is_message(frame: &Value, session: &str, data: &Value) -> bool {
    frame["type"] == "message" && frame["session"] == session && frame["data"] == *data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_events_and_messages_cross_instances_on_every_master() {
    let cluster = tokio::task::spawn_blocking(cluster::shared)
        .await
        .expect("the shared cluster");
    let prefix = prefix("mi");
    let a = start(&cluster.urls_flag(), "ca", &prefix).await;
    let b = start(&cluster.urls_flag(), "cb", &prefix).await;
    let sessions: Vec<String> = sessions_on_every_master(&cluster, "room", 1)
        .into_values()
        .flatten()
        .collect();
    assert_eq!(sessions.len(), 3, "a session on each master");
    let mut x = WsClient::connect(&a.ws_url()).await;
    let mut y = WsClient::connect(&b.ws_url()).await;
    for s in &sessions {
        x.join(s).await;
        y.join(s).await;
        x.expect_within(
            "member_joined of y",
            |f| {
                f["type"] == "member_joined"
                    && f["session"] == s.as_str()
                    && f["member"]["connection"] == json!(y.connection)
            },
            EVENT_BOUND,
        )
        .await;
        let data = json!({"from": "y", "session": s});
        y.request_ok(
            json!({"type": "publish", "session": s, "data": data}),
            "published",
        )
        .await;
        x.expect_within("y's message", |f| is_message(f, s, &data), EVENT_BOUND)
            .await;
        let data = json!({"from": "x", "session": s});
        x.request_ok(
            json!({"type": "publish", "session": s, "data": data}),
            "published",
        )
        .await;
        y.expect_within("x's message", |f| is_message(f, s, &data), EVENT_BOUND)
            .await;
        y.leave(s).await;
        x.expect_within(
            "member_left of y",
            |f| {
                f["type"] == "member_left"
                    && f["session"] == s.as_str()
                    && f["connection"] == json!(y.connection)
            },
            EVENT_BOUND,
        )
        .await;
    }
}

/// A live session's slot moves to another master (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE):
/// its members stay, and events and messages flow again once each instance has re-subscribed
/// its channel on the new master (Redis tells it with an unsolicited `sunsubscribe`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migration_keeps_members_and_events() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("a cluster of its own");
    let prefix = prefix("mig");
    let a = start(&cluster.urls_flag(), "ma", &prefix).await;
    let b = start(&cluster.urls_flag(), "mb", &prefix).await;
    let session = sessions_on_every_master(&cluster, "moving", 1)
        .into_values()
        .flatten()
        .next()
        .expect("a session");
    let slot = rollcall::store::redis::slots::slot(&format!("{{s:{session}}}"));
    let from = cluster.master_of(slot).expect("a master of the slot");
    let to = cluster
        .masters()
        .into_iter()
        .map(|m| m.port)
        .find(|&p| p != from)
        .expect("another master");
    let mut x = WsClient::connect(&a.ws_url()).await;
    let mut y = WsClient::connect(&b.ws_url()).await;
    x.join(&session).await;
    y.join(&session).await;
    let members = vec![x.connection.clone(), y.connection.clone()];

    let started = Instant::now();
    let cluster = std::sync::Arc::new(cluster);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.migrate_slot(slot, to))
        .await
        .expect("migrate the slot");
    let migrated = started.elapsed();
    assert_eq!(cluster.master_of(slot), Some(to));

    // Events flow again: y publishes until x hears one (each try is a fresh message).
    let mut flowing = None;
    for n in 0.. {
        let data = json!({"after_migration": n});
        y.request_ok(
            json!({"type": "publish", "session": session, "data": data}),
            "published",
        )
        .await;
        if x.try_expect(
            &|f| is_message(f, &session, &data),
            Duration::from_millis(200),
        )
        .await
        .is_some()
        {
            flowing = Some(started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < MIGRATION_BOUND + migrated,
            "no message crossed instances within {MIGRATION_BOUND:?} of the migration:\n{}",
            a.log_tail()
        );
    }
    let flowing = flowing.expect("messages flow");
    let mut z = WsClient::connect(&b.ws_url()).await;
    z.join(&session).await;
    x.expect_within(
        "member_joined of z after the migration",
        |f| f["type"] == "member_joined" && f["member"]["connection"] == json!(z.connection),
        EVENT_BOUND,
    )
    .await;
    for process in [&a, &b] {
        let (status, view) = http_get(process.addr, &format!("/api/sessions/{session}")).await;
        assert_eq!(status, 200, "{view}");
        let mut ids = member_ids(&view);
        ids.sort();
        let mut expected = members.clone();
        expected.push(z.connection.clone());
        expected.sort();
        assert_eq!(
            ids, expected,
            "members on {} after the migration",
            process.name
        );
    }
    assert!(
        x.pending_of("member_left").is_empty() && y.pending_of("member_left").is_empty(),
        "nobody left during the migration"
    );
    for process in [&a, &b] {
        assert!(
            process.log_contains("redis dropped a subscription"),
            "{} did not re-subscribe after the migration:\n{}",
            process.name,
            process.log_tail()
        );
    }
    println!(
        "figure: slot {slot} migrated {from} → {to} in {migrated:?}; messages crossed instances again {flowing:?} after it started"
    );
}
