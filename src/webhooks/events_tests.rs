use serde_json::{Value, json};

use super::*;
use crate::ids::Incarnation;
use crate::model::MemberState;

fn member(connection: &str) -> Member {
    Member {
        connection: connection.into(),
        user: Some(format!("user-{connection}")),
        name: connection.to_owned(),
        avatar: None,
        joined_at: 1_000,
        instance: Incarnation::new("i#1"),
        state: MemberState::Present,
        grace: None,
    }
}

fn joined(c: &str) -> Event {
    Event::MemberJoined { member: member(c) }
}

fn left(c: &str, reason: LeaveReason) -> Event {
    Event::MemberLeft {
        connection: c.into(),
        user: Some(format!("user-{c}")),
        reason,
        detail: None,
    }
}

fn leader(c: Option<&str>, epoch: u64) -> Event {
    Event::LeaderChanged {
        leader: c.map(Into::into),
        epoch,
    }
}

fn change(version: u64, events: Vec<Event>) -> Change {
    Change {
        version,
        leader: None,
        epoch: 0,
        events,
    }
}

/// 2024-05-01T12:00:00.250Z
const AT: i64 = 1_714_564_800_250;

fn entry(members: u64, changes: Vec<Change>) -> OutboxEntry {
    OutboxEntry {
        at: AT,
        members,
        changes,
    }
}

fn json_of(events: &[WebhookEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::to_value(e).expect("an event serializes"))
        .collect()
}

fn types(events: &[WebhookEvent]) -> Vec<String> {
    json_of(events)
        .iter()
        .map(|e| e["type"].as_str().expect("a type").to_owned())
        .collect()
}

#[test]
fn the_first_join_starts_the_session_before_its_own_events() {
    let e = entry(1, vec![change(1, vec![joined("a"), leader(Some("a"), 1)])]);
    let events = events_of("room", &e);
    assert_eq!(
        types(&events),
        ["session_started", "member_joined", "leader_changed"]
    );
    let body = json_of(&events);
    assert_eq!(
        body[0],
        json!({"id": "room:1:0:1714564800250", "type": "session_started", "session": "room",
               "version": 1, "at": "2024-05-01T12:00:00.250Z"})
    );
    assert_eq!(body[1]["id"], "room:1:1:1714564800250");
    assert_eq!(body[1]["member"]["connection"], "a");
    assert_eq!(body[1]["member"]["user"], "user-a");
    assert_eq!(body[1]["member"]["joined_at"], 1_000);
    assert_eq!(body[2]["leader"], "a");
    assert_eq!(body[2]["epoch"], 1);
    assert_eq!(body[2]["version"], 1);
}

#[test]
fn the_last_leave_vacates_the_session_after_its_own_events() {
    let e = entry(
        0,
        vec![change(
            7,
            vec![left("a", LeaveReason::InstanceLost), leader(None, 4)],
        )],
    );
    let events = events_of("room", &e);
    assert_eq!(
        types(&events),
        ["member_left", "leader_changed", "session_vacated"]
    );
    let body = json_of(&events);
    assert_eq!(body[0]["connection"], "a");
    assert_eq!(body[0]["reason"], "instance_lost");
    assert!(body[0].get("user").is_none(), "as the WebSocket event");
    assert_eq!(body[1]["leader"], Value::Null);
    assert_eq!(body[2]["id"], "room:7:2:1714564800250");
    assert_eq!(body[2]["version"], 7);
}

#[test]
fn counts_are_walked_back_through_several_changes_of_one_entry() {
    // 0 -> 1 (start) -> 2 -> 1 -> 0 (vacated) -> 1 (started again), ending with one member.
    let e = entry(
        1,
        vec![
            change(1, vec![joined("a")]),
            change(2, vec![joined("b")]),
            change(3, vec![left("a", LeaveReason::Left)]),
            change(4, vec![left("b", LeaveReason::Timeout)]),
            change(5, vec![joined("c")]),
        ],
    );
    let events = events_of("s", &e);
    assert_eq!(
        types(&events),
        [
            "session_started",
            "member_joined",
            "member_joined",
            "member_left",
            "member_left",
            "session_vacated",
            "session_started",
            "member_joined",
        ]
    );
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 1, 2, 3, 4, 4, 5, 5]);
    assert_eq!(count_of(&e), events.len());
}

