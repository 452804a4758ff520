//! The database behind the participation records: Postgres or SQLite, picked by the URL's scheme.
//!
//! Two typed r2d2 pools behind one enum, rather than diesel's `MultiConnection`: each backend keeps
//! its native types (`timestamptz` on Postgres), `ON CONFLICT` compiles, and a connection error
//! names the backend and the real reason (docs/architecture.md §9). The queries are written once, in the
//! [`backend!`] macro, and expanded for each backend with its connection and timestamp types.
//!
//! Everything here blocks: callers run it off the actix arbiter threads (`spawn_blocking`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

mod queries;

use super::batch::Batch;

/// Migrations of each backend, embedded in the binary.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a caller waits for a pooled connection before the database counts as unreachable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("unsupported database URL scheme {scheme:?}: expected postgres://… or sqlite://PATH")]
    UnsupportedUrl { scheme: String },
    #[error("could not connect to the {backend} database: {reason}")]
    Connect {
        backend: &'static str,
        reason: String,
    },
    #[error("could not run the {backend} migrations: {reason}")]
    Migrate {
        backend: &'static str,
        reason: String,
    },
    #[error("the {backend} database is unreachable: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("{backend} query failed: {source}")]
    Query {
        backend: &'static str,
        source: diesel::result::Error,
    },
}

impl DatabaseError {
    /// True for errors that retrying the same write cannot fix (a row the schema refuses). Every
    /// other error (connection lost, pool timeout, lock timeout) is worth a retry.
    pub fn is_permanent(&self) -> bool {
        use diesel::result::DatabaseErrorKind as Kind;
        match self {
            DatabaseError::Query {
                source: diesel::result::Error::DatabaseError(kind, _),
                ..
            } => matches!(
                kind,
                Kind::UniqueViolation
                    | Kind::ForeignKeyViolation
                    | Kind::CheckViolation
                    | Kind::NotNullViolation
            ),
            DatabaseError::Query {
                source: diesel::result::Error::SerializationError(_),
                ..
            } => true,
            _ => false,
        }
    }
}

pub type DbResult<T> = Result<T, DatabaseError>;

/// What `--database-url` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// The whole URL, handed to libpq as is.
    Postgres(String),
    /// A file path, or `:memory:` (one connection, gone with the process).
    Sqlite(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> DbResult<DatabaseUrl> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(DatabaseError::Connect {
                    backend: "sqlite",
                    reason: "the URL names no file (sqlite://PATH)".into(),
                });
            }
            return Ok(DatabaseUrl::Sqlite(path.to_owned()));
        }
        let scheme = url.split_once(':').map_or("", |(s, _)| s).to_owned();
        Err(DatabaseError::UnsupportedUrl { scheme })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Postgres(_) => "postgres",
            DatabaseUrl::Sqlite(_) => "sqlite",
        }
    }
}

/// A session's record: `/api/sessions/{id}` answers from it when no member is live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// One row of "my sessions".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participation {
    pub session: String,
    pub display_name: String,
    pub first_joined_at: DateTime<Utc>,
    pub last_joined_at: DateTime<Utc>,
    pub last_left_at: Option<DateTime<Utc>>,
    pub join_count: i64,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A participant row as stored (for tests and tools).
pub type ParticipantRow = Participation;

/// The pools. Cloning shares them.
#[derive(Clone)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.backend())
    }
}

