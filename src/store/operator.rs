//! What the application's backend does to sessions through the server API (docs/protocol.md,
//! "Server API"): publish as the server, kick members, end a session, read many sessions at once.
//!
//! # Why a part of its own
//! Every other store operation acts for a member this instance holds (its own join, leave,
//! publish or end). These act for nobody in the session: the members concerned may be held by any
//! instance, and no leader or member stands behind the request. Each is still one atomic store
//! step that publishes its change, like every other change, so the instances holding the members
//! concerned hear of it over their feed and act on it (a kicked member's socket gets `kicked`).
//! The in-process store rules with [`crate::rules::kick`] and [`crate::rules::close`]; the Redis
//! scripts follow the same rules, and the conformance suite holds both to them.

use async_trait::async_trait;
use serde_json::Value;

use super::{StoreResult, StreamPosition};
use crate::model::{Change, SessionView};
pub use crate::rules::KickTarget;

#[async_trait]
pub trait Operator: Send + Sync {
    /// Publishes `data` as the server (`from` and `user` null) to every member of `session`,
    /// numbered and kept in its history like any message ([`super::Broker::publish`]), in one step
    /// with checking that the session has a member. `None` when it has none: nothing is published.
    async fn publish_as_server(
        &self,
        session: &str,
        data: &Value,
    ) -> StoreResult<Option<StreamPosition>>;

    /// Removes the members `target` names, present or reconnecting, on whatever instance, in one
    /// change: each leaves with reason `kicked` and `detail` (the kick's reason text), and
    /// leadership moves in the same change ([`crate::rules::kick`]). `None` when it names no
    /// member: nothing changed.
    async fn kick(
        &self,
        session: &str,
        target: KickTarget<'_>,
        detail: Option<&str>,
    ) -> StoreResult<Option<Change>>;

    /// Ends `session` as its leader's `end` would, with `by` null ([`crate::rules::close`]).
    /// `None` when it is not live (no record, already ended, or no member): nothing changed.
    async fn end_by_server(&self, session: &str) -> StoreResult<Option<Change>>;

    /// The whole views of `sessions`, in the order asked (`None`: no record), read in one round
    /// trip per store shard rather than one per session.
    async fn views(&self, sessions: &[String]) -> StoreResult<Vec<Option<SessionView>>>;
}
