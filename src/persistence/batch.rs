//! Pending participation writes, coalesced per (session, user) and per session.
//!
//! Every [`RecordChange`](crate::actors::RecordChange) becomes a few small operations here. Two
//! operations on the same key merge into one ([`ParticipantOp::then`]) that has the same effect as
//! applying both in order, so the pending set never holds more than one entry per distinct
//! (session, user) pair and per session, however long the database stays away. A flush takes the
//! whole set as one [`Batch`]; a failed flush is merged back *before* whatever arrived meanwhile,
//! which keeps the order of writes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::model::{Change, Event};

/// What happened to one user in one session since the last flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantOp {
    /// Display name of the latest join (None when this op holds no join).
    pub display_name: Option<String>,
    /// Joins counted here (added to `join_count`).
    pub joins: i64,
    /// Earliest join here: becomes `first_joined_at` when the row is new.
    pub first_join: Option<DateTime<Utc>>,
    /// Latest join here: becomes `last_joined_at`.
    pub last_join: Option<DateTime<Utc>>,
    /// Latest end of membership here: becomes `last_left_at`.
    pub last_left: Option<DateTime<Utc>>,
}

impl ParticipantOp {
    pub fn join(name: String, at: DateTime<Utc>) -> ParticipantOp {
        ParticipantOp {
            display_name: Some(name),
            joins: 1,
            first_join: Some(at),
            last_join: Some(at),
            last_left: None,
        }
    }

    pub fn leave(at: DateTime<Utc>) -> ParticipantOp {
        ParticipantOp {
            display_name: None,
            joins: 0,
            first_join: None,
            last_join: None,
            last_left: Some(at),
        }
    }

    /// `self` followed by `later`, as one operation.
    pub fn then(self, later: ParticipantOp) -> ParticipantOp {
        ParticipantOp {
            display_name: later.display_name.or(self.display_name),
            joins: self.joins + later.joins,
            first_join: self.first_join.or(later.first_join),
            last_join: later.last_join.or(self.last_join),
            last_left: later.last_left.or(self.last_left),
        }
    }

    /// True when this op holds at least one join, so it can create the row (an upsert); a
    /// leave-only op only updates an existing row.
    pub fn has_join(&self) -> bool {
        self.joins > 0
    }
}

/// What happened to one session since the last flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOp {
    /// Earliest activity here: `created_at` when the row is new.
    pub first_active: DateTime<Utc>,
    /// Latest activity here: `last_active_at`.
    pub last_active: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl SessionOp {
    pub fn at(at: DateTime<Utc>) -> SessionOp {
        SessionOp {
            first_active: at,
            last_active: at,
            ended_at: None,
        }
    }

    pub fn then(self, later: SessionOp) -> SessionOp {
        SessionOp {
            first_active: self.first_active.min(later.first_active),
            last_active: self.last_active.max(later.last_active),
            ended_at: later.ended_at.or(self.ended_at),
        }
    }
}

/// (session id, user id)
pub type ParticipantKey = (String, String);

