//! Members the store lists under an instance that does not hold them ("strays"): a join that the
//! store ran after its client had been told it failed (a stalled Redis), or one put there behind
//! the instance's back (what a Redis Cluster failover that lost a leave amounts to). The instance
//! removes them, with `member_left`, within one heartbeat of the store answering.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{SERIAL, await_view, ids, instance_of};
use crate::support::members::member;
use crate::support::process::RollcallProcess;
use crate::support::redis::RedisServer;
use crate::support::server::{TestServer, test_args};
use crate::support::ws::WsClient;
use rollcall::ids::Incarnation;
use rollcall::store::memory::MemoryBackend;
use rollcall::store::redis::DEFAULT_SESSION_TTL;
use rollcall::store::{InstanceId, Store, Upkeep};

/// One heartbeat (the default, 1 s) is the promise; the margin covers a loaded machine.
const ONE_HEARTBEAT: Duration = Duration::from_millis(2_500);

fn joined(frame: &Value, session: &str, connection: &str) -> bool {
    frame["type"] == "member_joined"
        && frame["session"] == session
        && frame["member"]["connection"] == connection
}

fn left(frame: &Value, session: &str, connection: &str) -> bool {
    frame["type"] == "member_left"
        && frame["session"] == session
        && frame["connection"] == connection
}

/// Puts `ghost` into `session` as a member of `instance`, through another instance's handle, as a
/// failover that lost its leave would: the instance never asked for it.
async fn put_behind_its_back(store: &dyn Store, session: &str, ghost: &str, instance: &str) {
    let stray = member(ghost, &Incarnation::new(instance));
    store
        .join(session, stray, 100)
        .await
        .expect("the stray is written");
}

/// Waits for the witness to see `ghost` join and then leave; returns how long it stayed.
async fn seen_to_come_and_go(witness: &mut WsClient, session: &str, ghost: &str) -> Duration {
    witness
        .expect("the stray's member_joined", |f| joined(f, session, ghost))
        .await;
    let listed = Instant::now();
    let gone = witness
        .expect_within(
            "the stray's member_left",
            |f| left(f, session, ghost),
            ONE_HEARTBEAT * 2,
        )
        .await;
    assert_eq!(gone["reason"], "disconnected", "{gone}");
    listed.elapsed()
}

#[actix_rt::test]
async fn a_member_listed_under_an_instance_that_does_not_hold_it_leaves_within_one_heartbeat() {
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let server = TestServer::start_on_backend(test_args(), &backend).await;
    let me = server.engine().store().instance().incarnation.to_string();
    let mut witness = WsClient::connect(&server.ws_url()).await;
    witness.join("s").await;
    let (intruder, _feed) = backend.connect(InstanceId::new("intruder"));
    put_behind_its_back(&intruder, "s", "ghost", &me).await;
    let stayed = seen_to_come_and_go(&mut witness, "s", "ghost").await;
    eprintln!("a stray stayed listed for {stayed:?}");
    assert!(stayed <= ONE_HEARTBEAT, "listed for {stayed:?}");
    assert_eq!(backend.live_member_count(), 1, "only the witness is left");
    assert_eq!(intruder.held_count("s").await.unwrap(), 0);
    let (_, view) = server.http_get("/api/sessions/s").await;
    assert_eq!(ids(&view), [witness.connection.clone()].into());
}

