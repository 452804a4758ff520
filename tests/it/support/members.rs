//! Member records for tests that drive a store or an engine directly.

use rollcall::ids::Incarnation;
use rollcall::model::{LeaveReason, Member, MemberState, SessionView, now_ms};
use rollcall::store::plan::{Plan, Planner};

/// A member `connection` of user `user-<connection>`, named after its connection, held by
/// `instance`. `joined_at` is 0: the store stamps it.
pub fn member(connection: &str, instance: &Incarnation) -> Member {
    Member {
        connection: connection.into(),
        user: Some(format!("user-{connection}")),
        name: connection.to_owned(),
        avatar: None,
        joined_at: 0,
        instance: instance.clone(),
        state: MemberState::Present,
        grace: None,
    }
}

/// Five plans in a row from `view`, whose leader is `first`: an anonymous `anon` joins, `second`
/// of user ann joins, `first` leaves (the lead is handed over), and `brief` of user bo joins and
/// times out. A batch with every kind of step, for members held by `instance`.
pub fn mixed_batch(view: &SessionView, instance: &Incarnation) -> Vec<Plan> {
    let of = |connection: &str, user: Option<&str>| Member {
        user: user.map(str::to_owned),
        ..member(connection, instance)
    };
    let mut planner = Planner::new(view, 100);
    [
        planner.join(&of("anon", None), now_ms()),
        planner.join(&of("second", Some("ann")), now_ms()),
        planner.leave(&"first".into(), LeaveReason::Left),
        planner.join(&of("brief", Some("bo")), now_ms()),
        planner.leave(&"brief".into(), LeaveReason::Timeout),
    ]
    .into_iter()
    .map(|p| p.expect("a plan"))
    .collect()
}
