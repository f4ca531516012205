//! GitHub's native issue fields, as the "[native fields]" work needs them: an organisation's
//! **issue types** (REST) and a **Projects v2** subset (its GraphQL is graphql_projects.rs).
//! Every change goes through a `World` method here and is announced as GitHub announces it
//! (hooks.rs), with whoever made it as `sender`; set-up helpers (`define_issue_types`,
//! `add_project`, `put_on_project`, ...) change the world silently.
//!
//! Faithful to GitHub (checked against its documentation, schemas and real payloads, see
//! tests/fixtures/github/SOURCES.md and tests/fixtures/github-api/SOURCES.md):
//! - the issue-type object (`id`, `node_id` `IT_…`, `name`, `description`, `color`,
//!   `created_at`, `updated_at`, `is_enabled`), `GET /orgs/{org}/issue-types`, `type` in every
//!   REST and webhook issue (null when none); `PATCH .../issues/{n}` and `POST .../issues` take
//!   `"type": "<name>"` (matched without regard to case, as GitHub's own example does) or null;
//!   an unknown or disabled name is a 422 and nothing of the request is applied;
//! - `issues.typed` (top-level `type` = the new type) and `issues.untyped` (top-level `type` =
//!   the old one), each with the issue as it is right after the change;
//! - `projects_v2_item.created` / `.edited` as an organisation webhook sends them: node ids only
//!   (`project_node_id`, `content_node_id`, `content_type`), no repository and no issue number,
//!   `organization` set, `changes.field_value` with `field_node_id`, `field_type`, `field_name`,
//!   `project_number`, `from` and `to` (option objects `{id, name, color, description}` for a
//!   single-select field, strings for text and date, null for "no value"); built from the real
//!   fixtures `projects_v2_item.created.json` and `projects_v2_item.edited.status-change.json`;
//! - node ids in GitHub's prefixes: `PVT_` project, `PVTSSF_` single-select field, `PVTF_`
//!   other fields, `PVTI_` item, `PVTFSV_` single-select value, `DI_` draft issue, `I_` issue
//!   (the date and text values' prefixes, `PVTFDV_` / `PVTFTV_`, are the fake's guess);
//! - a project always has the built-in Title field (`dataType: TITLE`), and every item a Title
//!   value, as on GitHub; a field set to the value it has already states nothing.
//!
//! Simplified (or not verified against a recorded answer):
//! - changing a type from one to another sends one `issues.typed` with the new type (no
//!   `untyped` first) — GitHub documents the two actions but no recorded change of type;
//! - the 422 body for an unknown type is GitHub's generic `Validation Failed` shape;
//! - timeline events for types and projects (`issue_type_added`, `added_to_project_v2`, ...)
//!   are not recorded; archived items, iteration/number fields, pull requests as content,
//!   user-owned projects and the other built-in fields (Assignees, Labels, ...) are not modelled;
//! - a date value is kept and delivered as `YYYY-MM-DD` (the GraphQL `Date` form) — the exact
//!   form of a date in a real `changes.field_value` was not found in any recorded payload;
//! - `projects_v2_item` deliveries go to the same URL as the repository ones (one receiver
//!   stands for the repository and the organisation webhook); like every delivery the fake
//!   sends, a failed one is recorded and not retried (GitHub does not redeliver by itself).

use super::people::Person;
use super::world::{Actor, Key, Missing, Stated, World};
use super::{payloads, FakeGithub};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One of an organisation's issue types.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueType {
    pub id: u64,
    pub node_id: String,
    pub name: String,
    pub description: String,
    /// GitHub's colour names: gray, blue, green, yellow, orange, red, pink, purple.
    pub color: String,
    pub is_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A single-select field's option (`ProjectV2SingleSelectFieldOption`).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectOption {
    /// 8 hex digits, as GitHub's option ids are.
    pub id: String,
    pub name: String,
    /// GRAY, BLUE, GREEN, YELLOW, ORANGE, RED, PINK, PURPLE.
    pub color: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// The built-in Title field every project has (not settable through the API).
    Title,
    SingleSelect(Vec<SelectOption>),
    Date,
    Text,
}