/// Per-connection SQLite settings. WAL is set once before the pool exists (setting it here, while
/// the pool opens connections in parallel, gives "database is locked").
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Runs the pending migrations on the first connection a lazily built Postgres pool opens, so a
/// server that started while Postgres was down migrates before its first write.
#[derive(Debug, Default)]
struct PgMigrateOnFirstConnect {
    done: std::sync::atomic::AtomicBool,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for PgMigrateOnFirstConnect {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        use std::sync::atomic::Ordering;
        if self.done.load(Ordering::Acquire) {
            return Ok(());
        }
        match migrate_postgres(conn) {
            Ok(applied) => {
                tracing::info!(migrations = ?applied, "postgres reachable: migrations checked");
                self.done.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => Err(diesel::r2d2::Error::QueryError(
                diesel::result::Error::QueryBuilderError(e.to_string().into()),
            )),
        }
    }
}

/// Runs `$body` on a pooled connection `$conn` of whichever backend `$db` is, with `$q` naming
/// that backend's query module, and maps its errors to [`DatabaseError`] naming the backend.
macro_rules! on_backend {
    ($db:expr, |$conn:ident, $q:ident| $body:expr) => {
        match $db {
            Database::Postgres(pool) => {
                use queries::pg as $q;
                let mut $conn = pool.get().map_err(|e| unavailable("postgres", e))?;
                $body.map_err(|e| query("postgres", e))
            }
            Database::Sqlite(pool) => {
                use queries::sqlite as $q;
                let mut $conn = pool.get().map_err(|e| unavailable("sqlite", e))?;
                $body.map_err(|e| query("sqlite", e))
            }
        }
    };
}

impl Database {
    /// Like [`Database::open`], but a Postgres server that cannot be reached now is not an error:
    /// the pool is built without connecting, the writer keeps every write until Postgres answers,
    /// and the migrations run on the first connection. Any other error (a bad URL, a failed
    /// migration, an unusable SQLite file) is still returned. Blocks.
    pub fn open_or_wait(url: &str) -> DbResult<(Database, Vec<String>)> {
        match Database::open(url) {
            Err(DatabaseError::Connect {
                backend: "postgres",
                reason,
            }) => {
                let DatabaseUrl::Postgres(url) = DatabaseUrl::parse(url)? else {
                    return Err(DatabaseError::Connect {
                        backend: "postgres",
                        reason,
                    });
                };
                tracing::error!(
                    %reason,
                    "postgres unreachable at start-up; serving anyway, \
                     participation writes are kept until it answers"
                );
                let pool = Pool::builder()
                    .max_size(4)
                    .min_idle(Some(0))
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    .connection_customizer(Box::new(PgMigrateOnFirstConnect::default()))
                    .build_unchecked(ConnectionManager::<PgConnection>::new(url));
                Ok((Database::Postgres(pool), Vec::new()))
            }
            other => other,
        }
    }

