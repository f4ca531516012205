//! Facts read from an event before the rules run: which fields it changed, which commands a
//! comment holds, which boxes of a bot comment were ticked. Generic: no playbook names here.

use crate::model::Event;
use crate::policy::boxes;
use crate::policy::commands;
use crate::policy::vocabulary::Normalized;
use crate::policy::{EventFacts, FieldChange};
use crate::model::{BotComment, HistoryEntry, Source};
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
        refused: None,
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

/// Who rollgate is on a tracker (its bot login, App bot or Jira account), to tell its own
/// changes and comments from people's. Unknown only without tracker credentials (dry run),
/// where nothing rollgate does reaches the tracker to come back as a delivery.
#[derive(Debug, Clone, Default)]
pub struct Me {
    pub login: Option<String>,
}

impl Me {
    pub fn new(login: Option<String>) -> Me {
        Me { login }
    }

    /// Whether `login` is rollgate itself.
    pub fn is(&self, login: &str) -> bool {
        self.login.as_deref().is_some_and(|me| me.eq_ignore_ascii_case(login))
    }

    /// Whether rollgate caused `event`: its own writes coming back, or its clock.
    pub fn caused(&self, event: &Event) -> bool {
        event.kind.is_timer() || self.is(&event.actor.login)
    }
}

/// Commands, box ticks and field changes of one event. `bot_comments` is what the store holds
/// of the bot's comments; a person's edit of one of them is returned so the store can follow it.
/// `by_rollgate`: the event is rollgate's own doing (its comment, its edit): no command runs and
/// nothing is followed, whatever the text says.
pub fn gather(
    event: &Event,
    tracker_changes: &[HistoryEntry],
    known_commands: &[String],
    bot_comments: &BTreeMap<String, BotComment>,
    me: &Me,
) -> (EventFacts, Option<(String, BotComment)>) {
    let by_rollgate = me.caused(event);
    let mut facts = EventFacts {
        changes: if by_rollgate {
            Vec::new()
        } else {
            tracker_changes
                .iter()
                .filter(|h| h.source == Source::Tracker)
                .map(|h| FieldChange { field: h.field.clone(), from: h.from.clone(), to: h.to.clone() })
                .collect()
        },
        ..Default::default()
    };
    let Some(comment) = &event.comment else { return (facts, None) };
    // A bot comment is one the store holds by id; or, found again after the store lost it, one
    // rollgate itself wrote that carries a marker. Anyone else's comment is a comment, marker
    // or not: it is never edited, nor read as the bot's.
    let known_tag = bot_comments.iter().find(|(_, c)| c.id == comment.id).map(|(t, _)| t.as_str());
    let tag = known_tag.or_else(|| boxes::marker_tag(&comment.body).filter(|_| me.is(&comment.author.login)));
    if let Some(tag) = tag {
        facts.comment_tag = Some(tag.to_string());
        // Only a person's edit matters: its ticked boxes. rollgate's own edit coming back is
        // never followed (the tracker may re-format it: Jira sends wiki text for ADF).
        if event.kind.is_edit() && !by_rollgate {
            let stored = bot_comments.get(tag);
            let previous = comment.previous_body.as_deref().or(stored.map(|c| c.body.as_str())).unwrap_or("");
            let (ticked, unticked) = boxes::box_changes(previous, &comment.body);
            facts.ticked = ticked;
            facts.unticked = unticked;
            // The store follows what the comment now means. Where the tracker shows it as
            // rollgate wrote it (GitHub), that is the new text itself; where it re-formats it
            // (Jira's wiki), it is rollgate's text with the person's ticks, so nothing is
            // rewritten merely because the formats differ.
            let body = match stored {
                Some(s) if !comment.body.contains("<!-- box:") => boxes::with_boxes(&s.body, &boxes::read_boxes(&s.body, &comment.body)),
                _ => comment.body.clone(),
            };
            let followed = BotComment { id: comment.id, body_hash: crate::plan::body_hash(&body), body };
            return (facts, Some((tag.to_string(), followed)));
        }
        return (facts, None);
    }
    if by_rollgate || comment.author.is_bot || event.actor.is_bot {
        return (facts, None);
    }
    let known: Vec<&str> = known_commands.iter().map(String::as_str).collect();
    let now = commands::parse(&comment.body, &known);
    if event.kind.is_edit() {
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
    (facts, None)
}
