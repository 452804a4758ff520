//! Member records for tests that drive a store or an engine directly.

use rollcall::ids::Incarnation;
use rollcall::model::{Member, MemberState};

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
