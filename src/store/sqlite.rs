//! The embedded default store. WAL mode with `synchronous = FULL`: a committed delivery
//! survives a crash of the process and of the machine.

use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// The connection deliveries are committed on (synchronous = FULL).
    inbox: SqlitePool,
    /// This process's name on the leases it takes.
    owner: String,
    /// Writers of this process take turns here (shared with the checkpointer task).
    gate: Arc<WriteGate>,
}

/// SQLite has one writer at a time, and a connection that finds the write lock taken sleeps in
/// SQLite's busy handler (1 ms, 2 ms, 5 ms, ... 100 ms), which under load turns into tens of
/// milliseconds per delivery. Writers of this process queue here instead, in order, and never
/// meet a busy database.
#[derive(Default)]
struct WriteGate {
    writer: tokio::sync::Mutex<()>,
    /// Inbox commits waiting for the writer: processing writes let them go first, since a
    /// tracker is waiting for each acknowledgement and a worker is not.
    inbox_waiting: std::sync::atomic::AtomicUsize,
    inbox_took_lock: tokio::sync::Notify,
}

impl WriteGate {
    /// The in-process write lock; an inbox commit (`inbox`) goes ahead of processing writes
    /// that have not yet queued for it.
    async fn lock(&self, inbox: bool) -> tokio::sync::MutexGuard<'_, ()> {
        use std::sync::atomic::Ordering::SeqCst;
        if inbox {
            self.inbox_waiting.fetch_add(1, SeqCst);
            let guard = self.writer.lock().await;
            self.inbox_waiting.fetch_sub(1, SeqCst);
            self.inbox_took_lock.notify_waiters();
            return guard;
        }
        loop {
            // Wait only until the queued inbox commit holds the lock, then queue behind it.
            while self.inbox_waiting.load(SeqCst) > 0 {
                let took = self.inbox_took_lock.notified();
                if self.inbox_waiting.load(SeqCst) == 0 {
                    break;
                }
                took.await;
            }
            let guard = self.writer.lock().await;
            if self.inbox_waiting.load(SeqCst) == 0 {
                return guard;
            }
            drop(guard);
        }
    }
}

impl SqliteStore {
    async fn write_lock(&self, inbox: bool) -> tokio::sync::MutexGuard<'_, ()> {
        self.gate.lock(inbox).await
    }

    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("database URL {url:?} is not a SQLite URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // No connection checkpoints as it commits. By default the commit that grows the WAL
            // past 1,000 pages copies them into the database file and flushes it: a stall of
            // several milliseconds for whichever batch of deliveries it falls on (ack p99 under
            // full load 11-13 ms with it, 6-8 ms without). The `checkpointer` task does it
            // beside the writers instead.
            .pragma("wal_autocheckpoint", "0")
            // After a burst, a WAL that is started over is cut back to this size.
            .pragma("journal_size_limit", "33554432");
        // Durability where it is promised: a delivery is acknowledged only after its commit
        // reached the disk (FULL: the WAL is synced at every commit). Processing writes (claims,
        // completions, the ledger) use NORMAL: in WAL mode they survive any crash of the
        // process, and reach the disk with the next inbox commit or checkpoint; a power cut may
        // take back the last of them, and then those events are simply processed again.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().synchronous(SqliteSynchronous::Normal))
            .await
            .with_context(|| format!("opening {url}"))?;
        let inbox = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.synchronous(SqliteSynchronous::Full))
            .await
            .with_context(|| format!("opening {url}"))?;
        let gate = Arc::new(WriteGate::default());
        tokio::spawn(checkpointer(pool.clone(), Arc::downgrade(&gate)));
        Ok(SqliteStore { pool, inbox, owner: new_owner(), gate })
    }
}

