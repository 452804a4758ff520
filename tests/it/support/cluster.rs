//! A private Redis Cluster for tests: 3 masters with one replica each, from `redis-server`
//! binaries on free ports, created with `redis-cli --cluster create`.
//!
//! Never touches the shared server on 6379: every node binds its own free port on 127.0.0.1 (and
//! the cluster bus port 10000 above it), keeps its files in the cluster's own temporary folder,
//! persists nothing, and is killed when the [`RedisCluster`] is dropped. [`shared`] hands out one
//! cluster for the whole test process (tests keep apart with their own key prefixes); a watchdog
//! process kills its nodes when the test process is gone, since a static is never dropped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long the cluster may take to form (or to recover after a test breaks it).
pub const FORM_WAIT: Duration = Duration::from_secs(60);
/// `cluster-node-timeout`: a master unreachable this long is failed over to its replica.
pub const NODE_TIMEOUT_MS: u64 = 1000;

pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    watchdog: Option<Child>,
}

/// The masters serving slots, by port, with their slot ranges: one node's view of the cluster.
type MasterView = Vec<(u16, Vec<(u16, u16)>)>;

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub failed: bool,
    /// Slot ranges (inclusive) it serves, for a master.
    pub slots: Vec<(u16, u16)>,
}

/// A port `p` free on 127.0.0.1 whose cluster bus port `p + 10000` is free too.
fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("no free port on 127.0.0.1");
        let port = l.local_addr().expect("local address").port();
        if !(1024..=55000).contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// Runs `redis-cli -p <port> args…` and returns its output (empty when it could not run).
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The process-wide shared cluster (started on first use).
pub fn shared() -> Arc<RedisCluster> {
    static SHARED: OnceLock<Arc<RedisCluster>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let mut cluster = RedisCluster::start();
            cluster.start_watchdog();
            Arc::new(cluster)
        })
        .clone()
}

impl RedisCluster {
    /// Starts six nodes, makes them a cluster of 3 masters with a replica each, and waits until
    /// every node reports `cluster_state:ok` and every replica is in sync.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut nodes: Vec<Node> = Vec::new();
        while nodes.len() < 6 {
            let port = free_port_pair();
            if nodes.iter().any(|n| n.port == port) {
                continue;
            }
            let mut node = Node { port, child: None };
            spawn(&mut node, dir.path());
            nodes.push(node);
        }
        let cluster = RedisCluster {
            nodes,
            dir,
            watchdog: None,
        };
        for node in &cluster.nodes {
            cluster.wait_for(
                Duration::from_secs(10),
                &format!("node {} to answer PING", node.port),
                || cli(node.port, &["PING"]).trim() == "PONG",
            );
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_healthy();
        cluster
    }

