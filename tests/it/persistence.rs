//! Participation records end to end: WebSocket clients with tokens join and leave sessions on an
//! in-process server, and the rows in Postgres (a fresh database per test) or SQLite (a temporary
//! folder) are checked. Also: a database outage through a proxy we cut, and `/api/me/sessions`.

use std::time::{Duration, Instant};

use crate::support::db::{TestDatabase, postgres_addr, token, token_with_exp};
use crate::support::eventually;
use crate::support::proxy::TcpProxy;
use crate::support::server::http_get_as;
use crate::support::urls::with_host;
use crate::support::ws::WsClient;
use chrono::{DateTime, Utc};
use rollcall::config::ServeArgs;
use rollcall::persistence::{Database, Persistence};
use rollcall::server::RunningServer;
use serde_json::json;

const SECRET: &str = "persistence-test-secret";
const DRAIN: Duration = Duration::from_secs(30);

fn args(database_url: &str) -> ServeArgs {
    let mut args = ServeArgs::defaults();
    args.bind = "127.0.0.1:0".parse().expect("loopback address");
    args.redis_url = None;
    args.database_url = database_url.to_owned();
    args.jwt_secret = Some(SECRET.to_owned());
    args.allow_anonymous = true;
    args.instance_name = Some(format!(
        "persist-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    args.shutdown_timeout_ms = 5_000;
    args
}

async fn start(database_url: &str) -> RunningServer {
    rollcall::server::start(&args(database_url))
        .await
        .expect("the server should start")
}

fn persistence(server: &RunningServer) -> Persistence {
    server
        .persistence
        .clone()
        .expect("a server started with a database has persistence")
}

async fn drain(persistence: &Persistence) {
    tokio::time::timeout(DRAIN, persistence.drain())
        .await
        .expect("the pending writes should drain");
}

async fn connect_as(server: &RunningServer, user: &str) -> WsClient {
    let token = token(SECRET, user, None);
    WsClient::connect(&format!("ws://{}/ws?token={token}", server.addr)).await
}

async fn connect_anonymous(server: &RunningServer) -> WsClient {
    WsClient::connect(&format!("ws://{}/ws", server.addr)).await
}

async fn live_members(server: &RunningServer, session: &str) -> usize {
    server
        .engine
        .store()
        .view(session)
        .await
        .expect("store view")
        .map_or(0, |v| v.members.len())
}

/// 10 users × 3 tabs in 2 sessions, plus 5 anonymous connections: 20 rows with 3 joins each.
/// Half the users close their tabs, then the server stops gracefully: every row has its
/// `last_left_at`, written by the graceful stop's flush.
async fn ten_users_three_tabs(database_url: &str) {
    let server = start(database_url).await;
    let persistence = persistence(&server);
    let db = persistence.database().clone();
    let mut clients = Vec::new();
    for user in 0..10 {
        for _tab in 0..3 {
            let mut client = connect_as(&server, &format!("user-{user}")).await;
            client.join("alpha").await;
            client.join("beta").await;
            clients.push((user, client));
        }
    }
    let mut anonymous = Vec::new();
    for _ in 0..5 {
        let mut client = connect_anonymous(&server).await;
        client.join("alpha").await;
        client.join("beta").await;
        anonymous.push(client);
    }
    assert_eq!(live_members(&server, "alpha").await, 35);
    drain(&persistence).await;

    assert_eq!(db.count_participants().expect("count"), 20);
    for session in ["alpha", "beta"] {
        let rows = db.participants(session).expect("rows");
        let users: Vec<&str> = rows.iter().map(|(u, _)| u.as_str()).collect();
        let expected: Vec<String> = (0..10).map(|u| format!("user-{u}")).collect();
        assert_eq!(users, expected, "one row per user in {session}");
        for (user, row) in &rows {
            assert_eq!(row.join_count, 3, "{user} joined {session} from 3 tabs");
            assert_eq!(row.display_name, format!("{user} (name)"));
            assert!(row.first_joined_at <= row.last_joined_at);
            assert_eq!(row.last_left_at, None, "{user} is still in {session}");
        }
        let record = db.session(session).expect("read").expect("a session row");
        assert_eq!(record.ended_at, None);
    }

    // Users 0..5 close every tab (reason `disconnected`).
    for (user, client) in &clients {
        if *user < 5 {
            client.close();
        }
    }
    assert!(
        eventually(Duration::from_secs(10), async || live_members(
            &server, "alpha"
        )
        .await
            == 20)
        .await,
        "the closed tabs should leave"
    );
    drain(&persistence).await;
    for (user, row) in db.participants("alpha").expect("rows") {
        let index: u32 = user["user-".len()..].parse().expect("user index");
        assert_eq!(row.last_left_at.is_some(), index < 5, "{user}: {row:?}");
    }

    // The rest leave with `shutdown`; the graceful stop writes it before returning.
    tokio::time::timeout(Duration::from_secs(15), server.shutdown())
        .await
        .expect("graceful stop");
    assert_eq!(db.count_participants().expect("count"), 20);
    for session in ["alpha", "beta"] {
        for (user, row) in db.participants(session).expect("rows") {
            assert_eq!(row.join_count, 3, "{user} in {session}");
            let left = row.last_left_at.expect("every membership has ended");
            assert!(left >= row.last_joined_at, "{user}: {row:?}");
        }
    }
    drop(anonymous);
}

#[actix_rt::test]
async fn ten_users_three_tabs_make_twenty_rows_on_postgres() {
    let database = TestDatabase::create();
    ten_users_three_tabs(&database.url).await;
}

#[actix_rt::test]
async fn ten_users_three_tabs_make_twenty_rows_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("rollcall.db").display());
    ten_users_three_tabs(&url).await;
}

