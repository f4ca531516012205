//! Persistence behind one interface, so a second backend (PostgreSQL) implements the same
//! trait. Everything the service must not lose lives here: the inbox, the issue view, the bot's
//! comments, history and the audit trail.

mod batch;
mod postgres;
mod rows;
mod sqlite;

pub use batch::Batcher;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Every role of the store at once, for code that uses several: `use crate::store::prelude::*;`.
pub mod prelude {
    pub use super::{Audit, Inbox, Issues, Jobs, Store, Timers};
}

// The domain records live in `model`; the backends below reach them as `super::…`.
use crate::model::{AuditRecord, BotComment, HistoryEntry, IssueState, LedgerKey, Purpose, Source};

use crate::model::{CommentId, Event, IssueKey, IssueSnapshot};
use anyhow::{bail, Context};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Queued,
    /// The tracker sent this delivery id before: acknowledged, not processed again.
    Duplicate,
}

/// A worker's claim on an issue's head event; see `Store::claim`.
#[derive(Debug, Clone)]
pub struct InboxItem {
    pub id: i64,
    pub event: Event,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// Everything one processed event changes, committed in one transaction with the inbox row,
/// so an event is either wholly recorded as done or retried.
#[derive(Debug)]
pub struct Completion {
    pub inbox_id: i64,
    pub issue: IssueKey,
    /// The issue's new view; `None` leaves the store without one (an issue rollgate does not
    /// govern, such as its own report issues).
    pub snapshot: Option<IssueSnapshot>,
    pub bot_comments: Vec<(String, BotComment)>,
    pub history: Vec<HistoryEntry>,
    /// Timers to set (purpose, when) or cancel (purpose, None).
    pub timers: Vec<(String, Option<DateTime<Utc>>)>,
    pub audit: AuditRecord,
    /// Later inbox rows of the same issue whose change this event took in (the other half of a
    /// label swap), with their events rewritten to say so (`taken_in_by`): they still run in
    /// their turn, stating nothing, so the change is judged once and the order is kept.
    pub absorbed: Vec<(i64, Event)>,
    /// Comment revisions (comment id, revision time in ms) this event acted on.
    pub revisions: Vec<(CommentId, i64)>,
}

/// One history row as the monthly report needs it: no more than that, for speed.
#[derive(Debug, Clone)]
pub struct MetricRow {
    pub issue: String,
    pub at_ms: i64,
    pub field: String,
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub issue_key: IssueKey,
    pub purpose: String,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub delivery: String,
    pub tracker: String,
    pub issue_key: String,
    pub kind: String,
    pub attempts: u32,
    pub last_error: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct InboxStats {
    pub pending: u64,
    pub done: u64,
    pub dead: u64,
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// The whole store, as the service opens it: every role below, plus its own upkeep.
#[async_trait]
pub trait Store: Inbox + Issues + Timers + Jobs + Audit + Send + Sync + 'static {
    async fn migrate(&self) -> anyhow::Result<()>;

    async fn ping(&self) -> anyhow::Result<()>;
}

/// The inbox: deliveries in, leased to workers in per-issue order, completed with their effects
/// ledger, retried, or buried as dead letters.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Commits the events durably, in one transaction; only then may the deliveries be
    /// acknowledged. One answer per event, in order.
    async fn enqueue_batch(&self, events: &[Event]) -> anyhow::Result<Vec<Inserted>>;

    async fn enqueue(&self, event: &Event) -> anyhow::Result<Inserted> {
        Ok(self.enqueue_batch(std::slice::from_ref(event)).await?[0])
    }

    /// Leases to this store's owner (see `owner`) the oldest pending event of up to `limit`
    /// issues whose head event is due and not leased by anyone, oldest first, until
    /// `now + lease`. Only an issue's head can be leased, so its events run in arrival order
    /// whichever worker or replica takes them; an issue whose head waits for a retry yields
    /// nothing, and its later events wait too.
    async fn claim(&self, now: DateTime<Utc>, limit: usize, lease: chrono::Duration) -> anyhow::Result<Vec<InboxItem>>;

