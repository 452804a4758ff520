//! The session rules, in one place: what a join, a leave, a removal, a re-assertion, an end or a
//! profile change does to a session, who leads after it, whether a plan is still current, and how
//! counts follow a change.
//!
//! Pure: no I/O, no actor, no clock (the caller passes the time). Each rule reads a [`Roster`] (the
//! session as someone holds it) and returns the [`Change`] it makes; applying a change is
//! [`SessionView::apply`]. The in-process store rules on its own state; the planner
//! (`crate::store::plan`) rules on the view an instance holds, so that the Redis scripts only
//! write what was decided. Where a Redis script still decides by itself (a change the planner
//! cannot make from its view: the reaper's, a re-assertion, an end), it follows these same rules,
//! and the shared conformance suite holds both to them.

use std::collections::HashMap;

use crate::ids::ConnectionId;
use crate::model::{Change, Counts, Event, LeaveReason, Member, SessionView};

/// A session's version, leadership epoch and leader: what every change moves, and what a plan
/// is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u64,
    pub epoch: u64,
    pub leader: Option<ConnectionId>,
}

impl Header {
    pub fn of(view: &SessionView) -> Header {
        Header {
            version: view.version,
            epoch: view.epoch,
            leader: view.leader.clone(),
        }
    }
}

/// A session as someone holds it, for the rules to read.
pub trait Roster {
    fn header(&self) -> Header;
    fn ended(&self) -> bool;
    /// The members, in election order (earliest `joined_at` first, ties by connection id).
    fn members(&self) -> impl Iterator<Item = &Member>;
    fn count(&self) -> usize;

    fn member(&self, connection: &str) -> Option<&Member> {
        self.members().find(|m| m.connection == connection)
    }

    /// The last member in election order.
    fn latest(&self) -> Option<&Member> {
        self.members().last()
    }
}

impl Roster for SessionView {
    fn header(&self) -> Header {
        Header::of(self)
    }

    fn ended(&self) -> bool {
        self.ended_at.is_some()
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    fn count(&self) -> usize {
        self.members.len()
    }

    fn latest(&self) -> Option<&Member> {
        self.members.last()
    }
}

/// Why a session refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Ended,
    /// At this many members.
    Full(usize),
    /// `end` from a member that does not lead, or with another epoch.
    NotLeader,
}

/// What a join does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinRuling {
    /// The member joins with this change (its `member_joined` carries the stamped record).
    Joins(Change),
    /// It is a member already: nothing changes.
    AlreadyMember { version: u64 },
}

/// A joiner's `joined_at`: the clock, or just after the latest member, so that join order is
/// election order even within one millisecond.
pub fn stamp(now_ms: i64, latest: Option<i64>) -> i64 {
    latest.map_or(now_ms, |latest| now_ms.max(latest.saturating_add(1)))
}

/// `member` joins at `now_ms`. A live leader stays; a session without one is led by its earliest
/// member (the joiner, when it is the first).
pub fn join(
    roster: &impl Roster,
    member: &Member,
    now_ms: i64,
    max_members: usize,
) -> Result<JoinRuling, Refusal> {
    if roster.ended() {
        return Err(Refusal::Ended);
    }
    let mut header = roster.header();
    if roster.member(&member.connection).is_some() {
        return Ok(JoinRuling::AlreadyMember {
            version: header.version,
        });
    }
    if roster.count() >= max_members {
        return Err(Refusal::Full(max_members));
    }
    let mut stamped = member.clone();
    stamped.joined_at = stamp(now_ms, roster.latest().map(|m| m.joined_at));
    let leader_is_live = header
        .leader
        .as_ref()
        .is_some_and(|leader| roster.member(leader).is_some());
    let mut events = Vec::with_capacity(2);
    let earliest = match roster.members().next() {
        Some(first) => first.connection.clone(),
        None => stamped.connection.clone(),
    };
    events.push(Event::MemberJoined { member: stamped });
    if !leader_is_live {
        elect(&mut header, Some(earliest), &mut events);
    }
    Ok(JoinRuling::Joins(commit(header, events)))
}

/// `connection` leaves; `None` when it is not a member.
pub fn leave(roster: &impl Roster, connection: &str, reason: LeaveReason) -> Option<Change> {
    remove(roster, |m| m.connection == connection, reason)
}

