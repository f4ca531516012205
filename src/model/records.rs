//! The records rollgate keeps about an issue — what it holds, who changed what and when, what
//! was decided — as every layer speaks of them. The store persists them; nothing here knows how.

use super::{CommentId, IssueSnapshot};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// A comment the bot owns on an issue; `body_hash` lets the planner skip unchanged edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotComment {
    pub id: CommentId,
    pub body_hash: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct IssueState {
    pub snapshot: IssueSnapshot,
    pub bot_comments: BTreeMap<String, BotComment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A person (or another bot) changed the issue on the tracker.
    Tracker,
    /// rollgate applied the change.
    Rollgate,
    /// A fact a policy asked to record.
    Policy,
    /// What the issue held when rollgate first saw it: who set it, and when, is unknown.
    Snapshot,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Tracker => "tracker",
            Source::Rollgate => "rollgate",
            Source::Policy => "policy",
            Source::Snapshot => "snapshot",
        }
    }

    /// The stored spelling back; anything unknown is a tracker change.
    pub fn parse(s: &str) -> Source {
        match s {
            "rollgate" => Source::Rollgate,
            "policy" => Source::Policy,
            "snapshot" => Source::Snapshot,
            _ => Source::Tracker,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub actor: String,
    pub source: Source,
    /// The change was made on the tracker, and refused and reverted by this rule: it never took
    /// effect. Clocks, reports, the decisions log and the state rules read skip it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl HistoryEntry {
    /// A fact a policy asked to record (`decision.records`), by the event's actor at its time.
    pub fn record(at: DateTime<Utc>, field: &str, value: &str, actor: &str) -> HistoryEntry {
        HistoryEntry { at, field: field.to_string(), from: None, to: Some(value.to_string()), actor: actor.to_string(), source: Source::Policy, refused: None }
    }

    /// Whether the change took effect (it was not refused).
    pub fn effective(&self) -> bool {
        self.refused.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub delivery: String,
    pub issue_key: String,
    pub kind: String,
    pub policy_version: String,
    pub decision: serde_json::Value,
    pub effects: serde_json::Value,
    pub dry_run: bool,
    pub attempt: u32,
    pub eval_us: u64,
    pub apply_ms: u64,
    pub total_ms: u64,
    pub processed_at: DateTime<Utc>,
}


/// What the effect ledger remembers an applied effect by: what the call was for and a hash of
/// what it carried. A retry of the same event finds it and skips the call, so no effect is
/// applied twice; a different effect of the same kind has another hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LedgerKey {
    pub purpose: Purpose,
    pub content_hash: String,
}

/// The kind of tracker call a ledger entry stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Purpose {
    AddLabels,
    RemoveLabel,
    SetOpen,
    /// The bot comment with this tag (created or edited).
    Comment(String),
    /// A tracker that holds fields natively: every field of the plan in one update.
    Fields,
}

impl Purpose {
    /// The stored spelling (unchanged from when purposes were strings, so ledgers written by
    /// an older version still match).
    pub fn stored(&self) -> String {
        match self {
            Purpose::AddLabels => "add_labels".into(),
            Purpose::RemoveLabel => "remove_label".into(),
            Purpose::SetOpen => "set_open".into(),
            Purpose::Comment(tag) => format!("comment:{tag}"),
            Purpose::Fields => "fields".into(),
        }
    }

    /// The stored spelling back; `None` for one this version does not write.
    pub fn parse(s: &str) -> Option<Purpose> {
        Some(match s {
            "add_labels" => Purpose::AddLabels,
            "remove_label" => Purpose::RemoveLabel,
            "set_open" => Purpose::SetOpen,
            "fields" => Purpose::Fields,
            _ => Purpose::Comment(s.strip_prefix("comment:")?.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Purpose;

    #[test]
    fn a_purpose_reads_back_as_stored_and_an_unknown_one_matches_nothing() {
        for p in [Purpose::AddLabels, Purpose::RemoveLabel, Purpose::SetOpen, Purpose::Fields, Purpose::Comment("checklist".into())] {
            assert_eq!(Purpose::parse(&p.stored()), Some(p.clone()), "{p:?}");
        }
        // The spellings ledgers already hold (purposes were strings before).
        assert_eq!(Purpose::parse("comment:blocked"), Some(Purpose::Comment("blocked".into())));
        assert_eq!(Purpose::parse("add_labels"), Some(Purpose::AddLabels));
        assert_eq!(Purpose::parse("set_type"), None);
    }
}
