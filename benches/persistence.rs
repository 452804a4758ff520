//! Persistence throughput (not a test): how many participant upserts per second the
//! PersistenceActor sustains, batched, on Postgres and SQLite; and how long a 50-user Postgres
//! outage takes to drain once the database is back.
//!
//! Run: `cargo bench --bench persistence` (Postgres at `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1/postgres`; a fresh database is created and dropped).
//! `BENCH_ROWS` sets the number of distinct (session, user) rows (default 20000).

#[path = "../tests/it/support/proxy.rs"]
#[allow(dead_code)]
mod proxy;
#[path = "../tests/it/support/urls.rs"]
mod urls;

use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use rollcall::actors::RecordChange;
use rollcall::model::{Change, Event, LeaveReason, Member, now_ms};
use rollcall::persistence::{Database, Persistence, PersistenceSettings};
use urls::{with_database, with_host};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1/postgres";

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create() -> PgDatabase {
        let admin = admin_url();
        let name = format!(
            "rollcall_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut conn = PgConnection::establish(&admin).expect("Postgres for the bench");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create the bench database");
        PgDatabase {
            url: with_database(&admin, &name),
            admin,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

fn joined(session: &str, user: &str) -> RecordChange {
    RecordChange {
        session: session.to_owned().into(),
        change: Change {
            version: 1,
            leader: None,
            epoch: 1,
            events: vec![Event::MemberJoined {
                member: Member {
                    connection: uuid::Uuid::new_v4().to_string().into(),
                    user: Some(user.to_owned()),
                    name: format!("User {user}"),
                    avatar: None,
                    joined_at: now_ms(),
                    instance: "bench".into(),
                    state: rollcall::model::MemberState::Present,
                    grace: None,
                },
            }],
        },
    }
}

fn left(session: &str, user: &str) -> RecordChange {
    RecordChange {
        session: session.to_owned().into(),
        change: Change {
            version: 2,
            leader: None,
            epoch: 1,
            events: vec![Event::MemberLeft {
                connection: "c".into(),
                user: Some(user.to_owned()),
                reason: LeaveReason::Left,
                detail: None,
            }],
        },
    }
}

/// Sends `rows` joins (distinct (session, user) pairs, 100 users per session) and waits until they
/// are all written; returns (elapsed, flushes).
async fn round(persistence: &Persistence, rows: usize) -> (Duration, u64) {
    let before = persistence.health().await.flushes;
    let recorder = persistence.recorder();
    let started = Instant::now();
    for i in 0..rows {
        recorder.do_send(joined(&format!("s{}", i / 100), &format!("u{}", i % 100)));
    }
    persistence.drain().await;
    let elapsed = started.elapsed();
    (elapsed, persistence.health().await.flushes - before)
}

async fn throughput(backend: &str, url: &str, rows: usize) {
    let (db, _) = Database::open(url).expect("open the bench database");
    let persistence = Persistence::start(db.clone(), PersistenceSettings::default());
    let (insert, insert_flushes) = round(&persistence, rows).await;
    let (update, update_flushes) = round(&persistence, rows).await;
    assert_eq!(db.count_participants().expect("count") as usize, rows);
    println!(
        "{backend:8} new rows : {rows} upserts in {insert:>10.3?} = {:>8.0} upserts/s ({insert_flushes} flushes)",
        rows as f64 / insert.as_secs_f64()
    );
    println!(
        "{backend:8} updates  : {rows} upserts in {update:>10.3?} = {:>8.0} upserts/s ({update_flushes} flushes)",
        rows as f64 / update.as_secs_f64()
    );
}

async fn outage_drain() {
    let database = PgDatabase::create();
    let target = urls::socket_addr(&database.url, 5432);
    let proxy = proxy::TcpProxy::start(target);
    let (db, _) = Database::open(&with_host(&database.url, proxy.addr())).expect("open");
    let persistence = Persistence::start(db, PersistenceSettings::default());
    let recorder = persistence.recorder();
    proxy.cut();
    for i in 0..50 {
        recorder.do_send(joined("outage", &format!("u{i}")));
    }
    for i in 0..50 {
        recorder.do_send(left("outage", &format!("u{i}")));
    }
    // Stay down long enough for the retries to back off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = persistence.health().await;
    proxy.heal();
    let healed = Instant::now();
    persistence.drain().await;
    let drained = healed.elapsed();
    let (direct, _) = Database::open(&database.url).expect("direct");
    let rows = direct.participants("outage").expect("rows");
    assert_eq!(rows.len(), 50);
    println!(
        "postgres 50-user outage (3 s down, {} keys pending): drained {drained:.3?} after the database came back",
        pending.pending + pending.in_flight
    );
}

fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    actix_rt::System::new().block_on(async move {
        let pg = PgDatabase::create();
        throughput("postgres", &pg.url, rows).await;
        drop(pg);
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        throughput("sqlite", &url, rows).await;
        outage_drain().await;
    });
}
