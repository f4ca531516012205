//! The fake's search. Data Center keeps `GET /rest/api/2/search` (paged by `startAt`); Jira
//! Cloud removed `GET /rest/api/3/search` (410 Gone, Atlassian's CHANGE-2046) for
//! `GET /rest/api/3/search/jql`, paged by an opaque `nextPageToken` until `isLast`.

use super::rest::{error, issue_json};
use super::world::{FakeJiraIssue, World};
use super::FakeJira;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

macro_rules! enter {
    ($fake:expr, $v:expr, $headers:expr) => {
        match $fake.enter(&$v, &$headers).await {
            Ok(account) => account,
            Err(r) => return r,
        }
    };
}

#[derive(serde::Deserialize)]
pub(super) struct SearchQuery {
    jql: String,
    #[serde(rename = "startAt", default)]
    start_at: usize,
    #[serde(rename = "maxResults", default)]
    max_results: Option<usize>,
}

/// Data Center's search, paged by `startAt`. Jira Cloud removed it (see `search_jql`).
pub(super) async fn search(State(f): State<FakeJira>, h: HeaderMap, Path(v): Path<String>, axum::extract::Query(q): axum::extract::Query<SearchQuery>) -> Response {
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
pub(super) struct JqlQuery {
    jql: String,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
    #[serde(rename = "maxResults", default)]
    max_results: Option<usize>,
    #[serde(default)]
    fields: Option<String>,
}

pub(super) async fn search_jql(State(f): State<FakeJira>, h: HeaderMap, Path(v): Path<String>, axum::extract::Query(q): axum::extract::Query<JqlQuery>) -> Response {
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
