//! Wall-clock time, behind a handle that tests can set.
//!
//! Timers (heartbeats, leases of the in-process store, batch windows, timeouts) run on tokio's
//! clock, which a test pauses and advances. Stamps that clients see (`joined_at`, `ended_at`) are
//! wall-clock milliseconds since the Unix epoch instead; they come from a [`WallClock`], the
//! system's by default, or a [`WallClock::manual`] one a test sets and moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, from the system or from a test.
#[derive(Clone, Debug, Default)]
pub struct WallClock {
    /// `None`: the system's clock.
    manual: Option<Arc<AtomicI64>>,
}

impl WallClock {
    /// The system's clock.
    pub fn system() -> WallClock {
        WallClock::default()
    }

    /// A clock that reads `start_ms` until a test moves it ([`WallClock::advance`],
    /// [`WallClock::set`]). Clones share it.
    pub fn manual(start_ms: i64) -> WallClock {
        WallClock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(now) => now.load(Ordering::SeqCst),
            None => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Moves a manual clock forward by `ms` (a system clock is left as it is).
    pub fn advance(&self, ms: i64) {
        if let Some(now) = &self.manual {
            now.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock (a system clock is left as it is).
    pub fn set(&self, ms: i64) {
        if let Some(now) = &self.manual {
            now.store(ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_reads_what_it_was_set_to_and_clones_share_it() {
        let clock = WallClock::manual(1_000);
        let shared = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(shared.now_ms(), 1_250);
        shared.set(5);
        assert_eq!(clock.now_ms(), 5);
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = chrono::Utc::now().timestamp_millis();
        let read = WallClock::system().now_ms();
        let after = chrono::Utc::now().timestamp_millis();
        assert!(before <= read && read <= after);
    }
}