    /// Kills the nodes after the test process exits (for a cluster that is never dropped).
    ///
    /// A `sh -c` loop outlives this process, which no thread of it can. It needs nothing beyond a
    /// minimal Debian: `kill` is a builtin of `sh` (dash; no procps), `sleep` and `rm` are coreutils.
    fn start_watchdog(&mut self) {
        let pids: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| c.id().to_string()))
            .collect();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {pids} 2>/dev/null; rm -rf '{dir}'",
            me = std::process::id(),
            pids = pids.join(" "),
            dir = self.dir.path().display()
        );
        self.watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    /// `redis://127.0.0.1:<port>` of every node (seed nodes for the store).
    /// A store of instance `name` on this cluster under key prefix `prefix`, with leases of
    /// `lease` and the default backstop TTL.
    pub async fn store(
        &self,
        prefix: &str,
        name: &str,
        lease: Duration,
    ) -> (rollcall::store::redis::RedisStore, rollcall::store::Feed) {
        rollcall::store::redis::RedisStore::connect_to(
            &rollcall::store::redis::RedisTarget::Cluster(self.urls()),
            prefix,
            rollcall::store::InstanceId::new(name),
            lease,
            rollcall::store::redis::DEFAULT_SESSION_TTL,
        )
        .await
        .expect("connect to the cluster")
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The same, comma-separated (`--redis-cluster-urls`).
    pub fn urls_flag(&self) -> String {
        self.urls().join(",")
    }

    /// A running node, to ask about the cluster.
    fn any_live_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(|n| n.port)
            .expect("a running node")
    }

    /// `CLUSTER NODES` as a running node sees it.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        parse_nodes(&cli(self.any_live_port(), &["CLUSTER", "NODES"]))
    }

    /// The live masters that serve slots, by port.
    pub fn masters(&self) -> Vec<NodeInfo> {
        let mut masters: Vec<NodeInfo> = self
            .nodes()
            .into_iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .collect();
        masters.sort_by_key(|n| n.port);
        masters
    }

    /// The port of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> Option<u16> {
        self.masters()
            .into_iter()
            .find(|m| m.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|m| m.port)
    }

    /// Polls `done` until it holds, panicking after `within` with `what`.
    pub fn wait_for(&self, within: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < within,
                "waited {within:?} for {what}; cluster nodes:\n{}",
                cli(self.any_live_port(), &["CLUSTER", "NODES"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running node reports `cluster_state:ok` with all slots served, every
    /// node agrees on the masters, and every running replica's link to its master is up.
    pub fn wait_healthy(&self) {
        self.wait_for(FORM_WAIT, "a healthy cluster", || {
            let live: Vec<&Node> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
            let ok = live.iter().all(|n| {
                let info = cli(n.port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            let views: Vec<MasterView> = live
                .iter()
                .map(|n| {
                    let mut m: MasterView = parse_nodes(&cli(n.port, &["CLUSTER", "NODES"]))
                        .into_iter()
                        .filter(|i| i.master && !i.failed && !i.slots.is_empty())
                        .map(|i| (i.port, i.slots))
                        .collect();
                    m.sort();
                    m
                })
                .collect();
            let agree = views.windows(2).all(|w| w[0] == w[1]);
            let synced = live.iter().all(|n| {
                let info = cli(n.port, &["INFO", "replication"]);
                !info.contains("role:slave") || info.contains("master_link_status:up")
            });
            ok && agree && synced
        });
    }

    /// `kill -9` of the node on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port)
            && let Some(mut child) = node.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Moves `slot` (and its keys) to the master on port `to`, as `redis-cli --cluster reshard`
    /// does for each slot: IMPORTING/MIGRATING, MIGRATE of its keys, then SETSLOT NODE everywhere.
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        let nodes = self.nodes();
        let from = self.master_of(slot).expect("a master serves the slot");
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let id = |port: u16| {
            nodes
                .iter()
                .find(|n| n.port == port)
                .map(|n| n.id.clone())
                .expect("a node of that port")
        };
        let (from_id, to_id) = (id(from), id(to));
        let s = slot.to_string();
        let ok = |reply: String, what: &str| {
            assert!(reply.trim() == "OK", "{what}: {reply}");
        };
        ok(
            cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
            "IMPORTING",
        );
        ok(
            cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
            "MIGRATING",
        );
        loop {
            let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().copied());
            ok(cli(from, &args), "MIGRATE");
        }
        for node in nodes.iter().filter(|n| n.master && !n.failed) {
            ok(
                cli(node.port, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]),
                "SETSLOT NODE",
            );
        }
        self.wait_for(FORM_WAIT, "every node to see the migrated slot", || {
            self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                parse_nodes(&cli(n.port, &["CLUSTER", "NODES"]))
                    .iter()
                    .any(|i| i.port == to && i.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            })
        });
    }

    /// Deletes every key under `prefix` on every master (a test's own share of the cluster
    /// "loses its data").
    pub fn delete_prefix(&self, prefix: &str) {
        for master in self.masters() {
            let pattern = format!("{prefix}:*");
            let keys = cli(master.port, &["--scan", "--pattern", &pattern]);
            for key in keys.lines().filter(|l| !l.is_empty()) {
                cli(master.port, &["DEL", key]);
            }
        }
    }

    /// Deletes every key of one master (that shard "lost its data"; its replica follows).
    pub fn flush_master(&self, port: u16) {
        let reply = cli(port, &["FLUSHALL"]);
        assert_eq!(reply.trim(), "OK", "FLUSHALL on {port}: {reply}");
    }
}

fn spawn(node: &mut Node, dir: &std::path::Path) {
    let port = node.port.to_string();
    let conf = dir.join(format!("nodes-{port}.conf"));
    let child = Command::new("redis-server")
        .args(["--port", &port])
        .args(["--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", &conf.display().to_string()])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        // A replica may always take over, however long ago it last heard from its master.
        .args(["--cluster-replica-validity-factor", "0"])
        .args(["--cluster-allow-replica-migration", "no"])
        .args(["--dir", &dir.display().to_string()])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server (is it installed?)");
    node.child = Some(child);
}

/// Parses `CLUSTER NODES`.
pub fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let port = fields[1]
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let flags = fields[2];
            let slots = fields[8..]
                .iter()
                .filter(|f| !f.starts_with('['))
                .filter_map(|f| match f.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => f.parse().ok().map(|s| (s, s)),
                })
                .collect();
            Some(NodeInfo {
                id: fields[0].to_owned(),
                port,
                master: flags.contains("master"),
                failed: flags.contains("fail") && !flags.contains("fail?"),
                slots,
            })
        })
        .collect()
}

/// For each master (by port), `count` session ids whose slot it serves, made from `stem`.
pub fn sessions_on_every_master(
    cluster: &RedisCluster,
    stem: &str,
    count: usize,
) -> BTreeMap<u16, Vec<String>> {
    let masters = cluster.masters();
    let mut found: BTreeMap<u16, Vec<String>> =
        masters.iter().map(|m| (m.port, Vec::new())).collect();
    for n in 0.. {
        if found.values().all(|v| v.len() >= count) {
            break;
        }
        let session = format!("{stem}{n}");
        let slot = rollcall::store::redis::slots::slot(&format!("{{s:{session}}}"));
        if let Some(m) = masters
            .iter()
            .find(|m| m.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            && let Some(list) = found.get_mut(&m.port)
            && list.len() < count
        {
            list.push(session);
        }
    }
    found
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}
