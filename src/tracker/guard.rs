//! What stands between rollgate and a tracker: a circuit breaker (stop hammering a tracker that
//! keeps failing), a write budget per owner with priorities (a PM's event is not stuck behind a
//! sweep or a report), and a flap breaker (rollgate does not fight a person over a label).
//!
//! `Guarded` wraps any `Tracker` and is one itself, so the processor, the jobs and the role
//! resolver go through it without knowing. Its answers are the tracker's error types: a call it
//! holds back returns `RateLimited { retry_at }`, which the queue turns into a later attempt.

use super::{Comment, FieldUpdate, Tracker, TrackerError, TrackerResult};
use crate::metrics::METRICS;
use crate::model::{CommentId, IssueKey, IssueSnapshot};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Consecutive failed calls (5xx, timeouts, resets, rate limits) that open the circuit.
const BREAKER_THRESHOLD: u32 = 5;
/// First cool-down; it doubles each time a probe fails, up to `BREAKER_MAX_COOLDOWN`.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);
const BREAKER_MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// While the half-open probe is out, other calls come back after about this long.
const PROBE_WAIT: Duration = Duration::from_secs(5);
/// Share of the bucket that background work (sweeps, timers, reports) leaves to interactive
/// events, so a PM's change never waits for a report to drain the budget.
const BACKGROUND_RESERVE: f64 = 0.25;
/// A write that would wait longer than this for the budget goes back to the queue instead, so
/// a worker never sits on one issue for minutes.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(20);
/// Changes of one label on one issue allowed within `FLAP_WINDOW`; the next is not made.
const FLAP_LIMIT: usize = 4;
const FLAP_WINDOW: Duration = Duration::from_secs(600);
/// Above this many remembered (issue, label) pairs, stale ones are forgotten.
const FLAP_MEMORY: usize = 4096;

/// Who is waiting for a call: a person's event, or rollgate's own schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Background,
}

impl Priority {
    fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Background => "background",
        }
    }
}

tokio::task_local! {
    static PRIORITY: Priority;
    static FLAPS: FlapWatch;
}

/// Runs `fut` with tracker calls at `priority` (a task-local: it does not cross `tokio::spawn`).
pub async fn with_priority<F: Future>(priority: Priority, fut: F) -> F::Output {
    PRIORITY.scope(priority, fut).await
}

/// Interactive unless a caller said otherwise: an event someone is waiting for is the default.
pub fn current_priority() -> Priority {
    PRIORITY.try_with(|p| *p).unwrap_or(Priority::Interactive)
}

#[derive(Clone)]
struct FlapWatch {
    /// Identifies the decision asking for the change (the issue's `updated_at`): the same
    /// decision retried after a failure is one change, not a flip.
    decision: i64,
    stopped: Arc<Mutex<Vec<String>>>,
}

/// Runs a label call and returns, with its result, the labels the flap breaker held back.
/// `decision` identifies what asked for the change (see `FlapWatch`).
pub async fn watching_flaps<F: Future>(decision: i64, fut: F) -> (F::Output, Vec<String>) {
    let watch = FlapWatch { decision, stopped: Arc::default() };
    let out = FLAPS.scope(watch.clone(), fut).await;
    let stopped = std::mem::take(&mut *watch.stopped.lock().expect("flap watch"));
    (out, stopped)
}

