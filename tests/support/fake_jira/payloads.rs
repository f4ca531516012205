//! Jira's webhook shapes, built from the real deliveries in tests/fixtures/jira (see SOURCES.md)
//! with this fake's values put in: the full issue of `jira:issue_*` events (from the
//! status-change fixture), the thin issue of `comment_*` events (from the comment_created
//! fixture: id, self, key and fields summary, issuetype, project, assignee, priority, status),
//! users, comments and changelog items. Webhook bodies are always REST v2: text fields and
//! comment bodies are wiki markup, whatever format they were written in.

use super::hooks::Outgoing;
use super::world::{Change, FakeJiraComment, FakeJiraIssue, Item, World};
use super::{wiki, BOT_ACCOUNT, BOT_NAME};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

fn fixture(name: &str) -> &'static Value {
    static STATUS: OnceLock<Value> = OnceLock::new();
    static COMMENT: OnceLock<Value> = OnceLock::new();
    let (cell, text) = match name {
        "status" => (&STATUS, include_str!("../../fixtures/jira/webhook.jira_issue_updated.status-change.json")),
        _ => (&COMMENT, include_str!("../../fixtures/jira/webhook.comment_created.json")),
    };
    cell.get_or_init(|| serde_json::from_str(text).expect("fixture parses"))
}

/// A user as Jira shows one in a webhook (`user`, `author`, `reporter`, ...).
pub(super) fn user(base: &str, account: &str) -> Value {
    let mut u = fixture("status")["user"].clone();
    let name = if account == BOT_ACCOUNT { BOT_NAME } else { account };
    u["self"] = json!(format!("{base}/rest/api/2/user?accountId={account}"));
    u["accountId"] = json!(account);
    u["name"] = json!(account);
    u["key"] = json!(account);
    u["displayName"] = json!(name);
    u["timeZone"] = json!("Etc/UTC");
    if let Some(o) = u.as_object_mut() {
        // Cloud hides e-mail addresses from webhooks by default.
        o.remove("emailAddress");
    }
    u
}

/// A text field or comment body as webhooks carry it: wiki markup.
pub(super) fn wiki_text(body: &Value) -> Value {
    match body {
        Value::Null => Value::Null,
        Value::String(s) => json!(s),
        adf => json!(wiki::render(adf)),
    }
}

fn issuetype(base: &str, name: &str) -> Value {
    const KNOWN: [&str; 8] = ["Bug", "Story", "Task", "Epic", "Small Change", "Enhancement", "Major Feature", "Incident"];
    let id = KNOWN.iter().position(|k| *k == name).map_or(10099, |p| 10001 + p);
    let mut t = fixture("status")["issue"]["fields"]["issuetype"].clone();
    t["self"] = json!(format!("{base}/rest/api/2/issuetype/{id}"));
    t["id"] = json!(id.to_string());
    t["name"] = json!(name);
    t["description"] = json!("");
    t
}

fn status(base: &str, w: &World, name: &str) -> Value {
    let pos = w.statuses.iter().position(|s| s == name).unwrap_or(0);
    let (cid, ckey, color, cname) = match pos {
        0 => (2, "new", "blue-gray", "To Do"),
        p if p + 1 == w.statuses.len() => (3, "done", "green", "Done"),
        _ => (4, "indeterminate", "yellow", "In Progress"),
    };
    let id = w.status_id(name);
    json!({
        "self": format!("{base}/rest/api/2/status/{id}"), "description": "", "iconUrl": format!("{base}/"),
        "name": name, "id": id,
        "statusCategory": { "self": format!("{base}/rest/api/2/statuscategory/{cid}"), "id": cid, "key": ckey, "colorName": color, "name": cname },
    })
}

fn project(base: &str, key: &str) -> Value {
    let mut p = fixture("status")["issue"]["fields"]["project"].clone();
    let project = key.split_once('-').map_or(key, |(p, _)| p);
    p["self"] = json!(format!("{base}/rest/api/2/project/10000"));
    p["key"] = json!(project);
    p["name"] = json!(project);
    p
}

/// A custom field value as Jira shows it: select options carry their id and `self`.
fn custom_value(base: &str, w: &World, field: &str, v: &Value) -> Value {
    let option = |o: &Value| -> Value {
        let Some(name) = o.get("value").and_then(Value::as_str) else { return o.clone() };
        let id = w.option_id(field, name).unwrap_or(0);
        json!({ "self": format!("{base}/rest/api/2/customFieldOption/{id}"), "value": name, "id": id.to_string() })
    };
    match v {
        Value::Array(items) => Value::Array(items.iter().map(option).collect()),
        v => option(v),
    }
}

