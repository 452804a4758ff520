//! Real `rollcall` processes for tests that crash, restart or partition an instance.
//!
//! Each process listens on a free loopback port and logs to a file in its own temporary folder;
//! when a wait fails, the panic message carries the tail of that log. Dropping a process kills it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::redis::free_port;
use super::server::http_get;

/// Liveness flags for multi-process tests that want a lost instance noticed fast: heartbeat
/// 200 ms, lease 1 s.
pub const FAST_LIVENESS: [&str; 4] = ["--heartbeat-ms", "200", "--lease-ms", "1000"];

/// How long a process may take to become ready.
pub const READY_WAIT: Duration = Duration::from_secs(20);

pub struct RollcallProcess {
    pub name: String,
    pub addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    /// `--redis-url URL`, or `--redis-cluster-urls NODES`.
    store: [String; 2],
    _dir: tempfile::TempDir,
}

/// Flags every test process gets: its loopback port, the shared Redis, its name. (Its own SQLite
/// file comes through `DATABASE_URL`.)
fn base_args(addr: SocketAddr, store: &[String; 2], name: &str) -> Vec<String> {
    vec![
        "--bind".into(),
        addr.to_string(),
        store[0].clone(),
        store[1].clone(),
        "--instance-name".into(),
        name.into(),
    ]
}

impl RollcallProcess {
    /// Starts `rollcall` against `redis_url` and waits until `/readyz` answers 200.
    pub async fn start(redis_url: &str, name: &str, extra: &[&str]) -> RollcallProcess {
        let store = ["--redis-url".to_owned(), redis_url.to_owned()];
        Self::start_with(store, name, extra).await
    }

    /// Starts `rollcall` against the Redis Cluster of `nodes` (comma-separated seed URLs).
    pub async fn start_on_cluster(nodes: &str, name: &str, extra: &[&str]) -> RollcallProcess {
        let store = ["--redis-cluster-urls".to_owned(), nodes.to_owned()];
        Self::start_with(store, name, extra).await
    }

    async fn start_with(store: [String; 2], name: &str, extra: &[&str]) -> RollcallProcess {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("loopback address");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let log = dir.path().join("rollcall.log");
        let mut process = RollcallProcess {
            name: name.to_owned(),
            addr,
            child: None,
            log,
            store,
            _dir: dir,
        };
        process.spawn(extra);
        process.wait_ready().await;
        process
    }

    fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the process log");
        let db = self._dir.path().join("rollcall.db");
        let mut args = base_args(self.addr, &self.store, &self.name);
        if !extra.contains(&"--resume-grace-ms") {
            // The bound tests measure how fast a lost member is removed; grace tests set their own.
            args.extend(["--resume-grace-ms".to_owned(), "0".to_owned()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(&args)
            .env("RUST_LOG", "info,rollcall=debug")
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the rollcall binary");
        self.child = Some(child);
    }

    /// Starts a new process under the same name and port (a restart after a crash or a stop).
    pub async fn restart(&mut self, redis_url: &str, extra: &[&str]) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.store = ["--redis-url".to_owned(), redis_url.to_owned()];
        self.spawn(extra);
        self.wait_ready().await;
    }

    /// Starts a new process under the same name, port and store (cluster or not).
    pub async fn restart_same(&mut self, extra: &[&str]) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.spawn(extra);
        self.wait_ready().await;
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// Whether the process's log so far contains `text`.
    pub fn log_contains(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(text))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok()
                && http_get(self.addr, "/readyz").await.0 == 200
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} was not ready within {READY_WAIT:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no goodbye, no lease removal.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit (graceful stop), at most `within`.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the process is running");
        let pid = i32::try_from(child.id()).expect("a pid fits in pid_t");
        if let Err(errno) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}: SIGTERM to pid {pid} failed: {errno}", self.name);
        }
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not stop within {within:?} after SIGTERM:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for RollcallProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
