//! The store for several replicas: PostgreSQL. Same tables and behaviour as SQLite; what
//! differs is concurrency. Replicas lease an issue's head event with `FOR UPDATE SKIP LOCKED`
//! (nobody waits on a row another replica is choosing), timers fire and jobs start with
//! conditional writes, so each happens once however many replicas race for it.

use super::*;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    /// Deliveries, timers, jobs and everything an operator does: each commit is flushed to
    /// disk before it returns (the server's `synchronous_commit`, normally on).
    pool: PgPool,
    /// The workers' per-event reads and writes (claims, leases, completions, the effect
    /// ledger), with `synchronous_commit = off`: they do not wait for the server's WAL flush,
    /// so they never hold up the flush an acknowledgement waits for. A crash of the database
    /// server (not of a replica) may take back the last fraction of a second of them; those
    /// events are then processed again, and the planner's effects are idempotent. This is the
    /// same promise SQLite's processing writes make (`synchronous = NORMAL`).
    work: PgPool,
    owner: String,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let context = || format!("connecting to PostgreSQL at {}", crate::config::redact_url(url));
        let pool = PgPoolOptions::new().max_connections(4).acquire_timeout(Duration::from_secs(10)).connect(url).await.with_context(context)?;
        let work = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET synchronous_commit = off").execute(conn).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(context)?;
        Ok(PostgresStore { pool, work, owner: new_owner() })
    }
}