impl FieldKind {
    /// `ProjectV2FieldType` in GraphQL.
    pub fn data_type(&self) -> &'static str {
        match self {
            FieldKind::Title => "TITLE",
            FieldKind::SingleSelect(_) => "SINGLE_SELECT",
            FieldKind::Date => "DATE",
            FieldKind::Text => "TEXT",
        }
    }

    /// `changes.field_value.field_type` in a delivery.
    pub fn hook_type(&self) -> &'static str {
        match self {
            FieldKind::Title => "title",
            FieldKind::SingleSelect(_) => "single_select",
            FieldKind::Date => "date",
            FieldKind::Text => "text",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectField {
    pub id: u64,
    pub node_id: String,
    pub name: String,
    pub kind: FieldKind,
}

/// What a field is defined as, for `add_project`.
pub struct FieldDef {
    name: String,
    kind: FieldKind,
}

impl FieldDef {
    /// A single-select field with these options (colours cycle through GitHub's palette).
    pub fn single_select(name: &str, options: &[&str]) -> FieldDef {
        const COLORS: [&str; 8] = ["GRAY", "BLUE", "GREEN", "YELLOW", "ORANGE", "RED", "PINK", "PURPLE"];
        let options = options
            .iter()
            .enumerate()
            .map(|(i, o)| SelectOption { id: short_hex(&format!("option:{name}:{o}")), name: o.to_string(), color: COLORS[i % 8].into(), description: String::new() })
            .collect();
        FieldDef { name: name.into(), kind: FieldKind::SingleSelect(options) }
    }

    pub fn date(name: &str) -> FieldDef {
        FieldDef { name: name.into(), kind: FieldKind::Date }
    }

    pub fn text(name: &str) -> FieldDef {
        FieldDef { name: name.into(), kind: FieldKind::Text }
    }
}

/// What a project item is.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Issue(Key),
    Draft { node_id: String, title: String },
}

/// A field's value on an item.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// The option's id.
    Option(String),
    /// `YYYY-MM-DD`.
    Date(String),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct ProjectItem {
    pub id: u64,
    pub node_id: String,
    pub content: Content,
    /// Field node id -> value (fields without a value are absent).
    pub values: BTreeMap<String, FieldValue>,
    pub creator: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: u64,
    pub node_id: String,
    pub org: String,
    pub number: u64,
    pub title: String,
    pub fields: Vec<ProjectField>,
    /// In the order added (GitHub's default `POSITION` order for a board nobody reordered).
    pub items: Vec<ProjectItem>,
}

impl Project {
    pub fn field(&self, node_id: &str) -> Option<&ProjectField> {
        self.fields.iter().find(|f| f.node_id == node_id)
    }

    pub fn field_named(&self, name: &str) -> Option<&ProjectField> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn item_of(&self, key: &Key) -> Option<&ProjectItem> {
        self.items.iter().find(|i| i.content == Content::Issue(key.clone()))
    }
}

/// A project as tests name it: its owner and number, and its node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRef {
    pub org: String,
    pub number: u64,
    pub node_id: String,
}

/// One write to issue types or projects through the API (REST or GraphQL), as made: who
/// called, which call (`PATCH issue type`, `updateProjectV2ItemFieldValue`,
/// `clearProjectV2ItemFieldValue`, `addProjectV2ItemById`), what on, and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeCall {
    pub by: String,
    pub call: String,
    /// `Codertocat/Hello-World#1 Bug`, `PVTI_… Status=In dev`, `PVTI_… Due=(cleared)`.
    pub detail: String,
    /// `None` when applied (whether or not it changed anything).
    pub refused: Option<String>,
}

impl std::fmt::Display for NativeCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} {}", self.by, self.call, self.detail)?;
        if let Some(r) = &self.refused {
            write!(f, " (refused: {r})")?;
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct Native {
    /// Organisation login (lower case) -> its issue types, in the order defined.
    pub issue_types: BTreeMap<String, Vec<IssueType>>,
    pub projects: Vec<Project>,
    pub calls: Vec<NativeCall>,
}

/// A change to a project item, as a `projects_v2_item` delivery states it.
#[derive(Debug, Clone)]
pub enum ItemStated {
    Created,
    Edited { field: String, from: Option<FieldValue>, to: Option<FieldValue> },
}

/// Why a project change was refused: a GraphQL error's `type` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn not_found(id: &str) -> Refusal {
        Refusal { kind: "NOT_FOUND", message: format!("Could not resolve to a node with the global id of '{id}'") }
    }

    fn unprocessable(message: String) -> Refusal {
        Refusal { kind: "UNPROCESSABLE", message }
    }
}

