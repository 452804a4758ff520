//! A [`Store`] decorator that measures every operation: latency histogram and error counter, by
//! operation. Wrapping the store keeps metrics out of both implementations.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use super::plan::Plan;
use super::{
    Broker, Directory, EntryId, Floor, History, HistoryPage, HistorySettings, InstanceId,
    JoinOutcome, KickTarget, LeaseStatus, Operator, Outbox, PendingSession, PlansWritten, Registry,
    ResumeRuling, SessionPage, Sessions, Store, StoreResult, StreamPosition, Upkeep, Whose,
};
use crate::ids::ConnectionId;
use crate::metrics::{STORE_ERRORS, STORE_OP_SECONDS};
use crate::model::{Change, Counts, LeaveReason, Member, SessionView};

pub struct Instrumented {
    inner: Arc<dyn Store>,
}

impl Instrumented {
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(Instrumented { inner })
    }
}

async fn timed<T>(op: &'static str, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let started = Instant::now();
    let result = fut.await;
    metrics::histogram!(STORE_OP_SECONDS, "op" => op).record(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!(STORE_ERRORS, "op" => op).increment(1);
    }
    result
}

#[async_trait]
impl Store for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn instance(&self) -> &InstanceId {
        self.inner.instance()
    }
}

#[async_trait]
impl Sessions for Instrumented {
    async fn join(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
    ) -> StoreResult<JoinOutcome> {
        timed("join", self.inner.join(session, member, max_members)).await
    }

    async fn leave(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        timed("leave", self.inner.leave(session, connection, reason)).await
    }

    async fn join_planned(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
        plan: Plan,
    ) -> StoreResult<JoinOutcome> {
        let joined = self.inner.join_planned(session, member, max_members, plan);
        timed("join", joined).await
    }

    async fn leave_planned(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
        plan: Plan,
    ) -> StoreResult<Option<Change>> {
        let left = self.inner.leave_planned(session, connection, reason, plan);
        timed("leave", left).await
    }

    async fn write_plans(&self, session: &str, plans: &[Plan]) -> StoreResult<PlansWritten> {
        timed("write_plans", self.inner.write_plans(session, plans)).await
    }

    async fn update_member(&self, session: &str, member: Member) -> StoreResult<Option<Change>> {
        timed("update_member", self.inner.update_member(session, member)).await
    }

    async fn resume(
        &self,
        session: &str,
        connection: &str,
        user: Option<&str>,
    ) -> StoreResult<ResumeRuling> {
        timed("resume", self.inner.resume(session, connection, user)).await
    }

    async fn end(&self, session: &str, connection: &str, epoch: u64) -> StoreResult<Change> {
        timed("end", self.inner.end(session, connection, epoch)).await
    }

    async fn view(&self, session: &str) -> StoreResult<Option<SessionView>> {
        timed("view", self.inner.view(session)).await
    }

    async fn changes_since(&self, session: &str, version: u64) -> StoreResult<Option<Vec<Change>>> {
        timed("changes", self.inner.changes_since(session, version)).await
    }

    async fn counts(&self, sessions: &[String]) -> StoreResult<Vec<Counts>> {
        timed("counts", self.inner.counts(sessions)).await
    }
}

#[async_trait]
impl Broker for Instrumented {
    async fn publish(
        &self,
        session: &str,
        from: &str,
        user: Option<&str>,
        data: &Value,
    ) -> StoreResult<StreamPosition> {
        timed("publish", self.inner.publish(session, from, user, data)).await
    }

    async fn subscribe(&self, session: &str) -> StoreResult<()> {
        timed("subscribe", self.inner.subscribe(session)).await
    }

    async fn unsubscribe(&self, session: &str) -> StoreResult<()> {
        timed("unsubscribe", self.inner.unsubscribe(session)).await
    }
}

#[async_trait]
impl History for Instrumented {
    fn keep_history(&self, settings: HistorySettings) {
        self.inner.keep_history(settings);
    }

    async fn history(
        &self,
        session: &str,
        since: Option<u64>,
        limit: usize,
    ) -> StoreResult<HistoryPage> {
        timed("history", self.inner.history(session, since, limit)).await
    }
}

#[async_trait]
impl Operator for Instrumented {
    async fn publish_as_server(
        &self,
        session: &str,
        data: &Value,
    ) -> StoreResult<Option<StreamPosition>> {
        timed(
            "publish_as_server",
            self.inner.publish_as_server(session, data),
        )
        .await
    }

    async fn kick(
        &self,
        session: &str,
        target: KickTarget<'_>,
        detail: Option<&str>,
    ) -> StoreResult<Option<Change>> {
        timed("kick", self.inner.kick(session, target, detail)).await
    }

