//! One actor per session with members on this instance.
//!
//! It applies every change of its session through the store, one at a time, so the view it delivers
//! advances in version order. Changes made elsewhere arrive from the supervisor as [`RemoteChange`];
//! a change that does not directly follow the current version is never guessed at: the actor reads
//! the changes it missed from the store's short change log, or, when the log no longer reaches
//! back, the whole view, which it sends to its local clients as a `snapshot`.
//!
//! Its view is what `joined` and `members` answer from, so a join costs the store the same in a
//! session of any size; the store's whole view is read only when the actor has none yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Message, Recipient, WrapFuture};

use super::{ChangeRecorder, RecordChange, SocketId, ToClient};

mod history;
mod kicked;
mod lost;
mod membership;
mod messages;
mod outbox;
mod requests;
mod resume;
mod sync;

use crate::clock::WallClock;
use crate::ids::{ConnectionId, SessionId};
use crate::model::{Change, Counts, Event, LeaveReason, Member, Presence, SessionView};
use crate::protocol::reply::{ServerMessage, ViewBody};
use crate::rules::CountsTracker;
use crate::store::{Floor, Store, StoreError};
pub use history::ReadHistory;
pub use lost::Lost;
pub use membership::{JoinLocal, Leave};
use outbox::Audience;
pub use requests::{EndSession, Publish, ReadMembers, UpdateProfile};
pub use resume::{Resumption, TakeOver};
pub use sync::{
    Audit, CurrentView, Reconcile, RemoteChange, RemoteMessage, Retire, ShutdownSession,
};

/// Where a session actor reports to whoever owns it (the supervisor in an engine, a probe in a test).
/// Recipients, not the owner's address, so the session actor knows nothing of its owner's type.
#[derive(Clone)]
pub struct SessionOwner {
    pub local_count: Recipient<LocalCount>,
    pub orphaned: Recipient<Orphaned>,
}

/// A session actor's number of local members changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LocalCount {
    pub session: SessionId,
    pub count: usize,
}

/// Removals a retired session actor could not get confirmed; retried on every heartbeat.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Orphaned {
    pub session: SessionId,
    pub removals: Vec<PendingRemoval>,
}

/// A removal the store has not confirmed yet (it was unreachable); retried until it is.
#[derive(Clone, Debug)]
pub struct PendingRemoval {
    pub connection: ConnectionId,
    pub reason: LeaveReason,
}

struct LocalMember {
    member: Member,
    client: Recipient<ToClient>,
    /// The socket that carries it (`None` for a stand-in that is no socket).
    socket: Option<SocketId>,
    presence: Presence,
    /// The sequence number of the first outbox frame for it (see `outbox`).
    first_frame: u64,
}

/// How a session actor's `counts` events are paced (presence mode `counts`).
#[derive(Default)]
struct CountsPacing {
    /// The counts last sent, and when.
    sent: Option<(Counts, Instant)>,
    /// A send is scheduled.
    scheduled: bool,
}

pub struct SessionActor {
    session: SessionId,
    store: Arc<dyn Store>,
    owner: SessionOwner,
    max_members: usize,
    recorder: Option<ChangeRecorder>,
    /// How long a frame may wait to share one write with the next ones; zero sends at once.
    message_batch: Duration,
    /// Shortest time between two `counts` events.
    counts_interval: Duration,
    outbox: outbox::Outbox,
    /// The view last delivered, and its counts kept alongside.
    view: SessionView,
    counts: CountsTracker,
    counts_pacing: CountsPacing,
    local: HashMap<ConnectionId, LocalMember>,
    /// Members whose leave is on its way to the store: no longer local (no requests, not counted),
    /// they still hear every change made before their leave, which the store may order after
    /// changes this actor has not applied yet (another member's leave in the same batch, or
    /// another instance's change).
    departing: HashMap<ConnectionId, LocalMember>,
    /// Local connections whose removal the store has not confirmed yet (it was unreachable).
    pending_removals: Vec<PendingRemoval>,
    /// Joins and leaves waiting for the store.
    membership: membership::MembershipQueue,
    /// Stamps the `joined_at` of the joins it plans.
    clock: WallClock,
    /// How long a member whose socket was lost stays `reconnecting` (zero: it leaves at once).
    resume_grace: Duration,
    /// The latest message of the session's stream this actor delivered (or read from the store
    /// when it had none yet): messages reach local members in stream order ([`messages`]).
    latest_message: messages::LatestMessage,
}

