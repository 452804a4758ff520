//! One per instance: the session registry, the heartbeat (lease renewal, store-loss detection) and
//! the reaper (removing the members of instances that died without a goodbye).
//!
//! Every join goes through the supervisor, so it always knows whether a join is on its way to a
//! session actor; it retires a session actor only when it has no local members and none is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, AtomicResponse, Context, Handler, Message,
    Recipient, ResponseActFuture, StreamHandler, WrapFuture,
};

mod backend;
mod clients;
mod resume;
mod subscriptions;

pub use backend::{BackendChange, BackendMessage};
pub use clients::{ClientCount, Connect, Disconnect, GetHealth};
pub use resume::Resume;

use subscriptions::{SubscriptionQueue, record_change};

use super::session::{
    Audit, DeliverySettings, JoinLocal, LocalCount, Orphaned, PendingRemoval, Reconcile,
    RemoteChange, RemoteMessage, Retire, SessionActor, SessionOwner, ShutdownSession,
};
use super::{ChangeRecorder, ReplyFrame, SocketId, ToClient};
use crate::clock::WallClock;
use crate::ids::SessionId;
use crate::model::{Change, Member, Presence, SessionView};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::resume::ResumeTokens;
use crate::store::{BroadcastBody, FeedEvent, LeaseStatus, Store, StreamPosition};

/// The subscription a new session actor waits for before its first request.
type Subscribed =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), crate::store::StoreError>>>>;

/// Close code sent to every client on a graceful shutdown.
pub const CLOSE_RESTARTING: u16 = 1012;

/// Timings and limits the supervisor enforces.
#[derive(Clone, Debug)]
pub struct SupervisorSettings {
    pub heartbeat: Duration,
    pub max_members_per_session: usize,
    /// Batch window and `counts` pacing of the session actors.
    pub delivery: DeliverySettings,
    /// Refresh the backstop TTL of session keys every this many heartbeats.
    pub touch_every_ticks: u64,
    /// Stamps the `joined_at` of planned joins.
    pub clock: WallClock,
    /// `--resume-grace-ms`: how long lost members stay `reconnecting` (zero: removed at once).
    pub resume_grace: Duration,
}

struct SessionEntry {
    addr: Addr<SessionActor>,
    pending_joins: usize,
    local: usize,
}

/// What `/readyz` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub store: &'static str,
    pub store_reachable: bool,
    pub lease_held: bool,
    pub shutting_down: bool,
}

/// A removal a retired session actor left behind; the heartbeat retries it.
struct Orphan {
    session: SessionId,
    removal: PendingRemoval,
}

pub struct Supervisor {
    store: Arc<dyn Store>,
    settings: SupervisorSettings,
    recorder: Option<ChangeRecorder>,
    sessions: HashMap<SessionId, SessionEntry>,
    clients: HashMap<SocketId, Recipient<ToClient>>,
    orphans: Vec<Orphan>,
    store_reachable: bool,
    lease_held: bool,
    shutting_down: bool,
    tick_running: bool,
    ticks: u64,
    subscriptions: SubscriptionQueue,
    /// Takes the store's new secret when the store lost its data.
    resume_tokens: Option<ResumeTokens>,
}

impl Supervisor {
    pub fn new(
        store: Arc<dyn Store>,
        settings: SupervisorSettings,
        recorder: Option<ChangeRecorder>,
    ) -> Supervisor {
        let store_for_queue = store.clone();
        let recorder_for_queue = recorder.clone();
        Supervisor {
            store,
            settings,
            recorder,
            sessions: HashMap::new(),
            clients: HashMap::new(),
            orphans: Vec::new(),
            store_reachable: true,
            lease_held: true,
            shutting_down: false,
            tick_running: false,
            ticks: 0,
            subscriptions: SubscriptionQueue::start(store_for_queue, recorder_for_queue),
            resume_tokens: None,
        }
    }

    /// Keeps `tokens` on the store's resume secret, which changes when the store lost its data.
    pub fn with_resume_tokens(mut self, tokens: ResumeTokens) -> Supervisor {
        self.resume_tokens = Some(tokens);
        self
    }

    /// Takes the store's resume secret again (after the store lost its data).
    fn refresh_resume_secret(&self, ctx: &mut Context<Self>) {
        let Some(tokens) = self.resume_tokens.clone() else {
            return;
        };
        let store = self.store.clone();
        ctx.spawn(
            async move {
                match store.resume_secret().await {
                    Ok(secret) => tokens.set_secret(secret),
                    Err(e) => tracing::warn!(error = %e, "could not read the new resume secret"),
                }
            }
            .into_actor(self),
        );
    }

