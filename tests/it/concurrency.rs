//! 200 WebSocket connections join and leave one session in random order from several tasks; some
//! leave with `leave`, some by closing or dropping the socket. Afterwards every remaining client's
//! view, rebuilt only from the events it received after its `joined`, equals the server's member
//! list, and every client that saw a version saw the same leader and epoch at it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::server::{TestServer, WAIT};
use crate::support::ws::{SessionModel, WsClient, member_ids};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const SESSION: &str = "crowd";
const CONNECTIONS: usize = 200;
const TASKS: usize = 8;
/// Early members that all depart during the churn, so that leadership moves many times.
const FOUNDERS: usize = 24;

#[derive(Clone, Copy, Debug)]
enum Fate {
    Stay,
    Leave,
    Close,
    Drop,
}

/// What one task did: the clients still in the session, and the logs of those that left.
struct TaskResult {
    stayers: Vec<WsClient>,
    departed: BTreeSet<String>,
    departed_logs: Vec<DepartedLog>,
}

/// A departed client's log, and whether it is complete up to the departure (a `left` reply follows
/// every frame of earlier changes; a closed socket may cut a change in the middle).
type DepartedLog = (Vec<Value>, bool);

async fn depart(mut client: WsClient, fate: Fate) -> DepartedLog {
    let complete = matches!(fate, Fate::Leave);
    match fate {
        Fate::Leave => {
            client.leave(SESSION).await;
        }
        Fate::Close => client.close(),
        Fate::Drop => client.abort(),
        Fate::Stay => unreachable!("stayers do not depart"),
    }
    client.drain_ready();
    (client.log().to_vec(), complete)
}

/// Connects and joins `count` clients, and makes the leavers among them depart, interleaved with
/// the joins, in random order.
async fn run_task(url: String, count: usize, seed: u64) -> TaskResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stayers = Vec::new();
    let mut leaving: Vec<(WsClient, Fate)> = Vec::new();
    let mut departed = BTreeSet::new();
    let mut departed_logs = Vec::new();
    for _ in 0..count {
        let mut client = WsClient::connect(&url).await;
        client.join(SESSION).await;
        let fate = random_fate(&mut rng, true);
        match fate {
            Fate::Stay => stayers.push(client),
            _ => leaving.push((client, fate)),
        }
        // Interleave departures with joins: sometimes a random earlier leaver goes now.
        if !leaving.is_empty() && rng.random_bool(0.4) {
            let (client, fate) = leaving.swap_remove(rng.random_range(0..leaving.len()));
            departed.insert(client.connection.clone());
            departed_logs.push(depart(client, fate).await);
        }
        if rng.random_bool(0.5) {
            tokio::task::yield_now().await;
        }
    }
    while !leaving.is_empty() {
        let (client, fate) = leaving.swap_remove(rng.random_range(0..leaving.len()));
        departed.insert(client.connection.clone());
        departed_logs.push(depart(client, fate).await);
        tokio::task::yield_now().await;
    }
    TaskResult {
        stayers,
        departed,
        departed_logs,
    }
}

fn random_fate(rng: &mut StdRng, may_stay: bool) -> Fate {
    match rng.random_range(if may_stay { 0..8 } else { 4..8 }) {
        0..4 => Fate::Stay,
        4..6 => Fate::Leave,
        6 => Fate::Close,
        _ => Fate::Drop,
    }
}