/// 8 hex digits from a name (GitHub's single-select option ids look like this).
fn short_hex(what: &str) -> String {
    let h = what.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{:08x}", (h >> 16) as u32)
}

pub fn org_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// The issue-type object, as REST and webhooks show it.
pub fn issue_type_json(t: &IssueType) -> Value {
    json!({
        "id": t.id,
        "node_id": t.node_id,
        "name": t.name,
        "description": t.description,
        "color": t.color,
        "created_at": payloads::time(t.created_at),
        "updated_at": payloads::time(t.updated_at),
        "is_enabled": t.is_enabled,
    })
}

/// GitHub's 422 for a `type` the organisation does not have.
pub fn unknown_type(name: &str) -> Response {
    let error = json!({ "resource": "Issue", "code": "invalid", "field": "type", "value": name });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "message": "Validation Failed", "errors": [error], "documentation_url": "https://docs.github.com/rest/issues/issues#update-an-issue" }))).into_response()
}

impl World {
    /// The enabled type of that name in the repository's organisation (case does not matter).
    pub fn resolve_type(&self, repo: &str, name: &str) -> Result<IssueType, Missing> {
        self.native
            .issue_types
            .get(&org_of(repo).to_lowercase())
            .and_then(|ts| ts.iter().find(|t| t.is_enabled && t.name.eq_ignore_ascii_case(name)))
            .cloned()
            .ok_or_else(|| Missing::IssueType(name.to_string()))
    }

    /// Sets or clears the issue's type: `typed` with the new type, `untyped` with the old one,
    /// nothing when it already has it.
    pub fn set_issue_type(&mut self, key: &Key, to: Option<IssueType>) -> Result<Vec<Stated>, Missing> {
        let now = self.clock.now();
        let i = self.issue_mut(key)?;
        if i.issue_type.as_ref().map(|t| &t.id) == to.as_ref().map(|t| &t.id) {
            return Ok(vec![]);
        }
        let from = std::mem::replace(&mut i.issue_type, to.clone());
        i.updated_at = now;
        Ok(vec![match (to, from) {
            (Some(t), _) => Stated::Typed(t),
            (None, Some(old)) => Stated::Untyped(old),
            (None, None) => unreachable!("unchanged is handled above"),
        }])
    }

    pub fn project_index(&self, node_id: &str) -> Option<usize> {
        self.native.projects.iter().position(|p| p.node_id == node_id)
    }

    pub fn project_by_number(&self, org: &str, number: u64) -> Option<usize> {
        self.native.projects.iter().position(|p| p.org.eq_ignore_ascii_case(org) && p.number == number)
    }

    /// The issue whose node id this is.
    pub fn issue_by_node(&self, node_id: &str) -> Option<Key> {
        self.issues.keys().find(|(r, n)| payloads::issue_node_id(r, *n) == node_id).cloned()
    }

    /// Adds `content` to project `p` (the item it already has, and nothing stated, when it is
    /// there already, as `addProjectV2ItemById` answers); the item's node id.
    pub fn add_item(&mut self, p: usize, content: Content, creator: &str) -> (String, Vec<ItemStated>) {
        let now = self.clock.now();
        let project = &mut self.native.projects[p];
        if let Some(i) = project.items.iter().find(|i| i.content == content) {
            return (i.node_id.clone(), vec![]);
        }
        let what = match &content {
            Content::Issue((r, n)) => format!("{r}#{n}"),
            Content::Draft { node_id, .. } => node_id.clone(),
        };
        let id = payloads::stable_id(&format!("item:{}:{what}", project.node_id));
        let node_id = format!("PVTI_lADO{:X}", id);
        project.items.push(ProjectItem { id, node_id: node_id.clone(), content, values: BTreeMap::new(), creator: creator.into(), created_at: now, updated_at: now });
        (node_id, vec![ItemStated::Created])
    }