    /// Extends this owner's leases on `ids` (events still in progress) to `until`.
    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> anyhow::Result<()>;

    /// Frees every lease (SQLite only, at start: one process serves a SQLite file, so any
    /// lease found there belongs to a process that died).
    async fn release_all_leases(&self) -> anyhow::Result<u64>;

    /// Records the event done with everything it changed. Fails, changing nothing, when this
    /// owner no longer holds the lease (another worker took the event over).
    async fn complete(&self, c: Completion) -> anyhow::Result<()>;

    async fn retry_at(&self, id: i64, error: &str, at: DateTime<Utc>) -> anyhow::Result<()>;

    /// Puts the event of row `earlier` (pending, behind `head` in its issue, not leased) in row
    /// `head` (leased by this owner) and the head's event in its place, and gives the head row
    /// back to be claimed at once: the issue's events then run in the tracker's order when
    /// deliveries arrived out of it. False, changing nothing, when either row moved on.
    async fn reorder(&self, head: i64, earlier: i64) -> anyhow::Result<bool>;

    /// The issue's pending events after inbox row `after`, in order (at most `limit`).
    async fn pending_after(&self, key: &IssueKey, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Event)>>;

    /// Whether a comment revision (comment id, revision time in ms) was already acted on.
    async fn comment_acted(&self, key: &IssueKey, comment: CommentId, revision: i64) -> anyhow::Result<bool>;

    async fn bury(&self, id: i64, error: &str) -> anyhow::Result<()>;

    /// Effects already applied for inbox row `id` (a previous attempt that crashed or failed
    /// part way): what each call returned (a comment's id), by its ledger key.
    async fn ledger(&self, id: i64) -> anyhow::Result<HashMap<LedgerKey, Option<String>>>;

    /// Records one applied effect of inbox row `id`, as soon as the tracker confirmed it.
    async fn ledger_add(&self, id: i64, key: &LedgerKey, result: Option<&str>, at: DateTime<Utc>) -> anyhow::Result<()>;

    /// Says this replica is alive at `now`; returns how many replicas were alive within
    /// `REPLICA_TTL` (this one included). One process serves a SQLite file: always 1.
    async fn heartbeat(&self, _now: DateTime<Utc>) -> anyhow::Result<usize> {
        Ok(1)
    }

    async fn dead_letters(&self) -> anyhow::Result<Vec<DeadLetter>>;

    /// Pending events that have failed at least once (oldest first): what is stuck, and why.
    async fn retrying(&self, limit: usize) -> anyhow::Result<Vec<DeadLetter>>;

    /// Puts dead letters back in the inbox (all when `ids` is empty); returns how many.
    async fn requeue(&self, ids: &[i64]) -> anyhow::Result<u64>;

    async fn inbox_stats(&self) -> anyhow::Result<InboxStats>;
}

/// What rollgate knows of each issue: its stored view, bot comments and effective history.
#[async_trait]
pub trait Issues: Send + Sync {
    async fn issue_state(&self, key: &IssueKey) -> anyhow::Result<Option<IssueState>>;

    /// Adds an issue and its past history (backfill): the view is replaced, history appended.
    /// With `done`, the job row (name, period) is recorded done in the same transaction, so a
    /// resumed backfill knows exactly which issues it already imported.
    async fn import(&self, snapshot: &IssueSnapshot, history: &[HistoryEntry], done: Option<(&str, &str)>) -> anyhow::Result<()>;

    /// Every issue the store holds a view of (for the weekly and monthly jobs).
    async fn issues(&self) -> anyhow::Result<Vec<IssueSnapshot>>;

