//! The inbox workers: per-issue order, parallel across issues, retries with backoff, then a
//! dead letter. All state is in the store, so a restart resumes where the last run stopped,
//! and replicas sharing a PostgreSQL store share the work: each event is leased to one worker
//! at a time (see `Store::claim`), and a lease held by a process that died runs out.

use crate::clock::Clock;
use crate::process::{Failure, Processor};
use crate::store::InboxItem;
use crate::store::prelude::*;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};

/// How often the inbox is looked at when nothing wakes the dispatcher (retries coming due).
const POLL: Duration = Duration::from_millis(250);
const MAX_BACKOFF_SECS: i64 = 600;
/// Attempts for an event a policy rule fails on (1 s and 2 s apart): enough for a reload to
/// land, short enough that the issue's later events are not held back for long.
const POLICY_ATTEMPTS: u32 = 3;
/// Deliveries a second above which processing steps aside for ingest: one event at a time.
const BUSY_RATE: u64 = 500;
/// The window the delivery rate is measured over.
const SAMPLE: Duration = Duration::from_millis(100);

/// Deliveries counted as they arrive (by the inbox's group commit), so the dispatcher can tell
/// a burst. During a burst, acknowledgements come first: a tracker waits for each one and
/// gives up after 10 s, while processing can catch up afterwards. Workers, their store round
/// trips and the policy engine all take CPU the acknowledgements need on a small machine
/// (on two cores at 2,000 deliveries a second, four workers push PostgreSQL's ack p99 from
/// 4 ms to 11 ms), so while deliveries arrive faster than `BUSY_RATE` one event is processed
/// at a time: processing slows down, never stops.
#[derive(Default)]
pub struct IngestLoad {
    deliveries: AtomicU64,
}

impl IngestLoad {
    pub fn arrived(&self) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }
}

/// The dispatcher's view of the delivery rate, sampled at most every `SAMPLE`.
struct Pace {
    since: Instant,
    seen: u64,
    busy: bool,
}

impl Pace {
    fn new(load: &IngestLoad) -> Pace {
        Pace { since: Instant::now(), seen: load.deliveries.load(Ordering::Relaxed), busy: false }
    }

    fn busy(&mut self, load: &IngestLoad) -> bool {
        let elapsed = self.since.elapsed();
        if elapsed >= SAMPLE {
            let now = load.deliveries.load(Ordering::Relaxed);
            let rate = (now - self.seen) as f64 / elapsed.as_secs_f64();
            self.busy = rate > BUSY_RATE as f64;
            (self.since, self.seen) = (Instant::now(), now);
        }
        self.busy
    }
}

pub struct Queue {
    pub store: Arc<dyn Store>,
    pub processor: Arc<Processor>,
    pub clock: Arc<dyn Clock>,
    /// Rung by ingest after every insert and by workers when they finish.
    pub wake: Arc<Notify>,
    /// How fast deliveries arrive: during a burst, processing steps aside (see `IngestLoad`).
    pub ingest: Arc<IngestLoad>,
    pub workers: usize,
    pub max_attempts: u32,
    /// How long a claimed event is ours; renewed while it is in progress, so only a worker
    /// that stopped (a crash) loses it.
    pub lease: Duration,
}

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s, ... capped at ten minutes.
pub fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds((1i64 << attempts.saturating_sub(1).min(20)).min(MAX_BACKOFF_SECS))
}

