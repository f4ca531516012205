//! GitHub through octocrab. Calls go through octocrab's raw request methods so the retry loop
//! sees status and headers (`Retry-After`, `X-RateLimit-*`), which octocrab's typed errors drop.
//! Credentials are a token, or a GitHub App whose installation tokens `app` keeps.

mod app;

use app::{AppCredentials, InstallationToken, Installations};
use super::retry::{Answer, RetryPolicy};
use super::{Comment, Tracker, TrackerError, TrackerResult};
use crate::config::{GithubAuth, GithubSettings, Secret};
use crate::model::{CommentId, IssueKey, IssueSnapshot};
use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use http::Method;
use octocrab::Octocrab;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Everything but RFC 3986's unreserved characters: `lane/B` must reach GitHub as `lane%2FB`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub struct GithubTracker {
    /// With a token, authenticated with it; with an App, bare: each call brings its credentials.
    client: Octocrab,
    app: Option<GithubApp>,
    retry: RetryPolicy,
    /// `whoami`, asked once: the login rollgate's writes come back under.
    me: tokio::sync::OnceCell<String>,
}

struct GithubApp {
    credentials: AppCredentials,
    installations: Installations,
}

/// octocrab's builder before credentials: a token is added to it, an App leaves it bare.
type Builder = octocrab::OctocrabBuilder<octocrab::NoSvc, octocrab::DefaultOctocrabBuilderConfig, octocrab::NoAuth, octocrab::NotLayerReady>;

