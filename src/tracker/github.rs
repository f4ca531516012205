//! GitHub through octocrab. Calls go through octocrab's raw request methods so the retry loop
//! sees status and headers (`Retry-After`, `X-RateLimit-*`), which octocrab's typed errors drop.

use super::retry::{Answer, RetryPolicy};
use super::{Comment, Tracker, TrackerError, TrackerResult};
use crate::config::Secret;
use crate::model::{CommentId, IssueKey, IssueSnapshot};
use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use http::Method;
use octocrab::Octocrab;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Everything but RFC 3986's unreserved characters: `lane/B` must reach GitHub as `lane%2FB`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub struct GithubTracker {
    client: Octocrab,
    retry: RetryPolicy,
}

impl GithubTracker {
    pub fn new(api_url: &str, token: &Secret, retry: RetryPolicy) -> anyhow::Result<Self> {
        Self::with_read_timeout(api_url, token, retry, Duration::from_secs(20))
    }

    /// As `new`, waiting at most `read_timeout` for an answer (tests stall a fake for longer).
    pub fn with_read_timeout(api_url: &str, token: &Secret, retry: RetryPolicy, read_timeout: Duration) -> anyhow::Result<Self> {
        let client = Octocrab::builder()
            .base_uri(api_url)
            .with_context(|| format!("GitHub API URL {api_url:?}"))?
            .personal_token(token.expose().to_string())
            .set_connect_timeout(Some(Duration::from_secs(5)))
            .set_read_timeout(Some(read_timeout))
            .set_write_timeout(Some(Duration::from_secs(20)))
            .build()
            .context("building the GitHub client")?;
        Ok(GithubTracker { client, retry })
    }

    /// One API call with retries in place; returns the response body of a 2xx.
    async fn call(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> TrackerResult<String> {
        self.call_with(&self.retry, method, path, body).await
    }

    async fn call_with(&self, retry: &RetryPolicy, method: Method, path: &str, body: Option<serde_json::Value>) -> TrackerResult<String> {
        let what = format!("{method} {path}");
        retry
            .run("GitHub", &what, message, || async {
                let sent = match method {
                    Method::GET => self.client._get(path).await,
                    Method::POST => self.client._post(path, body.as_ref()).await,
                    Method::PATCH => self.client._patch(path, body.as_ref()).await,
                    Method::DELETE => self.client._delete(path, body.as_ref()).await,
                    _ => unreachable!("only GET, POST, PATCH and DELETE are used"),
                };
                match sent {
                    Err(e) => Answer::Transport(e.to_string()),
                    Ok(response) => {
                        let (status, headers) = (response.status(), response.headers().clone());
                        match self.client.body_to_string(response).await {
                            Ok(text) => Answer::Response { status, headers, text },
                            Err(e) => Answer::Transport(format!("reading the body: {e}")),
                        }
                    }
                }
            })
            .await
    }

    fn issue_path(issue: &IssueKey) -> String {
        format!("/repos/{}/issues/{}", issue.project(), issue.number())
    }
}

/// GitHub's error `message`, kept short: never a whole body in a log line.
fn message(text: &str) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let m = serde_json::from_str::<Message>(text).map(|m| m.message).unwrap_or_default();
    m.chars().take(200).collect()
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> TrackerResult<T> {
    serde_json::from_str(text).map_err(|e| TrackerError::Rejected(format!("unexpected {what} response: {e}")))
}

/// One entry of an issue's timeline that backfill replays.
#[derive(Debug, Clone)]
pub struct PastEvent {
    pub at: chrono::DateTime<Utc>,
    pub actor: String,
    /// `labeled`, `unlabeled`, `closed`, `reopened`.
    pub kind: String,
    pub label: Option<String>,
}

impl GithubTracker {
    /// Creates or updates the repository's labels to `specs` (name, colour, description);
    /// returns how many were created, updated and already right.
    pub async fn sync_labels(&self, repo: &str, specs: &[(String, String, String)]) -> TrackerResult<(usize, usize, usize)> {
        #[derive(Deserialize)]
        struct Label {
            name: String,
            #[serde(default)]
            color: String,
            #[serde(default)]
            description: Option<String>,
        }
        let mut existing = std::collections::BTreeMap::new();
        for page in 1.. {
            let batch: Vec<Label> = parse("labels", &self.call(Method::GET, &format!("/repos/{repo}/labels?per_page=100&page={page}"), None).await?)?;
            let n = batch.len();
            existing.extend(batch.into_iter().map(|l| (l.name.clone(), l)));
            if n < 100 {
                break;
            }
        }
        let (mut created, mut updated, mut same) = (0, 0, 0);
        for (name, color, description) in specs {
            match existing.get(name) {
                None => {
                    let body = json!({ "name": name, "color": color, "description": description });
                    self.call(Method::POST, &format!("/repos/{repo}/labels"), Some(body)).await?;
                    created += 1;
                }
                Some(l) if l.color.eq_ignore_ascii_case(color) && l.description.as_deref() == Some(description.as_str()) => same += 1,
                Some(_) => {
                    let path = format!("/repos/{repo}/labels/{}", utf8_percent_encode(name, PATH_SEGMENT));
                    self.call(Method::PATCH, &path, Some(json!({ "color": color, "description": description }))).await?;
                    updated += 1;
                }
            }
        }
        Ok((created, updated, same))
    }

