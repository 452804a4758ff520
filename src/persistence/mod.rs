//! Participation records (docs/architecture.md §6): who took part in which session, kept in a SQL database.
//!
//! The engine's live state is in the store and is gone when a session empties; this module keeps
//! the history that outlives it (`/api/me/sessions`, and the `ended_at` of a finished session). It
//! is split by concern:
//! - [`database`]: the two backends (Postgres, SQLite), their pools, migrations and queries;
//! - [`batch`]: pending writes, coalesced per (session, user) so that memory stays bounded;
//! - [`actor`]: the [`actor::PersistenceActor`] that orders, batches and retries the writes.
//!
//! [`Persistence`] is the handle the server and the HTTP routes hold.

pub mod actor;
pub mod batch;
pub mod database;

use std::time::Duration;

use actix::{Actor, Addr};

pub use actor::{DatabaseHealth, PersistenceActor, PersistenceSettings};
pub use database::{Database, DatabaseError, DbResult, Participation, SessionRecord};

use crate::actors::ChangeRecorder;
use actor::{Abandon, Drain, GetDatabaseHealth};

/// The persistence of one instance: its writer actor and the pools (for reads). Cloning shares it.
#[derive(Clone, Debug)]
pub struct Persistence {
    addr: Addr<PersistenceActor>,
    db: Database,
}

/// What a graceful flush achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushReport {
    /// Pending keys given up on because the deadline passed (each was logged).
    pub abandoned: usize,
}

impl Persistence {
    /// Connects to `url`, runs the pending migrations and starts the writer. A Postgres server
    /// that is down at start-up is waited for (see [`Database::open_or_wait`]). Must run inside
    /// an actix system; the blocking work runs on the blocking pool.
    pub async fn open(url: &str, settings: PersistenceSettings) -> DbResult<Persistence> {
        let url = url.to_owned();
        let (db, applied) = blocking(move || Database::open_or_wait(&url)).await?;
        if !applied.is_empty() {
            tracing::info!(
                backend = db.backend(),
                migrations = ?applied,
                "database migrations applied",
            );
        }
        Ok(Persistence::start(db, settings))
    }

    /// Starts the writer on an open database. Must run inside an actix system.
    pub fn start(db: Database, settings: PersistenceSettings) -> Persistence {
        let addr = PersistenceActor::new(db.clone(), settings).start();
        Persistence { addr, db }
    }

    /// Where the engine sends its changes.
    pub fn recorder(&self) -> ChangeRecorder {
        self.addr.clone().recipient()
    }

    pub fn addr(&self) -> &Addr<PersistenceActor> {
        &self.addr
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The database's state as the writer last saw it.
    pub async fn health(&self) -> DatabaseHealth {
        match self.addr.send(GetDatabaseHealth).await {
            Ok(health) => health,
            Err(_) => DatabaseHealth {
                backend: self.db.backend(),
                up: false,
                pending: 0,
                in_flight: 0,
                last_error: Some("the persistence actor has stopped".into()),
                written: 0,
                flushes: 0,
            },
        }
    }

    /// Waits until every write received so far is in the database. No deadline: see
    /// [`Persistence::shutdown`] for the bounded version.
    pub async fn drain(&self) {
        let _ = self.addr.send(Drain).await;
    }

    /// Graceful stop: writes what is pending, waiting at most `deadline`; then gives up on the rest
    /// and logs every record it could not write.
    pub async fn shutdown(&self, deadline: Duration) -> FlushReport {
        if tokio::time::timeout(deadline, self.drain()).await.is_ok() {
            tracing::info!("participation records flushed");
            return FlushReport { abandoned: 0 };
        }
        let abandoned = self.addr.send(Abandon).await.unwrap_or(0);
        FlushReport { abandoned }
    }

    /// Runs a read on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        F: FnOnce(&Database) -> DbResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || f(&db)).await
    }
}

/// Runs blocking database work off the actix arbiter threads.
async fn blocking<T, F>(f: F) -> DbResult<T>
where
    F: FnOnce() -> DbResult<T> + Send + 'static,
    T: Send + 'static,
{
    actix_web::rt::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| {
            Err(DatabaseError::Unavailable {
                backend: "database",
                reason: format!("the blocking task failed: {e}"),
            })
        })
}

/// The default migrations-and-exit of `rollcall migrate`: returns the versions applied.
pub fn migrate(url: &str) -> DbResult<(&'static str, Vec<String>)> {
    let (db, applied) = Database::open(url)?;
    Ok((db.backend(), applied))
}
