//! Large sessions: a join costs the store the same in a session of 10,000 as in one of 10, gaps
//! are repaired from the store's change log instead of a read of every member, and presence mode
//! `counts` keeps the members of a big room from tracking each other.

use std::sync::Arc;
use std::time::Duration;

use rollcall::actors::session::CurrentView;
use rollcall::actors::supervisor::LookupSession;
use rollcall::config::ServeArgs;
use rollcall::engine::{Engine, EngineSettings};
use rollcall::model::Presence;
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use rollcall::store::{InstanceId, Sessions, Store};

use crate::support::eventually;
use crate::support::members::member;
use crate::support::redis::RedisServer;
use crate::support::server::WAIT;
use crate::support::stand_in::Socket;
use crate::support::ws::SessionModel;

/// Every command Redis ran (scripts' own commands included) but INFO and the change log's trim
/// (one change in 16 at any size, so it would make single joins differ), the bytes it sent before
/// this INFO reply, and the size of that reply.
fn redis_work(redis: &RedisServer) -> (u64, u64, u64) {
    let info: String = redis.query(&["INFO", "all"]).expect("INFO");
    // The counter is read before the reply is written; the reply (a RESP bulk string) is the
    // next thing counted, so it is left out of the figure the next reading gives.
    let reply_bytes = (format!("${}\r\n", info.len()).len() + info.len() + 2) as u64;
    let mut calls = 0;
    let mut output = 0;
    for line in info.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_")
            && !rest.starts_with("info:")
            && !rest.starts_with("ltrim:")
        {
            let n = rest
                .split(['=', ','])
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok());
            calls += n.unwrap_or(0);
        }
        if let Some(n) = line.strip_prefix("total_net_output_bytes:") {
            output = n.trim().parse().expect("total_net_output_bytes");
        }
    }
    (calls, output, reply_bytes)
}