/// The whole issue, as in `jira:issue_*` deliveries.
pub(super) fn full_issue(w: &World, i: &FakeJiraIssue) -> Value {
    let base = &w.base;
    let mut issue = fixture("status")["issue"].clone();
    issue["id"] = json!(i.id.to_string());
    issue["key"] = json!(i.key);
    issue["self"] = json!(format!("{base}/rest/api/2/issue/{}", i.id));
    let mut fields: Map<String, Value> = issue["fields"].as_object().cloned().unwrap_or_default();
    // The fixture site's own custom fields are not this site's.
    fields.retain(|k, _| !k.starts_with("customfield_"));
    let reporter = if i.reporter.is_empty() { "reporter" } else { i.reporter.as_str() };
    let set = |f: &mut Map<String, Value>, k: &str, v: Value| drop(f.insert(k.to_string(), v));
    set(&mut fields, "summary", json!(i.summary));
    set(&mut fields, "issuetype", issuetype(base, &i.issuetype));
    set(&mut fields, "status", status(base, w, &i.status));
    set(&mut fields, "project", project(base, &i.key));
    set(&mut fields, "labels", json!(i.labels));
    set(&mut fields, "description", wiki_text(i.description.as_ref().unwrap_or(&Value::Null)));
    set(&mut fields, "created", json!(i.created));
    set(&mut fields, "updated", json!(i.updated));
    set(&mut fields, "reporter", user(base, reporter));
    set(&mut fields, "creator", user(base, reporter));
    set(&mut fields, "assignee", Value::Null);
    set(&mut fields, "lastViewed", Value::Null);
    set(&mut fields, "components", json!([]));
    set(&mut fields, "watches", json!({ "self": format!("{base}/rest/api/2/issue/{}/watchers", i.key), "watchCount": 1, "isWatching": false }));
    set(&mut fields, "votes", json!({ "self": format!("{base}/rest/api/2/issue/{}/votes", i.key), "votes": 0, "hasVoted": false }));
    if let Some(p) = fields.get_mut("priority") {
        p["self"] = json!(format!("{base}/rest/api/2/priority/2"));
        p["iconUrl"] = json!(format!("{base}/images/icons/priorities/high.svg"));
    }
    // Every field on the screen is there, unset ones as null.
    for id in w.custom_fields.keys() {
        set(&mut fields, id, Value::Null);
    }
    for (id, v) in &i.fields {
        set(&mut fields, id, custom_value(base, w, id, v));
    }
    issue["fields"] = Value::Object(fields);
    issue
}

/// The thin issue of `comment_*` deliveries: exactly the fields the real one has.
pub(super) fn thin_issue(w: &World, i: &FakeJiraIssue) -> Value {
    let base = &w.base;
    let mut issue = fixture("comment")["issue"].clone();
    issue["id"] = json!(i.id.to_string());
    issue["key"] = json!(i.key);
    issue["self"] = json!(format!("{base}/rest/api/2/issue/{}", i.id));
    let f = &mut issue["fields"];
    f["summary"] = json!(i.summary);
    f["issuetype"] = issuetype(base, &i.issuetype);
    f["project"] = project(base, &i.key);
    f["assignee"] = Value::Null;
    f["priority"]["self"] = json!(format!("{base}/rest/api/2/priority/2"));
    f["priority"]["iconUrl"] = json!(format!("{base}/images/icons/priorities/high.svg"));
    f["status"] = status(base, w, &i.status);
    issue
}

/// A comment as webhooks carry it: wiki body, author and last editor, Jira times.
pub(super) fn comment(w: &World, issue_id: u64, c: &FakeJiraComment) -> Value {
    let base = &w.base;
    let mut out = fixture("comment")["comment"].clone();
    out["self"] = json!(format!("{base}/rest/api/2/issue/{issue_id}/comment/{}", c.id));
    out["id"] = json!(c.id);
    out["author"] = user(base, &c.author);
    out["updateAuthor"] = user(base, &c.update_author);
    out["body"] = wiki_text(&c.body);
    out["created"] = json!(c.created);
    out["updated"] = json!(c.updated);
    out
}

// ---------------------------------------------------------------- changelog items

/// The text Jira shows for a value: option value, plain text, a list comma-joined.
fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(items.iter().filter_map(value_string).collect::<Vec<_>>().join(",")),
        Value::Object(o) if o.contains_key("value") => value_string(&o["value"]),
        Value::Object(_) if v["type"] == "doc" => Some(wiki::render(v)),
        v => Some(v.to_string()),
    }
}

/// Select options are named by id in `from`/`to`, as in the many-fields fixture.
fn value_ids(w: &World, field: &str, v: &Value) -> Option<String> {
    let id = |o: &Value| o.get("value").and_then(Value::as_str).and_then(|name| w.option_id(field, name));
    match v {
        Value::Array(items) if items.iter().any(|o| id(o).is_some()) => {
            Some(format!("[{}]", items.iter().filter_map(id).map(|n| n.to_string()).collect::<Vec<_>>().join(", ")))
        }
        v => id(v).map(|n| n.to_string()),
    }
}

fn custom_item(w: &World, id: &str, before: Option<&Value>, after: Option<&Value>) -> Item {
    let null = Value::Null;
    let (b, a) = (before.unwrap_or(&null), after.unwrap_or(&null));
    Item {
        field: w.custom_fields.get(id).cloned().unwrap_or_else(|| id.to_string()),
        fieldtype: "custom",
        field_id: id.to_string(),
        from: value_ids(w, id, b),
        from_string: value_string(b),
        to: value_ids(w, id, a),
        to_string: value_string(a),
    }
}

