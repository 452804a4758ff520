//! JSON endpoints: health, readiness and the session read of PROTOCOL.md §2.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::actors::supervisor::GetHealth;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::validate;

/// `{"error": {"code", "message"}}` with a status.
pub fn error_response(status: StatusCode, err: &ApiError) -> HttpResponse {
    http_error(status, err.code.as_str(), &err.message)
}

/// An HTTP error with a code of its own (such as `not_found`, which no WebSocket reply uses).
pub fn http_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message}}))
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest | ErrorCode::InvalidSession | ErrorCode::InvalidProfile => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC string.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let Ok(health) = state.engine.supervisor().send(GetHealth).await else {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "stopping"}));
    };
    let ready = health.store_reachable && health.lease_held && !health.shutting_down;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": {"kind": health.store, "state": if health.store_reachable { "up" } else { "down" }},
        "lease": if health.lease_held { "held" } else { "lost" },
        "shutting_down": health.shutting_down,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn session(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let id = path.into_inner();
    if let Err(err) = validate::session_id(&id) {
        return error_response(StatusCode::BAD_REQUEST, &err);
    }
    let view = match state.engine.store().view(&id).await {
        Ok(view) => view,
        Err(e) => {
            let err = ApiError::from(e);
            return error_response(status_of(err.code), &err);
        }
    };
    match view {
        Some(view) if !view.members.is_empty() || view.ended_at.is_some() => HttpResponse::Ok()
            .json(json!({
                "session": id,
                "version": view.version,
                "leader": view.leader,
                "epoch": view.epoch,
                "counts": view.counts(),
                "members": view.members,
                "ended_at": view.ended_at.map(rfc3339),
            })),
        _ => http_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no live session {id:?}"),
        ),
    }
}