    /// Sets (`Some`) or clears (`None`) one field of one item of project `p`, checking what
    /// `updateProjectV2ItemFieldValue` checks.
    pub fn set_item_field(&mut self, p: usize, item: &str, field: &str, to: Option<FieldValue>) -> Result<Vec<ItemStated>, Refusal> {
        let now = self.clock.now();
        let project = &mut self.native.projects[p];
        let f = project.fields.iter().find(|f| f.node_id == field).ok_or_else(|| Refusal::not_found(field))?.clone();
        let it = project.items.iter_mut().find(|i| i.node_id == item).ok_or_else(|| Refusal::not_found(item))?;
        match (&f.kind, &to) {
            (_, None) if f.kind != FieldKind::Title => {}
            (FieldKind::SingleSelect(options), Some(FieldValue::Option(id))) => {
                if !options.iter().any(|o| o.id == *id) {
                    return Err(Refusal::unprocessable(format!("The single select option Id does not belong to the field {}", f.node_id)));
                }
            }
            (FieldKind::Date, Some(FieldValue::Date(d))) => {
                if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
                    return Err(Refusal { kind: "INVALID_ARGUMENT", message: format!("Date is not a valid ISO 8601 date: {d}") });
                }
            }
            (FieldKind::Text, Some(FieldValue::Text(_))) => {}
            (FieldKind::Title, _) => return Err(Refusal::unprocessable("The title field cannot be updated through this mutation".into())),
            (k, _) => return Err(Refusal::unprocessable(format!("Did not receive a value of the right kind to update a field of type {}", k.hook_type()))),
        }
        let from = it.values.get(field).cloned();
        if from == to {
            return Ok(vec![]);
        }
        match &to {
            Some(v) => drop(it.values.insert(field.to_string(), v.clone())),
            None => drop(it.values.remove(field)),
        }
        it.updated_at = now;
        Ok(vec![ItemStated::Edited { field: field.to_string(), from, to }])
    }

    /// The value a test names (an option's name, a date, a text) as this field keeps it.
    pub fn value_named(&self, p: usize, field: &str, value: &str) -> Result<FieldValue, Refusal> {
        let f = self.native.projects[p].field_named(field).ok_or_else(|| Refusal::not_found(field))?;
        Ok(match &f.kind {
            FieldKind::SingleSelect(options) => FieldValue::Option(
                options.iter().find(|o| o.name.eq_ignore_ascii_case(value)).ok_or_else(|| Refusal::not_found(value))?.id.clone(),
            ),
            FieldKind::Date => FieldValue::Date(value.into()),
            FieldKind::Text | FieldKind::Title => FieldValue::Text(value.into()),
        })
    }
}

// --- what deliveries say ---

/// The organisation object of an organisation webhook (the real fixture's, renamed).
fn organization(org: &str) -> Value {
    let mut o = payloads::template("projects_v2_item.created.json")["organization"].clone();
    let old = o["login"].as_str().unwrap_or("").to_string();
    for k in ["url", "repos_url", "events_url", "hooks_url", "issues_url", "members_url", "public_members_url"] {
        if let Some(s) = o[k].as_str() {
            o[k] = json!(s.replace(&format!("/orgs/{old}"), &format!("/orgs/{org}")));
        }
    }
    let id = org_id(org);
    o["login"] = json!(org);
    o["id"] = json!(id);
    o["node_id"] = json!(format!("O_kgDO{id:X}"));
    o["avatar_url"] = json!(format!("https://avatars.githubusercontent.com/u/{id}?v=4"));
    o
}

pub fn org_id(org: &str) -> u64 {
    payloads::stable_id(&format!("org:{}", org.to_lowercase()))
}

/// The option object `changes.field_value.from/to` carries for a single-select value; the
/// plain string for a date or a text.
fn hook_value(f: &ProjectField, v: &Option<FieldValue>) -> Value {
    match (v, &f.kind) {
        (None, _) => Value::Null,
        (Some(FieldValue::Option(id)), FieldKind::SingleSelect(options)) => match options.iter().find(|o| o.id == *id) {
            Some(o) => json!({ "id": o.id, "name": o.name, "color": o.color, "description": o.description }),
            None => Value::Null,
        },
        (Some(FieldValue::Option(s) | FieldValue::Date(s) | FieldValue::Text(s)), _) => json!(s),
    }
}

pub fn content_node_id(c: &Content) -> String {
    match c {
        Content::Issue((r, n)) => payloads::issue_node_id(r, *n),
        Content::Draft { node_id, .. } => node_id.clone(),
    }
}

