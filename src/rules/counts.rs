//! Counts following changes: the `counts` of a session (present connections, distinct users,
//! reconnecting members) kept up to date change by change, so reading them costs nothing per
//! member.

use std::collections::{HashMap, HashSet};

use crate::ids::ConnectionId;
use crate::model::{Change, Counts, Event, Member};

/// [`Counts`] kept up to date change by change, so reading them costs nothing per member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountsTracker {
    connections: u64,
    anonymous: u64,
    users: HashMap<String, u32>,
    /// Reconnecting members: counted apart, not among connections and users.
    reconnecting: HashSet<ConnectionId>,
}

impl CountsTracker {
    pub fn of(members: &[Member]) -> CountsTracker {
        let mut tracker = CountsTracker::default();
        for member in members {
            tracker.join(member);
        }
        tracker
    }

    pub fn counts(&self) -> Counts {
        Counts {
            connections: self.connections,
            users: self.users.len() as u64 + self.anonymous,
            reconnecting: self.reconnecting.len() as u64,
        }
    }

    /// Follows a change applied to a view whose counts these were.
    pub fn apply(&mut self, change: &Change) {
        for event in &change.events {
            match event {
                Event::MemberJoined { member } => self.join(member),
                Event::MemberLeft {
                    connection, user, ..
                } => {
                    if !self.reconnecting.remove(connection) {
                        self.remove(user.as_deref());
                    }
                }
                Event::MemberUpdated { member } => {
                    let was_reconnecting = self.reconnecting.contains(&member.connection);
                    match (was_reconnecting, member.is_present()) {
                        (true, true) => {
                            self.reconnecting.remove(&member.connection);
                            self.add(member.user.as_deref());
                        }
                        (false, false) => {
                            self.reconnecting.insert(member.connection.clone());
                            self.remove(member.user.as_deref());
                        }
                        _ => {}
                    }
                }
                Event::SessionEnded { .. } => *self = CountsTracker::default(),
                Event::LeaderChanged { .. } => {}
            }
        }
    }

    fn join(&mut self, member: &Member) {
        if member.is_present() {
            self.add(member.user.as_deref());
        } else {
            self.reconnecting.insert(member.connection.clone());
        }
    }

    fn add(&mut self, user: Option<&str>) {
        self.connections += 1;
        match user {
            Some(user) => *self.users.entry(user.to_owned()).or_default() += 1,
            None => self.anonymous += 1,
        }
    }

    fn remove(&mut self, user: Option<&str>) {
        self.connections = self.connections.saturating_sub(1);
        match user {
            Some(user) => {
                if let Some(n) = self.users.get_mut(user) {
                    *n -= 1;
                    if *n == 0 {
                        self.users.remove(user);
                    }
                }
            }
            None => self.anonymous = self.anonymous.saturating_sub(1),
        }
    }
}