fn jira_item(field: &str, from: Option<String>, to: Option<String>) -> Item {
    Item { field: field.into(), fieldtype: "jira", field_id: field.into(), from: None, from_string: from, to: None, to_string: to }
}

/// Labels as the changelog writes them: sorted, space-separated.
fn labels_string(labels: &[String]) -> Option<String> {
    let mut l = labels.to_vec();
    l.sort();
    (!l.is_empty()).then(|| l.join(" "))
}

/// One item per field that changed between two versions of an issue.
pub(super) fn edit_items(w: &World, before: &FakeJiraIssue, after: &FakeJiraIssue) -> Vec<Item> {
    let mut items = Vec::new();
    if before.summary != after.summary {
        items.push(jira_item("summary", Some(before.summary.clone()), Some(after.summary.clone())));
    }
    if before.description != after.description {
        let text = |d: &Option<Value>| d.as_ref().and_then(value_string);
        items.push(jira_item("description", text(&before.description), text(&after.description)));
    }
    let set = |l: &[String]| l.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    if set(&before.labels) != set(&after.labels) {
        items.push(jira_item("labels", labels_string(&before.labels), labels_string(&after.labels)));
    }
    let ids: std::collections::BTreeSet<&String> = before.fields.keys().chain(after.fields.keys()).collect();
    for id in ids {
        let (b, a) = (before.fields.get(id), after.fields.get(id));
        if b != a {
            items.push(custom_item(w, id, b, a));
        }
    }
    items
}

/// The changelog Jira Cloud attaches to `jira:issue_created` (as in the issue_created fixtures).
pub(super) fn creation_items(w: &World, i: &FakeJiraIssue) -> Vec<Item> {
    let mut items = Vec::new();
    if let Some(d) = i.description.as_ref().and_then(value_string) {
        items.push(jira_item("description", None, Some(d)));
    }
    if let Some(l) = labels_string(&i.labels) {
        items.push(jira_item("labels", None, Some(l)));
    }
    for (id, v) in &i.fields {
        items.push(custom_item(w, id, None, Some(v)));
    }
    let reporter = Item { to: Some(i.reporter.clone()), ..jira_item("reporter", None, Some(i.reporter.clone())) };
    let status = Item { field: "Status".into(), to: Some(w.status_id(&i.status)), ..jira_item("status", None, Some(i.status.clone())) };
    items.extend([reporter, status, jira_item("summary", None, Some(i.summary.clone()))]);
    items
}

// ---------------------------------------------------------------- deliveries

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON")
}

/// The deliveries Jira sends for one change, in the order it sends them.
pub(super) fn deliveries(w: &World, actor: &str, at: DateTime<Utc>, change: &Change) -> Vec<Outgoing> {
    let timestamp = at.timestamp_millis();
    let base = &w.base;
    let issue_event = |key: &str, kind: &str, extra: Map<String, Value>| -> Outgoing {
        let i = &w.issues[key];
        let mut v = json!({
            "timestamp": timestamp, "webhookEvent": if kind == "issue_created" { "jira:issue_created" } else { "jira:issue_updated" },
            "issue_event_type_name": kind, "user": user(base, actor), "issue": full_issue(w, i),
        });
        v.as_object_mut().expect("object").extend(extra);
        Outgoing::new(&v, key, actor, body(&v))
    };
    let comment_event = |key: &str, event: &str, c: &FakeJiraComment| -> Outgoing {
        let i = &w.issues[key];
        let v = json!({ "timestamp": timestamp, "webhookEvent": event, "comment": comment(w, i.id, c), "issue": thin_issue(w, i) });
        Outgoing::new(&v, key, actor, body(&v))
    };
    let changelog = |id: u64, items: &[Item]| -> Map<String, Value> {
        let items: Vec<Value> = items.iter().map(Item::json).collect();
        Map::from_iter([("changelog".to_string(), json!({ "id": id.to_string(), "items": items }))])
    };
    let pair = |key: &str, event: &str, kind: &str, c: &FakeJiraComment| -> Vec<Outgoing> {
        let comment_json = Map::from_iter([("comment".to_string(), comment(w, w.issues[key].id, c))]);
        let (first, second) = (comment_event(key, event, c), issue_event(key, kind, comment_json));
        if w.hooks.issue_event_first() {
            vec![second, first]
        } else {
            vec![first, second]
        }
    };
    match change {
        Change::Created { key, changelog_id, items } => vec![issue_event(key, "issue_created", changelog(*changelog_id, items))],
        Change::Updated { key, kind, changelog_id, items } => vec![issue_event(key, kind, changelog(*changelog_id, items))],
        Change::Commented { key, comment } => pair(key, "comment_created", "issue_commented", comment),
        Change::CommentEdited { key, comment } => pair(key, "comment_updated", "issue_comment_edited", comment),
        Change::CommentDeleted { key, comment } => pair(key, "comment_deleted", "issue_comment_deleted", comment),
    }
}
