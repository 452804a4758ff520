//! HTTP surface (docs/protocol.md §2) and the WebSocket upgrade.

pub mod api;
pub mod error;
pub mod page;
pub mod server_api;
pub mod ws;

use std::sync::Arc;

use actix_web::web;

use crate::auth::Authenticator;
use crate::engine::Engine;
use crate::persistence::Persistence;

/// Shared state of every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub max_message_bytes: usize,
    /// Origins allowed to open a WebSocket; empty = any.
    pub allowed_origins: Arc<Vec<String>>,
    /// Checks sign-in tokens (WebSocket upgrade and `/api/*`).
    pub auth: Arc<Authenticator>,
    /// Participation records; `None` when this server runs without a database.
    pub persistence: Option<Persistence>,
    /// Keys of the server API (`--api-key`); none turns it off.
    pub api_keys: Arc<server_api::ApiKeys>,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(ws::upgrade))
        .route("/healthz", web::get().to(api::healthz))
        .route("/readyz", web::get().to(api::readyz))
        .route("/metrics", web::get().to(api::metrics))
        .route("/api/sessions/{id}", web::get().to(api::session))
        .route("/api/me/sessions", web::get().to(api::my_sessions))
        .configure(server_api::configure)
        .route("/", web::get().to(page::index))
        .route("/assets/{file}", web::get().to(page::assets));
}
