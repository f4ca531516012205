//! The JSON GitHub sends and answers, built from the real payloads in tests/fixtures/github:
//! a fixture is the template, and only the issue, label, comment, sender and repository values
//! are replaced, so every other field is as GitHub sent it. The REST answers use the same
//! issue and comment objects (GitHub's REST shapes are the webhook ones).

use super::world::{Actor, FakeComment, FakeIssue, Key, Stated, World};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const API: &str = "https://api.github.com";
const WEB: &str = "https://github.com";

fn fixtures() -> &'static BTreeMap<&'static str, Value> {
    static ALL: OnceLock<BTreeMap<&'static str, Value>> = OnceLock::new();
    ALL.get_or_init(|| {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github");
        [
            "issues.opened.json",
            "issues.opened.github-app.json",
            "issues.labeled.json",
            "issues.labeled.github-app.json",
            "issues.unlabeled.json",
            "issues.closed.json",
            "issues.reopened.json",
            "issues.edited.title-and-body.json",
            "issue_comment.created.json",
            "issue_comment.created.with-installation.json",
            "issue_comment.edited.json",
            "issue_comment.edited.github-app.json",
            "projects_v2_item.created.json",
            "projects_v2_item.edited.status-change.json",
        ]
        .into_iter()
        .map(|name| (name, serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()))
        .collect()
    })
}

pub(super) fn template(name: &str) -> Value {
    fixtures()[name].clone()
}

/// A stable number for a name (ids GitHub would have given).
pub fn stable_id(what: &str) -> u64 {
    let h = what.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    100_000_000 + h % 900_000_000
}

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Replaces `from` by `to` in every string under `v` (a template's URLs).
fn replace_strings(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, from, to)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_strings(x, from, to)),
        _ => {}
    }
}

fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A user object in GitHub's shape (the fixtures' `sender` as the template).
pub fn user(login: &str, bot: bool) -> Value {
    let mut u = fixtures()["issues.labeled.json"]["sender"].clone();
    let old = u["login"].as_str().unwrap().to_string();
    replace_strings(&mut u, &format!("/users/{old}"), &format!("/users/{}", path_segment(login)));
    replace_strings(&mut u, &format!("{WEB}/{old}"), &if bot { format!("{WEB}/apps/{}", login.trim_end_matches("[bot]")) } else { format!("{WEB}/{login}") });
    let id = stable_id(&format!("user:{login}"));
    u["login"] = json!(login);
    u["id"] = json!(id);
    u["node_id"] = json!(format!("{}{id:X}", if bot { "BOT_" } else { "U_" }));
    u["avatar_url"] = json!(format!("https://avatars.githubusercontent.com/u/{id}?v=4"));
    u["type"] = json!(if bot { "Bot" } else { "User" });
    u
}

fn user_for(login: &str) -> Value {
    user(login, login.ends_with("[bot]"))
}

/// A label as GitHub describes it: colour and description from the repository's labels, or
/// GitHub's default for a label created by adding it to an issue.
pub fn label(w: &World, repo: &str, name: &str) -> Value {
    let (color, description) = w.repo_labels.get(repo).and_then(|m| m.get(name)).cloned().unwrap_or(("ededed".into(), String::new()));
    let id = stable_id(&format!("label:{repo}:{name}"));
    json!({
        "id": id,
        "node_id": format!("LA_{id:X}"),
        "url": format!("{API}/repos/{repo}/labels/{}", path_segment(name)),
        "name": name,
        "color": color,
        "default": false,
        "description": if description.is_empty() { Value::Null } else { json!(description) },
    })
}

/// The issue's node id (`I_…`), as GraphQL and `projects_v2_item.content_node_id` give it.
pub fn issue_node_id(repo: &str, n: u64) -> String {
    format!("I_kwDO{:X}", stable_id(&format!("issue:{repo}#{n}")))
}

