//! `POST /graphql` for Projects v2 (what is faithful to GitHub and what is simplified: the top
//! of native.rs). Queries: a project by `organization(login:) { projectV2(number:) }` (or
//! `repositoryOwner(login:)`) with its
//! fields and their options (and its items when the query asks for `items(first:, after:)`);
//! `node(id:)` for an item (`PVTI_`, with its `fieldValues` and `content`), a project (`PVT_`),
//! a field (`PVTSSF_`, `PVTF_`) or an issue (`I_`, with its `projectItems`); an issue's
//! `projectItems` by `repository(owner:, name:) { issue(number:) }`. Mutations:
//! `updateProjectV2ItemFieldValue`, `clearProjectV2ItemFieldValue`, `addProjectV2ItemById`,
//! each logged (`native_calls`, and `writes`) and announced as GitHub announces it.
//!
//! Faithful: HTTP 200 with `data`, or with `errors` and `data` null at the error's `path`
//! (`NOT_FOUND` "Could not resolve to a ProjectV2 with the number N." / "... to a node with the
//! global id of 'X'" / "... to an Organization with the login of 'X'."; `FORBIDDEN` "Resource
//! not accessible by integration" for an installation token on another account, as REST's 403;
//! `first` missing or over 100 on a paged connection refused as GitHub refuses it); `__typename`
//! and GitHub's field names (`ProjectV2SingleSelectField.options { id name color description }`,
//! `ProjectV2ItemFieldSingleSelectValue { name optionId field }`, `...DateValue { date }`,
//! `...TextValue { text }`, `content { ... on Issue { id number repository { nameWithOwner } } }`),
//! opaque cursors, mutation payloads `{ projectV2Item }` / `{ item }` (octokit/graphql-schema).
//!
//! Simplified: like graphql.rs it reads the query text rather than parsing GraphQL. Arguments
//! are found by name (a `$variable` or a literal in the query); an object is answered with every
//! field the fake knows of it, a superset of any selection (so aliases, `fieldValueByName` and
//! `@include` are not honoured); `fields` and `fieldValues` come whole, unpaged; one mutation a
//! request; error messages for a value of the wrong kind are the fake's own wording.

use super::graphql::{actor, cursor, errors, position_after};
use super::native::{org_of, Content, FieldKind, FieldValue, NativeCall, Project, ProjectField, ProjectItem, Refusal};
use super::world::{Actor, Key, World};
use super::{app, payloads, FakeGithub};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

const WEB: &str = "https://github.com";
const MUTATIONS: [&str; 3] = ["updateProjectV2ItemFieldValue", "clearProjectV2ItemFieldValue", "addProjectV2ItemById"];

/// Whether a query is about Projects v2 (the rest of `POST /graphql` is graphql.rs's).
pub(super) fn wants(query: &str) -> bool {
    query.contains("rojectV2") || query.contains("projectItems")
}

// --- reading the query text ---

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Where `name` occurs as a whole word in `q`, at or after `from`.
fn word(q: &str, name: &str, from: usize) -> Option<usize> {
    let b = q.as_bytes();
    let mut at = from;
    while let Some(p) = q.get(at..)?.find(name) {
        let i = at + p;
        let end = i + name.len();
        if (i == 0 || !is_ident(b[i - 1])) && (end >= b.len() || !is_ident(b[end])) {
            return Some(i);
        }
        at = end;
    }
    None
}

/// The text between the parentheses of the first `name(...)` in `q`.
fn args_of<'a>(q: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = word(q, name, from) {
        let after = &q[i + name.len()..];
        if let Some(inner) = after.trim_start().strip_prefix('(') {
            let start = q.len() - inner.len();
            let mut depth = 1;
            for (k, c) in q[start..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(&q[start..start + k]);
                        }
                    }
                    _ => {}
                }
            }
            return None;
        }
        from = i + name.len();
    }
    None
}

