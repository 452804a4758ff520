//! `resume` over real sockets (docs/protocol.md, continuity): a new socket carries on the same
//! member, on the same instance or another one, the old socket is closed with 4001, the peers see
//! at most one `member_updated`, and the resumed client gets what it missed in order. Bad tokens
//! and misplaced resumes touch nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::db::token;
use crate::support::proxy::TcpProxy;
use crate::support::server::{TestServer, WAIT, test_args};
use crate::support::ws::WsClient;
use rollcall::store::memory::MemoryBackend;

async fn client(server: &TestServer) -> WsClient {
    WsClient::connect(&server.ws_url()).await
}

/// The membership events a client got (everything a peer would notice of a resume).
fn membership_events(client: &mut WsClient) -> Vec<Value> {
    client.drain_ready();
    client
        .log()
        .iter()
        .filter(|f| {
            matches!(
                f["type"].as_str(),
                Some("member_joined" | "member_left" | "leader_changed" | "snapshot")
            )
        })
        .cloned()
        .collect()
}

/// A round trip: every frame the server produced for `client` before it is in the log after.
async fn settle(client: &mut WsClient) {
    client.request_ok(json!({"type": "ping"}), "pong").await;
}

#[actix_rt::test]
async fn a_resume_on_the_same_instance_is_the_same_member_and_the_old_socket_gets_4001() {
    let server = TestServer::start_default().await;
    let mut ada = client(&server).await;
    let mut grace = client(&server).await;
    let joined = ada.join("board").await;
    grace.join("board").await;
    let version = ada.expect_event("member_joined", "board").await["version"].clone();
    let joined_at = joined["members"][0]["joined_at"].clone();
    let token = ada.welcome["resume_token"]
        .as_str()
        .expect("a resume token");
    assert!(
        (1..=256).contains(&token.len()),
        "at most 256 chars: {token}"
    );
    settle(&mut grace).await;
    let before = membership_events(&mut grace).len();

    // Ada's phone switches networks: the old socket is still open here, the new one resumes.
    let mut phone = client(&server).await;
    let resumed = phone
        .request_ok(ada.resume_request("board", version.clone()), "resumed")
        .await;
    assert_eq!(resumed["connection"], ada.connection.as_str(), "{resumed}");
    let entry = &resumed["sessions"][0];
    assert_eq!(entry["session"], "board");
    assert_eq!(entry["leader"], ada.connection.as_str(), "still leads");
    assert_eq!(entry["recovered"], true, "{resumed}");
    assert_eq!(entry["version"], version, "nothing changed: {resumed}");
    let (code, _) = ada
        .closed_with(WAIT)
        .await
        .expect("the old socket gets a close frame");
    assert_eq!(code, 4001, "replaced");

    let members = phone.members("board").await;
    let listed: Vec<&Value> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["connection"] == ada.connection.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "listed once: {members}");
    assert_eq!(listed[0]["joined_at"], joined_at, "same joined_at");
    assert_eq!(members["leader"], ada.connection.as_str());
    settle(&mut grace).await;
    let seen = membership_events(&mut grace);
    assert_eq!(
        seen.len(),
        before,
        "the peer saw no leave, join, leader change or snapshot: {seen:?}"
    );
    // The new socket carries the membership: its leave is Ada's leave.
    phone.leave("board").await;
    let left = grace.expect_event("member_left", "board").await;
    assert_eq!(left["connection"], ada.connection.as_str());
    assert_eq!(left["reason"], "left");
}