    fn me(&self) -> &str {
        &self.store.instance().incarnation
    }

    fn reconcile_all(&self, reassert: bool) {
        for entry in self.sessions.values() {
            entry.addr.do_send(Reconcile { reassert });
        }
    }

    /// The session actor a request for `session` goes to, started (with the subscription it
    /// waits for) when there is none. The request counts as on its way until [`Self::arrived`],
    /// so the actor is not retired meanwhile. Refused while the instance is stopping.
    fn actor_for(
        &mut self,
        session: &SessionId,
        ctx: &mut Context<Self>,
    ) -> Result<(Addr<SessionActor>, Option<Subscribed>), ApiError> {
        if self.shutting_down {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "this instance is shutting down; reconnect to another",
            ));
        }
        if let Some(entry) = self.sessions.get_mut(session) {
            entry.pending_joins += 1;
            return Ok((entry.addr.clone(), None));
        }
        let addr = SessionActor::new(
            session.clone(),
            self.store.clone(),
            SessionOwner {
                local_count: ctx.address().recipient(),
                orphaned: ctx.address().recipient(),
            },
            self.settings.max_members_per_session,
            self.settings.delivery,
            self.recorder.clone(),
        )
        .with_clock(self.settings.clock.clone())
        .with_resume_grace(self.settings.resume_grace)
        .start();
        self.sessions.insert(
            session.clone(),
            SessionEntry {
                addr: addr.clone(),
                pending_joins: 1,
                local: 0,
            },
        );
        metrics::gauge!(crate::metrics::SESSIONS).set(self.sessions.len() as f64);
        let subscribed = self.subscriptions.subscribe(session);
        Ok((addr, Some(Box::pin(subscribed))))
    }

    /// A request sent to `session` through [`Self::actor_for`] got its answer; a session actor left without a
    /// local member by a failed one is retired.
    fn arrived(&mut self, session: &str, succeeded: bool) {
        if let Some(entry) = self.sessions.get_mut(session) {
            entry.pending_joins = entry.pending_joins.saturating_sub(1);
        }
        if !succeeded {
            self.retire_if_idle(session);
        }
    }

    fn retire_if_idle(&mut self, session: &str) {
        let idle = self
            .sessions
            .get(session)
            .is_some_and(|e| e.local == 0 && e.pending_joins == 0);
        if !idle {
            return;
        }
        if let Some(entry) = self.sessions.remove(session) {
            metrics::gauge!(crate::metrics::SESSIONS).set(self.sessions.len() as f64);
            entry.addr.do_send(Retire);
            self.subscriptions.release(session);
        }
    }

    fn store_state(&mut self, reachable: bool) {
        if reachable != self.store_reachable {
            if reachable {
                tracing::info!(store = self.store.kind(), "shared store reachable again");
            } else {
                tracing::error!(store = self.store.kind(), "shared store unreachable");
            }
            self.store_reachable = reachable;
        }
    }

    fn record(&self, session: &str, change: &Change) {
        record_change(self.recorder.as_ref(), session, change);
    }

    /// Every session actor compares the store's members of this instance with its own.
    fn audit_all(&self) {
        for entry in self.sessions.values() {
            entry.addr.do_send(Audit);
        }
    }

    fn route(&self, session: &str, change: Change) {
        if let Some(entry) = self.sessions.get(session) {
            entry.addr.do_send(RemoteChange(change));
        }
    }

    /// One heartbeat: renew the lease, then reap dead instances.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.tick_running || self.shutting_down {
            return;
        }
        self.tick_running = true;
        self.ticks += 1;
        let store = self.store.clone();
        let grace = self.settings.resume_grace;
        let now_and_then = self
            .ticks
            .is_multiple_of(self.settings.touch_every_ticks.max(1));
        let touch: Vec<SessionId> = match now_and_then {
            true => self.sessions.keys().cloned().collect(),
            false => Vec::new(),
        };
        let orphans = std::mem::take(&mut self.orphans);
        let releases = self.subscriptions.retry_releases();
        ctx.spawn(
            async move {
                let lease = store.renew_lease().await;
                let mut reaped = Vec::new();
                let mut unconfirmed = Vec::new();
                if lease.is_ok() {
                    for session in &touch {
                        if let Err(e) = store.touch(session).await {
                            tracing::debug!(%session, error = %e, "touch failed");
                        }
                    }
                    for orphan in orphans {
                        let Orphan { session, removal } = &orphan;
                        let left = store.leave(session, &removal.connection, removal.reason);
                        match left.await {
                            Ok(Some(change)) => reaped.push((session.to_string(), change)),
                            Ok(None) => {}
                            Err(_) => unconfirmed.push(orphan),
                        }
                    }
                    reaped.extend(crate::store::reaping::reap_expired(store.as_ref(), grace).await);
                    if !grace.is_zero() {
                        match store.expire_graces().await {
                            Ok(expired) => reaped.extend(expired),
                            Err(e) => {
                                tracing::debug!(error = %e, "grace expiry failed; will retry")
                            }
                        }
                    }
                    releases.await;
                    if now_and_then && let Err(e) = store.tidy_directory().await {
                        tracing::debug!(error = %e, "directory tidy failed; will retry");
                    }
                } else {
                    unconfirmed = orphans;
                }
                (lease, reaped, unconfirmed)
            }
            .into_actor(self)
            .map(|(lease, reaped, unconfirmed), act, ctx| {
                act.tick_running = false;
                act.orphans.extend(unconfirmed);
                match lease {
                    Ok(status) => {
                        let was_down = !act.store_reachable;
                        act.store_state(true);
                        act.lease_held = true;
                        match status {
                            LeaseStatus::Held if !was_down => act.audit_all(),
                            LeaseStatus::Held => act.reconcile_all(true),
                            LeaseStatus::WasLost => {
                                let why = "this instance had been declared dead";
                                tracing::warn!("{why}; re-asserting its members");
                                act.reconcile_all(true);
                            }
                            LeaseStatus::StoreReset => {
                                let why = "the shared store lost its data";
                                tracing::warn!("{why}; re-asserting every local member");
                                act.reconcile_all(true);
                                act.refresh_resume_secret(ctx);
                            }
                        }
                    }
                    Err(e) => {
                        metrics::counter!(crate::metrics::LEASE_RENEWAL_FAILURES).increment(1);
                        tracing::debug!(error = %e, "lease renewal failed");
                        act.store_state(false);
                        act.lease_held = false;
                    }
                }
                for (session, change) in reaped {
                    act.record(&session, &change);
                    act.route(&session, change);
                    // The reaped change is applied first; the reconcile then checks the view
                    // against the store (it only speaks up if something else was missed).
                    if let Some(entry) = act.sessions.get(session.as_str()) {
                        entry.addr.do_send(Reconcile { reassert: false });
                    }
                }
            }),
        );
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.heartbeat, |act, ctx| act.tick(ctx));
    }
}

