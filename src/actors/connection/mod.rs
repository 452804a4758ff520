//! One actor per WebSocket: parses frames, answers requests in order, keeps the socket alive, and
//! ends every membership when the socket goes away, for whatever reason.
//!
//! Requests are handled one at a time (`requests`), so replies leave in request order and a
//! request's reply always precedes the events of later changes; a `ping` is answered at once.

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Duration;

use tokio::time::Instant;

use actix::{Actor, ActorContext, Addr, AsyncContext, Handler, StreamHandler};
use actix_web_actors::ws;

mod fragments;
mod messages;
mod requests;
mod resume;
mod token;

pub use crate::auth::{Identity, TokenTerm};
pub use token::{CLOSE_TOKEN_EXPIRED, WARN_BEFORE, token_schedule};

use fragments::{Assembled, FragmentError, Reassembly};

use super::rate::{RateSettings, RequestLimiter, Verdict};
use super::session::{Leave, Lost, SessionActor};
use super::supervisor::CLOSE_RESTARTING;
use super::supervisor::{Connect, Disconnect, Supervisor};
use super::{SocketId, ToClient};

/// Close code for a connection that keeps flooding after being rate limited.
const CLOSE_POLICY: u16 = 1008;

/// Close code for a socket whose connection was resumed on another socket.
pub const CLOSE_REPLACED: u16 = 4001;

/// How long a close the server started waits for the client's answer before the connection is
/// dropped anyway.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
use crate::admission::ConnectionPermit;
use crate::ids::{ConnectionId, SessionId};
use crate::metrics;
use crate::model::LeaveReason;
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::reply::ServerMessage;
use crate::protocol::request::{self, ParseLimits, RequestId};
use crate::resume::ResumeTokens;

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    pub instance_name: String,
    pub ping_interval: Duration,
    pub client_timeout: Duration,
    pub parse: ParseLimits,
    pub max_sessions: usize,
    /// Largest message, whole or reassembled from fragments.
    pub max_message_bytes: usize,
    pub rate: RateSettings,
    /// Mints the `resume_token` of `welcome` and checks those of `resume`.
    pub resume: ResumeTokens,
}

/// The name and avatar a `join` asks for (the connection's own profile when absent).
struct JoinProfile {
    name: Option<String>,
    avatar: Option<String>,
}

pub struct ConnectionActor {
    /// The connection this socket carries: its own from `welcome`, or the one it resumed.
    id: ConnectionId,
    socket: SocketId,
    /// No request has been handled yet (a `resume` is only taken as the first).
    first_request: bool,
    requests: requests::RequestQueue,
    /// While a `resume` waits for its sessions: the frames they queue for this socket, held until
    /// the `resumed` reply is written ahead of them.
    held_for_resume: Option<Vec<ToClient>>,
    identity: Identity,
    settings: Arc<ConnectionSettings>,
    supervisor: Addr<Supervisor>,
    /// This connection's admission slot, given back when the actor is dropped.
    _permit: ConnectionPermit,
    sessions: HashMap<SessionId, Addr<SessionActor>>,
    name: Option<String>,
    avatar: Option<String>,
    last_seen: Instant,
    end_reason: LeaveReason,
    /// The socket ended cleanly (a close frame, or a close the server chose): its memberships
    /// end at once. Otherwise (dropped, silent, replaced) they are lost, and may be resumed.
    clean_end: bool,
    limiter: RequestLimiter,
    closing: Closing,
    /// The fragmented message being received, if any.
    fragments: Reassembly,
    /// `rollcall_frames_out_total`, looked up once: a fan-out counts on every connection.
    frames_out: ::metrics::Counter,
    /// The `token_expiring` and 4003 timers of a signed-in connection.
    token_timers: token::Timers,
}

/// How far a close started by the server has got: the actor stops, and its memberships end, once
/// the close handshake is complete or given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    Open,
    /// A close is queued behind the replies already produced; data frames still arriving are
    /// ignored. `client_done`: the client's close (or a frame that ends its readable stream)
    /// has arrived meanwhile, so there will be no answer to wait for.
    Queued {
        client_done: bool,
    },
    /// The close frame is written and nothing may follow it; the actor waits for the client's
    /// close, at most [`CLOSE_HANDSHAKE_TIMEOUT`].
    Sent,
}

