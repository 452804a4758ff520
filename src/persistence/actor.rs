//! The PersistenceActor (docs/architecture.md §2.4): one per instance, the only writer of participation records.
//!
//! It receives every [`RecordChange`] the engine makes and folds it into a pending [`Batch`] at
//! once (cheap, in memory), so the engine never waits for the database. At most one flush runs at
//! a time, on tokio's blocking pool (never on an actix arbiter thread): it takes the whole pending
//! set and writes it in one transaction. Whatever arrives while a flush runs is coalesced and goes
//! in the next one, so batches grow by themselves under load and stay small when idle.
//!
//! A failed flush is merged back in front of the newer writes and retried with capped exponential
//! backoff; a periodic ping notices the database's return sooner than the backoff would. Nothing is
//! dropped while the process runs, and memory stays bounded by the number of distinct pending
//! (session, user) pairs. Only a graceful stop gives up, after its deadline, and logs what it could
//! not write.

use std::time::Duration;

use tokio::time::Instant;

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, MessageResponse,
    ResponseFuture, SpawnHandle, WrapFuture,
};
use tokio::sync::oneshot;

use super::batch::Batch;
use super::database::{Database, DatabaseError};
use crate::actors::RecordChange;

/// Timings of the actor.
#[derive(Clone, Debug)]
pub struct PersistenceSettings {
    /// First retry delay after a failed flush.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// How often the database is pinged (for `/readyz`, and to retry early when it is back).
    pub health_interval: Duration,
}

impl Default for PersistenceSettings {
    fn default() -> PersistenceSettings {
        PersistenceSettings {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
        }
    }
}

/// What `/readyz` and operators see of the database.
#[derive(Clone, Debug, PartialEq, Eq, MessageResponse)]
pub struct DatabaseHealth {
    pub backend: &'static str,
    pub up: bool,
    /// Distinct pending keys (sessions plus (session, user) pairs) waiting for the next flush.
    pub pending: usize,
    /// Keys in the flush now running (at most one flush runs at a time).
    pub in_flight: usize,
    pub last_error: Option<String>,
    /// Participant entries written since start.
    pub written: u64,
    /// Successful flushes since start.
    pub flushes: u64,
}

#[derive(Message)]
#[rtype(result = "DatabaseHealth")]
pub struct GetDatabaseHealth;

/// Resolves when nothing is pending and no flush is in flight (at once when idle).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Gives up on every pending write, logging each; returns how many keys were given up.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Abandon;

pub struct PersistenceActor {
    db: Database,
    settings: PersistenceSettings,
    pending: Batch,
    /// Keys in the flush now running.
    in_flight: Option<usize>,
    failures: u32,
    retry: Option<SpawnHandle>,
    pinging: bool,
    up: bool,
    last_error: Option<String>,
    written: u64,
    flushes: u64,
    drained: Vec<oneshot::Sender<()>>,
    down_since: Option<Instant>,
}

/// What one flush did, reported from the blocking thread.
struct FlushOutcome {
    written: usize,
    /// Entries the database refused for good (schema violations), already logged.
    refused: usize,
    /// The part not written because the database failed, and why.
    failed: Option<(Batch, DatabaseError)>,
}

impl PersistenceActor {
    pub fn new(db: Database, settings: PersistenceSettings) -> PersistenceActor {
        PersistenceActor {
            db,
            settings,
            pending: Batch::default(),
            in_flight: None,
            failures: 0,
            retry: None,
            pinging: false,
            up: true,
            last_error: None,
            written: 0,
            flushes: 0,
            drained: Vec::new(),
            down_since: None,
        }
    }

    fn backoff(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(20);
        self.settings
            .backoff_min
            .saturating_mul(1u32 << exp)
            .min(self.settings.backoff_max)
    }

    fn set_up(&mut self, up: bool, error: Option<String>) {
        if up && !self.up {
            let outage = self.down_since.take().map(|t| t.elapsed());
            tracing::info!(
                backend = self.db.backend(),
                ?outage,
                pending = self.pending.len(),
                "database reachable again"
            );
        } else if !up && self.up {
            self.down_since = Some(Instant::now());
            tracing::error!(
                backend = self.db.backend(),
                error = error.as_deref().unwrap_or(""),
                "database unreachable; participation writes are kept and retried"
            );
        }
        self.up = up;
        if error.is_some() || up {
            self.last_error = error;
        }
    }