impl StreamHandler<FeedEvent> for Supervisor {
    fn handle(&mut self, event: FeedEvent, _ctx: &mut Context<Self>) {
        match event {
            FeedEvent::Broadcast(broadcast) => {
                if broadcast.origin == self.me() {
                    return;
                }
                let Some(entry) = self.sessions.get(&broadcast.session) else {
                    return;
                };
                match broadcast.body {
                    BroadcastBody::Change(change) => entry.addr.do_send(RemoteChange(change)),
                    BroadcastBody::Message {
                        from,
                        user,
                        data,
                        stream,
                        offset,
                    } => entry.addr.do_send(RemoteMessage {
                        from,
                        user,
                        data,
                        position: stream
                            .zip(offset)
                            .map(|(stream, offset)| StreamPosition { stream, offset }),
                    }),
                }
            }
            FeedEvent::Resumed => {
                tracing::info!("event feed resumed; reconciling every local session");
                self.reconcile_all(false);
            }
            FeedEvent::Reconcile { sessions, reassert } => {
                tracing::info!(
                    sessions = sessions.len(),
                    reassert,
                    "store asked for a reconciliation"
                );
                for session in sessions {
                    match self.sessions.get(session.as_str()) {
                        Some(entry) => entry.addr.do_send(Reconcile { reassert }),
                        // Released lately: the store may list a member again that this
                        // instance no longer holds (a failover lost its leave).
                        None => self.subscriptions.release(&session),
                    }
                }
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        tracing::debug!("store feed closed");
    }
}

/// A session actor's address and the view after a join.
pub struct Joined {
    pub view: SessionView,
    pub actor: Addr<SessionActor>,
}

/// Join `member` to `session`, creating the session actor if needed.
#[derive(Message)]
#[rtype(result = "Result<Joined, ApiError>")]
pub struct Join {
    pub session: SessionId,
    pub member: Member,
    pub client: Recipient<ToClient>,
    /// The socket joining, if it is one.
    pub socket: Option<SocketId>,
    pub reply: ReplyFrame,
    pub presence: Presence,
}

impl Handler<Join> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Joined, ApiError>>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let join = JoinLocal {
            member: msg.member,
            client: msg.client,
            socket: msg.socket,
            reply: msg.reply,
            presence: msg.presence,
        };
        let asked = self.ask_session(msg.session, join, Result::is_ok, ctx);
        Box::pin(asked.map(|result, _, _| result.map(|(view, actor)| Joined { view, actor })))
    }
}

