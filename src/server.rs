//! Wires the store, the engine and the HTTP server together, and stops them in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::{App, HttpServer, web};

use crate::auth::{AuthSettings, Authenticator};
use crate::config::ServeArgs;
use crate::engine::{Engine, EngineSettings};
use crate::http::{self, AppState};
use crate::liveness::{Liveness, LivenessError};
use crate::persistence::{DatabaseError, Persistence, PersistenceSettings};
use crate::store::memory::MemoryBackend;
use crate::store::redis::{DEFAULT_SESSION_TTL, RedisStore, RedisTarget};
use crate::store::{Feed, InstanceId, Outbox, Store, StoreError};
use crate::webhooks::{self, Deliverer, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not open the shared store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Liveness settings that do not work together ([`Liveness::from_args`]). The message is the
    /// [`LivenessError`]'s, not repeated as a source, so that the binary prints it once.
    #[error("invalid configuration: {0}")]
    Liveness(LivenessError),
    #[error("could not start the webhook deliverer: {0}")]
    Webhooks(#[from] TransportError),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl From<LivenessError> for ServerError {
    fn from(error: LivenessError) -> ServerError {
        ServerError::Liveness(error)
    }
}

/// Opens the store the arguments name: Redis when `--redis-url` is set, a Redis Cluster when
/// `--redis-cluster-urls` is, else in-process.
pub async fn open_store(
    args: &ServeArgs,
    instance: InstanceId,
) -> Result<(Arc<dyn Store>, Feed), ServerError> {
    match redis_target(args)? {
        None => {
            let (store, feed) = MemoryBackend::new(args.lease()).connect(instance);
            Ok((Arc::new(store), feed))
        }
        Some(target) => {
            let (store, feed) = RedisStore::connect_to(
                &target,
                &args.key_prefix,
                instance,
                args.lease(),
                DEFAULT_SESSION_TTL,
            )
            .await?;
            Ok((Arc::new(store), feed))
        }
    }
}

/// The Redis the arguments name, if any; both kinds at once is a configuration error.
fn redis_target(args: &ServeArgs) -> Result<Option<RedisTarget>, ServerError> {
    let nodes: Vec<String> = args
        .redis_cluster_urls
        .iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    match (&args.redis_url, nodes.is_empty()) {
        (Some(_), false) => Err(ServerError::Config(
            "--redis-url and --redis-cluster-urls are exclusive: give one server or the nodes of \
             one cluster"
                .into(),
        )),
        (Some(url), true) => Ok(Some(RedisTarget::Single(url.clone()))),
        (None, false) => Ok(Some(RedisTarget::Cluster(nodes))),
        (None, true) => Ok(None),
    }
}

/// A server listening and serving. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub engine: Engine,
    /// The participation records, when this server has a database.
    pub persistence: Option<Persistence>,
    /// The webhook deliverer, when `--webhook-url` is set.
    pub webhooks: Option<Addr<Deliverer>>,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown_timeout: Duration,
}

impl RunningServer {
    /// Graceful stop: members leave with `shutdown`, clients get 1012, the participation records
    /// are flushed and the webhooks delivered (what is left when the deadline passes is logged,
    /// or stays in the shared store for another instance), then the listener closes.
    pub async fn shutdown(self) {
        let started = Instant::now();
        if tokio::time::timeout(self.shutdown_timeout, self.engine.shutdown())
            .await
            .is_err()
        {
            tracing::error!("graceful shutdown did not finish in time; stopping anyway");
        }
        // The rest of the stop deadline, but at least a moment for a healthy database or receiver.
        let deadline = self
            .shutdown_timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(500));
        let records = async {
            if let Some(persistence) = &self.persistence {
                persistence.shutdown(deadline).await;
            }
        };
        let hooks = async {
            if let Some(deliverer) = &self.webhooks {
                stop_webhooks(deliverer, deadline).await;
            }
        };
        futures_util::future::join(records, hooks).await;
        self.handle.stop(true).await;
        let _ = self.task.await;
    }

    /// Waits until the HTTP server stops by itself.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Delivers what is pending for at most `deadline`, then stops the deliverer.
async fn stop_webhooks(deliverer: &Addr<Deliverer>, deadline: Duration) {
    if tokio::time::timeout(deadline, deliverer.send(webhooks::Drain))
        .await
        .is_err()
    {
        tracing::warn!("webhooks: events still pending at the stop");
    }
    deliverer.do_send(webhooks::Stop);
}

/// Starts the engine and the HTTP server on `args.bind` (port 0 picks a free port). A configuration
/// that must not run (`check_auth`, [`Liveness::from_args`], the webhook flags) is refused before
/// anything opens.
pub async fn start(args: &ServeArgs) -> Result<RunningServer, ServerError> {
    // The configuration first: nothing is opened for a server that must not start.
    check_auth(args)?;
    Liveness::from_args(args)?;
    let hooks = check_webhooks(args)?;
    let settings = EngineSettings::from_args(args);
    let instance = InstanceId::new(settings.instance_name.clone());
    let persistence = Persistence::open(&args.database_url, PersistenceSettings::default()).await?;
    let (store, feed) = open_store(args, instance).await?;
    // Before the engine starts: the members it reaps from dead instances are changes too.
    store.keep_outbox(hooks.is_some());
    let engine =
        Engine::start_with_recorder(store, feed, &settings, Some(persistence.recorder())).await?;
    start_http_with(engine, Some(persistence), args).await
}

