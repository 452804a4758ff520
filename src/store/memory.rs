//! In-process [`Store`]: the embedded default, so `cargo run` needs no server.
//!
//! One [`MemoryBackend`] holds the state; each engine connects to it with its own instance id. A
//! single server uses one backend and one engine; tests may connect several engines to one backend
//! to play several instances, crash one (drop it without a graceful stop) and watch the others reap
//! it, exactly as with Redis. Leases are timed by this process's monotonic clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;

use super::plan::Plan;
use super::{
    Broadcast, BroadcastBody, CHANGE_LOG_LENGTH, Feed, FeedEvent, Floor, InstanceId, JoinOutcome,
    LeaseStatus, PlansWritten, Store, StoreError, StoreResult,
};
use crate::clock::WallClock;
use crate::ids::ConnectionId;
use crate::model::{Change, Counts, Event, LeaveReason, Member, SessionView};
use crate::rules::{self, Header, JoinRuling, Refusal};

/// The shared in-process state; clone it to connect several engines to the same "cluster".
#[derive(Clone)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
    lease: Duration,
    /// Stamps `joined_at` and `ended_at`.
    clock: WallClock,
}

#[derive(Default)]
struct State {
    generation: u64,
    sessions: HashMap<String, SessionState>,
    instances: HashMap<String, InstanceState>,
    names: HashMap<String, String>,
    claims: HashMap<String, (String, Instant)>,
    subscribers: HashMap<String, HashMap<String, mpsc::UnboundedSender<FeedEvent>>>,
}

struct InstanceState {
    expires: Instant,
    sessions: HashSet<String>,
}

#[derive(Default)]
struct SessionState {
    view: SessionView,
    /// The latest changes, oldest first, consecutive versions (see [`Store::changes_since`]).
    log: VecDeque<Change>,
}

impl SessionState {
    /// Applies a change the rules made, and keeps it in the log.
    fn apply(&mut self, change: &Change) {
        self.view.apply(change);
        if self.log.len() == CHANGE_LOG_LENGTH {
            self.log.pop_front();
        }
        self.log.push_back(change.clone());
    }

    /// The instances that hold the members of `change`'s joins and leaves (before it is applied).
    fn instances_touched(&self, change: &Change) -> Vec<String> {
        change
            .events
            .iter()
            .filter_map(|event| match event {
                Event::MemberJoined { member } => Some(member.instance.to_string()),
                Event::MemberLeft { connection, .. } => {
                    self.view.member(connection).map(|m| m.instance.to_string())
                }
                _ => None,
            })
            .collect()
    }
}

/// A refusal of the rules, as the store reports it.
fn refused(refusal: Refusal) -> StoreError {
    match refusal {
        Refusal::Ended => StoreError::SessionEnded,
        Refusal::Full(max) => StoreError::SessionFull(max),
        Refusal::NotLeader => StoreError::NotLeader,
    }
}

impl MemoryBackend {
    pub fn new(lease: Duration) -> MemoryBackend {
        MemoryBackend::with_clock(lease, WallClock::system())
    }

    /// A backend whose `joined_at` and `ended_at` stamps come from `clock`.
    pub fn with_clock(lease: Duration, clock: WallClock) -> MemoryBackend {
        MemoryBackend {
            state: Arc::new(Mutex::new(State::default())),
            lease,
            clock,
        }
    }

    /// A handle for one instance, and the feed of what other instances broadcast to it.
    pub fn connect(&self, instance: InstanceId) -> (MemoryStore, Feed) {
        let (feed_tx, feed_rx) = mpsc::unbounded_channel();
        let store = MemoryStore {
            backend: self.clone(),
            instance,
            feed_tx,
            generation: Mutex::new(None),
        };
        (store, feed_rx)
    }

    /// Forgets everything, as a Redis restarted empty would (for tests of self-healing).
    pub fn reset(&self) {
        let mut state = self.lock();
        let subscribers = std::mem::take(&mut state.subscribers);
        *state = State {
            generation: state.generation + 1,
            subscribers,
            ..State::default()
        };
    }

