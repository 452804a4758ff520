//! One node against a 3-master Redis Cluster, in one run (not a test): join+leave cycles of the
//! Redis store at 64 operations in flight over many sessions (so they spread over the masters), and
//! the commands Redis executes per operation (`INFO commandstats`, summed over the masters: the
//! top-level commands and those run inside the scripts).
//!
//! Run: `cargo bench --bench cluster`. Environment: `BENCH_SECONDS` per measured run (default 5),
//! `BENCH_SESSIONS` (default 256). The cluster is 6 private `redis-server`s (3 masters, one replica
//! each) on free ports, created with `redis-cli --cluster create`, on this one machine: every node
//! and the bench share its cores, so what this shows is the cost of an operation on a cluster
//! (commands and client work), not the scaling of a cluster whose masters have a host each.

#[path = "../tests/it/support/cluster.rs"]
mod cluster;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cluster::{RedisCluster, cli};
use common::{PrivateRedis, env_or};
use rollcall::model::{LeaveReason, Member};
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore, RedisTarget};
use rollcall::store::{InstanceId, Sessions, Store};

const INFLIGHT: usize = 64;

/// Calls executed by the servers on `ports` since the last reset, all commands together.
fn commands(ports: &[u16]) -> u64 {
    ports
        .iter()
        .map(|&p| {
            cli(p, &["INFO", "commandstats"])
                .lines()
                .filter(|l| l.starts_with("cmdstat_"))
                .filter(|l| !l.starts_with("cmdstat_info") && !l.starts_with("cmdstat_config"))
                .filter_map(|l| {
                    l.split("calls=")
                        .nth(1)?
                        .split(',')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum::<u64>()
        })
        .sum()
}

fn reset(ports: &[u16]) {
    for &p in ports {
        cli(p, &["CONFIG", "RESETSTAT"]);
    }
}

/// Join+leave cycles/s at [`INFLIGHT`] over `sessions` sessions.
async fn cycles(store: Arc<RedisStore>, sessions: usize, seconds: Duration) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..INFLIGHT)
        .map(|w| {
            let (store, stop, count) = (store.clone(), stop.clone(), count.clone());
            tokio::spawn(async move {
                let instance = store.instance().incarnation.clone();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let session = format!("bench-{}", (w + INFLIGHT * n as usize) % sessions);
                    let connection = format!("w{w}-{n}");
                    let member = Member {
                        connection: connection.clone().into(),
                        user: None,
                        name: "bench".into(),
                        avatar: None,
                        joined_at: 0,
                        instance: instance.clone(),
                        state: rollcall::model::MemberState::Present,
                        grace: None,
                    };
                    store.join(&session, member, 100_000).await.expect("join");
                    store
                        .leave(&session, &connection, LeaveReason::Left)
                        .await
                        .expect("leave");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(seconds).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for w in workers {
        w.await.expect("worker");
    }
    let n = count.load(Ordering::Relaxed);
    (n as f64 / elapsed, n)
}

/// CPU seconds (user + system) the processes `pids` used so far, from /proc.
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .sum()
}

fn pids_of(ports: &[u16]) -> Vec<u32> {
    ports
        .iter()
        .filter_map(|&p| {
            cli(p, &["INFO", "server"])
                .lines()
                .find_map(|l| l.strip_prefix("process_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !common::invoked_by_cargo_bench("cluster") {
        return;
    }
    let seconds = Duration::from_secs(env_or("BENCH_SECONDS", 5));
    let sessions: usize = env_or("BENCH_SESSIONS", 256);
    let single = PrivateRedis::start();
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("cluster");
    let masters: Vec<u16> = cluster.masters().iter().map(|m| m.port).collect();
    println!(
        "cluster bench: {INFLIGHT} in flight, {sessions} sessions, {} s per figure; one node on {}, cluster masters {masters:?}",
        seconds.as_secs(),
        single.port
    );
    println!(
        "\n| store | join+leave cycles/s | commands per operation (all, incl. in scripts) | Redis CPU ms per operation |"
    );
    println!("|---|---|---|---|");
    for (name, target, ports) in [
        (
            "one node",
            RedisTarget::Single(single.url()),
            vec![single.port],
        ),
        (
            "3-master cluster",
            RedisTarget::Cluster(cluster.urls()),
            masters.clone(),
        ),
    ] {
        let (store, _feed) = RedisStore::connect_to(
            &target,
            "bench",
            InstanceId::new("bench-cluster"),
            Duration::from_secs(30),
            DEFAULT_SESSION_TTL,
        )
        .await
        .expect("connect");
        let store = Arc::new(store);
        cycles(store.clone(), sessions, Duration::from_millis(500)).await;
        reset(&ports);
        let pids = pids_of(&ports);
        let cpu0 = cpu_seconds(&pids);
        let (rate, n) = cycles(store, sessions, seconds).await;
        let cpu = cpu_seconds(&pids) - cpu0;
        let per_op = commands(&ports) as f64 / (2 * n) as f64;
        println!(
            "| {name} | {rate:.0} | {per_op:.1} | {:.3} |",
            1000.0 * cpu / (2 * n) as f64
        );
    }
}
