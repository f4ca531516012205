//! A fake GitHub REST API over real HTTP: issues, labels and comments in memory, the routes
//! rollgate calls, and knobs to make it fail or stall. Tests assert on what it holds.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub const TOKEN: &str = "test-token";
pub const BOT_LOGIN: &str = "rollgate[bot]";
/// What every answer says is left of the rate limit (`X-RateLimit-Remaining`).
pub const RATE_LIMIT_REMAINING: u16 = 4987;

#[derive(Debug, Clone, Default)]
pub struct FakeIssue {
    pub title: String,
    pub body: String,
    /// The issue's timeline, as GET .../events returns it (backfill reads it).
    pub events: Vec<Value>,
    pub labels: Vec<String>,
    pub open: bool,
    pub state_reason: Option<String>,
    pub comments: Vec<FakeComment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeComment {
    pub id: u64,
    pub body: String,
    pub author: String,
}

/// A canned failure for the next matching request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

#[derive(Default)]
struct World {
    issues: BTreeMap<(String, u64), FakeIssue>,
    next_comment: u64,
    writes: Vec<String>,
    requests: u64,
    /// (org/team, login) pairs that are active members.
    teams: Vec<(String, String)>,
    /// Repository labels: repo -> name -> (colour, description).
    repo_labels: BTreeMap<String, BTreeMap<String, (String, String)>>,
    /// Issues whose events GitHub refuses (a backfill interrupted at a known point).
    refuse_events: Vec<u64>,
    faults: VecDeque<Fault>,
    /// The next issue created is stored, and its answer replaced by a 502.
    lose_next_created: bool,
}

#[derive(Clone)]
pub struct FakeGithub {
    pub url: String,
    world: Arc<Mutex<World>>,
    paused: watch::Sender<bool>,
    /// Comments are created, then the answer is held: the tracker has the comment, the
    /// caller does not know it yet (what a crash at the wrong moment looks like).
    stall_comments: watch::Sender<bool>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Random faults (see "Fault injection" below).
    chaos: Arc<Mutex<ChaosState>>,
    /// The GitHub App side (see the block at the end of this file).
    app: Arc<Mutex<FakeApp>>,
}

type Shared = FakeGithub;

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let fake = FakeGithub {
            url: format!("http://{addr}"),
            world: Arc::default(),
            paused: watch::channel(false).0,
            stall_comments: watch::channel(false).0,
            waiting: Arc::default(),
            chaos: Arc::default(),
            app: Arc::default(),
        };
        let app = Router::new()
            .route("/repos/{o}/{r}/issues", post(create_issue).get(list_issues))
            .route("/repos/{o}/{r}/issues/{n}/events", get(list_events))
            .route("/repos/{o}/{r}/issues/{n}", get(get_issue).patch(update_issue))
            .route("/repos/{o}/{r}/issues/{n}/comments", get(list_comments).post(create_comment))
            // octocrab edits a comment with POST; GitHub accepts both.
            .route("/repos/{o}/{r}/issues/comments/{id}", post(update_comment).patch(update_comment))
            .route("/repos/{o}/{r}/issues/{n}/labels", post(add_labels))
            .route("/repos/{o}/{r}/issues/{n}/labels/{name}", delete(remove_label))
            .route("/orgs/{org}/teams/{team}/memberships/{user}", get(membership))
            .route("/user", get(whoami))
            .route("/repos/{o}/{r}/labels", get(list_repo_labels).post(create_repo_label))
            .route("/repos/{o}/{r}/labels/{name}", axum::routing::patch(update_repo_label))
            .merge(app_routes())
            .layer(axum::middleware::from_fn_with_state(fake.clone(), installation_token_auth))
            .with_state(fake.clone())
            // Like GitHub, every answer says how much of the hour's budget is left.
            .layer(axum::middleware::map_response(|mut r: Response| async {
                r.headers_mut().insert("x-ratelimit-remaining", RATE_LIMIT_REMAINING.into());
                r
            }))
            .layer(axum::middleware::from_fn_with_state(fake.clone(), chaos_layer));
        let listener = ResettableListener(listener);
        tokio::spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<Conn>()).await.unwrap() });
        fake
    }

    /// Puts an issue on the fake tracker, as the webhook payload will describe it.
    pub fn seed(&self, repo: &str, number: u64, labels: &[&str]) {
        let mut w = self.world.lock().unwrap();
        let open = w.issues.get(&(repo.to_string(), number)).is_none_or(|i| i.open);
        w.issues.insert(
            (repo.to_string(), number),
            FakeIssue {
                title: format!("issue {number}"),
                labels: labels.iter().map(|s| s.to_string()).collect(),
                open,
                ..Default::default()
            },
        );
    }

    /// Replaces an issue's comments (a re-seed keeps them).
    pub fn set_comments(&self, repo: &str, number: u64, comments: Vec<FakeComment>) {
        if let Some(i) = self.world.lock().unwrap().issues.get_mut(&(repo.to_string(), number)) {
            i.comments = comments;
        }
    }

    /// A person edits a comment in the web UI (ticks a box).
    pub fn edit_comment(&self, id: u64, body: &str) {
        for i in self.world.lock().unwrap().issues.values_mut() {
            if let Some(c) = i.comments.iter_mut().find(|c| c.id == id) {
                c.body = body.to_string();
            }
        }
    }

    /// A person closes the issue in the web UI.
    pub fn close(&self, repo: &str, number: u64, reason: &str) {
        if let Some(i) = self.world.lock().unwrap().issues.get_mut(&(repo.to_string(), number)) {
            i.open = false;
            i.state_reason = Some(reason.to_string());
        }
    }

    pub fn issue_opt(&self, repo: &str, number: u64) -> Option<FakeIssue> {
        self.world.lock().unwrap().issues.get(&(repo.to_string(), number)).cloned()
    }

    pub fn issue(&self, repo: &str, number: u64) -> FakeIssue {
        self.world.lock().unwrap().issues.get(&(repo.to_string(), number)).cloned().expect("issue on the fake")
    }

    /// The issue's labels, sorted.
    pub fn labels(&self, repo: &str, number: u64) -> Vec<String> {
        let mut l = self.issue(repo, number).labels;
        l.sort();
        l
    }

    pub fn add_team_member(&self, org_team: &str, login: &str) {
        self.world.lock().unwrap().teams.push((org_team.to_string(), login.to_string()));
    }

    /// GET .../issues/{number}/events answers 422 until `allow_events`.
    pub fn refuse_events(&self, number: u64) {
        self.world.lock().unwrap().refuse_events.push(number);
    }

    pub fn allow_events(&self) {
        self.world.lock().unwrap().refuse_events.clear();
    }

    /// Adds a timeline event (`labeled`, `unlabeled`, `closed`, `reopened`).
    pub fn add_event(&self, repo: &str, number: u64, event: &str, label: Option<&str>, at: &str, actor: &str) {
        let mut w = self.world.lock().unwrap();
        let i = w.issues.get_mut(&(repo.to_string(), number)).expect("seeded issue");
        let mut e = json!({ "event": event, "created_at": at, "actor": { "login": actor } });
        if let Some(l) = label {
            e["label"] = json!({ "name": l });
        }
        i.events.push(e);
    }

    /// The repository's labels: name -> (colour, description).
    pub fn repo_labels(&self, repo: &str) -> BTreeMap<String, (String, String)> {
        self.world.lock().unwrap().repo_labels.get(repo).cloned().unwrap_or_default()
    }

    /// A person recolours a label in the web UI.
    pub fn recolor_label(&self, repo: &str, name: &str, color: &str) {
        if let Some(l) = self.world.lock().unwrap().repo_labels.get_mut(repo).and_then(|m| m.get_mut(name)) {
            l.0 = color.to_string();
        }
    }

    pub fn writes(&self) -> Vec<String> {
        self.world.lock().unwrap().writes.clone()
    }

    pub fn requests(&self) -> u64 {
        self.world.lock().unwrap().requests
    }

    /// The next requests fail with these answers, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.world.lock().unwrap().faults.extend(faults);
    }

    /// Holds every request until `resume`.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
        self.stall_comments.send_replace(false);
    }

    /// The next issue created is stored, but rollgate gets a 502 instead of its number.
    pub fn lose_answer_to_next_issue_created(&self) {
        self.world.lock().unwrap().lose_next_created = true;
    }

    /// From now on a new comment is stored but its answer held until `resume`.
    pub fn stall_after_creating_comments(&self) {
        self.stall_comments.send_replace(true);
    }

    async fn hold(&self, gate: &watch::Sender<bool>) {
        let mut rx = gate.subscribe();
        if *rx.borrow() {
            self.waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = rx.wait_for(|p| !p).await;
            self.waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Requests currently held by `pause`.
    pub fn held(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Common to every route: auth, the pause gate, injected faults.
    async fn enter(&self, headers: &HeaderMap) -> Result<(), Response> {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !auth.ends_with(TOKEN) {
            return Err((StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"}))).into_response());
        }
        self.hold(&self.paused).await;
        let mut w = self.world.lock().unwrap();
        w.requests += 1;
        if let Some(f) = w.faults.pop_front() {
            let mut resp = (StatusCode::from_u16(f.status).unwrap(), Json(f.body)).into_response();
            for (k, v) in f.headers {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            return Err(resp);
        }
        Ok(())
    }

    fn write(&self, what: String) {
        self.world.lock().unwrap().writes.push(what);
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response()
}

fn issue_json(repo: &str, n: u64, i: &FakeIssue) -> Value {
    json!({
        "number": n,
        "title": i.title,
        "body": "",
        "html_url": format!("https://github.com/{repo}/issues/{n}"),
        "state": if i.open { "open" } else { "closed" },
        "state_reason": i.state_reason,
        "user": {"login": "someone", "type": "User"},
        "labels": i.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "assignees": [],
        "created_at": "2026-11-02T09:00:00Z",
        "updated_at": "2026-11-02T09:00:00Z",
        "closed_at": null,
    })
}

fn comment_json(c: &FakeComment) -> Value {
    json!({"id": c.id, "body": c.body, "user": {"login": c.author, "type": "Bot"}})
}

macro_rules! enter {
    ($fake:expr, $headers:expr) => {
        if let Err(r) = $fake.enter(&$headers).await {
            return r;
        }
    };
}

async fn get_issue(State(f): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, u64)>) -> Response {
    enter!(f, h);
    let repo = format!("{o}/{r}");
    let w = f.world.lock().unwrap();
    match w.issues.get(&(repo.clone(), n)) {
        Some(i) => Json(issue_json(&repo, n, i)).into_response(),
        None => not_found(),
    }
}

async fn update_issue(
    State(f): State<Shared>,
    h: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    enter!(f, h);
    let repo = format!("{o}/{r}");
    f.write(format!("PATCH issue {repo}#{n}"));
    let mut w = f.world.lock().unwrap();
    let Some(i) = w.issues.get_mut(&(repo.clone(), n)) else { return not_found() };
    if let Some(state) = body["state"].as_str() {
        i.open = state == "open";
        i.state_reason = body["state_reason"].as_str().map(String::from);
    }
    if let Some(b) = body["body"].as_str() {
        i.body = b.to_string();
    }
    Json(issue_json(&repo, n, i)).into_response()
}

async fn create_issue(State(f): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    enter!(f, h);
    let repo = format!("{o}/{r}");
    f.write(format!("POST issue {repo}"));
    let mut w = f.world.lock().unwrap();
    let n = w.issues.keys().filter(|(r, _)| *r == repo).map(|(_, n)| *n).max().unwrap_or(0) + 1;
    let issue = FakeIssue {
        title: body["title"].as_str().unwrap_or("").into(),
        body: body["body"].as_str().unwrap_or("").into(),
        labels: body["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect(),
        open: true,
        ..Default::default()
    };
    let out = issue_json(&repo, n, &issue);
    w.issues.insert((repo, n), issue);
    if std::mem::take(&mut w.lose_next_created) {
        return (StatusCode::BAD_GATEWAY, Json(json!({"message": "Bad Gateway"}))).into_response();
    }
    (StatusCode::CREATED, Json(out)).into_response()
}

#[derive(Deserialize)]
struct Page {
    per_page: Option<usize>,
    page: Option<usize>,
    /// Issue lists: comma-separated labels an issue must all carry; `state` open (the
    /// default), closed or all; `direction` asc or desc (by number, as by creation here).
    labels: Option<String>,
    state: Option<String>,
    direction: Option<String>,
}

async fn list_comments(
    State(f): State<Shared>,
    h: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(p): Query<Page>,
) -> Response {
    enter!(f, h);
    let w = f.world.lock().unwrap();
    if w.refuse_events.contains(&n) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": "refused"}))).into_response();
    }
    let Some(i) = w.issues.get(&(format!("{o}/{r}"), n)) else { return not_found() };
    let per = p.per_page.unwrap_or(30).min(100);
    let page = p.page.unwrap_or(1).max(1);
    let items: Vec<Value> = i.comments.iter().skip((page - 1) * per).take(per).map(comment_json).collect();
    Json(items).into_response()
}

/// GitHub refuses a comment body over 65,536 characters, with this answer.
fn too_long(body: &Value) -> Option<Response> {
    let chars = body["body"].as_str().map_or(0, |b| b.chars().count());
    let error = json!({ "resource": "IssueComment", "code": "unprocessable", "field": "data", "message": "Body is too long (maximum is 65536 characters)" });
    (chars > 65_536).then(|| (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "message": "Validation Failed", "errors": [error] }))).into_response())
}

async fn create_comment(
    State(f): State<Shared>,
    h: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    enter!(f, h);
    if let Some(refused) = too_long(&body) {
        return refused;
    }
    let repo = format!("{o}/{r}");
    f.write(format!("POST comment {repo}#{n}"));
    let c = {
        let mut w = f.world.lock().unwrap();
        w.next_comment += 1;
        let c = FakeComment { id: 1000 + w.next_comment, body: body["body"].as_str().unwrap_or("").into(), author: acting_login(&h) };
        let Some(i) = w.issues.get_mut(&(repo, n)) else { return not_found() };
        i.comments.push(c.clone());
        c
    };
    f.hold(&f.stall_comments).await;
    (StatusCode::CREATED, Json(comment_json(&c))).into_response()
}

async fn update_comment(
    State(f): State<Shared>,
    h: HeaderMap,
    Path((_o, _r, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    enter!(f, h);
    if let Some(refused) = too_long(&body) {
        return refused;
    }
    f.write(format!("EDIT comment {id}"));
    let mut w = f.world.lock().unwrap();
    for i in w.issues.values_mut() {
        if let Some(c) = i.comments.iter_mut().find(|c| c.id == id) {
            c.body = body["body"].as_str().unwrap_or("").into();
            return Json(comment_json(c)).into_response();
        }
    }
    not_found()
}

async fn add_labels(
    State(f): State<Shared>,
    h: HeaderMap,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    enter!(f, h);
    let repo = format!("{o}/{r}");
    let names: Vec<String> =
        body["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect();
    f.write(format!("ADD {repo}#{n} {}", names.join(",")));
    let mut w = f.world.lock().unwrap();
    let Some(i) = w.issues.get_mut(&(repo, n)) else { return not_found() };
    for l in names {
        if !i.labels.contains(&l) {
            i.labels.push(l);
        }
    }
    Json(i.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>()).into_response()
}

async fn remove_label(
    State(f): State<Shared>,
    h: HeaderMap,
    Path((o, r, n, name)): Path<(String, String, u64, String)>,
) -> Response {
    enter!(f, h);
    let repo = format!("{o}/{r}");
    f.write(format!("REMOVE {repo}#{n} {name}"));
    let mut w = f.world.lock().unwrap();
    let Some(i) = w.issues.get_mut(&(repo, n)) else { return not_found() };
    let before = i.labels.len();
    i.labels.retain(|l| *l != name);
    if i.labels.len() == before {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Label does not exist"}))).into_response();
    }
    Json(i.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>()).into_response()
}

async fn membership(
    State(f): State<Shared>,
    h: HeaderMap,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Response {
    enter!(f, h);
    let w = f.world.lock().unwrap();
    if w.teams.iter().any(|(t, u)| *t == format!("{org}/{team}") && *u == user) {
        Json(json!({"state": "active", "role": "member"})).into_response()
    } else {
        not_found()
    }
}

async fn list_issues(State(f): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Query(p): Query<Page>) -> Response {
    enter!(f, h);
    let repo = format!("{o}/{r}");
    let w = f.world.lock().unwrap();
    let per = p.per_page.unwrap_or(30).min(100);
    let page = p.page.unwrap_or(1).max(1);
    let wanted: Vec<&str> = p.labels.as_deref().map(|l| l.split(',').collect()).unwrap_or_default();
    let state = p.state.as_deref().unwrap_or("open");
    let mut items: Vec<(&u64, &FakeIssue)> = w
        .issues
        .iter()
        .filter(|((rp, _), i)| {
            *rp == repo
                && wanted.iter().all(|l| i.labels.iter().any(|have| have == l))
                && (state == "all" || (state == "open") == i.open)
        })
        .map(|((_, n), i)| (n, i))
        .collect();
    if p.direction.as_deref() == Some("desc") {
        items.reverse();
    }
    let items: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).map(|(n, i)| issue_json(&repo, *n, i)).collect();
    Json(items).into_response()
}

async fn list_events(State(f): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, u64)>, Query(p): Query<Page>) -> Response {
    enter!(f, h);
    let w = f.world.lock().unwrap();
    if w.refuse_events.contains(&n) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": "refused"}))).into_response();
    }
    let Some(i) = w.issues.get(&(format!("{o}/{r}"), n)) else { return not_found() };
    let per = p.per_page.unwrap_or(30).min(100);
    let page = p.page.unwrap_or(1).max(1);
    Json(i.events.iter().skip((page - 1) * per).take(per).cloned().collect::<Vec<_>>()).into_response()
}

async fn whoami(State(f): State<Shared>, h: HeaderMap) -> Response {
    enter!(f, h);
    Json(json!({"login": BOT_LOGIN, "type": "Bot"})).into_response()
}

async fn list_repo_labels(State(f): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Query(p): Query<Page>) -> Response {
    enter!(f, h);
    let w = f.world.lock().unwrap();
    let per = p.per_page.unwrap_or(30).min(100);
    let page = p.page.unwrap_or(1).max(1);
    let all = w.repo_labels.get(&format!("{o}/{r}")).cloned().unwrap_or_default();
    let items: Vec<Value> = all.iter().skip((page - 1) * per).take(per).map(|(n, (c, d))| json!({"name": n, "color": c, "description": d})).collect();
    Json(items).into_response()
}

async fn create_repo_label(State(f): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Json(b): Json<Value>) -> Response {
    enter!(f, h);
    let name = b["name"].as_str().unwrap_or("").to_string();
    f.write(format!("POST label {name}"));
    let mut w = f.world.lock().unwrap();
    let labels = w.repo_labels.entry(format!("{o}/{r}")).or_default();
    if labels.contains_key(&name) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": "Validation Failed"}))).into_response();
    }
    labels.insert(name.clone(), (b["color"].as_str().unwrap_or("").into(), b["description"].as_str().unwrap_or("").into()));
    (StatusCode::CREATED, Json(json!({"name": name}))).into_response()
}

async fn update_repo_label(State(f): State<Shared>, h: HeaderMap, Path((o, r, name)): Path<(String, String, String)>, Json(b): Json<Value>) -> Response {
    enter!(f, h);
    f.write(format!("PATCH label {name}"));
    let mut w = f.world.lock().unwrap();
    let Some(l) = w.repo_labels.get_mut(&format!("{o}/{r}")).and_then(|m| m.get_mut(&name)) else { return not_found() };
    if let Some(c) = b["color"].as_str() {
        l.0 = c.into();
    }
    if let Some(d) = b["description"].as_str() {
        l.1 = d.into();
    }
    Json(json!({"name": name})).into_response()
}

// ---------------------------------------------------------------------------------------------
// Fault injection: seeded random faults on every route, decided either before a write is
// applied (the write is lost) or after it (the write is applied, its answer lost), and
// connection resets that are real TCP resets (SO_LINGER 0, then close), not 5xx answers.

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// 500, 502, 503 before anything is applied.
    Status500,
    Status502,
    Status503,
    /// 429 with `Retry-After: 1`.
    TooManyRequests,
    /// 403 "You have exceeded a secondary rate limit" with `Retry-After: 1`.
    SecondaryLimit,
    /// No answer for `Chaos::stall` (longer than the client waits), then a 504; nothing applied.
    Stall,
    /// The connection is reset; nothing applied.
    Reset,
    /// The write is applied, then the answer is a 502 / a reset / a stall. A read gets the same
    /// failure without the "applied" part.
    ApplyThen502,
    ApplyThenReset,
    ApplyThenStall,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Status500,
        FaultKind::Status502,
        FaultKind::Status503,
        FaultKind::TooManyRequests,
        FaultKind::SecondaryLimit,
        FaultKind::Stall,
        FaultKind::Reset,
        FaultKind::ApplyThen502,
        FaultKind::ApplyThenReset,
        FaultKind::ApplyThenStall,
    ];
}