/// Two instances on a private Redis, with leases long enough that a stall of a few seconds
/// declares nobody dead.
async fn two_instances(redis: &RedisServer, prefix: &str) -> (RollcallProcess, RollcallProcess) {
    let flags = ["--lease-ms", "10000", "--heartbeat-ms", "1000"];
    let a = RollcallProcess::start(&redis.url(), &format!("{prefix}-a"), &flags).await;
    let b = RollcallProcess::start(&redis.url(), &format!("{prefix}-b"), &flags).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_put_into_redis_behind_the_instances_back_leaves_within_one_heartbeat() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis, "behind").await;
    let mut held = WsClient::connect(&a.ws_url()).await;
    let mut witness = WsClient::connect(&b.ws_url()).await;
    let view = held.join("s").await;
    let incarnation = instance_of(&view, &held.connection);
    witness.join("s").await;
    let (intruder, _feed) = redis
        .store_under("rollcall", "intruder", DEFAULT_SESSION_TTL)
        .await;
    put_behind_its_back(&intruder, "s", "ghost", &incarnation).await;
    let stayed = seen_to_come_and_go(&mut witness, "s", "ghost").await;
    eprintln!("a stray stayed listed in Redis for {stayed:?}");
    assert!(stayed <= ONE_HEARTBEAT, "listed for {stayed:?}");
    let (view, _) = await_view(&b, "s", ONE_HEARTBEAT, "held and witness only", |v| {
        ids(v) == [held.connection.clone(), witness.connection.clone()].into()
    })
    .await;
    assert_eq!(view["leader"], json!(held.connection), "the leader stays");
    let members: Vec<String> = redis
        .query(&["HKEYS", "rollcall:{s:s}:members"])
        .expect("HKEYS");
    assert_eq!(members.len(), 2, "no record of the stray: {members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_refused_under_a_stalled_redis_leave_no_member_once_it_answers_again() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis, "stall").await;
    // "busy": A has a member there, so a session actor; "fresh": A has none.
    let mut settled = WsClient::connect(&a.ws_url()).await;
    let mut witness = WsClient::connect(&b.ws_url()).await;
    settled.join("busy").await;
    witness.join("busy").await;
    witness.join("fresh").await;
    let mut late_busy = WsClient::connect(&a.ws_url()).await;
    let mut late_fresh = WsClient::connect(&a.ws_url()).await;

    redis.pause();
    let stalled = Instant::now();
    let (busy, fresh) = tokio::join!(
        late_busy.request(json!({"type": "join", "session": "busy"})),
        late_fresh.request(json!({"type": "join", "session": "fresh"})),
    );
    let answered = stalled.elapsed();
    // Past the store timeout (2 s), so that every attempt has given up, then awake again.
    tokio::time::sleep(Duration::from_millis(3_500).saturating_sub(stalled.elapsed())).await;
    redis.resume();
    eprintln!("joins under a stalled Redis answered after {answered:?}");
    for reply in [&busy, &fresh] {
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("unavailable")),
            "{reply}"
        );
    }
    assert!(
        answered < Duration::from_millis(3_000),
        "the store timeout is 2 s; answered after {answered:?}"
    );

    let woke = Instant::now();
    for session in ["busy", "fresh"] {
        let refused = [&late_busy.connection, &late_fresh.connection];
        await_view(
            &b,
            session,
            ONE_HEARTBEAT * 2,
            "no refused joiner listed",
            |v| refused.iter().all(|c| !ids(v).contains(*c)),
        )
        .await;
    }
    eprintln!(
        "no refused joiner listed {:?} after Redis woke",
        woke.elapsed()
    );
    // Nothing the refused joins wrote remains, even after their sockets go away.
    late_busy.close();
    late_fresh.close();
    let settle = Instant::now() + ONE_HEARTBEAT;
    for (session, expected) in [("busy", 2), ("fresh", 1)] {
        let key = format!("rollcall:{{s:{session}}}:members");
        let members: Vec<String> = redis.query(&["HKEYS", &key]).expect("HKEYS");
        assert_eq!(members.len(), expected, "{session}: {members:?}");
    }
    while Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, view) = super::session_over_http(&b, "busy").await;
        assert_eq!(
            ids(&view),
            [settled.connection.clone(), witness.connection.clone()].into(),
            "nobody else is listed again"
        );
    }
    // No trace at all: the store refused the joins it reached past their deadline, so the witness
    // never heard of the refused joiners.
    witness.drain_ready();
    for refused in [&late_busy.connection, &late_fresh.connection] {
        let heard = witness.log().iter().find(|f| {
            f["member"]["connection"] == json!(refused) || f["connection"] == json!(refused)
        });
        assert_eq!(
            heard, None,
            "the witness heard of {refused}, whose join was refused"
        );
    }
}