    /// The login the token acts as (GET /user): proves the URL and the credentials.
    pub async fn whoami(&self) -> TrackerResult<String> {
        let user: RawUser = parse("user", &self.call(Method::GET, "/user", None).await?)?;
        Ok(user.login)
    }

    /// One page (100) of a repository's issues, pull requests left out; `None` past the last.
    pub async fn list_issues(&self, repo: &str, page: u32) -> TrackerResult<Option<Vec<IssueSnapshot>>> {
        let path = format!("/repos/{repo}/issues?state=all&sort=created&direction=asc&per_page=100&page={page}");
        let raw: Vec<serde_json::Value> = parse("issues", &self.call(Method::GET, &path, None).await?)?;
        if raw.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for v in raw.iter().filter(|v| v.get("pull_request").is_none()) {
            let snap = crate::ingest::github::issue_from_rest(repo, &v.to_string())
                .map_err(|e| TrackerError::Rejected(format!("unexpected issue in the list: {e}")))?;
            out.push(snap);
        }
        Ok(Some(out))
    }

    /// The label and state events of an issue, oldest first.
    pub async fn issue_events(&self, issue: &IssueKey) -> TrackerResult<Vec<PastEvent>> {
        #[derive(Deserialize)]
        struct Raw {
            event: String,
            created_at: chrono::DateTime<Utc>,
            #[serde(default)]
            actor: Option<RawUser>,
            #[serde(default)]
            label: Option<RawLabel>,
        }
        #[derive(Deserialize)]
        struct RawLabel {
            name: String,
        }
        let mut out = Vec::new();
        for page in 1.. {
            let path = format!("{}/events?per_page=100&page={page}", Self::issue_path(issue));
            let batch: Vec<Raw> = parse("events", &self.call(Method::GET, &path, None).await?)?;
            let n = batch.len();
            out.extend(batch.into_iter().filter(|e| ["labeled", "unlabeled", "closed", "reopened"].contains(&e.event.as_str())).map(|e| PastEvent {
                at: e.created_at,
                actor: e.actor.map(|a| a.login).unwrap_or_default(),
                kind: e.event,
                label: e.label.map(|l| l.name),
            }));
            if n < 100 {
                break;
            }
        }
        out.sort_by_key(|e| e.at);
        Ok(out)
    }
}

#[derive(Deserialize)]
struct RawComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: RawUser,
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
}

#[async_trait]
impl Tracker for GithubTracker {
    async fn get_issue(&self, issue: &IssueKey) -> TrackerResult<IssueSnapshot> {
        let text = self.call(Method::GET, &Self::issue_path(issue), None).await?;
        crate::ingest::github::issue_from_rest(issue.project(), &text)
            .map_err(|e| TrackerError::Rejected(format!("unexpected issue response: {e}")))
    }