/// A fault mix: each request fails with `kind` with probability `p` (the sum at most 1).
/// The draw for a request depends only on the seed, its method and path, and how many times
/// that method and path were asked before: the same run gives the same faults whatever the
/// interleaving across issues.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub seed: u64,
    pub faults: Vec<(FaultKind, f64)>,
    pub stall: Duration,
}

impl Chaos {
    /// `rate` of the requests fail, shared by `kinds` in the given proportions.
    pub fn mix(seed: u64, rate: f64, kinds: &[(FaultKind, f64)], stall: Duration) -> Chaos {
        let total: f64 = kinds.iter().map(|(_, w)| w).sum();
        Chaos { seed, faults: kinds.iter().map(|(k, w)| (*k, rate * w / total)).collect(), stall }
    }

    /// Every request fails with `kind`.
    pub fn always(kind: FaultKind) -> Chaos {
        Chaos { seed: 0, faults: vec![(kind, 1.0)], stall: Duration::from_secs(30) }
    }
}

#[derive(Default)]
struct ChaosState {
    chaos: Option<Chaos>,
    /// How often each "METHOD path" was asked, for the draws.
    asked: BTreeMap<String, u64>,
    injected: BTreeMap<FaultKind, u64>,
    /// Every request that reached the fake, faulted or not.
    requests: u64,
}

