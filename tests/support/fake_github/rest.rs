//! The REST routes rollgate calls: issues, their labels and comments, repository labels, team
//! membership, the timeline (and `POST /graphql`, graphql.rs). Every write goes through world.rs and sends the deliveries GitHub
//! sends for it, with the token's identity as sender.

use super::world::{Actor, FakeIssue, Key, Missing, World};
use super::{app, payloads, FakeGithub};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

type Shared = FakeGithub;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/repos/{o}/{r}/issues", post(create_issue).get(list_issues))
        .route("/repos/{o}/{r}/issues/{n}/events", get(list_events))
        .route("/repos/{o}/{r}/issues/{n}", get(get_issue).patch(update_issue))
        .route("/repos/{o}/{r}/issues/{n}/comments", get(list_comments).post(create_comment))
        // octocrab edits a comment with POST; GitHub accepts both.
        .route("/repos/{o}/{r}/issues/comments/{id}", post(update_comment).patch(update_comment).delete(delete_comment))
        .route("/repos/{o}/{r}/issues/{n}/labels", post(add_labels).put(set_labels))
        .route("/repos/{o}/{r}/issues/{n}/labels/{name}", delete(remove_label))
        .route("/orgs/{org}/teams/{team}/memberships/{user}", get(membership))
        .route("/user", get(whoami))
        .route("/repos/{o}/{r}/labels", get(list_repo_labels).post(create_repo_label))
        .route("/repos/{o}/{r}/labels/{name}", axum::routing::patch(update_repo_label))
        .route("/graphql", post(super::graphql::graphql))
        .route("/orgs/{org}/issue-types", get(super::native::list_issue_types))
}

pub(super) fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response()
}

fn refused(r: Missing) -> Response {
    match r {
        Missing::Label => (StatusCode::NOT_FOUND, Json(json!({"message": "Label does not exist"}))).into_response(),
        Missing::Issue | Missing::Comment => not_found(),
        Missing::IssueType(name) => super::native::unknown_type(&name),
    }
}

/// Who a call is made by: the token's identity (rollgate's bot, or the App's bot with an
/// installation token).
fn caller(h: &HeaderMap) -> Actor {
    Actor::bot(&app::acting_login(h))
}

fn names(v: &Value) -> Vec<String> {
    // GitHub takes `["a", "b"]` as well as `[{"name": "a"}]`.
    v.as_array().into_iter().flatten().filter_map(|l| l.as_str().or_else(|| l["name"].as_str()).map(String::from)).collect()
}

fn labels_json(w: &World, key: &Key) -> Value {
    json!(w.issues[key].labels.iter().map(|l| payloads::label(w, &key.0, l)).collect::<Vec<_>>())
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
    let key = (format!("{o}/{r}"), n);
    let w = f.world.lock().unwrap();
    match w.issues.get(&key) {
        Some(i) => Json(payloads::issue(&w, &key, i)).into_response(),
        None => not_found(),
    }
}