#[actix_rt::test]
async fn the_changes_a_resumed_client_missed_follow_resumed_in_order() {
    let server = TestServer::start_default().await;
    let mut ada = client(&server).await;
    let mut grace = client(&server).await;
    let joined = ada.join("s").await;
    let version = joined["version"].as_u64().expect("version");
    ada.freeze();
    grace.join("s").await;
    let mut bob = client(&server).await;
    bob.join("s").await;
    bob.leave("s").await;

    let mut phone = client(&server).await;
    let resumed = phone
        .request_ok(ada.resume_request("s", json!(version)), "resumed")
        .await;
    assert_eq!(resumed["sessions"][0]["recovered"], true, "{resumed}");
    assert_eq!(resumed["sessions"][0]["version"], version + 3);
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(phone.next_frame(WAIT).await);
    }
    let kinds: Vec<(&str, u64)> = replayed
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap_or("?"),
                f["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("member_joined", version + 1),
            ("member_joined", version + 2),
            ("member_left", version + 3)
        ],
        "{replayed:?}"
    );
    assert_eq!(
        replayed[0]["member"]["connection"],
        grace.connection.as_str()
    );
    assert_eq!(replayed[2]["connection"], bob.connection.as_str());
}

#[actix_rt::test]
async fn a_client_the_log_cannot_bring_up_to_date_gets_a_snapshot_and_recovered_false() {
    let mut args = test_args();
    args.rate_limit_burst = 1_000;
    let server = TestServer::start(args).await;
    let mut ada = client(&server).await;
    ada.join("s").await;
    ada.freeze();
    let mut churn = client(&server).await;
    // More changes than the store's change log keeps.
    for _ in 0..(rollcall::store::CHANGE_LOG_LENGTH / 2 + 1) {
        churn.join("s").await;
        churn.leave("s").await;
    }
    let mut phone = client(&server).await;
    let resumed = phone
        .request_ok(ada.resume_request("s", json!(1)), "resumed")
        .await;
    assert_eq!(resumed["sessions"][0]["recovered"], false, "{resumed}");
    let snapshot = phone.next_frame(WAIT).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["version"], resumed["sessions"][0]["version"]);
    assert_eq!(
        snapshot["members"][0]["connection"],
        ada.connection.as_str()
    );

    // A client that claims to be ahead of the store (the store lost the session) too.
    let mut again = client(&server).await;
    let resumed = again
        .request_ok(ada.resume_request("s", json!(1_000_000)), "resumed")
        .await;
    assert_eq!(resumed["sessions"][0]["recovered"], false, "{resumed}");
    assert_eq!(again.next_frame(WAIT).await["type"], "snapshot");
}

#[actix_rt::test]
async fn a_resume_on_another_instance_moves_the_member_with_one_member_updated() {
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let first = TestServer::start_on_backend(test_args(), &backend).await;
    let second = TestServer::start_on_backend(test_args(), &backend).await;
    let mut ada = client(&first).await;
    let mut grace = client(&second).await;
    let joined = ada.join("s").await;
    grace.join("s").await;
    let version = ada.expect_event("member_joined", "s").await["version"].clone();
    settle(&mut grace).await;
    let before = membership_events(&mut grace).len();

    let mut phone = client(&second).await;
    let resumed = phone
        .request_ok(ada.resume_request("s", version.clone()), "resumed")
        .await;
    let entry = &resumed["sessions"][0];
    assert_eq!(entry["leader"], ada.connection.as_str(), "{resumed}");
    assert_eq!(entry["recovered"], true, "{resumed}");
    let (code, _) = ada.closed_with(WAIT).await.expect("a close frame");
    assert_eq!(code, 4001);
    let moved = grace.expect_event("member_updated", "s").await;
    assert_eq!(moved["member"]["connection"], ada.connection.as_str());
    assert_eq!(
        moved["member"]["joined_at"],
        joined["members"][0]["joined_at"]
    );
    assert_eq!(
        moved["member"]["instance"],
        second.engine().store().instance().incarnation.as_str()
    );
    settle(&mut grace).await;
    let seen = membership_events(&mut grace);
    assert_eq!(
        seen.len(),
        before,
        "no leave, join or leader change: {seen:?}"
    );
    // The old instance let the member go without ending it; the new one holds it.
    assert_eq!(backend.live_member_count(), 2);
    phone.leave("s").await;
    let left = grace.expect_event("member_left", "s").await;
    assert_eq!(left["connection"], ada.connection.as_str());
}

