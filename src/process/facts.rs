//! Facts read from an event before the rules run: which fields it changed, which commands a
//! comment holds, which boxes of a bot comment were ticked. Generic: no playbook names here.

use crate::model::{Event, IssueSnapshot};
use crate::policy::boxes;
use crate::policy::commands;
use crate::policy::vocabulary::Normalized;
use crate::policy::{EventFacts, FieldChange};
use crate::store::{BotComment, HistoryEntry, Source};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Field, flag and open-state changes between two readings of an issue, as history entries.
/// Without a `before` (first sighting) every present field is recorded as set.
pub fn changes(
    before: Option<(&Normalized, bool)>,
    after: &Normalized,
    after_open: bool,
    actor: &str,
    at: DateTime<Utc>,
    source: Source,
) -> Vec<HistoryEntry> {
    let empty = Normalized::default();
    let b = before.map(|(n, _)| n).unwrap_or(&empty);
    let entry = |field: String, from: Option<String>, to: Option<String>| HistoryEntry {
        at,
        field,
        from,
        to,
        actor: actor.to_string(),
        source,
    };
    let mut out = Vec::new();
    let fields: BTreeSet<&String> = b.fields.keys().chain(after.fields.keys()).collect();
    for f in fields {
        let (from, to) = (b.fields.get(f), after.fields.get(f));
        if from != to {
            out.push(entry(f.clone(), from.cloned(), to.cloned()));
        }
    }
    for flag in after.flags.symmetric_difference(&b.flags) {
        let on = after.flags.contains(flag);
        out.push(entry(format!("flags.{flag}"), (!on).then(|| "on".into()), on.then(|| "on".into())));
    }
    if let Some((_, was_open)) = before {
        if was_open != after_open {
            let s = |open: bool| Some(if open { "open" } else { "closed" }.to_string());
            out.push(entry("state".into(), s(was_open), s(after_open)));
        }
    }
    out
}

/// Commands, box ticks and field changes of one event. `bot_comments` is what the store holds
/// of the bot's comments; an edit of one of them is returned so the store can follow it.
pub fn gather(
    event: &Event,
    tracker_changes: &[HistoryEntry],
    known_commands: &[String],
    bot_comments: &BTreeMap<String, BotComment>,
) -> (EventFacts, Option<(String, BotComment)>) {
    let mut facts = EventFacts {
        changes: tracker_changes
            .iter()
            .map(|h| FieldChange { field: h.field.clone(), from: h.from.clone(), to: h.to.clone() })
            .collect(),
        ..Default::default()
    };
    let Some(comment) = &event.comment else { return (facts, None) };
    let mut followed = None;
    // A bot comment is known by its marker (GitHub) or by the id the store holds for it
    // (Jira, where the marker is a comment property the webhook does not carry).
    let known_tag = bot_comments.iter().find(|(_, c)| c.id == comment.id).map(|(t, _)| t.as_str());
    if let Some(tag) = boxes::marker_tag(&comment.body).or(known_tag) {
        // One of the bot's comments. Only an edit by someone matters: its ticked boxes.
        facts.comment_tag = Some(tag.to_string());
        if event.kind.ends_with(".edited") {
            let stored = bot_comments.get(tag);
            let previous = comment.previous_body.as_deref().or(stored.map(|c| c.body.as_str())).unwrap_or("");
            let (ticked, unticked) = boxes::box_changes(previous, &comment.body);
            facts.ticked = ticked;
            facts.unticked = unticked;
            followed = Some((
                tag.to_string(),
                BotComment {
                    id: comment.id,
                    body_hash: crate::plan::body_hash(&comment.body),
                    body: comment.body.clone(),
                },
            ));
        }
        return (facts, followed);
    }
    if event.actor.is_bot || comment.author.is_bot {
        return (facts, None);
    }
    let known: Vec<&str> = known_commands.iter().map(String::as_str).collect();
    let now = commands::parse(&comment.body, &known);
    if event.kind.ends_with(".edited") {
        // Only what the edit added runs: a command is never run twice.
        let before = commands::parse(comment.previous_body.as_deref().unwrap_or(""), &known);
        facts.commands = commands::added(&before, &now);
        let old_unknown: BTreeSet<&str> = before.unknown.iter().map(|u| u.text.as_str()).collect();
        let old_errors: BTreeSet<&str> = before.errors.iter().map(|e| e.text.as_str()).collect();
        facts.unknown_commands = now.unknown.into_iter().filter(|u| !old_unknown.contains(u.text.as_str())).collect();
        facts.command_errors = now.errors.into_iter().filter(|e| !old_errors.contains(e.text.as_str())).collect();
    } else {
        facts.commands = now.commands;
        facts.unknown_commands = now.unknown;
        facts.command_errors = now.errors;
    }
    (facts, followed)
}

/// The issue as it stands after this event. A delivery's snapshot can be older than one we
/// already hold (two quick changes, delivered out of order); then the stored view is kept and
/// only the change the event itself names is applied.
pub fn merge(stored: Option<&IssueSnapshot>, event: &Event) -> IssueSnapshot {
    let mut view = match stored {
        Some(s) if s.updated_at > event.issue.updated_at => s.clone(),
        // A partial snapshot (Jira comment events) never replaces a full one.
        Some(s) if event.issue.partial => s.clone(),
        _ => event.issue.clone(),
    };
    match (event.kind.as_str(), &event.label) {
        // A real `unlabeled` delivery can still list the removed label in `issue.labels`.
        ("issues.unlabeled", Some(label)) => view.labels.retain(|l| l != label),
        ("issues.labeled", Some(label)) if !view.has_label(label) => view.labels.push(label.clone()),
        ("issues.closed", _) => {
            view.open = false;
            view.closed_at = event.issue.closed_at;
            view.state_reason = event.issue.state_reason.clone();
        }
        ("issues.reopened", _) => view.open = true,
        _ => {}
    }
    view
}
