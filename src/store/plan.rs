//! The change a join or a leave will make, worked out from the view an instance already holds.
//!
//! A session actor applies every change of its session in version order, so between its own
//! operations its view usually is the store's state. From that view it can tell what a join or a
//! leave will do (the stamped member, the events, the new header) without asking the store. The
//! Redis store then only checks that its header still is the view's and writes the planned
//! change, instead of reading the header, electing and encoding the change inside its script; when
//! the header differs (another instance changed the session meanwhile), the store ignores the
//! plan and computes the change itself, as without one. A plan is only an offer: it never decides
//! anything the store would decide differently.

use crate::ids::ConnectionId;
use crate::model::{Change, Event, LeaveReason, Member, SessionView};
use crate::rules::{self, Header, JoinRuling, Roster};

/// A planned change and the header it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Where the store must still be: the view's version, epoch and leader
    /// ([`rules::still_current`]).
    pub after: Header,
    pub change: Change,
}

/// The plan of `member` joining a session whose current state is `view`, joined at `now_ms` (or
/// just after the latest member, so that join order is election order).
///
/// `None` where the store's own logic is needed: a view without members (the session starts, or
/// this instance has not read it yet), without a live leader, ended, at `max_members`, or that
/// already has the member.
pub fn join(view: &SessionView, member: &Member, now_ms: i64, max_members: usize) -> Option<Plan> {
    Planner::new(view, max_members).join(member, now_ms)
}

/// The plan of `connection` leaving a session whose current state is `view`: when it led, the
/// earliest remaining member (or nobody) leads, with the next epoch.
///
/// `None` where the store's own logic is needed: not a member of the view, or no live leader.
pub fn leave(view: &SessionView, connection: &ConnectionId, reason: LeaveReason) -> Option<Plan> {
    Planner::new(view, usize::MAX).leave(connection, reason)
}

/// Plans several joins and leaves in a row, each from the state the ones before it leave, so that
/// a batch of them can be written in one store call. The view is not copied: the planner keeps
/// only what its plans changed, and the rules read it through [`Roster`].
pub struct Planner<'a> {
    view: &'a SessionView,
    max_members: usize,
    /// The header after the plans so far.
    header: Header,
    /// Members joined by the plans so far, in join order (after every member of the view).
    joined: Vec<Member>,
    /// Members (of the view or of `joined`) that the plans so far removed.
    left: Vec<ConnectionId>,
}

impl<'a> Planner<'a> {
    pub fn new(view: &'a SessionView, max_members: usize) -> Planner<'a> {
        Planner {
            view,
            max_members,
            header: Header::of(view),
            joined: Vec::new(),
            left: Vec::new(),
        }
    }

    /// The plan of `member` joining after the plans so far; see [`join`].
    pub fn join(&mut self, member: &Member, now_ms: i64) -> Option<Plan> {
        if self.header.leader.is_none() || self.left.contains(&member.connection) {
            return None;
        }
        let change = match rules::join(self, member, now_ms, self.max_members) {
            Ok(JoinRuling::Joins(change)) => change,
            Ok(JoinRuling::AlreadyMember { .. }) | Err(_) => return None,
        };
        let [Event::MemberJoined { member: stamped }] = change.events.as_slice() else {
            // An election: the view has no live leader, which the store may know better.
            return None;
        };
        self.joined.push(stamped.clone());
        Some(self.advance(change))
    }

    /// The plan of `connection` leaving after the plans so far; see [`leave`].
    pub fn leave(&mut self, connection: &ConnectionId, reason: LeaveReason) -> Option<Plan> {
        let leader = self.header.leader.clone()?;
        let change = rules::leave(self, connection, reason)?;
        let elected = change
            .events
            .iter()
            .any(|e| matches!(e, Event::LeaderChanged { .. }));
        if elected && leader != *connection {
            // The leader is no member of the view, which the store may know better.
            return None;
        }
        self.left.push(connection.clone());
        Some(self.advance(change))
    }

    /// The members after the plans so far, in election order.
    fn present(&self) -> impl Iterator<Item = &Member> {
        self.view
            .members
            .iter()
            .chain(&self.joined)
            .filter(|m| !self.left.contains(&m.connection))
    }

    fn advance(&mut self, change: Change) -> Plan {
        let after = std::mem::replace(
            &mut self.header,
            Header {
                version: change.version,
                epoch: change.epoch,
                leader: change.leader.clone(),
            },
        );
        Plan { after, change }
    }
}

impl Roster for Planner<'_> {
    fn header(&self) -> Header {
        self.header.clone()
    }

    fn ended(&self) -> bool {
        self.view.ended_at.is_some()
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.present()
    }

    /// `left` holds only members that were present.
    fn count(&self) -> usize {
        self.view.members.len() + self.joined.len() - self.left.len()
    }

