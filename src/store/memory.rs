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

use super::plan::{Basis, Plan};
use super::{
    Broadcast, BroadcastBody, CHANGE_LOG_LENGTH, Feed, FeedEvent, Floor, InstanceId, JoinOutcome,
    LeaseStatus, PlansWritten, Store, StoreError, StoreResult,
};
use crate::clock::WallClock;
use crate::ids::ConnectionId;
use crate::model::{Change, Counts, Event, LeaveReason, Member, SessionView, sort_members};

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
    version: u64,
    leader: Option<ConnectionId>,
    epoch: u64,
    members: Vec<Member>,
    ended_at: Option<i64>,
    /// The latest changes, oldest first, consecutive versions (see [`Store::changes_since`]).
    log: VecDeque<Change>,
}

impl SessionState {
    fn view(&self) -> SessionView {
        SessionView {
            version: self.version,
            leader: self.leader.clone(),
            epoch: self.epoch,
            members: self.members.clone(),
            ended_at: self.ended_at,
        }
    }

    /// Keeps a live leader; otherwise the earliest member (or nobody) leads, with a new epoch.
    fn elect(&mut self, force_earliest: bool, events: &mut Vec<Event>) {
        let current_is_live = self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.iter().any(|m| &m.connection == l));
        if current_is_live && !force_earliest {
            return;
        }
        let next = self.members.first().map(|m| m.connection.clone());
        if next != self.leader {
            self.leader = next;
            self.epoch += 1;
            events.push(Event::LeaderChanged {
                leader: self.leader.clone(),
                epoch: self.epoch,
            });
        }
    }

    fn commit(&mut self, events: Vec<Event>) -> Change {
        self.version += 1;
        let change = Change {
            version: self.version,
            leader: self.leader.clone(),
            epoch: self.epoch,
            events,
        };
        if self.log.len() == CHANGE_LOG_LENGTH {
            self.log.pop_front();
        }
        self.log.push_back(change.clone());
        change
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
        self.lock().sessions.values().map(|s| s.members.len()).sum()
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
        let entry = state.sessions.get_mut(session)?;
        let mut events = Vec::new();
        entry.members.retain(|m| {
            let stays = m.instance != instance || keep.contains(&m.connection);
            if !stays {
                events.push(Event::MemberLeft {
                    connection: m.connection.clone(),
                    user: m.user.clone(),
                    reason,
                });
            }
            stays
        });
        if events.is_empty() {
            return None;
        }
        entry.elect(false, &mut events);
        let change = entry.commit(events);
        if !Self::still_has_members(&state, instance, session) {
            Self::track(&mut state, instance, session, false);
        }
        self.publish_change(&state, session, &change);
        Some(change)
    }

    fn still_has_members(state: &State, instance: &str, session: &str) -> bool {
        state
            .sessions
            .get(session)
            .is_some_and(|s| s.members.iter().any(|m| m.instance == instance))
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
        mut member: Member,
        max_members: usize,
    ) -> StoreResult<JoinOutcome> {
        let mut state = self.backend.lock();
        let entry = state.sessions.entry(session.to_owned()).or_default();
        if entry.ended_at.is_some() {
            return Err(StoreError::SessionEnded);
        }
        if entry
            .members
            .iter()
            .any(|m| m.connection == member.connection)
        {
            return Ok(JoinOutcome::AlreadyMember {
                version: entry.version,
            });
        }
        if entry.members.len() >= max_members {
            return Err(StoreError::SessionFull(max_members));
        }
        if entry.members.is_empty() {
            // A session that starts again keeps no log of its earlier life.
            entry.log.clear();
        }
        // Strictly later than every member, so join order is election order even within one ms.
        let latest = entry.members.last().map_or(i64::MIN, |m| m.joined_at);
        member.joined_at = self.backend.clock.now_ms().max(latest.saturating_add(1));
        entry.members.push(member.clone());
        sort_members(&mut entry.members);
        let mut events = vec![Event::MemberJoined {
            member: member.clone(),
        }];
        entry.elect(false, &mut events);
        let change = entry.commit(events);
        Self::track(&mut state, &member.instance, session, true);
        self.publish_change(&state, session, &change);
        Ok(JoinOutcome::Joined(change))
    }

    async fn leave(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get_mut(session) else {
            return Ok(None);
        };
        let Some(pos) = entry
            .members
            .iter()
            .position(|m| m.connection == connection)
        else {
            return Ok(None);
        };
        let gone = entry.members.remove(pos);
        let mut events = vec![Event::MemberLeft {
            connection: connection.into(),
            user: gone.user.clone(),
            reason,
        }];
        entry.elect(false, &mut events);
        let change = entry.commit(events);
        if !Self::still_has_members(&state, &gone.instance, session) {
            Self::track(&mut state, &gone.instance, session, false);
        }
        self.publish_change(&state, session, &change);
        Ok(Some(change))
    }

    async fn write_plans(&self, session: &str, plans: &[Plan]) -> StoreResult<PlansWritten> {
        let mut state = self.backend.lock();
        let Some(first) = plans.first() else {
            return Ok(PlansWritten::All);
        };
        let Some(entry) = state.sessions.get_mut(session) else {
            return Ok(PlansWritten::Declined);
        };
        let at = Basis {
            version: entry.version,
            epoch: entry.epoch,
            leader: entry.leader.clone(),
        };
        if at != first.after {
            return Ok(PlansWritten::Declined);
        }
        let mut touched = Vec::new();
        let mut changes = Vec::with_capacity(plans.len());
        for plan in plans {
            for event in &plan.change.events {
                match event {
                    Event::MemberJoined { member } => {
                        entry.members.push(member.clone());
                        sort_members(&mut entry.members);
                        touched.push(member.instance.clone());
                    }
                    Event::MemberLeft { connection, .. } => {
                        if let Some(pos) = entry
                            .members
                            .iter()
                            .position(|m| &m.connection == connection)
                        {
                            touched.push(entry.members.remove(pos).instance);
                        }
                    }
                    _ => {}
                }
            }
            entry.leader = plan.change.leader.clone();
            entry.epoch = plan.change.epoch;
            changes.push(entry.commit(plan.change.events.clone()));
        }
        for instance in touched {
            let present = Self::still_has_members(&state, &instance, session);
            Self::track(&mut state, &instance, session, present);
        }
        for change in &changes {
            self.publish_change(&state, session, change);
        }
        Ok(PlansWritten::All)
    }

    async fn update_member(&self, session: &str, member: Member) -> StoreResult<Option<Change>> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get_mut(session) else {
            return Ok(None);
        };
        let Some(existing) = entry
            .members
            .iter_mut()
            .find(|m| m.connection == member.connection)
        else {
            return Ok(None);
        };
        existing.name = member.name;
        existing.avatar = member.avatar;
        let updated = existing.clone();
        let change = entry.commit(vec![Event::MemberUpdated { member: updated }]);
        self.publish_change(&state, session, &change);
        Ok(Some(change))
    }

    async fn end(&self, session: &str, connection: &str, epoch: u64) -> StoreResult<Change> {
        let mut state = self.backend.lock();
        let Some(entry) = state.sessions.get_mut(session) else {
            return Err(StoreError::NotLeader);
        };
        if entry.ended_at.is_some() {
            return Err(StoreError::SessionEnded);
        }
        if entry.leader.as_deref() != Some(connection) || entry.epoch != epoch {
            return Err(StoreError::NotLeader);
        }
        let instances: HashSet<String> = entry
            .members
            .iter()
            .map(|m| m.instance.to_string())
            .collect();
        entry.ended_at = Some(self.backend.clock.now_ms());
        let mut events = vec![Event::SessionEnded {
            by: connection.into(),
        }];
        events.extend(entry.members.drain(..).map(|m| Event::MemberLeft {
            connection: m.connection,
            user: m.user,
            reason: LeaveReason::Ended,
        }));
        entry.elect(false, &mut events);
        let change = entry.commit(events);
        for instance in instances {
            Self::track(&mut state, &instance, session, false);
        }
        self.publish_change(&state, session, &change);
        Ok(change)
    }

    async fn view(&self, session: &str) -> StoreResult<Option<SessionView>> {
        Ok(self
            .backend
            .lock()
            .sessions
            .get(session)
            .map(SessionState::view))
    }

    async fn changes_since(&self, session: &str, version: u64) -> StoreResult<Option<Vec<Change>>> {
        let state = self.backend.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(Some(Vec::new()));
        };
        if version >= entry.version {
            return Ok(Some(Vec::new()));
        }
        let missing = (entry.version - version) as usize;
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
                    .map(|s| Counts::of(&s.members))
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
            s.members.iter().filter(|m| &m.instance == me).count() as u64
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
        if entry.ended_at.is_some() {
            return Err(StoreError::SessionEnded);
        }
        if floor.version > entry.version {
            // The version jumps: the log would no longer hold consecutive versions.
            entry.log.clear();
        }
        entry.version = entry.version.max(floor.version);
        entry.epoch = entry.epoch.max(floor.epoch);
        let mut events = Vec::new();
        for member in members {
            if !entry
                .members
                .iter()
                .any(|m| m.connection == member.connection)
            {
                entry.members.push(member.clone());
                events.push(Event::MemberJoined { member });
            }
        }
        if events.is_empty() {
            return Ok(None);
        }
        sort_members(&mut entry.members);
        entry.elect(true, &mut events);
        let change = entry.commit(events);
        let instance = self.instance.incarnation.to_string();
        Self::track(&mut state, &instance, session, true);
        self.publish_change(&state, session, &change);
        Ok(Some(change))
    }

    async fn touch(&self, _session: &str) -> StoreResult<()> {
        Ok(())
    }
}
