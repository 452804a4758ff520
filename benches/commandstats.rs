//! Measures the Redis commands one store operation costs, from `INFO commandstats` deltas on a
//! private `redis-server`: `cargo bench --bench commandstats`.
//!
//! Commands run inside a script (`redis.call`) are counted by Redis under their own names, next
//! to the top-level `evalsha`; the report splits the two.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::PrivateRedis;
use rollcall::model::{LeaveReason, Member};
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use rollcall::store::{InstanceId, Registry, Sessions, Store, Upkeep, Whose};

fn stats(server: &PrivateRedis) -> BTreeMap<String, u64> {
    server.commandstats().into_iter().collect()
}

/// Deltas, minus the calls that read them.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, calls)| {
            let mut d = calls - before.get(name).copied().unwrap_or(0);
            // The reading connection's own PING (on connect) and INFO.
            if name == "info" || name == "ping" {
                d -= 1;
            }
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

fn member(store: &RedisStore, connection: &str) -> Member {
    Member {
        connection: connection.into(),
        user: Some(format!("u-{connection}")),
        name: connection.to_owned(),
        avatar: None,
        joined_at: 0,
        instance: store.instance().incarnation.clone(),
        state: rollcall::model::MemberState::Present,
        grace: None,
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

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !common::invoked_by_cargo_bench("commandstats") {
        return;
    }
    let server = PrivateRedis::start();
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

    let before = stats(&server);
    a.join("s", member(&a, "m3"), 100).await.unwrap();
    let after = stats(&server);
    report("join (3rd member)", &delta(&before, &after));

    let before = stats(&server);
    a.leave("s", "m3", LeaveReason::Left).await.unwrap();
    let after = stats(&server);
    report("leave (non-leader)", &delta(&before, &after));

    let before = stats(&server);
    a.leave("s", "m1", LeaveReason::Left).await.unwrap();
    let after = stats(&server);
    report("leave (leader, hand-over)", &delta(&before, &after));

    let before = stats(&server);
    a.view("s").await.unwrap();
    let after = stats(&server);
    report("member list (view)", &delta(&before, &after));

    let sessions: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let before = stats(&server);
    a.counts(&sessions).await.unwrap();
    let after = stats(&server);
    report("counts of 10 sessions", &delta(&before, &after));

    // Continuity: a resume on another instance (the record moves, one member_updated), a socket
    // lost with a grace, and the grace's end.
    let (b, _feed_b) = RedisStore::connect(
        &url,
        "stats",
        InstanceId::new("b"),
        Duration::from_secs(5),
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect b");
    b.register().await.unwrap();
    b.resume("s", "m2", Some("u-m2")).await.unwrap();
    a.resume("s", "m2", Some("u-m2")).await.unwrap();
    let before = stats(&server);
    b.resume("s", "m2", Some("u-m2")).await.unwrap();
    let after = stats(&server);
    report(
        "resume (moves to another instance)",
        &delta(&before, &after),
    );
    let before = stats(&server);
    b.resume("s", "m2", Some("u-m2")).await.unwrap();
    let after = stats(&server);
    report("resume (held here already)", &delta(&before, &after));
    let grace = Duration::from_millis(1);
    let before = stats(&server);
    b.suspend(
        "s",
        Whose::Connection("m2"),
        LeaveReason::Disconnected,
        grace,
    )
    .await
    .unwrap();
    let after = stats(&server);
    report(
        "suspend (socket lost, with a grace)",
        &delta(&before, &after),
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before = stats(&server);
    b.expire_graces().await.unwrap();
    let after = stats(&server);
    report("expire_graces (one due)", &delta(&before, &after));

    // Redis CPU per operation: joins into a session of 100 members, then as many resumes that
    // move a member between two instances, each one a store step with one member_updated.
    const N: usize = 2_000;
    for i in 0..100 {
        a.join("cost", member(&a, &format!("base{i}")), 100_000)
            .await
            .unwrap();
    }
    let cpu = server.main_thread_cpu_micros();
    for i in 0..N {
        a.join("cost", member(&a, &format!("j{i}")), 100_000)
            .await
            .unwrap();
    }
    let join_cpu = server.main_thread_cpu_micros() - cpu;
    let cpu = server.main_thread_cpu_micros();
    for i in 0..N {
        let (to, user) = (if i % 2 == 0 { &b } else { &a }, "u-base0");
        to.resume("cost", "base0", Some(user)).await.unwrap();
    }
    let resume_cpu = server.main_thread_cpu_micros() - cpu;
    println!(
        "Redis main-thread CPU per operation ({N} each, session of 100+): join {:.1} µs, resume (moving) {:.1} µs",
        join_cpu as f64 / N as f64,
        resume_cpu as f64 / N as f64
    );
}