/// splitmix64: a good enough 64-bit mix for reproducible draws.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FakeGithub {
    /// From now on requests fail at random as `chaos` says.
    pub fn chaos(&self, chaos: Chaos) {
        self.chaos.lock().unwrap().chaos = Some(chaos);
    }

    /// No more random faults (the tracker heals).
    pub fn calm(&self) {
        self.chaos.lock().unwrap().chaos = None;
    }

    /// The faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<FaultKind, u64> {
        self.chaos.lock().unwrap().injected.clone()
    }

    /// A person changes an issue's labels in the web UI (its comments stay, unlike `seed`).
    pub fn set_labels(&self, repo: &str, number: u64, labels: &[&str]) {
        if let Some(i) = self.world.lock().unwrap().issues.get_mut(&(repo.to_string(), number)) {
            i.labels = labels.iter().map(|s| s.to_string()).collect();
        }
    }

    /// Every request that reached the fake, including those answered with a fault.
    pub fn requests_seen(&self) -> u64 {
        self.chaos.lock().unwrap().requests
    }

    fn draw(&self, method: &str, path: &str, write: bool) -> Option<(FaultKind, Duration)> {
        let mut s = self.chaos.lock().unwrap();
        s.requests += 1;
        let chaos = s.chaos.clone()?;
        let what = format!("{method} {path}");
        let n = {
            let n = s.asked.entry(what.clone()).or_default();
            *n += 1;
            *n
        };
        let h = what.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let r = (mix64(chaos.seed ^ mix64(h ^ mix64(n))) >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        let kind = chaos.faults.iter().find(|(_, p)| {
            acc += p;
            r < acc
        })?.0;
        // A read has nothing to apply: the same failure, before.
        let kind = match kind {
            FaultKind::ApplyThen502 if !write => FaultKind::Status502,
            FaultKind::ApplyThenReset if !write => FaultKind::Reset,
            FaultKind::ApplyThenStall if !write => FaultKind::Stall,
            k => k,
        };
        *s.injected.entry(kind).or_default() += 1;
        Some((kind, chaos.stall))
    }
}

