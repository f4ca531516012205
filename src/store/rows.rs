//! One reader per record for both stores: the SQL differs by dialect, the columns it returns do
//! not, so each record is built from a row in one place.

use super::{from_ms, AuditRecord, BotComment, DeadLetter, HistoryEntry, Source, Timer};
use crate::model::CommentId;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// The column reads the readers need, from a SQLite or a PostgreSQL row.
pub(super) trait Columns {
    fn text(&self, col: &str) -> String;
    fn opt_text(&self, col: &str) -> Option<String>;
    /// An integer column, whatever its width in the schema.
    fn int(&self, col: &str) -> i64;
    fn flag(&self, col: &str) -> bool;
}

impl Columns for SqliteRow {
    fn text(&self, col: &str) -> String {
        self.get(col)
    }
    fn opt_text(&self, col: &str) -> Option<String> {
        self.get(col)
    }
    fn int(&self, col: &str) -> i64 {
        self.get(col)
    }
    fn flag(&self, col: &str) -> bool {
        self.get(col)
    }
}

impl Columns for PgRow {
    fn text(&self, col: &str) -> String {
        self.get(col)
    }
    fn opt_text(&self, col: &str) -> Option<String> {
        self.get(col)
    }
    fn int(&self, col: &str) -> i64 {
        // BIGINT columns decode as i64; the INTEGER ones (attempts, attempt) only as i32.
        self.try_get::<i64, _>(col).unwrap_or_else(|_| self.get::<i32, _>(col).into())
    }
    fn flag(&self, col: &str) -> bool {
        self.get(col)
    }
}

pub(super) fn history_entry(r: &impl Columns) -> HistoryEntry {
    HistoryEntry {
        at: from_ms(r.int("at")),
        field: r.text("field"),
        from: r.opt_text("old_value"),
        to: r.opt_text("new_value"),
        actor: r.text("actor"),
        source: Source::parse(&r.text("source")),
        refused: r.opt_text("refused"),
    }
}

pub(super) fn dead_letter(r: &impl Columns) -> DeadLetter {
    DeadLetter {
        id: r.int("id"),
        tracker: r.text("tracker"),
        delivery: r.text("delivery_id"),
        issue_key: r.text("issue_key"),
        kind: r.text("kind"),
        attempts: r.int("attempts") as u32,
        last_error: r.opt_text("last_error").unwrap_or_default(),
        received_at: from_ms(r.int("received_at")),
    }
}

pub(super) fn audit_record(r: &impl Columns) -> anyhow::Result<AuditRecord> {
    Ok(AuditRecord {
        delivery: r.text("delivery_id"),
        issue_key: r.text("issue_key"),
        kind: r.text("kind"),
        policy_version: r.text("policy_version"),
        decision: serde_json::from_str(&r.text("decision"))?,
        effects: serde_json::from_str(&r.text("effects"))?,
        dry_run: r.flag("dry_run"),
        attempt: r.int("attempt") as u32,
        eval_us: r.int("eval_us") as u64,
        apply_ms: r.int("apply_ms") as u64,
        total_ms: r.int("total_ms") as u64,
        processed_at: from_ms(r.int("processed_at")),
    })
}

/// A `bot_comments` row: its tag and the comment.
pub(super) fn bot_comment(r: &impl Columns) -> (String, BotComment) {
    let comment = BotComment { id: CommentId(r.int("comment_id") as u64), body_hash: r.text("body_hash"), body: r.text("body") };
    (r.text("tag"), comment)
}

pub(super) fn timer(r: &impl Columns) -> anyhow::Result<Timer> {
    Ok(Timer { issue_key: r.text("issue_key").parse()?, purpose: r.text("purpose"), due_at: from_ms(r.int("due_at")) })
}
