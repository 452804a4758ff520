//! The deliverer: one actor per instance that posts the outboxes' events to the receiver.
//!
//! Only the holder of the delivery right delivers ([`Outbox::hold_delivery`], renewed every fifth
//! of its time to live), so every session's events leave in order from one place; when the holder
//! dies, its right runs out and any live instance takes over from what the store still holds.
//!
//! Each step is one of: read the outboxes and choose a batch ([`super::batch`]), POST it, or
//! acknowledge it. A batch that failed (any answer but 2xx, or none within the timeout) is kept
//! and posted again, unchanged, after a backoff (1 s doubling, at most 60 s), before anything
//! newer is read. Its entries are acknowledged in the store only after a 2xx. The deliverer only
//! reads and trims outboxes: it never waits on a session actor, nor they on it.
//!
//! Timers run on tokio's clock, so tests can pause it; event times and the retention are store
//! (wall-clock) milliseconds from a [`WallClock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::batch::{Acknowledgement, Batch, MAX_EVENTS, Progress, plan};
use super::signature;
use super::transport::Transport;
use crate::clock::WallClock;
use crate::metrics::{
    WEBHOOK_EVENTS_DELIVERED, WEBHOOK_EVENTS_DROPPED, WEBHOOK_EVENTS_PENDING,
    WEBHOOK_EVENTS_RETRIED, WEBHOOK_LATENCY_SECONDS,
};
use crate::store::{Outbox, StoreError};

/// Sessions read per step, and entries per session. Every entry holds at least one event, so a
/// few sessions' heads fill a batch of 100 events; reading more than a batch holds would make
/// Redis send entries again and again while a busy session's outbox drains.
const READ_SESSIONS: usize = 100;
const READ_PER_SESSION: usize = 8;

/// How the deliverer paces itself.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Entries older than this are dropped (`--webhook-retention-ms`).
    pub retention: Duration,
    /// Time to live of the delivery right; renewed every fifth of it. A dead holder's events wait
    /// at most this long for another instance.
    pub lease: Duration,
    /// Pause between reads while there is nothing to deliver.
    pub idle_poll: Duration,
    /// Pause after a batch that was not full: more events gather for the next one, so that a
    /// steady trickle costs fewer reads and posts. The added latency is at most this.
    pub gather: Duration,
    /// Longest wait for the receiver's answer.
    pub timeout: Duration,
    /// First retry delay; doubles with every failure of one batch, up to `max_retry`.
    pub first_retry: Duration,
    pub max_retry: Duration,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            retention: Duration::from_millis(3_600_000),
            lease: Duration::from_secs(5),
            idle_poll: Duration::from_millis(300),
            gather: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
        }
    }
}

impl DeliverySettings {
    /// The wait after the `failures`-th failure of one batch.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.max_retry)
    }
}

/// What this deliverer did, in events (the metrics count the same, process-wide).
#[derive(Debug, Default)]
pub struct DeliveryCounts {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dropped: AtomicU64,
}

impl DeliveryCounts {
    /// Adds `events` to `counter`; returns them, for the metric.
    fn add(counter: &AtomicU64, events: usize) -> u64 {
        counter.fetch_add(events as u64, Ordering::Relaxed);
        events as u64
    }
}

/// Until when this instance may deliver, shared with the running step.
#[derive(Clone, Default)]
struct Right(Arc<Mutex<Option<Instant>>>);

impl Right {
    fn held(&self) -> bool {
        self.until().is_some_and(|until| Instant::now() < until)
    }

    fn until(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, until: Option<Instant>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }
}

/// The batch being delivered, kept unchanged for its retries.
#[derive(Clone)]
struct InFlight {
    batch: Batch,
    body: Vec<u8>,
    failures: u32,
    /// The receiver acknowledged it; what is left is to acknowledge it in the store.
    delivered: bool,
    /// Store acknowledgements not yet made (a store failure halfway leaves the rest here).
    to_acknowledge: Vec<Acknowledgement>,
}

/// How a step ended.
enum Outcome {
    /// Nothing to deliver, or not ours to deliver.
    Idle,
    /// Delivered and acknowledged: the next step may start at once.
    Delivered(Batch),
    /// Entries were dropped, or an expired batch abandoned: read again at once.
    Again,
    /// The receiver failed: post the same batch again after the delay.
    Failed(InFlight, Duration),
    /// The store failed: try again after the idle pause, keeping the batch if there is one.
    StoreFailed(Option<InFlight>),
}

/// What a step needs, cloned into its future.
#[derive(Clone)]
struct Steps {
    outbox: Arc<dyn Outbox>,
    transport: Arc<dyn Transport>,
    secret: Arc<[u8]>,
    settings: DeliverySettings,
    clock: WallClock,
    right: Right,
    counts: Arc<DeliveryCounts>,
}

