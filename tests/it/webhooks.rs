//! Webhooks over real HTTP: a receiver (tests/it/support/webhooks.rs) that checks every signature
//! gets every change, in version order per session; with the in-process store first, then with
//! real `rollcall` processes on one Redis (and on a Redis Cluster) killed with SIGKILL while events
//! wait, which must lose none of them. Delivery is at least once: assertions deduplicate by `id`.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use crate::support::cluster;
use crate::support::eventually;
use crate::support::process::{FAST_LIVENESS, RollcallProcess};
use crate::support::redis::RedisServer;
use crate::support::server::{TestServer, http_post, test_args};
use crate::support::webhooks::{Receiver, count, is_left, summarize};
use crate::support::ws::WsClient;

const SECRET: &str = "whsec-test";

/// Within a poll (≤ 0.5 s), a lease takeover (5 s) and a reap (1 s lease), with a margin for a
/// loaded machine.
const DELIVERY_BOUND: Duration = Duration::from_secs(20);

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[actix_rt::test]
async fn in_process_every_change_arrives_signed_and_in_order_and_the_stop_delivers_the_last() {
    let receiver = Receiver::start(SECRET).await;
    let mut args = test_args();
    args.webhook_url = Some(receiver.url.clone());
    args.webhook_secret = Some(SECRET.into());
    let mut server = TestServer::start(args).await;
    let mut a = WsClient::connect(&server.ws_url()).await;
    let mut b = WsClient::connect(&server.ws_url()).await;
    a.join("hooks-1").await;
    b.join("hooks-1").await;
    a.leave("hooks-1").await;
    b.abort();
    receiver
        .wait_for(DELIVERY_BOUND, "hooks-1 vacated", |events| {
            count(events, "hooks-1", "session_vacated") == 1
        })
        .await;
    let events = receiver.of("hooks-1");
    assert_eq!(
        types(&events),
        [
            "session_started",
            "member_joined",
            "leader_changed",
            "member_joined",
            "member_left",
            "leader_changed",
            "member_left",
            "leader_changed",
            "session_vacated",
        ],
        "{:#?}",
        events.iter().map(summarize).collect::<Vec<_>>()
    );
    assert_eq!(events[1]["member"]["connection"], a.connection.as_str());
    assert_eq!(events[2]["leader"], a.connection.as_str());
    assert!(is_left(&events[4], "hooks-1", &a.connection, "left"));
    assert_eq!(events[5]["leader"], b.connection.as_str());
    assert!(is_left(
        &events[6],
        "hooks-1",
        &b.connection,
        "disconnected"
    ));
    for event in &events {
        let id = event["id"].as_str().expect("an id");
        assert!(
            id.starts_with(&format!("hooks-1:{}:", event["version"])),
            "{id}"
        );
        let at = event["at"].as_str().expect("at");
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
        assert!(at.ends_with('Z'), "UTC: {at}");
    }

    // Members still in at a graceful stop leave with `shutdown`: delivered before the stop ends.
    a.join("hooks-2").await;
    server.shutdown().await;
    let last = receiver.of("hooks-2");
    assert_eq!(
        types(&last),
        [
            "session_started",
            "member_joined",
            "leader_changed",
            "member_left",
            "leader_changed",
            "session_vacated"
        ]
    );
    assert!(is_left(&last[3], "hooks-2", &a.connection, "shutdown"));
    receiver.assert_signatures_valid();
    receiver.assert_in_order();
    assert_eq!(
        receiver.all().len(),
        receiver.unique().len(),
        "nothing sent twice"
    );
}

