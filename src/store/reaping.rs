//! Removing the members of dead instances: the part of the instance lifecycle that needs no actor.
//!
//! Every instance runs these on its reaper tick and at start-up; the claim ([`Store::claim_reap`])
//! makes one instance do the work for each dead one. They are plain functions over a [`Store`], so
//! benches and tests can call them without an engine.

use std::time::Duration;

use crate::model::{Change, Event, LeaveReason};
use crate::store::{Store, StoreError, StoreResult, Whose};

/// Lets go of every present member `instance` has in `session`, for `reason`: with a grace, each
/// is `reconnecting` until it runs out (so its client can resume it elsewhere); without one, it
/// is removed at once.
pub async fn let_go(
    store: &dyn Store,
    session: &str,
    instance: &str,
    reason: LeaveReason,
    grace: Duration,
) -> StoreResult<Option<Change>> {
    if grace.is_zero() {
        store
            .remove_instance_members(session, instance, reason)
            .await
    } else {
        let whose = Whose::Instance(instance);
        store.suspend(session, whose, reason, grace).await
    }
}

/// Reaps every instance whose lease expired; returns the changes made, per session.
pub async fn reap_expired(store: &dyn Store, grace: Duration) -> Vec<(String, Change)> {
    let mut changes = Vec::new();
    let expired = match store.expired_instances().await {
        Ok(expired) => expired,
        Err(e) => {
            tracing::debug!(error = %e, "could not list expired instances");
            return changes;
        }
    };
    for dead in expired {
        if dead == store.instance().incarnation {
            continue;
        }
        match reap_instance(store, &dead, grace).await {
            Ok(mut reaped) => changes.append(&mut reaped),
            Err(e) => {
                log_store_failure!(e, instance = %dead, error = %e, "reaping failed; will retry")
            }
        }
    }
    changes
}

/// Lets go of every member of `dead` in every session it was in ([`let_go`]), then forgets it.
pub async fn reap_instance(
    store: &dyn Store,
    dead: &str,
    grace: Duration,
) -> Result<Vec<(String, Change)>, StoreError> {
    if !store.claim_reap(dead).await? {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let mut changes = Vec::new();
    let mut members = 0usize;
    for session in store.sessions_of(dead).await? {
        if let Some(change) =
            let_go(store, &session, dead, LeaveReason::InstanceLost, grace).await?
        {
            members += change
                .events
                .iter()
                .filter(|e| matches!(e, Event::MemberLeft { .. } | Event::MemberUpdated { .. }))
                .count();
            changes.push((session, change));
        }
    }
    store.forget_instance(dead).await?;
    metrics::counter!(crate::metrics::MEMBERS_REAPED).increment(members as u64);
    metrics::histogram!(crate::metrics::REAPER_PASS_SECONDS)
        .record(started.elapsed().as_secs_f64());
    tracing::warn!(instance = %dead, members, sessions = changes.len(),
        elapsed_ms = started.elapsed().as_millis() as u64, "reaped a dead instance");
    Ok(changes)
}

/// Start-up: register the lease, reap the previous incarnation of this name at once, then any other
/// dead instance. Returns the changes the reaping made, per session.
pub async fn register_and_reap(
    store: &dyn Store,
    grace: Duration,
) -> Result<Vec<(String, Change)>, StoreError> {
    let previous = store.register().await?;
    let mut reaped = Vec::new();
    if let Some(previous) = previous {
        tracing::info!(
            previous = %previous,
            "reaping the previous incarnation of this instance name",
        );
        reaped.extend(reap_instance(store, &previous, grace).await?);
    }
    reaped.extend(reap_expired(store, grace).await);
    Ok(reaped)
}
