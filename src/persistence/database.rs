//! The database behind the participation records: Postgres or SQLite, picked by the URL's scheme.
//!
//! Two typed r2d2 pools behind one enum, rather than diesel's `MultiConnection`: each backend keeps
//! its native types (`timestamptz` on Postgres), `ON CONFLICT` compiles, and a connection error
//! names the backend and the real reason (STACK-NOTES.md). The queries are written once, in the
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

use super::batch::Batch;

/// Migrations of each backend, embedded in the binary.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a caller waits for a pooled connection before the database counts as unreachable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Rows per multi-row statement (well below both backends' bind-parameter limits).
const ROWS_PER_STATEMENT: usize = 1000;

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
                tracing::error!(%reason,
                    "postgres unreachable at start-up; serving anyway, participation writes are kept until it answers");
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
        match self {
            Database::Postgres(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("postgres", e))?;
                pg::write(&mut conn, batch).map_err(|e| query("postgres", e))
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("sqlite", e))?;
                sqlite::write(&mut conn, batch).map_err(|e| query("sqlite", e))
            }
        }
    }

    /// The sessions `user` took part in, most recently joined first.
    pub fn participations(&self, user: &str, limit: i64) -> DbResult<Vec<Participation>> {
        match self {
            Database::Postgres(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("postgres", e))?;
                pg::participations(&mut conn, user, limit).map_err(|e| query("postgres", e))
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("sqlite", e))?;
                sqlite::participations(&mut conn, user, limit).map_err(|e| query("sqlite", e))
            }
        }
    }

    /// Every participant row of `session`, ordered by user id.
    pub fn participants(&self, session: &str) -> DbResult<Vec<(String, ParticipantRow)>> {
        match self {
            Database::Postgres(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("postgres", e))?;
                pg::participants(&mut conn, session).map_err(|e| query("postgres", e))
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("sqlite", e))?;
                sqlite::participants(&mut conn, session).map_err(|e| query("sqlite", e))
            }
        }
    }

    /// The record of one session, if there is one.
    pub fn session(&self, id: &str) -> DbResult<Option<SessionRecord>> {
        match self {
            Database::Postgres(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("postgres", e))?;
                pg::session(&mut conn, id).map_err(|e| query("postgres", e))
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("sqlite", e))?;
                sqlite::session(&mut conn, id).map_err(|e| query("sqlite", e))
            }
        }
    }

    /// Counts every participant row (for tests and tools).
    pub fn count_participants(&self) -> DbResult<i64> {
        match self {
            Database::Postgres(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("postgres", e))?;
                pg::count_participants(&mut conn).map_err(|e| query("postgres", e))
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.get().map_err(|e| unavailable("sqlite", e))?;
                sqlite::count_participants(&mut conn).map_err(|e| query("sqlite", e))
            }
        }
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

