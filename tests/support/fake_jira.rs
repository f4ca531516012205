//! A fake Jira REST API over real HTTP: issues, a workflow, custom fields and comments in
//! memory, the routes rollgate calls, and knobs to make it fail or stall. Tests assert on
//! what it holds.
//!
//! Both API versions are served under `/rest/api/{v}/`: "2" is Jira Data Center (comment
//! bodies are wiki-markup strings), "3" is Jira Cloud (comment bodies are ADF documents).
//! Bodies are stored as sent and returned as stored; a body of the wrong kind for the version
//! is refused, so a client that mixes up the two formats fails here and not in production.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub const TOKEN: &str = "jira-token";
pub const EMAIL: &str = "bot@example.com";
/// `Basic` credentials for Cloud: base64("bot@example.com:jira-token").
pub const BASIC: &str = "Ym90QGV4YW1wbGUuY29tOmppcmEtdG9rZW4=";
pub const BOT_ACCOUNT: &str = "bot-account";
pub const BOT_NAME: &str = "rollgate bot";

pub const DEFAULT_WORKFLOW: [&str; 7] =
    ["Planning", "Decided", "In Development", "Dev Released", "Rollout Confirmed", "In Rollout", "Released"];

#[derive(Debug, Clone, Default)]
pub struct FakeJiraIssue {
    /// Numeric id, as Jira puts in `id` and in `self` links.
    pub id: u64,
    pub key: String,
    pub summary: String,
    pub issuetype: String,
    pub status: String,
    pub labels: Vec<String>,
    pub description: Option<Value>,
    /// Custom field values by field id ("customfield_10020"), as last written.
    pub fields: BTreeMap<String, Value>,
    pub comments: Vec<FakeJiraComment>,
    pub created: String,
    pub updated: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeJiraComment {
    pub id: String,
    /// A string (v2 write) or an ADF document (v3 write): whatever was sent.
    pub body: Value,
    pub author: String,
    pub properties: Vec<(String, Value)>,
    pub created: String,
    pub updated: String,
}

/// A canned failure for the next request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

#[derive(Default)]
struct World {
    issues: BTreeMap<String, FakeJiraIssue>,
    /// Changelog entries per issue key (backfill reads them), as Jira returns them.
    changelogs: BTreeMap<String, Vec<Value>>,
    /// Status names in workflow order; transition id and status id derive from the position.
    statuses: Vec<String>,
    /// (from, to) edges removed from the otherwise complete workflow graph.
    forbidden: BTreeSet<(String, String)>,
    /// Registered custom fields: id → name.
    custom_fields: BTreeMap<String, String>,
    next_id: u64,
    next_comment: u64,
    /// Logical clock: every write moves it one second, so `updated` always changes.
    tick: u64,
    writes: Vec<String>,
    requests: u64,
    faults: VecDeque<Fault>,
}

impl World {
    fn now(&mut self) -> String {
        self.tick += 1;
        let t = self.tick;
        format!("2026-11-24T{:02}:{:02}:{:02}.000+0000", 10 + t / 3600, t / 60 % 60, t % 60)
    }

    /// Jira accepts the issue key or its numeric id wherever `{issueIdOrKey}` appears.
    fn key_of(&self, id_or_key: &str) -> Option<String> {
        if self.issues.contains_key(id_or_key) {
            return Some(id_or_key.to_string());
        }
        self.issues.values().find(|i| i.id.to_string() == id_or_key).map(|i| i.key.clone())
    }

    fn status_id(&self, name: &str) -> String {
        // Status ids are deliberately not the transition ids: a client must not confuse them.
        self.statuses.iter().position(|s| s == name).map_or("0".into(), |p| (10001 + p).to_string())
    }

    /// (transition id, target status) available from `from`.
    fn transitions_from(&self, from: &str) -> Vec<(String, String)> {
        let edge_ok = |to: &String| to != from && !self.forbidden.contains(&(from.to_string(), to.clone()));
        self.statuses.iter().enumerate().filter(|(_, to)| edge_ok(to)).map(|(i, to)| ((i + 1).to_string(), to.clone())).collect()
    }