/// How often committed WAL frames are copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies committed WAL frames into the database file, so the WAL stays small and no commit
/// pays for a checkpoint. First without the write lock (PASSIVE: writers and readers carry
/// on), which copies nearly everything; then, holding the write lock, once more for the few
/// frames appended meanwhile. Only a checkpoint that has copied the whole WAL lets the next
/// writer start it over from the beginning; with the first pass alone the WAL grew for as long
/// as a burst lasted (600 MB in 10 s of the ingest benchmark). Ends with the store (the gate
/// is the store's), so a dropped store does not keep its connections open.
async fn checkpointer(pool: SqlitePool, gate: std::sync::Weak<WriteGate>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gate) = gate.upgrade().filter(|_| !pool.is_closed()) else {
            return;
        };
        let checkpoint = || sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool);
        let result = match checkpoint().await {
            Ok(_) => {
                // Ahead of processing writes, like an inbox commit: under a steady stream of
                // deliveries a processing write may wait its turn for long, and a checkpointer
                // waiting that long lets the WAL grow meanwhile. The pass is short.
                let _writing = gate.lock(true).await;
                checkpoint().await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "checkpointing the SQLite WAL failed; trying again shortly");
        }
    }
}

async fn insert_history<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(executor: E, key: &str, h: &HistoryEntry, delivery: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO history (issue_key, at, field, old_value, new_value, actor, source, delivery, refused)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(key)
    .bind(to_ms(h.at))
    .bind(&h.field)
    .bind(&h.from)
    .bind(&h.to)
    .bind(&h.actor)
    .bind(h.source.as_str())
    .bind(delivery)
    .bind(&h.refused)
    .execute(executor)
    .await?;
    Ok(())
}