impl Steps {
    async fn run(self, current: Option<InFlight>, progress: Progress) -> Outcome {
        let mut current = match current {
            Some(current) => current,
            None => match self.read(&progress).await {
                Ok(Some(batch)) => self.in_flight(batch),
                Ok(None) => return Outcome::Idle,
                Err(ReadOutcome::Again) => return Outcome::Again,
                Err(ReadOutcome::Store(e)) => {
                    log_store_failure!(e, error = %e, "webhooks: could not read the outboxes");
                    return Outcome::StoreFailed(None);
                }
            },
        };
        if !current.delivered {
            let age = self.clock.now_ms().saturating_sub(current.batch.oldest_at);
            if age > retention_ms(&self.settings) {
                // Read again: the entries past the retention are dropped, the rest re-batched.
                return Outcome::Again;
            }
            if !self.right.held() {
                return Outcome::Idle;
            }
            match self.post(&current).await {
                Ok(()) => current.delivered = true,
                Err(reason) => {
                    current.failures += 1;
                    let delay = self.settings.backoff(current.failures);
                    let events = current.batch.events.len();
                    metrics::counter!(WEBHOOK_EVENTS_RETRIED)
                        .increment(DeliveryCounts::add(&self.counts.retried, events));
                    tracing::warn!(
                        events = current.batch.events.len(),
                        failures = current.failures,
                        retry_in = ?delay,
                        %reason,
                        "webhooks: delivery failed",
                    );
                    return Outcome::Failed(current, delay);
                }
            }
        }
        while let Some(done) = current.to_acknowledge.first() {
            if !self.right.held() {
                // Another instance may deliver these now; it starts from the store's copy.
                return Outcome::Idle;
            }
            let acknowledged = self
                .outbox
                .acknowledge(&done.session, done.through, done.entries)
                .await;
            if let Err(e) = acknowledged {
                log_store_failure!(e, error = %e, "webhooks: could not acknowledge a batch");
                return Outcome::StoreFailed(Some(current));
            }
            current.to_acknowledge.remove(0);
        }
        let now = self.clock.now_ms();
        for event in &current.batch.events {
            let latency = now.saturating_sub(event.at_ms).max(0) as f64 / 1000.0;
            metrics::histogram!(WEBHOOK_LATENCY_SECONDS).record(latency);
        }
        let events = current.batch.events.len();
        metrics::counter!(WEBHOOK_EVENTS_DELIVERED)
            .increment(DeliveryCounts::add(&self.counts.delivered, events));
        Outcome::Delivered(current.batch)
    }

    /// Reads the outboxes, drops what is too old, and returns the next batch.
    async fn read(&self, progress: &Progress) -> Result<Option<Batch>, ReadOutcome> {
        let pending = self
            .outbox
            .pending(READ_SESSIONS, READ_PER_SESSION, MAX_EVENTS)
            .await
            .map_err(ReadOutcome::Store)?;
        let plan = plan(
            &pending,
            progress,
            self.clock.now_ms(),
            retention_ms(&self.settings),
        );
        metrics::gauge!(WEBHOOK_EVENTS_PENDING).set(plan.pending_events as f64);
        if plan.drops.is_empty() {
            return Ok(plan.batch);
        }
        for expired in &plan.drops {
            if !self.right.held() {
                return Err(ReadOutcome::Again);
            }
            let done = &expired.acknowledgement;
            self.outbox
                .acknowledge(&done.session, done.through, done.entries)
                .await
                .map_err(ReadOutcome::Store)?;
            metrics::counter!(WEBHOOK_EVENTS_DROPPED)
                .increment(DeliveryCounts::add(&self.counts.dropped, expired.events));
            tracing::warn!(
                session = %expired.acknowledgement.session,
                events = expired.events,
                "webhooks: events older than the retention dropped undelivered",
            );
        }
        // The batch was chosen before the drops; choose it again from what is left.
        Err(ReadOutcome::Again)
    }

    fn in_flight(&self, batch: Batch) -> InFlight {
        let body = serde_json::to_vec(&serde_json::json!({ "events": &batch.events }))
            .unwrap_or_else(|_| unreachable!("webhook events always serialize"));
        InFlight {
            to_acknowledge: batch.complete.clone(),
            batch,
            body,
            failures: 0,
            delivered: false,
        }
    }

