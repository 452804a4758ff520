//! The WebSocket contract of docs/protocol.md §1 on one instance, over a real client against a server on a
//! free port: every request, every event, every error code that one instance can produce.

use std::time::Duration;

use crate::support::server::{TestServer, WAIT, test_args};
use crate::support::ws::{SessionModel, WsClient, is_member_left, member_ids};
use rollcall::store::memory::MemoryBackend;
use serde_json::{Value, json};

async fn client(server: &TestServer) -> WsClient {
    WsClient::connect(&server.ws_url()).await
}

/// A short pause so that consecutive joins get distinct `joined_at` milliseconds.
async fn next_millisecond() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

#[actix_rt::test]
async fn welcome_is_the_first_frame_and_names_connection_instance_protocol_and_heartbeat() {
    let mut args = test_args();
    args.client_ping_ms = 1234;
    let name = args
        .instance_name
        .clone()
        .expect("test args name the instance");
    let server = TestServer::start(args).await;
    let a = client(&server).await;
    let b = client(&server).await;
    for c in [&a, &b] {
        let w = &c.welcome;
        let id = uuid::Uuid::parse_str(w["connection"].as_str().expect("connection"))
            .expect("the connection id is a UUID");
        assert_eq!(id.get_version_num(), 4, "connection ids are UUID v4: {w}");
        assert_eq!(w["user"], Value::Null, "no token: anonymous: {w}");
        assert_eq!(w["instance"], name.as_str(), "{w}");
        assert_eq!(w["protocol"], 1, "{w}");
        assert_eq!(w["heartbeat_ms"], 1234, "{w}");
    }
    assert_ne!(
        a.connection, b.connection,
        "every connection gets its own id"
    );
}

#[actix_rt::test]
async fn ping_is_answered_with_pong_echoing_integer_and_string_ids() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let pong = a.request_ok(json!({"type": "ping"}), "pong").await;
    assert!(pong["id"].is_u64(), "{pong}");

    let long_id = "x".repeat(64);
    a.send_json(&json!({"type": "ping", "id": long_id}));
    let pong = a
        .expect("pong with the string id", |f| f["type"] == "pong")
        .await;
    assert_eq!(pong["id"], long_id.as_str());

    a.send_json(&json!({"type": "ping"}));
    let pong = a.expect("pong without id", |f| f["type"] == "pong").await;
    assert!(pong.get("id").is_none(), "no id asked, none echoed: {pong}");

    // Requests on one connection are answered in order.
    for i in 0..20 {
        a.send_json(&json!({"type": "ping", "id": i}));
    }
    for i in 0..20 {
        let frame = a.next_frame(WAIT).await;
        assert_eq!(
            (frame["type"].as_str(), frame["id"].as_i64()),
            (Some("pong"), Some(i))
        );
    }
}

#[actix_rt::test]
async fn join_replies_with_the_view_and_the_others_get_member_joined() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;

    let ja = a.join("room").await;
    assert_eq!(ja["session"], "room");
    assert_eq!(ja["you"], a.connection.as_str());
    assert_eq!(ja["version"], 1, "{ja}");
    assert_eq!(
        ja["leader"],
        a.connection.as_str(),
        "the first member leads: {ja}"
    );
    assert_eq!(ja["epoch"], 1, "{ja}");
    assert_eq!(
        ja["counts"],
        json!({"connections": 1, "users": 1, "reconnecting": 0})
    );
    let me = &ja["members"][0];
    assert_eq!(me["connection"], a.connection.as_str());
    assert_eq!(me["user"], Value::Null);
    assert_eq!(me["name"], "Guest", "anonymous default name: {me}");
    assert_eq!(me["avatar"], Value::Null);
    let joined_at = me["joined_at"].as_i64().expect("joined_at in ms");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (now - joined_at).abs() < 60_000,
        "joined_at is ms since the epoch: {joined_at}"
    );

    next_millisecond().await;
    let avatar = "https://example.com/bob.png";
    let jb = b
        .request_ok(
            json!({"type": "join", "session": "room", "name": "Bob", "avatar": avatar}),
            "joined",
        )
        .await;
    assert_eq!(jb["version"], 2);
    assert_eq!(
        jb["leader"],
        a.connection.as_str(),
        "a newcomer never displaces the leader"
    );
    assert_eq!(jb["epoch"], 1);
    assert_eq!(
        jb["counts"],
        json!({"connections": 2, "users": 2, "reconnecting": 0})
    );
    assert_eq!(member_ids(&jb), {
        let mut ids = vec![a.connection.clone(), b.connection.clone()];
        ids.sort();
        ids
    });
    assert_eq!(
        jb["members"][0]["connection"],
        a.connection.as_str(),
        "members in join order"
    );

    let event = a.expect_event("member_joined", "room").await;
    assert_eq!(event["version"], 2);
    assert_eq!(event["member"]["connection"], b.connection.as_str());
    assert_eq!(event["member"]["name"], "Bob");
    assert_eq!(event["member"]["avatar"], avatar);
    assert_eq!(
        event["member"], jb["members"][1],
        "the event carries the member as stored"
    );

    // Fence: a third member's join reaches A after anything B's join could have caused.
    let mut c = client(&server).await;
    c.join("room").await;
    let fence = a.expect_event("member_joined", "room").await;
    assert_eq!(fence["version"], 3);
    assert!(
        a.pending_of("leader_changed").is_empty(),
        "no leadership change on join"
    );
    assert!(
        b.log()
            .iter()
            .all(|f| f["type"] != "member_joined"
                || f["member"]["connection"] != b.connection.as_str()),
        "a joiner gets no member_joined for itself"
    );
}