async fn chaos_layer(State(f): State<Shared>, req: Request, next: Next) -> Response {
    let conn = req.extensions().get::<ConnectInfo<Conn>>().map(|c| c.0.clone());
    let write = req.method() != axum::http::Method::GET;
    let Some((kind, stall)) = f.draw(req.method().as_str(), req.uri().path(), write) else {
        return next.run(req).await;
    };
    let status = |code: u16, msg: &str| (StatusCode::from_u16(code).unwrap(), Json(json!({ "message": msg }))).into_response();
    let reset = || {
        conn.as_ref().expect("served with connect info").reset();
        // Never sent: the connection is reset when hyper writes it.
        status(500, "reset")
    };
    let limited = |code: u16, msg: &str| {
        let mut r = status(code, msg);
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        r
    };
    match kind {
        FaultKind::Status500 => status(500, "Internal Server Error"),
        FaultKind::Status502 => status(502, "Bad Gateway"),
        FaultKind::Status503 => status(503, "Service Unavailable"),
        FaultKind::TooManyRequests => limited(429, "slow down"),
        FaultKind::SecondaryLimit => {
            limited(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
        }
        FaultKind::Stall => {
            tokio::time::sleep(stall).await;
            status(504, "Gateway Timeout")
        }
        FaultKind::Reset => reset(),
        FaultKind::ApplyThen502 => {
            let _applied = next.run(req).await;
            status(502, "Bad Gateway")
        }
        FaultKind::ApplyThenReset => {
            let _applied = next.run(req).await;
            reset()
        }
        FaultKind::ApplyThenStall => {
            let applied = next.run(req).await;
            tokio::time::sleep(stall).await;
            applied
        }
    }
}

/// Per connection: a switch the chaos layer flips to reset it.
#[derive(Clone)]
pub struct Conn(Arc<AtomicBool>);

impl Conn {
    fn reset(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct ResettableListener(tokio::net::TcpListener);

impl axum::serve::Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, addr)) => return (ResettableStream { inner: Some(s), reset: Arc::default() }, addr),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ResettableListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, ResettableListener>) -> Self {
        Conn(stream.io().reset.clone())
    }
}