#[actix_rt::test]
async fn a_kick_and_an_end_by_the_server_api_arrive_with_reason_kicked_and_a_null_by() {
    let receiver = Receiver::start(SECRET).await;
    let mut args = test_args();
    args.webhook_url = Some(receiver.url.clone());
    args.webhook_secret = Some(SECRET.into());
    args.api_key = vec!["hooks-key".into()];
    let server = TestServer::start(args).await;
    let mut a = WsClient::connect(&server.ws_url()).await;
    let mut b = WsClient::connect(&server.ws_url()).await;
    a.join("hooks-api").await;
    b.join("hooks-api").await;
    let kick = serde_json::json!({"connection": b.connection}).to_string();
    let (status, _) = http_post(
        server.addr,
        "/api/server/sessions/hooks-api/kick",
        Some("hooks-key"),
        kick,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http_post(
        server.addr,
        "/api/server/sessions/hooks-api/end",
        Some("hooks-key"),
        "{}",
    )
    .await;
    assert_eq!(status, 200);
    receiver
        .wait_for(DELIVERY_BOUND, "hooks-api vacated", |events| {
            count(events, "hooks-api", "session_vacated") == 1
        })
        .await;
    let events = receiver.of("hooks-api");
    assert!(
        events
            .iter()
            .any(|e| is_left(e, "hooks-api", &b.connection, "kicked")),
        "{:#?}",
        events.iter().map(summarize).collect::<Vec<_>>()
    );
    let ended = events
        .iter()
        .find(|e| e["type"] == "session_ended")
        .expect("session_ended");
    assert_eq!(ended["by"], Value::Null);
    assert!(is_left(
        &events[events.len() - 3],
        "hooks-api",
        &a.connection,
        "ended"
    ));
    receiver.assert_signatures_valid();
    receiver.assert_in_order();
}

/// Flags of a test process: fast liveness, this receiver, and a key prefix.
fn process_flags(receiver: &Receiver, prefix: &str) -> Vec<String> {
    let mut flags: Vec<String> = FAST_LIVENESS.iter().map(|s| s.to_string()).collect();
    flags.extend(receiver.flags());
    flags.extend(["--key-prefix".to_owned(), prefix.to_owned()]);
    flags
}

fn as_strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// Which of `processes` delivers (it logs so when it takes the right).
async fn deliverer_of(processes: &[&RollcallProcess]) -> usize {
    let mut found = None;
    let held = eventually(DELIVERY_BOUND, async || {
        found = processes
            .iter()
            .position(|p| p.log_contains("this instance delivers"));
        found.is_some()
    })
    .await;
    assert!(held, "no instance took the delivery right");
    found.unwrap_or_default()
}

/// With the receiver down, members on two of three instances join `sessions`; the instance that
/// made the changes is killed with SIGKILL (its members are reaped: more changes), then the one
/// delivering, with everything pending. The survivor takes over and delivers every event of every
/// session, signed and in order, crash-reaped members as `member_left` `instance_lost`.
async fn kill_the_changer_then_the_deliverer(
    mut processes: [RollcallProcess; 3],
    receiver: &Receiver,
    sessions: &[&str],
) {
    let deliverer = deliverer_of(&processes.iter().collect::<Vec<_>>()).await;
    let changer = (deliverer + 1) % 3;
    let survivor = (deliverer + 2) % 3;

    let mut x1 = WsClient::connect(&processes[changer].ws_url()).await;
    let mut x2 = WsClient::connect(&processes[changer].ws_url()).await;
    let mut y = WsClient::connect(&processes[survivor].ws_url()).await;
    for session in sessions {
        x1.join(session).await;
        y.join(session).await;
        x2.join(session).await;
    }
    // The receiver is down: everything so far is pending.
    let tried = eventually(DELIVERY_BOUND, async || receiver.turned_away() > 0).await;
    assert!(tried, "the deliverer never tried");

    processes[changer].kill9();
    for session in sessions {
        for connection in [&x1.connection, &x2.connection] {
            y.expect_within(
                "the reaper removed the killed instance's members",
                |f| {
                    f["type"] == "member_left"
                        && f["session"] == *session
                        && f["connection"] == connection.as_str()
                },
                DELIVERY_BOUND,
            )
            .await;
        }
    }
    // Now the deliverer dies with all of it pending; the survivor takes over.
    processes[deliverer].kill9();
    receiver.set_down(false);
    receiver
        .wait_for(DELIVERY_BOUND, "every event of every session", |events| {
            sessions
                .iter()
                .all(|s| count(events, s, "member_left") == 2)
        })
        .await;
    for session in sessions {
        let events = receiver.of(session);
        assert_eq!(events[0]["type"], "session_started", "{session}");
        assert_eq!(count(&events, session, "member_joined"), 3, "{session}");
        for connection in [&x1.connection, &x2.connection] {
            assert!(
                events
                    .iter()
                    .any(|e| is_left(e, session, connection, "instance_lost")),
                "{session}: no instance_lost for {connection}: {:#?}",
                events.iter().map(summarize).collect::<Vec<_>>()
            );
        }
    }
    assert!(processes[survivor].log_contains("this instance delivers"));
    receiver.assert_signatures_valid();
    receiver.assert_in_order();
}

#[actix_rt::test]
async fn killing_the_instance_that_made_the_changes_then_the_deliverer_loses_no_event() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(SECRET).await;
    receiver.set_down(true);
    let flags = process_flags(&receiver, "rollcall");
    let flags = as_strs(&flags);
    let processes = [
        RollcallProcess::start(&redis.url(), "hook-a", &flags).await,
        RollcallProcess::start(&redis.url(), "hook-b", &flags).await,
        RollcallProcess::start(&redis.url(), "hook-c", &flags).await,
    ];
    kill_the_changer_then_the_deliverer(processes, &receiver, &["k1", "k2"]).await;
}