/// Puts an event in the inbox unless its delivery is there already; true when added.
async fn insert_event<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(executor: E, event: &Event) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO inbox (tracker, delivery_id, kind, issue_key, event, received_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (tracker, delivery_id) DO NOTHING",
    )
    .bind(event.tracker().as_str())
    .bind(event.delivery.as_str())
    .bind(event.kind.as_str())
    .bind(event.issue.key.to_string())
    .bind(pack_event(event)?)
    .bind(to_ms(event.received_at))
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<String> {
    serde_json::to_string(v).context("serializing for the store")
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Inbox for SqliteStore {
    async fn enqueue_batch(&self, events: &[Event]) -> anyhow::Result<Vec<Inserted>> {
        let _writing = self.write_lock(true).await;
        // One statement and one transaction, so one fsync, for the whole batch: this is what
        // lets ingest keep up. The rows it returns are the ones that were new.
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            rows.push((e, e.issue.key.to_string(), pack_event(e)?));
        }
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO inbox (tracker, delivery_id, kind, issue_key, event, received_at) ",
        );
        q.push_values(&rows, |mut b, (e, key, packed)| {
            b.push_bind(e.tracker().as_str())
                .push_bind(e.delivery.as_str())
                .push_bind(e.kind.as_str())
                .push_bind(key.as_str())
                .push_bind(packed.as_str())
                .push_bind(to_ms(e.received_at));
        });
        q.push(" ON CONFLICT (tracker, delivery_id) DO NOTHING RETURNING tracker, delivery_id");
        let added: Vec<(String, String)> = q.build_query_as().fetch_all(&self.inbox).await?;
        Ok(inserted_in_order(events, added))
    }

    async fn claim(&self, now: DateTime<Utc>, limit: usize, lease: chrono::Duration) -> anyhow::Result<Vec<InboxItem>> {
        let _writing = self.write_lock(false).await;
        let now_ms = to_ms(now);
        // SQLite runs one writer at a time, so choosing and leasing in one statement is atomic.
        // Pending rows are walked in arrival order and each is checked to be its issue's head
        // with one index probe, so a claim costs what it returns, not the inbox's depth.
        let rows = sqlx::query(
            "UPDATE inbox SET lease_owner = ?, lease_until = ?
             WHERE id IN (
                SELECT i.id FROM inbox i
                WHERE i.status = 'pending' AND i.next_attempt_at <= ? AND i.lease_until <= ?
                  AND NOT EXISTS (SELECT 1 FROM inbox p
                                  WHERE p.issue_key = i.issue_key AND p.status = 'pending' AND p.id < i.id)
                ORDER BY i.id LIMIT ?)
             RETURNING id, event, attempts",
        )
        .bind(&self.owner)
        .bind(to_ms(now + lease))
        .bind(now_ms)
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        drop(_writing);
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get("id");
            match unpack_event(row.get("event")) {
                Ok(event) => items.push(InboxItem { id, event, attempts: row.get::<i64, _>("attempts") as u32 }),
                // One unreadable row must not stop the inbox: it becomes a dead letter.
                Err(e) => self.bury(id, &format!("the stored event is unreadable: {e:#}")).await?,
            }
        }
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> anyhow::Result<()> {
        let _writing = self.write_lock(false).await;
        if ids.is_empty() {
            return Ok(());
        }
        // One statement for every lease this process holds, as PostgreSQL's `= ANY($2)`.
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("UPDATE inbox SET lease_until = ");
        q.push_bind(to_ms(until)).push(" WHERE lease_owner = ").push_bind(&self.owner);
        q.push(" AND status = 'pending' AND id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(")");
        q.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn release_all_leases(&self) -> anyhow::Result<u64> {
        let _writing = self.write_lock(false).await;
        let done = sqlx::query("UPDATE inbox SET lease_owner = NULL, lease_until = 0 WHERE status = 'pending' AND lease_until > 0")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn ledger(&self, id: i64) -> anyhow::Result<HashMap<LedgerKey, Option<String>>> {
        let rows = sqlx::query("SELECT purpose, content_hash, result FROM effect_ledger WHERE inbox_id = ?")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        // A purpose this version does not write cannot match any of its effects.
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let purpose = super::Purpose::parse(r.get::<String, _>(0).as_str())?;
                Some((LedgerKey { purpose, content_hash: r.get(1) }, r.get(2)))
            })
            .collect())
    }

    async fn ledger_add(&self, id: i64, key: &LedgerKey, result: Option<&str>, at: DateTime<Utc>) -> anyhow::Result<()> {
        let _writing = self.write_lock(false).await;
        sqlx::query(
            "INSERT INTO effect_ledger (inbox_id, purpose, content_hash, result, applied_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(key.purpose.stored())
        .bind(&key.content_hash)
        .bind(result)
        .bind(to_ms(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn complete(&self, c: Completion) -> anyhow::Result<()> {
        let _writing = self.write_lock(false).await;
        let mut tx = self.pool.begin().await?;
        let key = c.issue.to_string();
        if let Some(snapshot) = &c.snapshot {
            sqlx::query(
                "INSERT INTO issues (issue_key, snapshot, updated_at) VALUES (?, ?, ?)
                 ON CONFLICT (issue_key) DO UPDATE SET snapshot = excluded.snapshot,
                                                       updated_at = excluded.updated_at",
            )
            .bind(&key)
            .bind(json(snapshot)?)
            .bind(to_ms(snapshot.updated_at))
            .execute(&mut *tx)
            .await?;
        }
        for (tag, comment) in &c.bot_comments {
            sqlx::query(
                "INSERT INTO bot_comments (issue_key, tag, comment_id, body_hash, body) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (issue_key, tag) DO UPDATE SET comment_id = excluded.comment_id,
                                                           body_hash = excluded.body_hash,
                                                           body = excluded.body",
            )
            .bind(&key)
            .bind(tag)
            .bind(comment.id.0 as i64)
            .bind(&comment.body_hash)
            .bind(&comment.body)
            .execute(&mut *tx)
            .await?;
        }
        for h in &c.history {
            insert_history(&mut *tx, &key, h, &c.audit.delivery).await?;
        }
        for (purpose, due) in &c.timers {
            match due {
                Some(at) => sqlx::query(
                    "INSERT INTO timers (issue_key, purpose, due_at) VALUES (?, ?, ?)
                     ON CONFLICT (issue_key, purpose) DO UPDATE SET
                        fired_at = CASE WHEN timers.due_at = excluded.due_at THEN timers.fired_at END,
                        due_at = excluded.due_at",
                )
                .bind(&key)
                .bind(purpose)
                .bind(to_ms(*at))
                .execute(&mut *tx)
                .await?,
                None if purpose == "*" => {
                    sqlx::query("DELETE FROM timers WHERE issue_key = ?").bind(&key).execute(&mut *tx).await?
                }
                None => sqlx::query("DELETE FROM timers WHERE issue_key = ? AND purpose = ?")
                    .bind(&key)
                    .bind(purpose)
                    .execute(&mut *tx)
                    .await?,
            };
        }
        for (id, event) in &c.absorbed {
            // Only a row still pending and not leased (it is behind this one in its issue's
            // order) is rewritten.
            sqlx::query(
                "UPDATE inbox SET event = ? WHERE id = ? AND status = 'pending' AND lease_owner IS NULL AND issue_key = ?",
            )
            .bind(pack_event(event)?)
            .bind(*id)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        }
        for (comment, revision) in &c.revisions {
            sqlx::query(
                "INSERT INTO comment_revisions (issue_key, comment_id, revision) VALUES (?, ?, ?)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&key)
            .bind(comment.0 as i64)
            .bind(*revision)
            .execute(&mut *tx)
            .await?;
        }
        let a = &c.audit;
        sqlx::query(
            "INSERT INTO audit (tracker, delivery_id, issue_key, kind, policy_version, decision,
                                effects, dry_run, attempt, eval_us, apply_ms, total_ms, processed_at)
             SELECT tracker, delivery_id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM inbox WHERE id = ?
             ON CONFLICT (tracker, delivery_id) DO UPDATE SET
                policy_version = excluded.policy_version, decision = excluded.decision,
                effects = excluded.effects, dry_run = excluded.dry_run, attempt = excluded.attempt,
                eval_us = excluded.eval_us, apply_ms = excluded.apply_ms,
                total_ms = excluded.total_ms, processed_at = excluded.processed_at",
        )
        .bind(&a.issue_key)
        .bind(&a.kind)
        .bind(&a.policy_version)
        .bind(json(&a.decision)?)
        .bind(json(&a.effects)?)
        .bind(a.dry_run)
        .bind(a.attempt as i64)
        .bind(a.eval_us as i64)
        .bind(a.apply_ms as i64)
        .bind(a.total_ms as i64)
        .bind(to_ms(a.processed_at))
        .bind(c.inbox_id)
        .execute(&mut *tx)
        .await?;
        let marked = sqlx::query(
            "UPDATE inbox SET status = 'done', attempts = attempts + 1, last_error = NULL,
                              lease_owner = NULL, lease_until = 0
             WHERE id = ? AND status = 'pending' AND lease_owner = ?",
        )
        .bind(c.inbox_id)
        .bind(&self.owner)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() != 1 {
            // Our lease ran out and another worker took the event over: keep its record.
            tx.rollback().await?;
            bail!("inbox row {} is no longer leased to this worker", c.inbox_id);
        }
        sqlx::query("DELETE FROM effect_ledger WHERE inbox_id = ?").bind(c.inbox_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retry_at(&self, id: i64, error: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
        let _writing = self.write_lock(false).await;
        sqlx::query(
            "UPDATE inbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,
                              lease_owner = NULL, lease_until = 0
             WHERE id = ? AND status = 'pending' AND lease_owner = ?",
        )
        .bind(error)
        .bind(to_ms(at))
        .bind(id)
        .bind(&self.owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn reorder(&self, head: i64, earlier: i64) -> anyhow::Result<bool> {
        let _writing = self.write_lock(false).await;
        let mut tx = self.pool.begin().await?;
        let read = |id: i64| {
            sqlx::query("SELECT delivery_id, kind, event, received_at, attempts FROM inbox WHERE id = ? AND status = 'pending'").bind(id)
        };
        let (Some(h), Some(e)) = (read(head).fetch_optional(&mut *tx).await?, read(earlier).fetch_optional(&mut *tx).await?) else {
            return Ok(false);
        };
        // The delivery id is unique: the head's is moved aside first.
        let moved = sqlx::query("UPDATE inbox SET delivery_id = ? WHERE id = ? AND lease_owner = ?")
            .bind(format!("~reorder~{}", h.get::<String, _>("delivery_id")))
            .bind(head)
            .bind(&self.owner)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let put = "UPDATE inbox SET delivery_id = ?, kind = ?, event = ?, received_at = ?, attempts = ?,
                                    next_attempt_at = 0, lease_owner = NULL, lease_until = 0
                   WHERE id = ? AND status = 'pending'";
        let taken = sqlx::query(&format!("{put} AND lease_owner IS NULL"))
            .bind(h.get::<String, _>("delivery_id"))
            .bind(h.get::<String, _>("kind"))
            .bind(h.get::<String, _>("event"))
            .bind(h.get::<i64, _>("received_at"))
            .bind(h.get::<i64, _>("attempts"))
            .bind(earlier)
            .execute(&mut *tx)
            .await?;
        if taken.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(put)
            .bind(e.get::<String, _>("delivery_id"))
            .bind(e.get::<String, _>("kind"))
            .bind(e.get::<String, _>("event"))
            .bind(e.get::<i64, _>("received_at"))
            .bind(e.get::<i64, _>("attempts"))
            .bind(head)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn pending_after(&self, key: &IssueKey, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Event)>> {
        let rows = sqlx::query(
            "SELECT id, event FROM inbox WHERE issue_key = ? AND status = 'pending' AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(key.to_string())
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.get::<i64, _>("id"), unpack_event(r.get("event"))?))).collect()
    }

    async fn comment_acted(&self, key: &IssueKey, comment: CommentId, revision: i64) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM comment_revisions WHERE issue_key = ? AND comment_id = ? AND revision = ?")
            .bind(key.to_string())
            .bind(comment.0 as i64)
            .bind(revision)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn bury(&self, id: i64, error: &str) -> anyhow::Result<()> {
        let _writing = self.write_lock(false).await;
        sqlx::query(
            "UPDATE inbox SET status = 'dead', attempts = attempts + 1, last_error = ?,
                              lease_owner = NULL, lease_until = 0
             WHERE id = ? AND status = 'pending' AND lease_owner = ?",
        )
        .bind(error)
        .bind(id)
        .bind(&self.owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dead_letters(&self) -> anyhow::Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT id, tracker, delivery_id, issue_key, kind, attempts, last_error, received_at
             FROM inbox WHERE status = 'dead' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rows::dead_letter).collect())
    }

    async fn retrying(&self, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT id, tracker, delivery_id, issue_key, kind, attempts, last_error, received_at
             FROM inbox WHERE status = 'pending' AND attempts > 0 ORDER BY id LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rows::dead_letter).collect())
    }

    async fn requeue(&self, ids: &[i64]) -> anyhow::Result<u64> {
        let _writing = self.write_lock(false).await;
        let mut tx = self.pool.begin().await?;
        let mut n = 0;
        if ids.is_empty() {
            n = sqlx::query(
                "UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = 0
                 WHERE status = 'dead'",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        for id in ids {
            n += sqlx::query(
                "UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = 0
                 WHERE id = ? AND status = 'dead'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn inbox_stats(&self) -> anyhow::Result<InboxStats> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(status = 'pending'), 0) AS pending,
                    COALESCE(SUM(status = 'done'), 0) AS done,
                    COALESCE(SUM(status = 'dead'), 0) AS dead,
                    MIN(CASE WHEN status = 'pending' THEN received_at END) AS oldest
             FROM inbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(InboxStats {
            pending: row.get::<i64, _>("pending") as u64,
            done: row.get::<i64, _>("done") as u64,
            dead: row.get::<i64, _>("dead") as u64,
            oldest_pending: row.get::<Option<i64>, _>("oldest").map(from_ms),
        })
    }
}

#[async_trait]
impl Issues for SqliteStore {
    async fn import(&self, snapshot: &IssueSnapshot, history: &[HistoryEntry], done: Option<(&str, &str)>) -> anyhow::Result<()> {
        let _writing = self.write_lock(false).await;
        let mut tx = self.pool.begin().await?;
        let key = snapshot.key.to_string();
        sqlx::query(
            "INSERT INTO issues (issue_key, snapshot, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (issue_key) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
        )
        .bind(&key)
        .bind(json(snapshot)?)
        .bind(to_ms(snapshot.updated_at))
        .execute(&mut *tx)
        .await?;
        for h in history {
            insert_history(&mut *tx, &key, h, "import").await?;
        }
        if let Some((name, period)) = done {
            sqlx::query(
                "INSERT INTO jobs (name, period, state, started_at, finished_at, result) VALUES (?, ?, 'done', ?, ?, 'imported')
                 ON CONFLICT (name, period) DO UPDATE SET state = 'done', result = 'imported'",
            )
            .bind(name)
            .bind(period)
            .bind(to_ms(snapshot.updated_at))
            .bind(to_ms(snapshot.updated_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn issues(&self) -> anyhow::Result<Vec<IssueSnapshot>> {
        let rows = sqlx::query("SELECT snapshot FROM issues").fetch_all(&self.pool).await?;
        rows.into_iter().map(|r| Ok(serde_json::from_str(r.get("snapshot"))?)).collect()
    }

    async fn metric_rows(&self, fields: &[&str], statuses: &[&str], since: DateTime<Utc>) -> anyhow::Result<Vec<MetricRow>> {
        let list = |n: usize| vec!["?"; n].join(", ");
        let mut out = Vec::new();
        let queries = [
            (format!("SELECT issue_key, at, field, new_value FROM history WHERE field IN ({}) AND at >= ? AND refused IS NULL", list(fields.len())), fields),
            // A status read off a snapshot is not a transition: its time is when rollgate first
            // saw the issue, not when the status was entered.
            (
                format!(
                    "SELECT issue_key, at, field, new_value FROM history WHERE field = 'status' AND new_value IN ({}) AND at >= ?
                     AND refused IS NULL AND source <> 'snapshot'",
                    list(statuses.len())
                ),
                statuses,
            ),
        ];
        for (sql, binds) in queries {
            if binds.is_empty() {
                continue;
            }
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(*b);
            }
            let rows = q.bind(to_ms(since)).fetch_all(&self.pool).await?;
            out.reserve(rows.len());
            for r in rows {
                out.push(MetricRow { issue: r.get(0), at_ms: r.get(1), field: r.get(2), to: r.get(3) });
            }
        }
        Ok(out)
    }

    async fn history_of(&self, fields: &[&str], since: DateTime<Utc>) -> anyhow::Result<Vec<(IssueKey, HistoryEntry)>> {
        let mut out = Vec::new();
        for f in fields {
            let (op, pattern) = match f.strip_suffix('*') {
                Some(prefix) => ("GLOB", format!("{prefix}*")),
                None => ("=", f.to_string()),
            };
            let rows = sqlx::query(&format!(
                "SELECT issue_key, at, field, old_value, new_value, actor, source, refused FROM history
                 WHERE field {op} ? AND at >= ? AND refused IS NULL ORDER BY issue_key, at, id"
            ))
            .bind(pattern)
            .bind(to_ms(since))
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let key: IssueKey = r.get::<String, _>("issue_key").parse()?;
                out.push((key, rows::history_entry(&r)));
            }
        }
        Ok(out)
    }

    async fn issue_state(&self, key: &IssueKey) -> anyhow::Result<Option<IssueState>> {
        let k = key.to_string();
        let Some(row) = sqlx::query("SELECT snapshot FROM issues WHERE issue_key = ?")
            .bind(&k)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let snapshot = serde_json::from_str(row.get("snapshot"))
            .with_context(|| format!("stored view of {key} is unreadable"))?;
        let bot_comments = sqlx::query(
            "SELECT tag, comment_id, body_hash, body FROM bot_comments WHERE issue_key = ?",
        )
        .bind(&k)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::bot_comment)
        .collect();
        Ok(Some(IssueState { snapshot, bot_comments }))
    }

    async fn history(&self, key: &IssueKey) -> anyhow::Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT at, field, old_value, new_value, actor, source, refused FROM history
             WHERE issue_key = ? ORDER BY at, id",
        )
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rows::history_entry).collect())
    }
}

#[async_trait]
impl Timers for SqliteStore {
    async fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> anyhow::Result<Vec<Timer>> {
        let rows = sqlx::query(
            "SELECT issue_key, purpose, due_at FROM timers
             WHERE fired_at IS NULL AND due_at <= ? ORDER BY due_at LIMIT ?",
        )
        .bind(to_ms(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::timer).collect()
    }

    async fn fire_timer(&self, timer: &Timer, event: &Event) -> anyhow::Result<bool> {
        let _writing = self.write_lock(false).await;
        let mut tx = self.pool.begin().await?;
        let fired = sqlx::query(
            "UPDATE timers SET fired_at = ? WHERE issue_key = ? AND purpose = ? AND due_at = ? AND fired_at IS NULL",
        )
        .bind(to_ms(event.received_at))
        .bind(timer.issue_key.to_string())
        .bind(&timer.purpose)
        .bind(to_ms(timer.due_at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fired == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_event(&mut *tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait]
impl Jobs for SqliteStore {
    async fn claim_job(&self, name: &str, period: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let _writing = self.write_lock(false).await;
        let done = sqlx::query(
            "INSERT INTO jobs (name, period, state, started_at) VALUES (?, ?, 'running', ?)
             ON CONFLICT (name, period) DO UPDATE SET started_at = excluded.started_at
             WHERE jobs.state = 'running' AND jobs.started_at < ?",
        )
        .bind(name)
        .bind(period)
        .bind(to_ms(now))
        .bind(to_ms(now - JOB_STALE))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_job(&self, name: &str, period: &str, result: Result<&str, &str>, now: DateTime<Utc>) -> anyhow::Result<()> {
        let _writing = self.write_lock(false).await;
        match result {
            Ok(text) => {
                sqlx::query("UPDATE jobs SET state = 'done', finished_at = ?, result = ? WHERE name = ? AND period = ?")
                    .bind(to_ms(now))
                    .bind(text)
                    .bind(name)
                    .bind(period)
                    .execute(&self.pool)
                    .await?;
            }
            Err(_) => {
                sqlx::query("DELETE FROM jobs WHERE name = ? AND period = ? AND state = 'running'")
                    .bind(name)
                    .bind(period)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn last_period(&self, name: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT MAX(period) AS p FROM jobs WHERE name = ?").bind(name).fetch_one(&self.pool).await?;
        Ok(row.get::<Option<String>, _>("p"))
    }

    async fn job_result(&self, name: &str, period: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT result FROM jobs WHERE name = ? AND period = ? AND state = 'done'")
            .bind(name)
            .bind(period)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.get::<Option<String>, _>("result")))
    }
}

#[async_trait]
impl Audit for SqliteStore {
    async fn audit(&self, key: &IssueKey) -> anyhow::Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT delivery_id, issue_key, kind, policy_version, decision, effects, dry_run,
                    attempt, eval_us, apply_ms, total_ms, processed_at
             FROM audit WHERE issue_key = ? ORDER BY id",
        )
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::audit_record).collect()
    }
}

