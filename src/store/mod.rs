//! The shared state of sessions and instances, behind one interface with two implementations.
//!
//! Like centrifuge's engine split, the [`Store`] covers both presence (members, leader, versions)
//! and the broker (cross-instance events): every operation that changes a session is one atomic
//! step that returns the new header and its events as a [`Change`], and also publishes that change
//! to the other instances subscribed to the session. [`memory`] keeps it in process (one instance, or
//! several engines in one test process); a Redis implementation shares it between processes.
//! Messages go through the broker too, numbered and kept in the same step ([`history`]).
//!
//! Instances own leases; the instance lifecycle methods (register, renew, reap) let every instance
//! remove the members of an instance that died without saying goodbye.

pub mod history;
pub mod instrumented;
pub mod memory;
pub mod operator;
pub mod outbox;
pub mod plan;
pub mod reaping;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::ids::{ConnectionId, Incarnation, SessionId};
use crate::model::{Change, Counts, LeaveReason, Member, SessionView};
pub use crate::rules::ResumeRuling;
pub use history::{History, HistoryPage, HistorySettings, StoredMessage, StreamPosition};
pub use operator::{KickTarget, Operator};
pub use outbox::{Directory, EntryId, Outbox, OutboxEntry, PendingSession, SessionPage};
use plan::Plan;

/// Who this instance is: a stable name given by the operator and a fresh incarnation per process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceId {
    pub name: String,
    /// Unique per process start; members and keys of an instance are keyed by it.
    pub incarnation: Incarnation,
}

impl InstanceId {
    pub fn new(name: impl Into<String>) -> InstanceId {
        let name = name.into();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        InstanceId {
            incarnation: Incarnation::new(format!("{name}#{}", &suffix[..12])),
            name,
        }
    }
}

/// Why a store operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the session has been ended")]
    SessionEnded,
    #[error("the session is full ({0} members)")]
    SessionFull(usize),
    #[error("not the current leader, or a stale epoch")]
    NotLeader,
    /// The store could not be reached; the source is the underlying error.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    #[error("store returned malformed data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// [`StoreError::Unavailable`] caused by `source`.
    pub fn unavailable(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Unavailable(Arc::new(source))
    }

    /// [`StoreError::Unavailable`] with a reason of our own rather than an underlying error.
    pub fn unavailable_because(reason: &str) -> StoreError {
        let source: Box<dyn std::error::Error + Send + Sync> = reason.into();
        StoreError::Unavailable(Arc::from(source))
    }
}