#[tokio::test]
async fn a_join_costs_redis_the_same_commands_and_bytes_at_2000_members_as_at_10() {
    let redis = RedisServer::start();
    let (store, _feed) = RedisStore::connect(
        &redis.url(),
        "big",
        InstanceId::new("big"),
        Duration::from_secs(5),
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect to the private redis");
    let incarnation = store.instance().incarnation.clone();
    let mut next = 0;
    let mut fill_to = async |size: usize| {
        while next < size {
            store
                .join("room", member(&format!("c{next}"), &incarnation), 10_000)
                .await
                .expect("join");
            next += 1;
        }
    };
    let mut measure = async |size: usize| {
        fill_to(size).await;
        let before = redis_work(&redis);
        store
            .join(
                "room",
                member(&format!("probe{size}"), &incarnation),
                10_000,
            )
            .await
            .expect("join");
        let after = redis_work(&redis);
        (after.0 - before.0, after.1 - before.1 - before.2)
    };
    let (calls_small, bytes_small) = measure(10).await;
    let (calls_big, bytes_big) = measure(2_000).await;
    println!(
        "figure: one join at 10 members: {calls_small} commands, {bytes_small} bytes out; \
         at 2,000 members: {calls_big} commands, {bytes_big} bytes out"
    );
    assert_eq!(
        calls_big, calls_small,
        "Redis commands per join grew with the session"
    );
    assert!(
        bytes_big <= bytes_small + 64,
        "Redis reply bytes per join grew with the session: {bytes_small} at 10, {bytes_big} at 2,000"
    );
}

fn settings(name: &str) -> EngineSettings {
    let mut settings = EngineSettings::from_args(&ServeArgs::defaults());
    settings.instance_name = name.to_owned();
    settings
}

async fn engine_recording(redis: &RedisServer, name: &str) -> (Engine, Arc<RedisStore>) {
    let settings = settings(name);
    let (store, feed) = RedisStore::connect(
        &redis.url(),
        "gap",
        InstanceId::new(name),
        settings.lease,
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect");
    let store = Arc::new(store);
    store.record_script_keys(true);
    let engine = Engine::start(store.clone(), feed, &settings)
        .await
        .expect("engine start");
    (engine, store)
}

#[actix_rt::test]
async fn concurrent_joins_on_two_instances_end_in_the_stores_view_without_a_full_read_per_join() {
    const PER_INSTANCE: usize = 20;
    let redis = RedisServer::start();
    let (a, store_a) = engine_recording(&redis, "a").await;
    let (b, store_b) = engine_recording(&redis, "b").await;
    let mut sockets: Vec<(Socket, &Engine)> = (0..PER_INSTANCE)
        .flat_map(|i| {
            [
                (Socket::new(&format!("a{i}")), &a),
                (Socket::new(&format!("b{i}")), &b),
            ]
        })
        .collect();
    futures_util::future::join_all(
        sockets
            .iter()
            .map(|(socket, engine)| socket.join(engine, "busy", Presence::Full)),
    )
    .await;

    let store_view = a.store().view("busy").await.unwrap().expect("the session");
    assert_eq!(store_view.members.len(), 2 * PER_INSTANCE);
    for engine in [&a, &b] {
        let actor = engine
            .supervisor()
            .send(LookupSession("busy".into()))
            .await
            .unwrap()
            .expect("a session actor");
        let caught_up = eventually(WAIT, async || {
            actor.send(CurrentView).await.unwrap() == store_view
        })
        .await;
        assert!(caught_up, "the session actor's view reaches the store's");
    }
    let expected: Vec<String> = store_view
        .members
        .iter()
        .map(|m| m.connection.to_string())
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    for (socket, _) in &mut sockets {
        let name = socket.connection.clone();
        socket
            .expect("the last change", |f| {
                f["version"].as_u64() == Some(store_view.version)
            })
            .await;
        let model = SessionModel::from_log(&socket.frames, "busy");
        assert_eq!(model.version, store_view.version, "{name}'s version");
        assert_eq!(model.ids(), expected_sorted, "{name}'s members");
        assert_eq!(
            model.leader.as_deref(),
            store_view.leader.as_deref(),
            "{name}'s leader"
        );
    }
    let reads = |store: &RedisStore, script: &str| {
        store
            .recorded_script_keys()
            .iter()
            .filter(|(name, _)| *name == script)
            .count()
    };
    let (views_a, views_b) = (reads(&store_a, "view"), reads(&store_b, "view"));
    let (logs_a, logs_b) = (reads(&store_a, "changes"), reads(&store_b, "changes"));
    println!(
        "figure: {} concurrent joins over two instances: full reads {views_a} + {views_b}, \
         change-log reads {logs_a} + {logs_b}",
        2 * PER_INSTANCE
    );
    assert!(
        views_a + views_b <= 2,
        "at most one full read per instance (its first member), not one per join: {views_a} + {views_b}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[actix_rt::test]
async fn a_counts_member_sees_itself_and_the_leader_gets_paced_counts_and_no_member_events() {
    const INTERVAL: Duration = Duration::from_millis(200);
    let mut args = ServeArgs::defaults();
    args.counts_interval_ms = INTERVAL.as_millis() as u64;
    let engine = Engine::start_in_memory(&EngineSettings::from_args(&args))
        .await
        .expect("the engine starts");
    let mut leader = Socket::new("leader");
    leader.join(&engine, "party", Presence::Full).await;
    let mut watcher = Socket::new("watcher");
    watcher.join(&engine, "party", Presence::Counts).await;
    let joined = watcher.expect("joined", |f| f["type"] == "joined").await;
    let listed: Vec<&str> = joined["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["connection"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        listed,
        ["leader", "watcher"],
        "its own record and the leader's"
    );
    assert_eq!(joined["counts"]["connections"], 2);
    leader
        .expect("the watcher's join", |f| {
            f["type"] == "member_joined" && f["member"]["connection"] == "watcher"
        })
        .await;

    let crowd: Vec<Socket> = (0..8).map(|i| Socket::new(&format!("guest{i}"))).collect();
    for guest in &crowd {
        guest.join(&engine, "party", Presence::Full).await;
    }
    let last = watcher
        .expect("counts of the whole crowd", |f| {
            f["type"] == "counts" && f["counts"]["connections"] == 10
        })
        .await;
    assert_eq!(last["session"], "party");
    for kind in ["member_joined", "member_left", "member_updated"] {
        assert!(
            watcher.of_type(kind).is_empty(),
            "a counts member gets no {kind}: {:#?}",
            watcher.frames
        );
    }
    let counts_events = watcher.of_type("counts").len();
    assert!(
        counts_events < crowd.len(),
        "8 joins were coalesced into fewer counts events, got {counts_events}"
    );

    // The full leader sees the crowd; leadership reaches the counts member like anyone else.
    leader
        .expect("guest7's join", |f| {
            f["type"] == "member_joined" && f["member"]["connection"] == "guest7"
        })
        .await;
    let actor = engine
        .supervisor()
        .send(LookupSession("party".into()))
        .await
        .unwrap()
        .expect("a session actor");
    actor
        .send(rollcall::actors::session::Leave {
            connection: "leader".into(),
            reason: rollcall::model::LeaveReason::Left,
            socket: None,
        })
        .await
        .unwrap()
        .expect("leave");
    let handed = watcher
        .expect("leader_changed", |f| f["type"] == "leader_changed")
        .await;
    assert_eq!(
        handed["leader"], "watcher",
        "the earliest member, in counts mode, leads"
    );
    watcher
        .expect("counts after the leave", |f| {
            f["type"] == "counts" && f["counts"]["connections"] == 9
        })
        .await;
    assert!(watcher.of_type("member_left").is_empty());
    drop(crowd);
    engine.shutdown().await;
}