#[actix_rt::test]
async fn forged_foreign_late_and_left_resumes_are_refused_and_touch_nothing() {
    let server = TestServer::start_default().await;
    let mut ada = client(&server).await;
    let mut grace = client(&server).await;
    ada.join("s").await;
    grace.join("s").await;
    let version = grace.members("s").await["version"].clone();
    let token = ada.welcome["resume_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let (connection, tag) = token.rsplit_once('.').expect("connection.tag");
    let forged = format!("{connection}.{}", "A".repeat(tag.len()));
    let other_deployment = format!("{connection}.AAAAAAAAAAAAAAAAAAAAAA");
    for bad in [
        forged.as_str(),
        other_deployment.as_str(),
        "no-dot",
        connection,
    ] {
        let mut phone = client(&server).await;
        let request = json!({"type": "resume", "token": bad, "sessions": [{"session": "s", "version": version}]});
        phone.request_err(request, "resume_failed").await;
        // The socket stays open and usable.
        phone.request_ok(json!({"type": "ping"}), "pong").await;
    }
    // Not the first request.
    let mut late = client(&server).await;
    late.request_ok(json!({"type": "ping"}), "pong").await;
    late.request_err(ada.resume_request("s", version.clone()), "resume_failed")
        .await;
    // A connection that left.
    let mut bob = client(&server).await;
    bob.join("s").await;
    bob.leave("s").await;
    let version = grace.members("s").await["version"].clone();
    let mut phone = client(&server).await;
    phone
        .request_err(bob.resume_request("s", version.clone()), "resume_failed")
        .await;
    assert_eq!(
        grace.members("s").await["version"],
        version,
        "nothing changed in the session"
    );
    assert!(!ada.is_closed(), "the real socket was never replaced");
    // A member of a session that was ended since.
    let mut leader = client(&server).await;
    let joined = leader.join("ends").await;
    let mut ended_member = client(&server).await;
    ended_member.join("ends").await;
    leader
        .request_ok(
            json!({"type": "end", "session": "ends", "epoch": joined["epoch"]}),
            "ended",
        )
        .await;
    let mut phone = client(&server).await;
    phone
        .request_err(
            ended_member.resume_request("ends", json!(null)),
            "resume_failed",
        )
        .await;
}

#[actix_rt::test]
async fn a_signed_in_member_is_resumed_only_by_the_same_user() {
    const SECRET: &str = "resume-test-secret";
    let mut args = test_args();
    args.jwt_secret = Some(SECRET.to_owned());
    let server = TestServer::start(args).await;
    let url = |user: &str| format!("{}?token={}", server.ws_url(), token(SECRET, user, None));
    let mut alice = WsClient::connect(&url("alice")).await;
    alice.join("s").await;
    let version = alice.members("s").await["version"].clone();
    let mut mallory = WsClient::connect(&url("mallory")).await;
    mallory
        .request_err(alice.resume_request("s", version.clone()), "forbidden")
        .await;
    let mut anonymous = client(&server).await;
    anonymous
        .request_err(alice.resume_request("s", version.clone()), "forbidden")
        .await;
    assert!(!alice.is_closed());
    let mut phone = WsClient::connect(&url("alice")).await;
    let resumed = phone
        .request_ok(alice.resume_request("s", version), "resumed")
        .await;
    assert_eq!(resumed["connection"], alice.connection.as_str());
}

/// Ada's phone leaves the Wi-Fi: the path of her socket goes silent at both ends (a frozen proxy),
/// and she comes back on a new socket straight to the server and resumes. Grace never sees her
/// twice, never sees her leave or join, and the lead stays hers; the half-open socket is closed.
#[actix_rt::test]
async fn a_network_switch_leaves_no_duplicate_listing_no_leave_and_no_leader_change() {
    let mut args = test_args();
    args.resume_grace_ms = 10_000;
    let server = TestServer::start(args).await;
    let wifi = TcpProxy::start(server.addr);
    let mut ada = WsClient::connect(&format!("ws://{}/ws", wifi.addr())).await;
    let mut grace = client(&server).await;
    ada.join("board").await;
    let joined = grace.join("board").await;
    assert_eq!(joined["leader"], ada.connection.as_str());
    // One message Ada saw before the switch, two she misses.
    let first = grace
        .request_ok(
            json!({"type": "publish", "session": "board", "data": 1}),
            "published",
        )
        .await;
    let seen = ada.expect_event("message", "board").await;
    assert_eq!(seen["offset"], first["offset"]);
    let version = ada.members("board").await["version"].clone();

    wifi.freeze();
    for data in [2, 3] {
        grace
            .request_ok(
                json!({"type": "publish", "session": "board", "data": data}),
                "published",
            )
            .await;
    }
    let switched = std::time::Instant::now();
    let mut lte = client(&server).await;
    let request = json!({
        "type": "resume",
        "token": ada.welcome["resume_token"],
        "sessions": [{"session": "board", "version": version, "offset": seen["offset"]}],
    });
    let resumed = lte.request_ok(request, "resumed").await;
    println!(
        "network switch: resumed {} ms after the old path froze",
        switched.elapsed().as_millis()
    );
    assert_eq!(resumed["connection"], ada.connection.as_str());
    assert_eq!(resumed["sessions"][0]["leader"], ada.connection.as_str());
    assert_eq!(resumed["sessions"][0]["recovered"], true, "{resumed}");
    // The messages she missed follow, in order, each once.
    let missed: Vec<Value> = [lte.next_frame(WAIT).await, lte.next_frame(WAIT).await].into();
    let data: Vec<&Value> = missed.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, [&json!(2), &json!(3)], "{missed:?}");
    assert_eq!(missed[0]["type"], "message");
    let offset = seen["offset"].as_u64().expect("an offset");
    assert_eq!(missed[0]["offset"], offset + 1);
    assert_eq!(missed[1]["offset"], offset + 2);
    assert_eq!(missed[0]["stream"], seen["stream"]);
    // The server lets the half-open socket go at once (4001 it cannot deliver, then the close
    // handshake's deadline): only Grace's and the new socket remain.
    let supervisor = server.engine().supervisor().clone();
    let only_two = crate::support::eventually(WAIT, async || {
        supervisor
            .send(rollcall::actors::supervisor::ClientCount)
            .await
            .is_ok_and(|n| n == 2)
    })
    .await;
    assert!(only_two, "the half-open socket was not let go");
    let members = grace.members("board").await;
    let listed: Vec<&Value> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["connection"] == ada.connection.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "Ada once: {members}");
    assert_eq!(listed[0]["state"], "present");
    assert_eq!(members["leader"], ada.connection.as_str());
    let seen = membership_events(&mut grace);
    assert_eq!(
        seen,
        Vec::<Value>::new(),
        "no leave, join or leader change at the peer"
    );
}

/// An instance with no member of the session yet still replays from the change log: the first
/// client that resumes there gets the changes it missed, not a snapshot.
#[actix_rt::test]
async fn a_resume_on_an_instance_new_to_the_session_replays_from_the_log() {
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let first = TestServer::start_on_backend(test_args(), &backend).await;
    let second = TestServer::start_on_backend(test_args(), &backend).await;
    let mut ada = client(&first).await;
    let joined = ada.join("s").await;
    let version = joined["version"].clone();
    ada.freeze();
    let mut grace = client(&first).await;
    grace.join("s").await;
    let mut phone = client(&second).await;
    let resumed = phone
        .request_ok(ada.resume_request("s", version.clone()), "resumed")
        .await;
    assert_eq!(resumed["sessions"][0]["recovered"], true, "{resumed}");
    let replayed = phone.next_frame(WAIT).await;
    assert_eq!(replayed["type"], "member_joined", "{replayed}");
    assert_eq!(replayed["member"]["connection"], grace.connection.as_str());
}