/// A TCP stream that, once its switch is flipped, closes with SO_LINGER 0 at the next read or
/// write: the peer gets a RST instead of the answer.
pub struct ResettableStream {
    inner: Option<tokio::net::TcpStream>,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn stream(&mut self) -> std::io::Result<&mut tokio::net::TcpStream> {
        if self.reset.load(Ordering::SeqCst) {
            if let Some(s) = self.inner.take() {
                let _ = s.set_zero_linger();
            }
        }
        self.inner.as_mut().ok_or_else(|| std::io::ErrorKind::ConnectionReset.into())
    }
}

macro_rules! through {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut().stream() {
            Ok($s) => $e,
            Err(err) => std::task::Poll::Ready(Err(err)),
        }
    };
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        through!(self, s => std::pin::Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        through!(self, s => std::pin::Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        through!(self, s => std::pin::Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        through!(self, s => std::pin::Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        through!(self, s => std::pin::Pin::new(s).poll_shutdown(cx))
    }
}

// ---- GitHub App ------------------------------------------------------------------------------
// App JWTs, installations and installation tokens, kept apart from the routes above: the
// middleware below checks an installation token (expired or revoked: 401; another account's
// repository: 403), then hands the request on as if it carried `TOKEN`, naming the App's bot
// in `x-fake-actor` so comments are written by `<slug>[bot]`.

pub const APP_ID: u64 = 4242;
pub const APP_SLUG: &str = "rollgate-test";
pub const APP_BOT_LOGIN: &str = "rollgate-test[bot]";
const ACTOR_HEADER: &str = "x-fake-actor";

/// The test-only key pair the fake App was registered with (tests/fixtures/github-app).
pub fn app_key_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-app").join(name)
}

pub fn app_private_key() -> String {
    std::fs::read_to_string(app_key_path("test-app.private-key.pem")).unwrap()
}

struct FakeApp {
    /// Installation id -> account login.
    installations: BTreeMap<u64, String>,
    /// Minted token -> (installation, expiry).
    tokens: BTreeMap<String, (u64, chrono::DateTime<chrono::Utc>)>,
    /// The installation of every token minted, in order.
    minted: Vec<u64>,
    lifetime: chrono::Duration,
    mint_delay: std::time::Duration,
    /// Installation lookups answered (GET .../installation).
    lookups: u64,
    /// Requests refused for an expired or revoked token.
    refused: u64,
}

impl Default for FakeApp {
    fn default() -> Self {
        FakeApp {
            installations: BTreeMap::new(),
            tokens: BTreeMap::new(),
            minted: Vec::new(),
            lifetime: chrono::Duration::hours(1),
            mint_delay: std::time::Duration::ZERO,
            lookups: 0,
            refused: 0,
        }
    }
}

impl FakeGithub {
    /// Installs the App on `account` (a user or an organisation) as installation `id`.
    pub fn install_app(&self, id: u64, account: &str) {
        self.app.lock().unwrap().installations.insert(id, account.to_string());
    }

    /// Tokens minted from now on live this long (GitHub: an hour).
    pub fn app_token_lifetime(&self, lifetime: std::time::Duration) {
        self.app.lock().unwrap().lifetime = chrono::Duration::from_std(lifetime).unwrap();
    }

    /// Minting a token takes this long, so concurrent callers overlap.
    pub fn slow_token_minting(&self, delay: std::time::Duration) {
        self.app.lock().unwrap().mint_delay = delay;
    }

    /// Every token minted so far expires now (revoked, or a clock that jumped).
    pub fn expire_app_tokens(&self) {
        let past = chrono::Utc::now() - chrono::Duration::seconds(1);
        for t in self.app.lock().unwrap().tokens.values_mut() {
            t.1 = past;
        }
    }

    /// How many tokens were minted for `installation`.
    pub fn tokens_minted(&self, installation: u64) -> usize {
        self.app.lock().unwrap().minted.iter().filter(|i| **i == installation).count()
    }

    pub fn installation_lookups(&self) -> u64 {
        self.app.lock().unwrap().lookups
    }

    /// Requests refused with 401 for an expired or revoked installation token.
    pub fn refused_tokens(&self) -> u64 {
        self.app.lock().unwrap().refused
    }
}

fn app_routes() -> Router<Shared> {
    Router::new()
        .route("/app", get(get_app))
        .route("/app/installations", get(list_installations))
        .route("/app/installations/{id}/access_tokens", post(mint_token))
        .route("/repos/{o}/{r}/installation", get(repo_installation))
        .route("/orgs/{org}/installation", get(org_installation))
}

/// Who a write is made by: the App's bot with an installation token, else the token's user.
fn acting_login(h: &HeaderMap) -> String {
    h.get(ACTOR_HEADER).and_then(|v| v.to_str().ok()).unwrap_or(BOT_LOGIN).to_string()
}

fn bearer(h: &HeaderMap) -> &str {
    let auth = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("token ")).unwrap_or("")
}