fn within(t: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    // Millisecond timestamps: allow the rounding of `from`.
    t >= from - chrono::Duration::milliseconds(1) && t <= to
}

/// Postgres goes away (a proxy we cut) while 50 users join and leave: presence keeps working,
/// `/readyz` says the database is down, and once it is back every row appears exactly once with
/// the times of the outage.
#[actix_rt::test]
async fn database_outage_loses_no_rows() {
    let database = TestDatabase::create();
    let proxy = TcpProxy::start(postgres_addr(&database.url));
    let server = start(&with_host(&database.url, proxy.addr())).await;
    let persistence = persistence(&server);
    let direct = Database::open(&database.url).expect("direct connection").0;

    let mut observer = connect_anonymous(&server).await;
    observer.join("outage").await;
    let (status, _) = http_get_as(server.addr, "/readyz", None).await;
    assert_eq!(status, 200, "ready before the outage");

    proxy.cut();
    let down = eventually(Duration::from_secs(10), async || {
        let (status, body) = http_get_as(server.addr, "/readyz", None).await;
        status == 503 && body["database"]["state"] == "down"
    })
    .await;
    assert!(down, "/readyz should report the database down");

    let started = Utc::now();
    let mut users = Vec::new();
    for i in 0..50 {
        let mut client = connect_as(&server, &format!("outage-user-{i:02}")).await;
        let joined = client.join("outage").await;
        assert_eq!(joined["counts"]["connections"], json!(i + 2));
        users.push(client);
    }
    assert_eq!(live_members(&server, "outage").await, 51);
    for client in &mut users {
        client.leave("outage").await;
    }
    let members = observer.members("outage").await;
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));
    let finished = Utc::now();

    // Still down: nothing is written, everything is kept (one entry per user, plus the session).
    let health = persistence.health().await;
    assert!(!health.up, "{health:?}");
    assert!(
        health.pending <= 51 && health.in_flight <= 51,
        "bounded by the distinct keys: {health:?}"
    );
    assert_eq!(direct.count_participants().expect("count"), 0);

    proxy.heal();
    let healed = Instant::now();
    drain(&persistence).await;
    println!(
        "a 50-user outage drained {:?} after the database came back",
        healed.elapsed()
    );

    let rows = direct.participants("outage").expect("rows");
    assert_eq!(rows.len(), 50, "every user once");
    for (user, row) in &rows {
        assert_eq!(row.join_count, 1, "{user} joined once: {row:?}");
        assert_eq!(row.first_joined_at, row.last_joined_at);
        assert!(
            within(row.first_joined_at, started, finished),
            "{user}: {row:?}"
        );
        let left = row.last_left_at.expect("left during the outage");
        assert!(
            within(left, row.last_joined_at, finished),
            "{user}: {row:?}"
        );
    }
    let ready = eventually(Duration::from_secs(10), async || {
        http_get_as(server.addr, "/readyz", None).await.0 == 200
    })
    .await;
    assert!(ready, "/readyz should be ready again");
    server.shutdown().await;
}

