//! The WebSocket upgrade: identity and limits checked before the upgrade, then one
//! [`ConnectionActor`]. A bad token is an HTTP 401 here, never an anonymous connection.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;

use super::AppState;
use super::conventions::origin_listed;
use super::error::HttpError;
use crate::actors::connection::ConnectionActor;
use crate::protocol::error::ErrorCode;

pub async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    check_version(&req)?;
    if !origin_allowed(&req, &state.allowed_origins) {
        return Err(HttpError::api(
            ErrorCode::Forbidden,
            "this origin may not open a WebSocket here",
        ));
    }
    let identity = state.auth.identify(&req).await.inspect_err(|e| {
        crate::log_limited!(tracing::Level::DEBUG, error = %e, "WebSocket upgrade refused");
    })?;
    let permit = state
        .engine
        .admission()
        .try_admit()
        .map_err(|refused| HttpError::api(ErrorCode::Unavailable, refused.to_string()))?;
    let actor = ConnectionActor::new(
        identity,
        state.engine.connection_settings().clone(),
        state.engine.supervisor().clone(),
        permit,
    );
    let started = ws::WsResponseBuilder::new(actor, &req, stream)
        .frame_size(state.max_message_bytes)
        .start();
    // A failed upgrade drops the actor, and with it the permit.
    Ok(started.unwrap_or_else(|e| e.error_response()))
}

/// A handshake for another WebSocket version than 13 (RFC 6455 §4.4) is refused with 426. A request
/// without the header is left to the handshake, which refuses it as malformed.
fn check_version(req: &HttpRequest) -> Result<(), HttpError> {
    match req.headers().get("sec-websocket-version") {
        Some(version) if version.as_bytes() != b"13" => Err(HttpError::UnsupportedWebSocketVersion),
        _ => Ok(()),
    }
}

/// With an allow-list, the `Origin` header must name one of its entries (browsers always send it
/// on WebSocket upgrades); without one, every origin is accepted.
fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    req.headers()
        .get(actix_web::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| origin_listed(origin, allowed))
}