    /// Starts a flush of everything pending, unless one is running or a retry is waiting.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() || self.retry.is_some() {
            return;
        }
        if self.pending.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        self.in_flight = Some(batch.len());
        let db = self.db.clone();
        let backup = batch.clone();
        let task = actix_web::rt::task::spawn_blocking(move || write_batch(&db, batch));
        ctx.spawn(task.into_actor(self).map(move |joined, act, ctx| {
            act.in_flight = None;
            let outcome = joined.unwrap_or_else(|e| FlushOutcome {
                written: 0,
                refused: 0,
                failed: Some((
                    backup,
                    DatabaseError::Unavailable {
                        backend: act.db.backend(),
                        reason: format!("the writer thread failed: {e}"),
                    },
                )),
            });
            act.flushed(outcome, ctx);
        }));
    }

    /// Participation writes not yet committed (pending plus in flight), for `/metrics`.
    fn report_pending(&self) {
        let waiting = self.pending.len() + self.in_flight.unwrap_or(0);
        metrics::gauge!(crate::metrics::PERSISTENCE_PENDING).set(waiting as f64);
    }

    fn flushed(&mut self, outcome: FlushOutcome, ctx: &mut Context<Self>) {
        self.written += outcome.written as u64;
        metrics::counter!(crate::metrics::PERSISTENCE_FLUSHED).increment(outcome.written as u64);
        match outcome.failed {
            None => {
                self.flushes += 1;
                self.failures = 0;
                if outcome.refused == 0 {
                    self.set_up(true, None);
                }
                self.flush(ctx);
            }
            Some((unwritten, error)) => {
                // The unwritten part is older than anything that arrived meanwhile.
                let newer = std::mem::take(&mut self.pending);
                self.pending = unwritten.then(newer);
                self.failures = self.failures.saturating_add(1);
                self.set_up(false, Some(error.to_string()));
                let delay = self.backoff();
                tracing::debug!(
                    ?delay,
                    pending = self.pending.len(),
                    error = %error,
                    "flush failed; retrying",
                );
                metrics::counter!(crate::metrics::PERSISTENCE_RETRIES).increment(1);
                self.retry = Some(ctx.run_later(delay, |act, ctx| {
                    act.retry = None;
                    act.flush(ctx);
                }));
            }
        }
        self.report_pending();
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        if self.pinging || self.in_flight.is_some() {
            return;
        }
        self.pinging = true;
        let db = self.db.clone();
        let timeout = self
            .settings
            .health_interval
            .max(Duration::from_millis(200));
        let task = actix_web::rt::task::spawn_blocking(move || db.ping(timeout));
        ctx.spawn(task.into_actor(self).map(|result, act, ctx| {
            act.pinging = false;
            match result {
                Ok(Ok(())) => {
                    if let Some(retry) = act.retry.take() {
                        // Back before the backoff ran out: write now.
                        ctx.cancel_future(retry);
                        act.set_up(true, None);
                        act.flush(ctx);
                    } else if act.in_flight.is_none() && act.failures == 0 {
                        act.set_up(true, None);
                    }
                }
                Ok(Err(e)) => act.set_up(false, Some(e.to_string())),
                Err(e) => act.set_up(false, Some(format!("the ping thread failed: {e}"))),
            }
        }));
    }
}

/// Writes `batch`; when the database refuses it for good, writes it entry by entry so that only
/// the refused entries are lost (and logged). Runs on a blocking thread.
fn write_batch(db: &Database, batch: Batch) -> FlushOutcome {
    let keys = batch.participants.len();
    let error = match db.write(&batch) {
        Ok(()) => {
            return FlushOutcome {
                written: keys,
                refused: 0,
                failed: None,
            };
        }
        Err(e) if !e.is_permanent() => {
            return FlushOutcome {
                written: 0,
                refused: 0,
                failed: Some((batch, e)),
            };
        }
        Err(e) => e,
    };
    tracing::warn!(error = %error, "the database refused a batch; writing it entry by entry");
    let mut singles: Vec<Batch> = Vec::new();
    for (session, op) in &batch.sessions {
        let mut single = Batch::default();
        single.sessions.insert(session.clone(), op.clone());
        singles.push(single);
    }
    for (key, op) in &batch.participants {
        let mut single = Batch::default();
        single.participants.insert(key.clone(), op.clone());
        singles.push(single);
    }
    let mut outcome = FlushOutcome {
        written: 0,
        refused: 0,
        failed: None,
    };
    let mut rest = singles.into_iter();
    for single in rest.by_ref() {
        match db.write(&single) {
            Ok(()) => outcome.written += single.participants.len(),
            Err(e) if e.is_permanent() => {
                outcome.refused += 1;
                tracing::error!(
                    error = %e,
                    entry = ?single,
                    "participation write refused by the database; dropped",
                );
            }
            Err(e) => {
                let remaining = rest.fold(single, Batch::then);
                outcome.failed = Some((remaining, e));
                break;
            }
        }
    }
    outcome
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.health_interval, |act, ctx| act.ping(ctx));
    }
}

impl Handler<RecordChange> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: RecordChange, ctx: &mut Context<Self>) {
        self.pending
            .record(&msg.session, &msg.change, chrono::Utc::now());
        self.flush(ctx);
        self.report_pending();
    }
}

impl Handler<GetDatabaseHealth> for PersistenceActor {
    type Result = DatabaseHealth;

    fn handle(&mut self, _: GetDatabaseHealth, _: &mut Context<Self>) -> DatabaseHealth {
        DatabaseHealth {
            backend: self.db.backend(),
            up: self.up,
            pending: self.pending.len(),
            in_flight: self.in_flight.unwrap_or(0),
            last_error: self.last_error.clone(),
            written: self.written,
            flushes: self.flushes,
        }
    }
}

impl Handler<Drain> for PersistenceActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        if let Some(retry) = self.retry.take() {
            ctx.cancel_future(retry);
        }
        self.flush(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<Abandon> for PersistenceActor {
    type Result = usize;

    fn handle(&mut self, _: Abandon, _: &mut Context<Self>) -> usize {
        let pending = std::mem::take(&mut self.pending);
        let count = pending.len() + self.in_flight.unwrap_or(0);
        if count == 0 {
            return 0;
        }
        const LOGGED: usize = 100;
        for ((session, user), op) in pending.participants.iter().take(LOGGED) {
            tracing::error!(
                %session,
                %user,
                joins = op.joins,
                first_join = ?op.first_join,
                last_join = ?op.last_join,
                last_left = ?op.last_left,
                "participation record not written before the stop deadline",
            );
        }
        for (session, op) in pending.sessions.iter().take(LOGGED) {
            tracing::error!(
                %session,
                ended_at = ?op.ended_at,
                last_active = %op.last_active,
                "session record not written before the stop deadline",
            );
        }
        tracing::error!(
            participants = pending.participants.len(),
            sessions = pending.sessions.len(),
            in_flight = self.in_flight.unwrap_or(0),
            "gave up on participation writes at shutdown"
        );
        count
    }
}