/// Postgres down when the server starts: the server serves anyway (presence never waits for the
/// database), reports the database down, and writes everything once Postgres answers, after
/// running the migrations on the first connection.
#[actix_rt::test]
async fn a_server_started_while_postgres_is_down_records_once_it_is_up() {
    let database = TestDatabase::create();
    let proxy = TcpProxy::start(postgres_addr(&database.url));
    proxy.cut();
    let server = start(&with_host(&database.url, proxy.addr())).await;
    let persistence = persistence(&server);
    let down = eventually(Duration::from_secs(10), async || {
        let (status, body) = http_get_as(server.addr, "/readyz", None).await;
        status == 503 && body["database"]["state"] == "down"
    })
    .await;
    assert!(down, "/readyz should report the database down");

    let mut users = Vec::new();
    for i in 0..5 {
        let mut client = connect_as(&server, &format!("early-user-{i}")).await;
        client.join("early").await;
        users.push(client);
    }
    assert_eq!(
        live_members(&server, "early").await,
        5,
        "presence works without the database"
    );
    users[0].leave("early").await;

    proxy.heal();
    drain(&persistence).await;
    let direct = Database::open(&database.url).expect("direct connection").0;
    let rows = direct.participants("early").expect("rows");
    assert_eq!(
        rows.len(),
        5,
        "every user once, written after the database came up"
    );
    let left: Vec<&str> = rows
        .iter()
        .filter(|(_, row)| row.last_left_at.is_some())
        .map(|(user, _)| user.as_str())
        .collect();
    assert_eq!(left, ["early-user-0"]);
    let ready = eventually(Duration::from_secs(10), async || {
        http_get_as(server.addr, "/readyz", None).await.0 == 200
    })
    .await;
    assert!(ready, "/readyz should be ready once Postgres answers");
    server.shutdown().await;
}