/// A set of coalesced operations: the pending writes, or one flush of them.
///
/// Keys are sorted, so every flush writes rows in the same order (no deadlocks between instances
/// sharing a Postgres database).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub sessions: BTreeMap<String, SessionOp>,
    pub participants: BTreeMap<ParticipantKey, ParticipantOp>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.participants.is_empty()
    }

    /// Distinct keys held (sessions plus participant pairs): the memory this batch costs.
    pub fn len(&self) -> usize {
        self.sessions.len() + self.participants.len()
    }

    /// Adds what `change` of `session` means for the records, as seen at `now`. Anonymous members
    /// are not recorded. Joins are stamped with the member's own `joined_at`; leaves and ends,
    /// which carry no time, with `now` (the moment the change reached the recorder).
    pub fn record(&mut self, session: &str, change: &Change, now: DateTime<Utc>) {
        for event in &change.events {
            match event {
                Event::MemberJoined { member } => {
                    let Some(user) = &member.user else { continue };
                    let at = DateTime::from_timestamp_millis(member.joined_at).unwrap_or(now);
                    self.session(session, SessionOp::at(at));
                    self.participant(session, user, ParticipantOp::join(member.name.clone(), at));
                }
                Event::MemberLeft {
                    user: Some(user), ..
                } => {
                    self.session(session, SessionOp::at(now));
                    self.participant(session, user, ParticipantOp::leave(now));
                }
                Event::SessionEnded { .. } => {
                    let mut op = SessionOp::at(now);
                    op.ended_at = Some(now);
                    self.session(session, op);
                }
                Event::MemberLeft { user: None, .. }
                | Event::MemberUpdated { .. }
                | Event::LeaderChanged { .. } => {}
            }
        }
    }

    fn session(&mut self, session: &str, op: SessionOp) {
        match self.sessions.remove(session) {
            Some(earlier) => self.sessions.insert(session.to_owned(), earlier.then(op)),
            None => self.sessions.insert(session.to_owned(), op),
        };
    }

    fn participant(&mut self, session: &str, user: &str, op: ParticipantOp) {
        let key = (session.to_owned(), user.to_owned());
        match self.participants.remove(&key) {
            Some(earlier) => self.participants.insert(key, earlier.then(op)),
            None => self.participants.insert(key, op),
        };
    }

    /// `self` (older) followed by `later` (newer), as one batch.
    pub fn then(mut self, later: Batch) -> Batch {
        for (session, op) in later.sessions {
            self.session(&session, op);
        }
        for ((session, user), op) in later.participants {
            self.participant(&session, &user, op);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MemberState;
    use crate::model::{LeaveReason, Member};

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).expect("valid time")
    }

    fn joined(connection: &str, user: Option<&str>, at: i64) -> Change {
        Change {
            version: 1,
            leader: None,
            epoch: 1,
            events: vec![Event::MemberJoined {
                member: Member {
                    connection: connection.into(),
                    user: user.map(str::to_owned),
                    name: format!("name-{connection}"),
                    avatar: None,
                    joined_at: at,
                    instance: "i".into(),
                    state: MemberState::Present,
                    grace: None,
                },
            }],
        }
    }

    fn left(connection: &str, user: Option<&str>) -> Change {
        Change {
            version: 2,
            leader: None,
            epoch: 1,
            events: vec![Event::MemberLeft {
                connection: connection.into(),
                user: user.map(str::to_owned),
                reason: LeaveReason::InstanceLost,
                detail: None,
            }],
        }
    }

    #[test]
    fn tabs_of_one_user_coalesce_into_one_entry() {
        let mut batch = Batch::default();
        batch.record("s", &joined("c1", Some("u"), 1_000), t(1_000));
        batch.record("s", &joined("c2", Some("u"), 2_000), t(2_000));
        batch.record("s", &left("c1", Some("u")), t(3_000));
        batch.record("s", &joined("c3", None, 4_000), t(4_000));
        batch.record("s", &left("c3", None), t(5_000));
        assert_eq!(batch.participants.len(), 1);
        let op = &batch.participants[&("s".to_owned(), "u".to_owned())];
        assert_eq!(op.joins, 2);
        assert_eq!(op.first_join, Some(t(1_000)));
        assert_eq!(op.last_join, Some(t(2_000)));
        assert_eq!(op.last_left, Some(t(3_000)));
        assert_eq!(op.display_name.as_deref(), Some("name-c2"));
        let session = &batch.sessions["s"];
        assert_eq!(
            (session.first_active, session.last_active),
            (t(1_000), t(3_000))
        );
    }

    #[test]
    fn merging_a_failed_flush_back_keeps_the_order() {
        let mut older = Batch::default();
        older.record("s", &joined("c1", Some("u"), 1_000), t(1_000));
        older.record("s", &left("c1", Some("u")), t(2_000));
        let mut newer = Batch::default();
        newer.record("s", &joined("c2", Some("u"), 3_000), t(3_000));
        let merged = older.then(newer);
        let op = &merged.participants[&("s".to_owned(), "u".to_owned())];
        assert_eq!(op.joins, 2);
        assert_eq!(op.first_join, Some(t(1_000)));
        assert_eq!(op.last_join, Some(t(3_000)));
        assert_eq!(op.last_left, Some(t(2_000)));
    }

    #[test]
    fn end_marks_the_session() {
        let mut batch = Batch::default();
        batch.record(
            "s",
            &Change {
                version: 3,
                leader: None,
                epoch: 2,
                events: vec![Event::SessionEnded {
                    by: Some("c".into()),
                }],
            },
            t(9_000),
        );
        assert_eq!(batch.sessions["s"].ended_at, Some(t(9_000)));
        assert!(batch.participants.is_empty());
    }
}