    /// Member count of every session, for tests that check nothing is left behind.
    pub fn live_member_count(&self) -> usize {
        self.lock()
            .sessions
            .values()
            .map(|s| s.view.members.len())
            .sum()
    }

    /// Registered instance incarnations, for tests.
    pub fn registered_instances(&self) -> Vec<String> {
        self.lock().instances.keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written in a way later
        // operations cannot read, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One instance's handle on a [`MemoryBackend`].
pub struct MemoryStore {
    backend: MemoryBackend,
    instance: InstanceId,
    feed_tx: mpsc::UnboundedSender<FeedEvent>,
    generation: Mutex<Option<u64>>,
}

impl MemoryStore {
    fn broadcast(&self, state: &State, session: &str, body: BroadcastBody) {
        let Some(subscribers) = state.subscribers.get(session) else {
            return;
        };
        let message = Broadcast {
            session: session.into(),
            origin: self.instance.incarnation.clone(),
            body,
        };
        for (incarnation, tx) in subscribers {
            if *incarnation != self.instance.incarnation {
                let _ = tx.send(FeedEvent::Broadcast(message.clone()));
            }
        }
    }

    fn publish_change(&self, state: &State, session: &str, change: &Change) {
        self.broadcast(state, session, BroadcastBody::Change(change.clone()));
    }

    fn track(state: &mut State, instance: &str, session: &str, present: bool) {
        if let Some(inst) = state.instances.get_mut(instance) {
            if present {
                inst.sessions.insert(session.to_owned());
            } else {
                inst.sessions.remove(session);
            }
        }
    }

    /// Removes the members `instance` has in `session`, except `keep`, in one change.
    fn remove_members_of(
        &self,
        session: &str,
        instance: &str,
        keep: &[ConnectionId],
        reason: LeaveReason,
    ) -> Option<Change> {
        let mut state = self.backend.lock();
        let entry = state.sessions.get(session)?;
        let change = rules::remove(
            &entry.view,
            |m| m.instance == instance && !keep.contains(&m.connection),
            reason,
        )?;
        Some(self.commit(&mut state, session, change))
    }

    /// Applies a change the rules made to `session`, keeps the instances' session lists in step,
    /// and tells the other instances.
    fn commit(&self, state: &mut State, session: &str, change: Change) -> Change {
        let entry = state.sessions.entry(session.to_owned()).or_default();
        let touched = entry.instances_touched(&change);
        entry.apply(&change);
        for instance in touched {
            let present = Self::still_has_members(state, &instance, session);
            Self::track(state, &instance, session, present);
        }
        self.publish_change(state, session, &change);
        change
    }

    fn still_has_members(state: &State, instance: &str, session: &str) -> bool {
        state
            .sessions
            .get(session)
            .is_some_and(|s| s.view.members.iter().any(|m| m.instance == instance))
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn instance(&self) -> &InstanceId {
        &self.instance
    }

    async fn join(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
    ) -> StoreResult<JoinOutcome> {
        let mut state = self.backend.lock();
        let entry = state.sessions.entry(session.to_owned()).or_default();
        let now = self.backend.clock.now_ms();
        match rules::join(&entry.view, &member, now, max_members).map_err(refused)? {
            JoinRuling::AlreadyMember { version } => Ok(JoinOutcome::AlreadyMember { version }),
            JoinRuling::Joins(change) => {
                if entry.view.members.is_empty() {
                    // A session that starts again keeps no log of its earlier life.
                    entry.log.clear();
                }
                Ok(JoinOutcome::Joined(
                    self.commit(&mut state, session, change),
                ))
            }
        }
    }

    async fn leave(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(None);
        };
        let Some(change) = rules::leave(&entry.view, connection, reason) else {
            return Ok(None);
        };
        Ok(Some(self.commit(&mut state, session, change)))
    }

    async fn write_plans(&self, session: &str, plans: &[Plan]) -> StoreResult<PlansWritten> {
        let mut state = self.backend.lock();
        let Some(first) = plans.first() else {
            return Ok(PlansWritten::All);
        };
        let Some(entry) = state.sessions.get(session) else {
            return Ok(PlansWritten::Declined);
        };
        if !rules::still_current(&Header::of(&entry.view), &first.after) {
            return Ok(PlansWritten::Declined);
        }
        for plan in plans {
            self.commit(&mut state, session, plan.change.clone());
        }
        Ok(PlansWritten::All)
    }

    async fn update_member(&self, session: &str, member: Member) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(None);
        };
        let Some(change) = rules::update(&entry.view, &member) else {
            return Ok(None);
        };
        Ok(Some(self.commit(&mut state, session, change)))
    }

