//! Databases and signed-in HTTP for the persistence and auth tests.
//!
//! [`TestDatabase`] creates a fresh Postgres database on `DATABASE_URL`'s server (default
//! `postgres://postgres@127.0.0.1/postgres`) and drops it when the test ends, even on failure.
//! [`http_get_as`] and [`ws_handshake_status`] send a bearer token, which the plain helpers of
//! `server.rs` and `ws.rs` do not.

use std::net::SocketAddr;
use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
use rollcall::auth::{Claims, sign_claims};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::server::WAIT;

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1/postgres";

/// The Postgres server the tests use: `DATABASE_URL` when it is a Postgres URL, else the default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// `host:port` of a Postgres URL (port 5432 when absent).
pub fn postgres_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let with_port = with_port.replace("localhost", "127.0.0.1");
    with_port
        .parse()
        .unwrap_or_else(|e| panic!("{with_port:?} is not host:port: {e}"))
}

/// A fresh database, dropped on drop.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let admin = admin_url();
        let name = format!(
            "rollcall_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut conn = PgConnection::establish(&admin)
            .unwrap_or_else(|e| panic!("the tests need Postgres at {admin}: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create the test database");
        TestDatabase {
            url: with_database(&admin, &name),
            name,
            admin,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match PgConnection::establish(&self.admin) {
            Ok(mut conn) => {
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                if let Err(e) = diesel::sql_query(drop).execute(&mut conn) {
                    eprintln!("could not drop test database {}: {e}", self.name);
                }
            }
            Err(e) => eprintln!("could not drop test database {}: {e}", self.name),
        }
    }
}

/// A token for `user` signed with `secret`, valid for an hour.
pub fn token(secret: &str, user: &str, sessions: Option<&[&str]>) -> String {
    token_with_exp(secret, user, sessions, now_secs() + 3600)
}

pub fn token_with_exp(secret: &str, user: &str, sessions: Option<&[&str]>, exp: u64) -> String {
    sign_claims(
        secret,
        &Claims {
            sub: user.to_owned(),
            exp,
            name: Some(format!("{user} (name)")),
            sessions: sessions.map(|s| s.iter().map(|x| (*x).to_owned()).collect()),
        },
    )
    .expect("sign a test token")
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The HTTP status of a WebSocket handshake to `url` (101 when it upgraded), with an optional
/// `Authorization: Bearer` header.
pub async fn ws_handshake_status(url: &str, bearer: Option<&str>) -> u16 {
    let mut request = url.into_client_request().expect("a WebSocket URL");
    if let Some(token) = bearer {
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {token}").parse().expect("a header value"),
        );
    }
    let attempt = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|_| panic!("WebSocket handshake to {url} timed out"));
    match attempt {
        Ok((mut socket, response)) => {
            let _ = socket.close(None).await;
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("WebSocket handshake to {url} failed without a status: {e}"),
    }
}

/// Polls `check` every 50 ms until it holds or `timeout` passes; true if it held.
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `url` with its `host:port` replaced by `addr` (to go through a [`super::proxy::TcpProxy`]).
pub fn with_host(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority.rsplit_once('@').map(|(u, _)| u);
    match user {
        Some(user) => format!("{scheme}://{user}@{addr}{tail}"),
        None => format!("{scheme}://{addr}{tail}"),
    }
}
