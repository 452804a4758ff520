//! Shared helpers of the integration tests. Each test binary uses only part of them.
#![allow(dead_code)]

pub mod db;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod server;
pub mod ws;
