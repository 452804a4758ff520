//! HTTP surface (PROTOCOL.md §2) and the WebSocket upgrade.

pub mod api;
pub mod ws;

use actix_web::web;

use crate::engine::Engine;

/// Shared state of every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub max_frame_bytes: usize,
    pub max_connections: usize,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(ws::upgrade))
        .route("/healthz", web::get().to(api::healthz))
        .route("/readyz", web::get().to(api::readyz))
        .route("/metrics", web::get().to(api::metrics))
        .route("/api/sessions/{id}", web::get().to(api::session));
}
