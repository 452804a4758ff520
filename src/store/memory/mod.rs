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
    Broadcast, BroadcastBody, Broker, CHANGE_LOG_LENGTH, Feed, FeedEvent, Floor, HistorySettings,
    InstanceId, JoinOutcome, LeaseStatus, PlansWritten, Registry, ResumeRuling, Sessions, Store,
    StoreError, StoreResult, Upkeep, Whose,
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
    /// Signs resume tokens; made on first use, forgotten by [`MemoryBackend::reset`].
    resume_secret: Option<Vec<u8>>,
    sessions: HashMap<String, SessionState>,
    instances: HashMap<String, InstanceState>,
    names: HashMap<String, String>,
    claims: HashMap<String, (String, Instant)>,
    subscribers: HashMap<String, HashMap<String, mpsc::UnboundedSender<FeedEvent>>>,
    /// Each session's message stream and kept messages ([`history`]).
    histories: HashMap<String, history::MessageLog>,
    /// Changes kept for the backend's webhooks ([`outbox`]).
    outbox: outbox::OutboxState,
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
            history: Mutex::new(HistorySettings::default()),
        };
        (store, feed_rx)
    }

    /// Forgets everything, as a Redis restarted empty would (for tests of self-healing).
    pub fn reset(&self) {
        let mut state = self.lock();
        let subscribers = std::mem::take(&mut state.subscribers);
        let keep_outbox = state.outbox.on;
        *state = State {
            generation: state.generation + 1,
            subscribers,
            ..State::default()
        };
        state.outbox.on = keep_outbox;
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
    /// What this instance keeps of the messages it publishes.
    history: Mutex<HistorySettings>,
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
            |m| m.instance == instance && m.is_present() && !keep.contains(&m.connection),
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
        self.keep_for_delivery(state, session, &change);
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

mod broker;
mod history;
mod operator;
mod outbox;
mod registry;
mod sessions;
mod upkeep;

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn instance(&self) -> &InstanceId {
        &self.instance
    }
}