fn unauthorized(message: &str) -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({ "message": message }))).into_response()
}

/// Checks the App JWT as GitHub does: RS256 signed by the App's key, `iss` the App id, not
/// expired, and expiring no more than 10 minutes ahead.
fn verify_jwt(h: &HeaderMap) -> Result<(), Response> {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let pem = std::fs::read_to_string(app_key_path("test-app.public-key.pem")).unwrap();
    let body = pem.split("-----BEGIN RSA PUBLIC KEY-----").nth(1).and_then(|b| b.split("-----END").next()).unwrap();
    let der = base64::engine::general_purpose::STANDARD.decode(body.chars().filter(|c| !c.is_whitespace()).collect::<String>()).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = 0;
    v.validate_aud = false;
    // jsonwebtoken only knows a string `iss`; GitHub takes the App id as a number too (what
    // rollgate sends), so `iss` and `iat` are checked below.
    v.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<Value>(bearer(h), &DecodingKey::from_rsa_der(&der), &v)
        .map_err(|_| unauthorized("A JSON web token could not be decoded"))?
        .claims;
    let now = chrono::Utc::now().timestamp();
    let iss = claims["iss"].as_u64().or_else(|| claims["iss"].as_str().and_then(|s| s.parse().ok()));
    if iss != Some(APP_ID) {
        return Err(unauthorized("'Issuer' claim ('iss') must be an Integer"));
    }
    if claims["exp"].as_i64().unwrap_or(0) > now + 600 {
        return Err(unauthorized("'Expiration time' claim ('exp') is too far in the future"));
    }
    if claims["iat"].as_i64().unwrap_or(i64::MAX) > now {
        return Err(unauthorized("'Issued at' claim ('iat') must be an Integer representing a time in the past"));
    }
    Ok(())
}

