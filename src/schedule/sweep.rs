//! The clock: due timers become events in the inbox, and periodic jobs run once per period.
//! Everything goes through the store, so a restart, a week of downtime or a second replica
//! neither skips nor repeats anything.

use crate::clock::Clock;
use crate::model::{Actor, DeliveryId, Event};
use crate::store::Timer;
use crate::store::prelude::*;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How often `serve` looks for due timers.
pub const EVERY: Duration = Duration::from_secs(30);
const BATCH: usize = 500;

/// The event a due timer becomes: the issue as last stored, `timer.<purpose>`, by rollgate,
/// happening at the timer's due time (so a late sweep computes the same dates).
pub fn timer_event(timer: &Timer, mut issue: crate::model::IssueSnapshot, now: DateTime<Utc>) -> Event {
    // A timer says nothing new about the issue: the worker uses the view it stores when it
    // processes the event, which may be newer than this copy (rollgate's own changes).
    issue.partial = true;
    Event {
        delivery: DeliveryId(format!("timer:{}:{}:{}", timer.issue_key, timer.purpose, timer.due_at.timestamp_millis())),
        kind: format!("timer.{}", timer.purpose).into(),
        issue,
        actor: Actor { login: crate::decide::BOT.into(), is_bot: true },
        label: None,
        comment: None,
        occurred_at: timer.due_at,
        received_at: now,
        installation: None,
        changes: Vec::new(),
        taken_in_by: None,
    }
}

/// Queues every timer due at `now`; returns how many fired.
pub async fn fire_due(store: &dyn Store, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let mut fired = 0;
    loop {
        let due = store.due_timers(now, BATCH).await?;
        if due.is_empty() {
            return Ok(fired);
        }
        let mut progressed = false;
        for t in &due {
            let Some(state) = store.issue_state(&t.issue_key).await? else { continue };
            if store.fire_timer(t, &timer_event(t, state.snapshot, now)).await? {
                fired += 1;
                crate::metrics::METRICS.inc("rollgate_timers_fired_total", &[]);
                progressed = true;
            }
        }
        if !progressed {
            // What is left belongs to issues without a stored view: nothing to wake.
            return Ok(fired);
        }
    }
}

/// `serve`'s clock task: a sweep at start (catching up after downtime), then every 30 s.
pub async fn run(store: Arc<dyn Store>, clock: Arc<dyn Clock>, wake: Arc<Notify>, jobs: Arc<super::jobs::Jobs>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match jobs.run_due(clock.now()).await {
            Ok(done) => {
                for d in done {
                    tracing::info!("{d}");
                }
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "a periodic job failed; the next sweep tries again"),
        }
        match fire_due(store.as_ref(), clock.now()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(timers = n, "timers fired");
                wake.notify_one();
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "timer sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}
