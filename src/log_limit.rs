//! Log lines that clients can cause, rate-limited so that a flood of them cannot flood the log.
//!
//! A client decides how many bad frames, refused tokens, rate-limited requests and broken
//! WebSocket handshakes it sends; the server decides how many log lines that costs. Such lines go
//! through [`log_limited!`](crate::log_limited) and a [`LogLimiter`]: at most `per_window` lines per
//! window (one second for [`CLIENT_ERRORS`]), and the first line let through after some were held
//! back says how many in its `suppressed` field, so nothing disappears without a trace.
//!
//! The limiter runs on tokio's clock, so a test with paused time can step through windows.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The limiter of every client-caused log line: 20 per second across the whole process.
pub static CLIENT_ERRORS: LogLimiter = LogLimiter::new(20, Duration::from_secs(1));

/// Lets at most `per_window` log lines through per window and counts the others.
#[derive(Debug)]
pub struct LogLimiter {
    per_window: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Start of the current window; `None` before the first line.
    started: Option<Instant>,
    /// Lines let through in the current window.
    used: u32,
    /// Lines held back since the last line that was let through.
    suppressed: u64,
    /// Lines held back since the start, for tests and curious operators.
    suppressed_total: u64,
}

impl LogLimiter {
    pub const fn new(per_window: u32, window: Duration) -> LogLimiter {
        LogLimiter {
            per_window,
            window,
            state: Mutex::new(State {
                started: None,
                used: 0,
                suppressed: 0,
                suppressed_total: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were held back since the last
    /// one written (the line should say so); `None` when this one is held back.
    pub fn admit(&self) -> Option<u64> {
        // A poisoned lock only means another thread panicked while counting: the counts are
        // still usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let fresh = state
            .started
            .is_none_or(|started| now.duration_since(started) >= self.window);
        if fresh {
            state.started = Some(now);
            state.used = 0;
        }
        if state.used < self.per_window {
            state.used += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            state.suppressed_total += 1;
            None
        }
    }

    /// Lines held back since the process started.
    pub fn suppressed_total(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .suppressed_total
    }
}

/// Logs a line that a client caused, through [`CLIENT_ERRORS`] (or the limiter given first):
/// `log_limited!(tracing::Level::DEBUG, connection = %id, "bad request")`. A level that is not
/// enabled costs nothing and uses none of the limiter's budget. Lines written after some were
/// held back carry `suppressed = n`.
#[macro_export]
macro_rules! log_limited {
    (limiter: $limiter:expr, $level:expr, $($event:tt)+) => {
        if ::tracing::enabled!($level)
            && let Some(suppressed) = $limiter.admit()
        {
            if suppressed > 0 {
                ::tracing::event!($level, suppressed, $($event)+);
            } else {
                ::tracing::event!($level, $($event)+);
            }
        }
    };
    ($level:expr, $($event:tt)+) => {
        $crate::log_limited!(limiter: $crate::log_limit::CLIENT_ERRORS, $level, $($event)+)
    };
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_most_n_per_window_and_the_next_line_counts_the_rest() {
        let limiter = LogLimiter::new(3, Duration::from_secs(1));
        let admitted: Vec<Option<u64>> = (0..10).map(|_| limiter.admit()).collect();
        assert_eq!(admitted[..3], [Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none), "{admitted:?}");
        assert_eq!(limiter.suppressed_total(), 7);

        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(limiter.admit(), None, "still the same window");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            limiter.admit(),
            Some(8),
            "the first line of a window counts the held ones"
        );
        assert_eq!(limiter.admit(), Some(0));
        assert_eq!(limiter.suppressed_total(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_flood_writes_n_lines_per_window() {
        let limiter = LogLimiter::new(5, Duration::from_secs(1));
        let mut written = 0;
        // 60 seconds of a flood at 1,000 lines per second.
        for _ in 0..60 {
            for _ in 0..1000 {
                written += u32::from(limiter.admit().is_some());
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(written, 5 * 60);
        assert_eq!(limiter.suppressed_total(), 60 * 995);
    }

    /// A `MakeWriter` that keeps every formatted line.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("the capture lock")
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_through_the_macro_writes_a_bounded_number_of_lines() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        let limiter = LogLimiter::new(4, Duration::from_secs(1));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..1000 {
                crate::log_limited!(limiter: limiter, tracing::Level::WARN, frame = i, "bad frame");
            }
            // Not enabled here: uses no budget.
            crate::log_limited!(limiter: limiter, tracing::Level::TRACE, "never written");
        });
        tokio::time::advance(Duration::from_secs(1)).await;
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            crate::log_limited!(limiter: limiter, tracing::Level::WARN, "bad frame");
        });
        let text = String::from_utf8(captured.0.lock().expect("the capture lock").clone())
            .expect("UTF-8 log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines.iter().all(|l| l.contains(" WARN ")), "{text}");
        assert!(lines[4].contains("suppressed=996"), "{text}");
        assert!(!text.contains("never written"));
    }
}
