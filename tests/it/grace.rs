//! Reconnecting members (docs/protocol.md, continuity): a socket lost without a clean end leaves
//! its member `reconnecting` for `--resume-grace-ms`, so that its client can resume it with its
//! place and its lead; a grace that runs out removes it with its reason and the hand-off; a clean
//! end is never delayed. Over real sockets, and with a real process killed with SIGKILL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::process::RollcallProcess;
use crate::support::redis::RedisServer;
use crate::support::server::{TestServer, WAIT, test_args};
use crate::support::ws::WsClient;

fn with_grace(grace_ms: u64) -> rollcall::config::ServeArgs {
    let mut args = test_args();
    args.resume_grace_ms = grace_ms;
    args
}

/// Ada (who leads, on `ada_url`) and Grace (on `grace_url`), both members of `session`.
async fn ada_and_grace(ada_url: &str, grace_url: &str, session: &str) -> (WsClient, WsClient) {
    let mut ada = WsClient::connect(ada_url).await;
    let mut grace = WsClient::connect(grace_url).await;
    let joined = ada.join(session).await;
    assert_eq!(joined["leader"], ada.connection.as_str(), "Ada leads");
    grace.join(session).await;
    (ada, grace)
}

/// Waits until `watcher` is told that `member` is in `state`; that `member_updated`.
async fn await_state(watcher: &mut WsClient, member: &str, state: &str) -> Value {
    await_state_within(watcher, member, state, WAIT).await
}

async fn await_state_within(
    watcher: &mut WsClient,
    member: &str,
    state: &str,
    within: Duration,
) -> Value {
    let what = format!("{member} {state}");
    watcher
        .expect_within(&what, |f| state_update(f, member, state), within)
        .await
}

fn state_update(frame: &Value, connection: &str, state: &str) -> bool {
    frame["type"] == "member_updated"
        && frame["member"]["connection"] == connection
        && frame["member"]["state"] == state
}

/// The leaves and leader changes a client got.
fn departures(client: &mut WsClient) -> Vec<Value> {
    client.drain_ready();
    client
        .log()
        .iter()
        .filter(|f| matches!(f["type"].as_str(), Some("member_left" | "leader_changed")))
        .cloned()
        .collect()
}

#[actix_rt::test]
async fn a_dropped_socket_leaves_its_member_reconnecting_until_a_resume_makes_it_present_again() {
    let server = TestServer::start(with_grace(10_000)).await;
    let (ada, mut grace) = ada_and_grace(&server.ws_url(), &server.ws_url(), "s").await;
    ada.abort();
    let lost = await_state(&mut grace, &ada.connection, "reconnecting").await;
    assert_eq!(lost["member"]["grace"]["reason"], "disconnected", "{lost}");
    let members = grace.members("s").await;
    assert_eq!(members["leader"], ada.connection.as_str(), "keeps the lead");
    assert_eq!(
        members["counts"],
        json!({"connections": 1, "users": 1, "reconnecting": 1})
    );

    let mut phone = WsClient::connect(&server.ws_url()).await;
    let resumed = phone
        .request_ok(ada.resume_request("s", Value::Null), "resumed")
        .await;
    assert_eq!(resumed["sessions"][0]["leader"], ada.connection.as_str());
    await_state(&mut grace, &ada.connection, "present").await;
    let members = grace.members("s").await;
    assert_eq!(
        members["counts"],
        json!({"connections": 2, "users": 2, "reconnecting": 0})
    );
    assert_eq!(
        departures(&mut grace),
        Vec::<Value>::new(),
        "no leave, no hand-off"
    );
}

#[actix_rt::test]
async fn a_client_silent_past_the_timeout_is_reconnecting_with_reason_timeout() {
    let mut args = with_grace(10_000);
    args.client_ping_ms = 100;
    args.client_timeout_ms = 300;
    let server = TestServer::start(args).await;
    let (ada, mut grace) = ada_and_grace(&server.ws_url(), &server.ws_url(), "s").await;
    ada.freeze();
    let lost = await_state(&mut grace, &ada.connection, "reconnecting").await;
    assert_eq!(lost["member"]["grace"]["reason"], "timeout", "{lost}");
    assert_eq!(departures(&mut grace), Vec::<Value>::new());
}

#[actix_rt::test]
async fn a_grace_that_runs_out_removes_the_member_with_its_reason_and_hands_the_lead_over() {
    let mut args = with_grace(300);
    args.heartbeat_ms = 100;
    args.lease_ms = 1_000;
    let server = TestServer::start(args).await;
    let (ada, mut grace) = ada_and_grace(&server.ws_url(), &server.ws_url(), "s").await;
    ada.abort();
    await_state(&mut grace, &ada.connection, "reconnecting").await;
    let lost_at = Instant::now();
    let left = grace.expect_event("member_left", "s").await;
    let waited = lost_at.elapsed();
    assert_eq!(left["connection"], ada.connection.as_str());
    assert_eq!(
        left["reason"], "disconnected",
        "the reason it was lost with"
    );
    let handed = grace.expect_event("leader_changed", "s").await;
    assert_eq!(handed["leader"], grace.connection.as_str());
    assert_eq!(handed["version"], left["version"], "in the same change");
    println!(
        "grace of 300 ms (heartbeat 100 ms): left {} ms after it was reconnecting",
        waited.as_millis()
    );
    // The grace (300 ms) plus one heartbeat (100 ms), with a margin for a loaded machine.
    assert!(
        waited < Duration::from_millis(300 + 100 + 1_500),
        "{waited:?}"
    );
    // Too late to resume now.
    let mut phone = WsClient::connect(&server.ws_url()).await;
    phone
        .request_err(ada.resume_request("s", Value::Null), "resume_failed")
        .await;
}

