//! rollcall: a real-time session engine with no ghost participants.
//!
//! WebSocket clients join sessions, see the live member list, and get exactly one leader per
//! session. The architecture (docs/architecture.md §1) shows in the modules: [`actors`] (connection, session,
//! supervisor), [`store`] (the shared state, Memory or Redis), [`protocol`] (the wire contract),
//! [`http`] (routes), [`config`] (flags), [`liveness`] (the liveness flags, checked together),
//! [`engine`] (the engine without HTTP), [`webhooks`] (every change posted to the backend) and
//! [`server`].

/// Logs a failed store operation: at `warn`, or at `debug` when the store is unreachable. An
/// outage is logged once, by the supervisor, when the store's state changes; reporting it again
/// for every request and every tick of every session would flood the log while it lasts.
macro_rules! log_store_failure {
    ($error:expr, $($event:tt)+) => {
        if matches!($error, crate::store::StoreError::Unavailable(_)) {
            tracing::debug!($($event)+)
        } else {
            tracing::warn!($($event)+)
        }
    };
}

pub mod actors;
pub mod admission;
pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
pub mod http;
pub mod ids;
pub mod liveness;
pub mod log_limit;
pub mod metrics;
pub mod model;
pub mod persistence;
pub mod protocol;
pub mod resume;
pub mod rules;
pub mod server;
pub mod store;
pub mod webhooks;