/// Whose credentials a call needs. A token serves every call alike; an App is installed per
/// account (user or organisation), and each installation has its own token.
#[derive(Clone, Copy)]
enum On<'a> {
    /// `owner/repo`: the installation on the owner's account.
    Repo(&'a str),
    /// An organisation (team memberships): its installation.
    Org(&'a str),
    /// The App itself, with its JWT (GET /app, installations, installation tokens).
    App,
}

/// How long to wait for GitHub's answer before the call counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

impl GithubTracker {
    pub fn new(api_url: &str, token: &Secret, retry: RetryPolicy) -> anyhow::Result<Self> {
        Self::with_read_timeout(api_url, token, retry, READ_TIMEOUT)
    }

    /// As `new`, waiting at most `read_timeout` for an answer (tests stall a fake for longer).
    pub fn with_read_timeout(api_url: &str, token: &Secret, retry: RetryPolicy, read_timeout: Duration) -> anyhow::Result<Self> {
        let client = Self::builder(api_url, read_timeout)?.personal_token(token.expose().to_string()).build().context("building the GitHub client")?;
        Ok(GithubTracker { client, app: None, retry, me: Default::default() })
    }

    /// Authenticates as a GitHub App. The key is read and tried here, so a bad one fails at
    /// start with the name of its setting.
    pub fn with_app(api_url: &str, app_id: u64, key: &crate::config::AppKey, retry: RetryPolicy) -> anyhow::Result<Self> {
        let credentials = AppCredentials::new(app_id, key)?;
        let client = Self::builder(api_url, READ_TIMEOUT)?.build().context("building the GitHub client")?;
        let app = GithubApp { credentials, installations: Installations::default() };
        Ok(GithubTracker { client, app: Some(app), retry, me: Default::default() })
    }

    /// The tracker the settings describe, or `None` without GitHub credentials.
    pub fn from_settings(settings: &GithubSettings, retry: RetryPolicy) -> anyhow::Result<Option<Self>> {
        Ok(match settings.auth() {
            None => None,
            Some(GithubAuth::Token(token)) => Some(Self::new(&settings.api_url, token, retry)?),
            Some(GithubAuth::App { id, key }) => Some(Self::with_app(&settings.api_url, id, key, retry)?),
        })
    }

    fn builder(api_url: &str, read_timeout: Duration) -> anyhow::Result<Builder> {
        Ok(Octocrab::builder()
            .base_uri(api_url)
            .with_context(|| format!("GitHub API URL {api_url:?}"))?
            .set_connect_timeout(Some(Duration::from_secs(5)))
            .set_read_timeout(Some(read_timeout))
            .set_write_timeout(Some(Duration::from_secs(20))))
    }

    /// Whether this tracker authenticates as a GitHub App.
    pub fn is_app(&self) -> bool {
        self.app.is_some()
    }

    /// One API call with retries in place; returns the response body of a 2xx. With an App, a
    /// 401 on a cached installation token (revoked, or the clocks disagree) drops the token and
    /// makes the call once more with a fresh one.
    async fn call(&self, on: On<'_>, method: Method, path: &str, body: Option<serde_json::Value>) -> TrackerResult<String> {
        self.call_with(&self.retry, on, method, path, body).await
    }

    async fn call_with(&self, retry: &RetryPolicy, on: On<'_>, method: Method, path: &str, body: Option<serde_json::Value>) -> TrackerResult<String> {
        let Some(app) = &self.app else {
            return self.send(retry, &self.client, &method, path, body.as_ref(), None).await;
        };
        if let On::App = on {
            return self.as_app(app, method, path, body.as_ref()).await;
        }
        let installation = self.installation_for(app, on).await?;
        let token = self.installation_token(app, installation).await?;
        let refused = AtomicBool::new(false);
        match self.send(retry, &self.as_bearer(&token), &method, path, body.as_ref(), Some(&refused)).await {
            Err(_) if refused.load(Ordering::SeqCst) => {
                tracing::info!(installation, "GitHub refused the installation token: fetching a new one");
                app.installations.invalidate(installation, &token).await;
                let token = self.installation_token(app, installation).await?;
                self.send(retry, &self.as_bearer(&token), &method, path, body.as_ref(), None).await
            }
            other => other,
        }
    }

    /// A call as the App itself, with a fresh JWT.
    async fn as_app(&self, app: &GithubApp, method: Method, path: &str, body: Option<&serde_json::Value>) -> TrackerResult<String> {
        let jwt = app.credentials.jwt(Utc::now()).map_err(|e| TrackerError::Rejected(format!("{e:#}")))?;
        self.send(&self.retry, &self.as_bearer(&jwt), &method, path, body, None).await
    }

    /// The client, sending `token` as a bearer token. Cheap: the connection pool is shared.
    fn as_bearer(&self, token: &Secret) -> Octocrab {
        self.client.user_access_token(token.expose().to_string()).expect("octocrab builds a client for a token")
    }

    /// Sends one request with retries in place; `refused` is set when the answer was a 401.
    async fn send(
        &self,
        retry: &RetryPolicy,
        client: &Octocrab,
        method: &Method,
        path: &str,
        body: Option<&serde_json::Value>,
        refused: Option<&AtomicBool>,
    ) -> TrackerResult<String> {
        let what = format!("{method} {path}");
        retry
            .run("GitHub", &what, message, || async {
                let sent = match *method {
                    Method::GET => client._get(path).await,
                    Method::POST => client._post(path, body).await,
                    Method::PATCH => client._patch(path, body).await,
                    Method::DELETE => client._delete(path, body).await,
                    _ => unreachable!("only GET, POST, PATCH and DELETE are used"),
                };
                match sent {
                    Err(e) => Answer::Transport(e.to_string()),
                    Ok(response) => {
                        let (status, headers) = (response.status(), response.headers().clone());
                        if let (Some(flag), http::StatusCode::UNAUTHORIZED) = (refused, status) {
                            flag.store(true, Ordering::SeqCst);
                        }
                        match client.body_to_string(response).await {
                            Ok(text) => Answer::Response { status, headers, text },
                            Err(e) => Answer::Transport(format!("reading the body: {e}")),
                        }
                    }
                }
            })
            .await
    }

    /// The installation covering the repository's or organisation's account: named by a
    /// delivery (`note_installation`), else asked of GitHub once and remembered.
    async fn installation_for(&self, app: &GithubApp, on: On<'_>) -> TrackerResult<u64> {
        let (account, path, place) = match on {
            On::Repo(repo) => (repo.split('/').next().unwrap_or(repo), format!("{}/installation", repo_path(repo)), repo),
            On::Org(org) => (org, format!("/orgs/{}/installation", segment(org)), org),
            On::App => unreachable!("the App itself has no installation"),
        };
        if let Some(id) = app.installations.known(account) {
            return Ok(id);
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let id = match self.as_app(app, Method::GET, &path, None).await {
            Ok(text) => parse::<Installation>("installation", &text)?.id,
            // Not the caller's "issue not found": nothing about this account can be done.
            Err(TrackerError::NotFound) => {
                return Err(TrackerError::Rejected(format!(
                    "the GitHub App {} is not installed on {place}: install it on {account} and give it access (deploy/README.md, \"GitHub App\")",
                    app.credentials.id
                )))
            }
            Err(e) => return Err(self.explain_jwt_refusal(app, e)),
        };
        app.installations.learn(account, id);
        Ok(id)
    }

    async fn installation_token(&self, app: &GithubApp, installation: u64) -> TrackerResult<Secret> {
        #[derive(Deserialize)]
        struct Minted {
            token: String,
            expires_at: chrono::DateTime<Utc>,
        }
        app.installations
            .token(installation, Utc::now, || async {
                let path = format!("/app/installations/{installation}/access_tokens");
                match self.as_app(app, Method::POST, &path, None).await {
                    Ok(text) => {
                        let m: Minted = parse("installation token", &text)?;
                        tracing::debug!(installation, expires_at = %m.expires_at, "new installation token");
                        Ok(InstallationToken { token: Secret::new(m.token), expires_at: m.expires_at })
                    }
                    Err(TrackerError::NotFound) => {
                        app.installations.forget(installation);
                        Err(TrackerError::Rejected(format!(
                            "GitHub App installation {installation} is gone (the App was uninstalled); the next attempt looks for a new one"
                        )))
                    }
                    Err(e) => Err(self.explain_jwt_refusal(app, e)),
                }
            })
            .await
    }

    /// A refused JWT means the App id or the key is wrong: say which settings to check.
    fn explain_jwt_refusal(&self, app: &GithubApp, e: TrackerError) -> TrackerError {
        match e {
            TrackerError::Rejected(m) if m.contains(": 401 ") => TrackerError::Rejected(format!(
                "{m} — GitHub refused the App's JWT: check ROLLGATE_GITHUB_APP_ID ({}) and the private key from {}",
                app.credentials.id, app.credentials.key_from
            )),
            other => other,
        }
    }

    fn issue_path(issue: &IssueKey) -> String {
        format!("{}/issues/{}", repo_path(issue.project()), issue.number())
    }
}

/// `/repos/{owner}/{repo}` with each part percent-encoded as a path segment, so a name that
/// did not come from GitHub (`../..`, `a?b`, non-ASCII) stays inside its segment. Ingest and
/// `IssueKey` refuse such names already (`model::is_github_repo`); this is the second wall,
/// for names typed on the command line (`--repo`, `ROLLGATE_REPORTS_TARGET`).
fn repo_path(repo: &str) -> String {
    let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
    format!("/repos/{}/{}", segment(owner), segment(name))
}

/// One path segment. `.` and `..` are unreserved characters, so percent-encoding leaves them
/// as they are, and a client or proxy that normalises paths would climb with them: they are
/// written `%2E` instead, which names nothing on GitHub.
fn segment(text: &str) -> String {
    if text == "." || text == ".." {
        return text.replace('.', "%2E");
    }
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
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
    /// A close's reason (`completed`, `not_planned`), when GitHub gives it.
    pub state_reason: Option<String>,
}

/// A comment of an issue's past, with each of its revisions, oldest first (the first is its
/// creation): what backfill replays as the comment's deliveries.
#[derive(Debug, Clone)]
pub struct PastComment {
    pub id: u64,
    pub author: String,
    pub revisions: Vec<Revision>,
}

#[derive(Debug, Clone)]
pub struct Revision {
    pub at: chrono::DateTime<Utc>,
    pub editor: String,
    pub body: String,
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
            let batch: Vec<Label> = parse("labels", &self.call(On::Repo(repo), Method::GET, &format!("{}/labels?per_page=100&page={page}", repo_path(repo)), None).await?)?;
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
                    self.call(On::Repo(repo), Method::POST, &format!("{}/labels", repo_path(repo)), Some(body)).await?;
                    created += 1;
                }
                Some(l) if l.color.eq_ignore_ascii_case(color) && l.description.as_deref() == Some(description.as_str()) => same += 1,
                Some(_) => {
                    let path = format!("{}/labels/{}", repo_path(repo), segment(name));
                    self.call(On::Repo(repo), Method::PATCH, &path, Some(json!({ "color": color, "description": description }))).await?;
                    updated += 1;
                }
            }
        }
        Ok((created, updated, same))
    }

    /// The login rollgate's changes appear under: the token's user (GET /user), or with an App
    /// `<app-slug>[bot]` (GET /app). Proves the URL and the credentials.
    pub async fn whoami(&self) -> TrackerResult<String> {
        let Some(app) = &self.app else {
            // With a token every call is alike: `On` only matters to an App.
            let user: RawUser = parse("user", &self.call(On::App, Method::GET, "/user", None).await?)?;
            return Ok(user.login);
        };
        #[derive(Deserialize)]
        struct App {
            slug: String,
        }
        match self.call(On::App, Method::GET, "/app", None).await {
            Ok(text) => Ok(format!("{}[bot]", parse::<App>("app", &text)?.slug)),
            Err(e) => Err(self.explain_jwt_refusal(app, e)),
        }
    }

    /// The accounts the App is installed on (GET /app/installations); empty with a token.
    pub async fn installed_on(&self) -> TrackerResult<Vec<String>> {
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
            account: RawUser,
        }
        let Some(app) = &self.app else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for page in 1.. {
            let path = format!("/app/installations?per_page=100&page={page}");
            let text = self.call(On::App, Method::GET, &path, None).await.map_err(|e| self.explain_jwt_refusal(app, e))?;
            let batch: Vec<Installation> = parse("installations", &text)?;
            let n = batch.len();
            for i in batch {
                app.installations.learn(&i.account.login, i.id);
                out.push(i.account.login);
            }
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// With an App: the installation that covers `place` (`owner/repo` or an organisation),
    /// once a token for it has been obtained. What `doctor` checks before anything is applied.
    pub async fn reach(&self, place: &str) -> TrackerResult<u64> {
        let Some(app) = &self.app else {
            return Err(TrackerError::Rejected("not a GitHub App".into()));
        };
        let on = if place.contains('/') { On::Repo(place) } else { On::Org(place) };
        let installation = self.installation_for(app, on).await?;
        self.installation_token(app, installation).await?;
        Ok(installation)
    }

    /// One page (100) of a repository's issues, pull requests left out; `None` past the last.
    pub async fn list_issues(&self, repo: &str, page: u32) -> TrackerResult<Option<Vec<IssueSnapshot>>> {
        let path = format!("{}/issues?state=all&sort=created&direction=asc&per_page=100&page={page}", repo_path(repo));
        let raw: Vec<serde_json::Value> = parse("issues", &self.call(On::Repo(repo), Method::GET, &path, None).await?)?;
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
            #[serde(default)]
            state_reason: Option<String>,
        }
        #[derive(Deserialize)]
        struct RawLabel {
            name: String,
        }
        let mut out = Vec::new();
        for page in 1.. {
            let path = format!("{}/events?per_page=100&page={page}", Self::issue_path(issue));
            let batch: Vec<Raw> = parse("events", &self.call(On::Repo(issue.project()), Method::GET, &path, None).await?)?;
            let n = batch.len();
            out.extend(batch.into_iter().filter(|e| ["labeled", "unlabeled", "closed", "reopened"].contains(&e.event.as_str())).map(|e| PastEvent {
                at: e.created_at,
                actor: e.actor.map(|a| a.login).unwrap_or_default(),
                kind: e.event,
                label: e.label.map(|l| l.name),
                state_reason: e.state_reason,
            }));
            if n < 100 {
                break;
            }
        }
        out.sort_by_key(|e| e.at);
        Ok(out)
    }

    /// One GraphQL query (`POST {api_url}/graphql`) through the same path as every REST call:
    /// credentials (an App's installation token for `repo`'s owner), retries and rate limits.
    /// GitHub answers a failed query with HTTP 200 and an `errors` array: that is a failure
    /// here (`NOT_FOUND` as `NotFound`, `RATE_LIMITED` as a rate limit, anything else refused),
    /// even when some `data` came with it.
    async fn graphql(&self, repo: &str, query: &str, variables: serde_json::Value) -> TrackerResult<serde_json::Value> {
        let text = self.call(On::Repo(repo), Method::POST, "/graphql", Some(json!({ "query": query, "variables": variables }))).await?;
        let mut answer: serde_json::Value = parse("GraphQL", &text)?;
        if let Some(errors) = answer.get("errors").and_then(|e| e.as_array()).filter(|e| !e.is_empty()) {
            let kind = |k: &str| errors.iter().any(|e| e["type"].as_str() == Some(k));
            if kind("RATE_LIMITED") {
                return Err(TrackerError::RateLimited { retry_at: Utc::now() + chrono::Duration::seconds(60) });
            }
            if kind("NOT_FOUND") {
                return Err(TrackerError::NotFound);
            }
            let said: Vec<&str> = errors.iter().filter_map(|e| e["message"].as_str()).collect();
            let said: String = said.join("; ").chars().take(300).collect();
            return Err(TrackerError::Rejected(format!("GitHub GraphQL: {said}")));
        }
        Ok(answer["data"].take())
    }

    /// An issue's comments as backfill replays them, each with its revisions oldest first: its
    /// creation (author, `createdAt`, the original text), then every edit (editor, `editedAt`,
    /// the text it left). REST gives only today's text, so the comments and their edit
    /// histories (`userContentEdits`) come from GraphQL, a hundred comments a page and, for a
    /// comment edited more than a hundred times, the rest of its history by its node id.
    ///
    /// What GitHub keeps: `userContentEdits` is newest first, empty for a comment never
    /// edited, and once edited holds the original text as its oldest entry; `diff` holds the
    /// revision's whole text. A revision deleted from the history (`deletedAt`, no `diff`) is
    /// skipped: the next edit then shows both changes at once, by its own editor. When the
    /// original text itself was deleted, the creation shows the oldest text that is left.
    /// GraphQL names a GitHub App's bot without `[bot]` (REST's `slug[bot]`): a `Bot`'s login
    /// gets it back, so rollgate knows its own comments. Comment ids are `fullDatabaseId`
    /// (REST's id; `databaseId` is a 32-bit Int, too small for today's ids), or `databaseId`
    /// on a GitHub Enterprise Server that lacks `fullDatabaseId`.
    ///
    /// Where GraphQL is not there at all (a proxy or a GitHub-compatible server that serves
    /// only REST answers 404), each comment is replayed as REST shows it today, as one
    /// revision, with a warning: edits such as ticks then count from the comment's creation.
    pub async fn past_comments(&self, issue: &IssueKey) -> TrackerResult<Vec<PastComment>> {
        let read = match self.past_comments_by(issue, "fullDatabaseId").await {
            Err(TrackerError::Rejected(m)) if m.contains("fullDatabaseId") => self.past_comments_by(issue, "databaseId").await,
            other => other,
        };
        match read {
            Err(TrackerError::NotFound) => {
                tracing::warn!(issue = %issue.short(), "GitHub GraphQL did not answer for this issue: its comments are replayed as they read today, without their edit histories");
                self.rest_comments(issue).await
            }
            other => other,
        }
    }

    /// An issue's comments from REST: today's text of each, as one revision at its creation.
    async fn rest_comments(&self, issue: &IssueKey) -> TrackerResult<Vec<PastComment>> {
        #[derive(Deserialize)]
        struct Raw {
            id: u64,
            #[serde(default)]
            body: Option<String>,
            #[serde(default)]
            user: Option<RawUser>,
            created_at: chrono::DateTime<Utc>,
        }
        let mut out = Vec::new();
        for page in 1.. {
            let path = format!("{}/comments?per_page=100&page={page}", Self::issue_path(issue));
            let batch: Vec<Raw> = parse("comments", &self.call(On::Repo(issue.project()), Method::GET, &path, None).await?)?;
            let n = batch.len();
            for c in batch {
                let author = c.user.map(|u| u.login).unwrap_or_else(|| "ghost".into());
                let revisions = vec![Revision { at: c.created_at, editor: author.clone(), body: c.body.unwrap_or_default() }];
                out.push(PastComment { id: c.id, author, revisions });
            }
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    async fn past_comments_by(&self, issue: &IssueKey, id_field: &str) -> TrackerResult<Vec<PastComment>> {
        let repo = issue.project();
        let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
        let query = COMMENTS_QUERY.replace("ID_FIELD", id_field);
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let vars = json!({ "owner": owner, "name": name, "number": issue.number(), "after": after });
            let data = self.graphql(repo, &query, vars).await?;
            let page: gql::Comments = serde_json::from_value(data["repository"]["issue"]["comments"].clone())
                .map_err(|e| TrackerError::Rejected(format!("unexpected GraphQL comments answer: {e}")))?;
            for node in page.nodes.into_iter().flatten() {
                let id = node.id_of(id_field).ok_or_else(|| TrackerError::Rejected(format!("a comment of {} without its {id_field}", issue.short())))?;
                let mut edits = node.user_content_edits.nodes.into_iter().flatten().collect::<Vec<_>>();
                let mut more = node.user_content_edits.page_info;
                while more.has_next_page {
                    let vars = json!({ "id": node.id, "after": more.end_cursor });
                    let data = self.graphql(repo, EDITS_QUERY, vars).await?;
                    let next: gql::Edits = serde_json::from_value(data["node"]["userContentEdits"].clone())
                        .map_err(|e| TrackerError::Rejected(format!("unexpected GraphQL edits answer: {e}")))?;
                    edits.extend(next.nodes.into_iter().flatten());
                    more = next.page_info;
                }
                let author = gql::login(node.author.as_ref());
                let revisions = gql::revisions(&author, node.created_at, node.body, edits);
                out.push(PastComment { id, author, revisions });
            }
            if !page.page_info.has_next_page {
                break;
            }
            after = page.page_info.end_cursor;
            if after.is_none() {
                return Err(TrackerError::Rejected("GitHub GraphQL: a next page without a cursor".into()));
            }
        }
        Ok(out)
    }
}

