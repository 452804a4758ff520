//! Deadlines in the store's own time, so that a write the store runs too late does nothing.
//!
//! A stalled Redis (stopped, swapping, a long script) keeps what it was sent and runs it when it
//! wakes. By then the instance has given up waiting ([`super::OPERATION_TIMEOUT`]) and told its
//! client that the join failed. A join therefore carries a deadline in Redis time, a little
//! before the instance gives up, and the script refuses to run past it (`lua/session_base.lua`'s
//! `too_late`): the client was told the join failed, and it leaves no trace.
//!
//! The instance learns how far Redis's clock is from its own on every lease renewal (the scripts
//! answer with Redis `TIME`), halving the round trip. Until it knows, no deadline is sent. An
//! estimate that is off only moves the line a little: a join refused early had waited for the
//! store nearly the whole timeout anyway, and one run late is a stray, which the audit removes
//! (`crate::actors::session`'s `Audit`).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use super::OPERATION_TIMEOUT;
use crate::clock::WallClock;

/// How long before the instance gives up a write must have run: time for its answer to arrive.
const ANSWER_MARGIN: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub(super) struct StoreClock {
    /// Redis time minus this instance's wall time, in milliseconds.
    offset_ms: AtomicI64,
    known: AtomicBool,
    wall: WallClock,
}

impl StoreClock {
    /// This instance's wall time, in milliseconds (to bracket a call that reads Redis time).
    pub fn now_ms(&self) -> i64 {
        self.wall.now_ms()
    }

    /// Redis answered `store_ms` to a call sent at `sent_ms` and answered at `received_ms` (this
    /// instance's time).
    pub fn observe(&self, sent_ms: i64, store_ms: i64, received_ms: i64) {
        let midpoint = sent_ms + (received_ms - sent_ms) / 2;
        self.offset_ms.store(store_ms - midpoint, Ordering::Relaxed);
        self.known.store(true, Ordering::Relaxed);
    }

    /// Redis time now, as far as this instance knows it (its own time until the offset is known).
    pub fn store_now_ms(&self) -> i64 {
        self.now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// The deadline of a write sent now, in Redis milliseconds; `''` until the offset is known.
    pub fn deadline(&self) -> String {
        if !self.known.load(Ordering::Relaxed) {
            return String::new();
        }
        let budget = OPERATION_TIMEOUT.saturating_sub(ANSWER_MARGIN).as_millis() as i64;
        (self.now_ms() + self.offset_ms.load(Ordering::Relaxed) + budget).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_deadline_until_the_offset_is_known_then_the_budget_in_store_time() {
        let clock = StoreClock {
            wall: WallClock::manual(10_000),
            ..StoreClock::default()
        };
        assert_eq!(clock.deadline(), "");
        // Redis is 500 ms ahead; the call took 40 ms.
        clock.observe(10_000, 10_520, 10_040);
        let budget = (OPERATION_TIMEOUT - ANSWER_MARGIN).as_millis() as i64;
        assert_eq!(clock.deadline(), (10_500 + budget).to_string());
    }
}