impl Supervisor {
    /// Sends `request` to the session actor of `session` (started, and subscribed, when there is
    /// none) and answers with its reply and the actor's address. A session actor that a refused
    /// request (`succeeded` false) leaves without a local member is retired.
    pub(super) fn ask_session<M, T>(
        &mut self,
        session: SessionId,
        request: M,
        succeeded: fn(&Result<T, ApiError>) -> bool,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<(T, Addr<SessionActor>), ApiError>>
    where
        M: Message<Result = Result<T, ApiError>> + Send + 'static,
        SessionActor: Handler<M>,
        T: Send + 'static,
    {
        let (actor, subscribed) = match self.actor_for(&session, ctx) {
            Ok(routed) => routed,
            Err(refused) => return Box::pin(actix::fut::ready(Err(refused))),
        };
        let addr = actor.clone();
        Box::pin(
            async move {
                if let Some(subscribed) = subscribed {
                    subscribed.await?;
                }
                actor.send(request).await.map_err(|e| {
                    ApiError::new(ErrorCode::Internal, format!("session actor: {e}"))
                })?
            }
            .into_actor(self)
            .map(move |result, act, _ctx| {
                act.arrived(&session, succeeded(&result));
                result.map(|value| (value, addr))
            }),
        )
    }
}

impl Handler<LocalCount> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: LocalCount, _ctx: &mut Context<Self>) {
        if let Some(entry) = self.sessions.get_mut(&msg.session) {
            let delta = msg.count as f64 - entry.local as f64;
            metrics::gauge!(crate::metrics::MEMBERS_LOCAL).increment(delta);
            entry.local = msg.count;
        }
        if msg.count == 0 {
            self.retire_if_idle(&msg.session);
        }
    }
}

impl Handler<Orphaned> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Orphaned, _ctx: &mut Context<Self>) {
        for removal in msg.removals {
            self.orphans.push(Orphan {
                session: msg.session.clone(),
                removal,
            });
        }
    }
}

/// The session actor of `session` on this instance, if any.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub struct LookupSession(pub SessionId);

impl Handler<LookupSession> for Supervisor {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, msg: LookupSession, _ctx: &mut Context<Self>) -> Self::Result {
        self.sessions.get(&msg.0).map(|e| e.addr.clone())
    }
}

/// Tell every session actor to reconcile with the store now (tests, and after feed interruptions).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReconcileAll {
    pub reassert: bool,
}

impl Handler<ReconcileAll> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ReconcileAll, _ctx: &mut Context<Self>) {
        self.reconcile_all(msg.reassert);
    }
}

/// Graceful stop: every membership ends with `shutdown` (leaders handed over), every client is
/// closed with 1012, and the lease is removed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Supervisor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let sessions: Vec<Addr<SessionActor>> =
            self.sessions.values().map(|e| e.addr.clone()).collect();
        let clients: Vec<Recipient<ToClient>> = self.clients.values().cloned().collect();
        let store = self.store.clone();
        tracing::info!(
            sessions = sessions.len(),
            clients = clients.len(),
            "graceful shutdown"
        );
        AtomicResponse::new(Box::pin(
            async move {
                futures_util::future::join_all(sessions.iter().map(|s| s.send(ShutdownSession)))
                    .await;
                for client in &clients {
                    client.do_send(ToClient::Close {
                        code: CLOSE_RESTARTING,
                        reason: "server restarting".into(),
                    });
                }
                if let Err(e) = store.deregister().await {
                    tracing::error!(error = %e, "could not remove this instance's lease");
                }
            }
            .into_actor(self),
        ))
    }
}
