//! Domain types shared by the store, the actors and the wire protocol.
//!
//! A session's state is a list of [`Member`]s plus a header (version, leader, epoch). Every change
//! the store makes is described as a [`Change`]: the new header and the [`Event`]s that lead to it,
//! all carrying the same version. Keeping these types in one place is what lets the Memory and Redis
//! stores, the session actors and the WebSocket encoder agree on one meaning.

use serde::{Deserialize, Serialize};

use crate::ids::{ConnectionId, Incarnation};

/// One live membership: a connection in a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub connection: ConnectionId,
    pub user: Option<String>,
    pub name: String,
    pub avatar: Option<String>,
    /// Milliseconds since the Unix epoch; the leader election order.
    pub joined_at: i64,
    /// The instance (incarnation) that holds this connection. A compatible extension of the
    /// protocol's `Member` object, useful to operators.
    pub instance: Incarnation,
    /// Present, or reconnecting: its socket was lost without a clean end, and it may still be
    /// resumed until its grace runs out.
    #[serde(default)]
    pub state: MemberState,
    /// While reconnecting: when the grace runs out, and the reason it then leaves with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<Grace>,
}

impl Member {
    pub fn is_present(&self) -> bool {
        self.state == MemberState::Present
    }
}

/// Whether a member's socket is there (protocol `state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    #[default]
    Present,
    Reconnecting,
}

/// A reconnecting member's grace: it leaves with `reason` at `until` unless it is resumed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grace {
    pub reason: LeaveReason,
    /// Milliseconds since the Unix epoch (the store's clock).
    pub until: i64,
}

/// Why a membership ended. Serialized as the protocol's `reason` strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Disconnected,
    Timeout,
    InstanceLost,
    Shutdown,
    Ended,
    /// Removed by the application's backend (the server API's `kick`).
    Kicked,
}

impl LeaveReason {
    pub const ALL: [LeaveReason; 7] = [
        LeaveReason::Left,
        LeaveReason::Disconnected,
        LeaveReason::Timeout,
        LeaveReason::InstanceLost,
        LeaveReason::Shutdown,
        LeaveReason::Ended,
        LeaveReason::Kicked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Timeout => "timeout",
            LeaveReason::InstanceLost => "instance_lost",
            LeaveReason::Shutdown => "shutdown",
            LeaveReason::Ended => "ended",
            LeaveReason::Kicked => "kicked",
        }
    }
}

/// Live counts of a session: present connections, distinct users among them (anonymous
/// connections count one each), and reconnecting members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub connections: u64,
    pub users: u64,
    #[serde(default)]
    pub reconnecting: u64,
}

impl Counts {
    pub fn of(members: &[Member]) -> Counts {
        let mut users = std::collections::HashSet::new();
        let mut anonymous = 0u64;
        let mut reconnecting = 0u64;
        for member in members {
            if !member.is_present() {
                reconnecting += 1;
                continue;
            }
            match &member.user {
                Some(user) => {
                    users.insert(user.as_str());
                }
                None => anonymous += 1,
            }
        }
        Counts {
            connections: members.len() as u64 - reconnecting,
            users: users.len() as u64 + anonymous,
            reconnecting,
        }
    }
}

/// What a member tracks of the others (`join`'s `presence`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Every member and every membership event.
    #[default]
    Full,
    /// Counts only (sessions too large for everyone to track everyone): no per-member events,
    /// coalesced `counts` events instead.
    Counts,
}

/// One thing that happened to a session, as part of a [`Change`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    MemberJoined {
        member: Member,
    },
    MemberLeft {
        connection: ConnectionId,
        /// The member's user id, so the participation record can be closed without a lookup.
        user: Option<String>,
        reason: LeaveReason,
        /// Why, in the words of whoever removed it: the reason text of a kick, which the
        /// instance holding the member's socket sends it in `kicked`. Absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    MemberUpdated {
        member: Member,
    },
    LeaderChanged {
        leader: Option<ConnectionId>,
        epoch: u64,
    },
    SessionEnded {
        /// The leader that ended it; `None` when the application's backend did (server API).
        by: Option<ConnectionId>,
    },
}

/// The result of one atomic change of a session: its new header and the events that made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub version: u64,
    pub leader: Option<ConnectionId>,
    pub epoch: u64,
    pub events: Vec<Event>,
}

/// The whole shared state of a session at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub version: u64,
    pub leader: Option<ConnectionId>,
    pub epoch: u64,
    /// Sorted by `joined_at`, then connection id: the election order.
    pub members: Vec<Member>,
    /// Milliseconds since the Unix epoch, when the session was ended.
    pub ended_at: Option<i64>,
}

impl SessionView {
    pub fn counts(&self) -> Counts {
        Counts::of(&self.members)
    }

    /// The view without its members (version, leader, epoch, ended_at).
    pub fn header(&self) -> SessionView {
        SessionView {
            version: self.version,
            leader: self.leader.clone(),
            epoch: self.epoch,
            members: Vec::new(),
            ended_at: self.ended_at,
        }
    }

    pub fn member(&self, connection: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.connection == connection)
    }

    /// Advances this view by a change whose version directly follows it.
    pub fn apply(&mut self, change: &Change) {
        for event in &change.events {
            match event {
                Event::MemberJoined { member } => {
                    let joins_last = self.members.last().is_none_or(|last| {
                        (last.joined_at, &last.connection) < (member.joined_at, &member.connection)
                    });
                    if joins_last {
                        // The common case (joined_at grows): no scan, no sort.
                        self.members.push(member.clone());
                    } else {
                        self.members.retain(|m| m.connection != member.connection);
                        self.members.push(member.clone());
                        sort_members(&mut self.members);
                    }
                }
                Event::MemberLeft { connection, .. } => {
                    if let Some(i) = self
                        .members
                        .iter()
                        .position(|m| &m.connection == connection)
                    {
                        self.members.remove(i);
                    }
                }
                Event::MemberUpdated { member } => {
                    if let Some(existing) = self
                        .members
                        .iter_mut()
                        .find(|m| m.connection == member.connection)
                    {
                        *existing = member.clone();
                    }
                }
                Event::LeaderChanged { .. } => {}
                Event::SessionEnded { .. } => self.members.clear(),
            }
        }
        self.version = change.version;
        self.leader = change.leader.clone();
        self.epoch = change.epoch;
    }
}

/// Election order: earliest `joined_at` first, ties broken by connection id.
pub fn sort_members(members: &mut [Member]) {
    members.sort_by(|a, b| {
        a.joined_at
            .cmp(&b.joined_at)
            .then_with(|| a.connection.cmp(&b.connection))
    });
}

/// Milliseconds since the Unix epoch, from the system's clock ([`crate::clock::WallClock`] is the
/// one to use where a test may want to set it).
pub fn now_ms() -> i64 {
    crate::clock::WallClock::system().now_ms()
}