    async fn list_comments(&self, issue: &IssueKey) -> TrackerResult<Vec<Comment>> {
        const PER_PAGE: usize = 100;
        let mut all = Vec::new();
        for page in 1.. {
            let path = format!("{}/comments?per_page={PER_PAGE}&page={page}", Self::issue_path(issue));
            let batch: Vec<RawComment> = parse("comments", &self.call(Method::GET, &path, None).await?)?;
            let n = batch.len();
            all.extend(batch.into_iter().map(|c| Comment {
                id: CommentId(c.id),
                body: c.body.unwrap_or_default(),
                author: c.user.login,
            }));
            if n < PER_PAGE {
                break;
            }
        }
        Ok(all)
    }

    async fn add_labels(&self, issue: &IssueKey, labels: &[String]) -> TrackerResult<()> {
        let path = format!("{}/labels", Self::issue_path(issue));
        self.call(Method::POST, &path, Some(json!({ "labels": labels }))).await.map(drop)
    }

    async fn remove_label(&self, issue: &IssueKey, label: &str) -> TrackerResult<()> {
        let name = utf8_percent_encode(label, PATH_SEGMENT);
        let path = format!("{}/labels/{name}", Self::issue_path(issue));
        match self.call(Method::DELETE, &path, None).await {
            Ok(_) | Err(TrackerError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_comment(&self, issue: &IssueKey, body: &str) -> TrackerResult<CommentId> {
        let path = format!("{}/comments", Self::issue_path(issue));
        // Not repeated in place: when the answer is lost (5xx, reset, timeout) the comment may
        // exist, and a second POST would post it twice. The event's retry looks for the
        // comment's marker first (process/apply.rs).
        let once = RetryPolicy { attempts: 1, ..self.retry.clone() };
        let text = self.call_with(&once, Method::POST, &path, Some(json!({ "body": body }))).await?;
        Ok(CommentId(parse::<RawComment>("comment", &text)?.id))
    }

    async fn update_comment(&self, issue: &IssueKey, id: CommentId, body: &str) -> TrackerResult<()> {
        let path = format!("/repos/{}/issues/comments/{id}", issue.project());
        self.call(Method::PATCH, &path, Some(json!({ "body": body }))).await.map(drop)
    }

    async fn set_open(&self, issue: &IssueKey, open: bool, reason: Option<&str>) -> TrackerResult<()> {
        let mut body = json!({ "state": if open { "open" } else { "closed" } });
        if let Some(reason) = reason {
            body["state_reason"] = reason.into();
        }
        self.call(Method::PATCH, &Self::issue_path(issue), Some(body)).await.map(drop)
    }

    async fn update_issue_body(&self, issue: &IssueKey, body: &str) -> TrackerResult<()> {
        self.call(Method::PATCH, &Self::issue_path(issue), Some(json!({ "body": body }))).await.map(drop)
    }

    async fn is_team_member(&self, org: &str, team: &str, login: &str) -> TrackerResult<bool> {
        #[derive(Deserialize)]
        struct Membership {
            state: String,
        }
        let seg = |s: &str| utf8_percent_encode(s, PATH_SEGMENT).to_string();
        let path = format!("/orgs/{}/teams/{}/memberships/{}", seg(org), seg(team), seg(login));
        match self.call(Method::GET, &path, None).await {
            Ok(text) => Ok(parse::<Membership>("membership", &text)?.state == "active"),
            Err(TrackerError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_issue(&self, project: &str, title: &str, body: &str, labels: &[String]) -> TrackerResult<IssueKey> {
        #[derive(Deserialize)]
        struct Created {
            number: u64,
        }
        let path = format!("/repos/{project}/issues");
        let text = self
            .call(Method::POST, &path, Some(json!({ "title": title, "body": body, "labels": labels })))
            .await?;
        Ok(IssueKey::github(project, parse::<Created>("issue", &text)?.number))
    }
}