#[actix_rt::test]
async fn leave_replies_left_and_the_others_get_member_left_with_reason_left() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    a.join("room").await;
    b.join("room").await;

    let left = b.leave("room").await;
    assert_eq!(left["session"], "room");
    let event = a
        .expect("member_left of B", |f| {
            is_member_left(f, "room", &b.connection)
        })
        .await;
    assert_eq!(event["reason"], "left");
    assert_eq!(event["version"], 3);

    // Once left, the session's requests need membership again.
    b.request_err(json!({"type": "members", "session": "room"}), "not_member")
        .await;
    b.request_err(json!({"type": "leave", "session": "room"}), "not_member")
        .await;
    let view = a.members("room").await;
    assert_eq!(member_ids(&view), vec![a.connection.clone()]);
    assert_eq!(
        view["counts"],
        json!({"connections": 1, "users": 1, "reconnecting": 0})
    );
}

#[actix_rt::test]
async fn a_closed_or_dropped_socket_ends_its_memberships_with_reason_disconnected() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut closer = client(&server).await;
    let mut dropper = client(&server).await;
    a.join("room").await;
    closer.join("room").await;
    dropper.join("room").await;
    closer.join("other").await;

    closer.close();
    let event = a
        .expect("member_left of the closer", |f| {
            is_member_left(f, "room", &closer.connection)
        })
        .await;
    assert_eq!(event["reason"], "disconnected", "{event}");
    assert_eq!(
        closer.closed_with(WAIT).await.map(|c| c.0),
        Some(1000),
        "the close handshake completes"
    );

    dropper.abort();
    let event = a
        .expect("member_left of the dropper", |f| {
            is_member_left(f, "room", &dropper.connection)
        })
        .await;
    assert_eq!(event["reason"], "disconnected", "{event}");

    let view = a.members("room").await;
    assert_eq!(member_ids(&view), vec![a.connection.clone()]);
    let (status, _) = server.http_get("/api/sessions/other").await;
    assert_eq!(
        status, 404,
        "the closer's other session is empty and unknown now"
    );
}