#[actix_rt::test]
async fn two_hundred_connections_joining_and_leaving_converge_on_one_view_and_one_leader() {
    let started = Instant::now();
    let seed: u64 = std::env::var("ROLLCALL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed {seed} (set ROLLCALL_TEST_SEED to replay)");
    let server = TestServer::start_default().await;

    // Founders join first and all depart during the churn, so leadership moves through them while
    // others join and leave. The observer joins next and stays: it sees every later change.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut founders: Vec<(WsClient, Fate)> = Vec::new();
    for _ in 0..FOUNDERS {
        let mut client = WsClient::connect(&server.ws_url()).await;
        client.join(SESSION).await;
        founders.push((client, random_fate(&mut rng, false)));
    }
    let mut observer = WsClient::connect(&server.ws_url()).await;
    observer.join(SESSION).await;

    let others = CONNECTIONS - FOUNDERS - 1;
    let per_task = others / TASKS;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let count = if t == 0 {
            others - per_task * (TASKS - 1)
        } else {
            per_task
        };
        handles.push(tokio::spawn(run_task(
            server.ws_url(),
            count,
            seed.wrapping_add(1 + t as u64),
        )));
    }
    // The founders depart oldest first (each departure moves leadership), spread over the churn.
    let founder_delays: Vec<u64> = (0..FOUNDERS).map(|_| rng.random_range(0..50)).collect();
    handles.push(tokio::spawn(async move {
        let mut departed = BTreeSet::new();
        let mut departed_logs = Vec::new();
        for ((client, fate), delay) in founders.into_iter().zip(founder_delays) {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            departed.insert(client.connection.clone());
            departed_logs.push(depart(client, fate).await);
        }
        TaskResult {
            stayers: Vec::new(),
            departed,
            departed_logs,
        }
    }));
    let mut stayers = vec![];
    let mut departed = BTreeSet::new();
    let mut logs: Vec<DepartedLog> = Vec::new();
    for handle in handles {
        let result = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("a task finished within 30 s")
            .expect("a task did not panic");
        stayers.extend(result.stayers);
        departed.extend(result.departed);
        logs.extend(result.departed_logs);
    }
    stayers.push(observer);
    assert_eq!(stayers.len() + departed.len(), CONNECTIONS);
    let expected: BTreeSet<String> = stayers.iter().map(|c| c.connection.clone()).collect();
    eprintln!(
        "{} stay, {} left; churn took {:?}",
        expected.len(),
        departed.len(),
        started.elapsed()
    );

    // Wait, event-driven, until the observer has seen every departure (closed sockets are removed
    // asynchronously), then fence: one more join that every stayer must see last.
    let observer = stayers.last_mut().expect("the observer");
    for gone in &departed {
        observer
            .expect("member_left of a departed connection", |f| {
                f["type"] == "member_left" && f["connection"] == gone.as_str()
            })
            .await;
    }
    let mut fence = WsClient::connect(&server.ws_url()).await;
    let fence_view = fence.join(SESSION).await;
    let mut expected_with_fence = expected.clone();
    expected_with_fence.insert(fence.connection.clone());
    assert_eq!(
        member_ids(&fence_view).into_iter().collect::<BTreeSet<_>>(),
        expected_with_fence,
        "the server's members are exactly the connections that stayed"
    );
    for client in &mut stayers {
        let seen = client
            .expect("member_joined of the fence", |f| {
                f["type"] == "member_joined"
                    && f["member"]["connection"] == fence.connection.as_str()
            })
            .await;
        assert_eq!(seen["version"], fence_view["version"]);
    }

    // The server's list, by WebSocket and by HTTP.
    let members = fence.members(SESSION).await;
    let (status, http) = server.http_get(&format!("/api/sessions/{SESSION}")).await;
    assert_eq!(status, 200);
    assert_eq!(member_ids(&http), member_ids(&members));
    assert_eq!(http["version"], members["version"]);
    assert_eq!(http["leader"], members["leader"]);
    let n = expected_with_fence.len() as u64;
    assert_eq!(
        members["counts"],
        serde_json::json!({"connections": n, "users": n, "reconnecting": 0})
    );
    let server_ids: Vec<String> = member_ids(&members);

    // Every stayer's event-built view equals the server's.
    for client in &stayers {
        let model = SessionModel::from_log(client.log(), SESSION);
        assert_eq!(
            model.ids(),
            server_ids,
            "the view of {} differs from the server's",
            client.connection
        );
        assert_eq!(model.version, members["version"].as_u64().expect("version"));
        assert_eq!(model.leader.as_deref(), members["leader"].as_str());
        assert_eq!(model.epoch, members["epoch"].as_u64().expect("epoch"));
        model.check_leader();
        logs.push((client.log().to_vec(), true));
    }
    logs.push((fence.log().to_vec(), true));

    // One leader per version: every client that saw a version agrees on its leader and epoch.
    let mut by_version: BTreeMap<u64, (Option<String>, u64)> = BTreeMap::new();
    let mut observations = 0usize;
    for (log, complete) in &logs {
        let mut history = SessionModel::from_log(log, SESSION).history;
        if !complete {
            history.pop(); // possibly cut in the middle of a change
        }
        for (version, leader, epoch) in history {
            observations += 1;
            match by_version.get(&version) {
                Some(seen) => assert_eq!(
                    seen,
                    &(leader.clone(), epoch),
                    "clients disagree about version {version}"
                ),
                None => {
                    by_version.insert(version, (leader, epoch));
                }
            }
        }
    }
    let mut previous: Option<(u64, Option<String>, u64)> = None;
    for (version, (leader, epoch)) in &by_version {
        assert!(leader.is_some(), "version {version} has no leader");
        if let Some((pv, pleader, pepoch)) = &previous {
            assert!(epoch >= pepoch, "epoch went back at version {version}");
            if *version == pv + 1 && leader != pleader {
                assert!(
                    epoch > pepoch,
                    "leadership moved without a new epoch at {version}"
                );
            }
        }
        previous = Some((*version, leader.clone(), *epoch));
    }
    let epochs: BTreeSet<u64> = by_version.values().map(|(_, epoch)| *epoch).collect();
    eprintln!(
        "{} versions and {} epochs checked from {observations} observations; total {:?}",
        by_version.len(),
        epochs.len(),
        started.elapsed()
    );
    assert!(
        epochs.len() > FOUNDERS / 2,
        "leadership moved as the founders left ({} epochs seen)",
        epochs.len()
    );
    assert!(
        by_version.len() as u64 >= members["version"].as_u64().expect("version") - 1,
        "the observer saw every version after its own join"
    );
    assert!(
        started.elapsed() < WAIT * 4,
        "the scenario should take well under 20 s"
    );
}
