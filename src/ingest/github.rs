//! GitHub webhook payloads to `Event`. Only the fields rollgate uses are read; unknown fields
//! are ignored so GitHub can add to its payloads without breaking us.

use super::{ParseError, Parsed};
use crate::model::{Actor, CommentId, CommentRef, DeliveryId, Event, IssueKey, IssueSnapshot, StatedChange};
use chrono::{DateTime, Utc};
use serde::Deserialize;

const ISSUE_ACTIONS: &[&str] =
    &["opened", "edited", "labeled", "unlabeled", "closed", "reopened", "assigned", "unassigned", "deleted"];
const COMMENT_ACTIONS: &[&str] = &["created", "edited"];

/// Parses one delivery. `event` is the `X-GitHub-Event` header.
pub fn parse(
    event: &str,
    delivery: DeliveryId,
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Parsed, ParseError> {
    match event {
        "ping" => {
            // Still a JSON check: a ping with a broken body is a broken delivery.
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(json_error)?;
            Ok(Parsed::Ping)
        }
        "issues" | "issue_comment" => {
            // The action decides which fields the payload must carry: GitHub's schema lets an
            // action we do not handle (`pinned`, `typed`, `transferred`, ...) leave out or null
            // fields the handled ones always have, so it is read first and alone.
            let Head { action } = serde_json::from_slice(body).map_err(json_error)?;
            let allowed = if event == "issues" { ISSUE_ACTIONS } else { COMMENT_ACTIONS };
            if !allowed.contains(&action.as_str()) {
                return Ok(Parsed::Ignored(format!("{event}.{}", super::clip(&action, 100))));
            }
            let p: Payload = serde_json::from_slice(body).map_err(json_error)?;
            let kind = format!("{event}.{}", p.action);
            if p.issue.pull_request.is_some() {
                // Pull requests share the issues API; the playbook governs issues only.
                return Ok(Parsed::Ignored(format!("{kind} on a pull request")));
            }
            // The store reads the key back with `IssueKey`'s parser, which takes only names
            // GitHub could have given (`is_github_repo`): refuse what it cannot read rather than
            // queue an event the worker would fail on, and never let `../..` or non-ASCII text
            // near an API path.
            let key = format!("github:{}#{}", p.repository.full_name, p.issue.number);
            if key.parse::<IssueKey>().is_err() {
                return Err(ParseError("repository.full_name is not owner/repo as GitHub names them (owner: letters, digits, -; repo: letters, digits, . _ -; not . or ..)".into()));
            }
            Ok(Parsed::Event(Box::new(to_event(kind, delivery, p, received_at))))
        }
        other => Ok(Parsed::Ignored(other.to_string())),
    }
}

fn json_error(e: serde_json::Error) -> ParseError {
    // serde's message names the field and position, and may quote the offending value: cap it
    // so neither a log line nor the answer carries a payload's text.
    let msg: String = e.to_string().chars().take(200).collect();
    ParseError(format!("unreadable payload: {msg}"))
}

/// What the delivery says changed: the action and its own fields (the top-level `label`, the
/// close's `state_reason`), never a comparison of `issue` with anything.
fn stated(action: &str, label: Option<&str>, issue: &IssueSnapshot) -> Vec<StatedChange> {
    match (action, label) {
        ("opened", _) => vec![StatedChange::Created],
        ("labeled", Some(l)) => vec![StatedChange::LabelAdded { label: l.to_string() }],
        ("unlabeled", Some(l)) => vec![StatedChange::LabelRemoved { label: l.to_string() }],
        ("closed", _) => vec![StatedChange::Closed { reason: issue.state_reason.clone() }],
        ("reopened", _) => vec![StatedChange::Reopened],
        _ => Vec::new(),
    }
}

fn to_event(kind: String, delivery: DeliveryId, p: Payload, received_at: DateTime<Utc>) -> Event {
    let snapshot = p.issue.into_snapshot(&p.repository.full_name);
    let comment_time = p.comment.as_ref().map(|c| c.updated_at.unwrap_or(c.created_at));
    let comment = p.comment.map(|c| CommentRef {
        id: CommentId(c.id),
        body: c.body.unwrap_or_default(),
        author: c.user.map(Actor::from).unwrap_or_else(Actor::ghost),
        previous_body: p.changes.as_ref().and_then(|ch| ch.body.as_ref()).map(|b| b.from.clone()),
        revised_at: Some(c.updated_at.unwrap_or(c.created_at)),
    });
    let action = kind.split_once('.').map(|(_, a)| a).unwrap_or("");
    let label = p.label.map(|l| l.name);
    let changes = stated(action, label.as_deref(), &snapshot);
    // The tracker's own time for the change: a close happened at closed_at; a comment at its
    // own timestamp; anything else at the issue's updated_at.
    let occurred_at = match (kind.as_str(), &comment) {
        ("issues.closed", _) => snapshot.closed_at.unwrap_or(snapshot.updated_at),
        (_, Some(_)) => comment_time.unwrap_or(snapshot.updated_at),
        _ => snapshot.updated_at,
    };
    Event {
        delivery,
        kind: kind.into(),
        actor: p.sender.map(Actor::from).unwrap_or_else(Actor::ghost),
        label,
        comment,
        occurred_at,
        received_at,
        installation: p.installation.map(|i| i.id),
        changes,
        taken_in_by: None,
        issue: snapshot,
    }
}

#[derive(Deserialize)]
struct Head {
    action: String,
}

#[derive(Deserialize)]
struct Payload {
    action: String,
    issue: RawIssue,
    repository: Repository,
    /// Required by GitHub's schema for these events, but never worth refusing a delivery over.
    #[serde(default)]
    sender: Option<User>,
    #[serde(default)]
    label: Option<Label>,
    #[serde(default)]
    comment: Option<RawComment>,
    #[serde(default)]
    changes: Option<Changes>,
    #[serde(default)]
    installation: Option<Installation>,
}

/// Reads an issue as the REST API returns it (the same shape as in webhooks).
pub fn issue_from_rest(repo: &str, body: &str) -> Result<IssueSnapshot, ParseError> {
    let raw: RawIssue = serde_json::from_str(body).map_err(json_error)?;
    Ok(raw.into_snapshot(repo))
}

impl RawIssue {
    fn into_snapshot(self, repo: &str) -> IssueSnapshot {
        // `state` may be missing in GitHub's schema; only a closed issue has `closed_at`.
        let open = match self.state.as_deref() {
            Some(state) => state == "open",
            None => self.closed_at.is_none(),
        };
        IssueSnapshot {
            key: IssueKey::github(repo, self.number),
            title: self.title,
            body: self.body.unwrap_or_default(),
            url: self.html_url,
            open,
            state_reason: self.state_reason,
            // A deleted account shows as `null` ("ghost" on github.com).
            author: self.user.map(|u| u.login).unwrap_or_else(|| Actor::ghost().login),
            labels: self.labels.into_iter().map(|l| l.name).collect(),
            assignees: self.assignees.into_iter().flatten().map(|u| u.login).collect(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            closed_at: self.closed_at,
            native: None,
            partial: false,
        }
    }
}

#[derive(Deserialize)]
struct RawIssue {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    html_url: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    state_reason: Option<String>,
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    assignees: Vec<Option<User>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(default)]
    closed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct User {
    login: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl From<User> for Actor {
    fn from(u: User) -> Actor {
        Actor { is_bot: u.kind.as_deref() == Some("Bot"), login: u.login }
    }
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
struct RawComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<User>,
    created_at: DateTime<Utc>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Changes {
    #[serde(default)]
    body: Option<Change>,
}

#[derive(Deserialize)]
struct Change {
    from: String,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `github_payload` fuzz target's property: an event's key reads back as the store
    /// reads it. A signed delivery naming a repository without `owner/repo` used to be queued.
    #[test]
    fn a_repository_name_the_store_cannot_read_back_is_refused() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github/issues.opened.json");
        let mut p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for name in ["no-slash", "a/b/c", "/repo", "owner/", "../..", "owner/..", "ôwner/repo", "owner/répo", "own er/repo", "owner/re%2Fpo"] {
            p["repository"]["full_name"] = serde_json::json!(name);
            let err = parse("issues", DeliveryId("d".into()), p.to_string().as_bytes(), Utc::now()).expect_err(name);
            assert!(err.0.contains("owner/repo"), "{name}: {err}");
        }
        p["repository"]["full_name"] = serde_json::json!("octo-org/octo-repo");
        assert!(matches!(parse("issues", DeliveryId("d".into()), p.to_string().as_bytes(), Utc::now()), Ok(Parsed::Event(_))));
    }
}
