//! Store-level throughput (not a test): join+leave cycles of the Redis store against a private
//! `redis-server`, with 1 and 64 operations in flight on one `RedisStore` (one instance's handle,
//! one multiplexed connection), and, in the same run against the same server, the ceiling that
//! `redis-benchmark` reaches with an `EVALSHA` of a script doing the same kinds and number of
//! commands as `join.lua` (pipelining off).
//!
//! Run: `cargo bench --bench store`. Environment: `BENCH_SECONDS` per measured run (default 5),
//! `BENCH_RUNS` runs per figure (default 3; medians are reported), `BENCH_SESSIONS` sessions the
//! cycles spread over (default 16), `BENCH_CEILING_REQUESTS` for `redis-benchmark -n` at 64
//! clients (default 200000; a tenth of it at 1 client).
//!
//! A join and a leave are one script call each (the instance's session set gets its `SADD` when
//! the engine subscribes, which this bench does not do), so one cycle is two scripted operations;
//! the ceiling fraction compares operations/s with `EVALSHA`/s.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{PrivateRedis, env_or, histogram, median_spread, ms};
use rollcall::model::{LeaveReason, Member};
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use rollcall::store::{InstanceId, Sessions, Store};

/// The stand-in for `join.lua` that `redis-benchmark` runs: the same kinds and number of commands
/// as a join into a session that has members (header read, duplicate check, size check, TIME,
/// latest join read, record write with cjson, two zset adds, counter, leader check, header write,
/// PUBLISH of the JSON change, view read): 13 commands, where a join does 13–14 and a leave 9–11.
/// `redis-benchmark` sends the same member every time, so the writes overwrite one entry and
/// every call sees the same sizes.
const CEILING_SCRIPT: &str = r#"
local META, MEMBERS, ORDER, BYINST = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local h = redis.call('HMGET', META, 'version', 'epoch', 'leader', 'ended_at')
if h[4] then return { 'ended' } end
local m = cjson.decode(ARGV[1])
redis.call('HEXISTS', MEMBERS, m.connection)
redis.call('HLEN', MEMBERS)
local t = redis.call('TIME')
m.joined_at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZRANGE', ORDER, -1, -1, 'WITHSCORES')
redis.call('HSET', MEMBERS, m.connection, cjson.encode(m))
redis.call('ZADD', ORDER, m.joined_at, m.connection)
redis.call('ZADD', BYINST, 0, m.instance .. '\0' .. m.connection)
redis.call('HINCRBY', META, 'anonymous', 1)
local leader = h[3] or m.connection
redis.call('HEXISTS', MEMBERS, leader)
local version = (tonumber(h[1]) or 0) + 1
redis.call('HSET', META, 'version', version, 'epoch', 1, 'leader', leader)
local msg = cjson.encode({ session = 'ceiling', origin = m.instance, body = { kind = 'change',
  version = version, leader = leader, epoch = 1, events = { { type = 'member_joined', member = m } } } })
redis.call('PUBLISH', ARGV[2], msg)
local members = redis.call('HVALS', MEMBERS)
return { 'ok', msg, tostring(version), leader, '1', '', members[1] }
"#;

struct RunResult {
    cycles_per_s: f64,
    join_p50: f64,
    join_p99: f64,
    leave_p50: f64,
    leave_p99: f64,
}

fn member(instance: &str, connection: String) -> Member {
    Member {
        connection: connection.into(),
        user: None,
        name: "Bench Participant".to_owned(),
        avatar: None,
        joined_at: 0,
        instance: instance.into(),
        state: rollcall::model::MemberState::Present,
        grace: None,
    }
}