#[actix_rt::test]
async fn leadership_passes_to_the_earliest_joined_live_member() {
    let server = TestServer::start_default().await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut c = client(&server).await;
        c.join("lead").await;
        clients.push(c);
        next_millisecond().await;
    }
    let mut watcher = clients.pop().expect("five clients"); // E, the last to join, watches
    let view = clients[0].members("lead").await;
    let joined_at: Vec<i64> = view["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["joined_at"].as_i64().expect("joined_at"))
        .collect();
    assert!(
        joined_at.windows(2).all(|w| w[0] < w[1]),
        "distinct join times in order: {joined_at:?}"
    );
    let ids: Vec<String> = clients.iter().map(|c| c.connection.clone()).collect();
    assert_eq!(view["leader"], ids[0].as_str());
    assert_eq!(view["epoch"], 1);

    // The leader leaves: the next earliest (B) leads, in the same change as the departure.
    clients[0].leave("lead").await;
    let gone = watcher
        .expect("A leaves", |f| is_member_left(f, "lead", &ids[0]))
        .await;
    let moved = watcher.expect_event("leader_changed", "lead").await;
    assert_eq!(
        moved["leader"],
        ids[1].as_str(),
        "earliest joined_at wins: {moved}"
    );
    assert_eq!(moved["epoch"], 2);
    assert_eq!(
        moved["version"], gone["version"],
        "one atomic change, one version"
    );

    // A member who is not the leader leaves: no leadership change.
    clients[2].leave("lead").await;
    let gone_c = watcher
        .expect("C leaves", |f| is_member_left(f, "lead", &ids[2]))
        .await;

    // The leader disconnects: D, the earliest live member, leads.
    clients[1].abort();
    let gone_b = watcher
        .expect("B drops", |f| is_member_left(f, "lead", &ids[1]))
        .await;
    assert_eq!(gone_b["reason"], "disconnected");
    let moved = watcher.expect_event("leader_changed", "lead").await;
    assert_eq!(moved["leader"], ids[3].as_str(), "{moved}");
    assert_eq!(moved["epoch"], 3);
    assert_eq!(moved["version"], gone_b["version"]);
    assert_eq!(
        gone_b["version"].as_u64(),
        gone_c["version"].as_u64().map(|v| v + 1),
        "C's departure changed no leader and took exactly one version"
    );

    // Everyone still connected agrees, and a newcomer does not displace the leader.
    let mut newcomer = client(&server).await;
    let j = newcomer.join("lead").await;
    assert_eq!(j["leader"], ids[3].as_str());
    assert_eq!(j["epoch"], 3);
    let model = SessionModel::from_log(watcher.log(), "lead");
    let fence = watcher.expect_event("member_joined", "lead").await;
    assert_eq!(fence["version"], j["version"]);
    assert!(watcher.pending_of("leader_changed").is_empty());
    let mut model_now = model.clone();
    model_now.apply(&fence);
    assert_eq!(model_now.leader.as_deref(), Some(ids[3].as_str()));
    assert_eq!(
        model_now.ids(),
        member_ids(&j),
        "the watcher's event-built view equals the joiner's"
    );
}

#[actix_rt::test]
async fn joining_again_is_idempotent_no_events_no_leadership_change() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let first = a.join("same").await;
    b.join("same").await;
    let _ = a.expect_event("member_joined", "same").await;

    let again = a
        .request_ok(
            json!({"type": "join", "session": "same", "name": "Other"}),
            "joined",
        )
        .await;
    assert_eq!(again["version"], 2, "no new version: {again}");
    assert_eq!(again["leader"], first["leader"]);
    assert_eq!(again["epoch"], first["epoch"]);
    assert_eq!(
        again["counts"],
        json!({"connections": 2, "users": 2, "reconnecting": 0})
    );
    assert_eq!(
        again["members"][0]["name"], "Guest",
        "a re-join changes nothing"
    );

    // Fence: C's join is the very next version, and B saw nothing in between.
    let mut c = client(&server).await;
    let jc = c.join("same").await;
    assert_eq!(jc["version"], 3);
    let b_after_join: Vec<&Value> = b
        .log()
        .iter()
        .skip_while(|f| f["type"] != "joined")
        .skip(1)
        .collect();
    assert!(
        b_after_join.is_empty(),
        "B got events from an idempotent join: {b_after_join:?}"
    );
    let fence = b.expect_event("member_joined", "same").await;
    assert_eq!(fence["member"]["connection"], c.connection.as_str());
    assert_eq!(fence["version"], 3);
    assert!(b.pending_of("leader_changed").is_empty());
    assert!(b.pending_of("member_updated").is_empty());
}

