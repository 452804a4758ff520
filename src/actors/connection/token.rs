//! The term of a signed-in connection's token (docs/protocol.md, "Identity"): `token_expiring`
//! [`WARN_BEFORE`] its `exp`, `refresh` with a new token of the same user (`refreshed`), and, with
//! no refresh, a close with [`CLOSE_TOKEN_EXPIRED`] at `exp` plus the leeway, whose memberships end
//! at once (reason `disconnected`, no grace).
//!
//! A refreshed token's `sessions` claim rules from then on: a session the connection is in and
//! the new claim no longer allows is left with reason `kicked` (the connection gets `kicked`).

use std::time::Duration;

use actix::{ActorFutureExt, AsyncContext, SpawnHandle, WrapFuture};
use actix_web_actors::ws;

use super::ConnectionActor;
use crate::actors::session::Leave;
use crate::auth::{AuthError, Claims};
use crate::model::LeaveReason;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::reply::ServerMessage;
use crate::protocol::request::RequestId;

/// Close code of a connection whose token expired without a refresh.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4003;
/// How long before `exp` the server sends `token_expiring`.
pub const WARN_BEFORE: Duration = Duration::from_secs(30);

/// The pending `token_expiring` and close.
#[derive(Default)]
pub(super) struct Timers {
    warn: Option<SpawnHandle>,
    close: Option<SpawnHandle>,
}

/// From `now_ms` (milliseconds since the Unix epoch): how long until `token_expiring` and how
/// long until the close, for a token expiring at `exp` (seconds) with `leeway_secs` of leeway.
pub fn token_schedule(now_ms: u64, exp: u64, leeway_secs: u64) -> (Duration, Duration) {
    let exp_ms = exp.saturating_mul(1000);
    let warn_at = exp_ms.saturating_sub(WARN_BEFORE.as_millis() as u64);
    let close_at = exp.saturating_add(leeway_secs).saturating_mul(1000);
    (
        Duration::from_millis(warn_at.saturating_sub(now_ms)),
        Duration::from_millis(close_at.saturating_sub(now_ms)),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ConnectionActor {
    /// (Re)starts the timers of the connection's token, if it has one.
    pub(super) fn arm_token_timers(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        for handle in [
            self.token_timers.warn.take(),
            self.token_timers.close.take(),
        ]
        .into_iter()
        .flatten()
        {
            ctx.cancel_future(handle);
        }
        let Some(term) = &self.identity.token else {
            return;
        };
        let exp = term.expires_at;
        let (warn_in, close_in) = token_schedule(now_ms(), exp, term.auth.leeway_secs());
        self.token_timers.warn = Some(ctx.run_later(warn_in, move |act, ctx| {
            let expiring = ServerMessage::TokenExpiring {
                expires_at: exp.saturating_mul(1000),
            };
            act.send(ctx, expiring);
        }));
        self.token_timers.close = Some(ctx.run_later(close_in, |act, ctx| {
            tracing::info!(connection = %act.id, "token expired without a refresh; closing with 4003");
            act.end_reason = LeaveReason::Disconnected;
            let reason = ws::CloseReason {
                code: ws::CloseCode::from(CLOSE_TOKEN_EXPIRED),
                description: Some("token_expired".into()),
            };
            act.start_close(reason, ctx);
        }));
    }

    /// `refresh`: verifies the new token, then carries on under it.
    pub(super) fn refresh(
        &mut self,
        id: Option<RequestId>,
        token: String,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(term) = &self.identity.token else {
            let err = ApiError::new(
                ErrorCode::Forbidden,
                "this connection is not signed in; a token cannot be added to it",
            );
            return self.send_error(ctx, id, &err);
        };
        let auth = term.auth.clone();
        let verified = async move { auth.verify(&token).await };
        self.wait_for(
            verified
                .into_actor(self)
                .map(move |res, act, ctx| act.refreshed(id, res, ctx)),
            ctx,
        );
    }

    fn refreshed(
        &mut self,
        id: Option<RequestId>,
        verified: Result<Claims, AuthError>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let claims = match verified {
            Ok(claims) => claims,
            Err(e) => {
                let err = ApiError::new(ErrorCode::InvalidToken, e.to_string());
                return self.send_error(ctx, id, &err);
            }
        };
        if self.identity.user.as_deref() != Some(claims.sub.as_str()) {
            let err = ApiError::new(
                ErrorCode::Forbidden,
                "the new token is for another user; sign in again on a new connection",
            );
            return self.send_error(ctx, id, &err);
        }
        let Some(term) = &mut self.identity.token else {
            return;
        };
        term.expires_at = claims.exp;
        self.identity.name = claims.name;
        self.identity.sessions = claims.sessions;
        if let Some(allowed) = &self.identity.sessions {
            let dropped: Vec<_> = self
                .sessions
                .keys()
                .filter(|s| !allowed.iter().any(|a| a == s.as_str()))
                .cloned()
                .collect();
            for session in dropped {
                let Some(addr) = self.sessions.remove(&session) else {
                    continue;
                };
                tracing::info!(connection = %self.id, %session,
                    "refreshed token no longer allows this session; leaving it (kicked)");
                addr.do_send(Leave {
                    connection: self.id.clone(),
                    reason: LeaveReason::Kicked,
                    socket: Some(self.socket),
                });
                let kicked = ServerMessage::Kicked {
                    session,
                    reason: Some("your new token does not allow this session".into()),
                };
                self.send(ctx, kicked);
            }
        }
        self.arm_token_timers(ctx);
        let refreshed = ServerMessage::Refreshed {
            id,
            expires_at: claims.exp.saturating_mul(1000),
        };
        self.send(ctx, refreshed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_30_s_before_exp_and_closes_at_exp_plus_leeway() {
        let now = 1_000_000_000_000;
        let exp = now / 1000 + 120;
        let (warn, close) = token_schedule(now, exp, 10);
        assert_eq!(warn, Duration::from_secs(90));
        assert_eq!(close, Duration::from_secs(130));
        // Less than 30 s left: warned at once.
        let (warn, close) = token_schedule(now, now / 1000 + 5, 0);
        assert_eq!(warn, Duration::ZERO);
        assert_eq!(close, Duration::from_secs(5));
    }
}
