//! Batched joins and leaves (`rollcall::store::plan::Planner`; what every store must do with a
//! batch is a case of `store_conformance`): the Redis store runs a batch as one script and one
//! message and keeps the keys of its net effect, and a session actor whose joins queue up while
//! the store is busy writes them in batches, each requester still getting its own reply and every
//! member the changes in version order; a graceful stop answers what is still queued and leaves no
//! member behind.

use rollcall::actors::session::CurrentView;
use rollcall::actors::supervisor::LookupSession;
use rollcall::config::ServeArgs;
use rollcall::engine::{Engine, EngineSettings};
use rollcall::model::{LeaveReason, Presence};
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use rollcall::store::{Broker, InstanceId, PlansWritten, Sessions, Store};

use crate::support::eventually;
use crate::support::members::mixed_batch;
use crate::support::redis::{RedisServer, member, view};
use crate::support::server::WAIT;
use crate::support::stand_in::Socket;
use crate::support::ws::SessionModel;

#[tokio::test]
async fn a_batch_is_one_script_run_and_one_message_and_keeps_the_keys_of_its_net_effect() {
    let server = RedisServer::start();
    let (a, _feed_a) = server.store("a", DEFAULT_SESSION_TTL).await;
    a.subscribe("s").await.expect("subscribe");
    a.join("s", member(&a, "first", Some("ann")), 10)
        .await
        .expect("join");
    let before = view(&a, "s").await;
    let plans = mixed_batch(&before, &a.instance().incarnation);
    server.reset_stats();
    let written = a.write_plans("s", &plans).await.expect("write");
    assert_eq!(written, PlansWritten::All);
    // (The first EVALSHA of a script Redis does not know yet is sent twice: count what it runs.)
    assert_eq!(server.calls("hmget"), 1, "one script run: one header check");
    assert_eq!(server.calls("spublish"), 1, "one message");
    assert_eq!(server.calls("lpush"), 1, "one log write");
    let users: Vec<String> = server
        .query(&["HGETALL", "rc:{s:s}:users"])
        .expect("HGETALL");
    assert_eq!(
        users,
        ["ann", "1"],
        "ann's second connection; bo came and went"
    );
    let anonymous: Option<String> = server
        .query(&["HGET", "rc:{s:s}:meta", "anonymous"])
        .expect("HGET");
    assert_eq!(anonymous.as_deref(), Some("1"));
    let byinst: Vec<String> = server
        .query(&["ZRANGE", "rc:{s:s}:byinst", "0", "-1"])
        .expect("ZRANGE");
    let me = a.instance().incarnation.to_string();
    assert_eq!(
        byinst,
        [format!("{me}\0anon"), format!("{me}\0second")],
        "the instance index holds the members there at the end"
    );
    let order: Vec<String> = server
        .query(&["ZRANGE", "rc:{s:s}:order", "0", "-1"])
        .expect("ZRANGE");
    assert_eq!(order, ["anon", "second"]);
}