/// PATCH an issue: title and body (one `edited`), state (`closed` / `reopened`), labels
/// (`unlabeled` and `labeled`), applied together; every delivery carries the result.
async fn update_issue(State(f): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, u64)>, Json(body): Json<Value>) -> Response {
    enter!(f, h);
    let key = (format!("{o}/{r}"), n);
    f.write(&key, format!("PATCH issue {}#{n}", key.0));
    let mut w = f.world.lock().unwrap();
    if !w.issues.contains_key(&key) {
        return not_found();
    }
    // The whole request is checked before anything of it is applied: an unknown type is a 422.
    let wanted_type = match wanted_type(&mut w, &h, &key, &body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let applied = (|| -> Result<Vec<super::world::Stated>, Missing> {
        let mut stated = w.edit(&key, body["title"].as_str(), body["body"].as_str())?;
        if let Some(state) = body["state"].as_str() {
            stated.extend(w.set_state(&key, state == "open", body["state_reason"].as_str())?);
        }
        if body.get("labels").is_some_and(Value::is_array) {
            stated.extend(w.set_labels(&key, &names(&body["labels"]))?);
        }
        if let Some(t) = wanted_type {
            stated.extend(w.set_issue_type(&key, t)?);
        }
        Ok(stated)
    })();
    match applied {
        Ok(stated) => {
            f.emit(&mut w, &key, &caller(&h), &stated);
            Json(payloads::issue(&w, &key, &w.issues[&key])).into_response()
        }
        Err(e) => refused(e),
    }
}

/// The `type` a PATCH or POST asks for: `None` when it names none, `Some(None)` to clear;
/// logged in the native call log; an unknown or disabled name is GitHub's 422.
fn wanted_type(w: &mut World, h: &HeaderMap, key: &Key, body: &Value) -> Result<Option<Option<super::native::IssueType>>, Response> {
    let Some(asked) = body.get("type") else { return Ok(None) };
    let name = asked.as_str().map(String::from);
    let resolved = match &name {
        None if asked.is_null() => Ok(None),
        None => Err(Missing::IssueType(asked.to_string())),
        Some(n) => w.resolve_type(&key.0, n).map(Some),
    };
    let target = if key.1 == 0 { format!("new issue in {}", key.0) } else { format!("{}#{}", key.0, key.1) };
    w.native.calls.push(super::native::NativeCall {
        by: caller(h).login,
        call: if key.1 == 0 { "POST issue type".into() } else { "PATCH issue type".into() },
        detail: format!("{target} {}", name.as_deref().unwrap_or("(none)")),
        refused: resolved.as_ref().err().map(|e| format!("{e:?}")),
    });
    resolved.map(Some).map_err(refused)
}

async fn create_issue(State(f): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    enter!(f, h);
    let repo = format!("{o}/{r}");
    f.write_untied(format!("POST issue {repo}"));
    let actor = caller(&h);
    let mut w = f.world.lock().unwrap();
    let wanted_type = match wanted_type(&mut w, &h, &(repo.clone(), 0), &body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (n, mut stated) = w.create_issue(&repo, body["title"].as_str().unwrap_or(""), body["body"].as_str().unwrap_or(""), &names(&body["labels"]), &actor.login);
    let key = (repo, n);
    if let Some(t) = wanted_type {
        stated.extend(w.set_issue_type(&key, t).expect("the issue was just made"));
    }
    *w.writes_per_issue.entry(key.clone()).or_default() += 1;
    f.emit(&mut w, &key, &actor, &stated);
    let out = payloads::issue(&w, &key, &w.issues[&key]);
    if std::mem::take(&mut w.lose_next_created) {
        return (StatusCode::BAD_GATEWAY, Json(json!({"message": "Bad Gateway"}))).into_response();
    }
    (StatusCode::CREATED, Json(out)).into_response()
}

#[derive(Deserialize)]
pub(super) struct Page {
    per_page: Option<usize>,
    page: Option<usize>,
    /// Issue lists: comma-separated labels an issue must all carry; `state` open (the
    /// default), closed or all; `direction` asc or desc (by number, as by creation here).
    labels: Option<String>,
    state: Option<String>,
    direction: Option<String>,
}

impl Page {
    fn window<T>(&self, items: impl Iterator<Item = T>) -> impl Iterator<Item = T> {
        let per = self.per_page.unwrap_or(30).min(100);
        let page = self.page.unwrap_or(1).max(1);
        items.skip((page - 1) * per).take(per)
    }
}

async fn list_comments(State(f): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, u64)>, Query(p): Query<Page>) -> Response {
    enter!(f, h);
    let w = f.world.lock().unwrap();
    if w.refuse_events.contains(&n) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": "refused"}))).into_response();
    }
    let key = (format!("{o}/{r}"), n);
    let Some(i) = w.issues.get(&key) else { return not_found() };
    Json(p.window(i.comments.iter()).map(|c| payloads::comment(&key, c)).collect::<Vec<_>>()).into_response()
}

/// GitHub refuses a comment body over 65,536 characters, with this answer.
fn too_long(body: &Value) -> Option<Response> {
    let chars = body["body"].as_str().map_or(0, |b| b.chars().count());
    let error = json!({ "resource": "IssueComment", "code": "unprocessable", "field": "data", "message": "Body is too long (maximum is 65536 characters)" });
    (chars > 65_536).then(|| (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "message": "Validation Failed", "errors": [error] }))).into_response())
}