#[actix_rt::test]
async fn a_clean_close_or_a_leave_is_never_delayed_by_the_grace() {
    let server = TestServer::start(with_grace(60_000)).await;
    let mut grace = WsClient::connect(&server.ws_url()).await;
    grace.join("s").await;
    let mut closer = WsClient::connect(&server.ws_url()).await;
    closer.join("s").await;
    let started = Instant::now();
    closer.close();
    let left = grace.expect_event("member_left", "s").await;
    assert_eq!(left["connection"], closer.connection.as_str());
    let mut leaver = WsClient::connect(&server.ws_url()).await;
    leaver.join("s").await;
    leaver.leave("s").await;
    let left = grace.expect_event("member_left", "s").await;
    assert_eq!(left["connection"], leaver.connection.as_str());
    assert_eq!(left["reason"], "left");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "both well inside a 60 s grace"
    );
    grace.drain_ready();
    assert!(
        !grace
            .log()
            .iter()
            .any(|f| f["member"]["state"] == "reconnecting"),
        "nobody was reconnecting: {:?}",
        grace.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_keeps_its_members_reconnecting_for_a_resume_on_another_instance() {
    let redis = RedisServer::start();
    let url = redis.url();
    let grace_ms = ["--resume-grace-ms", "30000"];
    let mut first = RollcallProcess::start(&url, "grace-stopping", &grace_ms).await;
    let second = RollcallProcess::start(&url, "grace-staying", &grace_ms).await;
    let (mut ada, mut grace) = ada_and_grace(&first.ws_url(), &second.ws_url(), "s").await;
    let status = first.terminate(WAIT * 2);
    assert!(status.success(), "a graceful stop: {status:?}");
    let (code, _) = ada.closed_with(WAIT).await.expect("a close frame");
    assert_eq!(code, 1012);
    let lost = await_state(&mut grace, &ada.connection, "reconnecting").await;
    assert_eq!(lost["member"]["grace"]["reason"], "shutdown");
    let mut back = WsClient::connect(&second.ws_url()).await;
    let resumed = back
        .request_ok(ada.resume_request("s", Value::Null), "resumed")
        .await;
    assert_eq!(resumed["sessions"][0]["leader"], ada.connection.as_str());
    await_state(&mut grace, &ada.connection, "present").await;
    assert_eq!(departures(&mut grace), Vec::<Value>::new());
}

#[actix_rt::test]
async fn an_in_process_store_that_stops_ends_every_membership_reconnecting_ones_included() {
    let server_args = with_grace(60_000);
    let mut server = TestServer::start(server_args).await;
    let backend_view = server.engine().store().clone();
    let (ada, mut grace) = ada_and_grace(&server.ws_url(), &server.ws_url(), "s").await;
    ada.abort();
    await_state(&mut grace, &ada.connection, "reconnecting").await;
    server.shutdown().await;
    grace.closed_with(WAIT).await;
    let left: Vec<String> = grace
        .log()
        .iter()
        .filter(|f| f["type"] == "member_left")
        .map(|f| f["reason"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(left, ["disconnected", "shutdown"], "{:?}", grace.log());
    let view = backend_view.view("s").await.expect("view");
    assert!(
        view.as_ref().is_none_or(|v| v.members.is_empty()),
        "nobody left listed: {view:?}"
    );
}

/// Lease 3 s and heartbeat 1 s (the defaults): a killed instance's members are reconnecting
/// within the lease plus one tick, asserted with a margin.
const KILLED_BOUND: Duration = Duration::from_millis(3_000 + 1_000 + 2_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_instance_was_killed_resumes_after_the_reaper_ran_and_keeps_the_lead() {
    let redis = RedisServer::start();
    let url = redis.url();
    let grace_ms = ["--resume-grace-ms", "3000"];
    let mut doomed = RollcallProcess::start(&url, "grace-doomed", &grace_ms).await;
    let survivor = RollcallProcess::start(&url, "grace-survivor", &grace_ms).await;
    let (ada, mut grace) = ada_and_grace(&doomed.ws_url(), &survivor.ws_url(), "board").await;

    doomed.kill9();
    let killed = Instant::now();
    let lost = await_state_within(&mut grace, &ada.connection, "reconnecting", KILLED_BOUND).await;
    assert_eq!(lost["member"]["grace"]["reason"], "instance_lost", "{lost}");
    println!(
        "a killed instance's member was reconnecting {} ms after the kill",
        killed.elapsed().as_millis()
    );
    let mut back = WsClient::connect(&survivor.ws_url()).await;
    let resumed = back
        .request_ok(ada.resume_request("board", Value::Null), "resumed")
        .await;
    assert_eq!(resumed["connection"], ada.connection.as_str());
    assert_eq!(resumed["sessions"][0]["leader"], ada.connection.as_str());
    await_state(&mut grace, &ada.connection, "present").await;
    let members = grace.members("board").await;
    assert_eq!(members["leader"], ada.connection.as_str(), "still leads");
    // Past the lease, one tick, the grace the lost member would have had and two more ticks:
    // nothing changes.
    let settled = Duration::from_millis(3_000 + 1_000 + 3_000 + 2_000);
    tokio::time::sleep(settled.saturating_sub(killed.elapsed())).await;
    let later = grace.members("board").await;
    assert_eq!(
        later["members"], members["members"],
        "the same members, all present"
    );
    assert_eq!(
        later["leader"],
        ada.connection.as_str(),
        "still leads after the grace"
    );
    assert_eq!(
        departures(&mut grace),
        Vec::<Value>::new(),
        "no leave, no hand-off"
    );
}
