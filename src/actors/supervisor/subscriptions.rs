//! The supervisor's ordered queue of subscriptions and releases: an instance starts listening to
//! a session before its first join there, and hands the session back once it holds no member
//! there, in the order asked, one at a time.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::actors::{ChangeRecorder, RecordChange};
use crate::ids::SessionId;
use crate::model::{Change, LeaveReason};
use crate::store::{Store, StoreError};

/// Subscribes and releases sessions in the order asked, one at a time, so that a retiring
/// session's late release can never undo the subscription of a session actor created after it.
///
/// Releasing a session is how an instance hands it back once it holds no member there: the store
/// must list none either. A join the store answered too late (its client was told it failed) or a
/// leave a failover lost leaves a member listed under this instance that nobody holds; the release
/// removes such strays (with `member_left`), then stops listening and drops the session from the
/// instance's session set. A release the store could not do is retried on every heartbeat, and
/// given up only when a new session actor takes the session over (its audits find the strays).
#[derive(Clone)]
pub(super) struct SubscriptionQueue {
    tx: tokio::sync::mpsc::UnboundedSender<SubscriptionOp>,
}

enum SubscriptionOp {
    Subscribe(
        SessionId,
        tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    ),
    Release(SessionId),
    /// Retry the releases that failed; says when done.
    RetryReleases(tokio::sync::oneshot::Sender<()>),
}

impl SubscriptionQueue {
    pub(super) fn start(
        store: Arc<dyn Store>,
        recorder: Option<ChangeRecorder>,
    ) -> SubscriptionQueue {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        actix::spawn(async move {
            let mut unreleased: BTreeSet<SessionId> = BTreeSet::new();
            while let Some(op) = rx.recv().await {
                match op {
                    SubscriptionOp::Subscribe(session, done) => {
                        unreleased.remove(&session);
                        let _ = done.send(store.subscribe(&session).await);
                    }
                    SubscriptionOp::Release(session) => {
                        if !release(store.as_ref(), &session, recorder.as_ref()).await {
                            unreleased.insert(session);
                        }
                    }
                    SubscriptionOp::RetryReleases(done) => {
                        let mut still = BTreeSet::new();
                        for session in std::mem::take(&mut unreleased) {
                            if !release(store.as_ref(), &session, recorder.as_ref()).await {
                                still.insert(session);
                            }
                        }
                        unreleased = still;
                        let _ = done.send(());
                    }
                }
            }
        });
        SubscriptionQueue { tx }
    }

    pub(super) fn subscribe(
        &self,
        session: &str,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
        let (done, result) = tokio::sync::oneshot::channel();
        let queued = self
            .tx
            .send(SubscriptionOp::Subscribe(session.into(), done))
            .is_ok();
        async move {
            if !queued {
                return Err(StoreError::unavailable_because(
                    "subscription queue stopped",
                ));
            }
            result.await.unwrap_or_else(|_| {
                Err(StoreError::unavailable_because(
                    "subscription queue stopped",
                ))
            })
        }
    }

    pub(super) fn release(&self, session: &str) {
        let _ = self.tx.send(SubscriptionOp::Release(session.into()));
    }

    /// Retries the releases that failed; resolves when they were tried.
    pub(super) fn retry_releases(&self) -> impl std::future::Future<Output = ()> + use<> {
        let (done, tried) = tokio::sync::oneshot::channel();
        let queued = self.tx.send(SubscriptionOp::RetryReleases(done)).is_ok();
        async move {
            if queued {
                let _ = tried.await;
            }
        }
    }
}

/// Removes the members the store still lists under this instance in `session`, which it no
/// longer holds, then stops listening to it. Whether the store answered.
async fn release(store: &dyn Store, session: &str, recorder: Option<&ChangeRecorder>) -> bool {
    match store
        .remove_strays(session, &[], LeaveReason::Disconnected)
        .await
    {
        Ok(removed) => {
            if let Some(change) = removed {
                tracing::warn!(%session, "removed members listed under this instance that it no longer held");
                record_change(recorder, session, &change);
            }
            if let Err(e) = store.unsubscribe(session).await {
                tracing::debug!(%session, error = %e, "unsubscribe failed");
            }
            true
        }
        Err(e) => {
            log_store_failure!(e, %session, error = %e, "release of a session failed; will retry");
            false
        }
    }
}

/// Counts a change this instance made and hands it to the participation recorder.
pub(super) fn record_change(recorder: Option<&ChangeRecorder>, session: &str, change: &Change) {
    crate::metrics::count_change(change);
    if let Some(recorder) = recorder {
        recorder.do_send(RecordChange {
            session: session.into(),
            change: change.clone(),
        });
    }
}