async fn insert_history<'e, E: sqlx::Executor<'e, Database = sqlx::Postgres>>(executor: E, key: &str, h: &HistoryEntry, delivery: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO history (issue_key, at, field, old_value, new_value, actor, source, delivery, refused)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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

async fn insert_event<'e, E: sqlx::Executor<'e, Database = sqlx::Postgres>>(executor: E, event: &Event) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO inbox (tracker, delivery_id, kind, issue_key, event, received_at)
         VALUES ($1, $2, $3, $4, $5, $6)
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

async fn upsert_issue<'e, E: sqlx::Executor<'e, Database = sqlx::Postgres>>(executor: E, snapshot: &IssueSnapshot) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO issues (issue_key, snapshot, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (issue_key) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
    )
    .bind(snapshot.key.to_string())
    .bind(json(snapshot)?)
    .bind(to_ms(snapshot.updated_at))
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        // sqlx takes an advisory lock, so replicas starting together migrate once.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Inbox for PostgresStore {
    async fn enqueue_batch(&self, events: &[Event]) -> anyhow::Result<Vec<Inserted>> {
        // One statement (arrays, one round trip) and one commit for the whole batch.
        let n = events.len();
        let (mut trackers, mut deliveries, mut kinds, mut keys, mut packed, mut received) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for e in events {
            trackers.push(e.tracker().as_str().to_string());
            deliveries.push(e.delivery.as_str().to_string());
            kinds.push(e.kind.to_string());
            keys.push(e.issue.key.to_string());
            packed.push(pack_event(e)?);
            received.push(to_ms(e.received_at));
        }
        let added: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO inbox (tracker, delivery_id, kind, issue_key, event, received_at)
             SELECT tracker, delivery_id, kind, issue_key, event, received_at
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
                 WITH ORDINALITY AS t(tracker, delivery_id, kind, issue_key, event, received_at, n)
             ORDER BY n
             ON CONFLICT (tracker, delivery_id) DO NOTHING
             RETURNING tracker, delivery_id",
        )
        .bind(trackers)
        .bind(deliveries)
        .bind(kinds)
        .bind(keys)
        .bind(packed)
        .bind(received)
        .fetch_all(&self.pool)
        .await?;
        Ok(inserted_in_order(events, added))
    }

    async fn claim(&self, now: DateTime<Utc>, limit: usize, lease: chrono::Duration) -> anyhow::Result<Vec<InboxItem>> {
        let now_ms = to_ms(now);
        // Heads (no older pending row of the issue) come from this statement's snapshot, found
        // by walking pending rows in arrival order with one index probe each; the row lock re-checks status and lease on
        // the newest version, so a head another replica finished or leased meanwhile is
        // dropped, and SKIP LOCKED means replicas never wait for each other (or deadlock).
        let rows = sqlx::query(
            "WITH picked AS (
                SELECT i.id FROM inbox i
                WHERE i.status = 'pending' AND i.next_attempt_at <= $3 AND i.lease_until <= $3
                  AND NOT EXISTS (SELECT 1 FROM inbox p
                                  WHERE p.issue_key = i.issue_key AND p.status = 'pending' AND p.id < i.id)
                ORDER BY i.id LIMIT $4
                FOR UPDATE OF i SKIP LOCKED
             )
             UPDATE inbox SET lease_owner = $1, lease_until = $2
             FROM picked WHERE inbox.id = picked.id
             RETURNING inbox.id, inbox.event, inbox.attempts",
        )
        // Planned afresh each time, never from a generic plan cached while the inbox was
        // nearly empty: such a plan (sort every pending row, or probe the anti-join by id
        // alone) costs seconds per claim once a burst has queued tens of thousands of rows.
        .persistent(false)
        .bind(&self.owner)
        .bind(to_ms(now + lease))
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&self.work)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get("id");
            match unpack_event(row.get("event")) {
                Ok(event) => items.push(InboxItem { id, event, attempts: row.get::<i32, _>("attempts") as u32 }),
                // One unreadable row must not stop the inbox: it becomes a dead letter.
                Err(e) => self.bury(id, &format!("the stored event is unreadable: {e:#}")).await?,
            }
        }
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query("UPDATE inbox SET lease_until = $1 WHERE id = ANY($2) AND lease_owner = $3 AND status = 'pending'")
            .bind(to_ms(until))
            .bind(ids)
            .bind(&self.owner)
            .execute(&self.work)
            .await?;
        Ok(())
    }

    async fn release_all_leases(&self) -> anyhow::Result<u64> {
        // Other replicas hold live leases here: they run out on their own.
        Ok(0)
    }

    async fn complete(&self, c: Completion) -> anyhow::Result<()> {
        let mut tx = self.work.begin().await?;
        // Fence first: if our lease was taken over, nothing below may be written.
        let marked = sqlx::query(
            "UPDATE inbox SET status = 'done', attempts = attempts + 1, last_error = NULL,
                              lease_owner = NULL, lease_until = 0
             WHERE id = $1 AND status = 'pending' AND lease_owner = $2",
        )
        .bind(c.inbox_id)
        .bind(&self.owner)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() != 1 {
            tx.rollback().await?;
            bail!("inbox row {} is no longer leased to this worker", c.inbox_id);
        }
        let key = c.issue.to_string();
        if let Some(snapshot) = &c.snapshot {
            upsert_issue(&mut *tx, snapshot).await?;
        }
        for (tag, comment) in &c.bot_comments {
            sqlx::query(
                "INSERT INTO bot_comments (issue_key, tag, comment_id, body_hash, body) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (issue_key, tag) DO UPDATE SET comment_id = excluded.comment_id,
                        body_hash = excluded.body_hash, body = excluded.body",
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
                    "INSERT INTO timers (issue_key, purpose, due_at) VALUES ($1, $2, $3)
                     ON CONFLICT (issue_key, purpose) DO UPDATE SET
                        fired_at = CASE WHEN timers.due_at = excluded.due_at THEN timers.fired_at END,
                        due_at = excluded.due_at",
                )
                .bind(&key)
                .bind(purpose)
                .bind(to_ms(*at))
                .execute(&mut *tx)
                .await?,
                None if purpose == "*" => sqlx::query("DELETE FROM timers WHERE issue_key = $1").bind(&key).execute(&mut *tx).await?,
                None => sqlx::query("DELETE FROM timers WHERE issue_key = $1 AND purpose = $2")
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
                "UPDATE inbox SET event = $1 WHERE id = $2 AND status = 'pending' AND lease_owner IS NULL AND issue_key = $3",
            )
            .bind(pack_event(event)?)
            .bind(*id)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        }
        for (comment, revision) in &c.revisions {
            sqlx::query(
                "INSERT INTO comment_revisions (issue_key, comment_id, revision) VALUES ($1, $2, $3)
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
             SELECT tracker, delivery_id, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM inbox WHERE id = $12
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
        .bind(a.attempt as i32)
        .bind(a.eval_us as i64)
        .bind(a.apply_ms as i64)
        .bind(a.total_ms as i64)
        .bind(to_ms(a.processed_at))
        .bind(c.inbox_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM effect_ledger WHERE inbox_id = $1").bind(c.inbox_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retry_at(&self, id: i64, error: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE inbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2,
                              lease_owner = NULL, lease_until = 0
             WHERE id = $3 AND status = 'pending' AND lease_owner = $4",
        )
        .bind(error)
        .bind(to_ms(at))
        .bind(id)
        .bind(&self.owner)
        .execute(&self.work)
        .await?;
        Ok(())
    }

    async fn reorder(&self, head: i64, earlier: i64) -> anyhow::Result<bool> {
        let mut tx = self.work.begin().await?;
        let read = |id: i64| {
            sqlx::query("SELECT delivery_id, kind, event, received_at, attempts FROM inbox WHERE id = $1 AND status = 'pending'").bind(id)
        };
        let (Some(h), Some(e)) = (read(head).fetch_optional(&mut *tx).await?, read(earlier).fetch_optional(&mut *tx).await?) else {
            return Ok(false);
        };
        // The delivery id is unique: the head's is moved aside first.
        let moved = sqlx::query("UPDATE inbox SET delivery_id = $1 WHERE id = $2 AND lease_owner = $3")
            .bind(format!("~reorder~{}", h.get::<String, _>("delivery_id")))
            .bind(head)
            .bind(&self.owner)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let put = "UPDATE inbox SET delivery_id = $1, kind = $2, event = $3, received_at = $4, attempts = $5,
                                    next_attempt_at = 0, lease_owner = NULL, lease_until = 0
                   WHERE id = $6 AND status = 'pending'";
        let taken = sqlx::query(&format!("{put} AND lease_owner IS NULL"))
            .bind(h.get::<String, _>("delivery_id"))
            .bind(h.get::<String, _>("kind"))
            .bind(h.get::<String, _>("event"))
            .bind(h.get::<i64, _>("received_at"))
            .bind(h.get::<i32, _>("attempts"))
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
            .bind(e.get::<i32, _>("attempts"))
            .bind(head)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn pending_after(&self, key: &IssueKey, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Event)>> {
        let rows = sqlx::query(
            "SELECT id, event FROM inbox WHERE issue_key = $1 AND status = 'pending' AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(key.to_string())
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.work)
        .await?;
        rows.iter().map(|r| Ok((r.get::<i64, _>("id"), unpack_event(r.get("event"))?))).collect()
    }

    async fn comment_acted(&self, key: &IssueKey, comment: CommentId, revision: i64) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM comment_revisions WHERE issue_key = $1 AND comment_id = $2 AND revision = $3")
            .bind(key.to_string())
            .bind(comment.0 as i64)
            .bind(revision)
            .fetch_optional(&self.work)
            .await?;
        Ok(row.is_some())
    }

    async fn bury(&self, id: i64, error: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE inbox SET status = 'dead', attempts = attempts + 1, last_error = $1,
                              lease_owner = NULL, lease_until = 0
             WHERE id = $2 AND status = 'pending' AND lease_owner = $3",
        )
        .bind(error)
        .bind(id)
        .bind(&self.owner)
        .execute(&self.work)
        .await?;
        Ok(())
    }

    async fn ledger(&self, id: i64) -> anyhow::Result<HashMap<LedgerKey, Option<String>>> {
        let rows = sqlx::query("SELECT purpose, content_hash, result FROM effect_ledger WHERE inbox_id = $1")
            .bind(id)
            .fetch_all(&self.work)
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
        sqlx::query(
            "INSERT INTO effect_ledger (inbox_id, purpose, content_hash, result, applied_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(key.purpose.stored())
        .bind(&key.content_hash)
        .bind(result)
        .bind(to_ms(at))
        .execute(&self.work)
        .await?;
        Ok(())
    }

    async fn heartbeat(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        // One statement: record this replica, forget long-gone ones, count the live ones.
        let live: i64 = sqlx::query_scalar(
            "WITH beat AS (
                INSERT INTO replicas (owner, seen_at) VALUES ($1, $2)
                ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at
             ), gone AS (
                DELETE FROM replicas WHERE seen_at < $4
             )
             SELECT 1 + count(*) FROM replicas WHERE owner <> $1 AND seen_at >= $3",
        )
        .bind(&self.owner)
        .bind(to_ms(now))
        .bind(to_ms(now - REPLICA_TTL))
        .bind(to_ms(now - REPLICA_TTL * 10))
        .fetch_one(&self.work)
        .await?;
        Ok(live as usize)
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
             FROM inbox WHERE status = 'pending' AND attempts > 0 ORDER BY id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rows::dead_letter).collect())
    }

    async fn requeue(&self, ids: &[i64]) -> anyhow::Result<u64> {
        let done = if ids.is_empty() {
            sqlx::query("UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = 0 WHERE status = 'dead'")
                .execute(&self.pool)
                .await?
        } else {
            sqlx::query("UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = 0 WHERE id = ANY($1) AND status = 'dead'")
                .bind(ids)
                .execute(&self.pool)
                .await?
        };
        Ok(done.rows_affected())
    }

    async fn inbox_stats(&self) -> anyhow::Result<InboxStats> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE status = 'pending') AS pending,
                    COUNT(*) FILTER (WHERE status = 'done') AS done,
                    COUNT(*) FILTER (WHERE status = 'dead') AS dead,
                    MIN(received_at) FILTER (WHERE status = 'pending') AS oldest
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
impl Issues for PostgresStore {
    async fn issue_state(&self, key: &IssueKey) -> anyhow::Result<Option<IssueState>> {
        let k = key.to_string();
        let Some(row) = sqlx::query("SELECT snapshot FROM issues WHERE issue_key = $1").bind(&k).fetch_optional(&self.work).await? else {
            return Ok(None);
        };
        let snapshot = serde_json::from_str(row.get("snapshot")).with_context(|| format!("stored view of {key} is unreadable"))?;
        let bot_comments = sqlx::query("SELECT tag, comment_id, body_hash, body FROM bot_comments WHERE issue_key = $1")
            .bind(&k)
            .fetch_all(&self.work)
            .await?
            .iter()
            .map(rows::bot_comment)
            .collect();
        Ok(Some(IssueState { snapshot, bot_comments }))
    }