    /// Connects, runs the pending migrations, and builds the pool. Returns the versions of the
    /// migrations it applied. Blocks.
    pub fn open(url: &str) -> DbResult<(Database, Vec<String>)> {
        match DatabaseUrl::parse(url)? {
            DatabaseUrl::Postgres(url) => {
                let connect = |e: &dyn std::fmt::Display| DatabaseError::Connect {
                    backend: "postgres",
                    reason: e.to_string().trim().to_owned(),
                };
                let mut conn = PgConnection::establish(&url).map_err(|e| connect(&e))?;
                let applied = migrate_postgres(&mut conn)?;
                drop(conn);
                let pool = Pool::builder()
                    .max_size(4)
                    .min_idle(Some(1))
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    .build(ConnectionManager::<PgConnection>::new(url))
                    .map_err(|e| connect(&e))?;
                Ok((Database::Postgres(pool), applied))
            }
            DatabaseUrl::Sqlite(path) => {
                let connect = |e: &dyn std::fmt::Display| DatabaseError::Connect {
                    backend: "sqlite",
                    reason: format!("{path}: {}", e.to_string().trim()),
                };
                let memory = path == ":memory:";
                let manager = ConnectionManager::<SqliteConnection>::new(path.clone());
                let builder = Pool::builder()
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    .connection_customizer(Box::new(SqlitePragmas));
                if memory {
                    // One connection that is never closed: it *is* the database.
                    let pool = builder
                        .max_size(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                        .build(manager)
                        .map_err(|e| connect(&e))?;
                    let mut conn = pool.get().map_err(|e| connect(&e))?;
                    let applied = migrate_sqlite(&mut conn)?;
                    drop(conn);
                    return Ok((Database::Sqlite(pool), applied));
                }
                let mut conn = SqliteConnection::establish(&path).map_err(|e| connect(&e))?;
                conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;")
                    .map_err(|e| connect(&e))?;
                let applied = migrate_sqlite(&mut conn)?;
                drop(conn);
                let pool = builder
                    .max_size(4)
                    .build(manager)
                    .map_err(|e| connect(&e))?;
                Ok((Database::Sqlite(pool), applied))
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "postgres",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// One `SELECT 1` on a pooled connection, waiting at most `timeout` for it.
    pub fn ping(&self, timeout: Duration) -> DbResult<()> {
        let backend = self.backend();
        let query = |e| DatabaseError::Query { backend, source: e };
        match self {
            Database::Postgres(pool) => {
                let mut conn = pool
                    .get_timeout(timeout)
                    .map_err(|e| unavailable(backend, e))?;
                diesel::sql_query("SELECT 1")
                    .execute(&mut *conn)
                    .map_err(query)?;
            }
            Database::Sqlite(pool) => {
                let mut conn = pool
                    .get_timeout(timeout)
                    .map_err(|e| unavailable(backend, e))?;
                diesel::sql_query("SELECT 1")
                    .execute(&mut *conn)
                    .map_err(query)?;
            }
        }
        Ok(())
    }

    /// Writes one batch in one transaction: a multi-row upsert of the sessions, a multi-row upsert
    /// of the participants that joined, one multi-row update of those that only left.
    pub fn write(&self, batch: &Batch) -> DbResult<()> {
        on_backend!(self, |conn, q| q::write(&mut conn, batch))
    }

    /// The sessions `user` took part in, most recently joined first; with a `scope`, only those
    /// of the sessions it lists.
    pub fn participations(
        &self,
        user: &str,
        scope: Option<&[String]>,
        limit: i64,
    ) -> DbResult<Vec<Participation>> {
        on_backend!(self, |conn, q| q::participations(
            &mut conn, user, scope, limit
        ))
    }

    /// Every participant row of `session`, ordered by user id.
    pub fn participants(&self, session: &str) -> DbResult<Vec<(String, ParticipantRow)>> {
        on_backend!(self, |conn, q| q::participants(&mut conn, session))
    }

    /// The record of one session, if there is one.
    pub fn session(&self, id: &str) -> DbResult<Option<SessionRecord>> {
        on_backend!(self, |conn, q| q::session(&mut conn, id))
    }

    /// Counts every participant row (for tests and tools).
    pub fn count_participants(&self) -> DbResult<i64> {
        on_backend!(self, |conn, q| q::count_participants(&mut conn))
    }
}

fn unavailable(backend: &'static str, e: r2d2::Error) -> DatabaseError {
    DatabaseError::Unavailable {
        backend,
        reason: e.to_string().trim().to_owned(),
    }
}

fn query(backend: &'static str, source: diesel::result::Error) -> DatabaseError {
    DatabaseError::Query { backend, source }
}

type MigrationError = Box<dyn std::error::Error + Send + Sync>;

fn applied_versions(
    result: Result<Vec<String>, MigrationError>,
    backend: &'static str,
) -> DbResult<Vec<String>> {
    result.map_err(|e| DatabaseError::Migrate {
        backend,
        reason: e.to_string(),
    })
}

fn versions(applied: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    applied.iter().map(|v| v.to_string()).collect()
}

/// Runs the pending migrations under an advisory lock, so that instances starting together do
/// not race each other.
fn migrate_postgres(conn: &mut PgConnection) -> DbResult<Vec<String>> {
    let result = conn.transaction::<_, MigrationError, _>(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7263845501)").execute(conn)?;
        conn.run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(versions)
    });
    applied_versions(result, "postgres")
}

/// Runs the pending migrations holding SQLite's write lock from the start, so that processes
/// opening the same file together do not race each other.
fn migrate_sqlite(conn: &mut SqliteConnection) -> DbResult<Vec<String>> {
    let result = conn.immediate_transaction::<_, MigrationError, _>(|conn| {
        conn.run_pending_migrations(SQLITE_MIGRATIONS).map(versions)
    });
    applied_versions(result, "sqlite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db").expect("pg"),
            DatabaseUrl::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://rollcall.db").expect("sqlite"),
            DatabaseUrl::Sqlite("rollcall.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").expect("sqlite"),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        let err = DatabaseUrl::parse("mysql://h/db").expect_err("unsupported");
        assert!(err.to_string().contains("mysql"), "{err}");
    }

    #[test]
    fn postgres_down_names_the_backend_and_the_reason() {
        // Port 1 on loopback: nothing listens there.
        let err = Database::open("postgres://postgres@127.0.0.1:1/postgres?connect_timeout=2")
            .expect_err("nothing listens on port 1");
        let text = err.to_string();
        assert!(text.contains("postgres"), "{text}");
        assert!(!text.contains("invalid connection url"), "{text}");
        assert!(text.to_lowercase().contains("connect"), "{text}");
    }

    #[test]
    fn sqlite_in_memory_round_trip() {
        let (db, applied) = Database::open("sqlite://:memory:").expect("open");
        assert_eq!(applied.len(), 1);
        db.ping(Duration::from_secs(1)).expect("ping");
        assert_eq!(db.count_participants().expect("count"), 0);
    }
}