/// `/api/me/sessions`: most recently joined first, `limit`, live counts from the store, 401
/// without a token, and never another user's rows. `/api/sessions/{id}` answers from the
/// record when nobody is live, with `ended_at` of an ended session.
#[actix_rt::test]
async fn my_sessions_lists_own_rows_with_live_counts() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("me.db").display());
    let server = start(&url).await;
    let persistence = persistence(&server);
    let alice = token(SECRET, "alice", None);
    let bob = token(SECRET, "bob", None);

    let mut alice_tab1 = connect_as(&server, "alice").await;
    let mut alice_tab2 = connect_as(&server, "alice").await;
    let mut bob_tab = connect_as(&server, "bob").await;
    // Alice: s1, then s2, then s3 (two tabs); she leaves s1 and s2. Bob stays in s2, ends s4.
    for session in ["s1", "s2", "s3"] {
        alice_tab1.join(session).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    alice_tab2.join("s3").await;
    bob_tab.join("s2").await;
    // Join times have millisecond resolution: s4 must be strictly later to be listed first.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let joined = bob_tab.join("s4").await;
    alice_tab1.leave("s1").await;
    alice_tab1.leave("s2").await;
    bob_tab
        .request_ok(
            json!({"type": "end", "session": "s4", "epoch": joined["epoch"]}),
            "ended",
        )
        .await;
    drain(&persistence).await;

    let (status, body) = http_get_as(server.addr, "/api/me/sessions", Some(&alice)).await;
    assert_eq!(status, 200, "{body}");
    let sessions = body["sessions"].as_array().expect("a list");
    let ids: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["session"].as_str())
        .collect();
    assert_eq!(ids, ["s3", "s2", "s1"], "most recently joined first");
    assert_eq!(sessions[0]["join_count"], 2);
    assert_eq!(
        sessions[0]["live"],
        json!({"connections": 2, "users": 1, "reconnecting": 0})
    );
    assert_eq!(
        sessions[1]["live"],
        json!({"connections": 1, "users": 1, "reconnecting": 0})
    );
    assert_eq!(
        sessions[2]["live"],
        json!({"connections": 0, "users": 0, "reconnecting": 0})
    );
    for s in sessions {
        for field in ["first_joined_at", "last_joined_at"] {
            let text = s[field].as_str().expect("a time");
            assert!(text.ends_with('Z'), "RFC 3339 UTC: {text}");
            DateTime::parse_from_rfc3339(text).expect("RFC 3339");
        }
        assert_eq!(s["ended_at"], json!(null));
    }

    let (_, body) = http_get_as(server.addr, "/api/me/sessions?limit=2", Some(&alice)).await;
    let ids: Vec<&str> = body["sessions"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["session"].as_str())
        .collect();
    assert_eq!(ids, ["s3", "s2"]);

    let (status, body) = http_get_as(server.addr, "/api/me/sessions", Some(&bob)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["sessions"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["session"].as_str())
        .collect();
    assert_eq!(ids, ["s4", "s2"], "bob sees only his own rows");
    let ended = body["sessions"][0]["ended_at"].as_str().expect("s4 ended");
    DateTime::parse_from_rfc3339(ended).expect("RFC 3339");

    let (status, body) = http_get_as(server.addr, "/api/me/sessions", None).await;
    assert_eq!(status, 401, "{body}");
    let expired = token_with_exp(SECRET, "alice", None, crate::support::db::now_secs() - 3600);
    let (status, _) = http_get_as(server.addr, "/api/me/sessions", Some(&expired)).await;
    assert_eq!(status, 401);
    let (status, _) = http_get_as(server.addr, "/api/me/sessions?limit=0", Some(&alice)).await;
    assert_eq!(status, 400);
    let (status, _) = http_get_as(server.addr, "/api/me/sessions?limit=x", Some(&alice)).await;
    assert_eq!(status, 400);

    // A session nobody is in any more, but recorded: 200. Ended: 200 with ended_at.
    let (status, body) = http_get_as(server.addr, "/api/sessions/s1", Some(&alice)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["members"], json!([]));
    assert_eq!(body["ended_at"], json!(null));
    let (status, body) = http_get_as(server.addr, "/api/sessions/s4", Some(&alice)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["ended_at"].is_string(), "{body}");
    let (status, _) = http_get_as(server.addr, "/api/sessions/never", Some(&alice)).await;
    assert_eq!(status, 404);
    let (status, _) = http_get_as(server.addr, "/api/sessions/s1", None).await;
    assert_eq!(status, 401);
    let limited = token(SECRET, "alice", Some(&["s1"]));
    let (status, _) = http_get_as(server.addr, "/api/sessions/s1", Some(&limited)).await;
    assert_eq!(status, 200);
    let (status, body) = http_get_as(server.addr, "/api/sessions/s3", Some(&limited)).await;
    assert_eq!(status, 403, "{body}");

    server.shutdown().await;
}
