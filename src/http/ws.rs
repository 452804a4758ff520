//! The WebSocket upgrade: limits checked before the upgrade, then one [`ConnectionActor`].

use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;

use super::AppState;
use super::api::error_response;
use crate::actors::connection::{ConnectionActor, Identity};
use crate::protocol::error::{ApiError, ErrorCode};

pub async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let open = state.engine.open_connections().clone();
    if open.fetch_add(1, Ordering::SeqCst) >= state.max_connections {
        open.fetch_sub(1, Ordering::SeqCst);
        let err = ApiError::new(
            ErrorCode::Unavailable,
            "this instance has reached its connection limit",
        );
        return error_response(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, &err);
    }
    let actor = ConnectionActor::new(
        Identity::default(),
        state.engine.connection_settings().clone(),
        state.engine.supervisor().clone(),
        open.clone(),
    );
    let started = ws::WsResponseBuilder::new(actor, &req, stream)
        .frame_size(state.max_frame_bytes)
        .start();
    match started {
        Ok(response) => response,
        Err(e) => {
            // The actor never started, so it will not give its slot back.
            open.fetch_sub(1, Ordering::SeqCst);
            e.error_response()
        }
    }
}
