//! `POST /graphql`, for the queries rollgate's backfill sends: an issue's comments with their
//! edit histories, a page at a time, and (for a comment with more edits than one page holds)
//! the rest of one comment's history by its node id. Answered as GitHub does: HTTP 200 with
//! `data`, or with an `errors` array (a query the fake does not know, an unknown repository or
//! issue); `userContentEdits` newest first, empty for a comment never edited, the original text
//! as its oldest entry once edited; `diff` holds the revision's whole text; a GitHub App's bot
//! is `__typename: Bot` with its login without `[bot]`. Queries and mutations about Projects v2
//! are answered by graphql_projects.rs.

use super::world::{FakeComment, FakeEdit, World};
use super::{payloads, FakeGithub};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// GitHub's largest page (`first: 100`).
const PAGE: usize = 100;

pub(super) fn errors(kind: &str, message: &str) -> Response {
    Json(json!({ "errors": [{ "type": kind, "message": message, "locations": [{ "line": 1, "column": 1 }] }] })).into_response()
}

/// A connection cursor: opaque to the caller, the position after which the next page starts.
pub(super) fn cursor(position: usize) -> String {
    hex::encode(format!("cursor:v2:{position}"))
}

pub(super) fn position_after(after: &Value) -> Option<usize> {
    match after.as_str() {
        None => Some(0),
        Some(c) => String::from_utf8(hex::decode(c).ok()?).ok()?.strip_prefix("cursor:v2:")?.parse::<usize>().ok().map(|p| p + 1),
    }
}

/// An actor as GraphQL names it: a bot's login has no `[bot]`.
pub(super) fn actor(login: &str) -> Value {
    match login.strip_suffix("[bot]") {
        Some(slug) => json!({ "__typename": "Bot", "login": slug }),
        None => json!({ "__typename": "User", "login": login }),
    }
}

fn comment_node_id(id: u64) -> String {
    format!("IC_kwDO{id:X}")
}

/// A page of a comment's edits, newest first, starting at `from`.
fn edits_page(c: &FakeComment, from: usize) -> Value {
    let newest_first: Vec<&FakeEdit> = c.edits.iter().rev().collect();
    let page: Vec<Value> = newest_first
        .iter()
        .enumerate()
        .skip(from)
        .take(PAGE)
        .map(|(_, e)| {
            json!({
                "editedAt": payloads::time(e.at),
                "editor": actor(&e.editor),
                "diff": e.body,
                "deletedAt": e.deleted_at.map(payloads::time),
            })
        })
        .collect();
    let end = from + page.len();
    json!({
        "totalCount": c.edits.len(),
        "pageInfo": { "hasNextPage": end < newest_first.len(), "endCursor": (end > from).then(|| cursor(end - 1)) },
        "nodes": page,
    })
}

fn comment_node(c: &FakeComment) -> Value {
    json!({
        "id": comment_node_id(c.id),
        "databaseId": (c.id <= i32::MAX as u64).then_some(c.id),
        // A BigInt: GraphQL serialises it as a string.
        "fullDatabaseId": c.id.to_string(),
        "author": actor(&c.author),
        "createdAt": payloads::time(c.created_at),
        "body": c.body,
        "userContentEdits": edits_page(c, 0),
    })
}

pub(super) async fn graphql(State(f): State<FakeGithub>, h: HeaderMap, Json(req): Json<Value>) -> Response {
    if let Err(r) = f.enter(&h).await {
        return r;
    }
    let query = req["query"].as_str().unwrap_or("");
    let vars = &req["variables"];
    if f.world.lock().unwrap().no_graphql {
        return super::rest::not_found();
    }
    // Projects v2 (graphql_projects.rs); everything else is backfill's comment queries.
    if super::graphql_projects::wants(query) {
        return super::graphql_projects::answer(&f, &h, query, vars);
    }
    let w = f.world.lock().unwrap();
    if query.contains("node(id:") && query.contains("userContentEdits") {
        return one_comments_edits(&w, vars);
    }
    if !(query.contains("repository(") && query.contains("issue(") && query.contains("comments(") && query.contains("userContentEdits")) {
        return errors("INTERNAL", "the fake GitHub answers only the GraphQL queries rollgate's backfill sends");
    }
    if query.contains("databaseId") && !query.contains("fullDatabaseId") {
        if w.issues.values().flat_map(|i| &i.comments).any(|c| c.id > i32::MAX as u64) {
            return errors("INTERNAL", "Int cannot represent non 32-bit signed integer value");
        }
    }
    let (owner, name, number) = (vars["owner"].as_str().unwrap_or(""), vars["name"].as_str().unwrap_or(""), vars["number"].as_u64().unwrap_or(0));
    let repo = format!("{owner}/{name}");
    if !w.issues.keys().any(|(r, _)| *r == repo) {
        return Json(json!({
            "data": { "repository": null },
            "errors": [{ "type": "NOT_FOUND", "path": ["repository"], "message": format!("Could not resolve to a Repository with the name '{repo}'.") }],
        }))
        .into_response();
    }
    if w.refuse_events.contains(&number) {
        return errors("FORBIDDEN", "refused");
    }
    let Some(issue) = w.issues.get(&(repo.clone(), number)) else {
        return Json(json!({
            "data": { "repository": { "issue": null } },
            "errors": [{ "type": "NOT_FOUND", "path": ["repository", "issue"], "message": format!("Could not resolve to an Issue with the number of {number}.") }],
        }))
        .into_response();
    };
    let Some(from) = position_after(&vars["after"]) else { return errors("INVALID_CURSOR_ARGUMENTS", "`after` is not a valid cursor") };
    let page: Vec<Value> = issue.comments.iter().skip(from).take(PAGE).map(comment_node).collect();
    let end = from + page.len();
    Json(json!({
        "data": { "repository": { "issue": { "comments": {
            "pageInfo": { "hasNextPage": end < issue.comments.len(), "endCursor": (end > from).then(|| cursor(end - 1)) },
            "nodes": page,
        } } } }
    }))
    .into_response()
}

/// `node(id:) { ... on IssueComment { userContentEdits(first:, after:) } }`.
fn one_comments_edits(w: &World, vars: &Value) -> Response {
    let id = vars["id"].as_str().unwrap_or("");
    let Some(c) = w.issues.values().flat_map(|i| &i.comments).find(|c| comment_node_id(c.id) == id) else {
        return Json(json!({
            "data": { "node": null },
            "errors": [{ "type": "NOT_FOUND", "path": ["node"], "message": format!("Could not resolve to a node with the global id of '{id}'") }],
        }))
        .into_response();
    };
    let Some(from) = position_after(&vars["after"]) else { return errors("INVALID_CURSOR_ARGUMENTS", "`after` is not a valid cursor") };
    Json(json!({ "data": { "node": { "userContentEdits": edits_page(c, from) } } })).into_response()
}
