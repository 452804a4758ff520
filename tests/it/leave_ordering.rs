//! A member hears every change ordered before its own leave (docs/protocol.md, `left`): two
//! members leaving at the same moment, on one instance (one batch) or on two (two instances
//! racing in the store), each get the other's `member_left` when the store ordered it first, and
//! their `left` reply carries the version of their own leave.

use serde_json::{Value, json};

use crate::support::redis::RedisServer;
use crate::support::server::{TestServer, test_args};
use crate::support::ws::WsClient;

/// Rounds per test: each a fresh session, so that both orders and both batch shapes occur.
const ROUNDS: usize = 12;

/// Both leave at once; each must hear the other's leave if it came first.
async fn leave_together(a: &mut WsClient, b: &mut WsClient, session: &str) {
    a.join(session).await;
    b.join(session).await;
    a.expect_event("member_joined", session).await;
    a.send_json(&json!({"type": "leave", "session": session, "id": 1}));
    b.send_json(&json!({"type": "leave", "session": session, "id": 1}));
    let is_left = |f: &Value| f["type"] == "left" && f["session"] == session;
    let a_left = a.expect("a's left", is_left).await;
    let b_left = b.expect("b's left", is_left).await;
    let version_of = |left: &Value, who: &str| {
        left["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("{who}'s left carries its version: {left}"))
    };
    let (va, vb) = (version_of(&a_left, "a"), version_of(&b_left, "b"));
    assert_ne!(va, vb, "two leaves, two versions");
    let (first, later, later_name, first_conn) = if va < vb {
        (va, &*b, "b", a.connection.clone())
    } else {
        (vb, &*a, "a", b.connection.clone())
    };
    let log = later.log();
    let left_at = log
        .iter()
        .position(is_left)
        .expect("the left reply is in the log");
    let heard = log[..left_at].iter().any(|f| {
        f["type"] == "member_left"
            && f["session"] == session
            && f["connection"] == first_conn.as_str()
            && f["version"] == first
    });
    assert!(
        heard,
        "{session}: {later_name} left after version {first} (the other's leave) but never heard \
         it before its left; its frames: {:#?}",
        &log[..=left_at]
    );
}

#[actix_rt::test]
async fn members_leaving_together_on_one_instance_hear_the_leave_ordered_first() {
    let server = TestServer::start(test_args()).await;
    let mut a = WsClient::connect(&server.ws_url()).await;
    let mut b = WsClient::connect(&server.ws_url()).await;
    for round in 0..ROUNDS {
        leave_together(&mut a, &mut b, &format!("together-{round}")).await;
    }
}

#[actix_rt::test]
async fn members_leaving_together_on_two_instances_hear_the_leave_ordered_first() {
    let redis = RedisServer::start();
    let (one, two) = TestServer::pair_on_redis(test_args(), &redis.url()).await;
    let mut a = WsClient::connect(&one.ws_url()).await;
    let mut b = WsClient::connect(&two.ws_url()).await;
    for round in 0..ROUNDS {
        leave_together(&mut a, &mut b, &format!("apart-{round}")).await;
    }
}