/// A `projects_v2_item` delivery's body for `stated` (sender and installation are set by
/// hooks.rs).
fn item_payload(p: &Project, item: &ProjectItem, stated: &ItemStated, sender: &Actor) -> (&'static str, Value) {
    let (action, name) = match stated {
        ItemStated::Created => ("created", "projects_v2_item.created.json"),
        ItemStated::Edited { .. } => ("edited", "projects_v2_item.edited.status-change.json"),
    };
    let mut body = payloads::template(name);
    body["action"] = json!(action);
    let i = &mut body["projects_v2_item"];
    i["id"] = json!(item.id);
    i["node_id"] = json!(item.node_id);
    i["project_node_id"] = json!(p.node_id);
    i["content_node_id"] = json!(content_node_id(&item.content));
    i["content_type"] = json!(match item.content {
        Content::Issue(_) => "Issue",
        Content::Draft { .. } => "DraftIssue",
    });
    i["creator"] = payloads::user(&item.creator, item.creator.ends_with("[bot]"));
    i["created_at"] = json!(payloads::time(item.created_at));
    i["updated_at"] = json!(payloads::time(item.updated_at));
    i["archived_at"] = Value::Null;
    if let ItemStated::Edited { field, from, to } = stated {
        let f = p.field(field).expect("the field is on the project");
        body["changes"] = json!({ "field_value": {
            "field_node_id": f.node_id,
            "field_type": f.kind.hook_type(),
            "field_name": f.name,
            "project_number": p.number,
            "from": hook_value(f, from),
            "to": hook_value(f, to),
        } });
    }
    body["organization"] = organization(&p.org);
    body["sender"] = payloads::user(&sender.login, sender.bot);
    (action, body)
}

impl FakeGithub {
    /// Queues the `projects_v2_item` deliveries for `stated` on item `item` of project `p`,
    /// built now (call with the world locked, right after the change).
    pub(super) fn emit_item(&self, w: &World, p: usize, item: &str, actor: &Actor, stated: &[ItemStated]) {
        let project = &w.native.projects[p];
        let Some(it) = project.items.iter().find(|i| i.node_id == item) else { return };
        for s in stated {
            let (action, body) = item_payload(project, it, s, actor);
            self.emit_org(&project.org, "projects_v2_item", action, actor, body);
        }
    }

    // --- set-up helpers (silent) ---

    /// Defines the organisation's issue types: (name, description, colour), all enabled.
    pub fn define_issue_types(&self, org: &str, types: &[(&str, &str, &str)]) {
        let mut w = self.world.lock().unwrap();
        let now = w.clock.now();
        let list = types
            .iter()
            .map(|(name, description, color)| {
                let id = payloads::stable_id(&format!("issue-type:{}:{name}", org.to_lowercase()));
                IssueType { id, node_id: format!("IT_kwDO{id:X}"), name: name.to_string(), description: description.to_string(), color: color.to_string(), is_enabled: true, created_at: now, updated_at: now }
            })
            .collect();
        w.native.issue_types.insert(org.to_lowercase(), list);
    }

    /// GitHub's default set for a new organisation: Task, Bug and Feature.
    pub fn default_issue_types(&self, org: &str) {
        self.define_issue_types(
            org,
            &[("Task", "A specific piece of work", "yellow"), ("Bug", "An unexpected problem or behavior", "red"), ("Feature", "A request, idea, or new functionality", "blue")],
        );
    }

    pub fn enable_issue_type(&self, org: &str, name: &str, enabled: bool) {
        let mut w = self.world.lock().unwrap();
        let t = w.native.issue_types.get_mut(&org.to_lowercase()).and_then(|ts| ts.iter_mut().find(|t| t.name == name)).expect("a defined issue type");
        t.is_enabled = enabled;
    }

    /// Gives the issue a type (or none) silently; panics for a type the organisation lacks.
    pub fn set_issue_type(&self, repo: &str, n: u64, name: Option<&str>) {
        let mut w = self.world.lock().unwrap();
        let t = name.map(|t| w.resolve_type(repo, t).expect("a defined issue type"));
        w.issues.get_mut(&(repo.to_string(), n)).expect("seeded issue").issue_type = t;
    }

