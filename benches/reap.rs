//! Reap time (not a test; issue 4): how long `reap_instance` takes to remove a dead instance with
//! 10,000 members spread over 100 sessions, on a private `redis-server` holding no other keys and
//! then 1,000,000 unrelated keys (`DEBUG POPULATE`). Cleanup must cost what is cleaned, not the
//! size of the keyspace, so both figures should be about the same.
//!
//! Each run: a "dead" `RedisStore` with a short lease registers and joins its members, then stops
//! renewing; once Redis lists it as expired, a second `RedisStore` (the reaper) times
//! `rollcall::store::reaping::reap_instance` on it, and the bench checks that every member left.
//!
//! Run: `cargo bench --bench reap`. Environment: `BENCH_RUNS` (default 3), `BENCH_MEMBERS`
//! (default 10000), `BENCH_SESSIONS` (default 100), `BENCH_POPULATE` (default 1000000).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PrivateRedis, env_or, median_spread};
use futures_util::StreamExt;
use rollcall::model::{Event, Member};
use rollcall::store::reaping::reap_instance;
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use rollcall::store::{InstanceId, Registry, Sessions, Store};

const LEASE: Duration = Duration::from_millis(300);

/// Fills a fresh dead instance, waits for its lease to lapse, and times the reap. Returns
/// (seconds, members removed, sessions changed).
async fn one_run(
    redis: &PrivateRedis,
    reaper: &RedisStore,
    members: usize,
    sessions: usize,
) -> (f64, usize, usize) {
    let (dead, _feed) = RedisStore::connect(
        &redis.url(),
        "bench",
        InstanceId::new("bench-dead"),
        LEASE,
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect the dead instance");
    dead.register().await.expect("register");
    let dead = Arc::new(dead);
    let incarnation = dead.instance().incarnation.clone();
    let fill = Instant::now();
    futures_util::stream::iter(0..members)
        .map(|i| {
            let dead = dead.clone();
            let incarnation = incarnation.clone();
            async move {
                let member = Member {
                    connection: format!("{incarnation}-c{i}").into(),
                    user: Some(format!("user-{i}")),
                    name: format!("Participant {i}"),
                    avatar: None,
                    joined_at: 0,
                    instance: incarnation,
                    state: rollcall::model::MemberState::Present,
                    grace: None,
                };
                dead.join(&format!("reap-{}", i % sessions), member, 100_000)
                    .await
                    .expect("join")
            }
        })
        .buffer_unordered(64)
        .for_each(|_| async {})
        .await;
    let fill = fill.elapsed();
    // The instance dies: no more renewals. Wait until Redis lists it as expired.
    drop(dead);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let expired = reaper.expired_instances().await.expect("expired");
        if expired.iter().any(|e| *e == incarnation) {
            break;
        }
        assert!(Instant::now() < deadline, "the dead lease never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let changes = reap_instance(reaper, &incarnation, std::time::Duration::ZERO)
        .await
        .expect("reap");
    let elapsed = started.elapsed().as_secs_f64();
    let removed = changes
        .iter()
        .flat_map(|(_, c)| &c.events)
        .filter(|e| matches!(e, Event::MemberLeft { .. }))
        .count();
    assert_eq!(removed, members, "every member of the dead instance left");
    eprintln!(
        "  … filled {members} members in {:.2} s; reap {:.1} ms, {removed} members, {} sessions",
        fill.as_secs_f64(),
        elapsed * 1000.0,
        changes.len()
    );
    (elapsed, removed, changes.len())
}

fn dbsize(redis: &PrivateRedis) -> u64 {
    redis::cmd("DBSIZE")
        .query(&mut redis.sync())
        .expect("DBSIZE")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !common::invoked_by_cargo_bench("reap") {
        return;
    }
    let runs: usize = env_or("BENCH_RUNS", 3);
    let members: usize = env_or("BENCH_MEMBERS", 10_000);
    let sessions: usize = env_or("BENCH_SESSIONS", 100);
    let populate: u64 = env_or("BENCH_POPULATE", 1_000_000);
    let redis = PrivateRedis::start();
    println!(
        "reap bench: private redis-server on 127.0.0.1:{}, {members} members over {sessions} sessions, {runs} runs per figure",
        redis.port
    );
    let (reaper, _feed) = RedisStore::connect(
        &redis.url(),
        "bench",
        InstanceId::new("bench-reaper"),
        Duration::from_secs(30),
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect the reaper");
    reaper.register().await.expect("register the reaper");

    let mut figures = Vec::new();
    for extra in [0, populate] {
        if extra > 0 {
            let t = Instant::now();
            let _: () = redis::cmd("DEBUG")
                .arg("POPULATE")
                .arg(extra)
                .query(&mut redis.sync())
                .expect("DEBUG POPULATE");
            eprintln!(
                "  … DEBUG POPULATE {extra} in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let keys_before = dbsize(&redis);
        let mut times = Vec::new();
        for _ in 0..runs {
            let (secs, _, _) = one_run(&redis, &reaper, members, sessions).await;
            times.push(secs * 1000.0);
        }
        let (median, spread) = median_spread(&times);
        figures.push((extra, keys_before, median, spread, times));
    }

    println!(
        "\n| unrelated keys | keys in Redis at start | reap time, median | spread (±half range) | runs (ms) |"
    );
    println!("|---|---|---|---|---|");
    for (extra, keys, median, spread, times) in &figures {
        let list: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
        println!(
            "| {extra} | {keys} | {median:.1} ms | ±{:.0}% | {} |",
            spread * 50.0,
            list.join(", ")
        );
    }
    println!(
        "\nreap of {members} members over {sessions} sessions: {:.1} ms with no other keys, {:.1} ms with {populate} unrelated keys",
        figures[0].2, figures[1].2
    );
}