async fn create_comment(State(f): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, u64)>, Json(body): Json<Value>) -> Response {
    enter!(f, h);
    if let Some(refused) = too_long(&body) {
        return refused;
    }
    let key = (format!("{o}/{r}"), n);
    f.write(&key, format!("POST comment {}#{n}", key.0));
    let actor = caller(&h);
    let out = {
        let mut w = f.world.lock().unwrap();
        match w.create_comment(&key, body["body"].as_str().unwrap_or(""), &actor.login) {
            Ok((c, stated)) => {
                f.emit(&mut w, &key, &actor, &stated);
                payloads::comment(&key, &c)
            }
            Err(e) => return refused(e),
        }
    };
    f.hold(&f.stall_comments).await;
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn update_comment(State(f): State<Shared>, h: HeaderMap, Path((_o, _r, id)): Path<(String, String, u64)>, Json(body): Json<Value>) -> Response {
    enter!(f, h);
    if let Some(refused) = too_long(&body) {
        return refused;
    }
    let home = f.world.lock().unwrap().comment_home(id);
    match &home {
        Some(key) => f.write(key, format!("EDIT comment {id}")),
        None => f.write_untied(format!("EDIT comment {id}")),
    }
    let mut w = f.world.lock().unwrap();
    let editor = caller(&h);
    match w.edit_comment(id, body["body"].as_str().unwrap_or(""), &editor.login) {
        Ok((key, c, stated)) => {
            f.emit(&mut w, &key, &editor, &stated);
            Json(payloads::comment(&key, &c)).into_response()
        }
        Err(e) => refused(e),
    }
}

async fn delete_comment(State(f): State<Shared>, h: HeaderMap, Path((_o, _r, id)): Path<(String, String, u64)>) -> Response {
    enter!(f, h);
    let home = f.world.lock().unwrap().comment_home(id);
    match &home {
        Some(key) => f.write(key, format!("DELETE comment {id}")),
        None => f.write_untied(format!("DELETE comment {id}")),
    }
    let mut w = f.world.lock().unwrap();
    match w.delete_comment(id) {
        Ok((key, stated)) => {
            f.emit(&mut w, &key, &caller(&h), &stated);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => refused(e),
    }
}

async fn add_labels(State(f): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, u64)>, Json(body): Json<Value>) -> Response {
    enter!(f, h);
    let key = (format!("{o}/{r}"), n);
    let names = names(&body["labels"]);
    f.write(&key, format!("ADD {}#{n} {}", key.0, names.join(",")));
    let mut w = f.world.lock().unwrap();
    match w.add_labels(&key, &names) {
        Ok(stated) => {
            f.emit(&mut w, &key, &caller(&h), &stated);
            Json(labels_json(&w, &key)).into_response()
        }
        Err(e) => refused(e),
    }
}

/// PUT: the issue's labels become exactly these.
async fn set_labels(State(f): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, u64)>, Json(body): Json<Value>) -> Response {
    enter!(f, h);
    let key = (format!("{o}/{r}"), n);
    let names = names(&body["labels"]);
    f.write(&key, format!("SET {}#{n} {}", key.0, names.join(",")));
    let mut w = f.world.lock().unwrap();
    match w.set_labels(&key, &names) {
        Ok(stated) => {
            f.emit(&mut w, &key, &caller(&h), &stated);
            Json(labels_json(&w, &key)).into_response()
        }
        Err(e) => refused(e),
    }
}

async fn remove_label(State(f): State<Shared>, h: HeaderMap, Path((o, r, n, name)): Path<(String, String, u64, String)>) -> Response {
    enter!(f, h);
    let key = (format!("{o}/{r}"), n);
    f.write(&key, format!("REMOVE {}#{n} {name}", key.0));
    let mut w = f.world.lock().unwrap();
    match w.remove_label(&key, &name) {
        Ok(stated) => {
            f.emit(&mut w, &key, &caller(&h), &stated);
            Json(labels_json(&w, &key)).into_response()
        }
        Err(e) => refused(e),
    }
}

async fn membership(State(f): State<Shared>, h: HeaderMap, Path((org, team, user)): Path<(String, String, String)>) -> Response {
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
    let wanted: Vec<&str> = p.labels.as_deref().map(|l| l.split(',').collect()).unwrap_or_default();
    let state = p.state.as_deref().unwrap_or("open");
    let mut items: Vec<(&Key, &FakeIssue)> = w
        .issues
        .iter()
        .filter(|((rp, _), i)| {
            *rp == repo && wanted.iter().all(|l| i.labels.iter().any(|have| have == l)) && (state == "all" || (state == "open") == i.open)
        })
        .collect();
    if p.direction.as_deref() == Some("desc") {
        items.reverse();
    }
    Json(p.window(items.into_iter()).map(|(k, i)| payloads::issue(&w, k, i)).collect::<Vec<_>>()).into_response()
}

async fn list_events(State(f): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, u64)>, Query(p): Query<Page>) -> Response {
    enter!(f, h);
    let w = f.world.lock().unwrap();
    if w.refuse_events.contains(&n) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": "refused"}))).into_response();
    }
    let Some(i) = w.issues.get(&(format!("{o}/{r}"), n)) else { return not_found() };
    Json(p.window(i.events.iter()).cloned().collect::<Vec<_>>()).into_response()
}

async fn whoami(State(f): State<Shared>, h: HeaderMap) -> Response {
    enter!(f, h);
    Json(json!({"login": super::BOT_LOGIN, "type": "Bot"})).into_response()
}

async fn list_repo_labels(State(f): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Query(p): Query<Page>) -> Response {
    enter!(f, h);
    let w = f.world.lock().unwrap();
    let all = w.repo_labels.get(&format!("{o}/{r}")).cloned().unwrap_or_default();
    Json(p.window(all.iter()).map(|(n, (c, d))| json!({"name": n, "color": c, "description": d})).collect::<Vec<_>>()).into_response()
}

async fn create_repo_label(State(f): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Json(b): Json<Value>) -> Response {
    enter!(f, h);
    let name = b["name"].as_str().unwrap_or("").to_string();
    f.write_untied(format!("POST label {name}"));
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
    f.write_untied(format!("PATCH label {name}"));
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
