//! Talking to trackers. Domain code never calls an API; it hands effects to a `Tracker`.

pub mod github;
pub mod guard;
pub mod jira;
mod retry;

pub use retry::RetryPolicy;

use crate::model::{CommentId, IssueKey, IssueSnapshot, TrackerKind};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: CommentId,
    pub body: String,
    pub author: String,
}

/// Errors a caller branches on: retry later, give up, or treat as done.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("not found")]
    NotFound,
    /// Rate limited beyond what is worth waiting for in place: try again at `retry_at`.
    #[error("rate limited until {retry_at}")]
    RateLimited { retry_at: DateTime<Utc> },
    /// 5xx, timeouts, resets: worth another attempt later.
    #[error("tracker unavailable: {0}")]
    Transient(String),
    /// The tracker refused the request (401, 403, 422, ...): retrying will not help.
    #[error("tracker refused: {0}")]
    Rejected(String),
}

impl TrackerError {
    /// When a failed event should be tried again, if the error says.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            TrackerError::RateLimited { retry_at } => Some(*retry_at),
            _ => None,
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, TrackerError::Rejected(_))
    }
}

pub type TrackerResult<T> = Result<T, TrackerError>;

/// Field, flag and label changes for a tracker that holds playbook fields natively (Jira).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldUpdate {
    /// Normalized field -> new value (None clears it). `status` is a workflow transition.
    pub set: Vec<(String, Option<String>)>,
    /// Flag -> on/off.
    pub flags: Vec<(String, bool)>,
    /// Labels that are neither: added (true) or removed.
    pub labels: Vec<(String, bool)>,
}

impl FieldUpdate {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.flags.is_empty() && self.labels.is_empty()
    }
}

/// How long a comment a tracker takes, and how a comment is counted against that: the one place
/// that knows it. The planner clips every bot comment to it (`plan::clip`), so what rollgate
/// stores as the comment is exactly what the tracker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommentLimit(TrackerKind);

/// GitHub refuses an issue comment over 65,536 characters ("Body is too long (maximum is 65536
/// characters)", HTTP 422). It counts code points (65,536 astral-plane characters are
/// accepted, dead-claudia/github-limits#13), so counting Rust `char`s never undercounts.
pub const GITHUB_COMMENT_CHARS: usize = 65_536;

/// Jira refuses a comment over 32,767 characters ("The entered text is too long. It exceeds the
/// allowed limit of 32767 characters", HTTP 400; Cloud, and Data Center's default for
/// `jira.text.field.character.limit`). It counts its stored wiki-markup form, not the Markdown
/// rollgate writes, and its own ADF-to-wiki conversion can come out longer than ours: the
/// budget leaves 2,767 characters of headroom below the limit.
pub const JIRA_COMMENT_CHARS: usize = 32_767;
const JIRA_COMMENT_BUDGET: usize = 30_000;

impl CommentLimit {
    pub const fn of(tracker: TrackerKind) -> CommentLimit {
        CommentLimit(tracker)
    }

    /// The most a comment may measure (`size`).
    pub fn max(&self) -> usize {
        match self.0 {
            TrackerKind::Github => GITHUB_COMMENT_CHARS,
            TrackerKind::Jira => JIRA_COMMENT_BUDGET,
        }
    }

    /// A comment's length as this tracker counts it: characters of the Markdown on GitHub, of
    /// the wiki markup the Jira adapter makes from it on Jira (the hidden marker is not sent
    /// there).
    pub fn size(&self, markdown: &str) -> usize {
        match self.0 {
            TrackerKind::Github => markdown.chars().count(),
            TrackerKind::Jira => jira::markup::to_wiki(markdown).chars().count(),
        }
    }
}

#[async_trait]
pub trait Tracker: Send + Sync + 'static {
    async fn get_issue(&self, issue: &IssueKey) -> TrackerResult<IssueSnapshot>;
    async fn list_comments(&self, issue: &IssueKey) -> TrackerResult<Vec<Comment>>;
    async fn add_labels(&self, issue: &IssueKey, labels: &[String]) -> TrackerResult<()>;
    /// Removing a label that is already gone succeeds.
    async fn remove_label(&self, issue: &IssueKey, label: &str) -> TrackerResult<()>;
    async fn create_comment(&self, issue: &IssueKey, body: &str) -> TrackerResult<CommentId>;
    async fn update_comment(&self, issue: &IssueKey, id: CommentId, body: &str) -> TrackerResult<()>;
    /// Closes (with a reason such as `completed` or `not_planned`) or reopens an issue.
    async fn set_open(&self, issue: &IssueKey, open: bool, reason: Option<&str>) -> TrackerResult<()>;
    /// Whether `login` is an active member of team `team` in organisation `org`.
    async fn is_team_member(&self, org: &str, team: &str, login: &str) -> TrackerResult<bool>;
    /// Replaces an issue's body (the weekly issues rollgate keeps up to date).
    async fn update_issue_body(&self, issue: &IssueKey, body: &str) -> TrackerResult<()>;

    /// The login rollgate's own changes appear under on this tracker (the token's user, the
    /// App's `<slug>[bot]`, the Jira account): how the worker tells rollgate's echoes and
    /// comments from people's. Asked once, then remembered.
    async fn identity(&self) -> TrackerResult<String>;

    /// A delivery about `project` came through GitHub App installation `installation`: calls
    /// about that project's account can use its token without asking GitHub which it is.
    fn note_installation(&self, _project: &str, _installation: u64) {}

    /// Whether playbook fields are native fields here (Jira) rather than labels (GitHub).
    fn holds_fields(&self) -> bool {
        false
    }

    /// Applies field changes in one go (Jira). Trackers that hold fields as labels never get one.
    async fn update_fields(&self, _issue: &IssueKey, _update: &FieldUpdate) -> TrackerResult<()> {
        Err(TrackerError::Rejected("this tracker holds playbook fields as labels".into()))
    }

    /// The newest issue in `project` titled exactly `title` and labelled `label`, open or
    /// closed, among the latest hundred with that label: how a job that filed an issue but never
    /// heard back (the answer was lost) finds it instead of filing it again.
    async fn find_issue(&self, _project: &str, _title: &str, _label: &str) -> TrackerResult<Option<IssueKey>> {
        Ok(None)
    }

    /// Replicas sharing this deployment's budget with this process (see `guard::Budget`).
    fn share_budget(&self, _replicas: usize) {}

    /// Files a new issue in `project` (`owner/repo`); returns its key.
    async fn create_issue(
        &self,
        project: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> TrackerResult<IssueKey>;
}
