//! What rules see: the issue, the event and the context as Rhai values, built from Rust data
//! once per event, and updated between rules with what the earlier rules decided.

use super::decision::RuleOutput;
use super::{boxes, commands, EventFacts, FieldChange, Input, RecentDecision};
use crate::model::Event;
use crate::model::HistoryEntry;
use chrono::{DateTime, Utc};
use rhai::{Dynamic, Map};
use serde::Serialize;
use std::collections::BTreeMap;

/// A rule's records are facts the next rules see at once in `ctx.state`.
pub(super) fn record_into_state(ctx: &mut Dynamic, records: &[(String, String)]) {
    if records.is_empty() {
        return;
    }
    if let Some(mut map) = ctx.write_lock::<Map>() {
        if let Some(mut state) = map.get("state").and_then(|s| s.clone().try_cast::<Map>()) {
            for (field, value) in records {
                state.insert(field.into(), value.clone().into());
            }
            map.insert("state".into(), state.into());
        }
    }
}

/// When each field last took each value.
pub(super) fn entered(history: &[HistoryEntry]) -> BTreeMap<String, DateTime<Utc>> {
    let mut out = BTreeMap::new();
    for h in history.iter().filter(|h| h.effective()) {
        if let Some(to) = &h.to {
            out.insert(format!("{}={to}", h.field), h.at);
        }
    }
    out
}

/// The latest recorded value of every field: the state later rules read without scanning
/// the whole history. A cleared field is absent.
pub(super) fn latest_state(history: &[HistoryEntry]) -> BTreeMap<&str, &str> {
    let mut state = BTreeMap::new();
    for h in history.iter().filter(|h| h.effective()) {
        match &h.to {
            Some(v) => state.insert(h.field.as_str(), v.as_str()),
            None => state.remove(h.field.as_str()),
        };
    }
    state
}

pub(super) fn to_dynamic<T: Serialize>(v: &T) -> Dynamic {
    rhai::serde::to_dynamic(v).expect("plain data always converts")
}

#[derive(Serialize)]
struct IssueView<'a> {
    key: String,
    project: &'a str,
    number: u64,
    title: &'a str,
    body: &'a str,
    url: &'a str,
    open: bool,
    state_reason: &'a Option<String>,
    author: &'a str,
    labels: &'a [String],
    assignees: &'a [String],
    fields: &'a BTreeMap<String, String>,
    flags: BTreeMap<&'a str, bool>,
    /// `### Heading` sections of the body (issue forms).
    sections: BTreeMap<String, String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(super) fn issue_map(input: &Input<'_>) -> Map {
    let i = input.issue;
    let view = IssueView {
        key: i.key.short(),
        project: i.key.project(),
        number: i.key.number(),
        title: &i.title,
        body: &i.body,
        url: &i.url,
        open: i.open,
        state_reason: &i.state_reason,
        author: &i.author,
        labels: &i.labels,
        assignees: &i.assignees,
        fields: &input.normalized.fields,
        flags: input.normalized.flags.iter().map(|f| (f.as_str(), true)).collect(),
        sections: boxes::sections(&i.body),
        created_at: i.created_at,
        updated_at: i.updated_at,
    };
    to_dynamic(&view).try_cast::<Map>().expect("a struct converts to a map")
}

/// Folds one rule's field and flag decisions into the issue the next rule sees.
pub(super) fn apply_to_view(issue: &mut Map, out: &RuleOutput) {
    if let Some(mut fields) = issue.get("fields").and_then(|f| f.clone().try_cast::<Map>()) {
        for (field, value) in &out.fields {
            match value {
                Some(v) => fields.insert(field.into(), v.clone().into()),
                None => fields.remove(field.as_str()),
            };
        }
        issue.insert("fields".into(), fields.into());
    }
    if let Some(mut flags) = issue.get("flags").and_then(|f| f.clone().try_cast::<Map>()) {
        for (flag, on) in &out.flags {
            if *on {
                flags.insert(flag.into(), true.into());
            } else {
                flags.remove(flag.as_str());
            }
        }
        issue.insert("flags".into(), flags.into());
    }
    if let Some(open) = out.open {
        issue.insert("open".into(), open.into());
    }
}

#[derive(Serialize)]
struct ActorView<'a> {
    login: &'a str,
    is_bot: bool,
    roles: &'a [String],
}

#[derive(Serialize)]
pub(super) struct EventView<'a> {
    kind: &'a str,
    delivery: &'a str,
    actor: ActorView<'a>,
    label: &'a Option<String>,
    comment: Option<CommentView<'a>>,
    occurred_at: DateTime<Utc>,
    changes: &'a [FieldChange],
    commands: &'a [commands::Command],
    unknown_commands: &'a [commands::Unknown],
    command_errors: &'a [commands::LineError],
    ticked: &'a [String],
    unticked: &'a [String],
}

#[derive(Serialize)]
struct CommentView<'a> {
    id: u64,
    body: &'a str,
    author: &'a crate::model::Actor,
    previous_body: &'a Option<String>,
    /// Purpose tag when the comment is one of the bot's.
    tag: &'a Option<String>,
}

impl<'a> EventView<'a> {
    pub(super) fn new(e: &'a Event, f: &'a EventFacts) -> Self {
        EventView {
            kind: e.kind.as_str(),
            delivery: e.delivery.as_str(),
            actor: ActorView { login: &e.actor.login, is_bot: e.actor.is_bot, roles: &f.roles },
            label: &e.label,
            comment: e.comment.as_ref().map(|c| CommentView {
                id: c.id.0,
                body: &c.body,
                author: &c.author,
                previous_body: &c.previous_body,
                tag: &f.comment_tag,
            }),
            occurred_at: e.occurred_at,
            changes: &f.changes,
            commands: &f.commands,
            unknown_commands: &f.unknown_commands,
            command_errors: &f.command_errors,
            ticked: &f.ticked,
            unticked: &f.unticked,
        }
    }
}

#[derive(Serialize)]
pub(super) struct BeforeView<'a> {
    pub(super) fields: &'a BTreeMap<String, String>,
    pub(super) flags: BTreeMap<&'a str, bool>,
    pub(super) open: bool,
}

#[derive(Serialize)]
pub(super) struct Ctx<'a> {
    pub(super) history: &'a [HistoryEntry],
    pub(super) state: BTreeMap<&'a str, &'a str>,
    /// "field=value" -> when the field last took that value: what clocks need, without
    /// every rule scanning (and copying) the history.
    pub(super) entered: BTreeMap<String, DateTime<Utc>>,
    pub(super) before: Option<BeforeView<'a>>,
    /// rollgate had no view of the issue before this event: the issue form is read then.
    pub(super) first_seen: bool,
    pub(super) recent: &'a [RecentDecision],
    pub(super) config: &'a super::PolicyConfig,
    pub(super) now: DateTime<Utc>,
}