impl ConnectionActor {
    pub fn new(
        identity: Identity,
        settings: Arc<ConnectionSettings>,
        supervisor: Addr<Supervisor>,
        permit: ConnectionPermit,
    ) -> ConnectionActor {
        ConnectionActor {
            id: ConnectionId::new(uuid::Uuid::new_v4().to_string()),
            socket: SocketId::next(),
            first_request: true,
            requests: requests::RequestQueue::default(),
            held_for_resume: None,
            identity,
            settings: settings.clone(),
            supervisor,
            _permit: permit,
            sessions: HashMap::new(),
            name: None,
            avatar: None,
            last_seen: Instant::now(),
            end_reason: LeaveReason::Disconnected,
            clean_end: false,
            limiter: RequestLimiter::new(settings.rate),
            closing: Closing::Open,
            fragments: Reassembly::new(settings.max_message_bytes),
            frames_out: ::metrics::counter!(metrics::FRAMES_OUT),
            token_timers: token::Timers::default(),
        }
    }

    /// Queues a frame behind everything session actors have queued for this socket, so that
    /// replies and events leave in the order they were produced.
    fn send(&self, ctx: &mut ws::WebsocketContext<Self>, message: ServerMessage) {
        if let ServerMessage::Error { code, .. } = &message {
            ::metrics::counter!(metrics::ERRORS, "code" => *code).increment(1);
        }
        ctx.address().do_send(ToClient::Frame(message.encode()));
    }

    fn send_error(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        id: Option<RequestId>,
        err: &ApiError,
    ) {
        self.send(ctx, ServerMessage::error(id, err));
    }

    fn display_name(&self, requested: Option<String>) -> String {
        requested
            .or_else(|| self.name.clone())
            .or_else(|| self.identity.name.clone())
            .or_else(|| self.identity.user.clone())
            .unwrap_or_else(|| "Guest".to_owned())
    }

    fn session_addr(&self, session: &str) -> Result<Addr<SessionActor>, ApiError> {
        self.sessions
            .get(session)
            .cloned()
            .ok_or_else(|| ApiError::not_member(session))
    }