/// Timing of a session actor's deliveries.
#[derive(Clone, Copy, Debug)]
pub struct DeliverySettings {
    /// `--message-batch-ms`.
    pub batch: Duration,
    /// `--counts-interval-ms`.
    pub counts_interval: Duration,
}

impl SessionActor {
    pub fn new(
        session: SessionId,
        store: Arc<dyn Store>,
        owner: SessionOwner,
        max_members: usize,
        delivery: DeliverySettings,
        recorder: Option<ChangeRecorder>,
    ) -> SessionActor {
        SessionActor {
            session,
            store,
            owner,
            max_members,
            recorder,
            message_batch: delivery.batch,
            counts_interval: delivery.counts_interval,
            outbox: outbox::Outbox::default(),
            view: SessionView::default(),
            counts: CountsTracker::default(),
            counts_pacing: CountsPacing::default(),
            local: HashMap::new(),
            departing: HashMap::new(),
            pending_removals: Vec::new(),
            membership: membership::MembershipQueue::default(),
            clock: WallClock::system(),
            resume_grace: Duration::ZERO,
            latest_message: messages::LatestMessage::Unknown,
        }
    }

    /// Keeps members whose socket was lost `reconnecting` for `grace` instead of removing them.
    pub fn with_resume_grace(mut self, grace: Duration) -> SessionActor {
        self.resume_grace = grace;
        self
    }

