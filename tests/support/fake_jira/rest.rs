//! The REST routes rollgate calls (issue, transitions, comments, fields, myself, search,
//! changelog), on both versions: "2" is Data Center (wiki-markup bodies), "3" is Cloud (ADF).
//! Bodies are stored as sent and returned as stored (a v2 read of an ADF body gets Jira's wiki
//! rendering); a body of the wrong kind for the version is refused, so a client that mixes up
//! the two formats fails here and not in production. Writes go through `World`, which sends
//! the webhooks; the caller is whoever the credentials belong to.

use super::world::{FakeJiraComment, FakeJiraIssue, Op, Refusal, World};
use super::{FakeJira, BOT_ACCOUNT, BOT_NAME, EMAIL};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub(super) fn router(fake: FakeJira) -> Router {
    Router::new()
        .route("/rest/api/{v}/issue", post(create_issue))
        .route("/rest/api/{v}/issue/{key}", get(get_issue).put(edit_issue))
        .route("/rest/api/{v}/issue/{key}/transitions", get(list_transitions).post(do_transition))
        .route("/rest/api/{v}/issue/{key}/comment", get(list_comments).post(create_comment))
        .route("/rest/api/{v}/issue/{key}/comment/{id}", put(update_comment).delete(delete_comment))
        .route("/rest/api/{v}/field", get(list_fields))
        .route("/rest/api/{v}/myself", get(myself))
        .route("/rest/api/{v}/search", get(super::search::search))
        .route("/rest/api/{v}/search/jql", get(super::search::search_jql))
        .route("/rest/api/{v}/issue/{key}/changelog", get(changelog))
        .with_state(fake)
}

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"errorMessages": [message], "errors": {}}))).into_response()
}

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::NotFound(m) => error(StatusCode::NOT_FOUND, &m),
        Refusal::Invalid(m) => error(StatusCode::BAD_REQUEST, &m),
        Refusal::Fields(errors) => (StatusCode::BAD_REQUEST, Json(json!({"errorMessages": [], "errors": errors}))).into_response(),
    }
}

fn no_issue() -> Response {
    refused(Refusal::NotFound("Issue does not exist or you do not have permission to see it.".into()))
}

/// v2 takes wiki markup (a string), v3 takes an ADF document; anything else is refused.
pub(super) fn body_fits(v: &str, body: &Value) -> bool {
    match v {
        "2" => body.is_string(),
        _ => body.is_object() && body["type"] == "doc",
    }
}

fn bad_comment() -> Response {
    refused(Refusal::Fields(Map::from_iter([("comment".to_string(), json!("Comment body is not valid!"))])))
}

fn person(account: &str) -> Value {
    let name = if account == BOT_ACCOUNT { BOT_NAME } else { account };
    json!({"accountId": account, "displayName": name, "active": true})
}

/// A body as this version shows it: v2 gets wiki text for a body written as ADF.
fn shown(v: &str, body: &Value) -> Value {
    if v == "2" && body.is_object() {
        return super::payloads::wiki_text(body);
    }
    body.clone()
}

pub(super) fn issue_json(base: &str, v: &str, w: &World, i: &FakeJiraIssue) -> Value {
    let project = i.key.split_once('-').map_or(i.key.as_str(), |(p, _)| p);
    let reporter = if i.reporter.is_empty() { "reporter" } else { i.reporter.as_str() };
    let mut fields = json!({
        "summary": i.summary,
        "issuetype": {"name": i.issuetype},
        "status": {"name": i.status, "id": w.status_id(&i.status)},
        "labels": i.labels,
        "project": {"key": project},
        "description": i.description.as_ref().map(|d| shown(v, d)),
        "created": i.created,
        "updated": i.updated,
        "reporter": person(reporter),
    });
    for (id, value) in &i.fields {
        fields[id] = value.clone();
        if let Some(option) = value.get("value").and_then(Value::as_str).and_then(|name| w.option_id(id, name)) {
            fields[id]["id"] = json!(option.to_string());
        }
    }
    json!({"id": i.id.to_string(), "key": i.key, "self": format!("{base}/rest/api/{v}/issue/{}", i.id), "fields": fields})
}

fn comment_json(base: &str, v: &str, issue_id: u64, c: &FakeJiraComment) -> Value {
    json!({
        "id": c.id,
        "self": format!("{base}/rest/api/{v}/issue/{issue_id}/comment/{}", c.id),
        "body": shown(v, &c.body),
        "author": person(&c.author),
        "updateAuthor": person(&c.update_author),
        "created": c.created,
        "updated": c.updated,
        "properties": c.properties.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    })
}