#[actix_rt::test]
async fn profile_updates_every_session_the_connection_is_in() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let mut c = client(&server).await;
    a.join("p1").await;
    a.join("p2").await;
    b.join("p1").await;
    c.join("p2").await;

    let avatar = "https://example.com/ada.png";
    let reply = a
        .request_ok(
            json!({"type": "profile", "name": "Ada", "avatar": avatar}),
            "profile_updated",
        )
        .await;
    assert!(reply["id"].is_u64());
    for (watcher, session) in [(&mut b, "p1"), (&mut c, "p2")] {
        let ev = watcher
            .expect("A's member_updated", |f| {
                f["type"] == "member_updated"
                    && f["session"] == session
                    && f["member"]["connection"] == a.connection.as_str()
            })
            .await;
        assert_eq!(ev["member"]["name"], "Ada");
        assert_eq!(ev["member"]["avatar"], avatar);
        assert_eq!(ev["version"], 3, "{ev}");
    }
    // The updater confirms the change in each of its sessions.
    for session in ["p1", "p2"] {
        let own = a
            .expect("own member_updated", |f| {
                f["type"] == "member_updated" && f["session"] == session
            })
            .await;
        assert_eq!(own["member"]["name"], "Ada");
    }

    // null clears the avatar; an absent avatar keeps it.
    a.request_ok(
        json!({"type": "profile", "avatar": null}),
        "profile_updated",
    )
    .await;
    let ev = b.expect_event("member_updated", "p1").await;
    assert_eq!(
        (ev["member"]["name"].as_str(), &ev["member"]["avatar"]),
        (Some("Ada"), &Value::Null)
    );
    a.request_ok(
        json!({"type": "profile", "avatar": avatar}),
        "profile_updated",
    )
    .await;
    b.expect_event("member_updated", "p1").await;
    a.request_ok(
        json!({"type": "profile", "name": "Ada L."}),
        "profile_updated",
    )
    .await;
    let ev = b.expect_event("member_updated", "p1").await;
    assert_eq!(
        (
            ev["member"]["name"].as_str(),
            ev["member"]["avatar"].as_str()
        ),
        (Some("Ada L."), Some(avatar))
    );

    let view = b.members("p1").await;
    let a_member = view["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["connection"] == a.connection.as_str())
        .expect("A in p1")
        .clone();
    assert_eq!(a_member["name"], "Ada L.");
    let model = SessionModel::from_log(b.log(), "p1");
    assert_eq!(
        model.members.get(&a.connection),
        Some(&a_member),
        "B's event-built view matches"
    );

    // A profile set outside any session is used by the next join.
    let mut d = client(&server).await;
    d.request_ok(json!({"type": "profile", "name": "Dee"}), "profile_updated")
        .await;
    let j = d.join("p1").await;
    let dee = j["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["connection"] == d.connection.as_str())
        .expect("D in p1")
        .clone();
    assert_eq!(dee["name"], "Dee");
}

#[actix_rt::test]
async fn publish_reaches_the_other_members_and_not_the_sender() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let mut outsider = client(&server).await;
    a.join("pub").await;
    b.join("pub").await;

    let data = json!({"x": [1, 2, {"y": null}], "s": "é"});
    let reply = a
        .request_ok(
            json!({"type": "publish", "session": "pub", "data": data}),
            "published",
        )
        .await;
    assert_eq!(reply["session"], "pub");
    let msg = b.expect_event("message", "pub").await;
    assert_eq!(msg["from"], a.connection.as_str());
    assert_eq!(msg["user"], Value::Null);
    assert_eq!(msg["data"], data);

    // Fence: B's publish reaches A after anything A's own publish could have sent A.
    b.request_ok(
        json!({"type": "publish", "session": "pub", "data": 7}),
        "published",
    )
    .await;
    let back = a.expect_event("message", "pub").await;
    assert_eq!(
        (back["from"].as_str(), &back["data"]),
        (Some(b.connection.as_str()), &json!(7))
    );
    assert!(
        a.log()
            .iter()
            .all(|f| f["type"] != "message" || f["from"] != a.connection.as_str()),
        "the sender does not get its own message"
    );

    outsider
        .request_err(
            json!({"type": "publish", "session": "pub", "data": 1}),
            "not_member",
        )
        .await;
    let big = "x".repeat(16 * 1024);
    a.request_err(
        json!({"type": "publish", "session": "pub", "data": big}),
        "payload_too_large",
    )
    .await;
    let fits = "x".repeat(16 * 1024 - 2); // the serialized string adds two quotes
    a.request_ok(
        json!({"type": "publish", "session": "pub", "data": fits}),
        "published",
    )
    .await;
    let msg = b.expect_event("message", "pub").await;
    assert_eq!(msg["data"].as_str().map(str::len), Some(16 * 1024 - 2));
}

