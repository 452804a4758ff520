//! HTTP surface (docs/protocol.md §2) and the WebSocket upgrade. Every route is declared through
//! [`conventions`], which gives it `HEAD`, 405 and the JSON 404.

pub mod api;
pub mod conventions;
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
    /// The bearer token `/metrics` requires (`--metrics-token`); none = open.
    pub metrics_token: Arc<server_api::ApiKeys>,
}

/// Registers every route; `allowed_origins` (`--allowed-origins`) may call `/api/*` from a
/// browser (CORS).
pub fn configure(cfg: &mut web::ServiceConfig, allowed_origins: &[String]) {
    cfg.service(conventions::get_only("/ws", ws::upgrade))
        .service(conventions::get("/healthz", api::healthz).wrap(conventions::api_headers()))
        .service(conventions::get("/readyz", api::readyz).wrap(conventions::api_headers()))
        .service(conventions::get("/metrics", api::metrics).wrap(conventions::api_headers()))
        .service(conventions::api_scope(allowed_origins, |api| {
            api.service(conventions::get("/sessions/{id}", api::session))
                .service(conventions::get("/me/sessions", api::my_sessions))
                .configure(server_api::configure);
        }))
        .service(conventions::get("/", page::index))
        .service(conventions::get("/assets/{file}", page::assets))
        .default_service(web::to(conventions::not_found));
}
