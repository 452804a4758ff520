//! What the Redis benches share: a private `redis-server` on a free port (never the shared one on
//! 6379), a guard so that `cargo test --benches` does not run a benchmark, and small statistics.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Benchmarks are not tests. `cargo bench` passes `--bench` to a `harness = false` target;
/// `cargo test --benches` (or `--all-targets`) does not. Returns false (and says why) in the second
/// case, so the bench exits at once instead of measuring.
pub fn invoked_by_cargo_bench(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    eprintln!("{name}: a benchmark, not a test; run it with `cargo bench --bench {name}`");
    false
}

/// A private, empty `redis-server` on a free 127.0.0.1 port, persisting nothing, killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl PrivateRedis {
    /// Starts it (with `DEBUG` enabled for `DEBUG POPULATE`) and waits until it answers PING.
    pub fn start() -> PrivateRedis {
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--enable-debug-command", "yes"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server (is it installed?)");
            let mut server = PrivateRedis { port, child };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if server.connection().is_some() {
                    return server;
                }
                if let Ok(Some(_)) = server.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        panic!("could not start a private redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }

    /// A plain synchronous connection for set-up commands.
    pub fn sync(&self) -> redis::Connection {
        self.connection()
            .expect("connect to the private redis-server")
    }

    /// Calls per command from `INFO commandstats` (`evalsha`, `hset`, ...).
    pub fn commandstats(&self) -> Vec<(String, u64)> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.sync())
            .expect("INFO commandstats");
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

    /// CPU time the server's main thread has used, in microseconds (`INFO cpu`).
    pub fn main_thread_cpu_micros(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query(&mut self.sync())
            .expect("INFO cpu");
        let seconds: f64 = info
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                matches!(
                    name,
                    "used_cpu_sys_main_thread" | "used_cpu_user_main_thread"
                )
                .then(|| value.trim().parse::<f64>().ok())?
            })
            .sum();
        (seconds * 1e6) as u64
    }

    pub fn reset_stats(&self) {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut self.sync())
            .expect("CONFIG RESETSTAT");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Median of a few runs, and the spread as (max - min) / median.
pub fn median_spread(values: &[f64]) -> (f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.is_empty() {
        0.0
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let spread = match (v.first(), v.last()) {
        (Some(lo), Some(hi)) if median > 0.0 => (hi - lo) / median,
        _ => 0.0,
    };
    (median, spread)
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}
