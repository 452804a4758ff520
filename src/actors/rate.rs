//! Per-connection request rate limit: a token bucket (GCRA, from `governor`) for requests, and a
//! second one for refusals, so a connection that keeps flooding after being told is closed.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// The limiter's clock: tokio's, so that tests with paused time drive it like every other timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// Limits of one connection.
#[derive(Clone, Copy, Debug)]
pub struct RateSettings {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Refused requests within [`ABUSE_WINDOW`] after which the connection is closed.
    pub close_after: u32,
}

/// The window over which refusals are counted.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(10);

/// What the limiter decided about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse this request with `rate_limited`.
    Refuse,
    /// Refuse, and close the connection with 1008: it keeps flooding.
    Close,
}

pub struct RequestLimiter {
    requests: Limiter,
    refusals: Limiter,
}

impl RequestLimiter {
    pub fn new(settings: RateSettings) -> RequestLimiter {
        let nz = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        let requests = Quota::per_second(nz(settings.per_second)).allow_burst(nz(settings.burst));
        let per_refusal = ABUSE_WINDOW / settings.close_after.max(1);
        let refusals = Quota::with_period(per_refusal)
            .unwrap_or_else(|| Quota::per_second(nz(settings.close_after)))
            .allow_burst(nz(settings.close_after));
        RequestLimiter {
            requests: RateLimiter::direct_with_clock(requests, TokioClock),
            refusals: RateLimiter::direct_with_clock(refusals, TokioClock),
        }
    }

    pub fn check(&self) -> Verdict {
        if self.requests.check().is_ok() {
            Verdict::Allow
        } else if self.refusals.check().is_ok() {
            Verdict::Refuse
        } else {
            Verdict::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_then_closes() {
        let limiter = RequestLimiter::new(RateSettings {
            per_second: 1,
            burst: 5,
            close_after: 3,
        });
        let verdicts: Vec<Verdict> = (0..10).map(|_| limiter.check()).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Allow; 5]);
        assert_eq!(&verdicts[5..8], &[Verdict::Refuse; 3]);
        assert_eq!(verdicts[8], Verdict::Close);
    }
}