macro_rules! enter {
    ($fake:expr, $v:expr, $headers:expr) => {
        match $fake.enter(&$v, &$headers).await {
            Ok(account) => account,
            Err(r) => return r,
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

async fn edit_issue(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    let who = enter!(f, v, h);
    f.write(&who, Some(&key), format!("PUT issue {key}"), &body);
    let mut ops: Vec<Op> = Vec::new();
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
    match f.world.lock().unwrap().edit_issue(&who, &key, ops) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => refused(r),
    }
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
    let who = enter!(f, v, h);
    let t = &body["transition"]["id"];
    let id = t.as_str().map(String::from).unwrap_or_else(|| t.to_string());
    let target = {
        let w = f.world.lock().unwrap();
        id.parse::<usize>().ok().and_then(|n| w.statuses.get(n.wrapping_sub(1)).cloned())
    };
    f.write(&who, Some(&key), format!("POST transition {key} -> {}", target.unwrap_or_else(|| format!("id {id}"))), &body);
    match f.world.lock().unwrap().transition(&who, &key, &id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => refused(r),
    }
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
    let who = enter!(f, v, h);
    f.write(&who, Some(&key), format!("POST comment {key}"), &body);
    let mut w = f.world.lock().unwrap();
    if w.key_of(&key).is_none() {
        return no_issue();
    }
    if !body_fits(&v, &body["body"]) {
        return bad_comment();
    }
    let props = body["properties"].as_array().into_iter().flatten();
    let props = props.filter_map(|p| Some((p["key"].as_str()?.to_string(), p["value"].clone()))).collect();
    match w.add_comment(&who, &key, body["body"].clone(), props) {
        Ok(c) => {
            let issue_id = w.issues[&w.key_of(&key).unwrap()].id;
            (StatusCode::CREATED, Json(comment_json(&f.url, &v, issue_id, &c))).into_response()
        }
        Err(r) => refused(r),
    }
}

async fn update_comment(
    State(f): State<FakeJira>,
    h: HeaderMap,
    Path((v, key, id)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let who = enter!(f, v, h);
    f.write(&who, Some(&key), format!("PUT comment {id}"), &body);
    let mut w = f.world.lock().unwrap();
    if w.key_of(&key).is_none() {
        return no_issue();
    }
    if !body_fits(&v, &body["body"]) {
        return bad_comment();
    }
    match w.edit_comment(&who, Some(&key), &id, body["body"].clone()) {
        Ok(c) => {
            let issue_id = w.issues[&w.key_of(&key).unwrap()].id;
            Json(comment_json(&f.url, &v, issue_id, &c)).into_response()
        }
        Err(r) => refused(r),
    }
}

async fn delete_comment(State(f): State<FakeJira>, h: HeaderMap, Path((v, key, id)): Path<(String, String, String)>) -> Response {
    let who = enter!(f, v, h);
    f.write(&who, Some(&key), format!("DELETE comment {id}"), &Value::Null);
    match f.world.lock().unwrap().delete_comment(&who, Some(&key), &id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => refused(r),
    }
}

async fn create_issue(State(f): State<FakeJira>, h: HeaderMap, Path(v): Path<String>, Json(body): Json<Value>) -> Response {
    let who = enter!(f, v, h);
    let project = body["fields"]["project"]["key"].as_str().unwrap_or("").to_string();
    f.write(&who, None, format!("POST issue {project}"), &body);
    let made = f.world.lock().unwrap().create_issue(&who, Some(&v), &body["fields"]);
    match made {
        Ok((key, id)) => {
            f.count_write(&key);
            let out = json!({"id": id.to_string(), "key": key, "self": format!("{}/rest/api/{v}/issue/{id}", f.url)});
            (StatusCode::CREATED, Json(out)).into_response()
        }
        Err(r) => refused(r),
    }
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
    let who = enter!(f, v, h);
    if who != BOT_ACCOUNT {
        return Json(json!({"accountId": who, "displayName": who, "name": who, "active": true})).into_response();
    }
    Json(json!({"accountId": BOT_ACCOUNT, "displayName": BOT_NAME, "name": "rollgate", "emailAddress": EMAIL, "active": true})).into_response()
}

#[derive(Deserialize)]
struct Paging {
    #[serde(rename = "startAt", default)]
    start_at: usize,
}

async fn changelog(State(f): State<FakeJira>, h: HeaderMap, Path((v, key)): Path<(String, String)>, Query(q): Query<Paging>) -> Response {
    enter!(f, v, h);
    let w = f.world.lock().unwrap();
    let all = w.key_of(&key).and_then(|k| w.changelogs.get(&k).cloned()).unwrap_or_default();
    let page: Vec<Value> = all.iter().skip(q.start_at).take(100).cloned().collect();
    Json(json!({ "startAt": q.start_at, "maxResults": 100, "total": all.len(), "values": page })).into_response()
}
