//! rollcall's integration tests, in one binary: linking the whole stack once instead of once per
//! file saves most of the suite's build time on a small machine. One module per concern; shared
//! helpers live in [`support`].
//!
//! Run one module with `cargo test --test it no_ghosts::`.

mod support;

mod actors;
mod auth;
mod autobahn;
mod batched_changes;
mod concurrency;
mod config_checks;
mod grace;
mod history;
mod hostile_input;
mod house;
mod http_conventions;
mod idle_memory;
mod idp;
mod large_sessions;
mod leave_ordering;
mod limits;
mod multi_instance;
mod no_ghosts;
mod paused_time;
mod persistence;
mod planned_changes;
mod protocol_properties;
mod redis_store;
mod resume;
mod server_api;
mod sockets;
mod store_conformance;
mod token_refresh;
mod webhooks;
mod ws_lifecycle;
mod ws_protocol;
mod ws_rfc6455;