/// Every member for which `leaving` holds leaves, in one change, in election order. When the
/// leader is among them, the earliest remaining member (or nobody) leads, with the next epoch.
pub fn remove(
    roster: &impl Roster,
    leaving: impl Fn(&Member) -> bool,
    reason: LeaveReason,
) -> Option<Change> {
    let mut events: Vec<Event> = roster
        .members()
        .filter(|m| leaving(m))
        .map(|m| Event::MemberLeft {
            connection: m.connection.clone(),
            user: m.user.clone(),
            reason,
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    let mut header = roster.header();
    let leader_stays = header
        .leader
        .as_ref()
        .and_then(|leader| roster.member(leader))
        .is_some_and(|leader| !leaving(leader));
    if !leader_stays {
        let next = roster.members().find(|m| !leaving(m));
        elect(&mut header, next.map(|m| m.connection.clone()), &mut events);
    }
    Some(commit(header, events))
}

/// A re-assertion after the store lost members: the header continues from at least `floor` (what
/// clients have seen), the missing `members` come back with their own `joined_at`, and the
/// earliest member leads. Returns the header to keep whatever happens, and the change, if any
/// member was missing.
pub fn reassert(
    roster: &impl Roster,
    members: &[Member],
    floor: &Header,
) -> (Header, Option<Change>) {
    let mut header = roster.header();
    header.version = header.version.max(floor.version);
    header.epoch = header.epoch.max(floor.epoch);
    let back: Vec<&Member> = members
        .iter()
        .filter(|m| roster.member(&m.connection).is_none())
        .collect();
    if back.is_empty() {
        return (header, None);
    }
    let order = |m: &&Member| (m.joined_at, m.connection.clone());
    let earliest = roster
        .members()
        .chain(back.iter().copied())
        .min_by_key(order)
        .map(|m| m.connection.clone());
    let mut events: Vec<Event> = back
        .into_iter()
        .map(|m| Event::MemberJoined { member: m.clone() })
        .collect();
    let floored = header.clone();
    elect(&mut header, earliest, &mut events);
    (floored, Some(commit(header, events)))
}

/// The leader `by`, at `epoch`, ends the session: `session_ended`, then every member leaves
/// (reason `ended`) in election order, and nobody leads.
pub fn end(roster: &impl Roster, by: &str, epoch: u64) -> Result<Change, Refusal> {
    if roster.ended() {
        return Err(Refusal::Ended);
    }
    let mut header = roster.header();
    if header.leader.as_deref() != Some(by) || header.epoch != epoch {
        return Err(Refusal::NotLeader);
    }
    let mut events = vec![Event::SessionEnded { by: by.into() }];
    events.extend(roster.members().map(|m| Event::MemberLeft {
        connection: m.connection.clone(),
        user: m.user.clone(),
        reason: LeaveReason::Ended,
    }));
    elect(&mut header, None, &mut events);
    Ok(commit(header, events))
}

/// A member's new name and avatar; `None` when it is not a member.
pub fn update(roster: &impl Roster, profile: &Member) -> Option<Change> {
    let mut updated = roster.member(&profile.connection)?.clone();
    updated.name = profile.name.clone();
    updated.avatar = profile.avatar.clone();
    Some(commit(
        roster.header(),
        vec![Event::MemberUpdated { member: updated }],
    ))
}

/// Whether a plan made at `basis` still applies to a session at `current`. Versions alone
/// identify a state only within one history: after the store lost a session, a re-assertion
/// starts a new one, whose version may meet a lagging view's; epoch and leader tell them apart.
pub fn still_current(current: &Header, basis: &Header) -> bool {
    current == basis
}

/// `next` leads, with a new epoch and a `leader_changed`, unless it already does.
fn elect(header: &mut Header, next: Option<ConnectionId>, events: &mut Vec<Event>) {
    if next != header.leader {
        header.leader = next;
        header.epoch += 1;
        events.push(Event::LeaderChanged {
            leader: header.leader.clone(),
            epoch: header.epoch,
        });
    }
}

/// The change that takes a session from `header`'s version to the next, led as `header` says.
fn commit(header: Header, events: Vec<Event>) -> Change {
    Change {
        version: header.version + 1,
        leader: header.leader,
        epoch: header.epoch,
        events,
    }
}

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

/// Members and views for the unit tests of the rules and of their users.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::ids::Incarnation;

    /// Member `connection`, named after it, of one instance.
    pub(crate) fn member(connection: &str, joined_at: i64, user: Option<&str>) -> Member {
        Member {
            connection: ConnectionId::new(connection),
            user: user.map(str::to_owned),
            name: connection.to_uppercase(),
            avatar: None,
            joined_at,
            instance: Incarnation::new("i#1"),
        }
    }

    /// A view at version 7, epoch 3, led by its first member.
    pub(crate) fn view(members: Vec<Member>) -> SessionView {
        SessionView {
            version: 7,
            leader: members.first().map(|m| m.connection.clone()),
            epoch: 3,
            members,
            ended_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{member, view};
    use super::*;

    fn joins(ruling: Result<JoinRuling, Refusal>) -> Change {
        match ruling {
            Ok(JoinRuling::Joins(change)) => change,
            other => panic!("a join: {other:?}"),
        }
    }

    fn leader(connection: Option<&str>, epoch: u64) -> Event {
        Event::LeaderChanged {
            leader: connection.map(ConnectionId::new),
            epoch,
        }
    }

    #[test]
    fn the_first_member_leads_and_later_ones_keep_the_leader() {
        let empty = SessionView::default();
        let first = joins(join(&empty, &member("a", 0, None), 500, 10));
        assert_eq!(first.version, 1);
        assert_eq!(first.leader, Some(ConnectionId::new("a")));
        assert_eq!(first.epoch, 1);
        assert_eq!(first.events[1], leader(Some("a"), 1));
        let mut v = empty;
        v.apply(&first);
        let second = joins(join(&v, &member("b", 0, None), 400, 10));
        assert_eq!(second.events.len(), 1, "no election: {:?}", second.events);
        assert_eq!(second.leader, Some(ConnectionId::new("a")));
        let Event::MemberJoined { member } = &second.events[0] else {
            panic!("a member_joined first");
        };
        assert_eq!(
            member.joined_at, 501,
            "after the latest member, though the clock says 400"
        );
    }

    #[test]
    fn a_join_is_refused_when_ended_or_full_and_changes_nothing_when_already_a_member() {
        let v = view(vec![member("a", 100, None)]);
        assert_eq!(join(&v, &member("b", 0, None), 1, 1), Err(Refusal::Full(1)));
        assert_eq!(
            join(&v, &member("a", 0, None), 1, 1),
            Ok(JoinRuling::AlreadyMember { version: 7 }),
            "a re-join is not refused when full"
        );
        let mut ended = v.clone();
        ended.ended_at = Some(5);
        assert_eq!(
            join(&ended, &member("b", 0, None), 1, 10),
            Err(Refusal::Ended)
        );
    }

    #[test]
    fn a_leaderless_session_is_led_by_its_earliest_member_on_the_next_join() {
        let mut v = view(vec![member("a", 100, None), member("b", 200, None)]);
        v.leader = None;
        let change = joins(join(&v, &member("c", 0, None), 300, 10));
        assert_eq!(change.events[1], leader(Some("a"), 4));
    }

    #[test]
    fn the_leaders_leave_hands_over_to_the_earliest_remaining_member() {
        let v = view(vec![member("a", 100, Some("al")), member("b", 200, None)]);
        let change = leave(&v, "a", LeaveReason::Left).expect("a change");
        assert_eq!(change.version, 8);
        assert_eq!(change.leader, Some(ConnectionId::new("b")));
        assert_eq!(
            change.events,
            vec![
                Event::MemberLeft {
                    connection: ConnectionId::new("a"),
                    user: Some("al".into()),
                    reason: LeaveReason::Left,
                },
                leader(Some("b"), 4),
            ]
        );
        let other = leave(&v, "b", LeaveReason::Timeout).expect("a change");
        assert_eq!(
            (other.events.len(), other.epoch),
            (1, 3),
            "the leader stays"
        );
        assert_eq!(leave(&v, "z", LeaveReason::Left), None, "not a member");
        let alone = view(vec![member("a", 100, None)]);
        let last = leave(&alone, "a", LeaveReason::Left).expect("a change");
        assert_eq!(
            last.events[1],
            leader(None, 4),
            "nobody leads an empty session"
        );
    }

    #[test]
    fn a_removal_of_several_members_hands_over_once_past_all_of_them() {
        let v = view(vec![
            member("a", 100, None),
            member("b", 200, None),
            member("c", 300, None),
        ]);
        let change =
            remove(&v, |m| m.connection != "c", LeaveReason::InstanceLost).expect("a change");
        let left: Vec<_> = change
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MemberLeft { connection, .. } => Some(connection.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(left, ["a", "b"], "in election order");
        assert_eq!(change.events.last(), Some(&leader(Some("c"), 4)));
    }

    #[test]
    fn a_reassertion_continues_from_the_floor_and_the_earliest_member_leads() {
        let v = view(vec![member("b", 200, None)]);
        let floor = Header {
            version: 20,
            epoch: 9,
            leader: None,
        };
        let back = [member("a", 100, None), member("b", 200, None)];
        let (kept, change) = reassert(&v, &back, &floor);
        assert_eq!((kept.version, kept.epoch), (20, 9));
        let change = change.expect("a was missing");
        assert_eq!(change.version, 21);
        assert_eq!(
            change.events.len(),
            2,
            "a comes back, and leads: {:?}",
            change.events
        );
        assert_eq!(change.events[1], leader(Some("a"), 10));
        let (kept, none) = reassert(&v, &back[1..], &floor);
        assert_eq!(
            (kept.version, none),
            (20, None),
            "nothing missing, the floor kept"
        );
    }

    #[test]
    fn only_the_leader_at_its_epoch_ends_a_session_and_everyone_leaves() {
        let v = view(vec![member("a", 100, None), member("b", 200, Some("bo"))]);
        assert_eq!(end(&v, "b", 3), Err(Refusal::NotLeader));
        assert_eq!(end(&v, "a", 2), Err(Refusal::NotLeader), "stale epoch");
        let change = end(&v, "a", 3).expect("the leader ends it");
        assert_eq!(change.events.len(), 4);
        assert_eq!(change.events[0], Event::SessionEnded { by: "a".into() });
        assert_eq!(change.events[3], leader(None, 4));
        let mut ended = v.clone();
        ended.ended_at = Some(1);
        assert_eq!(end(&ended, "a", 3), Err(Refusal::Ended));
    }

    #[test]
    fn a_profile_update_keeps_everything_but_name_and_avatar() {
        let v = view(vec![member("a", 100, Some("al"))]);
        let mut profile = member("a", 0, None);
        profile.name = "Ada".into();
        profile.avatar = Some("https://a.example/a.png".into());
        let change = update(&v, &profile).expect("a member");
        let Event::MemberUpdated { member: updated } = &change.events[0] else {
            panic!("member_updated");
        };
        assert_eq!(
            (
                updated.joined_at,
                updated.user.as_deref(),
                updated.name.as_str()
            ),
            (100, Some("al"), "Ada")
        );
        assert_eq!(update(&v, &member("z", 0, None)), None);
    }

    #[test]
    fn a_plan_is_current_only_at_its_whole_header() {
        let at = Header::of(&view(vec![member("a", 1, None)]));
        assert!(still_current(&at, &at.clone()));
        for other in [
            Header {
                version: 8,
                ..at.clone()
            },
            Header {
                epoch: 4,
                ..at.clone()
            },
            Header {
                leader: None,
                ..at.clone()
            },
        ] {
            assert!(!still_current(&at, &other), "{other:?}");
        }
    }

    #[test]
    fn counts_follow_changes() {
        let mut v = SessionView::default();
        let mut counts = CountsTracker::default();
        for (connection, user) in [("a", Some("u")), ("b", Some("u")), ("c", None)] {
            let change = joins(join(&v, &member(connection, 0, user), 1, 10));
            v.apply(&change);
            counts.apply(&change);
        }
        assert_eq!(
            counts.counts(),
            Counts {
                connections: 3,
                users: 2
            }
        );
        let change = leave(&v, "a", LeaveReason::Left).expect("a change");
        counts.apply(&change);
        assert_eq!(
            counts.counts(),
            Counts {
                connections: 2,
                users: 2
            }
        );
        assert_eq!(
            counts,
            CountsTracker::of(&{
                v.apply(&change);
                v.members.clone()
            })
        );
    }
}