macro_rules! jwt {
    ($headers:expr) => {
        if let Err(r) = verify_jwt(&$headers) {
            return r;
        }
    };
}

async fn get_app(h: HeaderMap) -> Response {
    jwt!(h);
    Json(json!({ "id": APP_ID, "slug": APP_SLUG, "name": "rollgate test" })).into_response()
}

async fn list_installations(State(f): State<Shared>, h: HeaderMap) -> Response {
    jwt!(h);
    let a = f.app.lock().unwrap();
    let items: Vec<Value> =
        a.installations.iter().map(|(id, account)| json!({ "id": id, "account": { "login": account } })).collect();
    Json(items).into_response()
}

async fn mint_token(State(f): State<Shared>, h: HeaderMap, Path(id): Path<u64>) -> Response {
    jwt!(h);
    let delay = f.app.lock().unwrap().mint_delay;
    tokio::time::sleep(delay).await;
    let mut a = f.app.lock().unwrap();
    if !a.installations.contains_key(&id) {
        return not_found();
    }
    a.minted.push(id);
    let token = format!("ghs_{id}_{}", a.minted.len());
    let expires_at = chrono::Utc::now() + a.lifetime;
    a.tokens.insert(token.clone(), (id, expires_at));
    let expires = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (StatusCode::CREATED, Json(json!({ "token": token, "expires_at": expires, "permissions": { "issues": "write" } }))).into_response()
}