    /// The issue's type's name.
    pub fn issue_type(&self, repo: &str, n: u64) -> Option<String> {
        self.issue(repo, n).issue_type.map(|t| t.name)
    }

    /// A new organisation project with the built-in Title field and these fields.
    pub fn add_project(&self, org: &str, number: u64, title: &str, fields: Vec<FieldDef>) -> ProjectRef {
        let mut w = self.world.lock().unwrap();
        assert!(w.project_by_number(org, number).is_none(), "project {org}#{number} exists already");
        let id = payloads::stable_id(&format!("project:{}#{number}", org.to_lowercase()));
        let node_id = format!("PVT_kwDO{id:X}");
        let mut all = vec![FieldDef { name: "Title".into(), kind: FieldKind::Title }];
        all.extend(fields);
        let fields = all
            .into_iter()
            .map(|d| {
                let fid = payloads::stable_id(&format!("field:{node_id}:{}", d.name));
                let prefix = if matches!(d.kind, FieldKind::SingleSelect(_)) { "PVTSSF" } else { "PVTF" };
                ProjectField { id: fid, node_id: format!("{prefix}_lADO{fid:X}"), name: d.name, kind: d.kind }
            })
            .collect();
        w.native.projects.push(Project { id, node_id: node_id.clone(), org: org.into(), number, title: title.into(), fields, items: Vec::new() });
        ProjectRef { org: org.into(), number, node_id }
    }

    fn project_at(w: &World, project: &ProjectRef) -> usize {
        w.project_index(&project.node_id).expect("a project made by add_project")
    }

    /// Puts the issue on the project silently; the item's node id.
    pub fn put_on_project(&self, project: &ProjectRef, repo: &str, n: u64) -> String {
        let mut w = self.world.lock().unwrap();
        assert!(w.issues.contains_key(&(repo.to_string(), n)), "seeded issue");
        let p = Self::project_at(&w, project);
        w.add_item(p, Content::Issue((repo.into(), n)), "someone").0
    }

    /// Adds a draft issue to the project silently; the item's node id.
    pub fn add_draft_issue(&self, project: &ProjectRef, title: &str) -> String {
        let mut w = self.world.lock().unwrap();
        let p = Self::project_at(&w, project);
        let id = payloads::stable_id(&format!("draft:{}:{title}:{}", project.node_id, w.native.projects[p].items.len()));
        w.add_item(p, Content::Draft { node_id: format!("DI_lADO{id:X}"), title: title.into() }, "someone").0
    }

    /// Sets a field of the issue's item silently (an option's name, `YYYY-MM-DD`, a text; None
    /// clears).
    pub fn set_project_field(&self, project: &ProjectRef, repo: &str, n: u64, field: &str, value: Option<&str>) {
        let mut w = self.world.lock().unwrap();
        let (p, item, field_id, to) = resolve(&w, project, repo, n, field, value);
        w.set_item_field(p, &item, &field_id, to).expect("a value the field takes");
    }

    /// The value of the issue's field on the project, as a person reads it (an option's name).
    pub fn project_field(&self, project: &ProjectRef, repo: &str, n: u64, field: &str) -> Option<String> {
        let w = self.world.lock().unwrap();
        let p = &w.native.projects[Self::project_at(&w, project)];
        let f = p.field_named(field).expect("a field of the project");
        match p.item_of(&(repo.to_string(), n))?.values.get(&f.node_id)? {
            FieldValue::Option(id) => match &f.kind {
                FieldKind::SingleSelect(options) => options.iter().find(|o| o.id == *id).map(|o| o.name.clone()),
                _ => None,
            },
            FieldValue::Date(s) | FieldValue::Text(s) => Some(s.clone()),
        }
    }

    /// The issue's item node id on the project.
    pub fn project_item(&self, project: &ProjectRef, repo: &str, n: u64) -> Option<String> {
        let w = self.world.lock().unwrap();
        let p = &w.native.projects[Self::project_at(&w, project)];
        p.item_of(&(repo.to_string(), n)).map(|i| i.node_id.clone())
    }