    /// Compact history rows for the monthly report: every row of `fields`, and of `status`
    /// only the changes to `statuses`, since `since`. Unordered.
    async fn metric_rows(&self, fields: &[&str], statuses: &[&str], since: DateTime<Utc>) -> anyhow::Result<Vec<MetricRow>>;

    /// History rows of `fields` (exact names, or prefixes ending in `*`) since `since`, by issue.
    async fn history_of(&self, fields: &[&str], since: DateTime<Utc>) -> anyhow::Result<Vec<(IssueKey, HistoryEntry)>>;

    async fn history(&self, key: &IssueKey) -> anyhow::Result<Vec<HistoryEntry>>;
}

/// Durable timers, one per issue and purpose.
#[async_trait]
pub trait Timers: Send + Sync {
    /// Timers due at `now` that have not fired, oldest first.
    async fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> anyhow::Result<Vec<Timer>>;

    /// Marks a timer fired and queues its event, together; false when it already fired (or
    /// was moved) since it was read.
    async fn fire_timer(&self, timer: &Timer, event: &Event) -> anyhow::Result<bool>;
}

/// Periodic jobs, each claimed once per period across replicas.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// Starts job `name` for `period` unless it already ran or runs: true means "run it now".
    /// A run that started more than `JOB_STALE` ago and never finished (its process died) is
    /// taken over.
    async fn claim_job(&self, name: &str, period: &str, now: DateTime<Utc>) -> anyhow::Result<bool>;

    /// Records a job's outcome; a failed job is released so the next sweep tries again.
    async fn finish_job(&self, name: &str, period: &str, result: Result<&str, &str>, now: DateTime<Utc>) -> anyhow::Result<()>;

    /// The latest period a job ran for (periods sort as text: `2026-11`, `2026-W48`).
    async fn last_period(&self, name: &str) -> anyhow::Result<Option<String>>;

    /// What a finished job recorded (the issue it filed), if it ran for that period.
    async fn job_result(&self, name: &str, period: &str) -> anyhow::Result<Option<String>>;
}

/// The decisions log of each issue.
#[async_trait]
pub trait Audit: Send + Sync {
    async fn audit(&self, key: &IssueKey) -> anyhow::Result<Vec<AuditRecord>>;
}

/// How often a replica says it is alive, and how long it counts as alive after it last did.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
pub const REPLICA_TTL: chrono::Duration = chrono::Duration::seconds(30);

/// A job run older than this that never finished is taken to have died with its process.
pub const JOB_STALE: chrono::Duration = chrono::Duration::hours(1);

/// Who holds a lease: unique per store opened, so two processes (or a restart) never share one.
fn new_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("{host}:{}:{nanos:08x}", std::process::id())
}

/// Opens the store named by a database URL and applies pending migrations.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::connect(url).await?)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Arc::new(PostgresStore::connect(url).await?)
    } else {
        bail!("database URL {url:?} must start with sqlite:// or postgres://");
    };
    store.migrate().await.context("applying database migrations")?;
    Ok(store)
}

fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// An inbox event as stored: JSON text. (One place, so a leaner encoding changes one function.)
fn pack_event(event: &Event) -> anyhow::Result<String> {
    serde_json::to_string(event).context("serializing an event for the inbox")
}

fn unpack_event(stored: &str) -> anyhow::Result<Event> {
    Ok(serde_json::from_str(stored)?)
}

/// Which events of a batch were new, given the (tracker, delivery) pairs the insert returned: the
/// first of a pair is queued, any later one (a redelivery in the same batch) is a duplicate.
fn inserted_in_order(events: &[Event], added: Vec<(String, String)>) -> Vec<Inserted> {
    let mut added: std::collections::HashSet<(String, String)> = added.into_iter().collect();
    events
        .iter()
        .map(|e| {
            let key = (e.tracker().as_str().to_string(), e.delivery.as_str().to_string());
            if added.remove(&key) { Inserted::Queued } else { Inserted::Duplicate }
        })
        .collect()
}