#[test]
fn a_change_in_a_busy_session_neither_starts_nor_vacates_it() {
    let e = entry(
        3,
        vec![change(
            9,
            vec![
                Event::MemberUpdated {
                    member: member("b"),
                },
                joined("d"),
            ],
        )],
    );
    let events = events_of("s", &e);
    assert_eq!(types(&events), ["member_updated", "member_joined"]);
    assert_eq!(json_of(&events)[0]["member"]["name"], "b");
}

#[test]
fn an_ended_session_says_who_ended_it_then_everyone_leaves_then_it_is_vacated() {
    let e = entry(
        0,
        vec![change(
            12,
            vec![
                Event::SessionEnded {
                    by: Some("a".into()),
                },
                left("a", LeaveReason::Ended),
                left("b", LeaveReason::Ended),
                leader(None, 3),
            ],
        )],
    );
    let events = events_of("s", &e);
    assert_eq!(
        types(&events),
        [
            "session_ended",
            "member_left",
            "member_left",
            "leader_changed",
            "session_vacated"
        ]
    );
    let body = json_of(&events);
    assert_eq!(body[0]["by"], "a");
    assert_eq!(body[1]["reason"], "ended");
    assert_eq!(body[4]["version"], 12);
}

#[test]
fn a_session_ended_by_the_server_has_a_null_by() {
    let e = entry(
        0,
        vec![change(
            4,
            vec![
                Event::SessionEnded { by: None },
                left("a", LeaveReason::Ended),
                leader(None, 2),
            ],
        )],
    );
    let body = json_of(&events_of("s", &e));
    assert_eq!(body[0]["type"], "session_ended");
    assert_eq!(body[0]["by"], Value::Null);
    assert!(body[0].as_object().expect("an object").contains_key("by"));
}

#[test]
fn a_kicked_member_leaves_with_reason_kicked_and_without_the_kick_text() {
    let e = entry(
        1,
        vec![change(
            6,
            vec![Event::MemberLeft {
                connection: "b".into(),
                user: None,
                reason: LeaveReason::Kicked,
                detail: Some("spam".into()),
            }],
        )],
    );
    let body = json_of(&events_of("s", &e));
    assert_eq!(body[0]["reason"], "kicked");
    assert!(body[0].get("detail").is_none(), "as members see it");
}

#[test]
fn ids_are_the_same_on_redelivery_and_unique_otherwise() {
    let e = entry(
        2,
        vec![
            change(1, vec![joined("a"), leader(Some("a"), 1)]),
            change(2, vec![joined("b")]),
        ],
    );
    let first = events_of("s", &e);
    assert_eq!(first, events_of("s", &e), "a pure function of the entry");
    let mut ids: Vec<&str> = first.iter().map(|e| e.id.as_str()).collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "unique within an entry");
    // The same versions written again after the store lost its data: a new time, new ids.
    let again = OutboxEntry { at: AT + 1, ..e };
    for (old, new) in first.iter().zip(events_of("s", &again)) {
        assert_ne!(old.id, new.id);
    }
    // Sessions whose ids hold colons do not collide.
    let a = events_of("x:1", &entry(1, vec![change(2, vec![joined("a")])]));
    let b = events_of("x", &entry(1, vec![change(1, vec![joined("a")])]));
    assert!(a.iter().all(|e| b.iter().all(|f| e.id != f.id)));
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(AT), "2024-05-01T12:00:00.250Z");
    let e = events_of("s", &entry(1, vec![change(1, vec![joined("a")])]));
    assert_eq!(e[0].at_ms, AT);
    assert!(
        serde_json::to_value(&e[0])
            .expect("json")
            .get("at_ms")
            .is_none()
    );
}

#[test]
fn an_entry_without_events_has_none() {
    let e = entry(2, vec![change(3, vec![])]);
    assert!(events_of("s", &e).is_empty());
    assert_eq!(count_of(&e), 0);
}