/// The budget key of a project: GitHub's `owner/repo` -> `owner` (the account an installation
/// belongs to); a Jira project key stays as it is.
pub fn owner_key(project: &str) -> String {
    project.split('/').next().unwrap_or(project).to_string()
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Circuit {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Circuit {
    fn gauge(&self) -> f64 {
        match self {
            Circuit::Closed { .. } => 0.0,
            Circuit::Open { .. } => 1.0,
            Circuit::HalfOpen { .. } => 2.0,
        }
    }
}

/// What a call's answer says about the tracker's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Health {
    /// It answered (also "not found" or "refused": the tracker is up).
    Up,
    /// 5xx, timeout, reset, rate limited.
    Down,
    /// The call never reached it.
    Unknown,
}

impl Health {
    fn of<T>(r: &TrackerResult<T>) -> Health {
        match r {
            Err(TrackerError::Transient(_)) | Err(TrackerError::RateLimited { .. }) => Health::Down,
            _ => Health::Up,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    pub state: Circuit,
    threshold: u32,
    base: Duration,
    max: Duration,
    /// The cool-down the next opening uses.
    next: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, base: Duration, max: Duration) -> Breaker {
        Breaker { state: Circuit::Closed { failures: 0 }, threshold, base, max, next: base }
    }

    /// May a call go now? `Ok(true)` means it is the half-open probe; `Err(at)`: not before `at`.
    pub fn admit(&mut self, now: Instant) -> Result<bool, Instant> {
        match self.state {
            Circuit::Closed { .. } => Ok(false),
            Circuit::Open { until } if now < until => Err(until),
            Circuit::Open { .. } | Circuit::HalfOpen { probing: false } => {
                self.state = Circuit::HalfOpen { probing: true };
                Ok(true)
            }
            Circuit::HalfOpen { probing: true } => Err(now + PROBE_WAIT),
        }
    }

    /// Takes a call's outcome in; returns the new state when it changed.
    pub fn record(&mut self, now: Instant, health: Health, probe: bool) -> Option<Circuit> {
        let before = self.state;
        match (health, self.state) {
            (Health::Up, Circuit::Closed { .. }) => self.state = Circuit::Closed { failures: 0 },
            (Health::Up, _) if probe => {
                self.state = Circuit::Closed { failures: 0 };
                self.next = self.base;
            }
            (Health::Down, Circuit::Closed { failures }) if failures + 1 >= self.threshold => self.open(now),
            (Health::Down, Circuit::Closed { failures }) => self.state = Circuit::Closed { failures: failures + 1 },
            (Health::Down, Circuit::HalfOpen { .. }) if probe => self.open(now),
            (Health::Unknown, Circuit::HalfOpen { probing: true }) if probe => self.state = Circuit::HalfOpen { probing: false },
            // Calls that were in flight when the circuit opened change nothing.
            _ => {}
        }
        (std::mem::discriminant(&before) != std::mem::discriminant(&self.state)).then_some(self.state)
    }

    fn open(&mut self, now: Instant) {
        self.state = Circuit::Open { until: now + self.next };
        self.next = (self.next * 2).min(self.max);
    }
}

// ---------------------------------------------------------------------------------------------
// Write budget

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    interactive_waiting: usize,
}

/// Token buckets of writes per key: `burst` at most, refilled at `per_minute`. Replicas of one
/// deployment share the account's budget: each takes its part (`set_share`).
#[derive(Debug)]
pub struct Budget {
    per_minute: u32,
    burst: f64,
    /// Replicas the budget is divided between (1 alone, or on SQLite).
    share: u32,
    buckets: HashMap<String, Bucket>,
}

impl Budget {
    /// `per_minute` 0 lifts the budget.
    pub fn new(per_minute: u32, burst: u32) -> Budget {
        Budget { per_minute, burst: burst.max(1) as f64, share: 1, buckets: HashMap::new() }
    }

    pub fn unlimited(&self) -> bool {
        self.per_minute == 0
    }

    /// Divides the budget between `replicas` (at least one write each in the bucket); returns
    /// whether the share changed.
    pub fn set_share(&mut self, replicas: usize) -> bool {
        let share = replicas.clamp(1, u32::MAX as usize) as u32;
        if share == self.share {
            return false;
        }
        self.share = share;
        let burst = self.burst_now();
        for b in self.buckets.values_mut() {
            b.tokens = b.tokens.min(burst);
        }
        true
    }

    fn burst_now(&self) -> f64 {
        (self.burst / self.share as f64).max(1.0)
    }

    fn rate_per_sec(&self) -> f64 {
        self.per_minute as f64 / 60.0 / self.share as f64
    }

    fn bucket(&mut self, key: &str, now: Instant) -> &mut Bucket {
        let (burst, rate) = (self.burst_now(), self.rate_per_sec());
        let b = self.buckets.entry(key.to_string()).or_insert(Bucket { tokens: burst, at: now, interactive_waiting: 0 });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = b.at.max(now);
        b
    }

    /// Takes one write token for `key`, or says how long to wait before asking again.
    /// Background writes leave the reserve alone and let every waiting interactive write go
    /// first. Returns the tokens left.
    pub fn try_take(&mut self, key: &str, priority: Priority, now: Instant) -> Result<f64, Duration> {
        let (burst, rate) = (self.burst_now(), self.rate_per_sec());
        let b = self.bucket(key, now);
        let needed = match priority {
            Priority::Interactive => 1.0,
            // Capped at the whole bucket, or a tiny budget would never serve background work.
            Priority::Background => (1.0 + burst * BACKGROUND_RESERVE + b.interactive_waiting as f64).min(burst),
        };
        if b.tokens >= needed {
            b.tokens -= 1.0;
            return Ok(b.tokens);
        }
        let secs = (needed - b.tokens) / rate;
        Err(Duration::from_secs_f64(secs.max(0.001)))
    }

    /// An interactive write starts or stops waiting (background ones yield to it).
    pub fn waiting(&mut self, key: &str, now: Instant, delta: isize) {
        let b = self.bucket(key, now);
        b.interactive_waiting = b.interactive_waiting.saturating_add_signed(delta);
    }
}

// ---------------------------------------------------------------------------------------------
// Flap breaker

#[derive(Debug, Default)]
struct LabelFlips {
    /// When rollgate changed the label, oldest first, within the window.
    changes: VecDeque<Instant>,
    /// The last change counted: direction and decision.
    last: Option<(bool, Option<i64>)>,
    stopped_until: Option<Instant>,
}

/// Counts rollgate's own changes of each (issue, label) and stops a label that keeps flipping.
#[derive(Debug)]
pub struct Flaps {
    limit: usize,
    window: Duration,
    labels: HashMap<(IssueKey, String), LabelFlips>,
}

/// The flap breaker's answer for one label change.
#[derive(Debug, PartialEq)]
pub enum FlapCheck {
    Go,
    /// Stopped; `true` the first time (the trip), to log and count once.
    Stopped(bool),
}

impl Flaps {
    pub fn new(limit: usize, window: Duration) -> Flaps {
        Flaps { limit, window, labels: HashMap::new() }
    }

    /// May rollgate change `label` on `issue` now?
    pub fn check(&mut self, issue: &IssueKey, label: &str, now: Instant) -> FlapCheck {
        if self.labels.len() > FLAP_MEMORY {
            let window = self.window;
            self.labels.retain(|_, f| {
                f.stopped_until.is_some_and(|u| u > now) || f.changes.back().is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        let Some(f) = self.labels.get_mut(&(issue.clone(), label.to_string())) else { return FlapCheck::Go };
        match f.stopped_until {
            Some(until) if now < until => return FlapCheck::Stopped(false),
            Some(_) => *f = LabelFlips::default(),
            None => {}
        }
        while f.changes.front().is_some_and(|t| now.saturating_duration_since(*t) >= self.window) {
            f.changes.pop_front();
        }
        if f.changes.len() >= self.limit {
            f.stopped_until = Some(now + self.window);
            return FlapCheck::Stopped(true);
        }
        FlapCheck::Go
    }

    /// Rollgate made the change (`on`: added). The same decision repeated (a retry after a lost
    /// answer) counts once.
    pub fn record(&mut self, issue: &IssueKey, label: &str, on: bool, decision: Option<i64>, now: Instant) {
        let f = self.labels.entry((issue.clone(), label.to_string())).or_default();
        if decision.is_some() && f.last == Some((on, decision)) {
            return;
        }
        f.last = Some((on, decision));
        f.changes.push_back(now);
    }
}

// ---------------------------------------------------------------------------------------------
// The tracker wrapper

pub struct Guarded<T> {
    inner: T,
    /// `github` or `jira`: the metrics' `tracker` label.
    name: &'static str,
    breaker: Mutex<Breaker>,
    budget: Mutex<Budget>,
    flaps: Mutex<Flaps>,
    /// The budget key of a project; the GitHub App work swaps in installation ids.
    key_of: fn(&str) -> String,
}

impl<T: Tracker> Guarded<T> {
    /// `writes_per_minute` 0 lifts the budget. The bucket holds a minute's writes.
    pub fn new(inner: T, name: &'static str, writes_per_minute: u32) -> Guarded<T> {
        Self::with_budget(inner, name, writes_per_minute, writes_per_minute)
    }

    /// As `new`, with a bucket of `burst` writes (tests use a small one to see the order).
    pub fn with_budget(inner: T, name: &'static str, writes_per_minute: u32, burst: u32) -> Guarded<T> {
        METRICS.set_gauge("rollgate_circuit_state", &[("tracker", name)], 0.0);
        Guarded {
            inner,
            name,
            breaker: Mutex::new(Breaker::new(BREAKER_THRESHOLD, BREAKER_COOLDOWN, BREAKER_MAX_COOLDOWN)),
            budget: Mutex::new(Budget::new(writes_per_minute, burst)),
            flaps: Mutex::new(Flaps::new(FLAP_LIMIT, FLAP_WINDOW)),
            key_of: owner_key,
        }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The circuit as it stands (for `doctor` and tests).
    pub fn circuit(&self) -> Circuit {
        self.breaker.lock().expect("breaker").state
    }

    fn transition(&self, state: Circuit) {
        METRICS.set_gauge("rollgate_circuit_state", &[("tracker", self.name)], state.gauge());
        match state {
            Circuit::Open { until } => {
                METRICS.inc("rollgate_circuit_opened_total", &[("tracker", self.name)]);
                let secs = until.saturating_duration_since(Instant::now()).as_secs();
                tracing::warn!(tracker = self.name, cooldown_s = secs, "circuit open: {} keeps failing; calls wait instead of hammering it", self.name);
            }
            Circuit::HalfOpen { .. } => tracing::info!(tracker = self.name, "circuit half-open: one probe call goes through"),
            Circuit::Closed { .. } => tracing::info!(tracker = self.name, "circuit closed: {} answers again", self.name),
        }
    }

    /// One call: the circuit, then the budget for writes, then the tracker.
    async fn guard<R>(&self, project: &str, write: bool, call: impl Future<Output = TrackerResult<R>>) -> TrackerResult<R> {
        let admitted = {
            let mut b = self.breaker.lock().expect("breaker");
            let before = b.state;
            let admitted = b.admit(Instant::now());
            if std::mem::discriminant(&before) != std::mem::discriminant(&b.state) {
                self.transition(b.state);
            }
            admitted
        };
        let probe = match admitted {
            Ok(probe) => probe,
            Err(at) => return Err(TrackerError::RateLimited { retry_at: wall(at) }),
        };
        if write {
            if let Err(at) = self.spend(project).await {
                self.settle(Health::Unknown, probe);
                return Err(TrackerError::RateLimited { retry_at: wall(at) });
            }
        } else {
            METRICS.inc("rollgate_api_reads_total", &[("tracker", self.name)]);
        }
        let result = call.await;
        self.settle(Health::of(&result), probe);
        result
    }

    fn settle(&self, health: Health, probe: bool) {
        let changed = self.breaker.lock().expect("breaker").record(Instant::now(), health, probe);
        if let Some(state) = changed {
            self.transition(state);
        }
    }

    /// Waits (bounded) for a write token; `Err(at)` when the wait is too long to do in place.
    async fn spend(&self, project: &str) -> Result<(), Instant> {
        if self.budget.lock().expect("budget").unlimited() {
            return Ok(());
        }
        let key = (self.key_of)(project);
        let priority = current_priority();
        let deadline = Instant::now() + MAX_BUDGET_WAIT;
        let mut waiting = false;
        loop {
            let now = Instant::now();
            let taken = self.budget.lock().expect("budget").try_take(&key, priority, now);
            let stop_waiting = |budget: &Mutex<Budget>| {
                if waiting && priority == Priority::Interactive {
                    budget.lock().expect("budget").waiting(&key, Instant::now(), -1);
                }
            };
            match taken {
                Ok(left) => {
                    stop_waiting(&self.budget);
                    METRICS.set_gauge("rollgate_api_budget_remaining", &[("tracker", self.name), ("owner", &key)], left.floor());
                    return Ok(());
                }
                Err(wait) if now + wait > deadline => {
                    stop_waiting(&self.budget);
                    if !waiting {
                        METRICS.inc("rollgate_api_budget_waits_total", &[("priority", priority.as_str())]);
                    }
                    tracing::info!(owner = %key, priority = priority.as_str(), wait_s = wait.as_secs(), "write budget spent: the event is rescheduled");
                    return Err(now + wait);
                }
                Err(wait) => {
                    if !waiting {
                        waiting = true;
                        METRICS.inc("rollgate_api_budget_waits_total", &[("priority", priority.as_str())]);
                        if priority == Priority::Interactive {
                            self.budget.lock().expect("budget").waiting(&key, now, 1);
                        }
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The labels of `labels` the flap breaker lets rollgate change now; the others are
    /// reported to the caller's `watching_flaps`.
    fn unflapped<'a>(&self, issue: &IssueKey, labels: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        let now = Instant::now();
        let mut go = Vec::new();
        let mut flaps = self.flaps.lock().expect("flaps");
        for label in labels {
            match flaps.check(issue, label, now) {
                FlapCheck::Go => go.push(label),
                FlapCheck::Stopped(tripped) => {
                    if tripped {
                        METRICS.inc("rollgate_flap_breaker_trips_total", &[("tracker", self.name)]);
                        tracing::warn!(
                            issue = %issue.short(),
                            label,
                            "flap breaker: rollgate changed this label {FLAP_LIMIT} times in {} minutes; it leaves it alone for now",
                            FLAP_WINDOW.as_secs() / 60
                        );
                    }
                    let _ = FLAPS.try_with(|w| w.stopped.lock().expect("flap watch").push(label.to_string()));
                }
            }
        }
        go
    }

    fn flipped(&self, issue: &IssueKey, labels: &[&str], on: bool) {
        let decision = FLAPS.try_with(|w| w.decision).ok();
        let now = Instant::now();
        let mut flaps = self.flaps.lock().expect("flaps");
        for label in labels {
            flaps.record(issue, label, on, decision, now);
        }
    }
}

/// A monotonic instant as wall-clock time, for `RateLimited::retry_at`.
fn wall(at: Instant) -> DateTime<Utc> {
    let ahead = at.saturating_duration_since(Instant::now());
    Utc::now() + chrono::Duration::from_std(ahead).unwrap_or(chrono::Duration::seconds(60))
}

#[async_trait]
impl<T: Tracker> Tracker for Guarded<T> {
    async fn get_issue(&self, issue: &IssueKey) -> TrackerResult<IssueSnapshot> {
        self.guard(issue.project(), false, self.inner.get_issue(issue)).await
    }

    async fn list_comments(&self, issue: &IssueKey) -> TrackerResult<Vec<Comment>> {
        self.guard(issue.project(), false, self.inner.list_comments(issue)).await
    }

    async fn add_labels(&self, issue: &IssueKey, labels: &[String]) -> TrackerResult<()> {
        let go: Vec<String> = self.unflapped(issue, labels.iter().map(String::as_str)).into_iter().map(String::from).collect();
        if go.is_empty() {
            return Ok(());
        }
        self.guard(issue.project(), true, self.inner.add_labels(issue, &go)).await?;
        self.flipped(issue, &go.iter().map(String::as_str).collect::<Vec<_>>(), true);
        Ok(())
    }

    async fn remove_label(&self, issue: &IssueKey, label: &str) -> TrackerResult<()> {
        if self.unflapped(issue, [label]).is_empty() {
            return Ok(());
        }
        self.guard(issue.project(), true, self.inner.remove_label(issue, label)).await?;
        self.flipped(issue, &[label], false);
        Ok(())
    }

    async fn create_comment(&self, issue: &IssueKey, body: &str) -> TrackerResult<CommentId> {
        self.guard(issue.project(), true, self.inner.create_comment(issue, body)).await
    }

    async fn update_comment(&self, issue: &IssueKey, id: CommentId, body: &str) -> TrackerResult<()> {
        self.guard(issue.project(), true, self.inner.update_comment(issue, id, body)).await
    }

    async fn set_open(&self, issue: &IssueKey, open: bool, reason: Option<&str>) -> TrackerResult<()> {
        self.guard(issue.project(), true, self.inner.set_open(issue, open, reason)).await
    }

    async fn is_team_member(&self, org: &str, team: &str, login: &str) -> TrackerResult<bool> {
        self.guard(org, false, self.inner.is_team_member(org, team, login)).await
    }

    async fn update_issue_body(&self, issue: &IssueKey, body: &str) -> TrackerResult<()> {
        self.guard(issue.project(), true, self.inner.update_issue_body(issue, body)).await
    }

    async fn identity(&self) -> TrackerResult<String> {
        // A read rollgate makes about itself, once: not worth the budget's bookkeeping.
        self.inner.identity().await
    }

    fn note_installation(&self, project: &str, installation: u64) {
        self.inner.note_installation(project, installation)
    }

    fn share_budget(&self, replicas: usize) {
        let mut budget = self.budget.lock().expect("budget");
        if budget.set_share(replicas) && !budget.unlimited() {
            tracing::info!(tracker = self.name, replicas, "the write budget is shared between {replicas} replica(s)");
        }
    }

    fn holds_fields(&self) -> bool {
        self.inner.holds_fields()
    }

    async fn update_fields(&self, issue: &IssueKey, update: &FieldUpdate) -> TrackerResult<()> {
        self.guard(issue.project(), true, self.inner.update_fields(issue, update)).await
    }

    async fn find_issue(&self, project: &str, title: &str, label: &str) -> TrackerResult<Option<IssueKey>> {
        self.guard(project, false, self.inner.find_issue(project, title, label)).await
    }

    async fn create_issue(&self, project: &str, title: &str, body: &str, labels: &[String]) -> TrackerResult<IssueKey> {
        self.guard(project, true, self.inner.create_issue(project, title, body, labels)).await
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