/// Two errors are equal when they are the same variant with the same value; unavailability is
/// compared by its message (the underlying errors are not comparable).
impl PartialEq for StoreError {
    fn eq(&self, other: &StoreError) -> bool {
        use StoreError::*;
        match (self, other) {
            (SessionEnded, SessionEnded) | (NotLeader, NotLeader) => true,
            (SessionFull(a), SessionFull(b)) => a == b,
            (Unavailable(a), Unavailable(b)) => a.to_string() == b.to_string(),
            (Corrupt(a), Corrupt(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// The result of a join. It never carries the member list: a join costs the same in a session of
/// any size, and the caller keeps its own view from the changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The member joined with this change (its `member_joined` carries the stamped record).
    Joined(Change),
    /// The connection was a member already; nothing changed. The session is at `version`.
    AlreadyMember { version: u64 },
}

impl JoinOutcome {
    /// The change the join made, if any.
    pub fn change(&self) -> Option<&Change> {
        match self {
            JoinOutcome::Joined(change) => Some(change),
            JoinOutcome::AlreadyMember { .. } => None,
        }
    }
}

/// What [`Store::write_plans`] did with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlansWritten {
    /// Every plan, as it is.
    All,
    /// None of them: the session moved on since the plans were made.
    Declined,
}

/// How many of a session's latest changes a store keeps for [`Store::changes_since`].
pub const CHANGE_LOG_LENGTH: usize = 64;

/// What a lease renewal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseStatus {
    /// The lease was still ours and is renewed.
    Held,
    /// Another instance had declared us dead and removed our lease; it is registered again now.
    WasLost,
    /// The store lost its data (generation token changed); we are registered again now.
    StoreReset,
}

/// What one instance tells the others about a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Incarnation of the instance that made the change; it ignores its own echo. The first field,
    /// so that the echo is recognised from the first bytes of its JSON.
    pub origin: Incarnation,
    pub session: SessionId,
    pub body: BroadcastBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BroadcastBody {
    Change(Change),
    /// A `message`; `stream` and `offset` are its place in the session's stream
    /// ([`history`]), absent only from an instance that predates message history.
    Message {
        /// `None` for a message of the application's backend (server API).
        from: Option<ConnectionId>,
        user: Option<String>,
        data: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
}

/// What the store's feed delivers to the supervisor of an instance.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedEvent {
    Broadcast(Broadcast),
    /// The feed was interrupted and is back: anything may have been missed, reconcile everything.
    Resumed,
    /// These sessions may be out of step with the store (their broadcasts may have been missed, or
    /// their shard of a Redis Cluster failed over); reconcile them, re-asserting the local members
    /// first when `reassert` (their shard lost its data).
    Reconcile {
        sessions: Vec<String>,
        reassert: bool,
    },
}

/// The receiving end of a store's feed.
pub type Feed = mpsc::UnboundedReceiver<FeedEvent>;

/// Shared session and instance state, one handle per instance, bound to its [`InstanceId`]: the
/// parts below (and [`History`]), each implemented by the in-process and the Redis store and held
/// to the same conformance suite.
#[async_trait]
pub trait Store:
    Sessions
    + Broker
    + History
    + Operator
    + Registry
    + Upkeep
    + Outbox
    + Directory
    + Send
    + Sync
    + 'static
{
    fn kind(&self) -> &'static str;
    fn instance(&self) -> &InstanceId;
}

/// A session's members and changes (presence): joins and leaves, profile changes, the end, and
/// the reads an instance keeps its view with. Every change is one atomic step that also reaches
/// the other instances subscribed to the session ([`Broker`]).
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Adds `member` (whose `instance` is this one) to `session`, electing it leader if there is none.
    async fn join(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
    ) -> StoreResult<JoinOutcome>;

    /// Removes one connection of this instance. `None` when it was not a member, or is another
    /// instance's (it was resumed there).
    async fn leave(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>>;

    /// [`Sessions::join`], offered the change the caller's view says it makes ([`plan::join`]). A
    /// store may write `plan` as it is while its header still is `plan.after`; otherwise it must
    /// join as [`Sessions::join`] does. The default ignores the plan.
    async fn join_planned(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
        plan: Plan,
    ) -> StoreResult<JoinOutcome> {
        let _ = plan;
        self.join(session, member, max_members).await
    }

    /// [`Sessions::leave`], offered the change the caller's view says it makes ([`plan::leave`]),
    /// under the same rule as [`Sessions::join_planned`]. The default ignores the plan.
    async fn leave_planned(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
        plan: Plan,
    ) -> StoreResult<Option<Change>> {
        let _ = plan;
        self.leave(session, connection, reason).await
    }

    /// Writes several plans of one session in one step, each following the one before it
    /// (`crate::store::plan::Planner`), if the session is still at the first plan's header; when
    /// it is not (another instance changed it since), writes nothing.
    async fn write_plans(&self, session: &str, plans: &[Plan]) -> StoreResult<PlansWritten>;

    /// Replaces the name and avatar of a member. `None` when it was not a member.
    async fn update_member(&self, session: &str, member: Member) -> StoreResult<Option<Change>>;

    /// A socket of this instance, signed in as `user`, claims member `connection` of `session`
    /// ([`crate::rules::resume`]): from now on this instance holds it, with the same record.
    async fn resume(
        &self,
        session: &str,
        connection: &str,
        user: Option<&str>,
    ) -> StoreResult<ResumeRuling>;

    /// Ends the session if `connection` is its leader at `epoch`; removes every member.
    async fn end(&self, session: &str, connection: &str, epoch: u64) -> StoreResult<Change>;

    /// The whole view; `None` when the store has no record of the session.
    async fn view(&self, session: &str) -> StoreResult<Option<SessionView>>;

    /// The changes after `version`, oldest first (empty when `version` is current), from a short
    /// log of the latest [`CHANGE_LOG_LENGTH`] changes; `None` when the log no longer reaches back
    /// that far, and the caller must read the whole [`Sessions::view`].
    async fn changes_since(&self, session: &str, version: u64) -> StoreResult<Option<Vec<Change>>>;

    /// Live counts of many sessions in one read, in the order asked.
    async fn counts(&self, sessions: &[String]) -> StoreResult<Vec<Counts>>;
}

/// Fan-out between instances: what one instance tells the others about a session, and which
/// sessions' broadcasts reach this instance's [`Feed`].
#[async_trait]
pub trait Broker: Send + Sync {
    /// Sends a `message` to the members of `session` on the other instances, in one step with
    /// numbering it and keeping it in the session's history ([`History`]). Returns its place.
    async fn publish(
        &self,
        session: &str,
        from: &str,
        user: Option<&str>,
        data: &Value,
    ) -> StoreResult<StreamPosition>;

    /// Starts delivering the session's broadcasts to this instance's feed, and lists the session
    /// among this instance's (what [`Registry::sessions_of`] reads when the instance dies). Called
    /// before the instance's first join of the session.
    async fn subscribe(&self, session: &str) -> StoreResult<()>;

    /// Stops them: this instance has no local member in the session any more, so the store may
    /// also forget that the instance is in it.
    async fn unsubscribe(&self, session: &str) -> StoreResult<()>;
}

/// Instances and their leases: registering, renewing, leaving, and finding the dead ones to reap.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Registers this instance's lease. Returns the previous incarnation of the same name, if one is
    /// still registered (the restart fast path reaps it at once).
    async fn register(&self) -> StoreResult<Option<String>>;

    async fn renew_lease(&self) -> StoreResult<LeaseStatus>;

    /// Removes this instance's lease and keys (graceful stop, after its members have left).
    async fn deregister(&self) -> StoreResult<()>;

    /// Incarnations whose lease has expired.
    async fn expired_instances(&self) -> StoreResult<Vec<String>>;

    /// Claims the reaping of `dead` for a short while; `false` when another instance holds the claim.
    async fn claim_reap(&self, dead: &str) -> StoreResult<bool>;

    /// Sessions in which `dead` has members.
    async fn sessions_of(&self, dead: &str) -> StoreResult<Vec<String>>;

    /// Drops what is left of `dead`: its lease, its session list, its name mapping.
    async fn forget_instance(&self, dead: &str) -> StoreResult<()>;

    /// The secret every instance signs resume tokens with ([`crate::resume`]): made by the first
    /// instance that asks, the same for all of them after that, and new once the store lost its
    /// data.
    async fn resume_secret(&self) -> StoreResult<Vec<u8>>;
}

/// Keeping the members the store lists true to the instances that hold them: removing a dead
/// instance's members or the strays of a live one, putting members back after the store lost
/// them, and keeping live sessions' keys from expiring.
#[async_trait]
pub trait Upkeep: Send + Sync {
    /// Removes every member `dead` has in `session`, re-electing the leader if needed.
    async fn remove_instance_members(
        &self,
        session: &str,
        dead: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>>;

    /// How many members the store lists under this instance in `session`. An instance compares
    /// it with the members it holds on every heartbeat: a difference means the store lists a
    /// member the instance does not hold (a join that timed out but ran later, a leave lost in a
    /// failover) or misses one it does.
    async fn held_count(&self, session: &str) -> StoreResult<u64>;

    /// Removes every member the store lists under this instance in `session` except `keep`,
    /// re-electing the leader if needed, like [`Upkeep::remove_instance_members`]. `None` when
    /// there was none.
    async fn remove_strays(
        &self,
        session: &str,
        keep: &[ConnectionId],
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>>;

    /// Puts `members` (this instance's local members, with their original `joined_at`) back into
    /// `session` after the store lost them. Versions and epochs continue from at least `floor`.
    async fn reassert(
        &self,
        session: &str,
        members: Vec<Member>,
        floor: Floor,
    ) -> StoreResult<Option<Change>>;

    /// Keeps the session's keys alive while this instance has members there.
    async fn touch(&self, session: &str) -> StoreResult<()>;

    /// The present members `whose` names in `session` lost their sockets without a clean end:
    /// each is `reconnecting` for `grace` (timed by the store's clock), then leaves with `reason`
    /// unless it is resumed first ([`crate::rules::suspend`]). The deadline is kept in the
    /// store, so any instance ends it ([`Upkeep::expire_graces`]). `None` when none was present.
    async fn suspend(
        &self,
        session: &str,
        whose: Whose<'_>,
        reason: LeaveReason,
        grace: std::time::Duration,
    ) -> StoreResult<Option<Change>>;

    /// Removes every reconnecting member whose grace ran out, in every session, with its reason
    /// and the hand-off ([`crate::rules::expire`]); the changes made, by session. Any instance may
    /// call it at any time: each member is removed once.
    async fn expire_graces(&self) -> StoreResult<Vec<(String, Change)>>;

    /// Ends every grace in `session` now: each reconnecting member leaves with its reason (an
    /// in-process store whose only instance stops: nobody else could resume them or end them
    /// later).
    async fn end_graces(&self, session: &str) -> StoreResult<Option<Change>>;
}

/// Whose members [`Upkeep::suspend`] marks reconnecting.
#[derive(Clone, Copy, Debug)]
pub enum Whose<'a> {
    /// One connection of this instance.
    Connection(&'a str),
    /// Every present member of an instance (this one stopping, or a dead one being reaped).
    Instance(&'a str),
}

/// The lowest version and epoch a re-assertion may continue from: what local clients have seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    pub version: u64,
    pub epoch: u64,
}
