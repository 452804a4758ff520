//! A private `redis-server` per test, on a free port, that the test may kill and restart.
//!
//! Never touches the shared server on 6379: every [`RedisServer`] binds its own free port on
//! 127.0.0.1, persists nothing, and is killed when dropped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollcall::model::{Member, SessionView};
use rollcall::store::redis::RedisStore;
use rollcall::store::{Feed, InstanceId, Sessions, Store};

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read the port, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl RedisServer {
    /// A store of instance `name` on this server: key prefix `rc`, 5 s leases, backstop TTL `ttl`.
    pub async fn store(&self, name: &str, ttl: Duration) -> (RedisStore, Feed) {
        self.store_under("rc", name, ttl).await
    }

    /// A store of instance `name` on this server under key prefix `prefix` (a `rollcall`
    /// process's default is `rollcall`): 5 s leases, backstop TTL `ttl`.
    pub async fn store_under(&self, prefix: &str, name: &str, ttl: Duration) -> (RedisStore, Feed) {
        RedisStore::connect(
            &self.url(),
            prefix,
            InstanceId::new(name),
            Duration::from_secs(5),
            ttl,
        )
        .await
        .expect("connect to the private redis")
    }

    /// Starts a fresh, empty server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            let mut server = RedisServer {
                port: free_port(),
                child: None,
            };
            if server.spawn().is_ok() {
                return server;
            }
        }
        panic!("could not start a private redis-server (is redis-server installed?)");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/` (the store adds `protocol=resp3` itself).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("redis-server exited: {status}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        Err(format!("redis-server on {} did not answer PING", self.port))
    }

    /// True when the server answers PING with PONG.
    pub fn ping(&self) -> bool {
        self.query::<String>(&["PING"])
            .is_ok_and(|reply| reply == "PONG")
    }

    /// Sends one command on a fresh connection (the server may have been restarted meanwhile)
    /// and decodes the reply as `T`.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let (name, rest) = args.split_first().expect("a command name");
        redis::cmd(name).arg(rest).query(&mut conn)
    }

    /// Calls of `command` (scripts' own commands included) since the last [`Self::reset_stats`].
    pub fn calls(&self, command: &str) -> u64 {
        let stats: String = self.query(&["INFO", "commandstats"]).expect("INFO");
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().expect("a count"))
    }

    /// Zeroes the command counters (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        let _: String = self.query(&["CONFIG", "RESETSTAT"]).expect("RESETSTAT");
    }

    /// Empties the server (Redis "lost its data").
    pub fn flushall(&self) {
        if let Err(e) = self.query::<()>(&["FLUSHALL"]) {
            panic!("FLUSHALL failed: {e}");
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stalls the server (SIGSTOP): connections stay open, nothing is answered, and what is
    /// sent meanwhile runs when it is resumed.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Resumes a server stalled by [`RedisServer::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the redis-server is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if let Err(errno) = nix::sys::signal::kill(pid, signal) {
            panic!("{signal} to redis-server {}: {errno}", child.id());
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server again, empty, on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port may linger for a moment after the kill.
                Err(e) if Instant::now() > deadline => panic!("restart redis-server: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A member of `store`'s instance, signed in as `user` or anonymous.
pub fn member(store: &RedisStore, connection: &str, user: Option<&str>) -> Member {
    let mut m = super::members::member(connection, &store.instance().incarnation);
    m.user = user.map(str::to_owned);
    m
}

/// The store's whole view of a session that exists.
pub async fn view(store: &RedisStore, session: &str) -> SessionView {
    store
        .view(session)
        .await
        .expect("view")
        .expect("the session exists")
}