/// `inflight` workers each run join+leave cycles back to back for `warmup + seconds`; only the
/// cycles that start after the warm-up are counted.
async fn run(
    store: Arc<RedisStore>,
    inflight: usize,
    sessions: usize,
    warmup: Duration,
    seconds: Duration,
) -> RunResult {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..inflight {
        let (store, counting, stop, cycles) = (
            store.clone(),
            counting.clone(),
            stop.clone(),
            cycles.clone(),
        );
        workers.push(tokio::spawn(async move {
            let (mut join_h, mut leave_h) = (histogram(), histogram());
            let instance = store.instance().incarnation.clone();
            let session = format!("bench-{}", w % sessions);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let connection = format!("w{w}-{n}");
                let counted = counting.load(Ordering::Relaxed);
                let t0 = Instant::now();
                store
                    .join(&session, member(&instance, connection.clone()), 100_000)
                    .await
                    .expect("join");
                let t1 = Instant::now();
                store
                    .leave(&session, &connection, LeaveReason::Left)
                    .await
                    .expect("leave")
                    .expect("was a member");
                if counted {
                    join_h.saturating_record((t1 - t0).as_micros() as u64);
                    leave_h.saturating_record(t1.elapsed().as_micros() as u64);
                    cycles.fetch_add(1, Ordering::Relaxed);
                }
            }
            (join_h, leave_h)
        }));
    }
    tokio::time::sleep(warmup).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(seconds).await;
    let counted = cycles.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut join_h, mut leave_h) = (histogram(), histogram());
    for worker in workers {
        let (j, l) = worker.await.expect("worker");
        join_h.add(&j).expect("merge");
        leave_h.add(&l).expect("merge");
    }
    RunResult {
        cycles_per_s: counted as f64 / elapsed,
        join_p50: ms(join_h.value_at_quantile(0.5)),
        join_p99: ms(join_h.value_at_quantile(0.99)),
        leave_p50: ms(leave_h.value_at_quantile(0.5)),
        leave_p99: ms(leave_h.value_at_quantile(0.99)),
    }
}

struct Ceiling {
    rps: f64,
    p50: f64,
    p99: f64,
}

/// One `redis-benchmark` run of the ceiling script (`--csv`: rps and latency columns).
fn ceiling(port: u16, clients: usize, requests: usize, sha: &str, member_json: &str) -> Ceiling {
    let keys = ["meta", "members", "order", "byinst", "users"].map(|k| format!("c:{{s:x}}:{k}"));
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &clients.to_string(), "-n", &requests.to_string()])
        .args(["-P", "1", "--csv", "EVALSHA", sha, "5"])
        .args(&keys)
        .args([member_json, "c:{s:x}:events"])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&output.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("\"EVALSHA"))
        .unwrap_or_else(|| panic!("no result row from redis-benchmark: {text}"));
    // The test name (the command line) contains commas and quotes itself: read the last seven
    // columns, rps, avg, min, p50, p95, p99, max.
    let mut cols: Vec<f64> = row
        .rsplit(',')
        .take(7)
        .map(|c| c.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    cols.reverse();
    Ceiling {
        rps: cols[0],
        p50: cols[3],
        p99: cols[5],
    }
}

/// Calls per `evalsha`, from `INFO commandstats` (commands run inside scripts are counted there).
fn commands_per_script(redis: &PrivateRedis) -> f64 {
    let stats = redis.commandstats();
    let evalsha: u64 = stats
        .iter()
        .filter(|(n, _)| n == "evalsha")
        .map(|(_, c)| c)
        .sum();
    let inner: u64 = stats
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "evalsha" | "sadd" | "config" | "info" | "script"
            )
        })
        .map(|(_, c)| c)
        .sum();
    inner as f64 / evalsha.max(1) as f64
}

