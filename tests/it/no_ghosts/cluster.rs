//! The no-ghost bounds on a Redis Cluster (3 masters with a replica each), with sessions on every
//! master: an instance killed (and restarted under its name, and stopped gracefully), a shard that
//! loses its data, and a master killed so that its replica takes over.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{KILL_BOUND, SERIAL, await_view, ids, is_left, session_over_http};
use crate::support::cluster::{self, RedisCluster, sessions_on_every_master};
use crate::support::process::RollcallProcess;
use crate::support::ws::WsClient;

/// A shard that lost its data has its sessions' members back within one heartbeat (1 s) of the
/// next check; asserted with a margin, as on one node.
const SHARD_LOSS_BOUND: Duration = Duration::from_millis(2500);
/// A killed master: `cluster-node-timeout` (1 s) + the replica's election + one heartbeat (1 s);
/// asserted with a margin for a loaded 2-core machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(8);

fn prefix(stem: &str) -> String {
    format!("{stem}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

async fn start(cluster: &RedisCluster, name: &str, prefix: &str) -> RollcallProcess {
    RollcallProcess::start_on_cluster(&cluster.urls_flag(), name, &["--key-prefix", prefix]).await
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn no_member_left(client: &mut WsClient) {
    let left = client.pending_of("member_left");
    assert!(
        left.is_empty(),
        "{}: members left: {left:?}",
        client.connection
    );
}

async fn publish_until_heard(
    from: &mut WsClient,
    to: &mut WsClient,
    session: &str,
    started: Instant,
    within: Duration,
) -> Duration {
    for n in 0.. {
        let data = json!({"probe": n});
        let reply = from
            .request(json!({"type": "publish", "session": session, "data": data}))
            .await;
        if reply["type"] == "published"
            && to
                .try_expect(
                    &|f: &Value| {
                        f["type"] == "message" && f["session"] == session && f["data"] == data
                    },
                    Duration::from_millis(200),
                )
                .await
                .is_some()
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no message in {session} crossed instances within {within:?} (last reply {reply})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

/// kill -9 of an instance: its members in sessions on every master leave within the bound; a
/// restart under the same name removes the previous incarnation's members at start-up (before
/// its lease expires); a graceful stop removes them with `shutdown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_restarted_and_stopped_instances_leave_no_ghosts_on_a_cluster() {
    let _serial = SERIAL.lock().await;
    let cluster = tokio::task::spawn_blocking(cluster::shared)
        .await
        .expect("the shared cluster");
    let prefix = prefix("ng");
    let a = start(&cluster, "ng-a", &prefix).await;
    let mut c = start(&cluster, "ng-c", &prefix).await;
    let sessions: Vec<String> = sessions_on_every_master(&cluster, "ghost", 1)
        .into_values()
        .flatten()
        .collect();
    let mut a1 = WsClient::connect(&a.ws_url()).await;
    let mut c1 = WsClient::connect(&c.ws_url()).await;
    for s in &sessions {
        c1.join(s).await;
        a1.join(s).await;
    }
    c.kill9();
    let killed = Instant::now();
    for s in &sessions {
        let left = KILL_BOUND.saturating_sub(killed.elapsed());
        a1.expect_within(
            "member_left instance_lost",
            |f| is_left(f, s, &c1.connection, "instance_lost"),
            left,
        )
        .await;
    }
    let took = killed.elapsed();
    println!(
        "figure: cluster, kill -9 → member_left in 3 sessions (one per master) after {took:?} (bound {KILL_BOUND:?})"
    );

    // Restart fast path: killed and restarted at once, well within the 3 s lease.
    c.restart_same(&["--key-prefix", &prefix]).await;
    let mut c2 = WsClient::connect(&c.ws_url()).await;
    for s in &sessions {
        c2.join(s).await;
    }
    c.kill9();
    let killed = Instant::now();
    c.restart_same(&["--key-prefix", &prefix]).await;
    for s in &sessions {
        a1.expect_within(
            "member_left of the previous incarnation",
            |f| is_left(f, s, &c2.connection, "instance_lost"),
            Duration::from_millis(2900).saturating_sub(killed.elapsed()),
        )
        .await;
    }
    println!(
        "figure: cluster, kill -9 + restart under the same name → old members gone after {:?}",
        killed.elapsed()
    );

    // Graceful stop: members leave with `shutdown`.
    let mut c3 = WsClient::connect(&c.ws_url()).await;
    for s in &sessions {
        c3.join(s).await;
    }
    let status = c.terminate(Duration::from_secs(10));
    assert!(status.success(), "graceful stop exit status {status}");
    for s in &sessions {
        a1.expect_within(
            "member_left shutdown",
            |f| is_left(f, s, &c3.connection, "shutdown"),
            Duration::from_secs(2),
        )
        .await;
        let (_, view) = session_over_http(&a, s).await;
        assert_eq!(ids(&view), set(&[&a1.connection]), "{s} after the stop");
    }
}

/// One shard loses its data (FLUSHALL on its master): its sessions' members are re-asserted
/// within the bound, versions and epochs not going back. Then another master holding sessions is
/// killed: its replica takes over, no member is lost, nobody is listed twice or left behind, and
/// messages and joins cross instances again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_losing_its_data_and_a_killed_master_lose_no_member() {
    let _serial = SERIAL.lock().await;
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("a cluster of its own");
    let prefix = prefix("fo");
    let a = start(&cluster, "fo-a", &prefix).await;
    let b = start(&cluster, "fo-b", &prefix).await;
    let by_master = sessions_on_every_master(&cluster, "shard", 2);
    let lease_master = cluster
        .master_of(rollcall::store::redis::slots::slot("{g}"))
        .expect("a master of {g}");
    let others: Vec<u16> = by_master
        .keys()
        .copied()
        .filter(|&p| p != lease_master)
        .collect();
    let (flushed, killed_master) = (others[0], others[1]);
    let mut a1 = WsClient::connect(&a.ws_url()).await;
    let mut b1 = WsClient::connect(&b.ws_url()).await;
    let all: Vec<&String> = by_master.values().flatten().collect();
    for s in &all {
        a1.join(s).await;
        b1.join(s).await;
    }
    let expected = set(&[&a1.connection, &b1.connection]);
    let mut before = std::collections::BTreeMap::new();
    for s in &all {
        before.insert(s.to_string(), a1.members(s).await);
    }

    // 1. A shard loses its data.
    let lost = Instant::now();
    cluster.flush_master(flushed);
    let mut worst = Duration::ZERO;
    for s in &by_master[&flushed] {
        for process in [&a, &b] {
            let (view, _) = await_view(process, s, Duration::from_secs(10), "re-asserted", |v| {
                ids(v) == expected
            })
            .await;
            worst = worst.max(lost.elapsed());
            let old = &before[s.as_str()];
            assert!(
                view["version"].as_u64() > old["version"].as_u64(),
                "{s}: version went back: {view} after {old}"
            );
            assert!(
                view["epoch"].as_u64() >= old["epoch"].as_u64(),
                "{s}: epoch went back: {view} after {old}"
            );
        }
    }
    println!(
        "figure: cluster shard flushed → its sessions' members back after {worst:?} (bound {SHARD_LOSS_BOUND:?})"
    );
    assert!(worst <= SHARD_LOSS_BOUND, "members missing for {worst:?}");

    // 2. A master holding sessions is killed; its replica takes over.
    let slot =
        rollcall::store::redis::slots::slot(&format!("{{s:{}}}", by_master[&killed_master][0]));
    cluster.kill(killed_master);
    let killed = Instant::now();
    let cluster = std::sync::Arc::new(cluster);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.wait_for(Duration::from_secs(20), "the replica to take over", || {
            c.master_of(slot).is_some_and(|p| p != killed_master)
        })
    })
    .await
    .expect("failover");
    let failed_over = killed.elapsed();
    let mut flowing = Duration::ZERO;
    for s in &by_master[&killed_master] {
        flowing =
            flowing.max(publish_until_heard(&mut b1, &mut a1, s, killed, FAILOVER_BOUND).await);
        flowing =
            flowing.max(publish_until_heard(&mut a1, &mut b1, s, killed, FAILOVER_BOUND).await);
    }
    let session = by_master[&killed_master][0].clone();
    let mut b2 = WsClient::connect(&b.ws_url()).await;
    b2.join(&session).await;
    a1.expect_within(
        "member_joined of b2 after the failover",
        |f| f["type"] == "member_joined" && f["member"]["connection"] == json!(b2.connection),
        Duration::from_secs(2),
    )
    .await;
    for s in &all {
        let mut want = expected.clone();
        if **s == session {
            want.insert(b2.connection.clone());
        }
        for process in [&a, &b] {
            await_view(
                process,
                s,
                Duration::from_secs(5),
                "every member, nobody else",
                |v| ids(v) == want,
            )
            .await;
        }
    }
    no_member_left(&mut a1);
    no_member_left(&mut b1);
    println!(
        "figure: cluster master kill -9 → replica took over after {failed_over:?}; messages cross instances in its sessions again after {flowing:?} (bound {FAILOVER_BOUND:?})"
    );
    assert!(flowing <= FAILOVER_BOUND);
}

/// Waits until the replica of `master` has every write the master had when this was called
/// (`ROLE` lists the master's offset, then each replica's).
fn wait_replicated(master: u16) {
    let offsets =
        |role: &str| -> Vec<u64> { role.lines().filter_map(|l| l.trim().parse().ok()).collect() };
    let at = offsets(&cluster::cli(master, &["ROLE"]));
    let written = *at.first().expect("the master's replication offset");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let now = offsets(&cluster::cli(master, &["ROLE"]));
        // [master offset, replica port, replica offset, …]: every other number after the first.
        if now
            .iter()
            .skip(2)
            .step_by(2)
            .any(|&replica| replica >= written)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the replica of {master} did not catch up with offset {written}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_that_a_failover_brings_back_is_removed_once_the_replica_took_over() {
    let _serial = SERIAL.lock().await;
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("a cluster of its own");
    let prefix = prefix("lost");
    let a = start(&cluster, "lost-a", &prefix).await;
    let b = start(&cluster, "lost-b", &prefix).await;
    let lease_master = cluster
        .master_of(rollcall::store::redis::slots::slot("{g}"))
        .expect("a master of {g}");
    let (master, session) = sessions_on_every_master(&cluster, "lost", 1)
        .into_iter()
        .find(|(port, _)| *port != lease_master)
        .map(|(port, sessions)| (port, sessions[0].clone()))
        .expect("a master that does not hold the leases");
    let mut witness = WsClient::connect(&b.ws_url()).await;
    witness.join(&session).await;
    let mut leaver = WsClient::connect(&a.ws_url()).await;
    let view = leaver.join(&session).await;
    let incarnation = super::instance_of(&view, &leaver.connection);
    // A's last member there leaves: A releases the session and stops listening to it.
    leaver.leave(&session).await;
    witness
        .expect("the leave", |f| {
            is_left(f, &session, &leaver.connection, "left")
        })
        .await;
    // What a failover that lost that leave amounts to: the new master lists the member again,
    // under A. (Written on the old master, replicated, then the old master dies.)
    let (intruder, _feed) = cluster
        .store(&prefix, "intruder", Duration::from_secs(10))
        .await;
    let back = crate::support::members::member(
        &leaver.connection,
        &rollcall::ids::Incarnation::new(incarnation),
    );
    rollcall::store::Sessions::join(&intruder, &session, back, 100)
        .await
        .expect("the lost leave's member written back");
    witness
        .expect("the member listed again", |f| {
            f["type"] == "member_joined" && f["member"]["connection"] == json!(leaver.connection)
        })
        .await;
    tokio::task::spawn_blocking(move || wait_replicated(master))
        .await
        .expect("replicated");
    let slot = rollcall::store::redis::slots::slot(&format!("{{s:{session}}}"));
    cluster.kill(master);
    let killed = Instant::now();
    let cluster = std::sync::Arc::new(cluster);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.wait_for(Duration::from_secs(20), "the replica to take over", || {
            c.master_of(slot).is_some_and(|p| p != master)
        })
    })
    .await
    .expect("failover");
    let gone = witness
        .expect_within(
            "the member A no longer holds, removed again",
            |f| f["type"] == "member_left" && f["connection"] == json!(leaver.connection),
            FAILOVER_BOUND,
        )
        .await;
    assert_eq!(gone["reason"], "disconnected", "{gone}");
    println!(
        "figure: cluster failover that lost a leave → the member removed again {:?} after the kill",
        killed.elapsed()
    );
    assert!(killed.elapsed() <= FAILOVER_BOUND);
    await_view(
        &b,
        &session,
        Duration::from_secs(5),
        "the witness alone",
        |v| ids(v) == set(&[&witness.connection]),
    )
    .await;
}