/// Reads the sign-in settings, refusing a configuration that cannot run or would lock everyone
/// out.
fn check_auth(args: &ServeArgs) -> Result<AuthSettings, ServerError> {
    let settings = AuthSettings::from_args(args).map_err(|e| ServerError::Config(e.to_string()))?;
    let verifies =
        settings.secret.is_some() || settings.public_key.is_some() || settings.jwks.is_some();
    if !args.allow_anonymous && !verifies {
        return Err(ServerError::Config(
            "--allow-anonymous=false needs --jwt-secret (ROLLCALL_JWT_SECRET), \
             --jwt-public-key-file or --jwt-jwks-url: without one every connection is anonymous"
                .into(),
        ));
    }
    Ok(settings)
}

/// The webhook settings, or the configuration error that names the flags.
fn check_webhooks(args: &ServeArgs) -> Result<Option<webhooks::WebhookSettings>, ServerError> {
    args.webhooks()
        .map_err(|e| ServerError::Config(e.to_string()))
}

/// Serves an already started engine over HTTP, without a database.
pub async fn start_http(engine: Engine, args: &ServeArgs) -> Result<RunningServer, ServerError> {
    start_http_with(engine, None, args).await
}

/// Serves an already started engine over HTTP; `persistence` (whose recorder the engine should
/// have been started with) answers `/api/me/sessions` and the records of finished sessions.
pub async fn start_http_with(
    engine: Engine,
    persistence: Option<Persistence>,
    args: &ServeArgs,
) -> Result<RunningServer, ServerError> {
    crate::metrics::install();
    let auth = Arc::new(Authenticator::from_settings(check_auth(args)?));
    if let Some(jwks) = auth.jwks() {
        // Fetched before the first sign-in can ask (bounded by the fetch's own timeout; an
        // endpoint that is down is asked again by the first token it must verify).
        jwks.fetch().await;
    }
    Liveness::from_args(args)?;
    let hooks = check_webhooks(args)?;
    let state = AppState {
        engine: engine.clone(),
        max_message_bytes: args.max_message_bytes,
        allowed_origins: Arc::new(
            args.allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        ),
        auth,
        persistence: persistence.clone(),
        api_keys: Arc::new(http::server_api::ApiKeys::new(&args.api_key)),
        metrics_token: Arc::new(http::server_api::ApiKeys::new(
            args.metrics_token.as_slice(),
        )),
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(|cfg| http::configure(cfg, &state.allowed_origins))
    })
    .disable_signals()
    // Every frame is small and latency-bound: Nagle would hold a frame that follows another
    // until the client's (delayed) ACK, up to 40 ms.
    .tcp_nodelay(true)
    .workers(args.workers.map_or_else(default_workers, usize::from))
    .shutdown_timeout(5)
    .bind(args.bind)
    .map_err(|source| ServerError::Bind {
        addr: args.bind,
        source,
    })?;
    let addr = server.addrs().first().copied().unwrap_or(args.bind);
    let deliverer = match hooks {
        Some(settings) => {
            let store = engine.store().clone();
            // Already on when [`start`] opened the store; an engine started elsewhere keeps
            // what it changes from now on.
            store.keep_outbox(true);
            let outbox: Arc<dyn Outbox> = store;
            Some(webhooks::start(outbox, &settings)?)
        }
        None => None,
    };
    let server = server.run();
    let handle = server.handle();
    let task = tokio::task::spawn_local(server);
    tracing::info!(%addr, "listening");
    Ok(RunningServer {
        addr,
        engine,
        persistence,
        webhooks: deliverer,
        handle,
        task,
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
    })
}

/// One worker per core. On 2 cores, `--workers 1` made a join+leave churn cheaper (no second
/// worker competing with the sessions' thread) but a 1 → 1,000 fan-out at 300 msg/s slower
/// (`docs/benchmarks-history.md` §7), so the default keeps the fan-out.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::Parser;

    #[actix_rt::test]
    async fn liveness_settings_that_do_not_work_together_are_refused_before_anything_opens() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = dir.path().join("never-created.db");
        let mut args =
            Cli::try_parse_from(["rollcall", "--heartbeat-ms", "3000", "--lease-ms", "3000"])
                .expect("each flag is valid alone")
                .serve;
        args.bind = "127.0.0.1:0".parse().expect("loopback address");
        args.database_url = format!("sqlite://{}", database.display());
        // A store that would fail (or hang) if the start got as far as opening it.
        args.redis_url = Some("redis://127.0.0.1:1".into());
        let err = start(&args)
            .await
            .err()
            .expect("the server must refuse to start");
        assert!(matches!(err, ServerError::Liveness(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("invalid configuration: "), "{message}");
        for flag in [
            "--heartbeat-ms (ROLLCALL_HEARTBEAT_MS) = 3000",
            "--lease-ms (ROLLCALL_LEASE_MS) = 3000",
        ] {
            assert!(message.contains(flag), "{flag:?} not in {message:?}");
        }
        assert!(!database.exists(), "the database was opened");
    }
}