/// An issue's comments with their edit histories; `ID_FIELD` is `fullDatabaseId` or
/// `databaseId`.
const COMMENTS_QUERY: &str = "query($owner: String!, $name: String!, $number: Int!, $after: String) { \
repository(owner: $owner, name: $name) { issue(number: $number) { comments(first: 100, after: $after) { \
pageInfo { hasNextPage endCursor } nodes { id ID_FIELD author { __typename login } createdAt body \
userContentEdits(first: 100) { pageInfo { hasNextPage endCursor } nodes { editedAt editor { __typename login } diff deletedAt } } } } } } }";

/// The rest of one comment's edit history, after the first hundred.
const EDITS_QUERY: &str = "query($id: ID!, $after: String) { node(id: $id) { ... on IssueComment { \
userContentEdits(first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { editedAt editor { __typename login } diff deletedAt } } } } }";

/// The GraphQL answers `past_comments` reads.
mod gql {
    use super::Revision;
    use chrono::{DateTime, Utc};
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PageInfo {
        pub has_next_page: bool,
        #[serde(default)]
        pub end_cursor: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Comments {
        pub page_info: PageInfo,
        #[serde(default)]
        pub nodes: Vec<Option<Comment>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Comment {
        pub id: String,
        #[serde(default)]
        pub full_database_id: Option<serde_json::Value>,
        #[serde(default)]
        pub database_id: Option<u64>,
        #[serde(default)]
        pub author: Option<Actor>,
        pub created_at: DateTime<Utc>,
        #[serde(default)]
        pub body: String,
        pub user_content_edits: Edits,
    }

    impl Comment {
        /// REST's comment id. `fullDatabaseId` is a BigInt, which GraphQL writes as a string.
        pub fn id_of(&self, field: &str) -> Option<u64> {
            match field {
                "fullDatabaseId" => match self.full_database_id.as_ref()? {
                    serde_json::Value::String(s) => s.parse().ok(),
                    v => v.as_u64(),
                },
                _ => self.database_id,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Edits {
        pub page_info: PageInfo,
        #[serde(default)]
        pub nodes: Vec<Option<Edit>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Edit {
        pub edited_at: DateTime<Utc>,
        #[serde(default)]
        pub editor: Option<Actor>,
        #[serde(default)]
        pub diff: Option<String>,
        #[serde(default)]
        pub deleted_at: Option<DateTime<Utc>>,
    }

    #[derive(Deserialize)]
    pub struct Actor {
        #[serde(rename = "__typename", default)]
        pub typename: String,
        pub login: String,
    }

    /// The login as REST writes it: a GitHub App's bot is `slug[bot]`; a deleted account is
    /// `ghost`, as GitHub shows it.
    pub fn login(actor: Option<&Actor>) -> String {
        match actor {
            None => "ghost".into(),
            Some(a) if a.typename == "Bot" && !a.login.ends_with("[bot]") => format!("{}[bot]", a.login),
            Some(a) => a.login.clone(),
        }
    }

    /// A comment's revisions, oldest first, from its creation and its edit history (newest
    /// first, as GitHub lists it). See `GithubTracker::past_comments`.
    pub fn revisions(author: &str, created_at: DateTime<Utc>, body: String, mut edits: Vec<Edit>) -> Vec<Revision> {
        edits.reverse();
        let Some(original) = edits.first() else {
            return vec![Revision { at: created_at, editor: author.to_string(), body }];
        };
        let kept = |e: &Edit| e.deleted_at.is_none() && e.diff.is_some();
        // The original text (the oldest entry), or the oldest text left when it was deleted.
        let first = if kept(original) { Some(0) } else { edits.iter().position(kept) };
        let creation = first.and_then(|i| edits[i].diff.clone()).unwrap_or(body);
        let mut out = vec![Revision { at: created_at, editor: author.to_string(), body: creation }];
        for e in edits.iter().skip(first.map_or(edits.len(), |i| i + 1)).filter(|e| kept(e)) {
            let text = e.diff.clone().unwrap_or_default();
            if out.last().is_some_and(|r| r.body == text) {
                continue;
            }
            out.push(Revision { at: e.edited_at, editor: login(e.editor.as_ref()), body: text });
        }
        out
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
    async fn identity(&self) -> TrackerResult<String> {
        self.me.get_or_try_init(|| self.whoami()).await.cloned()
    }

    fn note_installation(&self, project: &str, installation: u64) {
        if let (Some(app), Some((owner, _))) = (&self.app, project.split_once('/')) {
            app.installations.learn(owner, installation);
        }
    }

    async fn get_issue(&self, issue: &IssueKey) -> TrackerResult<IssueSnapshot> {
        let text = self.call(On::Repo(issue.project()), Method::GET, &Self::issue_path(issue), None).await?;
        crate::ingest::github::issue_from_rest(issue.project(), &text)
            .map_err(|e| TrackerError::Rejected(format!("unexpected issue response: {e}")))
    }

    async fn list_comments(&self, issue: &IssueKey) -> TrackerResult<Vec<Comment>> {
        const PER_PAGE: usize = 100;
        let mut all = Vec::new();
        for page in 1.. {
            let path = format!("{}/comments?per_page={PER_PAGE}&page={page}", Self::issue_path(issue));
            let batch: Vec<RawComment> = parse("comments", &self.call(On::Repo(issue.project()), Method::GET, &path, None).await?)?;
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
        self.call(On::Repo(issue.project()), Method::POST, &path, Some(json!({ "labels": labels }))).await.map(drop)
    }

    async fn remove_label(&self, issue: &IssueKey, label: &str) -> TrackerResult<()> {
        let path = format!("{}/labels/{}", Self::issue_path(issue), segment(label));
        match self.call(On::Repo(issue.project()), Method::DELETE, &path, None).await {
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
        let text = self.call_with(&once, On::Repo(issue.project()), Method::POST, &path, Some(json!({ "body": body }))).await?;
        Ok(CommentId(parse::<RawComment>("comment", &text)?.id))
    }

    async fn update_comment(&self, issue: &IssueKey, id: CommentId, body: &str) -> TrackerResult<()> {
        let path = format!("{}/issues/comments/{id}", repo_path(issue.project()));
        self.call(On::Repo(issue.project()), Method::PATCH, &path, Some(json!({ "body": body }))).await.map(drop)
    }

    async fn set_open(&self, issue: &IssueKey, open: bool, reason: Option<&str>) -> TrackerResult<()> {
        let mut body = json!({ "state": if open { "open" } else { "closed" } });
        if let Some(reason) = reason {
            body["state_reason"] = reason.into();
        }
        self.call(On::Repo(issue.project()), Method::PATCH, &Self::issue_path(issue), Some(body)).await.map(drop)
    }

    async fn update_issue_body(&self, issue: &IssueKey, body: &str) -> TrackerResult<()> {
        self.call(On::Repo(issue.project()), Method::PATCH, &Self::issue_path(issue), Some(json!({ "body": body }))).await.map(drop)
    }

    async fn is_team_member(&self, org: &str, team: &str, login: &str) -> TrackerResult<bool> {
        #[derive(Deserialize)]
        struct Membership {
            state: String,
        }
        let path = format!("/orgs/{}/teams/{}/memberships/{}", segment(org), segment(team), segment(login));
        match self.call(On::Org(org), Method::GET, &path, None).await {
            Ok(text) => Ok(parse::<Membership>("membership", &text)?.state == "active"),
            Err(TrackerError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn find_issue(&self, project: &str, title: &str, label: &str) -> TrackerResult<Option<IssueKey>> {
        #[derive(Deserialize)]
        struct Listed {
            number: u64,
            title: String,
        }
        let label = utf8_percent_encode(label, PATH_SEGMENT);
        let path = format!("{}/issues?labels={label}&state=all&sort=created&direction=desc&per_page=100", repo_path(project));
        let listed: Vec<Listed> = parse("issues", &self.call(On::Repo(project), Method::GET, &path, None).await?)?;
        Ok(listed.into_iter().find(|i| i.title == title).map(|i| IssueKey::github(project, i.number)))
    }

    async fn create_issue(&self, project: &str, title: &str, body: &str, labels: &[String]) -> TrackerResult<IssueKey> {
        #[derive(Deserialize)]
        struct Created {
            number: u64,
        }
        let path = format!("{}/issues", repo_path(project));
        // Once, as a comment: a lost answer must not become a second issue (see `find_issue`).
        let once = RetryPolicy { attempts: 1, ..self.retry.clone() };
        let text = self
            .call_with(&once, On::Repo(project), Method::POST, &path, Some(json!({ "title": title, "body": body, "labels": labels })))
            .await?;
        Ok(IssueKey::github(project, parse::<Created>("issue", &text)?.number))
    }
}

#[cfg(test)]
mod path_tests {
    use super::{repo_path, segment};

    #[test]
    fn names_stay_inside_their_path_segments() {
        assert_eq!(repo_path("octo-org/hello.world_1"), "/repos/octo-org/hello.world_1");
        assert_eq!(repo_path("../.."), "/repos/%2E%2E/%2E%2E");
        assert_eq!(repo_path("o/a/b"), "/repos/o/a%2Fb");
        assert_eq!(repo_path("o/a b?c#d"), "/repos/o/a%20b%3Fc%23d");
        assert_eq!(repo_path("ôwner/x"), "/repos/%C3%B4wner/x");
        assert_eq!(segment("lane/B"), "lane%2FB");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("..x"), "..x");
    }
}

#[cfg(test)]
mod revision_tests {
    use super::gql::{login, revisions, Actor, Edit};
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn edit(at: &str, who: &str, bot: bool, diff: Option<&str>) -> Edit {
        let editor = Some(Actor { typename: if bot { "Bot".into() } else { "User".into() }, login: who.into() });
        Edit { edited_at: t(at), editor, diff: diff.map(String::from), deleted_at: diff.is_none().then(|| t(at)) }
    }

    fn seen(r: &[super::Revision]) -> Vec<(String, String, String)> {
        r.iter().map(|r| (r.at.format("%d %H:%M").to_string(), r.editor.clone(), r.body.clone())).collect()
    }

    fn v(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        rows.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
    }

    #[test]
    fn a_comment_never_edited_is_its_creation() {
        let r = revisions("rollgate[bot]", t("2026-11-02T09:00:00Z"), "- [ ] a".into(), vec![]);
        assert_eq!(seen(&r), v(&[("02 09:00", "rollgate[bot]", "- [ ] a")]));
    }

    #[test]
    fn edits_newest_first_become_revisions_oldest_first_with_their_editors() {
        // GitHub: newest first; the oldest entry is the original text.
        let edits = vec![
            edit("2026-11-05T10:00:00Z", "rollgate", true, Some("- [x] a\nnext: b")),
            edit("2026-11-05T09:59:00Z", "quinn", false, Some("- [x] a")),
            edit("2026-11-02T09:00:00Z", "rollgate", true, Some("- [ ] a")),
        ];
        let r = revisions("rollgate[bot]", t("2026-11-02T09:00:00Z"), "- [x] a\nnext: b".into(), edits);
        assert_eq!(
            seen(&r),
            v(&[("02 09:00", "rollgate[bot]", "- [ ] a"), ("05 09:59", "quinn", "- [x] a"), ("05 10:00", "rollgate[bot]", "- [x] a\nnext: b")])
        );
    }

    #[test]
    fn deleted_revisions_are_skipped() {
        // The middle revision was deleted: the last edit shows both changes, by its editor.
        let edits = vec![
            edit("2026-11-05T10:00:00Z", "priya", false, Some("c")),
            edit("2026-11-04T10:00:00Z", "quinn", false, None),
            edit("2026-11-02T09:00:00Z", "someone", false, Some("a")),
        ];
        let r = revisions("someone", t("2026-11-02T09:00:00Z"), "c".into(), edits);
        assert_eq!(seen(&r), v(&[("02 09:00", "someone", "a"), ("05 10:00", "priya", "c")]));
        // The original was deleted: the creation shows the oldest text left.
        let edits = vec![edit("2026-11-05T10:00:00Z", "priya", false, Some("c")), edit("2026-11-02T09:00:00Z", "someone", false, None)];
        let r = revisions("someone", t("2026-11-02T09:00:00Z"), "c".into(), edits);
        assert_eq!(seen(&r), v(&[("02 09:00", "someone", "c")]));
    }

    #[test]
    fn a_bot_gets_its_rest_login_back_and_a_deleted_account_is_ghost() {
        assert_eq!(login(Some(&Actor { typename: "Bot".into(), login: "rollgate".into() })), "rollgate[bot]");
        assert_eq!(login(Some(&Actor { typename: "Bot".into(), login: "rollgate[bot]".into() })), "rollgate[bot]");
        assert_eq!(login(Some(&Actor { typename: "User".into(), login: "quinn".into() })), "quinn");
        assert_eq!(login(None), "ghost");
    }
}
