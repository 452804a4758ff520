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

/// A planned change and the header it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Where the store must still be: the view's version, epoch and leader.
    pub after: Basis,
    pub change: Change,
}

/// The header a plan was made from. Versions alone identify a state only within one history:
/// after the store lost a session, a re-assertion starts a new one, whose version may meet a
/// lagging view's. Epoch and leader are checked too, as they are what a plan publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Basis {
    pub version: u64,
    pub epoch: u64,
    pub leader: Option<ConnectionId>,
}

impl Basis {
    fn of(view: &SessionView) -> Basis {
        Basis {
            version: view.version,
            epoch: view.epoch,
            leader: view.leader.clone(),
        }
    }
}

/// The plan of `member` joining a session whose current state is `view`, joined at `now_ms` (or
/// just after the latest member, so that join order stays election order).
///
/// `None` where the store's own logic is needed: a view without members (the session starts, or
/// this instance has not read it yet), without a leader, ended, at `max_members`, or that already
/// has the member.
pub fn join(view: &SessionView, member: &Member, now_ms: i64, max_members: usize) -> Option<Plan> {
    let latest = view.members.last()?;
    if view.ended_at.is_some()
        || view.leader.is_none()
        || view.members.len() >= max_members
        || view.member(&member.connection).is_some()
    {
        return None;
    }
    let mut stamped = member.clone();
    stamped.joined_at = now_ms.max(latest.joined_at + 1);
    Some(Plan {
        after: Basis::of(view),
        change: Change {
            version: view.version + 1,
            leader: view.leader.clone(),
            epoch: view.epoch,
            events: vec![Event::MemberJoined { member: stamped }],
        },
    })
}

/// The plan of `connection` leaving a session whose current state is `view`: when it led, the
/// earliest remaining member (or nobody) leads, with the next epoch.
///
/// `None` where the store's own logic is needed: not a member of the view, or no leader.
pub fn leave(view: &SessionView, connection: &ConnectionId, reason: LeaveReason) -> Option<Plan> {
    let leaving = view.member(connection)?;
    let leader = view.leader.as_ref()?;
    let mut events = vec![Event::MemberLeft {
        connection: connection.clone(),
        user: leaving.user.clone(),
        reason,
    }];
    let (leader, epoch) = if leader == connection {
        let next = view
            .members
            .iter()
            .find(|m| &m.connection != connection)
            .map(|m| m.connection.clone());
        let epoch = view.epoch + 1;
        events.push(Event::LeaderChanged {
            leader: next.clone(),
            epoch,
        });
        (next, epoch)
    } else {
        (Some(leader.clone()), view.epoch)
    };
    Some(Plan {
        after: Basis::of(view),
        change: Change {
            version: view.version + 1,
            leader,
            epoch,
            events,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Incarnation;

    fn member(connection: &str, joined_at: i64, user: Option<&str>) -> Member {
        Member {
            connection: ConnectionId::new(connection),
            user: user.map(str::to_owned),
            name: connection.to_uppercase(),
            avatar: None,
            joined_at,
            instance: Incarnation::new("i#1"),
        }
    }

    fn view(members: Vec<Member>) -> SessionView {
        SessionView {
            version: 7,
            leader: members.first().map(|m| m.connection.clone()),
            epoch: 3,
            members,
            ended_at: None,
        }
    }

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
}