#[actix_rt::test]
async fn members_returns_the_authoritative_view_with_counts() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let mut c = client(&server).await;
    a.join("m").await;
    b.join("m").await;
    c.join("m").await;
    let view = b.members("m").await;
    assert_eq!(view["session"], "m");
    assert_eq!(view["version"], 3);
    assert_eq!(view["leader"], a.connection.as_str());
    assert_eq!(view["epoch"], 1);
    // Anonymous connections count one user each (users with tokens are tested in tests/actors.rs).
    assert_eq!(
        view["counts"],
        json!({"connections": 3, "users": 3, "reconnecting": 0})
    );
    let mut ids = vec![
        a.connection.clone(),
        b.connection.clone(),
        c.connection.clone(),
    ];
    ids.sort();
    assert_eq!(member_ids(&view), ids);
    // A's view, built from its events only, equals the server's.
    a.drain_ready();
    let _ = a
        .expect("member_joined of C", |f| {
            f["type"] == "member_joined" && f["member"]["connection"] == c.connection.as_str()
        })
        .await;
    let model = SessionModel::from_log(a.log(), "m");
    assert_eq!(model.ids(), ids);
    assert_eq!(model.version, 3);
    assert_eq!(model.leader.as_deref(), Some(a.connection.as_str()));
}

#[actix_rt::test]
async fn end_by_the_leader_removes_everyone_with_session_ended_and_reason_ended() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let mut c = client(&server).await;
    let ja = a.join("fin").await;
    b.join("fin").await;
    c.join("fin").await;
    let epoch = ja["epoch"].as_u64().expect("epoch");

    b.request_err(
        json!({"type": "end", "session": "fin", "epoch": epoch}),
        "not_leader",
    )
    .await;
    a.request_err(
        json!({"type": "end", "session": "fin", "epoch": epoch + 1}),
        "not_leader",
    )
    .await;
    let ended = a
        .request_ok(
            json!({"type": "end", "session": "fin", "epoch": epoch}),
            "ended",
        )
        .await;
    assert_eq!(ended["session"], "fin");

    let all = [
        a.connection.clone(),
        b.connection.clone(),
        c.connection.clone(),
    ];
    for watcher in [&mut b, &mut c] {
        let ev = watcher.expect_event("session_ended", "fin").await;
        assert_eq!(ev["by"], all[0].as_str());
        for member in &all {
            let left = watcher
                .expect("member_left(ended)", |f| is_member_left(f, "fin", member))
                .await;
            assert_eq!(left["reason"], "ended", "{left}");
            assert_eq!(left["version"], 4, "one change ends the session: {left}");
        }
        watcher
            .request_err(json!({"type": "members", "session": "fin"}), "not_member")
            .await;
        watcher
            .request_err(json!({"type": "join", "session": "fin"}), "session_ended")
            .await;
    }
    assert!(
        a.pending_of("session_ended").is_empty(),
        "the ender gets `ended`, not session_ended"
    );
    a.request_err(
        json!({"type": "end", "session": "fin", "epoch": epoch}),
        "not_member",
    )
    .await;
    let mut late = client(&server).await;
    late.request_err(json!({"type": "join", "session": "fin"}), "session_ended")
        .await;

    let (status, body) = server.http_get("/api/sessions/fin").await;
    assert_eq!(status, 200, "an ended session still has a record: {body}");
    assert_eq!(body["members"], json!([]));
    assert_eq!(body["leader"], Value::Null);
    assert!(
        body["ended_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "RFC 3339 UTC: {body}"
    );
}

