//! Measures the Redis commands one store operation costs, from `INFO commandstats` deltas on a
//! private `redis-server`. A measurement, not a check: run it with
//! `cargo test --test redis_commandstats -- --ignored --nocapture`.
//!
//! Commands run inside a script (`redis.call`) are counted by Redis under their own names, next
//! to the top-level `evalsha`; the report splits the two.

#[path = "support/redis.rs"]
mod redis_support;

use std::collections::BTreeMap;
use std::time::Duration;

use rollcall::model::{LeaveReason, Member};
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use rollcall::store::{InstanceId, Store};

use redis_support::RedisServer;

fn commandstats(url: &str) -> BTreeMap<String, u64> {
    let client = redis::Client::open(url).expect("url");
    let mut conn = client.get_connection().expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Deltas, minus the INFO call that reads them.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, calls)| {
            let mut d = calls - before.get(name).copied().unwrap_or(0);
            if name == "info" {
                d -= 1;
            }
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

fn member(store: &RedisStore, connection: &str) -> Member {
    Member {
        connection: connection.to_owned(),
        user: Some(format!("u-{connection}")),
        name: connection.to_owned(),
        avatar: None,
        joined_at: 0,
        instance: store.instance().incarnation.clone(),
    }
}

/// Top-level commands of the store's operations are `evalsha` plus what is pipelined with it;
/// everything else in the delta ran inside the script.
const TOP_LEVEL: [&str; 4] = ["evalsha", "sadd", "smembers", "zrangebylex"];

fn report(what: &str, d: &BTreeMap<String, u64>) {
    let top: u64 = d
        .iter()
        .filter(|(n, _)| TOP_LEVEL.contains(&n.as_str()))
        .map(|(_, c)| c)
        .sum();
    let inner: Vec<String> = d
        .iter()
        .filter(|(n, _)| !TOP_LEVEL.contains(&n.as_str()))
        .map(|(n, c)| format!("{n}×{c}"))
        .collect();
    let top_list: Vec<String> = d
        .iter()
        .filter(|(n, _)| TOP_LEVEL.contains(&n.as_str()))
        .map(|(n, c)| format!("{n}×{c}"))
        .collect();
    println!(
        "{what}: {top} top-level ({}); inside the script: {} ({} commands)",
        top_list.join(", "),
        inner.join(", "),
        d.iter()
            .filter(|(n, _)| !TOP_LEVEL.contains(&n.as_str()))
            .map(|(_, c)| c)
            .sum::<u64>()
    );
}

#[tokio::test]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn commands_per_operation() {
    let server = RedisServer::start();
    let url = server.url();
    let (a, _feed) = RedisStore::connect(
        &url,
        "stats",
        InstanceId::new("a"),
        Duration::from_secs(5),
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect");
    a.register().await.unwrap();
    // Warm up: scripts loaded, a session with two members.
    a.join("s", member(&a, "m1"), 100).await.unwrap();
    a.join("s", member(&a, "m2"), 100).await.unwrap();
    a.leave("s", "m2", LeaveReason::Left).await.unwrap();
    a.view("s").await.unwrap();
    a.counts(&["s".into()]).await.unwrap();
    a.join("s", member(&a, "m2"), 100).await.unwrap();

    let before = commandstats(&url);
    a.join("s", member(&a, "m3"), 100).await.unwrap();
    let after = commandstats(&url);
    report("join (3rd member)", &delta(&before, &after));

    let before = commandstats(&url);
    a.leave("s", "m3", LeaveReason::Left).await.unwrap();
    let after = commandstats(&url);
    report("leave (non-leader)", &delta(&before, &after));

    let before = commandstats(&url);
    a.leave("s", "m1", LeaveReason::Left).await.unwrap();
    let after = commandstats(&url);
    report("leave (leader, hand-over)", &delta(&before, &after));

    let before = commandstats(&url);
    a.view("s").await.unwrap();
    let after = commandstats(&url);
    report("member list (view)", &delta(&before, &after));

    let sessions: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let before = commandstats(&url);
    a.counts(&sessions).await.unwrap();
    let after = commandstats(&url);
    report("counts of 10 sessions", &delta(&before, &after));
}