/// The issue as GitHub shows it now, in the shape of `template`'s issue.
fn issue_in(mut t: Value, w: &World, key: &Key, i: &FakeIssue) -> Value {
    let (repo, n) = (key.0.as_str(), key.1);
    let old_repo = t["repository_url"].as_str().and_then(|u| u.strip_prefix(&format!("{API}/repos/"))).unwrap_or("").to_string();
    let old_n = t["number"].as_u64().unwrap_or(0);
    if !old_repo.is_empty() {
        replace_strings(&mut t, &format!("{old_repo}/issues/{old_n}"), &format!("{repo}/issues/{n}"));
        replace_strings(&mut t, &old_repo, repo);
    }
    let o = t.as_object_mut().unwrap();
    // A comment on a pull request shares the template; an issue has none of it.
    o.remove("pull_request");
    let id = stable_id(&format!("issue:{repo}#{n}"));
    let set = |o: &mut serde_json::Map<String, Value>, k: &str, v: Value| drop(o.insert(k.to_string(), v));
    set(o, "url", json!(format!("{API}/repos/{repo}/issues/{n}")));
    set(o, "repository_url", json!(format!("{API}/repos/{repo}")));
    set(o, "labels_url", json!(format!("{API}/repos/{repo}/issues/{n}/labels{{/name}}")));
    set(o, "comments_url", json!(format!("{API}/repos/{repo}/issues/{n}/comments")));
    set(o, "events_url", json!(format!("{API}/repos/{repo}/issues/{n}/events")));
    set(o, "html_url", json!(format!("{WEB}/{repo}/issues/{n}")));
    set(o, "id", json!(id));
    set(o, "node_id", json!(issue_node_id(repo, n)));
    set(o, "number", json!(n));
    set(o, "title", json!(i.title));
    set(o, "body", if i.body.is_empty() { Value::Null } else { json!(i.body) });
    set(o, "user", user_for(&i.author));
    set(o, "labels", json!(i.labels.iter().map(|l| label(w, repo, l)).collect::<Vec<_>>()));
    set(o, "state", json!(if i.open { "open" } else { "closed" }));
    set(o, "state_reason", json!(i.state_reason));
    // The fake keeps no assignees or milestones.
    set(o, "assignee", Value::Null);
    set(o, "assignees", json!([]));
    set(o, "milestone", Value::Null);
    set(o, "comments", json!(i.comments.len()));
    set(o, "created_at", json!(time(i.created_at)));
    set(o, "updated_at", json!(time(i.updated_at)));
    set(o, "closed_at", json!(i.closed_at.map(time)));
    // The organisation issue type (native.rs); GitHub's REST and webhook issues carry `type`.
    set(o, "type", i.issue_type.as_ref().map_or(Value::Null, super::native::issue_type_json));
    t
}

/// The issue as the REST API returns it.
pub fn issue(w: &World, key: &Key, i: &FakeIssue) -> Value {
    issue_in(template("issues.labeled.json")["issue"].clone(), w, key, i)
}

fn comment_in(mut t: Value, key: &Key, c: &FakeComment) -> Value {
    let (repo, n) = (key.0.as_str(), key.1);
    let old_id = t["id"].as_u64().unwrap_or(0);
    let old_repo = t["issue_url"].as_str().and_then(|u| u.strip_prefix(&format!("{API}/repos/"))).and_then(|u| u.split("/issues/").next()).unwrap_or("").to_string();
    if !old_repo.is_empty() {
        replace_strings(&mut t, &format!("comments/{old_id}"), &format!("comments/{}", c.id));
        replace_strings(&mut t, &old_repo, repo);
    }
    t["url"] = json!(format!("{API}/repos/{repo}/issues/comments/{}", c.id));
    t["html_url"] = json!(format!("{WEB}/{repo}/issues/{n}#issuecomment-{}", c.id));
    t["issue_url"] = json!(format!("{API}/repos/{repo}/issues/{n}"));
    t["id"] = json!(c.id);
    t["node_id"] = json!(format!("IC_kwDO{:X}", c.id));
    t["user"] = user_for(&c.author);
    t["created_at"] = json!(time(c.created_at));
    t["updated_at"] = json!(time(c.updated_at));
    t["body"] = json!(c.body);
    t["performed_via_github_app"] = Value::Null;
    t
}

/// A comment as the REST API returns it.
pub fn comment(key: &Key, c: &FakeComment) -> Value {
    comment_in(template("issue_comment.created.json")["comment"].clone(), key, c)
}

fn repository_in(mut t: Value, repo: &str) -> Value {
    let old = t["full_name"].as_str().unwrap_or("").to_string();
    if !old.is_empty() {
        replace_strings(&mut t, &old, repo);
    }
    let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
    let id = stable_id(&format!("repo:{repo}"));
    t["id"] = json!(id);
    t["node_id"] = json!(format!("R_kgDO{id:X}"));
    t["name"] = json!(name);
    t["full_name"] = json!(repo);
    t["owner"] = user(owner, false);
    t
}

pub fn repository_id(repo: &str) -> u64 {
    stable_id(&format!("repo:{repo}"))
}

/// What one delivery says: event, action and body.
pub struct Built {
    pub event: &'static str,
    pub action: &'static str,
    pub label: Option<String>,
    pub comment: Option<u64>,
    pub payload: Value,
}