#[actix_rt::test]
async fn end_with_a_stale_epoch_is_refused_after_leadership_moved() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let first = a.join("stale").await;
    b.join("stale").await;
    let old_epoch = first["epoch"].as_u64().expect("epoch");
    a.leave("stale").await;
    let moved = b.expect_event("leader_changed", "stale").await;
    let new_epoch = moved["epoch"].as_u64().expect("epoch");
    assert!(new_epoch > old_epoch);
    a.join("stale").await;
    // B is the leader, but with the epoch it saw before the hand-off it is fenced off.
    b.request_err(
        json!({"type": "end", "session": "stale", "epoch": old_epoch}),
        "not_leader",
    )
    .await;
    // A led at the old epoch and does not any more.
    a.request_err(
        json!({"type": "end", "session": "stale", "epoch": old_epoch}),
        "not_leader",
    )
    .await;
    let view = a.members("stale").await;
    assert_eq!(
        view["members"].as_array().map(Vec::len),
        Some(2),
        "nothing ended"
    );
    b.request_ok(
        json!({"type": "end", "session": "stale", "epoch": new_epoch}),
        "ended",
    )
    .await;
}

#[actix_rt::test]
async fn malformed_frames_get_bad_request_and_the_connection_stays_open() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    a.send_binary(vec![1, 2, 3]);
    let err = a
        .expect("error for a binary frame", |f| f["type"] == "error")
        .await;
    assert_eq!(err["code"], "bad_request");
    assert!(err.get("id").is_none(), "{err}");

    for text in [
        "not json",
        "[1,2]",
        "{}",
        "{\"type\":\"fly\"}",
        "{\"type\":\"join\"}",
        "{\"type\":\"join\",\"session\":5}",
        "{\"type\":\"end\",\"session\":\"s\",\"epoch\":-1}",
        "{\"type\":\"ping\",\"id\":1.5}",
        "{\"type\":\"ping\",\"id\":[1]}",
    ] {
        a.send_text(text);
        let err = a.expect("an error", |f| f["type"] == "error").await;
        assert_eq!(err["code"], "bad_request", "for {text}: {err}");
        assert!(!err["message"].as_str().unwrap_or_default().is_empty());
    }
    // An error to a frame with a usable id carries it.
    let err = a
        .request_err(json!({"type": "publish", "session": "s"}), "bad_request")
        .await;
    assert!(err["id"].is_u64());
    a.request_ok(json!({"type": "ping"}), "pong").await;
    assert!(!a.is_closed(), "error replies never close the connection");
}

#[actix_rt::test]
async fn invalid_session_ids_and_profiles_are_refused_without_touching_state() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let long = "a".repeat(129);
    for bad in ["", "a b", "a:b", "{s}", "é", long.as_str()] {
        for request in [
            json!({"type": "join", "session": bad}),
            json!({"type": "leave", "session": bad}),
            json!({"type": "members", "session": bad}),
            json!({"type": "publish", "session": bad, "data": 1}),
            json!({"type": "end", "session": bad, "epoch": 1}),
        ] {
            a.request_err(request, "invalid_session").await;
        }
    }
    a.join(&"b".repeat(128)).await;

    for request in [
        json!({"type": "join", "session": "ok", "name": ""}),
        json!({"type": "join", "session": "ok", "name": "x".repeat(65)}),
        json!({"type": "join", "session": "ok", "name": "a\nb"}),
        json!({"type": "join", "session": "ok", "avatar": "javascript:alert(1)"}),
        json!({"type": "profile", "avatar": "ftp://example.com/a"}),
        json!({"type": "profile", "name": "   "}),
    ] {
        a.request_err(request, "invalid_profile").await;
    }
    let (status, _) = server.http_get("/api/sessions/ok").await;
    assert_eq!(status, 404, "refused joins created nothing");
}

#[actix_rt::test]
async fn not_member_for_requests_on_sessions_not_joined() {
    let server = TestServer::start_default().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    b.join("theirs").await;
    for request in [
        json!({"type": "leave", "session": "theirs"}),
        json!({"type": "members", "session": "theirs"}),
        json!({"type": "publish", "session": "theirs", "data": 1}),
        json!({"type": "end", "session": "theirs", "epoch": 1}),
    ] {
        a.request_err(request, "not_member").await;
    }
    let view = b.members("theirs").await;
    assert_eq!(member_ids(&view), vec![b.connection.clone()]);
}

#[actix_rt::test]
async fn too_many_sessions_per_connection() {
    let mut args = test_args();
    args.max_sessions_per_connection = 2;
    let server = TestServer::start(args).await;
    let mut a = client(&server).await;
    a.join("s1").await;
    a.join("s2").await;
    a.request_err(
        json!({"type": "join", "session": "s3"}),
        "too_many_sessions",
    )
    .await;
    a.join("s1").await; // re-joining one it is in is still fine
    a.leave("s2").await;
    a.join("s3").await;
    let (status, _) = server.http_get("/api/sessions/s2").await;
    assert_eq!(status, 404);
}