    /// Applies the rate limit to one incoming data frame (text or binary: both cost a reply);
    /// `false` when the frame was refused or the connection is being closed for flooding.
    fn admit(
        &mut self,
        id: impl FnOnce() -> Option<RequestId>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> bool {
        match self.limiter.check() {
            Verdict::Allow => true,
            Verdict::Refuse => {
                ::metrics::counter!(metrics::RATE_LIMITED).increment(1);
                let err = ApiError::new(ErrorCode::RateLimited, "too many requests; slow down");
                self.send_error(ctx, id(), &err);
                false
            }
            Verdict::Close => {
                ::metrics::counter!(metrics::RATE_LIMITED).increment(1);
                crate::log_limited!(
                    tracing::Level::WARN,
                    connection = %self.id,
                    "connection keeps flooding; closing with 1008"
                );
                // Queued behind the replies already produced, so the client reads them all first.
                self.closing = Closing::Queued { client_done: false };
                ctx.address().do_send(ToClient::Close {
                    code: CLOSE_POLICY,
                    reason: "too many requests".into(),
                });
                false
            }
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7) for something the client sent: a close frame with
    /// `code` and no internal detail, then TCP closes at once; a 1009 waits for the client's close
    /// like any close the server chooses. `why` goes to the log only.
    fn fail(
        &mut self,
        code: ws::CloseCode,
        why: impl std::fmt::Display,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        crate::log_limited!(
            tracing::Level::DEBUG,
            connection = %self.id,
            code = u16::from(code),
            %why,
            "closing the connection"
        );
        let reason = ws::CloseReason {
            code,
            description: None,
        };
        if code == ws::CloseCode::Size {
            self.start_close(reason, ctx);
            return;
        }
        self.clean_end = true;
        self.closing = Closing::Sent;
        ctx.close(Some(reason));
        ctx.stop();
    }

    /// Ends every membership of this socket: at once after a clean end, else lost (reconnecting
    /// for the grace).
    fn end_memberships(&mut self) {
        for (_, addr) in self.sessions.drain() {
            let leave = Leave {
                connection: self.id.clone(),
                reason: self.end_reason,
                socket: Some(self.socket),
            };
            if self.clean_end {
                addr.do_send(leave);
            } else {
                addr.do_send(Lost(leave));
            }
        }
    }

    /// Binary messages are answered with an error; the connection stays open.
    fn refuse_binary(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        // Rate-limited like text: a flood of binary messages must not get unlimited replies.
        if self.admit(|| None, ctx) {
            let err = ApiError::bad_request("messages must be UTF-8 JSON text");
            self.send_error(ctx, None, &err);
        }
    }

    /// Writes the server's close frame; the actor stops when the client answers, its stream ends,
    /// or [`CLOSE_HANDSHAKE_TIMEOUT`] passes, whichever comes first.
    fn start_close(&mut self, reason: ws::CloseReason, ctx: &mut ws::WebsocketContext<Self>) {
        // A close the server chose ends the memberships at once, except one that hands the
        // connection over to another socket (4001) or asks the client to come back elsewhere
        // (1012): those keep their place for a resume.
        let code = u16::from(reason.code);
        self.clean_end = code != CLOSE_REPLACED && code != CLOSE_RESTARTING;
        if self.clean_end {
            // Ended now, not when the client answers: a resume on a new socket meanwhile must
            // find the membership ending, not live.
            self.end_memberships();
        }
        let client_done = self.closing == Closing::Queued { client_done: true };
        ctx.close(Some(reason));
        if client_done {
            ctx.stop();
            return;
        }
        self.closing = Closing::Sent;
        ctx.run_later(CLOSE_HANDSHAKE_TIMEOUT, |act, ctx| {
            crate::log_limited!(
                tracing::Level::INFO,
                connection = %act.id,
                "client did not answer the close in time; dropping it"
            );
            ctx.stop();
        });
    }

    /// Checks at the exact moment the client's silence would reach the timeout, and again at the
    /// new moment if it spoke meanwhile: a silent client is closed right at the timeout, with one
    /// timer per connection and no per-frame work.
    fn check_liveness_in(&self, delay: Duration, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.run_later(delay, |act, ctx| {
            if act.closing == Closing::Sent {
                return;
            }
            let silent = act.last_seen.elapsed();
            match act.settings.client_timeout.checked_sub(silent) {
                Some(left) if !left.is_zero() => act.check_liveness_in(left, ctx),
                _ => {
                    crate::log_limited!(
                        tracing::Level::INFO,
                        connection = %act.id,
                        silent_ms = silent.as_millis() as u64,
                        "client silent for the timeout; closing"
                    );
                    act.end_reason = LeaveReason::Timeout;
                    ctx.stop();
                }
            }
        });
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.admit(|| request::peek_id(text), ctx) {
            return;
        }
        match request::parse(text, self.settings.parse) {
            Ok((id, request)) => self.request(id, request, ctx),
            Err(rejected) => {
                self.first_request = false;
                crate::log_limited!(
                    tracing::Level::DEBUG,
                    connection = %self.id,
                    code = rejected.error.code.as_str(),
                    "request refused"
                );
                self.send_error(ctx, rejected.id, &rejected.error)
            }
        }
    }
}

/// Whether a read error is a text frame that is not UTF-8 (answered with 1007), rather than a
/// broken socket. actix-web-actors reports both as `io::ErrorKind::Other`, the first with the text
/// of a `Utf8Error`; the codec reports reserved bits as `InvalidData` (a protocol error).
fn is_invalid_text(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string().contains("utf-8")
}

/// Whether a read error is a frame the codec refused (reserved bits), rather than a broken socket.
fn is_refused_frame(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
}

/// The answer to a client's close: its code echoed (RFC 6455 §5.5.1), without a reason. The codec
/// has already refused codes no endpoint may send and reasons that are not UTF-8.
fn echo_close(reason: ws::CloseReason) -> ws::CloseReason {
    ws::CloseReason {
        code: reason.code,
        description: None,
    }
}

/// Folds a mailbox failure (the target actor is gone) into the reply error.
fn flatten<T>(res: Result<Result<T, ApiError>, actix::MailboxError>) -> Result<T, ApiError> {
    res.map_err(|e| ApiError::new(ErrorCode::Internal, format!("session unavailable: {e}")))?
}

impl Actor for ConnectionActor {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.supervisor.do_send(Connect {
            socket: self.socket,
            client: ctx.address().recipient(),
        });
        let welcome = ServerMessage::Welcome {
            connection: self.id.clone(),
            user: self.identity.user.clone(),
            instance: self.settings.instance_name.clone(),
            protocol: PROTOCOL_VERSION,
            heartbeat_ms: self.settings.ping_interval.as_millis() as u64,
            resume_token: self.settings.resume.mint(&self.id),
        };
        // Written at once, not queued: nothing may precede it, not even a `resumed` written
        // straight to the socket.
        self.frames_out.increment(1);
        ctx.text(welcome.encode());
        ctx.run_interval(self.settings.ping_interval, |act, ctx| {
            if act.closing != Closing::Sent {
                ctx.ping(b"");
            }
        });
        self.check_liveness_in(self.settings.client_timeout, ctx);
        self.arm_token_timers(ctx);
        tracing::debug!(connection = %self.id, user = ?self.identity.user, "connected");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.end_memberships();
        self.supervisor.do_send(Disconnect {
            socket: self.socket,
        });
        tracing::debug!(connection = %self.id, reason = self.end_reason.as_str(), "disconnected");
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ConnectionActor {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        if self.closing != Closing::Open {
            // A close answers ours. No close can be read after a protocol error: some leave the bad
            // frame in the decoder, which yields the same error again on every read.
            let client_done = matches!(item, Ok(ws::Message::Close(_)) | Err(_));
            match self.closing {
                Closing::Sent if client_done => ctx.stop(),
                Closing::Queued { .. } if client_done => {
                    self.closing = Closing::Queued { client_done: true };
                }
                _ => {}
            }
            return;
        }
        self.last_seen = Instant::now();
        ::metrics::counter!(metrics::FRAMES_IN).increment(1);
        match item {
            Ok(ws::Message::Text(_) | ws::Message::Binary(_)) if self.fragments.in_progress() => {
                self.fail(
                    ws::CloseCode::Protocol,
                    "a message began inside another",
                    ctx,
                )
            }
            Ok(ws::Message::Text(text)) => self.handle_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => self.refuse_binary(ctx),
            Ok(ws::Message::Continuation(item)) => match self.fragments.push(item) {
                Ok(Assembled::Pending) => {}
                Ok(Assembled::Text(text)) => self.handle_text(&text, ctx),
                Ok(Assembled::Binary) => self.refuse_binary(ctx),
                Err(e @ FragmentError::TooLarge(_)) => self.fail(ws::CloseCode::Size, e, ctx),
                Err(e @ FragmentError::InvalidUtf8) => self.fail(ws::CloseCode::Invalid, e, ctx),
                Err(e) => self.fail(ws::CloseCode::Protocol, e, ctx),
            },
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                self.clean_end = true;
                ctx.close(reason.map(echo_close));
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => {
                self.fail(ws::CloseCode::Size, "frame over the size limit", ctx)
            }
            Err(ws::ProtocolError::Io(e)) if is_invalid_text(&e) => {
                self.fail(ws::CloseCode::Invalid, "text that is not UTF-8", ctx)
            }
            Err(ws::ProtocolError::Io(e)) if is_refused_frame(&e) => {
                self.fail(ws::CloseCode::Protocol, e, ctx)
            }
            Err(ws::ProtocolError::Io(e)) => {
                // The socket broke (reset, dropped): lost, not ended.
                tracing::debug!(connection = %self.id, error = %e, "socket lost");
                ctx.stop();
            }
            Err(e) => self.fail(ws::CloseCode::Protocol, e, ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<ToClient> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: ToClient, ctx: &mut Self::Context) {
        if let Some(held) = &mut self.held_for_resume
            && matches!(msg, ToClient::Frame(_) | ToClient::Frames(_))
        {
            held.push(msg);
            return;
        }
        self.take(msg, ctx);
    }
}

impl ConnectionActor {
    /// Writes a frame, or acts on what a session or the supervisor says.
    pub(super) fn take(&mut self, msg: ToClient, ctx: &mut ws::WebsocketContext<Self>) {
        let close_sent = self.closing == Closing::Sent;
        match msg {
            // Nothing may follow the close frame (RFC 6455 §5.5.1).
            ToClient::Frame(_) | ToClient::Frames(_) if close_sent => {}
            ToClient::Frame(frame) => {
                self.frames_out.increment(1);
                ctx.text(frame)
            }
            ToClient::Frames(frames) => {
                self.frames_out.increment(frames.len() as u64);
                for frame in frames.iter() {
                    ctx.text(frame.clone());
                }
            }
            ToClient::MembershipEnded { session } => {
                self.sessions.remove(&session);
            }
            ToClient::Replaced { session } => {
                // The member lives on in another socket: no leave from here.
                self.sessions.remove(&session);
                if self.closing == Closing::Open {
                    tracing::info!(connection = %self.id, %session,
                        "connection resumed on another socket; closing this one with 4001");
                    let reason = ws::CloseReason {
                        code: ws::CloseCode::from(CLOSE_REPLACED),
                        description: Some("replaced".into()),
                    };
                    self.start_close(reason, ctx);
                }
            }
            ToClient::Close { code, reason } => {
                if code == CLOSE_RESTARTING {
                    self.end_reason = LeaveReason::Shutdown;
                }
                if !close_sent {
                    let reason = ws::CloseReason {
                        code: ws::CloseCode::from(code),
                        description: Some(reason),
                    };
                    self.start_close(reason, ctx);
                }
            }
        }
    }
}
