//! Planned joins and leaves on the Redis store (`rollcall::store::plan`): a plan made from the
//! store's current view is written as it is, with no script-side election or encoding, and leaves
//! the store exactly where the unplanned operation would; a plan made from a stale view is ignored
//! and the script computes the change itself.

use rollcall::model::{LeaveReason, Member, now_ms};
use rollcall::store::plan::{self, Plan};
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use rollcall::store::{Broker, JoinOutcome, Sessions};

use crate::support::redis::{RedisServer, member, view};

async fn join_planned(store: &RedisStore, session: &str, m: Member, plan: Plan) -> JoinOutcome {
    store
        .join_planned(session, m, 10, plan)
        .await
        .expect("planned join")
}

#[tokio::test]
async fn a_current_plan_is_written_as_it_is_and_leaves_the_store_where_its_view_says() {
    let server = RedisServer::start();
    let (a, _f) = server.store("a", DEFAULT_SESSION_TTL).await;
    a.subscribe("s").await.expect("subscribe");
    a.join("s", member(&a, "first", Some("ann")), 10)
        .await
        .expect("join");

    // Joins of an anonymous member and of a second connection of a known user, then leaves of a
    // member and of the leader, each planned from the store's own view.
    let mut expected = view(&a, "s").await;
    for m in [
        member(&a, "anon", None),
        member(&a, "second", Some("ann")),
        member(&a, "third", Some("bo")),
    ] {
        let plan = plan::join(&expected, &m, now_ms(), 10).expect("a join plan");
        // The scripts' own logic (not a written plan) reads `TIME` in a join, `HGET` in a leave.
        server.reset_stats();
        let outcome = join_planned(&a, "s", m, plan.clone()).await;
        assert_eq!(
            outcome.change(),
            Some(&plan.change),
            "the plan is the change"
        );
        assert_eq!(
            server.calls("time"),
            0,
            "written without the script's own logic"
        );
        expected.apply(&plan.change);
        assert_eq!(
            view(&a, "s").await,
            expected,
            "the store is where the plan said"
        );
    }
    for (connection, reason) in [("anon", LeaveReason::Left), ("first", LeaveReason::Timeout)] {
        let plan = plan::leave(&expected, &connection.into(), reason).expect("a leave plan");
        server.reset_stats();
        let left = a
            .leave_planned("s", connection, reason, plan.clone())
            .await
            .expect("planned leave");
        assert_eq!(left.as_ref(), Some(&plan.change), "the plan is the change");
        assert_eq!(
            server.calls("hget"),
            0,
            "written without the script's own logic"
        );
        expected.apply(&plan.change);
        assert_eq!(
            view(&a, "s").await,
            expected,
            "the store is where the plan said"
        );
    }
    assert_eq!(
        expected.leader.as_deref(),
        Some("second"),
        "handed over in join order"
    );

    // The counters the plans kept (anonymous members, connections per user) are the ones the
    // script's own logic reads: the counts agree, and so does what an unplanned leave does next.
    let counts = a.counts(&["s".into()]).await.expect("counts");
    assert_eq!(counts[0], expected.counts());
    let change = a
        .leave("s", "second", LeaveReason::Left)
        .await
        .expect("leave")
        .expect("a member");
    assert_eq!(change.version, expected.version + 1, "versions follow on");
    assert_eq!(change.leader.as_deref(), Some("third"));
    let users: Vec<String> = server.query(&["HKEYS", "rc:{s:s}:users"]).expect("HKEYS");
    assert_eq!(
        users,
        vec!["bo".to_owned()],
        "ann's connections are all gone"
    );
    let anonymous: Option<String> = server
        .query(&["HGET", "rc:{s:s}:meta", "anonymous"])
        .expect("HGET");
    assert_eq!(anonymous.as_deref(), Some("0"));
}

#[tokio::test]
async fn a_stale_plan_is_ignored_and_the_script_decides() {
    let server = RedisServer::start();
    let (a, _f) = server.store("a", DEFAULT_SESSION_TTL).await;
    let (b, _g) = server.store("b", DEFAULT_SESSION_TTL).await;
    a.subscribe("s").await.expect("subscribe");
    b.subscribe("s").await.expect("subscribe");
    a.join("s", member(&a, "lead", None), 10)
        .await
        .expect("join");
    let stale = view(&a, "s").await;
    // Another instance changes the session after `a` took its view.
    b.join("s", member(&b, "other", None), 10)
        .await
        .expect("join");

    let plan = plan::join(&stale, &member(&a, "late", None), now_ms(), 10).expect("a plan");
    let outcome = join_planned(&a, "s", member(&a, "late", None), plan.clone()).await;
    let change = outcome.change().expect("joined").clone();
    assert_ne!(change, plan.change, "not the stale plan");
    assert_eq!(
        change.version,
        stale.version + 2,
        "after the other instance's join"
    );
    let now = view(&a, "s").await;
    let order: Vec<&str> = now.members.iter().map(|m| m.connection.as_str()).collect();
    assert_eq!(order, ["lead", "other", "late"]);

    // The leader's leave planned from the stale view would hand over to "late"; the store knows
    // "other" joined earlier.
    let plan = plan::leave(&stale, &"lead".into(), LeaveReason::Left).expect("a plan");
    let change = a
        .leave_planned("s", "lead", LeaveReason::Left, plan)
        .await
        .expect("leave")
        .expect("a member");
    assert_eq!(change.leader.as_deref(), Some("other"));
    assert_eq!(view(&a, "s").await.leader.as_deref(), Some("other"));
}

/// After a store loss a re-assertion starts a new history, whose version can meet a lagging
/// view's: a plan whose version matches but whose epoch or leader does not is not written.
#[tokio::test]
async fn a_plan_whose_version_matches_a_different_header_is_ignored() {
    let server = RedisServer::start();
    let (a, _f) = server.store("a", DEFAULT_SESSION_TTL).await;
    a.subscribe("s").await.expect("subscribe");
    a.join("s", member(&a, "lead", None), 10)
        .await
        .expect("join");
    let view_now = view(&a, "s").await;
    let _: i64 = server
        .query(&["HSET", "rc:{s:s}:meta", "epoch", "41"])
        .expect("HSET");
    let plan = plan::join(&view_now, &member(&a, "next", None), now_ms(), 10).expect("a plan");
    server.reset_stats();
    let outcome = join_planned(&a, "s", member(&a, "next", None), plan.clone()).await;
    let change = outcome.change().expect("joined").clone();
    assert_eq!(server.calls("time"), 1, "the script's own logic decided");
    assert_eq!(change.version, plan.change.version);
    assert_eq!(
        change.epoch, 41,
        "the store's epoch, not the plan's {}",
        plan.change.epoch
    );
}