    async fn import(&self, snapshot: &IssueSnapshot, history: &[HistoryEntry], done: Option<(&str, &str)>) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let key = snapshot.key.to_string();
        upsert_issue(&mut *tx, snapshot).await?;
        for h in history {
            insert_history(&mut *tx, &key, h, "import").await?;
        }
        if let Some((name, period)) = done {
            sqlx::query(
                "INSERT INTO jobs (name, period, state, started_at, finished_at, result) VALUES ($1, $2, 'done', $3, $3, 'imported')
                 ON CONFLICT (name, period) DO UPDATE SET state = 'done', result = 'imported'",
            )
            .bind(name)
            .bind(period)
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
        let to_vec = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let mut out = Vec::new();
        let queries = [
            ("SELECT issue_key, at, field, new_value FROM history WHERE field = ANY($1) AND at >= $2 AND refused IS NULL", to_vec(fields)),
            // A status read off a snapshot is not a transition: its time is when rollgate first
            // saw the issue, not when the status was entered.
            (
                "SELECT issue_key, at, field, new_value FROM history WHERE field = 'status' AND new_value = ANY($1) AND at >= $2
                 AND refused IS NULL AND source <> 'snapshot'",
                to_vec(statuses),
            ),
        ];
        for (sql, binds) in queries {
            if binds.is_empty() {
                continue;
            }
            let rows = sqlx::query(sql).bind(binds).bind(to_ms(since)).fetch_all(&self.pool).await?;
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
            let (cond, value) = match f.strip_suffix('*') {
                Some(prefix) => ("starts_with(field, $1)", prefix.to_string()),
                None => ("field = $1", f.to_string()),
            };
            let rows = sqlx::query(&format!(
                "SELECT issue_key, at, field, old_value, new_value, actor, source, refused FROM history
                 WHERE {cond} AND at >= $2 AND refused IS NULL ORDER BY issue_key, at, id"
            ))
            .bind(value)
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

    async fn history(&self, key: &IssueKey) -> anyhow::Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT at, field, old_value, new_value, actor, source, refused FROM history WHERE issue_key = $1 ORDER BY at, id",
        )
        .bind(key.to_string())
        .fetch_all(&self.work)
        .await?;
        Ok(rows.iter().map(rows::history_entry).collect())
    }
}

