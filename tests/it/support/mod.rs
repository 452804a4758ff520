//! Shared helpers of the integration tests (`tests/it`, and `tests/metrics.rs`, which uses a part).
#![allow(dead_code)]

pub mod cluster;
pub mod db;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod server;
pub mod ws;
