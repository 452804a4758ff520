//! The engine without HTTP: a store, a supervisor and the settings connections need.
//!
//! [`Engine::start`] is the public way in for integration tests and embedders: join and leave
//! sessions by sending the supervisor and session actors their messages, with any actor that
//! handles [`crate::actors::ToClient`] standing in for a socket.

use crate::admission::Admission;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext};

use crate::actors::connection::ConnectionSettings;
use crate::actors::rate::RateSettings;
use crate::actors::session::DeliverySettings;
use crate::actors::supervisor::{Shutdown, Supervisor, SupervisorSettings};
use crate::actors::{ChangeRecorder, RecordChange};
use crate::clock::WallClock;
use crate::config::ServeArgs;
use crate::protocol::request::ParseLimits;
use crate::resume::ResumeTokens;
use crate::store::instrumented::Instrumented;
use crate::store::memory::MemoryBackend;
use crate::store::reaping::register_and_reap;
use crate::store::{Feed, HistorySettings, InstanceId, Store, StoreError};

/// Everything the engine needs to know, derived from the command line or built by tests.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub instance_name: String,
    pub lease: Duration,
    pub max_message_bytes: usize,
    /// Open WebSocket connections admitted at most (`--max-connections`).
    pub max_connections: usize,
    pub supervisor: SupervisorSettings,
    pub connection: ConnectionSettings,
    /// What the store keeps of each session's messages ([`crate::store::history`]).
    pub history: HistorySettings,
}

impl EngineSettings {
    pub fn from_args(args: &ServeArgs) -> EngineSettings {
        let instance_name = args.instance_name();
        EngineSettings {
            lease: args.lease(),
            max_message_bytes: args.max_message_bytes,
            max_connections: args.max_connections,
            supervisor: SupervisorSettings {
                heartbeat: args.heartbeat(),
                max_members_per_session: args.max_members_per_session,
                delivery: DeliverySettings {
                    batch: Duration::from_millis(args.message_batch_ms),
                    counts_interval: Duration::from_millis(args.counts_interval_ms),
                },
                touch_every_ticks: 60,
                clock: WallClock::system(),
                resume_grace: Duration::from_millis(args.resume_grace_ms),
            },
            connection: ConnectionSettings {
                instance_name: instance_name.clone(),
                ping_interval: Duration::from_millis(args.client_ping_ms),
                client_timeout: Duration::from_millis(args.client_timeout_ms),
                parse: ParseLimits {
                    max_publish_bytes: args.max_publish_bytes,
                },
                max_sessions: args.max_sessions_per_connection,
                max_message_bytes: args.max_message_bytes,
                rate: RateSettings {
                    per_second: args.rate_limit_per_second,
                    burst: args.rate_limit_burst,
                    close_after: args.rate_limit_close_after,
                },
                resume: ResumeTokens::default(),
            },
            history: args.history(),
            instance_name,
        }
    }
}

/// A running engine. Cloning shares it.
#[derive(Clone)]
pub struct Engine {
    supervisor: Addr<Supervisor>,
    store: Arc<dyn Store>,
    connection_settings: Arc<ConnectionSettings>,
    admission: Admission,
}

impl Engine {
    /// Registers this instance with the store, reaps its previous incarnation and any dead
    /// instance, and starts the supervisor. Must run inside an actix system.
    pub async fn start(
        store: Arc<dyn Store>,
        feed: Feed,
        settings: &EngineSettings,
    ) -> Result<Engine, StoreError> {
        Engine::start_with_recorder(store, feed, settings, None).await
    }

    /// Like [`Engine::start`], sending every change this instance makes to `recorder`.
    pub async fn start_with_recorder(
        store: Arc<dyn Store>,
        feed: Feed,
        settings: &EngineSettings,
        recorder: Option<ChangeRecorder>,
    ) -> Result<Engine, StoreError> {
        let store = Instrumented::wrap(store);
        store.keep_history(settings.history);
        let reaped = register_and_reap(store.as_ref(), settings.supervisor.resume_grace).await?;
        if let Some(recorder) = &recorder {
            for (session, change) in reaped {
                recorder.do_send(RecordChange {
                    session: session.into(),
                    change,
                });
            }
        }
        // Tokens minted here are accepted by every instance on the same store.
        let resume = ResumeTokens::new(store.resume_secret().await?);
        let supervisor_store = store.clone();
        let supervisor_settings = settings.supervisor.clone();
        let supervisor_resume = resume.clone();
        let supervisor = Supervisor::create(move |ctx| {
            let mut feed = feed;
            ctx.add_stream(futures_util::stream::poll_fn(move |cx| feed.poll_recv(cx)));
            Supervisor::new(supervisor_store, supervisor_settings, recorder)
                .with_resume_tokens(supervisor_resume)
        });
        tracing::info!(
            instance = %store.instance().incarnation,
            store = store.kind(),
            "engine started",
        );
        Ok(Engine {
            supervisor,
            store,
            connection_settings: Arc::new(ConnectionSettings {
                resume,
                ..settings.connection.clone()
            }),
            admission: Admission::new(settings.max_connections),
        })
    }

    /// An engine on a fresh in-process store.
    pub async fn start_in_memory(settings: &EngineSettings) -> Result<Engine, StoreError> {
        let backend = MemoryBackend::new(settings.lease);
        let (store, feed) = backend.connect(InstanceId::new(settings.instance_name.clone()));
        Engine::start(Arc::new(store), feed, settings).await
    }

    pub fn supervisor(&self) -> &Addr<Supervisor> {
        &self.supervisor
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn connection_settings(&self) -> &Arc<ConnectionSettings> {
        &self.connection_settings
    }

    /// The connection slots of this instance.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Graceful stop: members leave with `shutdown`, clients are closed with 1012, the lease goes.
    pub async fn shutdown(&self) {
        self.admission.close();
        if self.supervisor.send(Shutdown).await.is_err() {
            tracing::warn!("supervisor already stopped");
        }
    }
}