    fn settable(&self, id: &str) -> bool {
        matches!(id, "summary" | "labels" | "description") || self.custom_fields.contains_key(id)
    }

    fn assert_status(&self, status: &str) {
        assert!(self.statuses.iter().any(|s| s == status), "status {status:?} is not in the fake workflow {:?}", self.statuses);
    }
}

#[derive(Clone)]
pub struct FakeJira {
    pub url: String,
    world: Arc<Mutex<World>>,
    paused: watch::Sender<bool>,
    waiting: Arc<AtomicUsize>,
}

impl FakeJira {
    pub async fn start() -> FakeJira {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let world = World {
            statuses: DEFAULT_WORKFLOW.iter().map(|s| s.to_string()).collect(),
            next_id: 10000,
            next_comment: 10000,
            ..Default::default()
        };
        let fake = FakeJira {
            url: format!("http://{addr}"),
            world: Arc::new(Mutex::new(world)),
            paused: watch::channel(false).0,
            waiting: Arc::default(),
        };
        let app = Router::new()
            .route("/rest/api/{v}/issue", post(create_issue))
            .route("/rest/api/{v}/issue/{key}", get(get_issue).put(edit_issue))
            .route("/rest/api/{v}/issue/{key}/transitions", get(list_transitions).post(do_transition))
            .route("/rest/api/{v}/issue/{key}/comment", get(list_comments).post(create_comment))
            .route("/rest/api/{v}/issue/{key}/comment/{id}", put(update_comment))
            .route("/rest/api/{v}/field", get(list_fields))
            .route("/rest/api/{v}/myself", get(myself))
            .route("/rest/api/{v}/search", get(search))
            .route("/rest/api/{v}/search/jql", get(search_jql))
            .route("/rest/api/{v}/issue/{key}/changelog", get(changelog))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Puts an issue on the fake tracker, as the webhook payload will describe it. A re-seed
    /// replaces type, status and labels but keeps id, comments and custom fields.
    pub fn seed(&self, key: &str, issuetype: &str, status: &str, labels: &[&str]) {
        let mut w = self.world.lock().unwrap();
        w.assert_status(status);
        let now = w.now();
        if !w.issues.contains_key(key) {
            w.next_id += 1;
            let issue = FakeJiraIssue { id: w.next_id, key: key.into(), summary: format!("issue {key}"), created: now.clone(), ..Default::default() };
            w.issues.insert(key.into(), issue);
        }
        let i = w.issues.get_mut(key).unwrap();
        i.issuetype = issuetype.into();
        i.status = status.into();
        i.labels = labels.iter().map(|s| s.to_string()).collect();
        i.updated = now;
    }

    /// A person sets a custom field in the UI (null clears it). Not checked against `add_field`.
    pub fn set_field(&self, key: &str, id: &str, value: Value) {
        let mut w = self.world.lock().unwrap();
        let now = w.now();
        let i = w.issues.get_mut(key).expect("issue on the fake");
        if value.is_null() {
            i.fields.remove(id);
        } else {
            i.fields.insert(id.into(), value);
        }
        i.updated = now;
    }

    pub fn field(&self, key: &str, id: &str) -> Option<Value> {
        self.issue(key).fields.get(id).cloned()
    }

    pub fn issue(&self, key: &str) -> FakeJiraIssue {
        self.world.lock().unwrap().issues.get(key).cloned().expect("issue on the fake")
    }

    pub fn status(&self, key: &str) -> String {
        self.issue(key).status
    }

    /// The issue's labels, sorted.
    pub fn labels(&self, key: &str) -> Vec<String> {
        let mut l = self.issue(key).labels;
        l.sort();
        l
    }

    pub fn comments(&self, key: &str) -> Vec<FakeJiraComment> {
        self.issue(key).comments
    }

    /// A person comments in the UI; returns the new comment's id.
    pub fn add_comment(&self, key: &str, author: &str, body: Value) -> String {
        let mut w = self.world.lock().unwrap();
        let c = new_comment(&mut w, author, body, vec![]);
        let i = w.issues.get_mut(key).expect("issue on the fake");
        i.updated = c.created.clone();
        i.comments.push(c.clone());
        c.id
    }

    /// A person edits a comment in the UI (ticks a box); properties are kept.
    pub fn edit_comment(&self, id: &str, body: Value) {
        let mut w = self.world.lock().unwrap();
        let now = w.now();
        let c = w.issues.values_mut().flat_map(|i| i.comments.iter_mut()).find(|c| c.id == id).expect("comment on the fake");
        c.body = body;
        c.updated = now;
    }

    /// Registers a custom field, so it shows in GET field and may be written.
    pub fn add_field(&self, id: &str, name: &str) {
        self.world.lock().unwrap().custom_fields.insert(id.into(), name.into());
    }

    /// Replaces the workflow's statuses (every status still reaches every other).
    pub fn set_workflow(&self, statuses: &[&str]) {
        self.world.lock().unwrap().statuses = statuses.iter().map(|s| s.to_string()).collect();
    }

    /// Removes one edge of the workflow, e.g. so there is no way back.
    pub fn forbid_transition(&self, from: &str, to: &str) {
        self.world.lock().unwrap().forbidden.insert((from.into(), to.into()));
    }

    /// A person moves the issue in the UI; no transition rule applies.
    pub fn set_status(&self, key: &str, status: &str) {
        let mut w = self.world.lock().unwrap();
        w.assert_status(status);
        let now = w.now();
        let i = w.issues.get_mut(key).expect("issue on the fake");
        i.status = status.into();
        i.updated = now;
    }

    /// One line per write request that got past auth and faults, in arrival order.
    pub fn writes(&self) -> Vec<String> {
        self.world.lock().unwrap().writes.clone()
    }

    /// Requests that got past auth (including those answered with an injected fault).
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
    }

