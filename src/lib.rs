//! rollcall: a real-time session engine with no ghost participants.
//!
//! WebSocket clients join sessions, see the live member list, and get exactly one leader per
//! session. The architecture (DESIGN.md §1) shows in the modules: [`actors`] (connection, session,
//! supervisor), [`store`] (the shared state, Memory or Redis), [`protocol`] (the wire contract),
//! [`http`] (routes), [`config`] (flags), [`engine`] (the engine without HTTP) and [`server`].

pub mod actors;
pub mod auth;
pub mod config;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod model;
pub mod persistence;
pub mod protocol;
pub mod server;
pub mod store;