    /// A field's node id, and for a single-select field `option`'s id.
    pub fn field_ids(&self, project: &ProjectRef, field: &str, option: Option<&str>) -> (String, Option<String>) {
        let w = self.world.lock().unwrap();
        let p = &w.native.projects[Self::project_at(&w, project)];
        let f = p.field_named(field).expect("a field of the project");
        let o = option.map(|name| match &f.kind {
            FieldKind::SingleSelect(options) => options.iter().find(|o| o.name == name).expect("an option of the field").id.clone(),
            _ => panic!("{field} is not a single-select field"),
        });
        (f.node_id.clone(), o)
    }

    /// Every write to issue types and projects made through the API, in order.
    pub fn native_calls(&self) -> Vec<NativeCall> {
        self.world.lock().unwrap().native.calls.clone()
    }

    /// The issue's node id (`I_…`), as GraphQL and `content_node_id` name it.
    pub fn issue_node_id(&self, repo: &str, n: u64) -> String {
        payloads::issue_node_id(repo, n)
    }
}

/// (project index, item node id, field node id, value) for a test's names; panics on a
/// mistake in the test.
fn resolve(w: &World, project: &ProjectRef, repo: &str, n: u64, field: &str, value: Option<&str>) -> (usize, String, String, Option<FieldValue>) {
    let p = FakeGithub::project_at(w, project);
    let pr = &w.native.projects[p];
    let item = pr.item_of(&(repo.to_string(), n)).unwrap_or_else(|| panic!("{repo}#{n} is not on project {}#{}", project.org, project.number)).node_id.clone();
    let f = pr.field_named(field).unwrap_or_else(|| panic!("no field {field} on project {}#{}", project.org, project.number)).node_id.clone();
    let to = value.map(|v| w.value_named(p, field, v).unwrap_or_else(|e| panic!("{field} cannot be {v}: {e:?}")));
    (p, item, f, to)
}

impl Person {
    /// Sets (or clears) the issue's type in the web UI: `issues.typed` / `issues.untyped`.
    pub fn set_type(&self, repo: &str, n: u64, name: Option<&str>) {
        let mut w = self.fake.world.lock().unwrap();
        let key = (repo.to_string(), n);
        let t = name.map(|t| w.resolve_type(repo, t).unwrap_or_else(|e| panic!("{} cannot set type {t}: {e:?}", self.actor.login)));
        let stated = w.set_issue_type(&key, t).unwrap_or_else(|e| panic!("{} cannot set a type: {e:?}", self.actor.login));
        self.fake.emit(&mut w, &key, &self.actor, &stated);
    }

    /// Sets (or clears) a field of the issue's item on the board: `projects_v2_item.edited`.
    pub fn set_project_field(&self, project: &ProjectRef, issue: (&str, u64), field: &str, value: Option<&str>) {
        let mut w = self.fake.world.lock().unwrap();
        let (p, item, field_id, to) = resolve(&w, project, issue.0, issue.1, field, value);
        let stated = w.set_item_field(p, &item, &field_id, to).unwrap_or_else(|e| panic!("{} cannot set {field}: {e:?}", self.actor.login));
        self.fake.emit_item(&w, p, &item, &self.actor, &stated);
    }

    /// Adds the issue to the board (`projects_v2_item.created`, unless it is there already);
    /// the item's node id.
    pub fn add_to_project(&self, project: &ProjectRef, issue: (&str, u64)) -> String {
        let mut w = self.fake.world.lock().unwrap();
        let key = (issue.0.to_string(), issue.1);
        assert!(w.issues.contains_key(&key), "{} cannot add a missing issue {}#{}", self.actor.login, issue.0, issue.1);
        let p = FakeGithub::project_at(&w, project);
        let (item, stated) = w.add_item(p, Content::Issue(key), &self.actor.login);
        self.fake.emit_item(&w, p, &item, &self.actor, &stated);
        item
    }
}

/// `GET /orgs/{org}/issue-types`: 404 for an organisation without types (an unknown account).
pub(super) async fn list_issue_types(State(f): State<FakeGithub>, h: HeaderMap, Path(org): Path<String>) -> Response {
    if let Err(r) = f.enter(&h).await {
        return r;
    }
    let w = f.world.lock().unwrap();
    match w.native.issue_types.get(&org.to_lowercase()) {
        Some(ts) => Json(ts.iter().map(issue_type_json).collect::<Vec<_>>()).into_response(),
        None => super::rest::not_found(),
    }
}
