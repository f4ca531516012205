//! The fake's state (issues, workflow, custom fields, comments, clock) and the changes that move
//! it. Every change made through the REST API or by a test person goes through one of the
//! `World` methods at the bottom, which validates it as Jira does, applies it, records it in the
//! issue's changelog and hands it to the hooks: so a person and rollgate cause the very same
//! deliveries, and those leave in the order the changes happened (one lock for both).
//! Set-up helpers on `FakeJira` change the state directly and send nothing.

use super::hooks::Hooks;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

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
    /// Account id of the reporter (seeded issues: "reporter").
    pub reporter: String,
    pub created: String,
    pub updated: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeJiraComment {
    pub id: String,
    /// A string (v2 write) or an ADF document (v3 write): whatever was sent.
    pub body: Value,
    pub author: String,
    /// Who last edited it (the author until someone edits it).
    pub update_author: String,
    pub properties: Vec<(String, Value)>,
    pub created: String,
    pub updated: String,
}

/// The world clock: real time unless a test sets it. Every reading is at least a millisecond
/// after the previous one, so `updated` moves on every change, as it does in Jira.
#[derive(Default)]
pub(super) struct Clock {
    fixed: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Clock {
    pub(super) fn tick(&mut self) -> DateTime<Utc> {
        // Jira's times have millisecond resolution: two changes within one millisecond must
        // still be one apart, so the comparison is made on what Jira would show.
        let mut t = self.fixed.unwrap_or_else(Utc::now);
        t -= chrono::Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos() % 1_000_000));
        if let Some(last) = self.last.filter(|l| t <= *l) {
            t = last + chrono::Duration::milliseconds(1);
        }
        self.last = Some(t);
        t
    }

    pub(super) fn set(&mut self, t: DateTime<Utc>) {
        self.fixed = Some(t);
        self.last = None;
    }

    pub(super) fn advance(&mut self, by: chrono::Duration) {
        self.fixed = Some(self.fixed.unwrap_or_else(Utc::now) + by);
    }

    pub(super) fn peek(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }
}

/// Jira's own time format: `2019-02-15T19:01:52.971-0800` (the fake's zone is UTC).
pub fn jira_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

/// One changelog item, as Jira puts it in `changelog.items` (webhooks and the changelog API).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Item {
    pub field: String,
    pub fieldtype: &'static str,
    pub field_id: String,
    pub from: Option<String>,
    pub from_string: Option<String>,
    pub to: Option<String>,
    pub to_string: Option<String>,
}

impl Item {
    pub(super) fn json(&self) -> Value {
        json!({
            "field": self.field, "fieldtype": self.fieldtype, "fieldId": self.field_id,
            "from": self.from, "fromString": self.from_string, "to": self.to, "toString": self.to_string,
        })
    }
}

/// One write request, as `FakeJira::write_log` shows it.
#[derive(Debug, Clone)]
pub struct Write {
    pub who: String,
    /// The issue the path names (key or id, as sent).
    pub issue: Option<String>,
    /// `PUT issue PROJ-1`, `POST comment PROJ-1`, ...
    pub what: String,
    pub body: Value,
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.to_string().chars().take(160).collect();
        write!(f, "{} by {} {body}", self.what, self.who)
    }
}