    async fn end(&self, session: &str, connection: &str, epoch: u64) -> StoreResult<Change> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Err(StoreError::NotLeader);
        };
        let change = rules::end(&entry.view, connection, epoch).map_err(refused)?;
        let change = self.commit(&mut state, session, change);
        if let Some(entry) = state.sessions.get_mut(session) {
            entry.view.ended_at = Some(self.backend.clock.now_ms());
        }
        Ok(change)
    }

    async fn view(&self, session: &str) -> StoreResult<Option<SessionView>> {
        Ok(self
            .backend
            .lock()
            .sessions
            .get(session)
            .map(|s| s.view.clone()))
    }

    async fn changes_since(&self, session: &str, version: u64) -> StoreResult<Option<Vec<Change>>> {
        let state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(Some(Vec::new()));
        };
        if version >= entry.view.version {
            return Ok(Some(Vec::new()));
        }
        let missing = (entry.view.version - version) as usize;
        if missing > entry.log.len() {
            return Ok(None);
        }
        Ok(Some(
            entry
                .log
                .iter()
                .skip(entry.log.len() - missing)
                .cloned()
                .collect(),
        ))
    }

    async fn counts(&self, sessions: &[String]) -> StoreResult<Vec<Counts>> {
        let state = self.backend.lock();
        Ok(sessions
            .iter()
            .map(|s| {
                state
                    .sessions
                    .get(s)
                    .map(|s| s.view.counts())
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn publish(
        &self,
        session: &str,
        from: &str,
        user: Option<&str>,
        data: &Value,
    ) -> StoreResult<()> {
        let state = self.backend.lock();
        let body = BroadcastBody::Message {
            from: from.into(),
            user: user.map(str::to_owned),
            data: data.clone(),
        };
        self.broadcast(&state, session, body);
        Ok(())
    }

    async fn subscribe(&self, session: &str) -> StoreResult<()> {
        let mut state = self.backend.lock();
        state
            .subscribers
            .entry(session.to_owned())
            .or_default()
            .insert(self.instance.incarnation.to_string(), self.feed_tx.clone());
        Ok(())
    }

    async fn unsubscribe(&self, session: &str) -> StoreResult<()> {
        let mut state = self.backend.lock();
        if let Some(subs) = state.subscribers.get_mut(session) {
            subs.remove(self.instance.incarnation.as_str());
            if subs.is_empty() {
                state.subscribers.remove(session);
            }
        }
        Ok(())
    }

    async fn register(&self) -> StoreResult<Option<String>> {
        let mut state = self.backend.lock();
        let me = self.instance.incarnation.to_string();
        state.instances.insert(
            me.clone(),
            InstanceState {
                expires: Instant::now() + self.backend.lease,
                sessions: HashSet::new(),
            },
        );
        let previous = state.names.insert(self.instance.name.clone(), me.clone());
        *self
            .generation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(state.generation);
        Ok(previous.filter(|p| *p != me && state.instances.contains_key(p)))
    }

    async fn renew_lease(&self) -> StoreResult<LeaseStatus> {
        let mut state = self.backend.lock();
        let mut known = self
            .generation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = state.generation;
        let me = self.instance.incarnation.to_string();
        let expires = Instant::now() + self.backend.lease;
        let status = if *known != Some(generation) {
            LeaseStatus::StoreReset
        } else if state.instances.contains_key(&me) {
            LeaseStatus::Held
        } else {
            LeaseStatus::WasLost
        };
        *known = Some(generation);
        state
            .instances
            .entry(me.clone())
            .or_insert_with(|| InstanceState {
                expires,
                sessions: HashSet::new(),
            })
            .expires = expires;
        state.names.insert(self.instance.name.clone(), me);
        Ok(status)
    }

    async fn deregister(&self) -> StoreResult<()> {
        let mut state = self.backend.lock();
        let me = &self.instance.incarnation.to_string();
        state.instances.remove(me);
        if state.names.get(&self.instance.name) == Some(me) {
            state.names.remove(&self.instance.name);
        }
        Ok(())
    }

    async fn expired_instances(&self) -> StoreResult<Vec<String>> {
        let now = Instant::now();
        Ok(self
            .backend
            .lock()
            .instances
            .iter()
            .filter(|(_, inst)| inst.expires < now)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn claim_reap(&self, dead: &str) -> StoreResult<bool> {
        let mut state = self.backend.lock();
        let now = Instant::now();
        let me = self.instance.incarnation.to_string();
        match state.claims.get(dead) {
            Some((holder, until)) if *until > now && *holder != me => Ok(false),
            _ => {
                state
                    .claims
                    .insert(dead.to_owned(), (me, now + self.backend.lease));
                Ok(true)
            }
        }
    }

    async fn sessions_of(&self, dead: &str) -> StoreResult<Vec<String>> {
        let state = self.backend.lock();
        let mut sessions: Vec<String> = state
            .instances
            .get(dead)
            .map(|i| i.sessions.iter().cloned().collect())
            .unwrap_or_default();
        sessions.sort();
        Ok(sessions)
    }

    async fn remove_instance_members(
        &self,
        session: &str,
        dead: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        Ok(self.remove_members_of(session, dead, &[], reason))
    }

    async fn held_count(&self, session: &str) -> StoreResult<u64> {
        let state = self.backend.lock();
        let me = &self.instance.incarnation;
        Ok(state.sessions.get(session).map_or(0, |s| {
            s.view.members.iter().filter(|m| &m.instance == me).count() as u64
        }))
    }

    async fn remove_strays(
        &self,
        session: &str,
        keep: &[ConnectionId],
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let me = self.instance.incarnation.clone();
        Ok(self.remove_members_of(session, &me, keep, reason))
    }

    async fn forget_instance(&self, dead: &str) -> StoreResult<()> {
        let mut state = self.backend.lock();
        state.instances.remove(dead);
        state.claims.remove(dead);
        state.names.retain(|_, incarnation| incarnation != dead);
        Ok(())
    }

    async fn reassert(
        &self,
        session: &str,
        members: Vec<Member>,
        floor: Floor,
    ) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let entry = state.sessions.entry(session.to_owned()).or_default();
        if entry.view.ended_at.is_some() {
            return Err(StoreError::SessionEnded);
        }
        let floor = Header {
            version: floor.version,
            epoch: floor.epoch,
            leader: None,
        };
        let (kept, change) = rules::reassert(&entry.view, &members, &floor);
        if kept.version > entry.view.version {
            // The version jumps: the log would no longer hold consecutive versions.
            entry.log.clear();
        }
        entry.view.version = kept.version;
        entry.view.epoch = kept.epoch;
        let Some(change) = change else {
            return Ok(None);
        };
        let change = self.commit(&mut state, session, change);
        let instance = self.instance.incarnation.to_string();
        Self::track(&mut state, &instance, session, true);
        Ok(Some(change))
    }

    async fn touch(&self, _session: &str) -> StoreResult<()> {
        Ok(())
    }
}