#[actix_rt::test]
async fn on_a_redis_cluster_killing_the_changer_then_the_deliverer_loses_no_event() {
    let cluster = tokio::task::spawn_blocking(cluster::shared)
        .await
        .expect("the shared cluster");
    let prefix = format!("hooks-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let receiver = Receiver::start(SECRET).await;
    receiver.set_down(true);
    let flags = process_flags(&receiver, &prefix);
    let flags = as_strs(&flags);
    let nodes = cluster.urls_flag();
    let processes = [
        RollcallProcess::start_on_cluster(&nodes, "kc-a", &flags).await,
        RollcallProcess::start_on_cluster(&nodes, "kc-b", &flags).await,
        RollcallProcess::start_on_cluster(&nodes, "kc-c", &flags).await,
    ];
    // Sessions spread over the cluster's shards.
    kill_the_changer_then_the_deliverer(processes, &receiver, &["q1", "q2", "q3", "q4"]).await;
}

/// Clients on two instances join two sessions at once, then all leave at once.
async fn churn_on_two_instances(
    a: &RollcallProcess,
    b: &RollcallProcess,
    sessions: &[&str],
) -> Vec<WsClient> {
    let mut clients = Vec::new();
    for i in 0..10 {
        let on = if i % 2 == 0 { a } else { b };
        clients.push(WsClient::connect(&on.ws_url()).await);
    }
    for session in sessions {
        join_all(clients.iter_mut().map(|c| c.join(session))).await;
    }
    clients
}

#[actix_rt::test]
async fn concurrent_changes_on_two_instances_arrive_in_version_order_per_session() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(SECRET).await;
    let flags = process_flags(&receiver, "rollcall");
    let flags = as_strs(&flags);
    let a = RollcallProcess::start(&redis.url(), "order-a", &flags).await;
    let b = RollcallProcess::start(&redis.url(), "order-b", &flags).await;
    let sessions = ["o1", "o2"];
    let mut clients = churn_on_two_instances(&a, &b, &sessions).await;
    for session in sessions {
        join_all(clients.iter_mut().map(|c| c.leave(session))).await;
    }
    receiver
        .wait_for(DELIVERY_BOUND, "both sessions vacated", |events| {
            sessions
                .iter()
                .all(|s| count(events, s, "session_vacated") == 1)
        })
        .await;
    for session in sessions {
        let events = receiver.of(session);
        assert_eq!(count(&events, session, "member_joined"), 10);
        assert_eq!(count(&events, session, "member_left"), 10);
        assert_eq!(count(&events, session, "session_started"), 1);
        assert_eq!(
            events.last().map(|e| e["type"].clone()),
            Some("session_vacated".into())
        );
    }
    receiver.assert_signatures_valid();
    receiver.assert_in_order();
}

