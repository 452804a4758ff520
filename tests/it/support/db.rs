//! Databases and signed-in HTTP for the persistence and auth tests.
//!
//! [`TestDatabase`] creates a fresh Postgres database on `DATABASE_URL`'s server (default
//! `postgres://postgres@127.0.0.1/postgres`) and drops it when the test ends, even on failure.
//! [`http_get_as`] and [`ws_handshake_status`] send a bearer token, which the plain helpers of
//! `server.rs` and `ws.rs` do not.

use std::net::SocketAddr;

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

use super::urls::{socket_addr, with_database};

/// `host:port` of a Postgres URL (port 5432 when absent).
pub fn postgres_addr(url: &str) -> SocketAddr {
    socket_addr(url, 5432)
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
