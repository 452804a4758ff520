//! The two kinds of Redis connection the store runs over, behind one [`ConnectionLike`].
//!
//! A standalone server is reached through a [`ConnectionManager`], a Redis Cluster through the
//! `redis` crate's async cluster client, which routes each command by the slot of its first key
//! (scripts by their first `KEYS` entry) and follows `MOVED`/`ASK`. Everything above this module
//! (scripts, their callers, subscriptions) is written once against [`Conn`]. Both speak RESP3.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::io::tcp::TcpSettings;
use ::redis::{Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture, Value};
use tokio::sync::mpsc;

use super::{OPERATION_TIMEOUT, RedisStoreError, Result, within};

/// Where the shared store is: one server, or the seed nodes of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://host:port/…` of a standalone server.
    Single(String),
    /// `redis://host:port` of one or more nodes of a Redis Cluster (the rest are discovered).
    Cluster(Vec<String>),
}

/// A connection of either kind; cheap to clone (clones share the connection).
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Opens a connection to `target`. With `pushes`, the connection delivers its RESP3 pushes
    /// there (the subscription connection); without, pushes are dropped (the command connection).
    pub async fn open(
        target: &RedisTarget,
        pushes: Option<mpsc::UnboundedSender<PushInfo>>,
    ) -> Result<Conn> {
        match target {
            RedisTarget::Single(url) => open_single(url, pushes).await,
            RedisTarget::Cluster(urls) => open_cluster(urls, pushes).await,
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Sends one command, bounded by [`OPERATION_TIMEOUT`].
    pub async fn query(&self, cmd: &Cmd) -> Result<Value> {
        let mut conn = self.clone();
        Ok(within(cmd.query_async::<Value>(&mut conn)).await??)
    }
}

async fn open_single(url: &str, pushes: Option<mpsc::UnboundedSender<PushInfo>>) -> Result<Conn> {
    let client =
        ::redis::Client::open(resp3(url)?).map_err(|e| RedisStoreError::Url(e.to_string()))?;
    let mut config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(OPERATION_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(200));
    if let Some(pushes) = pushes {
        config = config.set_push_sender(pushes);
    }
    let conn = Conn::Single(within(ConnectionManager::new_with_config(client, config)).await??);
    // A cluster node would answer only for its own slots: say so now rather than fail later.
    let info = conn.query(::redis::cmd("INFO").arg("cluster")).await?;
    if super::reply::text(&info).is_some_and(|t| t.contains("cluster_enabled:1")) {
        return Err(RedisStoreError::Topology(format!(
            "{url} is a Redis Cluster node: use --redis-cluster-urls"
        )));
    }
    Ok(conn)
}

async fn open_cluster(
    urls: &[String],
    pushes: Option<mpsc::UnboundedSender<PushInfo>>,
) -> Result<Conn> {
    if urls.is_empty() {
        return Err(RedisStoreError::Url("no cluster node given".into()));
    }
    let nodes = urls.iter().map(|u| resp3(u)).collect::<Result<Vec<_>>>()?;
    let mut builder = ClusterClientBuilder::new(nodes)
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(OPERATION_TIMEOUT)
        .retries(3)
        .min_retry_wait(20)
        .max_retry_wait(200)
        .tcp_settings(tcp_settings());
    if let Some(pushes) = pushes {
        builder = builder.push_sender(pushes);
    }
    let client = builder
        .build()
        .map_err(|e| RedisStoreError::Url(e.to_string()))?;
    let conn = within(client.get_async_connection()).await?.map_err(|e| {
        RedisStoreError::Topology(format!(
            "the nodes {} are not a reachable Redis Cluster: {e}",
            urls.join(",")
        ))
    })?;
    let conn = Conn::Cluster(conn);
    let info = conn.query(::redis::cmd("CLUSTER").arg("INFO")).await?;
    if !super::reply::text(&info).is_some_and(|t| t.contains("cluster_state:ok")) {
        return Err(RedisStoreError::Topology(format!(
            "the Redis Cluster at {} is not in state ok",
            urls.join(",")
        )));
    }
    Ok(conn)
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection info of `url`, always speaking RESP3 (the feed needs push messages) over a
/// socket with Nagle's algorithm off.
fn resp3(url: &str) -> Result<::redis::ConnectionInfo> {
    let info = url
        .into_connection_info()
        .map_err(|e| RedisStoreError::Url(e.to_string()))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Ok(info
        .set_redis_settings(settings)
        .set_tcp_settings(tcp_settings()))
}

/// Commands are small and concurrent: with Nagle's algorithm, one sent while another is
/// unacknowledged would wait for the ACK (the `redis` crate leaves it on by default).
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}