/// What happened, for the hooks to turn into deliveries.
#[derive(Debug, Clone)]
pub(super) enum Change {
    Created { key: String, changelog_id: u64, items: Vec<Item> },
    /// `kind` is Jira's `issue_event_type_name`: `issue_updated` for an edit, `issue_generic`
    /// for a transition.
    Updated { key: String, kind: &'static str, changelog_id: u64, items: Vec<Item> },
    Commented { key: String, comment: FakeJiraComment },
    CommentEdited { key: String, comment: FakeJiraComment },
    CommentDeleted { key: String, comment: FakeJiraComment },
}

/// Why Jira refuses a write; the REST routes turn it into Jira's error bodies.
#[derive(Debug)]
pub(super) enum Refusal {
    NotFound(String),
    Invalid(String),
    Fields(Map<String, Value>),
}

/// An edit operation from `fields` (set) or `update` (set / add / remove).
pub(super) type Op = (String, String, Value);

#[derive(Default)]
pub(super) struct World {
    /// The fake's root URL, for `self` links in deliveries.
    pub base: String,
    pub issues: BTreeMap<String, FakeJiraIssue>,
    /// Changelog entries per issue key (backfill reads them), as Jira returns them.
    pub changelogs: BTreeMap<String, Vec<Value>>,
    /// Status names in workflow order; transition id and status id derive from the position.
    pub statuses: Vec<String>,
    /// (from, to) edges removed from the otherwise complete workflow graph.
    pub forbidden: BTreeSet<(String, String)>,
    /// Registered custom fields: id → name.
    pub custom_fields: BTreeMap<String, String>,
    /// Select-list option ids, handed out the first time a value is seen: (field, value) → id.
    pub options: BTreeMap<(String, String), u64>,
    pub next_id: u64,
    pub next_comment: u64,
    pub next_changelog: u64,
    pub clock: Clock,
    pub writes: Vec<String>,
    /// The same writes with who made them and what they sent.
    pub write_log: Vec<Write>,
    /// Write requests per issue key (REST only), however they named the issue.
    pub writes_per_issue: BTreeMap<String, usize>,
    pub requests: u64,
    pub faults: std::collections::VecDeque<super::faults::Fault>,
    /// Extra tokens and the account each signs in as (rollgate's token is the bot).
    pub tokens: BTreeMap<String, String>,
    pub hooks: Hooks,
}

impl World {
    pub(super) fn now(&mut self) -> (DateTime<Utc>, String) {
        let t = self.clock.tick();
        (t, jira_time(t))
    }

    /// Jira accepts the issue key or its numeric id wherever `{issueIdOrKey}` appears.
    pub(super) fn key_of(&self, id_or_key: &str) -> Option<String> {
        if self.issues.contains_key(id_or_key) {
            return Some(id_or_key.to_string());
        }
        self.issues.values().find(|i| i.id.to_string() == id_or_key).map(|i| i.key.clone())
    }

    pub(super) fn status_id(&self, name: &str) -> String {
        // Status ids are deliberately not the transition ids: a client must not confuse them.
        self.statuses.iter().position(|s| s == name).map_or("0".into(), |p| (10001 + p).to_string())
    }

    /// (transition id, target status) available from `from`.
    pub(super) fn transitions_from(&self, from: &str) -> Vec<(String, String)> {
        let edge_ok = |to: &String| to != from && !self.forbidden.contains(&(from.to_string(), to.clone()));
        self.statuses.iter().enumerate().filter(|(_, to)| edge_ok(to)).map(|(i, to)| ((i + 1).to_string(), to.clone())).collect()
    }

    pub(super) fn settable(&self, id: &str) -> bool {
        matches!(id, "summary" | "labels" | "description") || self.custom_fields.contains_key(id)
    }

    pub(super) fn assert_status(&self, status: &str) {
        assert!(self.statuses.iter().any(|s| s == status), "status {status:?} is not in the fake workflow {:?}", self.statuses);
    }

    pub(super) fn comment_issue(&self, id: &str) -> Option<String> {
        self.issues.values().find(|i| i.comments.iter().any(|c| c.id == id)).map(|i| i.key.clone())
    }

    /// Hands out option ids for select values, so changelogs can name them as Jira does.
    pub(super) fn remember_options(&mut self, field: &str, value: &Value) {
        let values: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        for v in values {
            if let Some(name) = v.get("value").and_then(Value::as_str) {
                let next = 10100 + self.options.len() as u64;
                self.options.entry((field.to_string(), name.to_string())).or_insert(next);
            }
        }
    }

    pub(super) fn option_id(&self, field: &str, value: &str) -> Option<u64> {
        self.options.get(&(field.to_string(), value.to_string())).copied()
    }

    /// Records the change in the issue's changelog and queues its deliveries.
    fn emit(&mut self, actor: &str, at: DateTime<Utc>, change: Change) {
        if let Change::Updated { key, changelog_id, items, .. } = &change {
            let entry = json!({
                "id": changelog_id.to_string(),
                "author": super::payloads::user(&self.base, actor),
                "created": jira_time(at),
                "items": items.iter().map(Item::json).collect::<Vec<_>>(),
            });
            self.changelogs.entry(key.clone()).or_default().push(entry);
        }
        if self.hooks.enabled() {
            let out = super::payloads::deliveries(self, actor, at, &change);
            self.hooks.push(out);
        }
    }