/// The delivery GitHub sends for `stated`, with the issue as it is in `w` now.
pub fn delivery(w: &World, key: &Key, stated: &Stated, sender: &Actor, installation: Option<u64>) -> Built {
    let app = installation.is_some();
    let (event, action, name) = match stated {
        Stated::Opened => ("issues", "opened", if app { "issues.opened.github-app.json" } else { "issues.opened.json" }),
        Stated::Labeled(_) => ("issues", "labeled", if app { "issues.labeled.github-app.json" } else { "issues.labeled.json" }),
        Stated::Unlabeled(_) => ("issues", "unlabeled", "issues.unlabeled.json"),
        Stated::Closed => ("issues", "closed", "issues.closed.json"),
        Stated::Reopened => ("issues", "reopened", "issues.reopened.json"),
        Stated::Edited { .. } => ("issues", "edited", "issues.edited.title-and-body.json"),
        Stated::CommentCreated(_) => {
            ("issue_comment", "created", if app { "issue_comment.created.with-installation.json" } else { "issue_comment.created.json" })
        }
        Stated::CommentEdited { .. } => {
            ("issue_comment", "edited", if app { "issue_comment.edited.github-app.json" } else { "issue_comment.edited.json" })
        }
        // GitHub has no separate example; a deleted delivery has the created one's fields.
        Stated::CommentDeleted(_) => {
            ("issue_comment", "deleted", if app { "issue_comment.created.with-installation.json" } else { "issue_comment.created.json" })
        }
        // No recorded typed/untyped delivery was found: an issues delivery of the same kind is
        // the template, with the top-level `type` of GitHub's webhook schema in place of `label`.
        Stated::Typed(_) => ("issues", "typed", if app { "issues.labeled.github-app.json" } else { "issues.labeled.json" }),
        Stated::Untyped(_) => ("issues", "untyped", if app { "issues.labeled.github-app.json" } else { "issues.labeled.json" }),
    };
    let mut p = template(name);
    let i = &w.issues[key];
    p["action"] = json!(action);
    p["issue"] = issue_in(p["issue"].take(), w, key, i);
    p["repository"] = repository_in(p["repository"].take(), &key.0);
    p["sender"] = user(&sender.login, sender.bot);
    let o = p.as_object_mut().unwrap();
    // Only an organisation's repository names its organisation; the fake does not know which
    // accounts are organisations.
    o.remove("organization");
    match installation {
        Some(id) => drop(o.insert("installation".into(), json!({ "id": id, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{id}") }))),
        None => drop(o.remove("installation")),
    }
    let mut built = Built { event, action, label: None, comment: None, payload: Value::Null };
    match stated {
        Stated::Labeled(l) | Stated::Unlabeled(l) => {
            p["label"] = label(w, &key.0, l);
            built.label = Some(l.clone());
        }
        Stated::Edited { title_from, body_from } => {
            let mut ch = serde_json::Map::new();
            if let Some(t) = title_from {
                ch.insert("title".into(), json!({ "from": t }));
            }
            if let Some(b) = body_from {
                ch.insert("body".into(), json!({ "from": b }));
            }
            p["changes"] = Value::Object(ch);
        }
        Stated::CommentCreated(id) | Stated::CommentEdited { id, .. } => {
            let c = i.comments.iter().find(|c| c.id == *id).expect("the comment is on the issue");
            p["comment"] = comment_in(p["comment"].take(), key, c);
            built.comment = Some(*id);
            if let Stated::CommentEdited { from, .. } = stated {
                p["changes"] = json!({ "body": { "from": from } });
            }
        }
        Stated::CommentDeleted(c) => {
            p["comment"] = comment_in(p["comment"].take(), key, c);
            built.comment = Some(c.id);
        }
        Stated::Typed(t) | Stated::Untyped(t) => {
            if let Some(o) = p.as_object_mut() {
                o.remove("label");
            }
            p["type"] = super::native::issue_type_json(t);
        }
        Stated::Opened | Stated::Closed | Stated::Reopened => {}
    }
    built.payload = p;
    built
}

/// One entry of GET /repos/{o}/{r}/issues/{n}/events for `stated` (GitHub's "Issue event"
/// object: `event`, `actor`, `created_at`; `label {name, color}` for labeled and unlabeled,
/// `state_reason` for closed), or None for a change that is no issue event (opened, edited,
/// comments).
pub fn issue_event(w: &World, key: &Key, stated: &Stated, actor: &Actor, at: DateTime<Utc>, id: u64) -> Option<Value> {
    let repo = key.0.as_str();
    let event = match stated {
        Stated::Labeled(_) => "labeled",
        Stated::Unlabeled(_) => "unlabeled",
        Stated::Closed => "closed",
        Stated::Reopened => "reopened",
        _ => return None,
    };
    let mut e = json!({
        "id": id,
        "node_id": format!("{}E_lADO{id:X}", match stated { Stated::Labeled(_) => "LE", Stated::Unlabeled(_) => "UNLE", Stated::Closed => "CE", _ => "REE" }),
        "url": format!("{API}/repos/{repo}/issues/events/{id}"),
        "actor": user(&actor.login, actor.bot),
        "event": event,
        "commit_id": Value::Null,
        "commit_url": Value::Null,
        "created_at": time(at),
        "performed_via_github_app": Value::Null,
    });
    match stated {
        Stated::Labeled(l) | Stated::Unlabeled(l) => {
            let full = label(w, repo, l);
            e["label"] = json!({ "name": full["name"], "color": full["color"] });
        }
        Stated::Closed => e["state_reason"] = json!(w.issues.get(key).and_then(|i| i.state_reason.clone())),
        _ => {}
    }
    Some(e)
}