#[actix_rt::test]
async fn session_full_at_the_member_limit() {
    let mut args = test_args();
    args.max_members_per_session = 2;
    let server = TestServer::start(args).await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let mut c = client(&server).await;
    a.join("full").await;
    b.join("full").await;
    c.request_err(json!({"type": "join", "session": "full"}), "session_full")
        .await;
    b.join("full").await; // idempotent re-join is not a new member
    b.leave("full").await;
    let j = c.join("full").await;
    assert_eq!(j["counts"]["connections"], 2);
}

#[actix_rt::test]
async fn a_store_that_lost_its_data_gets_members_reasserted_and_clients_a_snapshot() {
    // One instance can reach `snapshot` when its store loses its data (Redis restarted empty): the
    // heartbeat notices, re-asserts the local members and re-synchronises every client.
    let mut args = test_args();
    args.heartbeat_ms = 50;
    let backend = MemoryBackend::new(std::time::Duration::from_millis(args.lease_ms));
    let server = TestServer::start_on_backend(args, &backend).await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    a.join("snap").await;
    // Distinct joined_at: with a tie the re-assertion elects by connection id, not join order.
    next_millisecond().await;
    b.join("snap").await;
    let before = a.members("snap").await;

    backend.reset();
    for c in [&mut a, &mut b] {
        let snap = c.expect_event("snapshot", "snap").await;
        assert_eq!(
            member_ids(&snap),
            member_ids(&before),
            "members re-asserted: {snap}"
        );
        assert!(
            snap["version"].as_u64() > before["version"].as_u64(),
            "versions continue: {snap}"
        );
        assert!(
            snap["epoch"].as_u64() >= before["epoch"].as_u64(),
            "epoch never goes back: {snap}"
        );
        assert_eq!(
            snap["leader"], before["leader"],
            "the earliest member keeps leading"
        );
        assert_eq!(snap["counts"], before["counts"]);
        assert!(snap.get("id").is_none());
    }
    let (status, body) = server.http_get("/api/sessions/snap").await;
    assert_eq!(status, 200);
    assert_eq!(member_ids(&body), member_ids(&before));
    let model = SessionModel::from_log(a.log(), "snap");
    assert_eq!(model.ids(), member_ids(&before));
}

#[actix_rt::test]
async fn presence_counts_joins_with_its_own_and_the_leaders_record_and_gets_counts_not_member_events()
 {
    let mut args = test_args();
    args.counts_interval_ms = 100;
    let server = TestServer::start(args).await;
    let mut leader = client(&server).await;
    let mut watcher = client(&server).await;
    let mut guest = client(&server).await;
    leader.join("watch").await;
    next_millisecond().await;
    let joined = watcher
        .request_ok(
            json!({"type": "join", "session": "watch", "presence": "counts"}),
            "joined",
        )
        .await;
    assert_eq!(
        member_ids(&joined),
        {
            let mut ids = vec![leader.connection.clone(), watcher.connection.clone()];
            ids.sort();
            ids
        },
        "a counts member's list: itself and the leader: {joined}"
    );
    assert_eq!(joined["counts"]["connections"], 2, "{joined}");
    // A full member sees the counts member like any other.
    leader
        .expect("the watcher's join", |f| {
            f["type"] == "member_joined" && f["member"]["connection"] == watcher.connection.as_str()
        })
        .await;
    guest.join("watch").await;
    let counts = watcher
        .expect("a counts event", |f| {
            f["type"] == "counts" && f["counts"]["connections"] == 3
        })
        .await;
    assert_eq!(counts["session"], "watch");
    // `members` still answers with the whole list.
    let members = watcher
        .request_ok(json!({"type": "members", "session": "watch"}), "members")
        .await;
    assert_eq!(member_ids(&members).len(), 3, "{members}");
    watcher.drain_ready();
    for kind in ["member_joined", "member_left", "member_updated"] {
        assert!(
            !watcher.log().iter().any(|f| f["type"] == kind),
            "a counts member gets no {kind}: {:#?}",
            watcher.log()
        );
    }
}
