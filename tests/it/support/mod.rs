//! Shared helpers of the integration tests (`tests/it`, and `tests/metrics.rs`, which uses a part).
#![allow(dead_code)]

pub mod cluster;
pub mod db;
pub mod idp;
pub mod members;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod raw_ws;
pub mod redis;
pub mod server;
pub mod stand_in;
pub mod urls;
pub mod webhooks;
pub mod ws;

use std::time::Duration;

/// Polls `check` every 50 ms until it holds or `timeout` passes; true if it held.
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