    /// POSTs the batch, signed now; Ok on a 2xx within the timeout.
    async fn post(&self, current: &InFlight) -> Result<(), String> {
        let now_s = self.clock.now_ms().div_euclid(1000);
        let header = signature::sign(&self.secret, now_s, &current.body);
        let sent = self.transport.post(current.body.clone(), header);
        match tokio::time::timeout(self.settings.timeout, sent).await {
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(format!("the receiver answered {status}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.settings.timeout)),
        }
    }
}

enum ReadOutcome {
    Again,
    Store(StoreError),
}

fn retention_ms(settings: &DeliverySettings) -> i64 {
    i64::try_from(settings.retention.as_millis()).unwrap_or(i64::MAX)
}

/// The deliverer actor.
pub struct Deliverer {
    steps: Steps,
    progress: Progress,
    current: Option<InFlight>,
    /// The running step, cancelled when the right is lost.
    step: Option<SpawnHandle>,
    /// The timer of the next step.
    next: Option<SpawnHandle>,
    /// [`Drain`]s waiting for a step that finds nothing to deliver.
    drains: Vec<oneshot::Sender<()>>,
}

impl Deliverer {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        transport: Arc<dyn Transport>,
        secret: &[u8],
        settings: DeliverySettings,
        clock: WallClock,
    ) -> Deliverer {
        Deliverer {
            steps: Steps {
                outbox,
                transport,
                secret: Arc::from(secret),
                settings,
                clock,
                right: Right::default(),
                counts: Arc::default(),
            },
            progress: Progress::default(),
            current: None,
            step: None,
            next: None,
            drains: Vec::new(),
        }
    }

    /// What this deliverer did so far.
    pub fn counts(&self) -> Arc<DeliveryCounts> {
        self.steps.counts.clone()
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        let outbox = self.steps.outbox.clone();
        let lease = self.steps.settings.lease;
        let asked = Instant::now();
        let renewal = async move { outbox.hold_delivery(lease).await };
        ctx.spawn(renewal.into_actor(self).map(move |held, actor, ctx| {
            let right = &actor.steps.right;
            match held {
                Ok(true) => {
                    if right.until().is_none() {
                        tracing::info!("webhooks: this instance delivers");
                    }
                    right.set(Some(asked + lease));
                }
                Ok(false) => actor.lose(ctx),
                Err(e) => {
                    log_store_failure!(e, error = %e, "webhooks: could not renew the delivery right");
                    // Give up before the right can run out while a step runs.
                    let margin = lease / 5 * 2;
                    if right.until().is_some_and(|until| Instant::now() + margin >= until) {
                        actor.lose(ctx);
                    }
                }
            }
        }));
    }

    /// The right is lost or about to be: stop at once, and forget what the store still holds.
    fn lose(&mut self, ctx: &mut Context<Self>) {
        if self.steps.right.until().is_some() {
            tracing::info!("webhooks: this instance no longer delivers");
        }
        self.steps.right.set(None);
        if let Some(step) = self.step.take() {
            ctx.cancel_future(step);
        }
        self.current = None;
        self.progress = Progress::default();
        self.schedule(ctx, self.steps.settings.idle_poll);
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        if let Some(next) = self.next.take() {
            ctx.cancel_future(next);
        }
        self.next = Some(ctx.run_later(delay, |actor, ctx| {
            actor.next = None;
            actor.start_step(ctx);
        }));
    }

    fn start_step(&mut self, ctx: &mut Context<Self>) {
        if self.step.is_some() {
            return;
        }
        if !self.steps.right.held() {
            self.finish(Outcome::Idle, ctx);
            return;
        }
        let run = self
            .steps
            .clone()
            .run(self.current.take(), self.progress.clone());
        self.step = Some(ctx.spawn(run.into_actor(self).map(|outcome, actor, ctx| {
            actor.step = None;
            actor.finish(outcome, ctx);
        })));
    }

    fn finish(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        let idle = self.steps.settings.idle_poll;
        match outcome {
            Outcome::Idle => {
                self.answer_drains();
                self.schedule(ctx, idle);
            }
            Outcome::Delivered(batch) => {
                let full = batch.events.len() >= crate::webhooks::batch::MAX_EVENTS;
                self.progress.delivered(&batch);
                let next = if full {
                    Duration::ZERO
                } else {
                    self.steps.settings.gather
                };
                self.schedule(ctx, next);
            }
            Outcome::Again => self.schedule(ctx, Duration::ZERO),
            Outcome::Failed(current, delay) => {
                // A stop does not wait for a failing receiver: what is left stays in the store.
                self.answer_drains();
                self.current = Some(current);
                self.schedule(ctx, delay);
            }
            Outcome::StoreFailed(current) => {
                self.current = current;
                self.schedule(ctx, idle);
            }
        }
    }
}

impl Deliverer {
    fn answer_drains(&mut self) {
        for drain in self.drains.drain(..) {
            let _ = drain.send(());
        }
    }
}

impl Actor for Deliverer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.renew(ctx);
        ctx.run_interval(self.steps.settings.lease / 5, Deliverer::renew);
        self.schedule(ctx, Duration::ZERO);
    }
}

/// Resolves once a step finds nothing (more) to deliver, a post fails, or this instance does not
/// deliver: for a graceful stop, after the last members left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for Deliverer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.drains.push(tx);
        match (&self.step, &self.current) {
            // Waiting for the idle poll: read now.
            (None, None) => self.schedule(ctx, Duration::ZERO),
            // Waiting to retry a failed post: the receiver is failing, do not wait for it.
            (None, Some(current)) if current.failures > 0 => self.answer_drains(),
            _ => {}
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Stops the deliverer (what it did not deliver stays in the store).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Deliverer {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
#[path = "deliverer_tests.rs"]
mod tests;
