//! Counts following changes: the `counts` of a session (connections, distinct users) kept up to
//! date change by change, so reading them costs nothing per member.

use std::collections::HashMap;

use crate::model::{Change, Counts, Event, Member};

/// [`Counts`] kept up to date change by change, so reading them costs nothing per member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountsTracker {
    connections: u64,
    anonymous: u64,
    users: HashMap<String, u32>,
}

impl CountsTracker {
    pub fn of(members: &[Member]) -> CountsTracker {
        let mut tracker = CountsTracker::default();
        for member in members {
            tracker.add(member.user.as_deref());
        }
        tracker
    }

    pub fn counts(&self) -> Counts {
        Counts {
            connections: self.connections,
            users: self.users.len() as u64 + self.anonymous,
        }
    }

    /// Follows a change applied to a view whose counts these were.
    pub fn apply(&mut self, change: &Change) {
        for event in &change.events {
            match event {
                Event::MemberJoined { member } => self.add(member.user.as_deref()),
                Event::MemberLeft { user, .. } => self.remove(user.as_deref()),
                Event::SessionEnded { .. } => *self = CountsTracker::default(),
                Event::MemberUpdated { .. } | Event::LeaderChanged { .. } => {}
            }
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