/// An engine of instance `name` on the private Redis `server`.
async fn engine_on(server: &RedisServer, name: &str) -> Engine {
    let mut settings = EngineSettings::from_args(&ServeArgs::defaults());
    settings.instance_name = name.to_owned();
    let (store, feed) = RedisStore::connect(
        &server.url(),
        "rc",
        InstanceId::new(name),
        settings.lease,
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect");
    Engine::start(std::sync::Arc::new(store), feed, &settings)
        .await
        .expect("engine start")
}

#[actix_rt::test]
async fn joins_queued_behind_a_slow_store_are_written_in_batches_and_answered_in_order() {
    const JOINERS: usize = 40;
    let server = RedisServer::start();
    let engine = engine_on(&server, "batching").await;
    let first = Socket::new("first");
    first.join(&engine, "party", Presence::Full).await;

    // Writes wait while Redis is paused, so the joins that arrive meanwhile queue in the actor.
    server.reset_stats();
    let _: String = server
        .query(&["CLIENT", "PAUSE", "300", "WRITE"])
        .expect("CLIENT PAUSE");
    let crowd: Vec<Socket> = (0..JOINERS)
        .map(|i| Socket::new(&format!("g{i:02}")))
        .collect();
    futures_util::future::join_all(
        crowd
            .iter()
            .map(|s| s.join(&engine, "party", Presence::Full)),
    )
    .await;

    let store_view = engine
        .store()
        .view("party")
        .await
        .expect("view")
        .expect("the session");
    assert_eq!(store_view.members.len(), JOINERS + 1);
    let joins_written = server.calls("evalsha");
    println!("figure: {JOINERS} concurrent joins written with {joins_written} script calls");
    assert!(
        joins_written < JOINERS as u64 / 2,
        "{JOINERS} queued joins took {joins_written} script calls: they were not batched"
    );

    // Each requester got its own `joined`; every member's view, from its frames, is the store's.
    let actor = engine
        .supervisor()
        .send(LookupSession("party".into()))
        .await
        .expect("the supervisor answers")
        .expect("a session actor");
    let caught_up = eventually(WAIT, async || {
        actor.send(CurrentView).await.ok() == Some(store_view.clone())
    })
    .await;
    assert!(caught_up, "the session actor's view is the store's");
    let mut expected: Vec<String> = store_view
        .members
        .iter()
        .map(|m| m.connection.to_string())
        .collect();
    expected.sort();
    for mut socket in crowd.into_iter().chain([first]) {
        let name = socket.connection.clone();
        socket
            .expect("the last change", |f| {
                f["version"].as_u64() == Some(store_view.version)
            })
            .await;
        let joined = socket.of_type("joined");
        assert_eq!(joined.len(), 1, "{name} got one joined: {joined:?}");
        assert_eq!(joined[0]["you"], name.as_str());
        let model = SessionModel::from_log(&socket.frames, "party");
        assert_eq!(model.version, store_view.version, "{name}'s version");
        assert_eq!(model.ids(), expected, "{name}'s members");
        assert_eq!(model.leader.as_deref(), Some("first"), "{name}'s leader");
    }
    engine.shutdown().await;
}

/// A graceful stop while joins and a leave wait in the queue: each queued join is refused (or was
/// written before the stop and is removed by it), the queued leave is done, and the stop leaves no
/// member of the instance in the store.
#[actix_rt::test]
async fn a_stop_answers_the_queued_requests_and_leaves_no_member_behind() {
    const JOINERS: usize = 10;
    let server = RedisServer::start();
    let engine = engine_on(&server, "stopping").await;
    let first = Socket::new("first");
    first.join(&engine, "party", Presence::Full).await;
    let actor = engine
        .supervisor()
        .send(LookupSession("party".into()))
        .await
        .expect("the supervisor answers")
        .expect("a session actor");

    let _: String = server
        .query(&["CLIENT", "PAUSE", "300", "WRITE"])
        .expect("CLIENT PAUSE");
    let crowd: Vec<Socket> = (0..JOINERS)
        .map(|i| Socket::new(&format!("g{i:02}")))
        .collect();
    let joins = crowd.iter().map(|s| async {
        let join = rollcall::actors::supervisor::Join {
            session: "party".into(),
            member: crate::support::members::member(
                &s.connection,
                &engine.store().instance().incarnation,
            ),
            client: s.client(),
            socket: None,
            reply: rollcall::actors::ReplyFrame::Session { id: None },
            presence: Presence::Full,
        };
        engine
            .supervisor()
            .send(join)
            .await
            .expect("the supervisor answers")
    });
    let leave = actor.send(rollcall::actors::session::Leave {
        connection: "first".into(),
        reason: LeaveReason::Left,
        socket: None,
    });
    let stop = async {
        // Once the requests are on their way, while the first write waits for Redis.
        tokio::task::yield_now().await;
        engine.shutdown().await;
    };
    let (joined, left, ()) = tokio::join!(futures_util::future::join_all(joins), leave, stop);

    let left = left.expect("the actor answers");
    assert!(
        left.is_ok(),
        "the queued leave is done, written or removed by the stop: {left:?}"
    );
    let refused = joined.iter().filter(|r| r.is_err()).count();
    println!("figure: {refused} of {JOINERS} joins refused by the stop");
    for (result, socket) in joined.iter().zip(&crowd) {
        if let Err(e) = result {
            assert_eq!(
                e.code.as_str(),
                "unavailable",
                "{} was refused with {e:?}",
                socket.connection
            );
        }
    }
    let left_behind = engine.store().view("party").await.expect("view");
    let members = left_behind.map(|v| v.members).unwrap_or_default();
    assert!(
        members.is_empty(),
        "members left in the store after the stop: {members:?}"
    );
}