fn installation_of(f: &Shared, account: &str) -> Response {
    let mut a = f.app.lock().unwrap();
    a.lookups += 1;
    match a.installations.iter().find(|(_, acc)| acc.eq_ignore_ascii_case(account)) {
        Some((id, acc)) => Json(json!({ "id": id, "account": { "login": acc }, "app_id": APP_ID })).into_response(),
        None => not_found(),
    }
}

async fn repo_installation(State(f): State<Shared>, h: HeaderMap, Path((o, _r)): Path<(String, String)>) -> Response {
    jwt!(h);
    installation_of(&f, &o)
}

async fn org_installation(State(f): State<Shared>, h: HeaderMap, Path(org): Path<String>) -> Response {
    jwt!(h);
    installation_of(&f, &org)
}

/// Installation tokens on the ordinary routes (the `/app` routes want the JWT instead).
async fn installation_token_auth(
    State(f): State<Shared>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    req.headers_mut().remove(ACTOR_HEADER);
    let token = bearer(req.headers()).to_string();
    if !token.starts_with("ghs_") {
        return next.run(req).await;
    }
    {
        let mut a = f.app.lock().unwrap();
        let Some((installation, expires_at)) = a.tokens.get(&token).copied() else {
            return unauthorized("Bad credentials");
        };
        if expires_at <= chrono::Utc::now() {
            a.refused += 1;
            return unauthorized("Bad credentials");
        }
        let account = a.installations.get(&installation).cloned().unwrap_or_default();
        let path: Vec<&str> = req.uri().path().split('/').collect();
        let owner = match path.get(1) {
            Some(&"repos") | Some(&"orgs") => path.get(2).copied(),
            _ => None,
        };
        if owner.is_some_and(|o| !o.eq_ignore_ascii_case(&account)) {
            return (StatusCode::FORBIDDEN, Json(json!({ "message": "Resource not accessible by integration" }))).into_response();
        }
    }
    let h = req.headers_mut();
    h.insert("authorization", format!("token {TOKEN}").parse().unwrap());
    h.insert(ACTOR_HEADER, APP_BOT_LOGIN.parse().unwrap());
    next.run(req).await
}