    /// Requests currently held by `pause`.
    pub fn held(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Common to every route: API version, auth, the pause gate, injected faults.
    async fn enter(&self, v: &str, headers: &HeaderMap) -> Result<(), Response> {
        if v != "2" && v != "3" {
            return Err((StatusCode::NOT_FOUND, Json(json!({"errorMessages": ["No such API version"]}))).into_response());
        }
        if !authorized(headers) {
            return Err(error(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        let mut rx = self.paused.subscribe();
        if *rx.borrow() {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = rx.wait_for(|p| !p).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
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

/// Data Center: `Bearer <token>`; Cloud: `Basic base64(email:token)`. Either is accepted on
/// both versions, as long as the token is the right one.
fn authorized(headers: &HeaderMap) -> bool {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(t) = auth.strip_prefix("Bearer ") {
        return t == TOKEN;
    }
    let Some(b) = auth.strip_prefix("Basic ") else { return false };
    let decoded = base64_decode(b.trim()).and_then(|d| String::from_utf8(d).ok());
    decoded.is_some_and(|s| s.split_once(':').is_some_and(|(_, t)| t == TOKEN))
}

/// Just enough base64 (standard or URL alphabet, padding optional) to read a Basic header.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"errorMessages": [message], "errors": {}}))).into_response()
}

fn field_errors(errors: Map<String, Value>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"errorMessages": [], "errors": errors}))).into_response()
}

fn no_issue() -> Response {
    error(StatusCode::NOT_FOUND, "Issue does not exist or you do not have permission to see it.")
}

/// v2 takes wiki markup (a string), v3 takes an ADF document; anything else is refused.
fn body_fits(v: &str, body: &Value) -> bool {
    match v {
        "2" => body.is_string(),
        _ => body.is_object() && body["type"] == "doc",
    }
}

fn new_comment(w: &mut World, author: &str, body: Value, properties: Vec<(String, Value)>) -> FakeJiraComment {
    w.next_comment += 1;
    let now = w.now();
    FakeJiraComment { id: w.next_comment.to_string(), body, author: author.into(), properties, created: now.clone(), updated: now }
}

fn person(account: &str) -> Value {
    let name = if account == BOT_ACCOUNT { BOT_NAME } else { account };
    json!({"accountId": account, "displayName": name, "active": true})
}

fn issue_json(base: &str, v: &str, w: &World, i: &FakeJiraIssue) -> Value {
    let project = i.key.split_once('-').map_or(i.key.as_str(), |(p, _)| p);
    let mut fields = json!({
        "summary": i.summary,
        "issuetype": {"name": i.issuetype},
        "status": {"name": i.status, "id": w.status_id(&i.status)},
        "labels": i.labels,
        "project": {"key": project},
        "description": i.description,
        "created": i.created,
        "updated": i.updated,
        "reporter": person("reporter"),
    });
    for (id, value) in &i.fields {
        fields[id] = value.clone();
    }
    json!({"id": i.id.to_string(), "key": i.key, "self": format!("{base}/rest/api/{v}/issue/{}", i.id), "fields": fields})
}

fn comment_json(base: &str, v: &str, issue_id: u64, c: &FakeJiraComment) -> Value {
    json!({
        "id": c.id,
        "self": format!("{base}/rest/api/{v}/issue/{issue_id}/comment/{}", c.id),
        "body": c.body,
        "author": person(&c.author),
        "updateAuthor": person(&c.author),
        "created": c.created,
        "updated": c.updated,
        "properties": c.properties.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    })
}

macro_rules! enter {
    ($fake:expr, $v:expr, $headers:expr) => {
        if let Err(r) = $fake.enter(&$v, &$headers).await {
            return r;
        }
    };
}

async fn get_issue(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>) -> Response {
    enter!(f, v, h);
    let w = f.world.lock().unwrap();
    match w.key_of(&key) {
        Some(k) => Json(issue_json(&f.url, &v, &w, &w.issues[&k])).into_response(),
        None => no_issue(),
    }
}

/// `fields` sets values outright; `update` applies operations (labels: add/remove/set, any
/// other field: set). Like Jira, one bad field refuses the whole edit.
async fn edit_issue(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    enter!(f, v, h);
    f.write(format!("PUT issue {key}"));
    let mut w = f.world.lock().unwrap();
    let Some(k) = w.key_of(&key) else { return no_issue() };
    let mut ops: Vec<(String, String, Value)> = Vec::new();
    for (id, value) in body["fields"].as_object().into_iter().flatten() {
        ops.push((id.clone(), "set".into(), value.clone()));
    }
    for (id, list) in body["update"].as_object().into_iter().flatten() {
        for op in list.as_array().into_iter().flatten() {
            for (verb, value) in op.as_object().into_iter().flatten() {
                ops.push((id.clone(), verb.clone(), value.clone()));
            }
        }
    }
    let mut errors = Map::new();
    for (id, verb, value) in &ops {
        if !w.settable(id) {
            errors.insert(id.clone(), format!("Field '{id}' cannot be set. It is not on the appropriate screen, or unknown.").into());
        } else if !(verb == "set" || (id == "labels" && (verb == "add" || verb == "remove"))) {
            errors.insert(id.clone(), format!("Field '{id}' does not support operation '{verb}'.").into());
        } else if id == "labels" {
            let names: Vec<&Value> = if verb == "set" { value.as_array().into_iter().flatten().collect() } else { vec![value] };
            if let Some(bad) = names.iter().find(|l| !l.as_str().is_some_and(|s| !s.is_empty() && !s.contains(' '))) {
                errors.insert("labels".into(), format!("The label '{}' contains spaces which is invalid.", bad.as_str().unwrap_or_default()).into());
            }
        }
    }
    if !errors.is_empty() {
        return field_errors(errors);
    }
    let now = w.now();
    let i = w.issues.get_mut(&k).unwrap();
    for (id, verb, value) in ops {
        match (id.as_str(), verb.as_str()) {
            ("summary", _) => i.summary = value.as_str().unwrap_or("").into(),
            ("description", _) => i.description = Some(value).filter(|v| !v.is_null()),
            ("labels", "set") => i.labels = value.as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect(),
            ("labels", "add") => {
                let l = value.as_str().unwrap().to_string();
                if !i.labels.contains(&l) {
                    i.labels.push(l);
                }
            }
            ("labels", _) => i.labels.retain(|l| value.as_str() != Some(l.as_str())),
            (_, _) if value.is_null() => drop(i.fields.remove(&id)),
            (_, _) => drop(i.fields.insert(id, value)),
        }
    }
    i.updated = now;
    StatusCode::NO_CONTENT.into_response()
}

async fn list_transitions(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>) -> Response {
    enter!(f, v, h);
    let w = f.world.lock().unwrap();
    let Some(k) = w.key_of(&key) else { return no_issue() };
    let transitions: Vec<Value> = w
        .transitions_from(&w.issues[&k].status)
        .into_iter()
        .map(|(id, to)| {
            let to_json = json!({"id": w.status_id(&to), "name": to});
            json!({"id": id, "name": format!("Move to {to}"), "to": to_json, "hasScreen": false, "isGlobal": true})
        })
        .collect();
    Json(json!({"expand": "transitions", "transitions": transitions})).into_response()
}

async fn do_transition(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    enter!(f, v, h);
    let t = &body["transition"]["id"];
    let id = t.as_str().map(String::from).unwrap_or_else(|| t.to_string());
    let target = {
        let w = f.world.lock().unwrap();
        id.parse::<usize>().ok().and_then(|n| w.statuses.get(n.wrapping_sub(1)).cloned())
    };
    f.write(format!("POST transition {key} -> {}", target.clone().unwrap_or_else(|| format!("id {id}"))));
    let mut w = f.world.lock().unwrap();
    let Some(k) = w.key_of(&key) else { return no_issue() };
    let Some(to) = w.transitions_from(&w.issues[&k].status).into_iter().find(|(tid, _)| *tid == id).map(|(_, to)| to) else {
        return error(StatusCode::BAD_REQUEST, &format!("Transition id '{id}' is not valid for this issue."));
    };
    let now = w.now();
    let i = w.issues.get_mut(&k).unwrap();
    i.status = to;
    i.updated = now;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    start_at: Option<usize>,
    max_results: Option<usize>,
}

/// Properties are always included (as with `expand=properties`); pages are honest.
async fn list_comments(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>, Query(p): Query<Page>) -> Response {
    enter!(f, v, h);
    let w = f.world.lock().unwrap();
    let Some(k) = w.key_of(&key) else { return no_issue() };
    let i = &w.issues[&k];
    let (start, max) = (p.start_at.unwrap_or(0), p.max_results.unwrap_or(50).min(100));
    let comments: Vec<Value> = i.comments.iter().skip(start).take(max).map(|c| comment_json(&f.url, &v, i.id, c)).collect();
    Json(json!({"startAt": start, "maxResults": max, "total": i.comments.len(), "comments": comments})).into_response()
}

async fn create_comment(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    enter!(f, v, h);
    f.write(format!("POST comment {key}"));
    let mut w = f.world.lock().unwrap();
    let Some(k) = w.key_of(&key) else { return no_issue() };
    if !body_fits(&v, &body["body"]) {
        return field_errors(Map::from_iter([("comment".to_string(), json!("Comment body is not valid!"))]));
    }
    let props = body["properties"].as_array().into_iter().flatten();
    let props = props.filter_map(|p| Some((p["key"].as_str()?.to_string(), p["value"].clone()))).collect();
    let c = new_comment(&mut w, BOT_ACCOUNT, body["body"].clone(), props);
    let i = w.issues.get_mut(&k).unwrap();
    i.updated = c.created.clone();
    i.comments.push(c.clone());
    (StatusCode::CREATED, Json(comment_json(&f.url, &v, i.id, &c))).into_response()
}

async fn update_comment(
    State(f): State<FakeJira>,
    h: HeaderMap,
    Path((v, key, id)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    enter!(f, v, h);
    f.write(format!("PUT comment {id}"));
    let mut w = f.world.lock().unwrap();
    let Some(k) = w.key_of(&key) else { return no_issue() };
    if !body_fits(&v, &body["body"]) {
        return field_errors(Map::from_iter([("comment".to_string(), json!("Comment body is not valid!"))]));
    }
    let now = w.now();
    let i = w.issues.get_mut(&k).unwrap();
    let Some(c) = i.comments.iter_mut().find(|c| c.id == id) else {
        return error(StatusCode::NOT_FOUND, &format!("Can not find a comment for the id: {id}."));
    };
    c.body = body["body"].clone();
    c.updated = now.clone();
    let out = comment_json(&f.url, &v, i.id, c);
    i.updated = now;
    Json(out).into_response()
}

/// New issues start in the workflow's first status and get the project's next number.
async fn create_issue(State(f): State<FakeJira>, h: HeaderMap, Path(v): Path<String>, Json(body): Json<Value>) -> Response {
    enter!(f, v, h);
    let fields = &body["fields"];
    let project = fields["project"]["key"].as_str().unwrap_or("").to_string();
    f.write(format!("POST issue {project}"));
    let mut w = f.world.lock().unwrap();
    let mut errors = Map::new();
    if project.is_empty() {
        errors.insert("project".into(), "Specify a valid project ID or key".into());
    }
    if fields["summary"].as_str().unwrap_or("").is_empty() {
        errors.insert("summary".into(), "You must specify a summary of the issue.".into());
    }
    if fields["issuetype"]["name"].as_str().is_none() {
        errors.insert("issuetype".into(), "Specify an issue type".into());
    }
    if !fields["description"].is_null() && !body_fits(&v, &fields["description"]) {
        errors.insert("description".into(), "Operation value must be a string (v2) or an Atlassian Document (v3)".into());
    }
    let custom: Vec<(&String, &Value)> = fields.as_object().into_iter().flatten().filter(|(id, _)| id.starts_with("customfield_")).collect();
    for (id, _) in custom.iter().filter(|(id, _)| !w.settable(id)) {
        errors.insert(id.to_string(), format!("Field '{id}' cannot be set. It is not on the appropriate screen, or unknown.").into());
    }
    if !errors.is_empty() {
        return field_errors(errors);
    }
    let prefix = format!("{project}-");
    let n = w.issues.keys().filter_map(|k| k.strip_prefix(&prefix)?.parse::<u64>().ok()).max().unwrap_or(0) + 1;
    let key = format!("{project}-{n}");
    w.next_id += 1;
    let now = w.now();
    let issue = FakeJiraIssue {
        id: w.next_id,
        key: key.clone(),
        summary: fields["summary"].as_str().unwrap().into(),
        issuetype: fields["issuetype"]["name"].as_str().unwrap().into(),
        status: w.statuses.first().cloned().unwrap_or_default(),
        labels: fields["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect(),
        description: Some(fields["description"].clone()).filter(|d| !d.is_null()),
        fields: custom.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect(),
        comments: Vec::new(),
        created: now.clone(),
        updated: now,
    };
    let out = json!({"id": issue.id.to_string(), "key": key, "self": format!("{}/rest/api/{v}/issue/{}", f.url, issue.id)});
    w.issues.insert(key, issue);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn list_fields(State(f): State<FakeJira>, h: HeaderMap, Path(v): Path<String>) -> Response {
    enter!(f, v, h);
    let w = f.world.lock().unwrap();
    let system = [("summary", "Summary", "string"), ("status", "Status", "status"), ("labels", "Labels", "array"), ("issuetype", "Issue Type", "issuetype")];
    let mut out: Vec<Value> = system
        .iter()
        .map(|(id, name, ty)| json!({"id": id, "key": id, "name": name, "custom": false, "schema": {"type": ty, "system": id}}))
        .collect();
    for (id, name) in &w.custom_fields {
        let custom_id = id.strip_prefix("customfield_").and_then(|n| n.parse::<u64>().ok());
        let schema = json!({"type": "any", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield", "customId": custom_id});
        out.push(json!({"id": id, "key": id, "name": name, "custom": true, "schema": schema}));
    }
    Json(out).into_response()
}

async fn myself(State(f): State<FakeJira>, h: HeaderMap, Path(v): Path<String>) -> Response {
    enter!(f, v, h);
    Json(json!({"accountId": BOT_ACCOUNT, "displayName": BOT_NAME, "name": "rollgate", "emailAddress": EMAIL, "active": true})).into_response()
}

impl FakeJira {
    /// Adds a changelog entry: `items` are (field, fieldId, fromString, toString).
    pub fn add_history(&self, key: &str, created: &str, author: &str, items: &[(&str, Option<&str>, Option<&str>, Option<&str>)]) {
        let items: Vec<Value> = items
            .iter()
            .map(|(field, id, from, to)| json!({ "field": field, "fieldId": id, "fromString": from, "toString": to }))
            .collect();
        let entry = json!({ "id": "1", "created": created, "author": { "accountId": author }, "items": items });
        self.world.lock().unwrap().changelogs.entry(key.to_string()).or_default().push(entry);
    }
}

#[derive(serde::Deserialize)]
struct SearchQuery {
    jql: String,
    #[serde(rename = "startAt", default)]
    start_at: usize,
    #[serde(rename = "maxResults", default)]
    max_results: Option<usize>,
}

/// Data Center's search, paged by `startAt`. Jira Cloud removed it (see `search_jql`).
async fn search(State(f): State<FakeJira>, h: HeaderMap, Path(v): Path<String>, axum::extract::Query(q): axum::extract::Query<SearchQuery>) -> Response {
    enter!(f, v, h);
    if v == "3" {
        return search_removed();
    }
    let w = f.world.lock().unwrap();
    let max = q.max_results.unwrap_or(50).min(100);
    let all = match matching(&w, &q.jql) {
        Ok(all) => all,
        Err(refused) => return refused,
    };
    let page: Vec<Value> = all.iter().skip(q.start_at).take(max).map(|i| issue_json(&f.url, &v, &w, i)).collect();
    Json(json!({ "startAt": q.start_at, "maxResults": max, "total": all.len(), "issues": page })).into_response()
}

#[derive(serde::Deserialize)]
struct Paging {
    #[serde(rename = "startAt", default)]
    start_at: usize,
}

async fn changelog(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>, axum::extract::Query(q): axum::extract::Query<Paging>) -> Response {
    enter!(f, v, h);
    let w = f.world.lock().unwrap();
    let all = w.changelogs.get(&key).cloned().unwrap_or_default();
    let page: Vec<Value> = all.iter().skip(q.start_at).take(100).cloned().collect();
    Json(json!({ "startAt": q.start_at, "maxResults": 100, "total": all.len(), "values": page })).into_response()
}

// Jira Cloud's search (Atlassian's CHANGE-2046): `GET /rest/api/3/search` answers 410 Gone;
// `GET /rest/api/3/search/jql` pages with an opaque `nextPageToken` until `isLast`, returns
// only issue ids unless `fields` asks for more, and may return fewer issues than `maxResults`
// when many fields are asked for. Data Center (v2) has no `/search/jql`.

/// Cloud's answer to the removed endpoint.
fn search_removed() -> Response {
    error(
        StatusCode::GONE,
        "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046",
    )
}

/// The JQL the fake understands: `project = "P"`, optionally `AND labels = "L"`, then
/// optionally `ORDER BY created ASC|DESC` (issues in creation order otherwise).
fn matching<'w>(w: &'w World, jql: &str) -> Result<Vec<&'w FakeJiraIssue>, Response> {
    let unknown = || error(StatusCode::BAD_REQUEST, &format!("the fake Jira does not understand this JQL: {jql}"));
    let (filter, order) = jql.split_once(" ORDER BY ").unwrap_or((jql, "created ASC"));
    let (mut project, mut label) = (None, None);
    for clause in filter.split(" AND ") {
        let (name, value) = clause.split_once(" = ").ok_or_else(unknown)?;
        let value = value.trim().strip_prefix('"').and_then(|v| v.strip_suffix('"')).ok_or_else(unknown)?.replace("\\\"", "\"").replace("\\\\", "\\");
        match name.trim() {
            "project" => project = Some(value),
            "labels" => label = Some(value),
            _ => return Err(unknown()),
        }
    }
    let project = project.ok_or_else(unknown)?;
    let mut found: Vec<&FakeJiraIssue> = w
        .issues
        .values()
        .filter(|i| i.key.split('-').next() == Some(project.as_str()))
        .filter(|i| label.as_ref().is_none_or(|l| i.labels.contains(l)))
        .collect();
    found.sort_by(|a, b| (&a.created, a.id).cmp(&(&b.created, b.id)));
    match order.trim() {
        "created ASC" | "created" => {}
        "created DESC" => found.reverse(),
        _ => return Err(unknown()),
    }
    Ok(found)
}

#[derive(serde::Deserialize)]
struct JqlQuery {
    jql: String,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
    #[serde(rename = "maxResults", default)]
    max_results: Option<usize>,
    #[serde(default)]
    fields: Option<String>,
}

async fn search_jql(State(f): State<FakeJira>, h: HeaderMap, Path(v): Path<String>, axum::extract::Query(q): axum::extract::Query<JqlQuery>) -> Response {
    enter!(f, v, h);
    if v != "3" {
        return error(StatusCode::NOT_FOUND, "null for uri: /rest/api/2/search/jql");
    }
    let w = f.world.lock().unwrap();
    let all = match matching(&w, &q.jql) {
        Ok(all) => all,
        Err(refused) => return refused,
    };
    // The token names where the next page starts, for this query only.
    let query_id = q.jql.bytes().fold(5381u32, |h, b| h.wrapping_mul(33) ^ b as u32);
    let start = match &q.next_page_token {
        None => 0,
        Some(t) => match t.split_once('.').and_then(|(id, at)| Some((id.parse::<u32>().ok()?, at.parse::<usize>().ok()?))) {
            Some((id, at)) if id == query_id => at,
            _ => return error(StatusCode::BAD_REQUEST, "The provided next page token is invalid or expired."),
        },
    };
    let fields: Vec<&str> = q.fields.as_deref().unwrap_or("").split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
    let every_field = fields.iter().any(|f| *f == "*all" || *f == "*navigable");
    let max = q.max_results.unwrap_or(50).min(if every_field { 40 } else { 100 });
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|i| {
            if fields.is_empty() {
                return json!({ "id": i.id.to_string() });
            }
            let mut issue = issue_json(&f.url, &v, &w, i);
            if !every_field {
                let kept: Map<String, Value> = issue["fields"].as_object().unwrap().iter().filter(|(k, _)| fields.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
                issue["fields"] = Value::Object(kept);
            }
            issue
        })
        .collect();
    let next = start + page.len();
    if next < all.len() {
        Json(json!({ "issues": page, "nextPageToken": format!("{query_id}.{next}"), "isLast": false })).into_response()
    } else {
        Json(json!({ "issues": page, "isLast": true })).into_response()
    }
}
