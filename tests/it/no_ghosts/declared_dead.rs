//! An instance that others took for dead while its clients stayed connected (it was cut off from
//! the store for longer than the lease, and a reaper removed its members): its clients are never
//! told that they themselves left, nor shown a list without themselves. The instance puts its
//! members back first, and they see the result.

use std::time::Duration;

use serde_json::Value;

use super::ids;
use crate::support::server::{TestServer, test_args};
use crate::support::ws::WsClient;
use rollcall::model::LeaveReason;
use rollcall::store::memory::MemoryBackend;
use rollcall::store::{InstanceId, Sessions, Upkeep};

fn about_itself(frame: &Value, me: &str) -> bool {
    frame["type"] == "member_left" && frame["connection"] == me
}

#[actix_rt::test]
async fn a_client_of_an_instance_taken_for_dead_never_hears_that_it_left() {
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let server = TestServer::start_on_backend(test_args(), &backend).await;
    let me = server.engine().store().instance().incarnation.to_string();
    let mut alive = WsClient::connect(&server.ws_url()).await;
    let mut other = WsClient::connect(&server.ws_url()).await;
    alive.join("s").await;
    other.join("s").await;
    // Another instance's reaper removes this instance's members, as after a partition longer
    // than the lease; the change reaches this instance through the feed.
    let (reaper, _feed) = backend.connect(InstanceId::new("reaper"));
    reaper
        .remove_instance_members("s", &me, LeaveReason::InstanceLost)
        .await
        .expect("the reaper's removal")
        .expect("members were removed");
    let snapshot = alive
        .expect("a snapshot after the members are back", |f| {
            f["type"] == "snapshot" && f["session"] == "s"
        })
        .await;
    let back = [alive.connection.clone(), other.connection.clone()].into();
    assert_eq!(
        ids(&snapshot),
        back,
        "both members, the client itself included"
    );
    let view = reaper.view("s").await.expect("view").expect("the session");
    assert_eq!(view.members.len(), 2, "both members listed again: {view:?}");
    other.expect_event("snapshot", "s").await;
    for client in [&mut alive, &mut other] {
        client.drain_ready();
        let me = client.connection.clone();
        for frame in client.log() {
            assert!(!about_itself(frame, &me), "told that it left: {frame}");
            if frame["type"] == "snapshot" {
                assert!(ids(frame).contains(&me), "a list without itself: {frame}");
            }
        }
    }
}

#[actix_rt::test]
async fn with_a_grace_a_client_of_an_instance_taken_for_dead_stays_present_for_itself_and_others() {
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let mut args = test_args();
    args.resume_grace_ms = 10_000;
    let server = TestServer::start_on_backend(args, &backend).await;
    let me = server.engine().store().instance().incarnation.to_string();
    let mut alive = WsClient::connect(&server.ws_url()).await;
    alive.join("s").await;
    let (reaper, _feed) = backend.connect(InstanceId::new("reaper"));
    let (watcher_store, _watcher_feed) = backend.connect(InstanceId::new("watcher"));
    // Another instance's reaper marks this instance's members reconnecting.
    reaper
        .suspend(
            "s",
            rollcall::store::Whose::Instance(&me),
            LeaveReason::InstanceLost,
            Duration::from_secs(10),
        )
        .await
        .expect("the reaper's change")
        .expect("members were marked");
    let connection = alive.connection.clone();
    // Back in the store, the instance shows its client the result (an update or a snapshot).
    let is_me = |m: &Value| m["connection"] == connection.as_str() && m["state"] == "present";
    let present_again = alive
        .expect("itself present again", |f| {
            (f["type"] == "member_updated" && is_me(&f["member"]))
                || (f["type"] == "snapshot"
                    && f["members"]
                        .as_array()
                        .is_some_and(|ms| ms.iter().any(is_me)))
        })
        .await;
    assert_eq!(present_again["session"], "s");
    let view = watcher_store
        .view("s")
        .await
        .expect("view")
        .expect("the session");
    assert!(
        view.members.iter().all(|m| m.is_present()),
        "present again in the store: {view:?}"
    );
    alive.drain_ready();
    for frame in alive.log() {
        assert!(
            !(frame["type"] == "member_updated"
                && frame["member"]["connection"] == connection.as_str()
                && frame["member"]["state"] == "reconnecting"),
            "told that it was reconnecting while connected: {frame}"
        );
        assert!(
            !about_itself(frame, &connection),
            "told that it left: {frame}"
        );
    }
}
