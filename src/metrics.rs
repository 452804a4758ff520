//! Prometheus metrics: the names, one process-wide recorder, and the `/metrics` text.
//!
//! The `metrics` macros are no-ops until [`install`] runs, so the library and its tests work
//! without a recorder. The recorder is process-global: every server in one process shares it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS: &str = "rollcall_connections";
pub const SESSIONS: &str = "rollcall_sessions";
pub const MEMBERS_LOCAL: &str = "rollcall_members_local";
pub const JOINS: &str = "rollcall_joins_total";
pub const LEAVES: &str = "rollcall_leaves_total";
pub const MEMBERS_REAPED: &str = "rollcall_members_reaped_total";
pub const REAPER_PASS_SECONDS: &str = "rollcall_reaper_pass_seconds";
pub const LEASE_RENEWAL_FAILURES: &str = "rollcall_lease_renewal_failures_total";
pub const STORE_OP_SECONDS: &str = "rollcall_store_op_seconds";
pub const STORE_ERRORS: &str = "rollcall_store_errors_total";
pub const EVENT_GAPS: &str = "rollcall_event_gaps_total";
pub const RESYNCS: &str = "rollcall_resyncs_total";
pub const FRAMES_IN: &str = "rollcall_frames_in_total";
pub const FRAMES_OUT: &str = "rollcall_frames_out_total";
pub const ERRORS: &str = "rollcall_errors_total";
pub const RATE_LIMITED: &str = "rollcall_rate_limited_total";
pub const PERSISTENCE_PENDING: &str = "rollcall_persistence_pending";
pub const PERSISTENCE_FLUSHED: &str = "rollcall_persistence_flushed_total";
pub const PERSISTENCE_RETRIES: &str = "rollcall_persistence_retries_total";
pub const BATCHES_WRITTEN: &str = "rollcall_membership_batches_total";
pub const BATCHED_CHANGES: &str = "rollcall_membership_batched_changes_total";
pub const WEBHOOK_EVENTS_PENDING: &str = "rollcall_webhook_events_pending";
pub const WEBHOOK_EVENTS_DELIVERED: &str = "rollcall_webhook_events_delivered_total";
pub const WEBHOOK_EVENTS_RETRIED: &str = "rollcall_webhook_events_retried_total";
pub const WEBHOOK_EVENTS_DROPPED: &str = "rollcall_webhook_events_dropped_total";
pub const WEBHOOK_LATENCY_SECONDS: &str = "rollcall_webhook_delivery_latency_seconds";

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A webhook event waits from its change to its acknowledgement: network round trips normally,
/// minutes while the receiver is down.
const WEBHOOK_LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (`None` if another recorder was
/// installed first, in which case `/metrics` says so).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    // A full name wins over a suffix.
                    b.set_buckets_for_metric(
                        Matcher::Full(WEBHOOK_LATENCY_SECONDS.into()),
                        WEBHOOK_LATENCY_BUCKETS,
                    )
                })
                .map_err(|e| tracing::error!(error = %e, "metrics buckets rejected"))
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not install the metrics recorder");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open WebSocket connections on this instance");
    describe_gauge!(SESSIONS, "Sessions with local members on this instance");
    describe_gauge!(MEMBERS_LOCAL, "Memberships held by this instance");
    describe_counter!(JOINS, "Joins that added a member");
    describe_counter!(LEAVES, "Memberships ended, by reason");
    describe_counter!(
        MEMBERS_REAPED,
        "Members of dead instances removed by this instance"
    );
    describe_histogram!(REAPER_PASS_SECONDS, "Duration of reaping one dead instance");
    describe_counter!(LEASE_RENEWAL_FAILURES, "Lease renewals that failed");
    describe_histogram!(
        STORE_OP_SECONDS,
        "Latency of store operations, by operation"
    );
    describe_counter!(STORE_ERRORS, "Store operations that failed, by operation");
    describe_counter!(
        EVENT_GAPS,
        "Changes that did not follow the last version seen (gaps)"
    );
    describe_counter!(RESYNCS, "Snapshots read to re-synchronise local clients");
    describe_counter!(FRAMES_IN, "WebSocket frames received");
    describe_counter!(FRAMES_OUT, "WebSocket frames sent");
    describe_counter!(ERRORS, "Error replies sent, by code");
    describe_counter!(
        BATCHES_WRITTEN,
        "Store calls that wrote several queued joins and leaves of a session at once"
    );
    describe_counter!(BATCHED_CHANGES, "Joins and leaves written in such batches");
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by the per-connection rate limit"
    );
    describe_gauge!(
        PERSISTENCE_PENDING,
        "Participation writes waiting for the database"
    );
    describe_counter!(PERSISTENCE_FLUSHED, "Participation writes committed");
    describe_counter!(
        PERSISTENCE_RETRIES,
        "Database flushes retried after a failure"
    );
    describe_gauge!(
        WEBHOOK_EVENTS_PENDING,
        "Webhook events waiting in the outboxes, as the deliverer's last read saw them"
    );
    describe_counter!(
        WEBHOOK_EVENTS_DELIVERED,
        "Webhook events acknowledged by the receiver"
    );
    describe_counter!(
        WEBHOOK_EVENTS_RETRIED,
        "Webhook events whose delivery failed and is retried"
    );
    describe_counter!(
        WEBHOOK_EVENTS_DROPPED,
        "Webhook events dropped undelivered after the retention"
    );
    describe_histogram!(
        WEBHOOK_LATENCY_SECONDS,
        "From a change to the receiver's acknowledgement of its webhook event"
    );
}

/// Counts the joins and leaves (by reason) of a change this instance made.
pub fn count_change(change: &crate::model::Change) {
    use crate::model::Event;
    for event in &change.events {
        match event {
            Event::MemberJoined { .. } => metrics::counter!(JOINS).increment(1),
            Event::MemberLeft { reason, .. } => {
                metrics::counter!(LEAVES, "reason" => reason.as_str()).increment(1)
            }
            _ => {}
        }
    }
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    match install() {
        Some(handle) => handle.render(),
        None => "# metrics recorder unavailable in this process\n".to_owned(),
    }
}