    fn next_changelog(&mut self) -> u64 {
        self.next_changelog += 1;
        10300 + self.next_changelog
    }

    // ------------------------------------------------------------------ changes

    /// New issues start in the workflow's first status and get the project's next number.
    /// `v` is the REST version the body came in ("2" or "3"); a person's write passes None.
    pub(super) fn create_issue(&mut self, actor: &str, v: Option<&str>, fields: &Value) -> Result<(String, u64), Refusal> {
        let project = fields["project"]["key"].as_str().unwrap_or("").to_string();
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
        if let Some(v) = v.filter(|_| !fields["description"].is_null()) {
            if !super::rest::body_fits(v, &fields["description"]) {
                errors.insert("description".into(), "Operation value must be a string (v2) or an Atlassian Document (v3)".into());
            }
        }
        let custom: Vec<(String, Value)> =
            fields.as_object().into_iter().flatten().filter(|(id, _)| id.starts_with("customfield_")).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (id, _) in custom.iter().filter(|(id, _)| !self.settable(id)) {
            errors.insert(id.clone(), format!("Field '{id}' cannot be set. It is not on the appropriate screen, or unknown.").into());
        }
        if !errors.is_empty() {
            return Err(Refusal::Fields(errors));
        }
        let prefix = format!("{project}-");
        let n = self.issues.keys().filter_map(|k| k.strip_prefix(&prefix)?.parse::<u64>().ok()).max().unwrap_or(0) + 1;
        let key = format!("{project}-{n}");
        self.next_id += 1;
        let (at, now) = self.now();
        for (id, value) in &custom {
            self.remember_options(id, value);
        }
        let issue = FakeJiraIssue {
            id: self.next_id,
            key: key.clone(),
            summary: fields["summary"].as_str().unwrap_or_default().into(),
            issuetype: fields["issuetype"]["name"].as_str().unwrap_or_default().into(),
            status: self.statuses.first().cloned().unwrap_or_default(),
            labels: fields["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect(),
            description: Some(fields["description"].clone()).filter(|d| !d.is_null()),
            fields: custom.into_iter().filter(|(_, v)| !v.is_null()).collect(),
            comments: Vec::new(),
            reporter: actor.to_string(),
            created: now.clone(),
            updated: now,
        };
        let items = super::payloads::creation_items(self, &issue);
        let id = issue.id;
        self.issues.insert(key.clone(), issue);
        let changelog_id = self.next_changelog();
        self.emit(actor, at, Change::Created { key: key.clone(), changelog_id, items });
        Ok((key, id))
    }

    /// `ops` set values outright or apply operations (labels: add/remove/set, any other field:
    /// set). Like Jira, one bad field refuses the whole edit, and an edit that changes nothing
    /// is stored as nothing: no changelog, `updated` unchanged, no event (Jira's
    /// DefaultIssueUpdater fires only "if something has changed").
    pub(super) fn edit_issue(&mut self, actor: &str, key: &str, ops: Vec<Op>) -> Result<(), Refusal> {
        let Some(k) = self.key_of(key) else { return Err(not_found()) };
        let mut errors = Map::new();
        for (id, verb, value) in &ops {
            if !self.settable(id) {
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
            return Err(Refusal::Fields(errors));
        }
        for (id, _, value) in &ops {
            if id.starts_with("customfield_") {
                self.remember_options(id, value);
            }
        }
        let before = self.issues[&k].clone();
        let i = self.issues.get_mut(&k).expect("issue");
        for (id, verb, value) in ops {
            match (id.as_str(), verb.as_str()) {
                ("summary", _) => i.summary = value.as_str().unwrap_or("").into(),
                ("description", _) => i.description = Some(value).filter(|v| !v.is_null()),
                ("labels", "set") => {
                    i.labels = value.as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect()
                }
                ("labels", "add") => {
                    let l = value.as_str().unwrap_or_default().to_string();
                    if !i.labels.contains(&l) {
                        i.labels.push(l);
                    }
                }
                ("labels", _) => i.labels.retain(|l| value.as_str() != Some(l.as_str())),
                (_, _) if value.is_null() => drop(i.fields.remove(&id)),
                (_, _) => drop(i.fields.insert(id, value)),
            }
        }
        let after = i.clone();
        let items = super::payloads::edit_items(self, &before, &after);
        if items.is_empty() {
            return Ok(());
        }
        let (at, now) = self.now();
        self.issues.get_mut(&k).expect("issue").updated = now;
        let changelog_id = self.next_changelog();
        self.emit(actor, at, Change::Updated { key: k, kind: "issue_updated", changelog_id, items });
        Ok(())
    }

    /// A workflow transition by its id, as POST .../transitions does it.
    pub(super) fn transition(&mut self, actor: &str, key: &str, id: &str) -> Result<(), Refusal> {
        let Some(k) = self.key_of(key) else { return Err(not_found()) };
        let from = self.issues[&k].status.clone();
        let Some(to) = self.transitions_from(&from).into_iter().find(|(tid, _)| tid == id).map(|(_, to)| to) else {
            return Err(Refusal::Invalid(format!("Transition id '{id}' is not valid for this issue.")));
        };
        let (at, now) = self.now();
        let i = self.issues.get_mut(&k).expect("issue");
        i.status = to.clone();
        i.updated = now;
        let item = Item {
            field: "status".into(),
            fieldtype: "jira",
            field_id: "status".into(),
            from: Some(self.status_id(&from)),
            from_string: Some(from),
            to: Some(self.status_id(&to)),
            to_string: Some(to),
        };
        let changelog_id = self.next_changelog();
        self.emit(actor, at, Change::Updated { key: k, kind: "issue_generic", changelog_id, items: vec![item] });
        Ok(())
    }

    pub(super) fn add_comment(&mut self, actor: &str, key: &str, body: Value, properties: Vec<(String, Value)>) -> Result<FakeJiraComment, Refusal> {
        let Some(k) = self.key_of(key) else { return Err(not_found()) };
        self.next_comment += 1;
        let (at, now) = self.now();
        let c = FakeJiraComment {
            id: self.next_comment.to_string(),
            body,
            author: actor.into(),
            update_author: actor.into(),
            properties,
            created: now.clone(),
            updated: now.clone(),
        };
        let i = self.issues.get_mut(&k).expect("issue");
        i.updated = now;
        i.comments.push(c.clone());
        self.emit(actor, at, Change::Commented { key: k, comment: c.clone() });
        Ok(c)
    }

    /// Edits a comment's body; its properties are kept. `key`, when given, must hold it.
    pub(super) fn edit_comment(&mut self, actor: &str, key: Option<&str>, id: &str, body: Value) -> Result<FakeJiraComment, Refusal> {
        let k = match key {
            Some(key) => self.key_of(key).ok_or_else(not_found)?,
            None => self.comment_issue(id).ok_or_else(|| no_comment(id))?,
        };
        let (at, now) = self.now();
        let i = self.issues.get_mut(&k).expect("issue");
        let Some(c) = i.comments.iter_mut().find(|c| c.id == id) else { return Err(no_comment(id)) };
        c.body = body;
        c.updated = now.clone();
        c.update_author = actor.into();
        let c = c.clone();
        i.updated = now;
        self.emit(actor, at, Change::CommentEdited { key: k, comment: c.clone() });
        Ok(c)
    }

    pub(super) fn delete_comment(&mut self, actor: &str, key: Option<&str>, id: &str) -> Result<(), Refusal> {
        let k = match key {
            Some(key) => self.key_of(key).ok_or_else(not_found)?,
            None => self.comment_issue(id).ok_or_else(|| no_comment(id))?,
        };
        let (at, now) = self.now();
        let i = self.issues.get_mut(&k).expect("issue");
        let Some(pos) = i.comments.iter().position(|c| c.id == id) else { return Err(no_comment(id)) };
        let c = i.comments.remove(pos);
        i.updated = now;
        self.emit(actor, at, Change::CommentDeleted { key: k, comment: c });
        Ok(())
    }
}

fn not_found() -> Refusal {
    Refusal::NotFound("Issue does not exist or you do not have permission to see it.".into())
}

fn no_comment(id: &str) -> Refusal {
    Refusal::NotFound(format!("Can not find a comment for the id: {id}."))
}