fn fmt_spread(s: f64) -> String {
    format!("±{:.0}%", s * 50.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !common::invoked_by_cargo_bench("store") {
        return;
    }
    let seconds = Duration::from_secs(env_or("BENCH_SECONDS", 5));
    let runs: usize = env_or("BENCH_RUNS", 3);
    let sessions: usize = env_or("BENCH_SESSIONS", 16);
    let requests: usize = env_or("BENCH_CEILING_REQUESTS", 200_000);
    let redis = PrivateRedis::start();
    println!(
        "store bench: private redis-server on 127.0.0.1:{}, {runs} runs of {} s per figure, cycles over {sessions} sessions",
        redis.port,
        seconds.as_secs()
    );
    let (store, _feed) = RedisStore::connect(
        &redis.url(),
        "bench",
        InstanceId::new("bench-store"),
        Duration::from_secs(30),
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect the store");
    let store = Arc::new(store);

    // The ceiling runs on the same server, in the same run, each right after the rollcall run it
    // is compared with, so that both see the same machine (it is shared and noisy).
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(CEILING_SCRIPT)
        .query(&mut redis.sync())
        .expect("SCRIPT LOAD");
    let member_json = serde_json::to_string(&member(
        &store.instance().incarnation,
        "w0-123456".to_owned(),
    ))
    .expect("member JSON");
    let mut rows = Vec::new();
    let mut ceilings = Vec::new();
    for (inflight, n) in [(1usize, requests / 10), (64, requests)] {
        let (mut results, mut ceil) = (Vec::new(), Vec::new());
        let (mut per_script, mut ceil_cmds) = (0.0, 0.0);
        for i in 0..runs {
            redis.reset_stats();
            let r = run(
                store.clone(),
                inflight,
                sessions,
                Duration::from_millis(500),
                seconds,
            )
            .await;
            per_script = commands_per_script(&redis);
            eprintln!(
                "  … {inflight} in flight, run {}: {:.0} cycles/s, join p50 {:.2} ms p99 {:.2} ms, leave p50 {:.2} ms p99 {:.2} ms",
                i + 1,
                r.cycles_per_s,
                r.join_p50,
                r.join_p99,
                r.leave_p50,
                r.leave_p99
            );
            redis.reset_stats();
            let c = ceiling(redis.port, inflight, n, &sha, &member_json);
            ceil_cmds = commands_per_script(&redis);
            eprintln!(
                "  … redis-benchmark EVALSHA -c {inflight} -n {n}, run {}: {:.0} calls/s, p50 {:.2} ms p99 {:.2} ms; rollcall operations at {:.0}% of it",
                i + 1,
                c.rps,
                c.p50,
                c.p99,
                200.0 * r.cycles_per_s / c.rps
            );
            results.push(r);
            ceil.push(c);
        }
        rows.push((inflight, results, per_script));
        ceilings.push((inflight, ceil, ceil_cmds));
    }

    println!(
        "\n| figure | in flight | median | spread (±half range) | p50 / p99 (median of runs) |"
    );
    println!("|---|---|---|---|---|");
    let mut summary = Vec::new();
    for ((inflight, results, per_script), (_, ceil, ceil_cmds)) in rows.iter().zip(&ceilings) {
        let (cps, cps_s) =
            median_spread(&results.iter().map(|r| r.cycles_per_s).collect::<Vec<_>>());
        let med =
            |f: fn(&RunResult) -> f64| median_spread(&results.iter().map(f).collect::<Vec<_>>()).0;
        let (crps, crps_s) = median_spread(&ceil.iter().map(|c| c.rps).collect::<Vec<_>>());
        let cmed =
            |f: fn(&Ceiling) -> f64| median_spread(&ceil.iter().map(f).collect::<Vec<_>>()).0;
        println!(
            "| rollcall join+leave cycles/s | {inflight} | {cps:.0} | {} | join {:.2} / {:.2} ms; leave {:.2} / {:.2} ms |",
            fmt_spread(cps_s),
            med(|r| r.join_p50),
            med(|r| r.join_p99),
            med(|r| r.leave_p50),
            med(|r| r.leave_p99)
        );
        println!(
            "| rollcall script operations/s (2 per cycle; {per_script:.1} commands each) | {inflight} | {:.0} | {} | |",
            2.0 * cps,
            fmt_spread(cps_s)
        );
        println!(
            "| redis-benchmark EVALSHA ceiling calls/s ({ceil_cmds:.1} commands each) | {inflight} | {crps:.0} | {} | {:.2} / {:.2} ms |",
            fmt_spread(crps_s),
            cmed(|c| c.p50),
            cmed(|c| c.p99)
        );
        let fractions: Vec<f64> = results
            .iter()
            .zip(ceil)
            .map(|(r, c)| 2.0 * r.cycles_per_s / c.rps)
            .collect();
        summary.push((*inflight, cps, median_spread(&fractions)));
    }
    println!();
    for (inflight, cps, (fraction, spread)) in summary {
        println!(
            "{inflight} in flight: {cps:.0} join+leave cycles/s; operations at {:.0}% of the EVALSHA ceiling (median of per-run ratios, {})",
            fraction * 100.0,
            fmt_spread(spread)
        );
    }
}