    fn latest(&self) -> Option<&Member> {
        let joined = self.joined.iter().rev();
        joined
            .chain(self.view.members.iter().rev())
            .find(|m| !self.left.contains(&m.connection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::fixtures::{member, view};

    #[test]
    fn a_join_is_stamped_after_the_latest_member_and_keeps_the_leader() {
        let v = view(vec![member("a", 100, None), member("b", 200, Some("bob"))]);
        let plan = join(&v, &member("c", 0, None), 150, 10).expect("a plan");
        assert_eq!(plan.after.version, 7);
        assert_eq!(plan.after.epoch, 3);
        assert_eq!(plan.after.leader, Some(ConnectionId::new("a")));
        assert_eq!(plan.change.version, 8);
        assert_eq!(plan.change.leader, Some(ConnectionId::new("a")));
        assert_eq!(plan.change.epoch, 3);
        let [Event::MemberJoined { member: stamped }] = plan.change.events.as_slice() else {
            panic!("one member_joined: {:?}", plan.change.events);
        };
        assert_eq!(stamped.joined_at, 201, "strictly after the latest member");
        let later = join(&v, &member("c", 0, None), 5_000, 10).expect("a plan");
        let [Event::MemberJoined { member: stamped }] = later.change.events.as_slice() else {
            panic!("one member_joined");
        };
        assert_eq!(stamped.joined_at, 5_000, "the clock, when it is later");
    }

    #[test]
    fn joins_the_store_must_decide_get_no_plan() {
        let v = view(vec![member("a", 100, None)]);
        assert!(
            join(&view(vec![]), &member("c", 0, None), 1, 10).is_none(),
            "first member"
        );
        assert!(
            join(&v, &member("a", 0, None), 1, 10).is_none(),
            "already a member"
        );
        assert!(join(&v, &member("c", 0, None), 1, 1).is_none(), "full");
        let mut ended = v.clone();
        ended.ended_at = Some(5);
        assert!(
            join(&ended, &member("c", 0, None), 1, 10).is_none(),
            "ended"
        );
        let mut leaderless = v.clone();
        leaderless.leader = None;
        assert!(
            join(&leaderless, &member("c", 0, None), 1, 10).is_none(),
            "no leader"
        );
    }

    #[test]
    fn the_leaders_leave_hands_over_to_the_earliest_remaining_member() {
        let v = view(vec![member("a", 100, Some("al")), member("b", 200, None)]);
        let plan = leave(&v, &ConnectionId::new("a"), LeaveReason::Left).expect("a plan");
        assert_eq!(plan.change.version, 8);
        assert_eq!(plan.change.leader, Some(ConnectionId::new("b")));
        assert_eq!(plan.change.epoch, 4);
        assert_eq!(
            plan.change.events,
            vec![
                Event::MemberLeft {
                    connection: ConnectionId::new("a"),
                    user: Some("al".into()),
                    reason: LeaveReason::Left,
                    detail: None,
                },
                Event::LeaderChanged {
                    leader: Some(ConnectionId::new("b")),
                    epoch: 4,
                },
            ]
        );
    }

    #[test]
    fn other_leaves_keep_the_leader_and_the_last_leaves_nobody_leading() {
        let v = view(vec![member("a", 100, None), member("b", 200, None)]);
        let plan = leave(&v, &ConnectionId::new("b"), LeaveReason::Timeout).expect("a plan");
        assert_eq!(plan.change.leader, Some(ConnectionId::new("a")));
        assert_eq!(plan.change.epoch, 3);
        assert_eq!(plan.change.events.len(), 1);
        let alone = view(vec![member("a", 100, None)]);
        let plan = leave(&alone, &ConnectionId::new("a"), LeaveReason::Left).expect("a plan");
        assert_eq!(plan.change.leader, None);
        assert_eq!(plan.change.epoch, 4);
        assert!(matches!(
            plan.change.events.last(),
            Some(Event::LeaderChanged {
                leader: None,
                epoch: 4
            })
        ));
        assert!(
            leave(&v, &ConnectionId::new("z"), LeaveReason::Left).is_none(),
            "not a member"
        );
    }

    #[test]
    fn a_planner_plans_each_change_from_the_state_the_ones_before_leave() {
        let v = view(vec![member("a", 100, None), member("b", 200, Some("bob"))]);
        let mut planner = Planner::new(&v, 3);
        let c = planner.join(&member("c", 0, None), 150).expect("c joins");
        assert!(
            planner.join(&member("d", 0, None), 150).is_none(),
            "full at 3"
        );
        let gone = planner
            .leave(&ConnectionId::new("a"), LeaveReason::Left)
            .expect("a leaves");
        let d = planner
            .join(&member("d", 0, None), 150)
            .expect("room again");
        let brief = planner
            .leave(&ConnectionId::new("d"), LeaveReason::Left)
            .expect("d leaves");
        assert!(
            planner.join(&member("d", 0, None), 150).is_none(),
            "a connection that left in the batch does not come back in it"
        );
        assert!(
            planner
                .leave(&ConnectionId::new("a"), LeaveReason::Left)
                .is_none(),
            "gone already"
        );
        let plans = [&c, &gone, &d, &brief];
        for pair in plans.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            assert_eq!(after.after.version, before.change.version, "plans chain");
            assert_eq!(after.after.epoch, before.change.epoch);
            assert_eq!(after.after.leader, before.change.leader);
        }
        assert_eq!(c.after, Header::of(&v));
        assert_eq!(c.change.version, 8);
        assert_eq!(brief.change.version, 11);
        assert_eq!(
            gone.change.leader,
            Some(ConnectionId::new("b")),
            "earliest remaining"
        );
        assert_eq!(gone.change.epoch, 4);
        let stamp = |p: &Plan| match p.change.events.as_slice() {
            [Event::MemberJoined { member }] => member.joined_at,
            other => panic!("a join: {other:?}"),
        };
        assert_eq!(stamp(&c), 201, "after b");
        assert_eq!(stamp(&d), 202, "after c, the latest remaining");
        let mut end = v.clone();
        for p in plans {
            end.apply(&p.change);
        }
        let left: Vec<&str> = end.members.iter().map(|m| m.connection.as_str()).collect();
        assert_eq!(left, ["b", "c"]);
    }
}