impl Queue {
    /// Runs until `shutdown` turns true, then waits for the events in flight to finish.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let queue = Arc::new(self);
        let in_flight: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
        let slots = Arc::new(Semaphore::new(queue.workers));
        let renewer = tokio::spawn(queue.clone().renew_leases(in_flight.clone()));
        let mut pace = Pace::new(&queue.ingest);
        while !*shutdown.borrow() {
            let running = queue.workers - slots.available_permits();
            let allowed = if pace.busy(&queue.ingest) { 1 } else { queue.workers };
            let free = allowed.saturating_sub(running);
            let mut claimed = 0;
            if free > 0 {
                match queue.store.claim(queue.clock.now(), free, queue.lease_chrono()).await {
                    Ok(items) => {
                        claimed = items.len();
                        for item in items {
                            let permit = slots.clone().acquire_owned().await.expect("semaphore open");
                            in_flight.lock().expect("in flight").insert(item.id);
                            let (queue, in_flight) = (queue.clone(), in_flight.clone());
                            tokio::spawn(async move {
                                queue.handle(&item).await;
                                in_flight.lock().expect("in flight").remove(&item.id);
                                drop(permit);
                                queue.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "reading the inbox failed"),
                }
            }
            // More may be waiting when every free slot was filled; otherwise sleep until woken.
            if claimed > 0 && claimed == free && slots.available_permits() > 0 && !pace.busy {
                continue;
            }
            tokio::select! {
                _ = queue.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
        // Let the events in flight finish so their effects are recorded.
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            slots.acquire_many(queue.workers as u32),
        )
        .await;
        renewer.abort();
    }

    fn lease_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(30))
    }

    /// Keeps the leases of the events in progress alive: a third of the lease at a time, so
    /// two missed renewals still leave time before another replica may take one over.
    async fn renew_leases(self: Arc<Self>, in_flight: Arc<Mutex<BTreeSet<i64>>>) {
        let mut tick = tokio::time::interval(self.lease / 3);
        loop {
            tick.tick().await;
            let ids: Vec<i64> = in_flight.lock().expect("in flight").iter().copied().collect();
            if ids.is_empty() {
                continue;
            }
            if let Err(e) = self.store.renew(&ids, self.clock.now() + self.lease_chrono()).await {
                tracing::warn!(error = %format!("{e:#}"), "renewing leases failed");
            }
        }
    }

    /// Processes, one at a time, everything ready at `now` (in per-issue order); returns how
    /// many events were handled. `rollgate sweep` uses it instead of `run`.
    pub async fn drain(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let mut n = 0;
        loop {
            let items = self.store.claim(now, 16, self.lease_chrono()).await?;
            if items.is_empty() {
                return Ok(n);
            }
            for item in &items {
                self.handle(item).await;
                n += 1;
            }
        }
    }

    async fn handle(&self, item: &InboxItem) {
        let result = self.processor.process(item).await;
        let recorded = match result {
            Ok(()) => {
                crate::metrics::METRICS.inc("rollgate_events_total", &[("result", "done")]);
                Ok(())
            }
            Err(failure) => {
                let attempts = item.attempts + 1;
                let policy = matches!(failure, Failure::Policy(_));
                let (error, not_before, permanent) = match failure {
                    Failure::Retry { error, not_before } => (error, not_before, false),
                    Failure::Permanent(error) => (error, None, true),
                    Failure::Policy(error) => (error, None, attempts >= POLICY_ATTEMPTS.min(self.max_attempts)),
                };
                // A tracker that asked for time (rate limit, or our circuit breaker holding calls
                // back) says "later", not "broken": such failures never make a dead letter.
                let dead = permanent || (attempts >= self.max_attempts && not_before.is_none());
                if dead && policy {
                    self.processor.answer_failure(item, &error).await;
                }
                crate::metrics::METRICS.inc("rollgate_events_total", &[("result", if dead { "dead" } else { "retry" })]);
                if dead {
                    tracing::error!(
                        issue = %item.event.issue.key.short(),
                        delivery = %item.event.delivery,
                        attempts,
                        error = %error,
                        "dead letter: `rollgate replay` lists and requeues it"
                    );
                    self.store.bury(item.id, &error).await
                } else {
                    let at = retry_time(self.clock.now(), attempts, not_before);
                    self.store.retry_at(item.id, &error, at).await
                }
            }
        };
        if let Err(e) = recorded {
            // The row stays pending: the next pass picks it up again.
            tracing::error!(error = %format!("{e:#}"), inbox_id = item.id, "recording an outcome failed");
        }
    }
}

fn retry_time(now: DateTime<Utc>, attempts: u32, not_before: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let at = now + backoff(attempts);
    not_before.map_or(at, |nb| nb.max(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_deliveries_is_seen_and_then_forgotten() {
        let load = IngestLoad::default();
        let mut pace = Pace::new(&load);
        assert!(!pace.busy(&load));
        // 5,000 deliveries in one window (~120 ms; even a sleep overslept to 5 s stays above
        // 500 a second): a burst.
        (0..5_000).for_each(|_| load.arrived());
        std::thread::sleep(SAMPLE + Duration::from_millis(20));
        assert!(pace.busy(&load));
        // The next window is quiet: full speed again.
        std::thread::sleep(SAMPLE + Duration::from_millis(20));
        assert!(!pace.busy(&load));
        // A steady 200 a second is no burst.
        for _ in 0..3 {
            (0..24).for_each(|_| load.arrived());
            std::thread::sleep(SAMPLE + Duration::from_millis(20));
            assert!(!pace.busy(&load));
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped_and_the_tracker_may_ask_for_longer() {
        assert_eq!(backoff(1).num_seconds(), 1);
        assert_eq!(backoff(2).num_seconds(), 2);
        assert_eq!(backoff(5).num_seconds(), 16);
        assert_eq!(backoff(40).num_seconds(), MAX_BACKOFF_SECS);
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(90);
        assert_eq!(retry_time(now, 1, Some(later)), later);
        assert_eq!(retry_time(now, 3, None), now + chrono::Duration::seconds(4));
    }
}
