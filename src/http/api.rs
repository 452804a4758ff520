//! JSON endpoints: health, readiness, the session read and "my sessions" of docs/protocol.md §2.
//!
//! When a JWT secret is configured every `/api/*` route needs a bearer token (401 without a valid
//! one). Access rule of `/api/sessions/{id}`: a token whose `sessions` claim is present may read
//! only the sessions it lists (403 for the others); a token without the claim may read any session.
//! `/api/me/sessions` only ever shows the token user's own rows, and of a scoped token only those
//! of the sessions it lists.

use std::time::Duration;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::HttpError;
use crate::actors::supervisor::GetHealth;
use crate::auth::{AuthError, Claims};
use crate::log_limit::LogLimiter;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::validate;

/// Milliseconds since the Unix epoch as an RFC 3339 UTC string.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /metrics`; with `--metrics-token`, only for `Authorization: Bearer <token>` (compared in
/// constant time), else 401.
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    if state.metrics_token.enabled() {
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|token| state.metrics_token.accepts(token)) {
            return Err(HttpError::MetricsToken);
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render()))
}

/// A time as an RFC 3339 UTC string, with milliseconds.
pub fn rfc3339_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `GET /readyz`: the state of each part, never an error's text (a database driver's message can
/// name hosts, users and versions); that goes to the log, at most once per [`READYZ_LOG_EVERY`].
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let Ok(health) = state.engine.supervisor().send(GetHealth).await else {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "stopping"}));
    };
    let database = match &state.persistence {
        Some(persistence) => Some(persistence.health().await),
        None => None,
    };
    let database_up = database.as_ref().is_none_or(|db| db.up);
    let ready = health.store_reachable && health.lease_held && !health.shutting_down && database_up;
    if !ready {
        crate::log_limited!(
            limiter: READYZ_LOG,
            tracing::Level::WARN,
            store = health.store,
            store_reachable = health.store_reachable,
            lease_held = health.lease_held,
            shutting_down = health.shutting_down,
            database_error = database.as_ref().and_then(|db| db.last_error.as_deref()),
            "not ready"
        );
    }
    let database = match database {
        Some(db) => json!({
            "kind": db.backend,
            "state": if db.up { "up" } else { "down" },
            "pending_writes": db.pending + db.in_flight,
        }),
        None => json!({"kind": null, "state": "none"}),
    };
    let body = json!({
        "database": database,
        "status": if ready { "ready" } else { "not_ready" },
        "store": {
            "kind": health.store,
            "state": if health.store_reachable { "up" } else { "down" },
        },
        "lease": if health.lease_held { "held" } else { "lost" },
        "shutting_down": health.shutting_down,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// How often a failing `/readyz` may log why: probes come every few seconds for as long as the
/// outage lasts.
pub const READYZ_LOG_EVERY: Duration = Duration::from_secs(30);
static READYZ_LOG: LogLimiter = LogLimiter::new(1, READYZ_LOG_EVERY);

pub async fn session(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let claims: Option<Claims> = state.auth.api_claims(&req).await?;
    let id = path.into_inner();
    validate::session_id(&id)?;
    if let Some(allowed) = claims.as_ref().and_then(|c| c.sessions.as_ref())
        && !allowed.iter().any(|s| s == &id)
    {
        return Err(HttpError::api(
            ErrorCode::Forbidden,
            format!("this token may not see session {id:?}"),
        ));
    }
    let view = state
        .engine
        .store()
        .view(&id)
        .await
        .map_err(ApiError::from)?
        .unwrap_or_default();
    let body = |ended_at: Option<String>| {
        json!({
            "session": id,
            "version": view.version,
            "leader": view.leader,
            "epoch": view.epoch,
            "counts": view.counts(),
            "members": view.members,
            "ended_at": ended_at,
        })
    };
    if !view.members.is_empty() {
        return Ok(HttpResponse::Ok().json(body(view.ended_at.map(rfc3339))));
    }
    // No live member: the database's record decides (a finished session is still 200).
    let record = match &state.persistence {
        Some(persistence) => {
            let wanted = id.clone();
            persistence.read(move |db| db.session(&wanted)).await
        }
        None => Ok(None),
    };
    let ended_at = match record {
        Ok(Some(record)) => record
            .ended_at
            .as_ref()
            .map(rfc3339_time)
            .or(view.ended_at.map(rfc3339)),
        Ok(None) if view.ended_at.is_some() => view.ended_at.map(rfc3339),
        Ok(None) => {
            return Err(HttpError::NotFound(format!(
                "no live or recorded session {id:?}"
            )));
        }
        Err(e) if view.ended_at.is_some() => {
            tracing::debug!(error = %e, "session record unavailable; answering from the store");
            view.ended_at.map(rfc3339)
        }
        Err(e) => return Err(database_unavailable(&e)),
    };
    Ok(HttpResponse::Ok().json(body(ended_at)))
}

/// Default and largest `limit` of `/api/me/sessions`.
pub const MY_SESSIONS_DEFAULT_LIMIT: i64 = 20;
pub const MY_SESSIONS_MAX_LIMIT: i64 = 100;

#[derive(Debug, Deserialize)]
pub struct MySessionsQuery {
    limit: Option<String>,
}

pub async fn my_sessions(
    req: HttpRequest,
    query: web::Query<MySessionsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let Some(claims) = state.auth.api_claims(&req).await? else {
        return Err(HttpError::Unauthorized(AuthError::Invalid(
            "sign-in is not configured on this server (no --jwt-secret), so there is no \
             current user"
                .into(),
        )));
    };
    let user = claims.sub;
    // A token scoped to some sessions sees only those (none for an empty list).
    let scope = claims.sessions;
    let limit = match query.limit.as_deref().map(str::parse::<i64>) {
        None => MY_SESSIONS_DEFAULT_LIMIT,
        Some(Ok(n)) if n >= 1 => n.min(MY_SESSIONS_MAX_LIMIT),
        Some(_) => {
            return Err(HttpError::api(
                ErrorCode::BadRequest,
                format!("`limit` must be an integer from 1 to {MY_SESSIONS_MAX_LIMIT}"),
            ));
        }
    };
    let Some(persistence) = &state.persistence else {
        return Err(HttpError::api(
            ErrorCode::Unavailable,
            "this server has no database",
        ));
    };
    let rows = persistence
        .read(move |db| db.participations(&user, scope.as_deref(), limit))
        .await
        .map_err(|e| database_unavailable(&e))?;
    let ids: Vec<String> = rows.iter().map(|r| r.session.clone()).collect();
    // One batched read of the live counts; without the store the rows still answer.
    let live = if ids.is_empty() {
        Vec::new()
    } else {
        match state.engine.store().counts(&ids).await {
            Ok(counts) => counts.into_iter().map(Some).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "live counts unavailable for /api/me/sessions");
                vec![None; ids.len()]
            }
        }
    };
    let sessions: Vec<_> = rows
        .iter()
        .zip(live.into_iter().chain(std::iter::repeat(None)))
        .map(|(row, live)| {
            json!({
                "session": row.session,
                "display_name": row.display_name,
                "first_joined_at": rfc3339_time(&row.first_joined_at),
                "last_joined_at": rfc3339_time(&row.last_joined_at),
                "last_left_at": row.last_left_at.as_ref().map(rfc3339_time),
                "join_count": row.join_count,
                "ended_at": row.ended_at.as_ref().map(rfc3339_time),
                "live": live,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"sessions": sessions})))
}

/// 503 `unavailable` for a failed database read: the driver's text (hosts, users, versions) goes
/// to the log, not to the client.
fn database_unavailable(error: &dyn std::fmt::Display) -> HttpError {
    crate::log_limited!(tracing::Level::WARN, error = %error, "database read failed");
    HttpError::api(
        ErrorCode::Unavailable,
        "the database is unreachable; try again later",
    )
}