    /// Plans joins with `joined_at` stamps from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: WallClock) -> SessionActor {
        self.clock = clock;
        self
    }

    /// Hands a change this instance made to the participation recorder.
    fn record(&self, change: &Change) {
        crate::metrics::count_change(change);
        if let Some(recorder) = &self.recorder {
            recorder.do_send(RecordChange {
                session: self.session.clone(),
                change: change.clone(),
            });
        }
    }

    /// Tells the supervisor how many members this actor holds: the local ones, and those whose
    /// leave is still queued (the actor must live until it is written).
    fn report_count(&self) {
        self.owner.local_count.do_send(LocalCount {
            session: self.session.clone(),
            count: self.local.len() + self.membership.leaving().count(),
        });
    }

    /// The view as a member in `presence` mode sees it: everyone, or (counts mode) only `you`
    /// and the leader.
    fn view_body(&self, presence: Presence, you: &ConnectionId) -> ViewBody {
        let members = match presence {
            Presence::Full => self.view.members.clone(),
            Presence::Counts => self
                .view
                .members
                .iter()
                .filter(|m| {
                    &m.connection == you || Some(&m.connection) == self.view.leader.as_ref()
                })
                .cloned()
                .collect(),
        };
        ViewBody {
            version: self.view.version,
            leader: self.view.leader.clone(),
            epoch: self.view.epoch,
            members,
            counts: self.counts.counts(),
            stream: self.latest_message.position().map(|m| m.stream.clone()),
            offset: self.latest_message.position().map(|m| m.offset),
        }
    }

    /// Replaces the view with a fresher one read from the store, and tells every local client.
    fn replace_view(&mut self, view: SessionView, ctx: &mut Context<Self>) {
        self.view = view;
        let locals: Vec<ConnectionId> = self.local.keys().cloned().collect();
        for connection in &locals {
            self.hand_over_if_resumed_elsewhere(connection);
        }
        self.counts = CountsTracker::of(&self.view.members);
        let locals: Vec<(ConnectionId, Presence)> = self
            .local
            .iter()
            .map(|(c, l)| (c.clone(), l.presence))
            .collect();
        let full = ServerMessage::Snapshot {
            session: self.session.clone(),
            view: self.view_body(Presence::Full, &ConnectionId::default()),
        }
        .encode();
        self.deliver(full, Audience::Tracking(Presence::Full), ctx);
        for (connection, presence) in locals {
            if presence == Presence::Counts {
                let frame = ServerMessage::Snapshot {
                    session: self.session.clone(),
                    view: self.view_body(presence, &connection),
                }
                .encode();
                self.deliver(frame, Audience::Only(connection), ctx);
            }
        }
        self.counts_changed(ctx);
    }

    /// Applies a change, delivering its events; a change that does not follow the view makes the
    /// actor catch up from the store first.
    fn absorb(&mut self, change: &Change, ctx: &mut Context<Self>) {
        if change.version <= self.view.version {
            return;
        }
        if change.version != self.view.version + 1 {
            metrics::counter!(crate::metrics::EVENT_GAPS).increment(1);
            self.catch_up(ctx);
            return;
        }
        self.apply(change, ctx);
    }

    /// Applies a change that directly follows the view and sends its events to their audience.
    fn apply(&mut self, change: &Change, ctx: &mut Context<Self>) {
        if self.declares_local_members_lost(change) {
            // Another instance took this one for dead. Its clients are connected: they must not
            // hear that they left. The members go back first, and everyone here sees the result.
            ctx.notify(Reconcile { reassert: true });
            return;
        }
        let ends = change
            .events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { .. }));
        if ends {
            // Each connection forgets the session before it can read `session_ended`, so a request
            // it sends upon reading it already gets `not_member`.
            self.flush();
            for local in self.local.values() {
                local.client.do_send(ToClient::MembershipEnded {
                    session: self.session.clone(),
                });
            }
        }
        self.view.apply(change);
        self.counts.apply(change);
        self.let_kicked_go(change);
        self.let_departed_go(change);
        for event in &change.events {
            if let Event::MemberUpdated { member } = event {
                self.hand_over_if_resumed_elsewhere(&member.connection);
            }
        }
        for (event, frame) in change
            .events
            .iter()
            .zip(ServerMessage::from_change(&self.session, change))
        {
            let audience = match event {
                Event::MemberJoined { .. }
                | Event::MemberLeft { .. }
                | Event::MemberUpdated { .. } => Audience::Tracking(Presence::Full),
                Event::LeaderChanged { .. } | Event::SessionEnded { .. } => Audience::Everyone,
            };
            self.deliver(frame.encode(), audience, ctx);
        }
        if change.events.iter().any(|e| {
            matches!(
                e,
                Event::MemberJoined { .. } | Event::MemberLeft { .. } | Event::SessionEnded { .. }
            )
        }) {
            self.counts_changed(ctx);
        }
        self.after_change(change);
    }

    /// Members whose own leave `change` is stop hearing the session here: they have heard every
    /// change before it.
    fn let_departed_go(&mut self, change: &Change) {
        if self.departing.is_empty() {
            return;
        }
        for event in &change.events {
            if let Event::MemberLeft { connection, .. } = event
                && let Some(departed) = self.departing.remove(connection)
            {
                outbox::send_held(&self.outbox, connection, &departed);
            }
        }
    }

    /// Applies changes read from the store's log, in order.
    fn apply_all(&mut self, changes: &[Change], ctx: &mut Context<Self>) {
        for change in changes {
            if change.version == self.view.version + 1 {
                self.apply(change, ctx);
            }
        }
    }

    /// The consequence of an `end` for local connections: they are no longer members.
    fn after_change(&mut self, change: &Change) {
        if change
            .events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { .. }))
        {
            // They were told in `apply`; what is held for them goes out now.
            self.flush();
            self.local.clear();
            self.report_count();
        }
    }

    /// A local member that the view has on another instance was resumed there: its socket here
    /// no longer carries it. The socket is told (it closes with 4001) and the member is no longer
    /// local, without a leave: the member lives on, elsewhere.
    fn hand_over_if_resumed_elsewhere(&mut self, connection: &ConnectionId) {
        let me = &self.store.instance().incarnation;
        let elsewhere = self
            .view
            .member(connection)
            .is_some_and(|m| &m.instance != me);
        if !elsewhere {
            return;
        }
        if let Some(local) = self.local.remove(connection) {
            tracing::info!(session = %self.session, connection = %connection,
                "member resumed on another instance; closing its socket here with 4001");
            local.client.do_send(ToClient::Replaced {
                session: self.session.clone(),
            });
            self.report_count();
        }
    }

    /// Whether `change` removes a member alive here as lost with its instance, or marks it
    /// reconnecting (another instance took this one for dead).
    fn declares_local_members_lost(&self, change: &Change) -> bool {
        change.events.iter().any(|event| match event {
            Event::MemberLeft {
                connection,
                reason: LeaveReason::InstanceLost,
                ..
            } => self.local.contains_key(connection),
            Event::MemberUpdated { member } => {
                !member.is_present() && self.local.contains_key(&member.connection)
            }
            _ => false,
        })
    }

    /// Reads the changes this actor missed from the store's log and applies them; when the log
    /// no longer reaches back, reads the whole view and sends it as a `snapshot`.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let session = self.session.clone();
        let known = self.view.version;
        ctx.wait(
            async move {
                match store.changes_since(&session, known).await? {
                    Some(changes) => Ok(Missed::Changes(changes)),
                    None => Ok(Missed::View(store.view(&session).await?)),
                }
            }
            .into_actor(self)
            .map(
                |result: Result<Missed, StoreError>, act, ctx| match result {
                    Ok(missed) => act.take_missed(missed, ctx),
                    Err(e) => {
                        log_store_failure!(e, session = %act.session, error = %e, "catch-up failed")
                    }
                },
            ),
        );
    }

    fn take_missed(&mut self, missed: Missed, ctx: &mut Context<Self>) {
        match missed {
            Missed::Changes(changes) => self.apply_all(&changes, ctx),
            Missed::View(Some(view)) if view.version > self.view.version => {
                metrics::counter!(crate::metrics::RESYNCS).increment(1);
                let ended = view.ended_at.is_some();
                let lost_here = |c: &ConnectionId| view.member(c).is_none_or(|m| !m.is_present());
                if !ended && self.local.keys().any(lost_here) {
                    // The store lost members alive here, or another instance took this one for
                    // dead: they go back before their clients are shown a list without them.
                    ctx.notify(Reconcile { reassert: true });
                    return;
                }
                self.replace_view(view, ctx);
                if ended {
                    // The end itself was missed: its members are gone all the same.
                    self.flush();
                    for (_, local) in self.local.drain() {
                        local.client.do_send(ToClient::MembershipEnded {
                            session: self.session.clone(),
                        });
                    }
                    self.report_count();
                }
            }
            Missed::View(_) => {}
        }
    }

    /// The counts changed: counts-mode members hear of it, at most once per counts interval.
    fn counts_changed(&mut self, ctx: &mut Context<Self>) {
        if self.counts_pacing.scheduled
            || !self.local.values().any(|l| l.presence == Presence::Counts)
        {
            return;
        }
        let wait = match self.counts_pacing.sent {
            Some((_, at)) => (at + self.counts_interval).saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        };
        self.counts_pacing.scheduled = true;
        ctx.run_later(wait, |act, ctx| {
            act.counts_pacing.scheduled = false;
            let counts = act.counts.counts();
            if act
                .counts_pacing
                .sent
                .is_some_and(|(sent, _)| sent == counts)
            {
                return;
            }
            act.counts_pacing.sent = Some((counts, Instant::now()));
            let frame = ServerMessage::Counts {
                session: act.session.clone(),
                version: act.view.version,
                counts,
            }
            .encode();
            act.deliver(frame, Audience::Tracking(Presence::Counts), ctx);
        });
    }

    /// The members the store should list under this instance: the local ones, and those whose
    /// leave is queued.
    fn held(&self) -> Vec<ConnectionId> {
        let local = self.local.keys();
        local.chain(self.membership.leaving()).cloned().collect()
    }

    fn floor(&self) -> Floor {
        Floor {
            version: self.view.version,
            epoch: self.view.epoch,
        }
    }
}

/// What a catch-up read from the store.
enum Missed {
    /// The missed changes, oldest first.
    Changes(Vec<Change>),
    /// The whole view (the log did not reach back far enough).
    View(Option<SessionView>),
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        tracing::debug!(session = %self.session, "session actor started");
    }
}