/// Argument `name` in an argument list, when given: a variable's value or a literal.
fn arg(args: &str, vars: &Value, name: &str) -> Option<Value> {
    let mut from = 0;
    while let Some(i) = word(args, name, from) {
        if let Some(v) = args[i + name.len()..].trim_start().strip_prefix(':') {
            return Some(literal(v.trim_start(), vars));
        }
        from = i + name.len();
    }
    None
}

fn literal(s: &str, vars: &Value) -> Value {
    if let Some(v) = s.strip_prefix('$') {
        let name: String = v.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        return vars.get(&name).cloned().unwrap_or(Value::Null);
    }
    if let Some(v) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => {}
                },
                '"' => return json!(out),
                c => out.push(c),
            }
        }
        return Value::Null;
    }
    let tok: String = s.chars().take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')).collect();
    match tok.as_str() {
        "" | "null" => Value::Null,
        "true" => json!(true),
        "false" => json!(false),
        t => t.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(t)),
    }
}

fn string_arg(args: Option<&str>, vars: &Value, name: &str) -> String {
    args.and_then(|a| arg(a, vars, name)).and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// A mutation's input: the `input: $variable` object, or one written in the query.
fn input(q: &str, vars: &Value, mutation: &str) -> Value {
    let args = args_of(q, mutation).unwrap_or("");
    if let Some(v @ Value::Object(_)) = arg(args, vars, "input") {
        return v;
    }
    let mut input = Map::new();
    for k in ["projectId", "itemId", "fieldId", "contentId", "clientMutationId"] {
        if let Some(v) = arg(args, vars, k) {
            input.insert(k.into(), v);
        }
    }
    let value = match arg(args, vars, "value") {
        Some(v @ Value::Object(_)) => v,
        _ => {
            let mut m = Map::new();
            for k in ["singleSelectOptionId", "date", "text", "number", "iterationId"] {
                if let Some(v) = arg(args, vars, k) {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        }
    };
    input.insert("value".into(), value);
    Value::Object(input)
}

// --- answers ---

fn error_at(data: Value, kind: &str, path: &[&str], message: &str) -> Response {
    Json(json!({ "data": data, "errors": [{ "type": kind, "path": path, "locations": [{ "line": 1, "column": 1 }], "message": message }] })).into_response()
}

fn forbidden(data: Value, path: &[&str]) -> Response {
    error_at(data, "FORBIDDEN", path, "Resource not accessible by integration")
}

/// The page a connection asks for (`first`, `after`): (from, to) positions; GitHub's errors for
/// a missing or too large `first` and a bad cursor.
fn window(q: &str, vars: &Value, name: &str, len: usize) -> Result<(usize, usize), Response> {
    let args = args_of(q, name).unwrap_or("");
    let Some(first) = arg(args, vars, "first").and_then(|v| v.as_u64()) else {
        return Err(errors("MISSING_PAGINATION_BOUNDARIES", &format!("You must provide a `first` or `last` value to properly paginate the `{name}` connection.")));
    };
    if first > 100 {
        return Err(errors("EXCESSIVE_PAGINATION", &format!("Requesting {first} records on the `{name}` connection exceeds the `first` limit of 100 records.")));
    }
    let Some(from) = position_after(&arg(args, vars, "after").unwrap_or(Value::Null)) else {
        return Err(errors("INVALID_CURSOR_ARGUMENTS", "`after` is not a valid cursor"));
    };
    Ok((from.min(len), (from + first as usize).min(len)))
}

fn connection(nodes: Vec<Value>, from: usize, total: usize) -> Value {
    let end = from + nodes.len();
    json!({
        "totalCount": total,
        "pageInfo": { "hasNextPage": end < total, "hasPreviousPage": from > 0, "startCursor": (end > from).then(|| cursor(from)), "endCursor": (end > from).then(|| cursor(end - 1)) },
        "nodes": nodes,
    })
}

fn whole(nodes: Vec<Value>) -> Value {
    let n = nodes.len();
    connection(nodes, 0, n)
}

fn project_ref(p: &Project) -> Value {
    json!({
        "__typename": "ProjectV2",
        "id": p.node_id,
        "fullDatabaseId": p.id.to_string(),
        "number": p.number,
        "title": p.title,
        "url": format!("{WEB}/orgs/{}/projects/{}", p.org, p.number),
        "closed": false,
        "owner": { "__typename": "Organization", "login": p.org },
    })
}

fn field_json(p: &Project, f: &ProjectField) -> Value {
    let mut v = json!({
        "__typename": if matches!(f.kind, FieldKind::SingleSelect(_)) { "ProjectV2SingleSelectField" } else { "ProjectV2Field" },
        "id": f.node_id,
        "databaseId": f.id,
        "name": f.name,
        "dataType": f.kind.data_type(),
        "project": { "id": p.node_id, "number": p.number },
    });
    if let FieldKind::SingleSelect(options) = &f.kind {
        v["options"] = options
            .iter()
            .map(|o| json!({ "id": o.id, "name": o.name, "nameHTML": o.name, "color": o.color, "description": o.description, "descriptionHTML": o.description }))
            .collect();
    }
    v
}

fn issue_brief(w: &World, key: &Key) -> Value {
    let Some(i) = w.issues.get(key) else { return Value::Null };
    let (owner, name) = key.0.split_once('/').unwrap_or((&key.0, &key.0));
    json!({
        "__typename": "Issue",
        "id": payloads::issue_node_id(&key.0, key.1),
        "number": key.1,
        "title": i.title,
        "state": if i.open { "OPEN" } else { "CLOSED" },
        "url": format!("{WEB}/{}/issues/{}", key.0, key.1),
        "repository": { "nameWithOwner": key.0, "name": name, "owner": { "login": owner } },
    })
}

fn item_title(w: &World, it: &ProjectItem) -> String {
    match &it.content {
        Content::Issue(k) => w.issues.get(k).map(|i| i.title.clone()).unwrap_or_default(),
        Content::Draft { title, .. } => title.clone(),
    }
}

/// The item's field values, in the project's field order: its Title, then each field set.
fn values_json(w: &World, p: &Project, it: &ProjectItem) -> Vec<Value> {
    let mut out = Vec::new();
    for f in &p.fields {
        let id = |prefix: &str| format!("{prefix}_lQDO{:X}", payloads::stable_id(&format!("value:{}:{}", it.node_id, f.node_id)));
        let value = match (&f.kind, it.values.get(&f.node_id)) {
            (FieldKind::Title, _) => json!({ "__typename": "ProjectV2ItemFieldTextValue", "id": id("PVTFTV"), "text": item_title(w, it) }),
            (FieldKind::SingleSelect(options), Some(FieldValue::Option(oid))) => {
                let Some(o) = options.iter().find(|o| o.id == *oid) else { continue };
                json!({ "__typename": "ProjectV2ItemFieldSingleSelectValue", "id": id("PVTFSV"), "name": o.name, "nameHTML": o.name, "optionId": o.id, "color": o.color, "description": o.description })
            }
            (_, Some(FieldValue::Date(d))) => json!({ "__typename": "ProjectV2ItemFieldDateValue", "id": id("PVTFDV"), "date": d }),
            (_, Some(FieldValue::Text(t))) => json!({ "__typename": "ProjectV2ItemFieldTextValue", "id": id("PVTFTV"), "text": t }),
            _ => continue,
        };
        let mut value = value;
        value["field"] = field_json(p, f);
        value["updatedAt"] = json!(payloads::time(it.updated_at));
        out.push(value);
    }
    out
}

fn item_json(w: &World, p: &Project, it: &ProjectItem) -> Value {
    json!({
        "__typename": "ProjectV2Item",
        "id": it.node_id,
        "databaseId": it.id,
        "fullDatabaseId": it.id.to_string(),
        "type": match it.content { Content::Issue(_) => "ISSUE", Content::Draft { .. } => "DRAFT_ISSUE" },
        "isArchived": false,
        "createdAt": payloads::time(it.created_at),
        "updatedAt": payloads::time(it.updated_at),
        "creator": actor(&it.creator),
        "content": match &it.content {
            Content::Issue(k) => issue_brief(w, k),
            Content::Draft { node_id, title } => json!({ "__typename": "DraftIssue", "id": node_id, "title": title }),
        },
        "project": project_ref(p),
        "fieldValues": whole(values_json(w, p, it)),
    })
}

/// The project with its fields, and a page of its items when the query asks for `items`.
fn project_json(w: &World, p: &Project, q: &str, vars: &Value) -> Result<Value, Response> {
    let mut v = project_ref(p);
    v["fields"] = whole(p.fields.iter().map(|f| field_json(p, f)).collect());
    if args_of(q, "items").is_some() {
        let (from, to) = window(q, vars, "items", p.items.len())?;
        v["items"] = connection(p.items[from..to].iter().map(|it| item_json(w, p, it)).collect(), from, p.items.len());
    }
    Ok(v)
}

/// The issue with its `projectItems` (on the projects the caller may see).
fn issue_json(w: &World, key: &Key, q: &str, vars: &Value, scope: Option<&str>) -> Result<Value, Response> {
    let mut v = issue_brief(w, key);
    if args_of(q, "projectItems").is_some() {
        let all: Vec<(&Project, &ProjectItem)> = w
            .native
            .projects
            .iter()
            .filter(|p| scope.is_none_or(|a| a.eq_ignore_ascii_case(&p.org)))
            .flat_map(|p| p.items.iter().filter(|i| i.content == Content::Issue(key.clone())).map(move |i| (p, i)))
            .collect();
        let (from, to) = window(q, vars, "projectItems", all.len())?;
        v["projectItems"] = connection(all[from..to].iter().map(|(p, i)| item_json(w, p, i)).collect(), from, all.len());
    }
    Ok(v)
}

fn data(v: Value) -> Response {
    Json(json!({ "data": v })).into_response()
}

pub(super) fn answer(f: &FakeGithub, h: &HeaderMap, q: &str, vars: &Value) -> Response {
    if q.trim_start().starts_with("mutation") {
        return mutate(f, h, q, vars);
    }
    let scope = app::installation_account(h);
    let shut = |org: &str| scope.as_deref().is_some_and(|a| !a.eq_ignore_ascii_case(org));
    let w = f.world.lock().unwrap();
    // `repositoryOwner(login:)` is how clients ask when they do not know user from organisation.
    let owner_field = if args_of(q, "organization").is_some() { "organization" } else { "repositoryOwner" };
    let answered = if let Some(args) = args_of(q, owner_field) {
        let login = string_arg(Some(args), vars, "login");
        let number = args_of(q, "projectV2").and_then(|a| arg(a, vars, "number")).and_then(|v| v.as_u64()).unwrap_or(0);
        let known = w.native.projects.iter().any(|p| p.org.eq_ignore_ascii_case(&login))
            || w.native.issue_types.contains_key(&login.to_lowercase())
            || w.issues.keys().any(|(r, _)| org_of(r).eq_ignore_ascii_case(&login));
        if !known {
            return error_at(json!({ owner_field: null }), "NOT_FOUND", &[owner_field], &format!("Could not resolve to an Organization with the login of '{login}'."));
        }
        if shut(&login) {
            return forbidden(json!({ owner_field: { "projectV2": null } }), &[owner_field, "projectV2"]);
        }
        match w.project_by_number(&login, number) {
            None => {
                return error_at(json!({ owner_field: { "projectV2": null } }), "NOT_FOUND", &[owner_field, "projectV2"], &format!("Could not resolve to a ProjectV2 with the number {number}."))
            }
            Some(p) => project_json(&w, &w.native.projects[p], q, vars).map(|v| json!({ owner_field: { "projectV2": v } })),
        }
    } else if let Some(args) = args_of(q, "node") {
        let id = string_arg(Some(args), vars, "id");
        let missing = || error_at(json!({ "node": null }), "NOT_FOUND", &["node"], &Refusal::not_found(&id).message);
        let found = w.native.projects.iter().find_map(|p| {
            if p.node_id == id {
                return Some((p, None, None));
            }
            p.items.iter().find(|i| i.node_id == id).map(|i| (p, Some(i), None)).or_else(|| p.field(&id).map(|f| (p, None, Some(f))))
        });
        match found {
            Some((p, _, _)) if shut(&p.org) => return forbidden(json!({ "node": null }), &["node"]),
            Some((p, Some(i), _)) => Ok(item_json(&w, p, i)),
            Some((p, None, Some(f))) => Ok(field_json(p, f)),
            Some((p, None, None)) => project_json(&w, p, q, vars),
            None => match w.issue_by_node(&id) {
                Some(key) if shut(org_of(&key.0)) => return forbidden(json!({ "node": null }), &["node"]),
                Some(key) => issue_json(&w, &key, q, vars, scope.as_deref()),
                None => return missing(),
            },
        }
        .map(|v| json!({ "node": v }))
    } else if let Some(args) = args_of(q, "repository") {
        let (owner, name) = (string_arg(Some(args), vars, "owner"), string_arg(Some(args), vars, "name"));
        let repo = format!("{owner}/{name}");
        let number = args_of(q, "issue").and_then(|a| arg(a, vars, "number")).and_then(|v| v.as_u64()).unwrap_or(0);
        if !w.issues.keys().any(|(r, _)| *r == repo) {
            return error_at(json!({ "repository": null }), "NOT_FOUND", &["repository"], &format!("Could not resolve to a Repository with the name '{repo}'."));
        }
        if shut(&owner) {
            return forbidden(json!({ "repository": null }), &["repository"]);
        }
        let key = (repo, number);
        if !w.issues.contains_key(&key) {
            return error_at(json!({ "repository": { "issue": null } }), "NOT_FOUND", &["repository", "issue"], &format!("Could not resolve to an Issue with the number of {number}."));
        }
        issue_json(&w, &key, q, vars, scope.as_deref()).map(|v| json!({ "repository": { "issue": v } }))
    } else {
        return errors("INTERNAL", "the fake GitHub answers only the Projects v2 queries rollgate sends (organization/repositoryOwner.projectV2, node, repository.issue.projectItems)");
    };
    match answered {
        Ok(v) => data(v),
        Err(r) => r,
    }
}

/// What a call log entry says of a mutation's input, in the names a person reads.
fn describe(w: &World, name: &str, input: &Value) -> String {
    let s = |k: &str| input[k].as_str().unwrap_or("?").to_string();
    let project = w.project_index(&s("projectId")).map(|p| &w.native.projects[p]);
    let field = project.and_then(|p| p.field(&s("fieldId")));
    let field_name = field.map(|f| f.name.clone()).unwrap_or_else(|| s("fieldId"));
    match name {
        "addProjectV2ItemById" => {
            let content = w.issue_by_node(&s("contentId")).map(|(r, n)| format!("{r}#{n}")).unwrap_or_else(|| s("contentId"));
            format!("{} {content}", project.map(|p| format!("{}#{}", p.org, p.number)).unwrap_or_else(|| s("projectId")))
        }
        "clearProjectV2ItemFieldValue" => format!("{} {field_name}=(cleared)", s("itemId")),
        _ => {
            let v = &input["value"];
            let shown = match (v["singleSelectOptionId"].as_str(), field.map(|f| &f.kind)) {
                (Some(id), Some(FieldKind::SingleSelect(options))) => options.iter().find(|o| o.id == id).map(|o| o.name.clone()).unwrap_or_else(|| id.to_string()),
                (Some(id), _) => id.to_string(),
                _ => ["date", "text", "number", "iterationId"].iter().find_map(|k| v.get(*k).filter(|x| !x.is_null()).map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string()))).unwrap_or_else(|| "?".into()),
            };
            format!("{} {field_name}={shown}", s("itemId"))
        }
    }
}

fn required(input: &Value, key: &str, mutation: &str) -> Result<String, Refusal> {
    input[key].as_str().map(String::from).ok_or_else(|| Refusal {
        kind: "INVALID_ARGUMENTS",
        message: format!("Argument '{key}' on InputObject '{}{}Input' is required. Expected type ID!", mutation[..1].to_uppercase(), &mutation[1..]),
    })
}

/// Applies one mutation: (project, item node id, what it states).
fn apply(w: &mut World, name: &str, input: &Value, scope: Option<&str>, by: &Actor) -> Result<(usize, String, Vec<super::native::ItemStated>), Refusal> {
    let shut = |org: &str| scope.is_some_and(|a| !a.eq_ignore_ascii_case(org));
    let no_access = || Refusal { kind: "FORBIDDEN", message: "Resource not accessible by integration".into() };
    let project_id = required(input, "projectId", name)?;
    let p = w.project_index(&project_id).ok_or_else(|| Refusal::not_found(&project_id))?;
    if shut(&w.native.projects[p].org) {
        return Err(no_access());
    }
    if name == "addProjectV2ItemById" {
        let content = required(input, "contentId", name)?;
        let key = w.issue_by_node(&content).ok_or_else(|| Refusal::not_found(&content))?;
        if shut(org_of(&key.0)) {
            return Err(no_access());
        }
        let (item, stated) = w.add_item(p, Content::Issue(key), &by.login);
        return Ok((p, item, stated));
    }
    let item = required(input, "itemId", name)?;
    let field = required(input, "fieldId", name)?;
    let to = if name == "clearProjectV2ItemFieldValue" {
        None
    } else {
        let given: Vec<(&String, &Value)> = input["value"].as_object().into_iter().flatten().filter(|(_, v)| !v.is_null()).collect();
        let [(kind, v)] = given.as_slice() else {
            return Err(Refusal { kind: "INVALID_ARGUMENTS", message: "Only 1 value can be updated at a time.".into() });
        };
        let text = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
        Some(match kind.as_str() {
            "singleSelectOptionId" => FieldValue::Option(text),
            "date" => FieldValue::Date(text),
            "text" => FieldValue::Text(text),
            other => return Err(Refusal { kind: "UNPROCESSABLE", message: format!("the fake GitHub does not model `{other}` values") }),
        })
    };
    let stated = w.set_item_field(p, &item, &field, to)?;
    Ok((p, item, stated))
}

fn mutate(f: &FakeGithub, h: &HeaderMap, q: &str, vars: &Value) -> Response {
    let Some(name) = MUTATIONS.into_iter().find(|m| word(q, m, 0).is_some()) else {
        return errors("INTERNAL", "the fake GitHub answers only the Projects v2 mutations updateProjectV2ItemFieldValue, clearProjectV2ItemFieldValue and addProjectV2ItemById");
    };
    let input = input(q, vars, name);
    let by = Actor::bot(&app::acting_login(h));
    let scope = app::installation_account(h);
    let mut w = f.world.lock().unwrap();
    let detail = describe(&w, name, &input);
    let outcome = apply(&mut w, name, &input, scope.as_deref(), &by);
    w.native.calls.push(NativeCall { by: by.login.clone(), call: name.into(), detail: detail.clone(), refused: outcome.as_ref().err().map(|r| r.message.clone()) });
    w.writes.push(format!("GRAPHQL {name} {detail}"));
    match outcome {
        Ok((p, item, stated)) => {
            let content = w.native.projects[p].items.iter().find(|i| i.node_id == item).map(|i| i.content.clone());
            if let Some(Content::Issue(key)) = content {
                *w.writes_per_issue.entry(key).or_default() += 1;
            }
            f.emit_item(&w, p, &item, &by, &stated);
            let project = &w.native.projects[p];
            let it = project.items.iter().find(|i| i.node_id == item).expect("the item is on the project");
            let key = if name == "addProjectV2ItemById" { "item" } else { "projectV2Item" };
            data(json!({ name: { "clientMutationId": input.get("clientMutationId").cloned().unwrap_or(Value::Null), key: item_json(&w, project, it) } }))
        }
        Err(r) => error_at(json!({ name: null }), r.kind, &[name], &r.message),
    }
}
