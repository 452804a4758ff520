//! The server API (docs/protocol.md, "Server API"): the application's own backend acts on
//! sessions over HTTP, whichever instance holds their members.
//!
//! Every route needs one of the `--api-key` keys in `X-Api-Key` ([`keys`]); a user's token
//! never grants them. Input is checked in full before the store is touched, so a refused request
//! changes nothing. Each operation is one store step ([`crate::store::Operator`]) that reaches
//! every instance through the session's feed; this instance's own session actors hear of it from
//! the supervisor ([`crate::actors::supervisor::BackendChange`]).

pub mod body;
pub mod keys;

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::conventions::{get, post};
use super::error::HttpError;
use crate::actors::supervisor::{BackendChange, BackendMessage};
use crate::ids::SessionId;
use crate::model::{Change, Event};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::validate;
use crate::store::KickTarget;
pub use keys::ApiKeys;

/// Most sessions one presence read names.
pub const MAX_PRESENCE_SESSIONS: usize = 100;
/// Longest reason text of a kick, in characters.
pub const MAX_KICK_REASON: usize = 128;
/// Longest connection or user id a kick names, in characters.
pub const MAX_KICK_ID: usize = 128;
/// Default and largest page of the list of live sessions.
pub const LIST_DEFAULT_LIMIT: usize = 100;
pub const LIST_MAX_LIMIT: usize = 1000;

/// Registers the routes, inside the `/api` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(post("/server/sessions/{id}/publish", publish))
        .service(post("/server/sessions/{id}/kick", kick))
        .service(post("/server/sessions/{id}/end", end))
        .service(post("/server/presence", presence))
        .service(get("/server/sessions", list));
}

/// The key check, then the session id of the path.
fn admit(req: &HttpRequest, state: &AppState, id: String) -> Result<SessionId, HttpError> {
    state.api_keys.check(req)?;
    Ok(validate::session(id)?)
}

fn bad_request(message: impl Into<String>) -> HttpError {
    HttpError::api(ErrorCode::BadRequest, message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(deserialize_with = "body::present")]
    data: Value,
}

async fn publish(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let session = admit(&req, &state, path.into_inner())?;
    let limit = state.engine.connection_settings().parse.max_publish_bytes;
    // The body may wrap the data in some white space; the data itself is held to the limit.
    let body: PublishBody = body::json(payload, limit.saturating_add(body::MAX_BODY)).await?;
    validate::publish_data(&body.data, limit)?;
    let store = state.engine.store();
    let Some(position) = store
        .publish_as_server(&session, &body.data)
        .await
        .map_err(ApiError::from)?
    else {
        return Err(no_live_session(&session));
    };
    state.engine.supervisor().do_send(BackendMessage {
        session,
        data: body.data,
        position: position.clone(),
    });
    Ok(HttpResponse::Ok().json(json!({"offset": position.offset, "stream": position.stream})))
}

fn no_live_session(session: &str) -> HttpError {
    HttpError::NotFound(format!("session {session:?} has no live member"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    connection: Option<String>,
    user: Option<String>,
    reason: Option<String>,
}

impl KickBody {
    /// Whom it names, and the reason text, once both are checked.
    fn checked(&self) -> Result<(KickTarget<'_>, Option<&str>), HttpError> {
        let target = match (&self.connection, &self.user) {
            (Some(connection), None) => KickTarget::Connection(connection),
            (None, Some(user)) => KickTarget::User(user),
            _ => {
                return Err(bad_request(
                    "a kick names exactly one of `connection` and `user`",
                ));
            }
        };
        let id = match target {
            KickTarget::Connection(id) | KickTarget::User(id) => id,
        };
        let chars = id.chars().count();
        if chars == 0 || chars > MAX_KICK_ID {
            return Err(bad_request(format!(
                "a connection or user id is 1-{MAX_KICK_ID} characters"
            )));
        }
        if let Some(reason) = &self.reason
            && reason.chars().count() > MAX_KICK_REASON
        {
            return Err(bad_request(format!(
                "`reason` is at most {MAX_KICK_REASON} characters"
            )));
        }
        Ok((target, self.reason.as_deref()))
    }
}

async fn kick(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let session = admit(&req, &state, path.into_inner())?;
    let body: KickBody = body::json(payload, body::MAX_BODY).await?;
    let (target, reason) = body.checked()?;
    let store = state.engine.store();
    let Some(change) = store
        .kick(&session, target, reason)
        .await
        .map_err(ApiError::from)?
    else {
        return Err(HttpError::NotFound(match target {
            KickTarget::Connection(c) => format!("{c:?} is not a member of session {session:?}"),
            KickTarget::User(u) => format!("user {u:?} has no connection in session {session:?}"),
        }));
    };
    let removed = left_count(&change);
    state
        .engine
        .supervisor()
        .do_send(BackendChange { session, change });
    Ok(HttpResponse::Ok().json(json!({ "removed": removed })))
}

fn left_count(change: &Change) -> usize {
    change
        .events
        .iter()
        .filter(|e| matches!(e, Event::MemberLeft { .. }))
        .count()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {}

async fn end(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let session = admit(&req, &state, path.into_inner())?;
    let EndBody {} = body::json(payload, body::MAX_BODY).await?;
    let store = state.engine.store();
    let Some(change) = store
        .end_by_server(&session)
        .await
        .map_err(ApiError::from)?
    else {
        return Err(no_live_session(&session));
    };
    state
        .engine
        .supervisor()
        .do_send(BackendChange { session, change });
    Ok(HttpResponse::Ok().json(json!({"ended": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceBody {
    sessions: Vec<String>,
}

async fn presence(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    state.api_keys.check(&req)?;
    let body: PresenceBody = body::json(payload, body::MAX_BODY).await?;
    if body.sessions.len() > MAX_PRESENCE_SESSIONS {
        return Err(bad_request(format!(
            "at most {MAX_PRESENCE_SESSIONS} sessions per presence read"
        )));
    }
    for session in &body.sessions {
        validate::session_id(session)?;
    }
    let mut sessions = body.sessions;
    sessions.sort_unstable();
    sessions.dedup();
    let views = state
        .engine
        .store()
        .views(&sessions)
        .await
        .map_err(ApiError::from)?;
    let answer: HashMap<String, Value> = sessions
        .into_iter()
        .zip(views)
        .map(|(session, view)| {
            let live = view.filter(|v| !v.members.is_empty()).map(|v| {
                json!({
                    "version": v.version,
                    "leader": v.leader,
                    "epoch": v.epoch,
                    "counts": v.counts(),
                    "members": v.members,
                })
            });
            (session, live.unwrap_or(Value::Null))
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "sessions": answer })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// A page of the live sessions (at least one member), in session id order; `cursor` (the last
/// session of the page before) continues a listing, and is null on the last page.
async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, HttpError> {
    state.api_keys.check(&req)?;
    let query = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| bad_request(format!("bad query: {e}")))?
        .into_inner();
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => LIST_DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=LIST_MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(bad_request(format!(
                "`limit` must be an integer from 1 to {LIST_MAX_LIMIT}"
            )));
        }
    };
    if let Some(cursor) = &query.cursor {
        validate::session_id(cursor)
            .map_err(|_| bad_request("`cursor` is not one this server gave"))?;
    }
    let page = state
        .engine
        .store()
        .live_sessions(query.cursor.as_deref(), limit)
        .await
        .map_err(ApiError::from)?;
    let sessions: Vec<Value> = page
        .sessions
        .into_iter()
        .map(|(session, counts)| json!({"session": session, "counts": counts}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"sessions": sessions, "cursor": page.cursor})))
}