#[actix_rt::test]
async fn on_a_redis_cluster_a_killed_instance_loses_no_event_and_order_holds() {
    let cluster = tokio::task::spawn_blocking(cluster::shared)
        .await
        .expect("the shared cluster");
    let prefix = format!("hooks-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let receiver = Receiver::start(SECRET).await;
    let flags = process_flags(&receiver, &prefix);
    let flags = as_strs(&flags);
    let nodes = cluster.urls_flag();
    let mut a = RollcallProcess::start_on_cluster(&nodes, "cl-a", &flags).await;
    let b = RollcallProcess::start_on_cluster(&nodes, "cl-b", &flags).await;
    let sessions = ["c1", "c2", "c3"];
    receiver.set_down(true);
    let clients = churn_on_two_instances(&a, &b, &sessions).await;
    let lost: Vec<String> = clients
        .iter()
        .step_by(2)
        .map(|c| c.connection.clone())
        .collect();
    a.kill9();
    receiver.set_down(false);
    receiver
        .wait_for(
            DELIVERY_BOUND,
            "the killed instance's members left",
            |events| {
                sessions
                    .iter()
                    .all(|s| count(events, s, "member_left") == lost.len())
            },
        )
        .await;
    for session in sessions {
        let events = receiver.of(session);
        assert_eq!(count(&events, session, "member_joined"), 10, "{session}");
        for connection in &lost {
            assert!(
                events
                    .iter()
                    .any(|e| is_left(e, session, connection, "instance_lost")),
                "{session}: no instance_lost for {connection}"
            );
        }
    }
    drop(b);
    receiver.assert_signatures_valid();
    receiver.assert_in_order();
}

/// A receiver that answers nothing holds the deliverer's request for its whole timeout (10 s);
/// meanwhile joins and leaves on that instance take their usual few milliseconds, and once the
/// receiver answers again every event arrives.
#[actix_rt::test]
async fn a_hanging_receiver_never_slows_joins_and_leaves() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(SECRET).await;
    receiver.set_hanging(true);
    let flags = process_flags(&receiver, "rollcall");
    let server = RollcallProcess::start(&redis.url(), "hang", &as_strs(&flags)).await;
    let mut first = WsClient::connect(&server.ws_url()).await;
    first.join("h1").await;
    let held = eventually(DELIVERY_BOUND, async || receiver.held() > 0).await;
    assert!(held, "the deliverer never posted");

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(WsClient::connect(&server.ws_url()).await);
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        for client in &mut clients {
            let started = std::time::Instant::now();
            client.join("h1").await;
            client.leave("h1").await;
            slowest = slowest.max(started.elapsed());
        }
    }
    println!("slowest join+leave while the receiver hung: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "a join+leave took {slowest:?} while the receiver hung (its requests time out after 10 s)"
    );
    assert_eq!(
        receiver.all().len(),
        0,
        "nothing was answered while hanging"
    );

    receiver.set_hanging(false);
    receiver
        .wait_for(DELIVERY_BOUND, "every join and leave of h1", |events| {
            count(events, "h1", "member_joined") == 41 && count(events, "h1", "member_left") == 40
        })
        .await;
    receiver.assert_signatures_valid();
    receiver.assert_in_order();
}

/// Over real HTTP on Redis, with the backoff shortened (100 ms doubling to at most 400 ms): the
/// receiver is down while the deliverer retries past its largest step several times, changes keep
/// coming meanwhile, and once it is back every event arrives, signed and in order.
#[actix_rt::test]
async fn a_receiver_down_longer_than_the_largest_backoff_step_then_gets_every_event() {
    use std::sync::Arc;

    use rollcall::model::LeaveReason;
    use rollcall::store::redis::DEFAULT_SESSION_TTL;
    use rollcall::store::{Outbox, Sessions, Store};
    use rollcall::webhooks::{DeliverySettings, Stop, WebhookSettings};

    let redis = RedisServer::start();
    let (store, _feed) = redis.store("down", DEFAULT_SESSION_TTL).await;
    let store = Arc::new(store);
    store.keep_outbox(true);
    let receiver = Receiver::start(SECRET).await;
    receiver.set_down(true);
    let settings = WebhookSettings {
        url: receiver.url.clone(),
        secret: SECRET.into(),
        delivery: DeliverySettings {
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_millis(400),
            timeout: Duration::from_secs(2),
            ..DeliverySettings::default()
        },
    };
    let member = |c: &str| crate::support::members::member(c, &store.instance().incarnation);
    store.join("d1", member("c1"), 10).await.expect("join");
    let outbox: Arc<dyn Outbox> = store.clone();
    let deliverer = rollcall::webhooks::start(outbox, &settings).expect("the deliverer");
    // 100 + 200 + 400 + 400 + 400 ms: the fifth and sixth tries each follow a wait of the
    // largest step.
    let retried = eventually(DELIVERY_BOUND, async || receiver.turned_away() >= 6).await;
    assert!(
        retried,
        "the deliverer stopped trying: {}",
        receiver.turned_away()
    );
    store.join("d1", member("c2"), 10).await.expect("join");
    store
        .leave("d1", "c1", LeaveReason::Left)
        .await
        .expect("leave");
    receiver.set_down(false);
    receiver
        .wait_for(DELIVERY_BOUND, "both joins and the leave", |events| {
            count(events, "d1", "member_joined") == 2 && count(events, "d1", "member_left") == 1
        })
        .await;
    assert_eq!(receiver.of("d1")[0]["type"], "session_started");
    receiver.assert_signatures_valid();
    receiver.assert_in_order();
    deliverer.do_send(Stop);
}
