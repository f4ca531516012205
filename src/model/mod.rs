//! The tracker-neutral vocabulary every other module speaks. Adapters convert tracker JSON
//! into these types at the edge; nothing past `ingest` sees a raw payload.

mod ids;

pub use ids::{is_github_repo, BadIssueKey, CommentId, DeliveryId, IssueKey, PolicyVersion, TrackerKind};

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

/// Who caused a change. `is_bot` comes from the tracker (GitHub's `sender.type == "Bot"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub login: String,
    #[serde(default)]
    pub is_bot: bool,
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
}

/// One tracker event, normalized. This is what the inbox stores and the worker processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub delivery: DeliveryId,
    /// `issues.labeled`, `issue_comment.created`, ... (tracker event and action).
    pub kind: String,
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
    /// The native fields before this change, when the delivery says (Jira's changelog): lets
    /// rollgate judge a change on an issue it has never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<NativeFields>,
}

impl Event {
    pub fn tracker(&self) -> TrackerKind {
        self.issue.key.tracker()
    }
}
