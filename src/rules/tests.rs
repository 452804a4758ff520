//! The rules, each on its own.

use super::fixtures::{member, view};
use super::*;
use crate::ids::Incarnation;
use crate::model::{Counts, Grace, MemberState};

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
                detail: None,
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
    let change = remove(&v, |m| m.connection != "c", LeaveReason::InstanceLost).expect("a change");
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
    assert_eq!(
        change.events[0],
        Event::SessionEnded {
            by: Some("a".into())
        }
    );
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
            users: 2,
            reconnecting: 0,
        }
    );
    let change = leave(&v, "a", LeaveReason::Left).expect("a change");
    counts.apply(&change);
    assert_eq!(
        counts.counts(),
        Counts {
            connections: 2,
            users: 2,
            reconnecting: 0,
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

#[test]
fn a_resume_keeps_the_member_and_moves_only_its_instance() {
    let v = view(vec![member("a", 100, Some("al")), member("b", 200, None)]);
    let here = Incarnation::new("i#1");
    assert_eq!(
        resume(&v, "a", Some("al"), &here),
        ResumeRuling::Resumed {
            change: None,
            version: 7
        },
        "already held here: nothing changes"
    );
    let there = Incarnation::new("i#2");
    let ResumeRuling::Resumed {
        change: Some(change),
        version: 8,
    } = resume(&v, "a", Some("al"), &there)
    else {
        panic!("a move");
    };
    let mut moved = member("a", 100, Some("al"));
    moved.instance = there.clone();
    assert_eq!(change.events, vec![Event::MemberUpdated { member: moved }]);
    assert_eq!(
        (change.leader.as_deref(), change.epoch),
        (Some("a"), 3),
        "the leadership and epoch stay"
    );
    assert_eq!(
        resume(&v, "a", Some("eve"), &there),
        ResumeRuling::OtherUser
    );
    assert_eq!(resume(&v, "a", None, &there), ResumeRuling::OtherUser);
    assert!(
        matches!(
            resume(&v, "b", Some("anyone"), &there),
            ResumeRuling::Resumed { .. }
        ),
        "an anonymous member is resumed by its token alone"
    );
    assert_eq!(resume(&v, "z", None, &there), ResumeRuling::Gone);
}

fn reconnecting(connection: &str, joined_at: i64, until: i64) -> Member {
    let mut m = member(connection, joined_at, None);
    m.state = MemberState::Reconnecting;
    m.grace = Some(Grace {
        reason: LeaveReason::Timeout,
        until,
    });
    m
}

#[test]
fn a_lost_socket_makes_its_member_reconnecting_and_a_reconnecting_leader_keeps_the_lead() {
    let v = view(vec![member("a", 100, None), member("b", 200, Some("bo"))]);
    let change = suspend(
        &v,
        |m| m.connection == "a",
        LeaveReason::Disconnected,
        5_000,
    )
    .expect("a change");
    assert_eq!(
        change.events,
        vec![Event::MemberUpdated {
            member: {
                let mut a = member("a", 100, None);
                a.state = MemberState::Reconnecting;
                a.grace = Some(Grace {
                    reason: LeaveReason::Disconnected,
                    until: 5_000,
                });
                a
            }
        }]
    );
    assert_eq!((change.leader.as_deref(), change.epoch), (Some("a"), 3));
    let mut after = v.clone();
    after.apply(&change);
    assert_eq!(
        after.counts(),
        Counts {
            connections: 1,
            users: 1,
            reconnecting: 1
        }
    );
    assert!(
        suspend(&after, |m| m.connection == "a", LeaveReason::Timeout, 9_000).is_none(),
        "already reconnecting: its first grace stands"
    );
    // A newcomer does not displace the reconnecting leader.
    let joined = joins(join(&after, &member("c", 0, None), 300, 10));
    assert_eq!(joined.leader.as_deref(), Some("a"));
}

#[test]
fn leadership_moves_to_the_earliest_present_member_before_any_reconnecting_one() {
    let v = view(vec![
        member("a", 100, None),
        reconnecting("b", 200, 1_000),
        member("c", 300, None),
    ]);
    let change = leave(&v, "a", LeaveReason::Left).expect("a leaves");
    assert_eq!(change.leader.as_deref(), Some("c"), "b is reconnecting");
    let only_reconnecting = view(vec![member("a", 100, None), reconnecting("b", 200, 1_000)]);
    let change = leave(&only_reconnecting, "a", LeaveReason::Left).expect("a leaves");
    assert_eq!(
        change.leader.as_deref(),
        Some("b"),
        "a reconnecting member leads when nobody is present"
    );
}

#[test]
fn a_grace_that_ran_out_removes_the_member_with_its_reason_and_hands_over() {
    let mut v = view(vec![
        reconnecting("a", 100, 1_000),
        reconnecting("b", 200, 2_000),
        member("c", 300, None),
    ]);
    v.leader = Some(ConnectionId::new("a"));
    assert!(expire(&v, 999).is_none(), "nobody's grace ran out yet");
    let change = expire(&v, 1_000).expect("a's grace ran out");
    assert_eq!(
        change.events,
        vec![
            Event::MemberLeft {
                connection: ConnectionId::new("a"),
                user: None,
                reason: LeaveReason::Timeout,
                detail: None,
            },
            leader(Some("c"), 4),
        ]
    );
    let mut after = v.clone();
    after.apply(&change);
    let change = expire(&after, 5_000).expect("b's too");
    assert_eq!(change.events.len(), 1, "c keeps the lead: {change:?}");
}

#[test]
fn resuming_a_reconnecting_member_makes_it_present_again_even_on_the_same_instance() {
    let mut v = view(vec![reconnecting("a", 100, 1_000), member("b", 200, None)]);
    v.leader = Some(ConnectionId::new("a"));
    let here = Incarnation::new("i#1");
    let ResumeRuling::Resumed {
        change: Some(change),
        ..
    } = resume(&v, "a", None, &here)
    else {
        panic!("a change");
    };
    assert_eq!(
        change.events,
        vec![Event::MemberUpdated {
            member: member("a", 100, None)
        }]
    );
    assert_eq!(change.leader.as_deref(), Some("a"), "still leads");
}

#[test]
fn a_reasserted_member_that_others_marked_reconnecting_is_present_again() {
    let mut v = view(vec![reconnecting("a", 100, 1_000), member("b", 200, None)]);
    v.leader = Some(ConnectionId::new("b"));
    let floor = Header::of(&v);
    let (_, change) = reassert(&v, &[member("a", 100, None)], &floor);
    let change = change.expect("a is back");
    assert_eq!(
        change.events,
        vec![
            Event::MemberUpdated {
                member: member("a", 100, None)
            },
            leader(Some("a"), 4),
        ]
    );
}

#[test]
fn the_backend_ends_a_live_session_as_a_leader_would_with_by_null() {
    let v = view(vec![member("a", 100, None), member("b", 200, Some("bo"))]);
    let change = close(&v).expect("a live session");
    assert_eq!(change.events[0], Event::SessionEnded { by: None });
    let leader_end = end(&v, "a", 3).expect("the leader ends it");
    assert_eq!(
        change.events[1..],
        leader_end.events[1..],
        "the same leaves and hand-off"
    );
    assert_eq!((change.version, change.epoch), (8, 4));
    let mut ended = v.clone();
    ended.ended_at = Some(1);
    assert_eq!(close(&ended), None, "ended: not live");
    assert_eq!(close(&view(vec![])), None, "no member: not live");
}

#[test]
fn a_kick_removes_a_connection_or_every_connection_of_a_user_and_hands_over_in_the_same_change() {
    let v = view(vec![
        member("a", 100, Some("al")),
        member("b", 200, Some("bo")),
        reconnecting("c", 300, 5_000),
        member("d", 400, Some("al")),
    ]);
    let one = kick(&v, KickTarget::Connection("b"), None).expect("b is a member");
    assert_eq!(
        one.events,
        vec![Event::MemberLeft {
            connection: ConnectionId::new("b"),
            user: Some("bo".into()),
            reason: LeaveReason::Kicked,
            detail: None,
        }],
        "the leader stays"
    );
    let user = kick(&v, KickTarget::User("al"), Some("spam")).expect("al has two connections");
    let left: Vec<_> = user
        .events
        .iter()
        .filter_map(|e| match e {
            Event::MemberLeft {
                connection,
                reason: LeaveReason::Kicked,
                detail: Some(detail),
                ..
            } if detail == "spam" => Some(connection.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(left, ["a", "d"], "each with the reason, in election order");
    assert_eq!(
        user.events.last(),
        Some(&leader(Some("b"), 4)),
        "the leader was kicked: the next present member leads, in the same change"
    );
    assert_eq!(user.version, 8);
    let reconnecting_one = kick(&v, KickTarget::Connection("c"), None);
    assert!(
        reconnecting_one.is_some(),
        "a reconnecting member is kicked too"
    );
    assert_eq!(kick(&v, KickTarget::Connection("z"), None), None);
    assert_eq!(kick(&v, KickTarget::User("nobody"), None), None);
}
