//! The tracker-neutral vocabulary every other module speaks. Adapters convert tracker JSON
//! into these types at the edge; nothing past `ingest` sees a raw payload.

mod ids;
mod records;

pub use ids::{is_github_repo, BadIssueKey, CommentId, DeliveryId, EventKind, IssueKey, PolicyVersion, TrackerKind};
pub use records::{AuditRecord, BotComment, HistoryEntry, IssueState, LedgerKey, Purpose, Source};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Playbook fields a tracker holds natively (Jira's issue type, status and custom fields),
/// already translated to normalized values by the tracker's mapping. GitHub holds them as
/// labels instead, so its snapshots have none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeFields {
    pub fields: BTreeMap<String, String>,
    pub flags: BTreeSet<String>,
}

/// Who caused a change. `is_bot` comes from the tracker (GitHub's `sender.type == "Bot"`): any
/// bot, not only rollgate; the worker tells rollgate's own changes by its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub login: String,
    #[serde(default)]
    pub is_bot: bool,
}

impl Actor {
    /// A deleted account, as GitHub shows it (`user: null` in a payload).
    pub fn ghost() -> Actor {
        Actor { login: "ghost".into(), is_bot: false }
    }
}

/// The issue as the tracker last described it, in tracker terms (labels), before policy
/// vocabulary is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueSnapshot {
    pub key: IssueKey,
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// Link a human opens (html_url on GitHub).
    pub url: String,
    pub open: bool,
    /// GitHub's `state_reason` (completed, not_planned, reopened) when known.
    #[serde(default)]
    pub state_reason: Option<String>,
    pub author: String,
    pub labels: Vec<String>,
    #[serde(default)]
    pub assignees: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeFields>,
    /// The delivery carried only part of the issue (Jira's comment events): keep the stored
    /// view rather than this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl IssueSnapshot {
    pub fn has_label(&self, name: &str) -> bool {
        self.labels.iter().any(|l| l == name)
    }
}

/// A comment as it reached us in a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommentRef {
    pub id: CommentId,
    pub body: String,
    pub author: Actor,
    /// For an edit: the body before it, when the tracker sends it.
    #[serde(default)]
    pub previous_body: Option<String>,
    /// When this revision of the comment was written (created, or last edited): with the id it
    /// names the revision, so a command is acted on once per revision whatever the delivery id.
    #[serde(default)]
    pub revised_at: Option<DateTime<Utc>>,
}

/// One change as the tracker states it in a delivery: GitHub's `labeled` label, a close with
/// its reason, an item of Jira's changelog. Never derived by comparing snapshots: a delivery's
/// snapshot may be older, thinner or newer than the change it comes with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum StatedChange {
    /// The issue was created holding what its snapshot shows (GitHub `opened`, Jira
    /// `issue_created`): its fields are its author's choice.
    Created,
    /// A label was added (GitHub `labeled`; on Jira a label that is not a mapped flag).
    LabelAdded { label: String },
    LabelRemoved { label: String },
    /// A field the tracker holds natively took a value, in playbook terms (Jira's changelog read
    /// through the mapping). `from` is what the tracker says it was.
    FieldSet { field: String, from: Option<String>, to: Option<String> },
    /// A flag the tracker holds natively (a mapped Jira label) went on or off.
    FlagSet { flag: String, on: bool },
    Closed { reason: Option<String> },
    Reopened,
}

/// One tracker event, normalized. This is what the inbox stores and the worker processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub delivery: DeliveryId,
    /// `issues.labeled`, `issue_comment.created`, ... (tracker event and action).
    pub kind: EventKind,
    pub issue: IssueSnapshot,
    pub actor: Actor,
    /// The label that changed, for labeled/unlabeled: the payload's `issue.labels` may still
    /// list a removed label, so this is the authoritative delta.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub comment: Option<CommentRef>,
    /// When the tracker says the change happened. SLAs and metrics use this time.
    pub occurred_at: DateTime<Utc>,
    /// When rollgate accepted the delivery.
    pub received_at: DateTime<Utc>,
    /// GitHub App installation, for per-installation budgets and tokens.
    #[serde(default)]
    pub installation: Option<u64>,
    /// What the tracker says this event changed (empty for comments and timers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<StatedChange>,
    /// The delivery that took this event's change in (it was the other half of a label swap):
    /// the event still runs in its turn, stating nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_in_by: Option<DeliveryId>,
}

impl Event {
    pub fn tracker(&self) -> TrackerKind {
        self.issue.key.tracker()
    }

    /// The changes this event states. Inbox rows written before `changes` existed carry GitHub's
    /// statement in `kind` and `label`: read it from there.
    pub fn stated(&self) -> Vec<StatedChange> {
        if self.taken_in_by.is_some() {
            return Vec::new();
        }
        if !self.changes.is_empty() {
            return self.changes.clone();
        }
        match (self.kind.as_str(), &self.label) {
            ("issues.opened", _) => vec![StatedChange::Created],
            ("issues.labeled", Some(l)) => vec![StatedChange::LabelAdded { label: l.clone() }],
            ("issues.unlabeled", Some(l)) => vec![StatedChange::LabelRemoved { label: l.clone() }],
            ("issues.closed", _) => vec![StatedChange::Closed { reason: self.issue.state_reason.clone() }],
            ("issues.reopened", _) => vec![StatedChange::Reopened],
            _ => Vec::new(),
        }
    }
}