/// The queries, written once and expanded per backend. `$ts` is the backend's SQL type for a UTC
/// timestamp; `$leave_sql` builds the multi-row "only left" update for `n` rows; `$transaction`
/// is the connection method that opens a write transaction (SQLite takes the write lock at once).
macro_rules! backend {
    ($module:ident, $conn:ty, $ts:ident, $transaction:ident, $leave_sql:expr) => {
        mod $module {
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel::sql_types::{$ts, Nullable, Text};
            use diesel::upsert::excluded;

            use super::super::batch::Batch;
            use super::{Participation, ROWS_PER_STATEMENT, SessionRecord};

            pub mod schema {
                diesel::table! {
                    sessions (id) {
                        id -> Text,
                        created_at -> $ts,
                        last_active_at -> $ts,
                        ended_at -> Nullable<$ts>,
                    }
                }

                diesel::table! {
                    session_participants (session_id, user_id) {
                        session_id -> Text,
                        user_id -> Text,
                        display_name -> Text,
                        first_joined_at -> $ts,
                        last_joined_at -> $ts,
                        last_left_at -> Nullable<$ts>,
                        join_count -> BigInt,
                    }
                }

                diesel::joinable!(session_participants -> sessions (session_id));
                diesel::allow_tables_to_appear_in_same_query!(sessions, session_participants);
            }

            use schema::{session_participants as sp, sessions as s};

            diesel::define_sql_function! {
                fn coalesce(x: Nullable<$ts>, y: Nullable<$ts>) -> Nullable<$ts>;
            }

            pub fn write(conn: &mut $conn, batch: &Batch) -> QueryResult<()> {
                // Tuples of `column.eq(value)` (not a derived `Insertable`): SQLite can then put
                // every row in one VALUES list, since no value may fall back to DEFAULT.
                let sessions: Vec<_> = batch
                    .sessions
                    .iter()
                    .map(|(id, op)| {
                        (
                            s::id.eq(id.as_str()),
                            s::created_at.eq(op.first_active),
                            s::last_active_at.eq(op.last_active),
                            s::ended_at.eq(op.ended_at),
                        )
                    })
                    .collect();
                let mut joined = Vec::new();
                let mut left_only = Vec::new();
                for ((session, user), op) in &batch.participants {
                    match (op.first_join, op.last_join) {
                        (Some(first), Some(last)) if op.has_join() => joined.push((
                            sp::session_id.eq(session.as_str()),
                            sp::user_id.eq(user.as_str()),
                            sp::display_name.eq(op.display_name.as_deref().unwrap_or(user)),
                            sp::first_joined_at.eq(first),
                            sp::last_joined_at.eq(last),
                            sp::last_left_at.eq(op.last_left),
                            sp::join_count.eq(op.joins),
                        )),
                        _ => {
                            if let Some(at) = op.last_left {
                                left_only.push((session.as_str(), user.as_str(), at));
                            }
                        }
                    }
                }
                conn.$transaction(|conn| {
                    for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
                        diesel::insert_into(s::table)
                            .values(chunk.to_vec())
                            .on_conflict(s::id)
                            .do_update()
                            .set((
                                s::last_active_at.eq(excluded(s::last_active_at)),
                                s::ended_at.eq(coalesce(excluded(s::ended_at), s::ended_at)),
                            ))
                            .execute(conn)?;
                    }
                    for chunk in joined.chunks(ROWS_PER_STATEMENT) {
                        diesel::insert_into(sp::table)
                            .values(chunk.to_vec())
                            .on_conflict((sp::session_id, sp::user_id))
                            .do_update()
                            .set((
                                sp::display_name.eq(excluded(sp::display_name)),
                                sp::last_joined_at.eq(excluded(sp::last_joined_at)),
                                sp::last_left_at
                                    .eq(coalesce(excluded(sp::last_left_at), sp::last_left_at)),
                                sp::join_count.eq(sp::join_count + excluded(sp::join_count)),
                            ))
                            .execute(conn)?;
                    }
                    for chunk in left_only.chunks(ROWS_PER_STATEMENT) {
                        let sql: String = $leave_sql(chunk.len());
                        let mut query = diesel::sql_query(sql).into_boxed();
                        for (session, user, at) in chunk {
                            query = query
                                .bind::<Text, _>(*session)
                                .bind::<Text, _>(*user)
                                .bind::<$ts, _>(*at);
                        }
                        query.execute(conn)?;
                    }
                    Ok(())
                })
            }

            type Row = (
                String,
                String,
                DateTime<Utc>,
                DateTime<Utc>,
                Option<DateTime<Utc>>,
                i64,
                Option<DateTime<Utc>>,
            );

            fn participation(row: Row) -> Participation {
                let (session, display_name, first, last, left, join_count, ended_at) = row;
                Participation {
                    session,
                    display_name,
                    first_joined_at: first,
                    last_joined_at: last,
                    last_left_at: left,
                    join_count,
                    ended_at,
                }
            }

            pub fn participations(
                conn: &mut $conn,
                user: &str,
                limit: i64,
            ) -> QueryResult<Vec<Participation>> {
                let rows: Vec<Row> = sp::table
                    .inner_join(s::table)
                    .filter(sp::user_id.eq(user))
                    .order((sp::last_joined_at.desc(), sp::session_id.asc()))
                    .limit(limit)
                    .select((
                        sp::session_id,
                        sp::display_name,
                        sp::first_joined_at,
                        sp::last_joined_at,
                        sp::last_left_at,
                        sp::join_count,
                        s::ended_at,
                    ))
                    .load(conn)?;
                Ok(rows.into_iter().map(participation).collect())
            }

            pub fn participants(
                conn: &mut $conn,
                session: &str,
            ) -> QueryResult<Vec<(String, Participation)>> {
                let rows: Vec<(String, Row)> = sp::table
                    .inner_join(s::table)
                    .filter(sp::session_id.eq(session))
                    .order(sp::user_id.asc())
                    .select((
                        sp::user_id,
                        (
                            sp::session_id,
                            sp::display_name,
                            sp::first_joined_at,
                            sp::last_joined_at,
                            sp::last_left_at,
                            sp::join_count,
                            s::ended_at,
                        ),
                    ))
                    .load(conn)?;
                Ok(rows
                    .into_iter()
                    .map(|(user, row)| (user, participation(row)))
                    .collect())
            }

            pub fn session(conn: &mut $conn, id: &str) -> QueryResult<Option<SessionRecord>> {
                let row: Option<(String, DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>)> =
                    s::table
                        .filter(s::id.eq(id))
                        .select((s::id, s::created_at, s::last_active_at, s::ended_at))
                        .first(conn)
                        .optional()?;
                Ok(row.map(|(id, created_at, last_active_at, ended_at)| SessionRecord {
                    id,
                    created_at,
                    last_active_at,
                    ended_at,
                }))
            }

            pub fn count_participants(conn: &mut $conn) -> QueryResult<i64> {
                sp::table.count().get_result(conn)
            }
        }
    };
}

backend!(pg, PgConnection, Timestamptz, transaction, |n: usize| {
    let values: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "(${}::text, ${}::text, ${}::timestamptz)",
                3 * i + 1,
                3 * i + 2,
                3 * i + 3
            )
        })
        .collect();
    format!(
        "UPDATE session_participants AS p SET last_left_at = v.t \
         FROM (VALUES {}) AS v(s, u, t) \
         WHERE p.session_id = v.s AND p.user_id = v.u",
        values.join(", ")
    )
});

backend!(
    sqlite,
    SqliteConnection,
    TimestamptzSqlite,
    immediate_transaction,
    |n: usize| {
        let values = vec!["(?, ?, ?)"; n].join(", ");
        format!(
            "UPDATE session_participants SET last_left_at = v.column3 \
             FROM (VALUES {values}) AS v \
             WHERE session_participants.session_id = v.column1 \
             AND session_participants.user_id = v.column2"
        )
    }
);

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
