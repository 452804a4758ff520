//! Which sessions' outboxes got entries lately, on a Redis Cluster, so that the webhook deliverer
//! reads those instead of every listed session's outbox on each pass.
//!
//! On one server a single `EXISTS` over many outbox keys tells which hold entries
//! ([`super::outbox`]); on a cluster every outbox is in a slot of its own, so that would be one
//! command per listed session, every pass. Instead, an instance that writes a change while the
//! outbox is on adds the session to `P:{g}:hints` (scored by store time) once the change is
//! written, at most once per [`HINT_EVERY`] per session. The deliverer's pass reads the sessions
//! hinted since its previous pass (less [`HINT_MARGIN_MS`], which covers the throttle, clock skew
//! and a hint that landed before its entry) and those its previous pass left with entries.
//!
//! A hint is not part of the change's atomic step: an instance dying between the two, or a hint
//! that failed, leaves entries nobody hinted. So a pass reads every listed session, as on one
//! server, when the last such full pass is [`FULL_PASS_MS`] old (or none completed yet): an
//! unhinted entry waits at most that long.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{RedisStore, Result, lock};

/// A session is hinted at most this often by one instance.
pub(super) const HINT_EVERY: Duration = Duration::from_secs(1);
/// A pass reads the sessions hinted since the previous pass began, less this.
pub(super) const HINT_MARGIN_MS: i64 = 3_000;
/// Every listed session is read when the last full pass is this old.
pub(super) const FULL_PASS_MS: i64 = 30_000;
/// Hints older than this are taken away by a full pass.
const HINTS_KEPT_MS: i64 = 600_000;
/// Sessions an instance remembers hinting before it forgets those hinted long ago.
const HINTS_REMEMBERED: usize = 10_000;

/// What this instance hinted, and where its deliverer's passes stand.
#[derive(Default)]
pub(super) struct Hints {
    /// Sessions written since the last flush.
    due: std::sync::Mutex<HashSet<String>>,
    /// When this instance last hinted each session.
    hinted: std::sync::Mutex<HashMap<String, Instant>>,
    passes: std::sync::Mutex<Passes>,
}

#[derive(Default)]
struct Passes {
    /// When the last full pass began (store ms).
    last_full: Option<i64>,
    /// When the previous pass began (store ms).
    last: Option<i64>,
    /// Sessions the previous pass left with entries, or did not get to.
    carry: Vec<String>,
}

/// What a pass reads.
pub(super) enum Pass {
    /// Every listed session.
    Full,
    /// These, in this order.
    Hinted(Vec<String>),
}

impl RedisStore {
    fn hints_apply(&self) -> bool {
        self.conn.is_cluster() && self.keeps_outbox()
    }

    /// A session script that may write a change is about to run on `session`.
    pub(super) fn note_write(&self, session: &str) {
        if !self.hints_apply() {
            return;
        }
        let now = Instant::now();
        {
            let mut hinted = lock(&self.hints.hinted);
            if hinted
                .get(session)
                .is_some_and(|at| now.duration_since(*at) < HINT_EVERY)
            {
                return;
            }
            if hinted.len() >= HINTS_REMEMBERED {
                hinted.retain(|_, at| now.duration_since(*at) < HINT_EVERY);
            }
            hinted.insert(session.to_owned(), now);
        }
        lock(&self.hints.due).insert(session.to_owned());
    }

    /// Sends the hints noted so far, in one command. A failure is only logged: the deliverer's
    /// full passes find what a lost hint would have pointed at.
    pub(super) async fn flush_hints(&self) {
        let due: Vec<String> = lock(&self.hints.due).drain().collect();
        if due.is_empty() {
            return;
        }
        let key = self.keys.hints();
        let now = self.store_clock.store_now_ms();
        let mut zadd = ::redis::cmd("ZADD");
        zadd.arg(&key);
        for session in &due {
            zadd.arg(now).arg(session);
        }
        if let Err(e) = self
            .command("hint", &zadd, std::slice::from_ref(&key))
            .await
        {
            tracing::debug!(error = %e, sessions = due.len(), "outbox hints not written");
        }
    }

    /// What the deliverer's pass beginning at `now` (store ms) reads.
    pub(super) async fn next_pass(&self, now: i64) -> Result<Pass> {
        if !self.conn.is_cluster() {
            return Ok(Pass::Full);
        }
        let (since, mut sessions) = {
            let passes = lock(&self.hints.passes);
            match (passes.last_full, passes.last) {
                (Some(full), Some(last)) if now - full < FULL_PASS_MS => {
                    (last - HINT_MARGIN_MS, passes.carry.clone())
                }
                _ => return Ok(Pass::Full),
            }
        };
        let key = self.keys.hints();
        let mut range = ::redis::cmd("ZRANGEBYSCORE");
        range.arg(&key).arg(since).arg("+inf");
        let hinted = super::reply::array(
            self.command("hints", &range, std::slice::from_ref(&key))
                .await?,
        )?;
        let mut seen: HashSet<String> = sessions.iter().cloned().collect();
        for session in hinted.iter().filter_map(super::reply::text) {
            if seen.insert(session.clone()) {
                sessions.push(session);
            }
        }
        Ok(Pass::Hinted(sessions))
    }

    /// The pass that began at `now` is done; `complete` when it read every session it was to
    /// read; `carry` what the next pass must read again.
    pub(super) async fn pass_done(&self, now: i64, full: bool, complete: bool, carry: Vec<String>) {
        if !self.conn.is_cluster() {
            return;
        }
        {
            let mut passes = lock(&self.hints.passes);
            passes.last = Some(now);
            passes.carry = carry;
            if full && complete {
                passes.last_full = Some(now);
            }
        }
        if full && complete {
            let key = self.keys.hints();
            let mut trim = ::redis::cmd("ZREMRANGEBYSCORE");
            trim.arg(&key).arg("-inf").arg(now - HINTS_KEPT_MS);
            if let Err(e) = self
                .command("hints", &trim, std::slice::from_ref(&key))
                .await
            {
                tracing::debug!(error = %e, "old outbox hints not taken away");
            }
        }
    }
}
