//! Server memory per idle WebSocket, measured on a real `rollcall` process from its resident set
//! size. This guards the patched actix-http (`vendor/actix-http`): without it, every connection
//! keeps an 8 KiB read and an 8 KiB write buffer, and members of busy sessions keep more
//! (docs/benchmarks-history.md §3c: 17.8–22.6 KiB each instead of 8.7–10.9).

use crate::support::process::RollcallProcess;
use crate::support::redis::RedisServer;
use crate::support::ws::WsClient;
use futures_util::future::join_all;

/// The bound for 10,000 idle connections, per connection.
const BOUND_KIB: u64 = 16;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the server's /proc status is readable");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

const PER_SESSION: usize = 100;

/// Opens `count` connections, 50 at a time, each joined to one of the sessions `prefix-0..`,
/// 100 members per session (a busy session's events and `joined` lists are what grew the
/// buffers). Returns once the first member of every session has seen its session's last join.
async fn open_joined(url: &str, prefix: &str, count: usize) -> Vec<WsClient> {
    let mut clients = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for chunk in 0..count.div_ceil(50) {
        let batch = (chunk * 50..((chunk + 1) * 50).min(count)).map(|i| async move {
            let mut client = WsClient::connect(url).await;
            let joined = client.join(&format!("{prefix}-{}", i / PER_SESSION)).await;
            let id = joined["you"].as_str().expect("joined names you").to_owned();
            (client, id)
        });
        for (client, id) in join_all(batch).await {
            clients.push(client);
            ids.push(id);
        }
    }
    for first in (0..count).step_by(PER_SESSION) {
        let last = ids[(first + PER_SESSION).min(count) - 1].clone();
        clients[first]
            .expect("the session's last join", |f| {
                f["type"] == "member_joined" && f["member"]["connection"] == last.as_str()
            })
            .await;
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_in_busy_sessions_hold_at_most_16_kib_of_server_memory_each() {
    let redis = RedisServer::start();
    let server = RollcallProcess::start(&redis.url(), "idle-memory", &[]).await;
    let pid = server.pid().expect("the server runs");
    let url = server.ws_url();
    // Warm up first, so that one-time growth (thread caches, maps) is not counted per connection.
    let _warm = open_joined(&url, "warm", 200).await;
    let before = rss_kib(pid);
    let count = 1_000;
    let clients = open_joined(&url, "idle", count).await;
    let after = rss_kib(pid);
    let per_connection = (after.saturating_sub(before)) as f64 / count as f64;
    println!(
        "{count} idle connections: RSS {before} KiB → {after} KiB, {per_connection:.1} KiB each"
    );
    assert!(
        per_connection <= BOUND_KIB as f64,
        "{per_connection:.1} KiB of server memory per idle connection (RSS {before} → {after} KiB \
         for {count}); the bound is {BOUND_KIB} KiB"
    );
    drop(clients);
}