    async fn end_by_server(&self, session: &str) -> StoreResult<Option<Change>> {
        timed("end_by_server", self.inner.end_by_server(session)).await
    }

    async fn views(&self, sessions: &[String]) -> StoreResult<Vec<Option<SessionView>>> {
        timed("views", self.inner.views(sessions)).await
    }
}

#[async_trait]
impl Registry for Instrumented {
    async fn register(&self) -> StoreResult<Option<String>> {
        timed("register", self.inner.register()).await
    }

    async fn renew_lease(&self) -> StoreResult<LeaseStatus> {
        timed("renew_lease", self.inner.renew_lease()).await
    }

    async fn deregister(&self) -> StoreResult<()> {
        timed("deregister", self.inner.deregister()).await
    }

    async fn expired_instances(&self) -> StoreResult<Vec<String>> {
        timed("expired_instances", self.inner.expired_instances()).await
    }

    async fn claim_reap(&self, dead: &str) -> StoreResult<bool> {
        timed("claim_reap", self.inner.claim_reap(dead)).await
    }

    async fn sessions_of(&self, dead: &str) -> StoreResult<Vec<String>> {
        timed("sessions_of", self.inner.sessions_of(dead)).await
    }

    async fn forget_instance(&self, dead: &str) -> StoreResult<()> {
        timed("forget_instance", self.inner.forget_instance(dead)).await
    }

    async fn resume_secret(&self) -> StoreResult<Vec<u8>> {
        timed("resume_secret", self.inner.resume_secret()).await
    }
}

#[async_trait]
impl Upkeep for Instrumented {
    async fn remove_instance_members(
        &self,
        session: &str,
        dead: &str,
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        timed(
            "remove_instance_members",
            self.inner.remove_instance_members(session, dead, reason),
        )
        .await
    }

    async fn held_count(&self, session: &str) -> StoreResult<u64> {
        timed("held_count", self.inner.held_count(session)).await
    }

    async fn remove_strays(
        &self,
        session: &str,
        keep: &[ConnectionId],
        reason: LeaveReason,
    ) -> StoreResult<Option<Change>> {
        let removed = self.inner.remove_strays(session, keep, reason);
        timed("remove_strays", removed).await
    }

    async fn reassert(
        &self,
        session: &str,
        members: Vec<Member>,
        floor: Floor,
    ) -> StoreResult<Option<Change>> {
        timed("reassert", self.inner.reassert(session, members, floor)).await
    }

    async fn touch(&self, session: &str) -> StoreResult<()> {
        timed("touch", self.inner.touch(session)).await
    }

    async fn suspend(
        &self,
        session: &str,
        whose: Whose<'_>,
        reason: LeaveReason,
        grace: std::time::Duration,
    ) -> StoreResult<Option<Change>> {
        let suspended = self.inner.suspend(session, whose, reason, grace);
        timed("suspend", suspended).await
    }

    async fn end_graces(&self, session: &str) -> StoreResult<Option<Change>> {
        timed("end_graces", self.inner.end_graces(session)).await
    }

    async fn expire_graces(&self) -> StoreResult<Vec<(String, Change)>> {
        timed("expire_graces", self.inner.expire_graces()).await
    }
}

#[async_trait]
impl Outbox for Instrumented {
    fn keep_outbox(&self, on: bool) {
        self.inner.keep_outbox(on);
    }

    async fn pending(
        &self,
        sessions: usize,
        per_session: usize,
        events: usize,
    ) -> StoreResult<Vec<PendingSession>> {
        timed(
            "outbox_pending",
            self.inner.pending(sessions, per_session, events),
        )
        .await
    }

    async fn acknowledge(
        &self,
        session: &str,
        through: EntryId,
        entries: usize,
    ) -> StoreResult<usize> {
        timed(
            "outbox_acknowledge",
            self.inner.acknowledge(session, through, entries),
        )
        .await
    }

    async fn hold_delivery(&self, ttl: std::time::Duration) -> StoreResult<bool> {
        timed("hold_delivery", self.inner.hold_delivery(ttl)).await
    }
}

#[async_trait]
impl Directory for Instrumented {
    async fn live_sessions(&self, cursor: Option<&str>, limit: usize) -> StoreResult<SessionPage> {
        timed("live_sessions", self.inner.live_sessions(cursor, limit)).await
    }

    async fn tidy_directory(&self) -> StoreResult<usize> {
        timed("tidy_directory", self.inner.tidy_directory()).await
    }
}
