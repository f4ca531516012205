//! Test people acting in Jira. Each action goes through the same `World` change as the REST
//! API, so it causes the deliveries Jira sends for it, with the person as `user` / author /
//! `updateAuthor`. A refused action panics with Jira's reason: in a test it is a mistake.
//!
//! Comments are what a person types: wiki text on Data Center (`"/rollout 3"`), or an ADF
//! document on Cloud (`adf("/rollout 3")`: one paragraph per line, as Jira's editor makes).
//! Ticking a box in rollgate's checklist is an edit of that comment: on Cloud the task item's
//! `state` flips (TODO ↔ DONE) in the ADF; on Data Center, where the wiki has no checkbox and
//! rollgate writes `* \[ ] Release note`, the person edits the brackets.

use super::world::{Refusal, World};
use super::FakeJira;
use serde_json::{json, Value};

pub struct Person {
    fake: FakeJira,
    account: String,
}

/// An ADF document as Jira's editor makes it from typed text: one paragraph per line.
pub fn adf(text: &str) -> Value {
    let paragraphs: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json!({ "type": "paragraph", "content": [{ "type": "text", "text": l }] }))
        .collect();
    json!({ "type": "doc", "version": 1, "content": paragraphs })
}

impl Person {
    pub(super) fn new(fake: FakeJira, account: &str) -> Person {
        Person { fake, account: account.to_string() }
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    fn act<T>(&self, what: &str, f: impl FnOnce(&mut World, &str) -> Result<T, Refusal>) -> T {
        let mut w = self.fake.world.lock().unwrap();
        match f(&mut w, &self.account) {
            Ok(t) => t,
            Err(r) => panic!("Jira refused {} to {what}: {r:?}", self.account),
        }
    }

    /// Creates an issue in `project`; returns its key.
    pub fn create_issue(&self, project: &str, issuetype: &str, summary: &str) -> String {
        self.create_issue_with(json!({ "project": { "key": project }, "issuetype": { "name": issuetype }, "summary": summary }))
    }

    /// Creates an issue from a REST-style `fields` object (labels, custom fields, ...).
    pub fn create_issue_with(&self, fields: Value) -> String {
        self.act("create an issue", |w, me| w.create_issue(me, None, &fields)).0
    }

    /// Moves the issue along the workflow to `status`, as dragging the card does.
    pub fn transition(&self, key: &str, status: &str) {
        self.act(&format!("move {key} to {status}"), |w, me| {
            let from = w.issues.get(key).map(|i| i.status.clone()).unwrap_or_default();
            let id = w.transitions_from(&from).into_iter().find(|(_, to)| to == status).map(|(id, _)| id);
            let id = id.ok_or_else(|| Refusal::Invalid(format!("no transition from {from:?} to {status:?}")))?;
            w.transition(me, key, &id)
        })
    }

    /// Sets a field in the issue view (null clears it): a custom field id, "summary" or
    /// "description".
    pub fn set_field(&self, key: &str, field: &str, value: Value) {
        self.act(&format!("set {field} on {key}"), |w, me| w.edit_issue(me, key, vec![(field.into(), "set".into(), value)]))
    }

    pub fn add_label(&self, key: &str, label: &str) {
        self.act(&format!("label {key}"), |w, me| w.edit_issue(me, key, vec![("labels".into(), "add".into(), json!(label))]))
    }

    pub fn remove_label(&self, key: &str, label: &str) {
        self.act(&format!("unlabel {key}"), |w, me| w.edit_issue(me, key, vec![("labels".into(), "remove".into(), json!(label))]))
    }

    /// Comments: a string is wiki text (Data Center), an ADF document is Cloud's. Returns the
    /// comment's id.
    pub fn comment(&self, key: &str, body: impl Into<Value>) -> String {
        let body = body.into();
        self.act(&format!("comment on {key}"), |w, me| w.add_comment(me, key, body, vec![])).id
    }

    pub fn edit_comment(&self, id: &str, body: impl Into<Value>) {
        let body = body.into();
        self.act(&format!("edit comment {id}"), |w, me| w.edit_comment(me, None, id, body));
    }

    pub fn delete_comment(&self, id: &str) {
        self.act(&format!("delete comment {id}"), |w, me| w.delete_comment(me, None, id));
    }

    /// Ticks the box whose line mentions `item` (e.g. "Release note") in a checklist comment.
    pub fn tick(&self, comment_id: &str, item: &str) {
        self.set_box(comment_id, item, true)
    }

    pub fn untick(&self, comment_id: &str, item: &str) {
        self.set_box(comment_id, item, false)
    }

    fn set_box(&self, id: &str, item: &str, done: bool) {
        self.act(&format!("tick {item:?} in comment {id}"), |w, me| {
            let c = w.issues.values().flat_map(|i| &i.comments).find(|c| c.id == id);
            let body = c.map(|c| c.body.clone()).ok_or_else(|| Refusal::NotFound(format!("no comment {id}")))?;
            let changed = match &body {
                Value::String(wiki) => toggle_wiki(wiki, item, done).map(Value::String),
                adf => toggle_adf(adf, item, done),
            };
            let changed = changed.ok_or_else(|| Refusal::Invalid(format!("no box mentioning {item:?} in {body}")))?;
            w.edit_comment(me, None, id, changed).map(drop)
        })
    }
}

fn plain(node: &Value) -> String {
    match node["text"].as_str() {
        Some(t) => t.to_string(),
        None => node["content"].as_array().into_iter().flatten().map(plain).collect(),
    }
}

/// Flips the first task item whose text mentions `item`.
fn toggle_adf(doc: &Value, item: &str, done: bool) -> Option<Value> {
    let mut doc = doc.clone();
    fn walk(node: &mut Value, item: &str, done: bool) -> bool {
        if node["type"] == "taskItem" && plain(node).contains(item) {
            node["attrs"]["state"] = json!(if done { "DONE" } else { "TODO" });
            return true;
        }
        node.get_mut("content").and_then(Value::as_array_mut).is_some_and(|kids| kids.iter_mut().any(|k| walk(k, item, done)))
    }
    walk(&mut doc, item, done).then_some(doc)
}

/// Rewrites the box on the first line that mentions `item`: `\[ ]` ↔ `\[x]` (or unescaped).
fn toggle_wiki(wiki: &str, item: &str, done: bool) -> Option<String> {
    let (from, to) = if done { (["\\[ ]", "[ ]"], ["\\[x]", "[x]"]) } else { (["\\[x]", "[x]"], ["\\[ ]", "[ ]"]) };
    let mut found = false;
    let lines: Vec<String> = wiki
        .split('\n')
        .map(|line| {
            if found || !line.contains(item) {
                return line.to_string();
            }
            for (f, t) in from.iter().zip(to) {
                if line.contains(f) {
                    found = true;
                    return line.replacen(f, t, 1);
                }
            }
            line.to_string()
        })
        .collect();
    found.then(|| lines.join("\n"))
}