#[async_trait]
impl Timers for PostgresStore {
    async fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> anyhow::Result<Vec<Timer>> {
        let rows = sqlx::query(
            "SELECT issue_key, purpose, due_at FROM timers
             WHERE fired_at IS NULL AND due_at <= $1 ORDER BY due_at LIMIT $2",
        )
        .bind(to_ms(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::timer).collect()
    }

    async fn fire_timer(&self, timer: &Timer, event: &Event) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Two replicas sweeping at once: the row lock makes one of these updates wait and then
        // find `fired_at` set, so it changes nothing and queues nothing.
        let fired = sqlx::query(
            "UPDATE timers SET fired_at = $1 WHERE issue_key = $2 AND purpose = $3 AND due_at = $4 AND fired_at IS NULL",
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
impl Jobs for PostgresStore {
    async fn claim_job(&self, name: &str, period: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO jobs (name, period, state, started_at) VALUES ($1, $2, 'running', $3)
             ON CONFLICT (name, period) DO UPDATE SET started_at = excluded.started_at
             WHERE jobs.state = 'running' AND jobs.started_at < $4",
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
        match result {
            Ok(text) => {
                sqlx::query("UPDATE jobs SET state = 'done', finished_at = $1, result = $2 WHERE name = $3 AND period = $4")
                    .bind(to_ms(now))
                    .bind(text)
                    .bind(name)
                    .bind(period)
                    .execute(&self.pool)
                    .await?;
            }
            Err(_) => {
                sqlx::query("DELETE FROM jobs WHERE name = $1 AND period = $2 AND state = 'running'")
                    .bind(name)
                    .bind(period)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn last_period(&self, name: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT MAX(period) AS p FROM jobs WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        Ok(row.get::<Option<String>, _>("p"))
    }

    async fn job_result(&self, name: &str, period: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT result FROM jobs WHERE name = $1 AND period = $2 AND state = 'done'")
            .bind(name)
            .bind(period)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.get::<Option<String>, _>("result")))
    }
}

#[async_trait]
impl Audit for PostgresStore {
    async fn audit(&self, key: &IssueKey) -> anyhow::Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT delivery_id, issue_key, kind, policy_version, decision, effects, dry_run,
                    attempt, eval_us, apply_ms, total_ms, processed_at
             FROM audit WHERE issue_key = $1 ORDER BY id",
        )
        .bind(key.to_string())
        .fetch_all(&self.work)
        .await?;
        rows.iter().map(rows::audit_record).collect()
    }
}


